//! SQLite's schema and its migrations, applied at start-up in order. `PRAGMA user_version`
//! counts the migrations already applied; a database newer than this binary is refused.

use rusqlite::Connection;

use crate::store::StoreError;

/// The migrations, one file each, in order (`migrations/`).
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_log.sql"),
    include_str!("migrations/0002_idempotency.sql"),
    include_str!("migrations/0003_history_indexes.sql"),
    include_str!("migrations/0004_health.sql"),
    include_str!("migrations/0005_bindings_by_identity.sql"),
    include_str!("migrations/0006_deliveries.sql"),
    include_str!("migrations/0007_credential_profile.sql"),
    include_str!("migrations/0008_console_sessions.sql"),
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
