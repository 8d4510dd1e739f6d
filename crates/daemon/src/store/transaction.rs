//! A command's savepoint inside the writer's batch, and a reader's read transaction, on
//! either engine. Their statements are prepared once per connection (rusqlite's `Savepoint`
//! prepares its SQL text anew each time, a cost paid on every command of a group commit).

use super::sql::{Db, Engine};
use super::{StoreError, WriteError};

/// Runs `body` in a savepoint: released when it succeeds, rolled back when it fails. The
/// outer error means the savepoint could be neither released nor rolled back: the
/// transaction holds changes of a command whose outcome is unknown, and must not commit.
pub(super) fn in_savepoint<T>(
    db: &dyn Db,
    body: impl FnOnce(&dyn Db) -> Result<T, WriteError>,
) -> Result<Result<T, WriteError>, StoreError> {
    let run = |sql: &str| db.execute(sql, &[]);
    if let Err(e) = run("SAVEPOINT command") {
        return Ok(Err(e.into()));
    }
    let result = body(db);
    if result.is_ok() {
        match run("RELEASE command") {
            Ok(_) => return Ok(result),
            Err(e) => {
                run("ROLLBACK TO command")?;
                run("RELEASE command")?;
                return Ok(Err(e.into()));
            }
        }
    }
    run("ROLLBACK TO command")?;
    run("RELEASE command")?;
    Ok(result)
}

/// Runs `body` in a read transaction, so that its queries see one snapshot (and SQLite takes
/// its read lock once). Ending a read transaction loses nothing, whichever way it ends.
pub fn read_transaction<R>(
    db: &dyn Db,
    body: impl FnOnce(&dyn Db) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    let begin = match db.engine() {
        Engine::Sqlite => "BEGIN",
        // One snapshot for every statement, as SQLite's read transaction gives.
        Engine::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    };
    db.execute(begin, &[])?;
    let result = body(db);
    let ended = db.execute("COMMIT", &[]);
    if ended.is_err() {
        let _ = db.execute("ROLLBACK", &[]);
    }
    let value = result?;
    ended?;
    Ok(value)
}
