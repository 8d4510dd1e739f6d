-- The whole schema as SQLite's seven migrations left it, in PostgreSQL's terms: integers are
-- bigint, SQLite's 0/1 is a boolean, and text that is compared or sorted (SIDs, identities,
-- keys) sorts by its bytes (COLLATE "C"), as in SQLite, whatever the database's locale: SIDs
-- are keyset cursors, and an export lists streams in one order on both engines.

-- The log. Positions are written by the writer, under the checkpoint row's lock (see
-- postgres/mod.rs): dense and in commit order across nodes, which a sequence is not.
CREATE TABLE events (
    position       BIGINT PRIMARY KEY,
    stream         TEXT COLLATE "C" NOT NULL,
    stream_version BIGINT NOT NULL,
    type           TEXT COLLATE "C" NOT NULL,
    schema_version BIGINT NOT NULL,
    data           TEXT NOT NULL,
    recorded_at    BIGINT NOT NULL,
    account_sid    TEXT COLLATE "C" NOT NULL,
    service_sid    TEXT COLLATE "C",
    request_id     TEXT,
    UNIQUE (stream, stream_version)
);
CREATE INDEX events_by_account ON events (account_sid, position);
-- History by user: the bindings registered to a user, and users by identity, both still found
-- after their rows are gone.
CREATE INDEX events_registered_to ON events ((data::json ->> 'user_sid'))
    WHERE type = 'BindingRegistered';
CREATE INDEX events_user_identity ON events (service_sid, (data::json ->> 'identity'))
    WHERE type = 'UserCreated';

-- The projections' checkpoint, and the lock every write transaction takes first.
CREATE TABLE checkpoint (
    id       BIGINT PRIMARY KEY CHECK (id = 1),
    position BIGINT NOT NULL
);
INSERT INTO checkpoint (id, position) VALUES (1, 0);

CREATE TABLE accounts (
    sid             TEXT COLLATE "C" PRIMARY KEY,
    friendly_name   TEXT NOT NULL,
    auth_token_hash TEXT NOT NULL,
    date_created    BIGINT NOT NULL,
    date_updated    BIGINT NOT NULL
);

CREATE TABLE api_keys (
    sid           TEXT COLLATE "C" PRIMARY KEY,
    account_sid   TEXT COLLATE "C" NOT NULL,
    friendly_name TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,
    date_created  BIGINT NOT NULL,
    date_updated  BIGINT NOT NULL
);

CREATE TABLE services (
    sid           TEXT COLLATE "C" PRIMARY KEY,
    account_sid   TEXT COLLATE "C" NOT NULL,
    friendly_name TEXT NOT NULL,
    settings      TEXT NOT NULL,
    date_created  BIGINT NOT NULL,
    date_updated  BIGINT NOT NULL
);
CREATE INDEX services_by_account ON services (account_sid, sid);

CREATE TABLE credentials (
    sid           TEXT COLLATE "C" PRIMARY KEY,
    account_sid   TEXT COLLATE "C" NOT NULL,
    friendly_name TEXT,
    type          TEXT COLLATE "C" NOT NULL,
    sandbox       BOOLEAN,
    secrets       TEXT NOT NULL,
    date_created  BIGINT NOT NULL,
    date_updated  BIGINT NOT NULL,
    profile       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX credentials_by_account ON credentials (account_sid, sid);

CREATE TABLE users (
    sid           TEXT COLLATE "C" PRIMARY KEY,
    account_sid   TEXT COLLATE "C" NOT NULL,
    service_sid   TEXT COLLATE "C" NOT NULL,
    identity      TEXT COLLATE "C" NOT NULL,
    friendly_name TEXT,
    attributes    TEXT,
    role_sid      TEXT,
    date_created  BIGINT NOT NULL,
    date_updated  BIGINT NOT NULL
);
-- One identity per service.
CREATE UNIQUE INDEX users_identity ON users (service_sid, identity);
CREATE INDEX users_by_service ON users (service_sid, sid);

CREATE TABLE bindings (
    sid            TEXT COLLATE "C" PRIMARY KEY,
    account_sid    TEXT COLLATE "C" NOT NULL,
    service_sid    TEXT COLLATE "C" NOT NULL,
    user_sid       TEXT COLLATE "C" NOT NULL,
    identity       TEXT COLLATE "C" NOT NULL,
    endpoint       TEXT COLLATE "C" NOT NULL,
    binding_type   TEXT COLLATE "C" NOT NULL,
    address        TEXT COLLATE "C" NOT NULL,
    credential_sid TEXT COLLATE "C",
    message_types  TEXT NOT NULL,
    date_created   BIGINT NOT NULL,
    date_updated   BIGINT NOT NULL
);
-- A push address belongs to one binding per service and type.
CREATE UNIQUE INDEX bindings_address ON bindings (service_sid, binding_type, address);
-- The registration upsert key.
CREATE UNIQUE INDEX bindings_endpoint ON bindings (user_sid, endpoint, binding_type);
CREATE INDEX bindings_by_user ON bindings (user_sid, sid);
CREATE INDEX bindings_by_service ON bindings (service_sid, sid);
CREATE INDEX bindings_by_age ON bindings (date_updated);
CREATE INDEX bindings_by_identity ON bindings (identity, sid);

-- Remembered answers to POSTs with an Idempotency-Key (a cache, not a projection).
CREATE TABLE idempotency_keys (
    scope       TEXT COLLATE "C" NOT NULL,
    key         TEXT COLLATE "C" NOT NULL,
    fingerprint TEXT NOT NULL,
    status      BIGINT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- What /readyz writes to prove the database takes writes (not a projection).
CREATE TABLE health (
    id     BIGINT PRIMARY KEY CHECK (id = 1),
    probes BIGINT NOT NULL
);
INSERT INTO health (id, probes) VALUES (1, 0);

-- Delivery records, one per notify and binding (beside the log, not a projection: see
-- deliveries.rs); the id says which record was written last.
CREATE TABLE deliveries (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_sid TEXT COLLATE "C" NOT NULL,
    binding_sid      TEXT COLLATE "C" NOT NULL,
    service_sid      TEXT COLLATE "C" NOT NULL,
    account_sid      TEXT COLLATE "C" NOT NULL,
    date_created     BIGINT NOT NULL,
    status           TEXT NOT NULL,
    error            TEXT,
    provider_status  BIGINT,
    attempts         BIGINT NOT NULL,
    latency_ms       BIGINT NOT NULL
);
CREATE UNIQUE INDEX deliveries_by_binding ON deliveries (binding_sid, notification_sid);
