//! The actors around the store, and [`Daemon`], the handle the HTTP adapter talks to.

mod reader;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

pub use reader::{Read, Reader};
pub use writer::{Execute, Writer};

use crate::clock::{Clock, SystemClock};
use crate::queries::ReadView;
use crate::store::{self, Committed, Envelope, Store, StoreError, StoreOptions, WriteError};

#[derive(Clone)]
pub struct DaemonOptions {
    pub data_dir: PathBuf,
    pub store: StoreOptions,
    pub group_commit: bool,
    pub readers: usize,
    pub clock: Arc<dyn Clock>,
}

impl DaemonOptions {
    pub fn new(data_dir: PathBuf) -> Self {
        DaemonOptions {
            data_dir,
            store: StoreOptions::default(),
            group_commit: true,
            readers: 2,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The running daemon: addresses of the writer and the reader pool.
#[derive(Clone)]
pub struct Daemon {
    writer: Addr<Writer>,
    readers: Addr<Reader>,
    clock: Arc<dyn Clock>,
}

impl Daemon {
    /// Opens the store and starts the actors; call inside a running actix `System`.
    pub fn start(options: DaemonOptions) -> Result<Daemon, StoreError> {
        let path = store::database_path(&options.data_dir);
        let store = Store::open(&path, &options.store)?;
        // Fail now, not on the first request, if a reader cannot open the database.
        store::open_reader(&path, options.store.busy_timeout)?;
        let clock = options.clock.clone();
        let group_commit = options.group_commit;
        let writer_clock = clock.clone();
        let writer = Writer::start_in_arbiter(&Arbiter::new().handle(), move |_| {
            Writer::new(store, writer_clock, group_commit)
        });
        let busy_timeout = options.store.busy_timeout;
        let readers = SyncArbiter::start(options.readers.max(1), move || {
            // Opening worked a moment ago; if it fails now, the reader restarts and retries.
            let conn = store::open_reader(&path, busy_timeout)
                .unwrap_or_else(|e| panic!("cannot open a reader: {e}"));
            Reader::new(conn)
        });
        Ok(Daemon {
            writer,
            readers,
            clock,
        })
    }

    pub async fn execute(&self, envelope: Envelope) -> Result<Committed, WriteError> {
        self.writer
            .send(Execute(envelope))
            .await
            .unwrap_or_else(|_| Err(WriteError::Unavailable("the writer is not running".into())))
    }

    pub async fn read<F, R>(&self, query: F) -> Result<R, StoreError>
    where
        F: FnOnce(&ReadView) -> Result<R, StoreError> + Send + 'static,
        R: Send + 'static,
    {
        self.readers
            .send(Read::new(query))
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Io(std::io::Error::other(
                    "the readers are not running",
                )))
            })
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// How long a caller should wait before retrying after the storage was unavailable.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs(1)
    }
}
