//! Who may change a data dir wholesale. A running server holds `bindery.lock` in its data dir
//! for as long as it runs; `rebuild` and `import`, which rewrite every projection in one long
//! transaction (and so would make a server beside them answer 503 until they finish), take the
//! same lock and are refused while a server holds it. Commands that commit one small change
//! (`accounts`, `keys`) or only read (`verify`, `export`, `backup`) take no lock: SQLite keeps
//! them safe beside a server.
//!
//! The lock is an OS file lock (`flock`): it goes with the process however it ends, SIGKILL
//! included, so a crash never leaves a data dir locked.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// The lock file inside a data directory.
pub fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("bindery.lock")
}

/// A held lock on a data dir; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another Bindery process (a running server, or a rebuild or import) holds {}",
        .0.display()
    )]
    Held(PathBuf),
    #[error("cannot lock {}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl DataDirLock {
    /// Takes the data dir's lock, creating the dir if needed, without waiting for it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = lock_path(data_dir);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        // Any open file takes the lock: an existing one is opened for reading, so that a data
        // dir on a read-only file system can still be locked (and then refused by the store,
        // with its own message).
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .or_else(|_| File::open(&path))
                .map_err(io)?,
            Err(e) => return Err(io(e)),
        };
        match file.try_lock() {
            Ok(()) => Ok(DataDirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::Held(path)),
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_refuses_a_second_holder_until_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let refused = DataDirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(refused, LockError::Held(_)), "{refused}");
        drop(held);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
