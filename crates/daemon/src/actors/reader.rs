//! Reads: connections lent to one query at a time, on the caller's own thread.
//!
//! A query over the projections takes microseconds on SQLite and, in WAL mode, never waits
//! for the writer. Handing it to a reader thread and waiting for the answer cost more than
//! the query (two context switches and a wake-up of the HTTP worker, about a third of a
//! fetch's CPU in `make bench`), so the HTTP workers run their reads themselves, each on a
//! connection borrowed from this pool: with one connection per concurrent reader, every
//! statement stays prepared in its connection's cache. The queries of one `run` share one
//! read transaction: they see one snapshot, and SQLite takes its read lock (`fcntl` calls)
//! once.
//!
//! On PostgreSQL the same pool lends connections to the primary (reads go there, so a write
//! acknowledged by any node is seen by the next read on every node); a read waits for its
//! round trips on the calling thread (see `store::postgres::client`). A connection that broke
//! is dropped, and the next read connects again.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use crate::metrics::Metrics;
use crate::queries::ReadView;
use crate::store::postgres::{Client, Target};
use crate::store::sql::Db;
use crate::store::{self, Location, StoreError};

/// Idle connections kept for the next reads; more open when more reads run at once.
const KEEP_IDLE: usize = 32;

pub struct Readers {
    source: Source,
    idle: Mutex<Vec<Connection>>,
    metrics: Metrics,
}

enum Source {
    Sqlite {
        path: PathBuf,
        busy_timeout: Duration,
    },
    Postgres(Box<Target>),
}

enum Connection {
    Sqlite(rusqlite::Connection),
    Postgres(Client),
}

impl Connection {
    fn db(&self) -> &dyn Db {
        match self {
            Connection::Sqlite(conn) => conn,
            Connection::Postgres(client) => client,
        }
    }

    /// Whether it can be lent again: not left inside a transaction (ending it failed, and
    /// it would keep its snapshot), not broken.
    fn reusable(&self) -> bool {
        match self {
            Connection::Sqlite(conn) => conn.is_autocommit(),
            Connection::Postgres(client) => !client.is_broken(),
        }
    }
}

impl Readers {
    /// Opens `count` connections now, so that a database that cannot be read fails at start.
    pub fn open(
        location: &Location,
        busy_timeout: Duration,
        count: usize,
        metrics: Metrics,
    ) -> Result<Self, StoreError> {
        let source = match location {
            Location::Sqlite(path) => Source::Sqlite {
                path: path.clone(),
                busy_timeout,
            },
            Location::Postgres(target) => Source::Postgres(target.clone()),
        };
        let readers = Readers {
            source,
            idle: Mutex::new(Vec::new()),
            metrics,
        };
        let opened = (0..count.max(1))
            .map(|_| readers.connect())
            .collect::<Result<Vec<_>, _>>()?;
        *readers.lock() = opened;
        Ok(readers)
    }

    fn connect(&self) -> Result<Connection, StoreError> {
        Ok(match &self.source {
            Source::Sqlite { path, busy_timeout } => {
                Connection::Sqlite(store::open_reader(path, *busy_timeout)?)
            }
            Source::Postgres(target) => Connection::Postgres(Client::connect(target, None)?),
        })
    }

    /// Runs `query` on an idle connection, opening one if every connection is busy.
    pub fn run<F, R>(&self, query: F) -> Result<R, StoreError>
    where
        F: FnOnce(&ReadView) -> Result<R, StoreError>,
    {
        // One that broke while idle (the database restarted, failed over) is dropped here.
        let idle = std::iter::from_fn(|| self.lock().pop()).find(Connection::reusable);
        let conn = match idle {
            Some(conn) => conn,
            None => self.connect()?,
        };
        let in_use = self
            .metrics
            .database_connections
            .with_label_values(&["in_use"]);
        in_use.inc();
        let result = store::read_transaction(conn.db(), |db| query(&ReadView::new(db)));
        in_use.dec();
        if conn.reusable() {
            let mut idle = self.lock();
            if idle.len() < KEEP_IDLE {
                idle.push(conn);
            }
        }
        result
    }

    /// The idle connections; the gauge of idle ones is set again when the guard goes.
    fn lock(&self) -> IdleGuard<'_> {
        // A query that panicked held no lock: the list itself is always whole.
        IdleGuard {
            idle: self.idle.lock().unwrap_or_else(|e| e.into_inner()),
            metrics: &self.metrics,
        }
    }
}

struct IdleGuard<'a> {
    idle: std::sync::MutexGuard<'a, Vec<Connection>>,
    metrics: &'a Metrics,
}

impl std::ops::Deref for IdleGuard<'_> {
    type Target = Vec<Connection>;
    fn deref(&self) -> &Vec<Connection> {
        &self.idle
    }
}

impl std::ops::DerefMut for IdleGuard<'_> {
    fn deref_mut(&mut self) -> &mut Vec<Connection> {
        &mut self.idle
    }
}

impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        self.metrics
            .database_connections
            .with_label_values(&["idle"])
            .set(self.idle.len() as i64);
    }
}
