//! Transactions whose statements are prepared once per connection: a command's savepoint
//! inside the writer's batch, and a reader's read transaction.

use rusqlite::Connection;

use super::{StoreError, WriteError};

/// Runs `body` in a savepoint: released when it succeeds, rolled back when it fails. The
/// statements are prepared once per connection (rusqlite's `Savepoint` prepares its SQL text
/// anew each time, a cost paid on every command of a group commit). The outer error means
/// the savepoint could be neither released nor rolled back: the transaction holds changes
/// of a command whose outcome is unknown, and must not commit.
pub(super) fn in_savepoint<T>(
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

/// Runs `body` in a read transaction on a reader's connection, so that its queries see one
/// snapshot and SQLite takes its read lock once. The statements are prepared once per
/// connection, as for a savepoint.
pub fn read_transaction<R>(
    conn: &Connection,
    body: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let statement = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
    statement("BEGIN")?;
    let result = body(conn);
    // Ending a read transaction loses nothing, whichever way it ends.
    let ended = statement("COMMIT");
    if ended.is_err() && !conn.is_autocommit() {
        let _ = statement("ROLLBACK");
    }
    let value = result?;
    ended?;
    Ok(value)
}
