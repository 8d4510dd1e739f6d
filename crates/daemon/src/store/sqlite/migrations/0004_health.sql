-- what /readyz writes to prove the database takes writes (not a projection).
CREATE TABLE health (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    probes  INTEGER NOT NULL,
    padding BLOB
);
INSERT INTO health (id, probes) VALUES (1, 0);
