//! Reads: read-only connections lent to one query at a time, on the caller's own thread.
//!
//! A query over the projections takes microseconds and, in WAL mode, never waits for the
//! writer. Handing it to a reader thread and waiting for the answer cost more than the query
//! (two context switches and a wake-up of the HTTP worker, about a third of a fetch's CPU
//! in `make bench`), so the HTTP workers run their reads themselves, each on a connection
//! borrowed from this pool: with one connection per concurrent reader, every statement
//! stays prepared in its connection's cache. The queries of one `run` share one read
//! transaction: they see one snapshot, and SQLite takes its read lock (`fcntl` calls) once.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::Connection;

use crate::queries::ReadView;
use crate::store::{self, StoreError};

pub struct Readers {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    /// Opens `count` connections now, so that a database that cannot be read fails at start.
    pub fn open(path: PathBuf, busy_timeout: Duration, count: usize) -> Result<Self, StoreError> {
        let idle = (0..count.max(1))
            .map(|_| store::open_reader(&path, busy_timeout))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Readers {
            path,
            busy_timeout,
            idle: Mutex::new(idle),
        })
    }

    /// Runs `query` on an idle connection, opening one if every connection is busy.
    pub fn run<F, R>(&self, query: F) -> Result<R, StoreError>
    where
        F: FnOnce(&ReadView) -> Result<R, StoreError>,
    {
        let idle = self.lock().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => store::open_reader(&self.path, self.busy_timeout)?,
        };
        let result = store::read_transaction(&conn, |db| query(&ReadView::new(db)));
        // One left inside a transaction (ending it failed) would keep its snapshot: not lent
        // again.
        if conn.is_autocommit() {
            self.lock().push(conn);
        }
        result
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A query that panicked held no lock: the list itself is always whole.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}
