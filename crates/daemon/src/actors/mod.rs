//! The actors around the store, and [`Daemon`], the handle the HTTP adapter talks to.

mod reader;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

pub use reader::{Read, Reader};
pub use writer::{Close, Execute, Probe, Writer};

use crate::clock::{Clock, SystemClock};
use crate::metrics::Metrics;
use crate::queries::ReadView;
use crate::store::{self, Committed, Envelope, Store, StoreError, StoreOptions, WriteError};

#[derive(Clone)]
pub struct DaemonOptions {
    pub data_dir: PathBuf,
    pub store: StoreOptions,
    pub group_commit: bool,
    pub readers: usize,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
}

impl DaemonOptions {
    pub fn new(data_dir: PathBuf) -> Self {
        DaemonOptions {
            data_dir,
            store: StoreOptions::default(),
            group_commit: true,
            readers: 2,
            clock: Arc::new(SystemClock),
            metrics: Metrics::new(),
        }
    }
}

/// The running daemon: addresses of the writer and the reader pool.
#[derive(Clone)]
pub struct Daemon {
    writer: Addr<Writer>,
    readers: Addr<Reader>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
}

impl Daemon {
    /// Opens the store and starts the actors; call inside a running actix `System`.
    pub fn start(options: DaemonOptions) -> Result<Daemon, StoreError> {
        let path = store::database_path(&options.data_dir);
        let store = Store::open(&path, &options.store)?;
        let metrics = options.metrics.clone();
        let position = store.projection_position()?;
        metrics.projection_position.set(position);
        metrics.log_position.set(store.log_position()?);
        let counts = store.binding_counts()?;
        for binding_type in bindery_domain::BindingType::ALL {
            metrics
                .bindings
                .with_label_values(&[binding_type.as_str()])
                .set(counts.get(binding_type));
        }
        // Fail now, not on the first request, if a reader cannot open the database.
        store::open_reader(&path, options.store.busy_timeout)?;
        let clock = options.clock.clone();
        let group_commit = options.group_commit;
        let writer_clock = clock.clone();
        let writer_metrics = metrics.clone();
        let writer = Writer::start_in_arbiter(&Arbiter::new().handle(), move |_| {
            Writer::new(store, writer_clock, writer_metrics, group_commit)
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
            metrics,
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

    /// Why the daemon cannot serve writes now, if it cannot: the database does not take the
    /// write lock, or the projections lag the log.
    pub async fn readiness(&self) -> Result<(), String> {
        let writable = self.writer.send(Probe).await;
        match writable {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("the database is not writable: {e}")),
            Err(_) => return Err("the writer is not running".into()),
        }
        let positions = self.read(|view| view.positions()).await;
        match positions {
            Ok((projected, logged)) if projected == logged => Ok(()),
            Ok((projected, logged)) => Err(format!(
                "projections at position {projected}, the log at {logged}"
            )),
            Err(e) => Err(format!("the database is not readable: {e}")),
        }
    }

    /// Commits what is pending and closes the database cleanly.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.writer.send(Close).await.unwrap_or(Ok(()))
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// How long a caller should wait before retrying after the storage was unavailable.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs(1)
    }
}
