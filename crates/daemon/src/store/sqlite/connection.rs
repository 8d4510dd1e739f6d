//! Opening connections to the database file, and the settings (pragmas) each kind runs with:
//! the one writer, the checkpointer and the read-only readers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::StoreError;

/// The database file inside a data directory.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("bindery.db")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// fsync at every commit: an acknowledged write survives a power cut.
    Full,
    /// fsync at checkpoints: survives a crash of Bindery, not of the machine.
    Normal,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub synchronous: Synchronous,
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Settings of every connection, the writer's and the readers'.
fn configure_any(conn: &Connection, busy_timeout: Duration) -> Result<(), StoreError> {
    conn.busy_timeout(busy_timeout)?;
    // The bundled SQLite is built with STAT4, under which a statement whose plan may depend on
    // a bound value is prepared again whenever that value changes: a cached statement would
    // be compiled anew on most executions (6% of a registration, 9% of a list, in `make
    // bench`). Bindery runs no ANALYZE, so the plans cannot gain from it: plan once.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

fn configure(conn: &Connection, options: &StoreOptions) -> Result<(), StoreError> {
    configure_any(conn, options.busy_timeout)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    let synchronous = match options.synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    // Each command of a batch runs in a savepoint, whose statement journal keeps the pages it
    // changes; in memory, not in a temporary file written on every command.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

/// Opens (creating it and its directory if needed) the writing connection to `path`; the
/// schema is not yet migrated.
pub(crate) fn open_writer(path: &Path, options: &StoreOptions) -> Result<Connection, StoreError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let conn = Connection::open(path)?;
    // SQLite falls back to reading a file it may not write, and such a connection never
    // writes again even once the file system is writable: refuse to start instead.
    if conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(StoreError::Refused(format!(
            "{} cannot be written (a read-only file system, or its permissions)",
            path.display()
        )));
    }
    configure(&conn, options)?;
    Ok(conn)
}

/// Opens the connection that checkpoints the log (see `actors::checkpointer`).
pub fn open_checkpointer(path: &Path, options: &StoreOptions) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure_any(&conn, options.busy_timeout)?;
    Ok(conn)
}

/// Opens a read-only connection for queries. Readers never block the writer (WAL).
pub fn open_reader(path: &Path, busy_timeout: Duration) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure_any(&conn, busy_timeout)?;
    Ok(conn)
}
