//! The probe behind readiness: whether a write commits now.

use std::path::Path;

use crate::store::{Store, StoreError};

/// Below this much free space where the database lives, Bindery reports itself not ready.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024;

impl Store {
    /// Whether a write commits now: the file system holding the database has room
    /// ([`MIN_FREE_BYTES`]), and a real write of a few pages (a counter and 16 KiB of padding in
    /// `health`, beside the log) commits, so that a full disk, a lock held too long or a
    /// read-only file shows here as it would for a command. (Free space matters on its own: a
    /// small write can reuse room in the WAL that a larger command cannot.)
    ///
    /// On PostgreSQL, a real write commits on the primary (see `postgres::probe_writable`).
    pub fn probe_writable(&mut self) -> Result<(), StoreError> {
        let Some((conn, path)) = self.sqlite() else {
            self.connected()?;
            return self.probe_postgres();
        };
        let directory = path.parent().unwrap_or(Path::new("."));
        if let Ok(stats) = rustix::fs::statvfs(directory) {
            let free = stats.f_bavail.saturating_mul(stats.f_frsize);
            if free < MIN_FREE_BYTES {
                return Err(StoreError::Io(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    format!("{} has {free} bytes free", directory.display()),
                )));
            }
        }
        let result = conn.execute_batch(
            "BEGIN IMMEDIATE; \
             UPDATE health SET probes = probes + 1, padding = zeroblob(16384) WHERE id = 1; \
             COMMIT;",
        );
        if result.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        result?;
        Ok(())
    }
}
