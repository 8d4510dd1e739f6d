//! What goes wrong in the store, and what a caller of a write hears of it.

use bindery_domain::{DomainError, ProjectionError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// tokio-postgres names only the kind of failure ("db error", "error connecting to
    /// server") and keeps the server's or the socket's words in its source; they are in the
    /// message, not a `source`: a caller printing the chain would show the kind twice, and a
    /// log line of the error alone would show no reason.
    #[error("database error: {}", postgres_text(.0))]
    Postgres(tokio_postgres::Error),
    /// The database did not answer within `storage.busy_timeout`.
    #[error("the database did not answer within {0:?}")]
    Timeout(std::time::Duration),
    #[error("a stored value (column {column} of a row) is unreadable: {what}")]
    Unreadable { column: usize, what: String },
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
    /// The key that seals credentials is missing, malformed, or not the one they were sealed
    /// under.
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        StoreError::Postgres(error)
    }
}

/// A tokio-postgres error with every cause it holds: `db error: ERROR: …`, `error connecting
/// to server: Connection refused`.
fn postgres_text(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

impl From<rusqlite::types::FromSqlError> for StoreError {
    fn from(error: rusqlite::types::FromSqlError) -> Self {
        StoreError::Sqlite(error.into())
    }
}

impl StoreError {
    /// A stored value that cannot be read back: the database was changed behind Bindery's
    /// back.
    pub fn column(index: usize, what: impl std::fmt::Display) -> StoreError {
        StoreError::Unreadable {
            column: index,
            what: what.to_string(),
        }
    }

    /// What is wrong, in words that name no path or query: for answers anyone may read
    /// (`/readyz` is unauthenticated). The log has the error itself.
    pub fn kind_of_failure(&self) -> &'static str {
        use rusqlite::ErrorCode::*;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => match e.code {
                DatabaseBusy | DatabaseLocked => "another process holds the database's lock",
                DiskFull => "the disk is full",
                ReadOnly => "the database or its file system is read-only",
                SystemIoFailure => "the file system failed a read or write",
                CannotOpen => "the database file cannot be opened",
                _ => "the database failed",
            },
            StoreError::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                "the disk is (nearly) full"
            }
            StoreError::Io(_) => "the file system failed a read or write",
            StoreError::Sqlite(_) => "the database failed",
            StoreError::Postgres(e) => postgres_failure(e),
            StoreError::Timeout(_) => "the database does not answer",
            StoreError::Corrupt { .. } | StoreError::Projection(_) => "the log is inconsistent",
            StoreError::Unreadable { .. } => "the database holds a value Bindery did not write",
            StoreError::TooNew { .. } => "the database was written by a newer Bindery",
            StoreError::Refused(_) => "the database refused",
            StoreError::Seal(_) => "the key that seals credentials is unusable",
        }
    }

    /// Whether the failure is the storage's (full disk, lock held too long, read-only file),
    /// worth retrying later, rather than a fault in Bindery or its data.
    pub fn is_unavailable(&self) -> bool {
        use rusqlite::ErrorCode::*;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                DatabaseBusy | DatabaseLocked | DiskFull | ReadOnly | SystemIoFailure | CannotOpen
            ),
            StoreError::Io(_) | StoreError::Timeout(_) => true,
            StoreError::Postgres(e) => postgres_unavailable(e),
            _ => false,
        }
    }
}

/// PostgreSQL's errors that mean "not now": the connection (lost, refused, closed by a
/// shutdown or failover), a standby that takes no writes, too many connections, a
/// serialization failure or deadlock (a transaction to run again).
fn postgres_unavailable(error: &tokio_postgres::Error) -> bool {
    let Some(db) = error.as_db_error() else {
        // Not an answer of the server: the socket, the connection, a timeout.
        return true;
    };
    let code = db.code().code();
    code.starts_with("08")
        || code.starts_with("57P")
        || matches!(code, "53300" | "25006" | "40001" | "40P01" | "55000")
}

fn postgres_failure(error: &tokio_postgres::Error) -> &'static str {
    match error.as_db_error().map(|db| db.code().code()) {
        None => "the database cannot be reached",
        Some("25006") => "the database is read-only (a standby)",
        Some("53300") => "the database has no connection free",
        Some(code) if code.starts_with("08") || code.starts_with("57P") => {
            "the database cannot be reached"
        }
        Some(_) => "the database failed",
    }
}

/// Why a command did not commit.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Refused(#[from] DomainError),
    /// A credential's secrets or profile fields cannot push (CONTRACT §6.2): refused before
    /// the command reached the writer. Names the form field, never its value.
    #[error(transparent)]
    InvalidCredential(#[from] crate::delivery::credential::InvalidCredential),
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
