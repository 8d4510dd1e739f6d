//! Bindery's daemon: the SQLite event store with its projections, the actors around it (the
//! writer, the checkpointer, the sweeper, the push dispatchers) and the pool of read-only
//! connections that queries borrow.
//!
//! **Architecture invariant**: this crate knows nothing of HTTP or of Twilio's wire format.

pub mod actors;
pub mod clock;
pub mod cluster;
pub mod credential_check;
pub mod delivery;
pub mod feed;
pub mod lock;
pub mod metrics;
pub mod notifications;
pub mod private_file;
pub mod queries;
pub mod records;
pub mod seal;
pub mod secrets;
pub mod sids;
pub mod store;

pub use actors::{Daemon, DaemonOptions};
pub use metrics::Metrics;
pub use seal::{ImportKey, SealError, Sealer};
pub use store::{
    Committed, Envelope, Idempotency, Store, StoreError, StoreOptions, StoredResponse, Synchronous,
    WriteError,
};
