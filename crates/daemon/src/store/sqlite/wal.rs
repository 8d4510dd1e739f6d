//! The write-ahead log: the writer's commit hook, and checkpoints that copy the log into the
//! database file.

use rusqlite::Connection;

use crate::store::{Store, StoreError};

/// Copies what it can of the WAL into the database file without waiting for the writer or
/// the readers (the checkpointer's, on its own connection).
pub fn checkpoint_passive(conn: &Connection) -> Result<(), StoreError> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    Ok(())
}

impl Store {
    /// Calls `hook` after each commit with the log's size in pages, in place of SQLite's
    /// automatic checkpoint (SQLite only).
    pub fn on_commit(
        &mut self,
        hook: impl FnMut(&mut rusqlite::hooks::Wal, i32) -> rusqlite::Result<()> + Send + 'static,
    ) -> Result<(), StoreError> {
        if let Some((conn, _)) = self.sqlite() {
            conn.wal_hook(Some(hook))?;
        }
        Ok(())
    }

    /// Copies the WAL into the database file and truncates it: a clean close (nothing to do
    /// on PostgreSQL).
    pub fn checkpoint_wal(&mut self) -> Result<(), StoreError> {
        if let Some((conn, _)) = self.sqlite() {
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        }
        Ok(())
    }
}
