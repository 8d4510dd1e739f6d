//! Bindery's daemon: the SQLite event store with its projections, and the actors that own its
//! connections (one writer, a pool of readers).
//!
//! **Architecture invariant**: this crate knows nothing of HTTP or of Twilio's wire format.

pub mod actors;
pub mod clock;
pub mod delivery;
pub mod feed;
pub mod lock;
pub mod metrics;
pub mod notifications;
pub mod queries;
pub mod secrets;
pub mod sids;
pub mod store;

pub use actors::{Daemon, DaemonOptions};
pub use metrics::Metrics;
pub use store::{
    Committed, Envelope, Idempotency, Store, StoreError, StoreOptions, StoredResponse, Synchronous,
    WriteError,
};
