//! The database schema and its migrations, applied at start-up in order. `PRAGMA user_version`
//! counts the migrations already applied; a database newer than this binary is refused.

use rusqlite::Connection;

use super::StoreError;

/// The projection tables, in the order `verify` reports them.
pub const PROJECTION_TABLES: [&str; 6] = [
    "accounts",
    "api_keys",
    "services",
    "credentials",
    "users",
    "bindings",
];

const MIGRATIONS: &[&str] = &[
    // 1: the log, the projection checkpoint and the projections.
    r#"
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
    "#,
    // 2: remembered answers to POSTs with an Idempotency-Key (a cache, not a projection).
    r#"
    CREATE TABLE idempotency_keys (
        scope       TEXT    NOT NULL,
        key         TEXT    NOT NULL,
        fingerprint TEXT    NOT NULL,
        status      INTEGER NOT NULL,
        body        TEXT    NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (scope, key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
    "#,
    // 3: history by user: the bindings registered to a user, and users by identity, both
    // still found after their rows are gone.
    r#"
    CREATE INDEX events_registered_to ON events (json_extract(data, '$.user_sid'))
        WHERE type = 'BindingRegistered';
    CREATE INDEX events_user_identity ON events (service_sid, json_extract(data, '$.identity'))
        WHERE type = 'UserCreated';
    "#,
    // 4: what /readyz writes to prove the database takes writes (not a projection).
    r#"
    CREATE TABLE health (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        probes  INTEGER NOT NULL,
        padding BLOB
    );
    INSERT INTO health (id, probes) VALUES (1, 0);
    "#,
    // 5: the service-level binding list filtered by identity seeks, not scans.
    r#"
    CREATE INDEX bindings_by_identity ON bindings (identity, sid);
    "#,
    // 6: delivery records, one per notify and binding (beside the log, not a projection:
    // see deliveries.rs). Notification SIDs sort in creation order, so the key is also the
    // index that lists a binding's records newest first and trims them to the newest 20; the
    // row id says which record was written last.
    r#"
    CREATE TABLE deliveries (
        id               INTEGER PRIMARY KEY,
        notification_sid TEXT    NOT NULL,
        binding_sid      TEXT    NOT NULL,
        service_sid      TEXT    NOT NULL,
        account_sid      TEXT    NOT NULL,
        date_created     INTEGER NOT NULL,
        status           TEXT    NOT NULL,
        error            TEXT,
        provider_status  INTEGER,
        attempts         INTEGER NOT NULL,
        latency_ms       INTEGER NOT NULL
    );
    CREATE UNIQUE INDEX deliveries_by_binding ON deliveries (binding_sid, notification_sid);
    "#,
    // 7: what reading a credential found (CONTRACT §6.2: auth, key and team ids, topic,
    // expiry), as the JSON of its `CredentialProfile`; `{}` (unknown) for the credentials
    // stored before, as a replay of their events makes it.
    r#"
    ALTER TABLE credentials ADD COLUMN profile TEXT NOT NULL DEFAULT '{}';
    "#,
];

pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied = user_version(conn)?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::TooNew {
            found: applied,
            known: MIGRATIONS.len(),
        });
    }
    if applied == MIGRATIONS.len() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Another process may have migrated while this one waited for the lock.
    let applied = user_version(&tx)?;
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

fn user_version(conn: &Connection) -> rusqlite::Result<usize> {
    conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map(|v| v as usize)
}
