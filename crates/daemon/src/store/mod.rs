//! The SQLite event store: one file in WAL mode holding the log and its projections.
//!
//! **Architecture invariant**: only this module and `queries.rs` write SQL; the actors call the
//! functions here. Every accepted command appends its events and the projection rows they
//! imply, with the checkpoint, in one transaction; a caller hears of success only after that
//! transaction commits.

mod apply;
mod batch;
mod connection;
mod copy;
mod counts;
pub(crate) mod deliveries;
mod envelope;
mod error;
mod health;
mod idempotency;
pub mod log;
mod replay;
pub mod rows;
mod schema;
mod transaction;
mod wal;

use std::path::{Path, PathBuf};

use bindery_domain::{EntityKind, Row};
use rusqlite::{Connection, TransactionBehavior};

pub use self::log::StoredEvent;
pub use connection::{database_path, open_checkpointer, open_reader, StoreOptions, Synchronous};
pub use copy::{backup, export};
pub use counts::BindingCounts;
pub use envelope::{Committed, Envelope, Idempotency, Render, StoredResponse};
pub use error::{StoreError, WriteError};
pub use health::MIN_FREE_BYTES;
pub use idempotency::KEEP_SECONDS as IDEMPOTENCY_KEEP_SECONDS;
pub use replay::{Difference, ImportReport};
pub use schema::PROJECTION_TABLES;
pub use transaction::read_transaction;
pub use wal::checkpoint_passive;

use crate::sids::MonotonicSids;

/// The one writing connection to a database.
pub struct Store {
    conn: Connection,
    sids: MonotonicSids,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let mut conn = connection::open_writer(path, options)?;
        schema::migrate(&mut conn)?;
        let sids = MonotonicSids::after(replay::newest_sid(&conn)?);
        Ok(Store {
            conn,
            sids,
            path: path.to_owned(),
        })
    }

    /// The projection row of `kind` with this SID, as the writer sees it now.
    pub fn load_row(&self, kind: EntityKind, sid: &str) -> Result<Option<Row>, StoreError> {
        Ok(rows::load(&self.conn, kind, sid)?)
    }

    pub fn log_position(&self) -> Result<i64, StoreError> {
        Ok(log::last_position(&self.conn)?)
    }

    pub fn projection_position(&self) -> Result<i64, StoreError> {
        Ok(log::checkpoint(&self.conn)?)
    }

    /// The notification SID of the delivery record written last, as a number (see
    /// `deliveries::newest_notification_sid`).
    pub fn newest_notification_sid(&self) -> Result<Option<u128>, StoreError> {
        Ok(deliveries::newest_notification_sid(&self.conn)?)
    }

    /// Whether the log holds credentials sealed under a key (see `seal`).
    pub fn holds_sealed_secrets(&self) -> Result<bool, StoreError> {
        log::holds_sealed_secrets(&self.conn)
    }

    /// Drops every projection row and replays the whole log into them, in one transaction.
    /// Returns the number of events replayed.
    pub fn rebuild(&mut self) -> Result<u64, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let replayed = replay::rebuild_in(&tx)?;
        tx.commit()?;
        Ok(replayed)
    }
}

/// Verifies the database at `path`: replays its log into a scratch database and compares every
/// projection row with the live one.
pub fn verify(path: &Path, options: &StoreOptions) -> Result<Vec<Difference>, StoreError> {
    replay::verify(path, options.busy_timeout)
}
