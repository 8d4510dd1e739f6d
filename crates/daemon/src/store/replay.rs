//! Replaying the log: rebuild, verify, export and import.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, Write};

use bindery_domain::Event;

use super::apply::apply;
use super::sql::{self, Arg, Db, Engine, Value};
use super::{log, rows, StoreError, PROJECTION_TABLES};
use crate::seal::ImportKey;

/// The newest SID in the log, as a number, so that new SIDs sort after every existing one.
pub fn newest_sid(db: &dyn Db) -> Result<Option<u128>, StoreError> {
    let mut newest = None;
    for prefix in ["AC", "SK", "IS", "CR", "US", "BS"] {
        let upper = format!("{prefix}~");
        let stream = db.one(
            "SELECT stream FROM events WHERE stream >= ?1 AND stream < ?2 \
             ORDER BY stream DESC LIMIT 1",
            &[Arg::Text(prefix), Arg::Text(&upper)],
            |r| Ok(r.text(0)?.to_owned()),
        )?;
        let value = stream.and_then(|s| u128::from_str_radix(s.get(2..)?, 16).ok());
        newest = newest.max(value);
    }
    Ok(newest)
}

/// SQLite's page cache while rebuilding, in KiB (`PRAGMA cache_size` takes it negative): the
/// default 2 MB made a rebuild of a million bindings read and spill pages all the time.
const REBUILD_CACHE_KIB: i64 = 256 * 1024;

/// Empties the projections and replays every event into them. Returns the number replayed.
///
/// Replay reads and writes projection rows by SID only, so on SQLite the projections' other
/// indexes are dropped first and created again at the end: one sort each instead of an
/// update at a random place per event, and the unique ones check the replayed rows all at
/// once (a log that breaks an invariant fails the rebuild, and its transaction rolls back).
/// Nothing reads meanwhile: a rebuild is refused beside a server.
///
/// On PostgreSQL the indexes stay: the nodes keep serving during a rebuild, and DROP INDEX
/// would hold an ACCESS EXCLUSIVE lock on its table until the commit, so that every node's
/// reads of it would wait for the whole rebuild (and fail after `busy_timeout`). Kept, the
/// deletes and inserts lock rows only, the nodes read the projections as they were until
/// the commit, and the unique indexes check each replayed row as it goes in.
pub fn rebuild_in(db: &dyn Db) -> Result<u64, StoreError> {
    let indexes = match db.engine() {
        Engine::Sqlite => projection_indexes(db)?,
        Engine::Postgres => Vec::new(),
    };
    for (name, _) in &indexes {
        db.batch(&format!("DROP INDEX \"{name}\""))?;
    }
    for table in PROJECTION_TABLES {
        db.batch(&format!("DELETE FROM {table}"))?;
    }
    let cache = match db.engine() {
        Engine::Sqlite => {
            let cache = db.value("PRAGMA cache_size", &[], |r| r.int(0))?;
            db.batch(&format!("PRAGMA cache_size = {}", -REBUILD_CACHE_KIB))?;
            Some(cache)
        }
        Engine::Postgres => None,
    };
    let replayed = replay_into(db, db).and_then(|replayed| {
        for (_, sql) in &indexes {
            db.batch(sql)?;
        }
        Ok(replayed)
    });
    if let Some(cache) = cache {
        db.batch(&format!("PRAGMA cache_size = {cache}"))?;
    }
    replayed
}

/// The (name, CREATE statement) of every index on a projection table that the engine does
/// not make by itself (those hold the primary keys).
fn projection_indexes(db: &dyn Db) -> Result<Vec<(String, String)>, StoreError> {
    let sql = match db.engine() {
        Engine::Sqlite => {
            "SELECT tbl_name, name, sql FROM sqlite_schema \
             WHERE type = 'index' AND sql IS NOT NULL"
        }
        Engine::Postgres => {
            "SELECT i.tablename, i.indexname, i.indexdef FROM pg_indexes AS i \
             WHERE i.schemaname = current_schema() AND NOT EXISTS (SELECT 1 FROM \
             pg_constraint AS c WHERE c.conname = i.indexname AND c.contype = 'p')"
        }
    };
    let all = db.all(sql, &[], |r| {
        Ok((
            r.text(0)?.to_owned(),
            r.text(1)?.to_owned(),
            r.text(2)?.to_owned(),
        ))
    })?;
    Ok(all
        .into_iter()
        .filter(|(table, _, _)| PROJECTION_TABLES.contains(&table.as_str()))
        .map(|(_, name, sql)| (name, sql))
        .collect())
}

/// Replays the log of `source` into the projections of `target`, setting its checkpoint.
fn replay_into(source: &dyn Db, target: &dyn Db) -> Result<u64, StoreError> {
    let (mut count, mut last) = (0, 0);
    log::for_each_decoded(source, |recorded| {
        apply(target, &recorded)?;
        count += 1;
        last = recorded.position;
        Ok(())
    })?;
    log::set_checkpoint(target, last)?;
    Ok(count)
}

/// One way in which a live projection differs from a replay of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    OnlyLive {
        table: &'static str,
        sid: String,
    },
    OnlyReplayed {
        table: &'static str,
        sid: String,
    },
    Column {
        table: &'static str,
        sid: String,
        column: String,
        live: String,
        replayed: String,
    },
    Checkpoint {
        live: i64,
        replayed: i64,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::OnlyLive { table, sid } => {
                write!(f, "{table}: row {sid} is in the database but not in the replay of the log")
            }
            Difference::OnlyReplayed { table, sid } => {
                write!(f, "{table}: row {sid} is missing from the database (the log has it)")
            }
            Difference::Column { table, sid, column, live, replayed } => write!(
                f,
                "{table}: row {sid} differs in {column}: database has {live}, the log says {replayed}"
            ),
            Difference::Checkpoint { live, replayed } => write!(
                f,
                "checkpoint: the projections claim position {live}, the log ends at {replayed}"
            ),
        }
    }
}

/// Columns whose values are not shown in a difference: device tokens and push secrets.
const HIDDEN_COLUMNS: [&str; 2] = ["address", "secrets"];

fn show(column: &str, value: &Value) -> String {
    if HIDDEN_COLUMNS.contains(&column) {
        return "(hidden)".to_owned();
    }
    match value {
        Value::Null => "NULL".to_owned(),
        Value::Int(i) => i.to_string(),
        Value::Text(t) => format!("{t:?}"),
    }
}

/// Replays the log of `live` into a scratch SQLite database in memory, whichever engine
/// `live` is (the projection rule does not depend on it), and compares every projection
/// row with the live one, as of one snapshot of `live`.
pub fn verify(live: &dyn Db) -> Result<Vec<Difference>, StoreError> {
    let mut scratch = rusqlite::Connection::open_in_memory()?;
    super::sqlite::schema::migrate(&mut scratch)?;
    scratch.execute_batch("BEGIN")?;
    // Read the log and the projections as of one moment, even while a server writes.
    super::read_transaction(live, |live| {
        replay_into(live, &scratch)?;
        let mut differences = Vec::new();
        for table in PROJECTION_TABLES {
            compare_table(live, &scratch, table, &mut differences)?;
        }
        let (live_checkpoint, replayed) = (log::checkpoint(live)?, log::last_position(live)?);
        if live_checkpoint != replayed {
            differences.push(Difference::Checkpoint {
                live: live_checkpoint,
                replayed,
            });
        }
        Ok(differences)
    })
}

/// A table's columns, named in one order on both sides of a comparison.
fn columns_of(table: &str) -> &'static str {
    match table {
        "accounts" => rows::ACCOUNT_COLUMNS,
        "api_keys" => rows::API_KEY_COLUMNS,
        "services" => rows::SERVICE_COLUMNS,
        "credentials" => rows::CREDENTIAL_COLUMNS,
        "users" => rows::USER_COLUMNS,
        "bindings" => rows::BINDING_COLUMNS,
        other => unreachable!("{other} is no projection table"),
    }
}

/// Both tables' rows in SID order, compared side by side.
fn compare_table(
    live: &dyn Db,
    replayed: &dyn Db,
    table: &'static str,
    out: &mut Vec<Difference>,
) -> Result<(), StoreError> {
    let names: Vec<&str> = columns_of(table).split(',').map(str::trim).collect();
    let sql = format!("SELECT {} FROM {table} ORDER BY sid", columns_of(table));
    let read = |row: &dyn sql::SqlRow| -> Result<Vec<Value>, StoreError> {
        (0..names.len()).map(|i| row.value(i)).collect()
    };
    let live_rows = live.all(&sql, &[], read)?;
    let replayed_rows = replayed.all(&sql, &[], read)?;
    let sid_of = |row: &[Value]| match &row[0] {
        Value::Text(sid) => sid.clone(),
        other => format!("{other:?}"),
    };
    let (mut l, mut r) = (live_rows.iter().peekable(), replayed_rows.iter().peekable());
    loop {
        match (l.peek(), r.peek()) {
            (None, None) => return Ok(()),
            (Some(a), Some(b)) if sid_of(a) == sid_of(b) => {
                for (i, column) in names.iter().enumerate() {
                    if a[i] != b[i] {
                        out.push(Difference::Column {
                            table,
                            sid: sid_of(a),
                            column: (*column).to_owned(),
                            live: show(column, &a[i]),
                            replayed: show(column, &b[i]),
                        });
                    }
                }
                l.next();
                r.next();
            }
            (Some(a), b) if b.is_none_or(|b| sid_of(a) < sid_of(b)) => {
                out.push(Difference::OnlyLive {
                    table,
                    sid: sid_of(a),
                });
                l.next();
            }
            (_, Some(b)) => {
                out.push(Difference::OnlyReplayed {
                    table,
                    sid: sid_of(b),
                });
                r.next();
            }
            (Some(_), None) => unreachable!("handled above"),
        }
    }
}

pub fn export(db: &dyn Db, out: &mut dyn Write) -> Result<u64, StoreError> {
    // One snapshot, so an export taken while a server writes is a consistent prefix.
    super::read_transaction(db, |db| {
        let mut count = 0;
        log::for_each(db, 0, |event| {
            serde_json::to_writer(&mut *out, &event).map_err(std::io::Error::from)?;
            out.write_all(b"\n")?;
            count += 1;
            Ok(())
        })?;
        out.flush()?;
        Ok(count)
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub events: u64,
    pub last_position: i64,
}

/// Reads an export into the empty store of `tx`, a write transaction that the caller commits
/// when this succeeds. Every sealed credential value must open under `key`, the data dir's:
/// an export sealed elsewhere is refused whole rather than imported as credentials nothing
/// can use.
pub fn import(
    tx: &dyn Db,
    input: &mut dyn BufRead,
    key: &ImportKey,
) -> Result<ImportReport, StoreError> {
    let existing = log::last_position(tx)?;
    if existing != 0 {
        let place = match tx.engine() {
            Engine::Sqlite => "the data dir",
            Engine::Postgres => "the database",
        };
        return Err(StoreError::Refused(format!(
            "{place} already holds a log (up to position {existing}); import needs an empty one"
        )));
    }
    let mut versions: HashMap<String, i64> = HashMap::new();
    let (mut events, mut last_position) = (0, 0);
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: String| StoreError::Refused(format!("line {}: {what}", index + 1));
        let event: log::StoredEvent =
            serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        if event.position <= last_position {
            return Err(bad(format!(
                "position {} does not follow {last_position}",
                event.position
            )));
        }
        let expected = versions.get(&event.stream).copied().unwrap_or(0) + 1;
        if event.stream_version != expected {
            return Err(bad(format!(
                "stream {} is at version {} where {expected} was expected",
                event.stream, event.stream_version
            )));
        }
        let decoded = event.decode().map_err(|e| bad(e.to_string()))?;
        // Projection skips reading the current row for a creation, so the log itself must
        // say that a stream starts with its creation and never has another.
        if decoded.event.is_creation() != (event.stream_version == 1) {
            return Err(bad(format!(
                "{} at version {} of stream {}: a stream starts with its one creation event",
                event.type_name, event.stream_version, event.stream
            )));
        }
        if let Event::CredentialCreated { secrets, .. } | Event::CredentialUpdated { secrets, .. } =
            &decoded.event
        {
            key.check(secrets).map_err(|e| bad(e.to_string()))?;
        }
        log::insert_stored(tx, &event)?;
        versions.insert(event.stream, expected);
        last_position = event.position;
        events += 1;
    }
    rebuild_in(tx)?;
    Ok(ImportReport {
        events,
        last_position,
    })
}
