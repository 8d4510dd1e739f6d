//! Copies of a database: a backup file, an export of the log as JSON lines, and an import of
//! one into an empty store.

use std::path::Path;

use super::{replay, ImportReport, Store, StoreError, StoreOptions};
use crate::seal::ImportKey;
use crate::sids::MonotonicSids;

/// A consistent copy of the database at `path`, written to `target` (which must not exist),
/// taken on a read-only connection while a server may be writing (`VACUUM INTO`).
pub fn backup(path: &Path, target: &Path, options: &StoreOptions) -> Result<(), StoreError> {
    if target.exists() {
        return Err(StoreError::Refused(format!(
            "{} already exists",
            target.display()
        )));
    }
    let target = target
        .to_str()
        .ok_or_else(|| StoreError::Refused(format!("{} is not a UTF-8 path", target.display())))?;
    super::open_reader(path, options.busy_timeout)?.execute("VACUUM INTO ?1", [target])?;
    Ok(())
}

/// Writes every event of the store at `location` as one JSON line, oldest first, from a
/// read-only connection (so a backup on read-only media exports too), as of one snapshot.
pub fn export(
    location: &super::Location,
    out: &mut dyn std::io::Write,
    options: &StoreOptions,
) -> Result<u64, StoreError> {
    super::with_reader(location, options, |db| replay::export(db, out))
}

impl Store {
    /// Reads an export into this store, which must hold no events, and builds the projections.
    /// Sealed credentials in it must open under `key`, the data dir's.
    pub fn import(
        &mut self,
        input: &mut dyn std::io::BufRead,
        key: &ImportKey,
    ) -> Result<ImportReport, StoreError> {
        self.begin_write()?;
        let report = match replay::import(self.db(), input, key) {
            Ok(report) => report,
            Err(e) => {
                self.rollback_write();
                return Err(e);
            }
        };
        self.commit_write()?;
        // New SIDs must sort after the imported ones.
        self.sids = MonotonicSids::after(replay::newest_sid(self.db())?);
        Ok(report)
    }
}
