//! Replaying the log: rebuild, verify, export and import.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior};

use bindery_domain::Event;

use super::apply::apply;
use super::{log, schema, StoreError};
use crate::seal::ImportKey;

/// The newest SID in the log, as a number, so that new SIDs sort after every existing one.
pub fn newest_sid(conn: &Connection) -> Result<Option<u128>, StoreError> {
    let mut newest = None;
    let mut statement = conn.prepare_cached(
        "SELECT stream FROM events WHERE stream >= ?1 AND stream < ?2 ORDER BY stream DESC LIMIT 1",
    )?;
    for prefix in ["AC", "SK", "IS", "CR", "US", "BS"] {
        let upper = format!("{prefix}~");
        let stream: Option<String> = statement
            .query_row([prefix, upper.as_str()], |r| r.get(0))
            .ok();
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
/// Replay reads and writes projection rows by SID only, so the projections' other indexes
/// are dropped first and created again at the end: one sort each instead of an update at a
/// random place per event, and the unique ones check the replayed rows all at once (a log
/// that breaks an invariant fails the rebuild, and its transaction rolls back).
pub fn rebuild_in(conn: &Connection) -> Result<u64, StoreError> {
    let indexes = projection_indexes(conn)?;
    for (name, _) in &indexes {
        conn.execute(&format!("DROP INDEX \"{name}\""), [])?;
    }
    for table in schema::PROJECTION_TABLES {
        conn.execute(&format!("DELETE FROM {table}"), [])?;
    }
    let cache: i64 = conn.query_row("PRAGMA cache_size", [], |r| r.get(0))?;
    conn.pragma_update(None, "cache_size", -REBUILD_CACHE_KIB)?;
    let replayed = replay_into(conn, conn).and_then(|replayed| {
        for (_, sql) in &indexes {
            conn.execute(sql, [])?;
        }
        Ok(replayed)
    });
    conn.pragma_update(None, "cache_size", cache)?;
    replayed
}

/// The (name, CREATE statement) of every index on a projection table that SQLite does not
/// make by itself (those hold the primary keys).
fn projection_indexes(conn: &Connection) -> Result<Vec<(String, String)>, StoreError> {
    let mut statement = conn.prepare(
        "SELECT tbl_name, name, sql FROM sqlite_schema WHERE type = 'index' AND sql IS NOT NULL",
    )?;
    let mut indexes = Vec::new();
    for index in statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))? {
        let (table, name, sql): (String, String, String) = index?;
        if schema::PROJECTION_TABLES.contains(&table.as_str()) {
            indexes.push((name, sql));
        }
    }
    Ok(indexes)
}

/// Replays the log of `source` into the projections of `target`, setting its checkpoint.
fn replay_into(source: &Connection, target: &Connection) -> Result<u64, StoreError> {
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
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) => format!("{t:?}"),
        Value::Blob(b) => format!("a blob of {} bytes", b.len()),
    }
}

pub fn verify(path: &Path, busy_timeout: Duration) -> Result<Vec<Difference>, StoreError> {
    let live = super::open_reader(path, busy_timeout)?;
    let mut scratch = Connection::open_in_memory()?;
    schema::migrate(&mut scratch)?;
    let tx = scratch.transaction()?;
    // Read the log and the projections as of one moment, even while a server writes.
    super::read_transaction(&live, |live| {
        replay_into(live, &tx)?;
        let mut differences = Vec::new();
        for table in schema::PROJECTION_TABLES {
            compare_table(live, &tx, table, &mut differences)?;
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

/// Walks both tables in SID order side by side, so memory stays flat however large they are.
fn compare_table(
    live: &Connection,
    replayed: &Connection,
    table: &'static str,
    out: &mut Vec<Difference>,
) -> Result<(), StoreError> {
    let sql = format!("SELECT * FROM {table} ORDER BY sid");
    let mut live_statement = live.prepare(&sql)?;
    let mut replayed_statement = replayed.prepare(&sql)?;
    let columns: Vec<String> = live_statement.column_names().map(str::to_owned).collect();
    let read = |row: &rusqlite::Row| -> rusqlite::Result<Vec<Value>> {
        (0..columns.len()).map(|i| row.get(i)).collect()
    };
    let mut live_rows = live_statement.query([])?;
    let mut replayed_rows = replayed_statement.query([])?;
    let mut next_live = live_rows.next()?.map(read).transpose()?;
    let mut next_replayed = replayed_rows.next()?.map(read).transpose()?;
    let sid_of = |row: &[Value]| match &row[0] {
        Value::Text(sid) => sid.clone(),
        other => format!("{other:?}"),
    };
    loop {
        match (&next_live, &next_replayed) {
            (None, None) => return Ok(()),
            (Some(l), Some(r)) if sid_of(l) == sid_of(r) => {
                for (i, column) in columns.iter().enumerate() {
                    if l[i] != r[i] {
                        out.push(Difference::Column {
                            table,
                            sid: sid_of(l),
                            column: column.clone(),
                            live: show(column, &l[i]),
                            replayed: show(column, &r[i]),
                        });
                    }
                }
                next_live = live_rows.next()?.map(read).transpose()?;
                next_replayed = replayed_rows.next()?.map(read).transpose()?;
            }
            (Some(l), r) if r.as_ref().is_none_or(|r| sid_of(l) < sid_of(r)) => {
                out.push(Difference::OnlyLive {
                    table,
                    sid: sid_of(l),
                });
                next_live = live_rows.next()?.map(read).transpose()?;
            }
            (_, Some(r)) => {
                out.push(Difference::OnlyReplayed {
                    table,
                    sid: sid_of(r),
                });
                next_replayed = replayed_rows.next()?.map(read).transpose()?;
            }
            (Some(_), None) => unreachable!("handled above"),
        }
    }
}

pub fn export(conn: &Connection, out: &mut dyn Write) -> Result<u64, StoreError> {
    // One snapshot, so an export taken while a server writes is a consistent prefix.
    let tx = conn.unchecked_transaction()?;
    let mut count = 0;
    log::for_each(&tx, 0, |event| {
        serde_json::to_writer(&mut *out, &event).map_err(std::io::Error::from)?;
        out.write_all(b"\n")?;
        count += 1;
        Ok(())
    })?;
    out.flush()?;
    tx.finish()?;
    Ok(count)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub events: u64,
    pub last_position: i64,
}

/// Reads an export into the empty store of `conn`. Every sealed credential value must open
/// under `key`, the data dir's: an export sealed elsewhere is refused whole rather than
/// imported as credentials nothing can use.
pub fn import(
    conn: &mut Connection,
    input: &mut dyn BufRead,
    key: &ImportKey,
) -> Result<ImportReport, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let existing = log::last_position(&tx)?;
    if existing != 0 {
        return Err(StoreError::Refused(format!(
            "the data dir already holds a log (up to position {existing}); import needs an empty one"
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
        log::insert_stored(&tx, &event)?;
        versions.insert(event.stream, expected);
        last_position = event.position;
        events += 1;
    }
    rebuild_in(&tx)?;
    tx.commit()?;
    Ok(ImportReport {
        events,
        last_position,
    })
}
