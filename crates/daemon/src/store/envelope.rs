//! What goes into a write (a command in its envelope) and what comes out (`Committed`).

use bindery_domain::{Command, RecordedEvent, Row};

use super::BindingCounts;

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
