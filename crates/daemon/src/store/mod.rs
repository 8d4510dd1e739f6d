//! The SQLite event store: one file in WAL mode holding the log and its projections.
//!
//! **Architecture invariant**: only this module writes SQL. Every accepted command appends its
//! events and the projection rows they imply, with the checkpoint, in one transaction; a caller
//! hears of success only after that transaction commits.

mod idempotency;
pub mod log;
mod replay;
pub mod rows;
mod schema;

use std::path::{Path, PathBuf};
use std::time::Duration;

use bindery_domain::*;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

pub use self::log::StoredEvent;
pub use idempotency::KEEP_SECONDS as IDEMPOTENCY_KEEP_SECONDS;
pub use replay::{Difference, ImportReport};
pub use schema::PROJECTION_TABLES;

use crate::sids::MonotonicSids;

/// The database file inside a data directory.
pub fn database_path(data_dir: &Path) -> PathBuf {
    data_dir.join("bindery.db")
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the log is inconsistent at position {position}: {what}")]
    Corrupt { position: i64, what: String },
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error(
        "the database was written by a newer Bindery ({found} migrations; this one knows {known})"
    )]
    TooNew { found: usize, known: usize },
    #[error("{0}")]
    Refused(String),
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// Whether the failure is the storage's (full disk, lock held too long, read-only file),
    /// worth retrying later, rather than a fault in Bindery or its data.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode::*;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                DatabaseBusy | DatabaseLocked | DiskFull | ReadOnly | SystemIoFailure | CannotOpen
            ),
            StoreError::Io(_) => true,
            _ => false,
        }
    }
}

/// Why a command did not commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Refused(#[from] DomainError),
    /// The idempotency key was used within a day for a different request.
    #[error("Idempotency-Key {0:?} was already used for a different request")]
    KeyReused(String),
    /// The storage cannot take writes now (disk full, locked, read-only); try again later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A fault in Bindery or its data; retrying will not help.
    #[error("storage failed: {0}")]
    Failed(String),
}

impl From<StoreError> for WriteError {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            WriteError::Unavailable(error.to_string())
        } else {
            WriteError::Failed(error.to_string())
        }
    }
}

/// A command and what the log records about who asked.
#[derive(Debug)]
pub struct Envelope {
    pub command: Command,
    pub request_id: Option<String>,
    pub idempotency: Option<Idempotency>,
}

impl From<Command> for Envelope {
    fn from(command: Command) -> Self {
        Envelope {
            command,
            request_id: None,
            idempotency: None,
        }
    }
}

/// An answer as the caller's adapter rendered it; the store keeps it as opaque text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// Renders the answer to a committed command, inside its transaction.
pub type Render = Box<dyn Fn(&Committed) -> Option<StoredResponse> + Send>;

/// A request's idempotency key: the same `key` in the same `scope` (the account) with the
/// same `fingerprint` (method, path and body) within a day is answered from the first time.
pub struct Idempotency {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
    pub render: Render,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("scope", &self.scope)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A committed command.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    pub created: bool,
    /// The subject's row after the command (`None` when it was removed).
    pub row: Option<Row>,
    pub events: Vec<RecordedEvent>,
    /// The rendered answer, when the request carried an idempotency key: remembered now, or
    /// the one remembered from the first time (then nothing was appended).
    pub response: Option<StoredResponse>,
    /// How the command changed the number of bindings of each type.
    pub binding_changes: BindingCounts,
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

/// Below this much free space where the database lives, Bindery reports itself not ready.
pub const MIN_FREE_BYTES: u64 = 1024 * 1024;

/// The one writing connection to a database.
pub struct Store {
    conn: Connection,
    sids: MonotonicSids,
    path: PathBuf,
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

/// Runs `body` in a savepoint: released when it succeeds, rolled back when it fails. The
/// statements are prepared once per connection (rusqlite's `Savepoint` prepares its SQL text
/// anew each time, a cost paid on every command of a group commit). The outer error means
/// the savepoint could be neither released nor rolled back: the transaction holds changes
/// of a command whose outcome is unknown, and must not commit.
fn in_savepoint<T>(
    conn: &Connection,
    body: impl FnOnce(&Connection) -> Result<T, WriteError>,
) -> Result<Result<T, WriteError>, StoreError> {
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
    if let Err(e) = run("SAVEPOINT command") {
        return Ok(Err(StoreError::from(e).into()));
    }
    let result = body(conn);
    if result.is_ok() {
        match run("RELEASE command") {
            Ok(_) => return Ok(result),
            Err(e) => {
                run("ROLLBACK TO command")?;
                run("RELEASE command")?;
                return Ok(Err(StoreError::from(e).into()));
            }
        }
    }
    run("ROLLBACK TO command")?;
    run("RELEASE command")?;
    Ok(result)
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

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut conn = Connection::open(path)?;
        // SQLite falls back to reading a file it may not write, and such a connection never
        // writes again even once the file system is writable: refuse to start instead.
        if conn.is_readonly(rusqlite::MAIN_DB)? {
            return Err(StoreError::Refused(format!(
                "{} cannot be written (a read-only file system, or its permissions)",
                path.display()
            )));
        }
        configure(&conn, options)?;
        schema::migrate(&mut conn)?;
        let sids = MonotonicSids::after(replay::newest_sid(&conn)?);
        Ok(Store {
            conn,
            sids,
            path: path.to_owned(),
        })
    }

    /// Decides and commits a batch of commands in one transaction: one fsync for all of them.
    /// Each command runs in its own savepoint, so a refused or failing command rolls back alone.
    /// If the commit itself fails, every command fails.
    pub fn execute(
        &mut self,
        batch: &[Envelope],
        now: Timestamp,
    ) -> Vec<Result<Committed, WriteError>> {
        let fail_all = |e: StoreError| {
            let error = WriteError::from(e);
            batch.iter().map(|_| Err(error.clone())).collect()
        };
        let tx = match self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
        {
            Ok(tx) => tx,
            Err(e) => return fail_all(e.into()),
        };
        let mut results = Vec::with_capacity(batch.len());
        let mut last_position = None;
        for envelope in batch {
            let result = in_savepoint(&tx, |savepoint| -> Result<Committed, WriteError> {
                if let Some(idem) = &envelope.idempotency {
                    let found = idempotency::lookup(savepoint, &idem.scope, &idem.key, now)
                        .map_err(StoreError::from)?;
                    match found {
                        Some(seen) if seen.fingerprint == idem.fingerprint => {
                            return Ok(Committed {
                                response: Some(seen.response),
                                ..Committed::default()
                            });
                        }
                        Some(_) => return Err(WriteError::KeyReused(idem.key.clone())),
                        None => {}
                    }
                }
                let state = rows::SqlState(savepoint);
                let decision = match decide(&state, &mut self.sids, &envelope.command) {
                    Ok(decision) => decision,
                    Err(Refusal::Domain(e)) => return Err(e.into()),
                    Err(Refusal::State(e)) => return Err(StoreError::from(e).into()),
                };
                let mut committed = Committed {
                    created: decision.created,
                    ..Committed::default()
                };
                for pending in &decision.events {
                    let recorded =
                        log::append(savepoint, pending, now, envelope.request_id.as_deref())?;
                    let row = apply_counting(savepoint, &recorded, &mut committed.binding_changes)?;
                    if recorded.stream == decision.subject {
                        committed.row = row;
                    }
                    committed.events.push(recorded);
                }
                if let Some(idem) = &envelope.idempotency {
                    committed.response = (idem.render)(&committed);
                    if let Some(response) = &committed.response {
                        idempotency::remember(
                            savepoint,
                            &idem.scope,
                            &idem.key,
                            &idem.fingerprint,
                            response,
                            now,
                        )
                        .map_err(StoreError::from)?;
                    }
                }
                Ok(committed)
            });
            // Dropping the transaction rolls back the whole batch.
            let result = match result {
                Ok(result) => result,
                Err(e) => return fail_all(e),
            };
            if let Ok(committed) = &result {
                last_position = committed
                    .events
                    .last()
                    .map(|e| e.position)
                    .or(last_position);
            }
            results.push(result);
        }
        let remembered = batch.iter().any(|e| e.idempotency.is_some());
        let finish = |tx: rusqlite::Transaction| -> Result<(), StoreError> {
            if let Some(position) = last_position {
                log::set_checkpoint(&tx, position)?;
            }
            if remembered {
                idempotency::expire(&tx, now)?;
            }
            tx.commit()?;
            Ok(())
        };
        match finish(tx) {
            Ok(()) => results,
            Err(e) => fail_all(e),
        }
    }

    /// Runs one command in a transaction of its own.
    pub fn execute_one(
        &mut self,
        envelope: Envelope,
        now: Timestamp,
    ) -> Result<Committed, WriteError> {
        self.execute(std::slice::from_ref(&envelope), now)
            .pop()
            .expect("one result per command")
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn log_position(&self) -> Result<i64, StoreError> {
        Ok(log::last_position(&self.conn)?)
    }

    pub fn projection_position(&self) -> Result<i64, StoreError> {
        Ok(log::checkpoint(&self.conn)?)
    }

    /// Whether a write commits now: the file system holding the database has room
    /// ([`MIN_FREE_BYTES`]), and a real write of a few pages (a counter and 16 KiB of padding in
    /// `health`, beside the log) commits, so that a full disk, a lock held too long or a
    /// read-only file shows here as it would for a command. (Free space matters on its own: a
    /// small write can reuse room in the WAL that a larger command cannot.)
    pub fn probe_writable(&mut self) -> Result<(), StoreError> {
        let directory = self.path.parent().unwrap_or(Path::new("."));
        if let Ok(stats) = rustix::fs::statvfs(directory) {
            let free = stats.f_bavail.saturating_mul(stats.f_frsize);
            if free < MIN_FREE_BYTES {
                return Err(StoreError::Io(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    format!("{} has {free} bytes free", directory.display()),
                )));
            }
        }
        let result = self.conn.execute_batch(
            "BEGIN IMMEDIATE; \
             UPDATE health SET probes = probes + 1, padding = zeroblob(16384) WHERE id = 1; \
             COMMIT;",
        );
        if result.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        result?;
        Ok(())
    }

    /// Copies the WAL into the database file and truncates it: a clean close.
    /// Calls `hook` after each commit with the log's size in pages, in place of SQLite's
    /// automatic checkpoint.
    pub fn on_commit(
        &mut self,
        hook: impl FnMut(&mut rusqlite::hooks::Wal, i32) -> rusqlite::Result<()> + Send + 'static,
    ) -> Result<(), StoreError> {
        self.conn.wal_hook(Some(hook))?;
        Ok(())
    }

    pub fn checkpoint_wal(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }

    /// The bindings stored, by type.
    pub fn binding_counts(&self) -> Result<BindingCounts, StoreError> {
        // One pass with a sum per type. GROUP BY would sort every row first, and in memory
        // (temp_store = MEMORY): with a million bindings that left the heap 50 MB larger
        // after start-up.
        let sums: Vec<String> = BindingType::ALL
            .iter()
            .map(|t| format!("coalesce(sum(binding_type = '{}'), 0)", t.as_str()))
            .collect();
        let sql = format!("SELECT {} FROM bindings", sums.join(", "));
        let mut counts = BindingCounts::default();
        self.conn.query_row(&sql, [], |row| {
            for (i, binding_type) in BindingType::ALL.into_iter().enumerate() {
                counts.add(binding_type, row.get(i)?);
            }
            Ok(())
        })?;
        Ok(counts)
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

    /// Writes every event as one JSON line, oldest first.
    /// Reads an export into this store, which must hold no events, and builds the projections.
    pub fn import(&mut self, input: &mut dyn std::io::BufRead) -> Result<ImportReport, StoreError> {
        let report = replay::import(&mut self.conn, input)?;
        self.sids = MonotonicSids::after(replay::newest_sid(&self.conn)?);
        Ok(report)
    }
}

/// A consistent copy of the database at `path`, written to `target` (which must not exist),
/// taken on a read-only connection while a server may be writing (`VACUUM INTO`).
pub fn backup(path: &Path, target: &Path) -> Result<(), StoreError> {
    if target.exists() {
        return Err(StoreError::Refused(format!(
            "{} already exists",
            target.display()
        )));
    }
    let target = target
        .to_str()
        .ok_or_else(|| StoreError::Refused(format!("{} is not a UTF-8 path", target.display())))?;
    open_reader(path, StoreOptions::default().busy_timeout)?.execute("VACUUM INTO ?1", [target])?;
    Ok(())
}

/// Writes every event of the database at `path` as one JSON line, oldest first, from a
/// read-only connection (so a backup on read-only media exports too).
pub fn export(path: &Path, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
    replay::export(
        &open_reader(path, StoreOptions::default().busy_timeout)?,
        out,
    )
}

/// Verifies the database at `path`: replays its log into a scratch database and compares every
/// projection row with the live one.
pub fn verify(path: &Path) -> Result<Vec<Difference>, StoreError> {
    replay::verify(path)
}

/// Applies one recorded event to the projection tables, returning the stream's new row.
fn apply(conn: &Connection, recorded: &RecordedEvent) -> Result<Option<Row>, StoreError> {
    apply_counting(conn, recorded, &mut BindingCounts::default())
}

/// [`apply`], adding to `counts` the binding it created (+1) or removed (-1).
fn apply_counting(
    conn: &Connection,
    recorded: &RecordedEvent,
    counts: &mut BindingCounts,
) -> Result<Option<Row>, StoreError> {
    let kind = recorded.event.entity();
    let current = if recorded.event.is_creation() {
        None
    } else {
        rows::load(conn, kind, &recorded.stream)?
    };
    if let Some(Row::Binding(removed)) = &current {
        counts.add(removed.binding_type, -1);
    }
    let row = project(current, recorded)?;
    match &row {
        Some(row) => rows::store(conn, row)?,
        None => rows::remove(conn, kind, &recorded.stream)?,
    }
    if let Some(Row::Binding(binding)) = &row {
        counts.add(binding.binding_type, 1);
    }
    Ok(row)
}

/// How many bindings of each type a command added (or removed, when negative).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BindingCounts([i64; 3]);

impl BindingCounts {
    fn index(binding_type: BindingType) -> usize {
        match binding_type {
            BindingType::Apn => 0,
            BindingType::Gcm => 1,
            BindingType::Fcm => 2,
        }
    }
    pub fn add(&mut self, binding_type: BindingType, change: i64) {
        self.0[Self::index(binding_type)] += change;
    }
    pub fn get(&self, binding_type: BindingType) -> i64 {
        self.0[Self::index(binding_type)]
    }
}
