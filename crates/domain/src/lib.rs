//! Bindery's domain: what a push-binding registry is, with no IO.
//!
//! **Architecture invariant**: this crate names no crate that does IO, no async runtime and no
//! wire format. Ids and values are validated on construction; commands are decided against
//! current state into events by pure functions; projections are a pure fold of events.

pub mod commands;
pub mod decide;
pub mod entities;
pub mod events;
pub mod ids;
pub mod memory;
pub mod notify;
pub mod projection;
pub mod values;

#[cfg(test)]
mod decide_tests;

pub use commands::{Command, ProfileFields, RegisterBinding, UserRef};
pub use decide::{decide, Decided, Decision, DomainError, NewSids, Refusal, State};
pub use entities::*;
pub use events::{BindingRemoval, DecodeError, Event, PendingEvent, RecordedEvent, UserRemoval};
pub use ids::*;
pub use projection::{project, ProjectionError};
pub use values::*;
