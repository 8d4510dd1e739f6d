//! The event store: the log and its projections, on SQLite (one file, the embedded default)
//! or PostgreSQL (many nodes on one database).
//!
//! **Architecture invariant**: only this module and `queries.rs` write SQL; the actors call the
//! functions here. Every accepted command appends its events and the projection rows they
//! imply, with the checkpoint, in one transaction; a caller hears of success only after that
//! transaction commits. The logic is written once over [`sql::Db`]; `sqlite/` and
//! `postgres/` hold what each engine has of its own.

mod apply;
mod batch;
pub mod console_sessions;
mod copy;
mod counts;
pub(crate) mod deliveries;
mod envelope;
mod error;
mod idempotency;
pub mod log;
pub mod postgres;
mod replay;
pub mod rows;
pub mod sql;
pub mod sqlite;
mod transaction;

use std::path::{Path, PathBuf};

use bindery_domain::{EntityKind, Row};

pub use self::log::StoredEvent;
pub use copy::{backup, export};
pub use counts::{binding_counts, BindingCounts};
pub use envelope::{Committed, Envelope, Idempotency, Render, StoredResponse};
pub use error::{StoreError, WriteError};
pub use idempotency::KEEP_SECONDS as IDEMPOTENCY_KEEP_SECONDS;
pub use replay::{Difference, ImportReport};
pub use sqlite::connection::{
    database_path, open_checkpointer, open_reader, StoreOptions, Synchronous,
};
pub use sqlite::health::MIN_FREE_BYTES;
pub use sqlite::wal::checkpoint_passive;
pub use transaction::read_transaction;

use crate::sids::MonotonicSids;
use sql::Db;

/// The projection tables, in the order `verify` reports them.
pub const PROJECTION_TABLES: [&str; 6] = [
    "accounts",
    "api_keys",
    "services",
    "credentials",
    "users",
    "bindings",
];

/// The one writing connection to a database.
pub struct Store {
    backend: Backend,
    sids: MonotonicSids,
}

/// The engine behind a store, and what it keeps of its own.
enum Backend {
    Sqlite {
        conn: rusqlite::Connection,
        path: PathBuf,
    },
    Postgres {
        /// `None` after the connection broke, until the next write connects again.
        client: Option<postgres::Client>,
        target: Box<postgres::Target>,
    },
}

/// Which database a store opens.
#[derive(Debug, Clone)]
pub enum Location {
    /// The SQLite file at this path.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(Box<postgres::Target>),
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let mut conn = sqlite::connection::open_writer(path, options)?;
        sqlite::schema::migrate(&mut conn)?;
        Store::over(Backend::Sqlite {
            conn,
            path: path.to_owned(),
        })
    }

    /// Opens the store at `location`, migrating its schema.
    pub fn open_at(location: &Location, options: &StoreOptions) -> Result<Store, StoreError> {
        match location {
            Location::Sqlite(path) => Store::open(path, options),
            Location::Postgres(target) => {
                let client = postgres::Client::connect(target, None)?;
                postgres::migrate(&client)?;
                Store::over(Backend::Postgres {
                    client: Some(client),
                    target: target.clone(),
                })
            }
        }
    }

    fn over(backend: Backend) -> Result<Store, StoreError> {
        let mut store = Store {
            backend,
            sids: MonotonicSids::after(None),
        };
        store.sids = MonotonicSids::after(replay::newest_sid(store.db())?);
        Ok(store)
    }

    /// The connection, for the shared logic.
    ///
    /// # Panics
    /// On PostgreSQL, if the connection broke and was not made again: every caller goes
    /// through [`Store::connected`] first.
    fn db(&self) -> &dyn Db {
        match &self.backend {
            Backend::Sqlite { conn, .. } => conn,
            Backend::Postgres { client, .. } => client.as_ref().expect("connected first"),
        }
    }

    /// The connection, made again first if it broke (PostgreSQL).
    fn connected(&mut self) -> Result<&dyn Db, StoreError> {
        if let Backend::Postgres { client, target } = &mut self.backend {
            if client.as_ref().is_none_or(postgres::Client::is_broken) {
                *client = None;
                *client = Some(postgres::Client::connect(target, None)?);
            }
        }
        Ok(self.db())
    }

    /// The connection and the SIDs, apart, for a batch that reads one and advances the other.
    fn db_and_sids(&mut self) -> (&dyn Db, &mut MonotonicSids) {
        let db: &dyn Db = match &self.backend {
            Backend::Sqlite { conn, .. } => conn,
            Backend::Postgres { client, .. } => client.as_ref().expect("connected first"),
        };
        (db, &mut self.sids)
    }

    /// Begins a write transaction under the engine's write lock, and returns the log's last
    /// position: positions continue from it, dense and in commit order.
    fn begin_write(&mut self) -> Result<i64, StoreError> {
        self.connected()?;
        let head = match &self.backend {
            Backend::Sqlite { conn, .. } => {
                Db::execute(conn, "BEGIN IMMEDIATE", &[]).and_then(|_| log::last_position(conn))
            }
            Backend::Postgres { client, .. } => {
                postgres::begin_write(client.as_ref().expect("connected above"))
            }
        };
        head.inspect_err(|_| self.rollback_write())
    }

    fn commit_write(&mut self) -> Result<(), StoreError> {
        let committed = self.db().execute("COMMIT", &[]);
        if committed.is_err() {
            self.rollback_write();
        }
        committed.map(|_| ())
    }

    /// Ends a write transaction that must not commit (whatever state it is in).
    fn rollback_write(&self) {
        match &self.backend {
            Backend::Sqlite { conn, .. } => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
            }
            Backend::Postgres { client, .. } => {
                // A broken connection is dropped with its transaction at the next write.
                if let Some(client) = client.as_ref().filter(|c| !c.is_broken()) {
                    let _ = client.batch("ROLLBACK");
                }
            }
        }
    }

    /// How long a failed batch may be run again for: PostgreSQL's `busy_timeout`; never on
    /// SQLite, whose failures (a full disk, a lock held too long) do not pass in a moment.
    fn retry_within(&self) -> Option<std::time::Duration> {
        match &self.backend {
            Backend::Sqlite { .. } => None,
            Backend::Postgres { target, .. } => Some(target.timeout),
        }
    }

    /// Writes a change to the console's sessions in a transaction of its own (no events:
    /// on PostgreSQL it does not take the log's write lock).
    pub fn write_sessions(
        &mut self,
        change: &console_sessions::SessionWrite,
        now: bindery_domain::Timestamp,
    ) -> Result<(), StoreError> {
        let db = self.connected()?;
        let begin = match db.engine() {
            sql::Engine::Sqlite => "BEGIN IMMEDIATE",
            sql::Engine::Postgres => "BEGIN",
        };
        db.execute(begin, &[])?;
        if let Err(e) = console_sessions::write(self.db(), change, now) {
            self.rollback_write();
            return Err(e);
        }
        self.commit_write()
    }

    /// On PostgreSQL, checks that `sealer` holds the key the registry's other nodes seal
    /// under (see `Sealer::check_shared`); nothing to check on SQLite, one node's own.
    pub fn check_sealing_key(&mut self, sealer: &crate::seal::Sealer) -> Result<(), StoreError> {
        if self.engine() == sql::Engine::Sqlite {
            return Ok(());
        }
        let db = self.connected()?;
        sealer.check_shared(|proposed| postgres::claim_key_check(db, proposed))
    }

    /// Which engine this store runs on.
    pub fn engine(&self) -> sql::Engine {
        match &self.backend {
            Backend::Sqlite { .. } => sql::Engine::Sqlite,
            Backend::Postgres { .. } => sql::Engine::Postgres,
        }
    }

    /// The projection row of `kind` with this SID, as the writer sees it now.
    pub fn load_row(&mut self, kind: EntityKind, sid: &str) -> Result<Option<Row>, StoreError> {
        rows::load(self.connected()?, kind, sid)
    }

    pub fn log_position(&mut self) -> Result<i64, StoreError> {
        log::last_position(self.connected()?)
    }

    pub fn projection_position(&mut self) -> Result<i64, StoreError> {
        log::checkpoint(self.connected()?)
    }

    /// The notification SID of the delivery record written last, as a number (see
    /// `deliveries::newest_notification_sid`).
    pub fn newest_notification_sid(&mut self) -> Result<Option<u128>, StoreError> {
        deliveries::newest_notification_sid(self.connected()?)
    }

    /// Whether the log holds credentials sealed under a key (see `seal`).
    pub fn holds_sealed_secrets(&mut self) -> Result<bool, StoreError> {
        log::holds_sealed_secrets(self.connected()?)
    }

    /// Drops every projection row and replays the whole log into them, in one transaction
    /// under the write lock. Returns the number of events replayed.
    pub fn rebuild(&mut self) -> Result<u64, StoreError> {
        self.begin_write()?;
        match replay::rebuild_in(self.db()) {
            Ok(replayed) => {
                self.commit_write()?;
                Ok(replayed)
            }
            Err(e) => {
                self.rollback_write();
                Err(e)
            }
        }
    }
}

/// Verifies the database at `path`: replays its log into a scratch database and compares every
/// projection row with the live one.
pub fn verify(path: &Path, options: &StoreOptions) -> Result<Vec<Difference>, StoreError> {
    verify_at(&Location::Sqlite(path.to_owned()), options)
}

/// [`verify`] on either engine.
pub fn verify_at(
    location: &Location,
    options: &StoreOptions,
) -> Result<Vec<Difference>, StoreError> {
    with_reader(location, options, |db| replay::verify(db))
}

/// Runs `body` on a read-only connection to the store at `location` (SQLite's opened read-only,
/// so a copy on read-only media reads too), outside any transaction.
pub fn with_reader<R>(
    location: &Location,
    options: &StoreOptions,
    body: impl FnOnce(&dyn Db) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    match location {
        Location::Sqlite(path) => body(&open_reader(path, options.busy_timeout)?),
        Location::Postgres(target) => body(&postgres::Client::connect(target, None)?),
    }
}

impl Store {
    /// The SQLite connection and its file, for what only SQLite has (checkpoints, the probe
    /// of free space).
    fn sqlite(&mut self) -> Option<(&mut rusqlite::Connection, &Path)> {
        match &mut self.backend {
            Backend::Sqlite { conn, path } => Some((conn, path)),
            Backend::Postgres { .. } => None,
        }
    }
}

impl Store {
    fn probe_postgres(&mut self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Postgres {
                client: Some(client),
                ..
            } => postgres::probe_writable(client),
            _ => unreachable!("connected to PostgreSQL first"),
        }
    }
}
