-- the log, the projection checkpoint and the projections.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,
    stream         TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,
    type           TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    data           TEXT    NOT NULL,
    recorded_at    INTEGER NOT NULL,
    account_sid    TEXT    NOT NULL,
    service_sid    TEXT,
    request_id     TEXT,
    UNIQUE (stream, stream_version)
);
CREATE INDEX events_by_account ON events (account_sid, position);

CREATE TABLE checkpoint (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL
);
INSERT INTO checkpoint (id, position) VALUES (1, 0);

CREATE TABLE accounts (
    sid             TEXT PRIMARY KEY,
    friendly_name   TEXT NOT NULL,
    auth_token_hash TEXT NOT NULL,
    date_created    INTEGER NOT NULL,
    date_updated    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE api_keys (
    sid           TEXT PRIMARY KEY,
    account_sid   TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,
    date_created  INTEGER NOT NULL,
    date_updated  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE services (
    sid           TEXT PRIMARY KEY,
    account_sid   TEXT NOT NULL,
    friendly_name TEXT NOT NULL,
    settings      TEXT NOT NULL,
    date_created  INTEGER NOT NULL,
    date_updated  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX services_by_account ON services (account_sid, sid);

CREATE TABLE credentials (
    sid           TEXT PRIMARY KEY,
    account_sid   TEXT NOT NULL,
    friendly_name TEXT,
    type          TEXT NOT NULL,
    sandbox       INTEGER,
    secrets       TEXT NOT NULL,
    date_created  INTEGER NOT NULL,
    date_updated  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX credentials_by_account ON credentials (account_sid, sid);

CREATE TABLE users (
    sid           TEXT PRIMARY KEY,
    account_sid   TEXT NOT NULL,
    service_sid   TEXT NOT NULL,
    identity      TEXT NOT NULL,
    friendly_name TEXT,
    attributes    TEXT,
    role_sid      TEXT,
    date_created  INTEGER NOT NULL,
    date_updated  INTEGER NOT NULL
) WITHOUT ROWID;
-- One identity per service.
CREATE UNIQUE INDEX users_identity ON users (service_sid, identity);
CREATE INDEX users_by_service ON users (service_sid, sid);

CREATE TABLE bindings (
    sid            TEXT PRIMARY KEY,
    account_sid    TEXT NOT NULL,
    service_sid    TEXT NOT NULL,
    user_sid       TEXT NOT NULL,
    identity       TEXT NOT NULL,
    endpoint       TEXT NOT NULL,
    binding_type   TEXT NOT NULL,
    address        TEXT NOT NULL,
    credential_sid TEXT,
    message_types  TEXT NOT NULL,
    date_created   INTEGER NOT NULL,
    date_updated   INTEGER NOT NULL
) WITHOUT ROWID;
-- A push address belongs to one binding per service and type.
CREATE UNIQUE INDEX bindings_address ON bindings (service_sid, binding_type, address);
-- The registration upsert key.
CREATE UNIQUE INDEX bindings_endpoint ON bindings (user_sid, endpoint, binding_type);
CREATE INDEX bindings_by_user ON bindings (user_sid, sid);
CREATE INDEX bindings_by_service ON bindings (service_sid, sid);
CREATE INDEX bindings_by_age ON bindings (date_updated);
