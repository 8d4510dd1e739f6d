-- A value sealed under the registry's key (see seal.rs, Sealer::check_shared): a node whose
-- key file holds another key refuses to start rather than seal credentials the other nodes
-- cannot open.
CREATE TABLE sealing_key (
    id    BIGINT PRIMARY KEY CHECK (id = 1),
    check_value TEXT NOT NULL
);
