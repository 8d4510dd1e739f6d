//! The event log: appending, and reading back in order. The log is the only source of truth.

use bindery_domain::*;
use serde::{Deserialize, Serialize};

use super::sql::{cached_sql, Arg, Db, Engine, SqlRow};
use super::StoreError;

/// An event exactly as stored: its data is the stored JSON text, untouched, which is what
/// export writes and import reads (so that export → import → export is byte-identical).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub position: i64,
    pub stream: String,
    pub stream_version: i64,
    #[serde(rename = "type")]
    pub type_name: String,
    pub schema_version: u32,
    pub data: Box<serde_json::value::RawValue>,
    pub recorded_at: String,
    pub account_sid: String,
    pub service_sid: Option<String>,
    pub request_id: Option<String>,
}

impl StoredEvent {
    /// The event decoded (and upcast) for projection.
    pub fn decode(&self) -> Result<RecordedEvent, StoreError> {
        let recorded_at =
            Timestamp::parse_rfc3339(&self.recorded_at).ok_or_else(|| StoreError::Corrupt {
                position: self.position,
                what: format!("bad recorded_at {:?}", self.recorded_at),
            })?;
        decode(Columns {
            position: self.position,
            stream: &self.stream,
            stream_version: self.stream_version,
            type_name: &self.type_name,
            schema_version: self.schema_version,
            data: self.data.get(),
            recorded_at,
            account_sid: &self.account_sid,
            service_sid: self.service_sid.as_deref(),
            request_id: self.request_id.as_deref(),
        })
    }
}

/// An event's columns, borrowed from a row or a [`StoredEvent`].
struct Columns<'a> {
    position: i64,
    stream: &'a str,
    stream_version: i64,
    type_name: &'a str,
    schema_version: u32,
    data: &'a str,
    recorded_at: Timestamp,
    account_sid: &'a str,
    service_sid: Option<&'a str>,
    request_id: Option<&'a str>,
}

fn decode(columns: Columns) -> Result<RecordedEvent, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt {
        position: columns.position,
        what,
    };
    Ok(RecordedEvent {
        position: columns.position,
        stream: columns.stream.to_owned(),
        stream_version: columns.stream_version,
        account_sid: AccountSid::parse(columns.account_sid).map_err(|e| corrupt(e.to_string()))?,
        service_sid: columns
            .service_sid
            .map(ServiceSid::parse)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
        recorded_at: columns.recorded_at,
        request_id: columns.request_id.map(str::to_owned),
        event: Event::decode(columns.type_name, columns.schema_version, columns.data)
            .map_err(|e| corrupt(e.to_string()))?,
    })
}

const SELECT_EVENTS: &str = "SELECT position, stream, stream_version, type, schema_version, data, \
     recorded_at, account_sid, service_sid, request_id FROM events";

fn stored(r: &dyn SqlRow) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        position: r.int(0)?,
        stream: r.text(1)?.to_owned(),
        stream_version: r.int(2)?,
        type_name: r.text(3)?.to_owned(),
        schema_version: u32::try_from(r.int(4)?).map_err(|e| StoreError::column(4, e))?,
        data: serde_json::value::RawValue::from_string(r.text(5)?.to_owned())
            .map_err(|e| StoreError::column(5, e))?,
        recorded_at: Timestamp::from_unix(r.int(6)?).to_string(),
        account_sid: r.text(7)?.to_owned(),
        service_sid: r.opt_text(8)?.map(str::to_owned),
        request_id: r.opt_text(9)?.map(str::to_owned),
    })
}

/// The events matching `condition` (SQL over the events table, with `args`), in the order
/// and number `tail` gives (e.g. `ORDER BY position LIMIT 51`).
pub fn select(
    db: &dyn Db,
    condition: &str,
    tail: &str,
    args: &[Arg<'_>],
) -> Result<Vec<StoredEvent>, StoreError> {
    db.all(
        &format!("{SELECT_EVENTS} WHERE {condition} {tail}"),
        args,
        stored,
    )
}

/// Events are read this many at a time by [`for_each`] and [`for_each_decoded`], so that a
/// walk over the whole log holds one page in memory, on either engine.
const PAGE: i64 = 10_000;

/// Calls `each` on every event after `after`, oldest first, a page at a time. Run it in one
/// transaction (a read transaction, or the writer's) for one snapshot.
pub fn for_each(
    db: &dyn Db,
    after: i64,
    mut each: impl FnMut(StoredEvent) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut after = after;
    loop {
        let page = db.all(
            cached_sql!("{SELECT_EVENTS} WHERE position > ?1 ORDER BY position LIMIT ?2"),
            &[Arg::Int(after), Arg::Int(PAGE)],
            stored,
        )?;
        let Some(last) = page.last().map(|e| e.position) else {
            return Ok(());
        };
        for event in page {
            each(event)?;
        }
        after = last;
    }
}

/// Calls `each` on every event, oldest first, decoded straight from its row (replay's path:
/// no stored text kept, no timestamp formatted and parsed again).
pub fn for_each_decoded(
    db: &dyn Db,
    mut each: impl FnMut(RecordedEvent) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut after = 0;
    loop {
        let mut read = 0;
        db.each(
            cached_sql!("{SELECT_EVENTS} WHERE position > ?1 ORDER BY position LIMIT ?2"),
            &[Arg::Int(after), Arg::Int(PAGE)],
            &mut |row| {
                let recorded = decode(Columns {
                    position: row.int(0)?,
                    stream: row.text(1)?,
                    stream_version: row.int(2)?,
                    type_name: row.text(3)?,
                    schema_version: u32::try_from(row.int(4)?)
                        .map_err(|e| StoreError::column(4, e))?,
                    data: row.text(5)?,
                    recorded_at: Timestamp::from_unix(row.int(6)?),
                    account_sid: row.text(7)?,
                    service_sid: row.opt_text(8)?,
                    request_id: row.opt_text(9)?,
                })?;
                after = recorded.position;
                read += 1;
                each(recorded)
            },
        )?;
        if read < PAGE {
            return Ok(());
        }
    }
}

/// Whether any credential event holds a value sealed under a key (`seal::SEALED_PREFIX`):
/// then the data dir cannot do with a new key. Deleted credentials count too, since their
/// events are still exported and imported.
pub fn holds_sealed_secrets(db: &dyn Db) -> Result<bool, StoreError> {
    let sql = match db.engine() {
        Engine::Sqlite => {
            "SELECT EXISTS (SELECT 1 FROM events, json_each(events.data, '$.secrets') AS field \
             WHERE events.type IN ('CredentialCreated', 'CredentialUpdated') \
             AND substr(field.value, 1, ?2) = ?1)"
        }
        Engine::Postgres => {
            "SELECT EXISTS (SELECT 1 FROM events, \
             json_each_text(events.data::json -> 'secrets') AS field \
             WHERE events.type IN ('CredentialCreated', 'CredentialUpdated') \
             AND substr(field.value, 1, ?2) = ?1)"
        }
    };
    db.value(
        sql,
        &[
            Arg::Text(crate::seal::SEALED_PREFIX),
            Arg::Int(crate::seal::SEALED_PREFIX.len() as i64),
        ],
        |r| r.bool(0),
    )
}

/// Appends one event to its stream at the next stream version, at log `position` (the next
/// one: the batch keeps the count, under the engine's write lock).
pub fn append(
    db: &dyn Db,
    event: &PendingEvent,
    position: i64,
    at: Timestamp,
    request_id: Option<&str>,
) -> Result<RecordedEvent, StoreError> {
    let stream_version = db.value(
        "SELECT COALESCE(MAX(stream_version), 0) + 1 FROM events WHERE stream = ?1",
        &[Arg::Text(&event.stream)],
        |r| r.int(0),
    )?;
    db.execute(
        "INSERT INTO events (position, stream, stream_version, type, schema_version, data, \
         recorded_at, account_sid, service_sid, request_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        &[
            Arg::Int(position),
            Arg::Text(&event.stream),
            Arg::Int(stream_version),
            Arg::Text(event.event.type_name()),
            Arg::Int(i64::from(event.event.schema_version())),
            Arg::Text(&event.event.encode_data()),
            Arg::Int(at.unix()),
            Arg::Text(event.account_sid.as_str()),
            Arg::OptText(event.service_sid.as_ref().map(|s| s.as_str())),
            Arg::OptText(request_id),
        ],
    )?;
    Ok(RecordedEvent {
        position,
        stream: event.stream.clone(),
        stream_version,
        account_sid: event.account_sid,
        service_sid: event.service_sid,
        recorded_at: at,
        request_id: request_id.map(str::to_owned),
        event: event.event.clone(),
    })
}

/// Inserts an event read from an export, keeping its position and stored text.
pub fn insert_stored(db: &dyn Db, event: &StoredEvent) -> Result<(), StoreError> {
    let recorded_at =
        Timestamp::parse_rfc3339(&event.recorded_at).ok_or_else(|| StoreError::Corrupt {
            position: event.position,
            what: format!("bad recorded_at {:?}", event.recorded_at),
        })?;
    db.execute(
        "INSERT INTO events (position, stream, stream_version, type, schema_version, data, \
         recorded_at, account_sid, service_sid, request_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        &[
            Arg::Int(event.position),
            Arg::Text(&event.stream),
            Arg::Int(event.stream_version),
            Arg::Text(&event.type_name),
            Arg::Int(i64::from(event.schema_version)),
            Arg::Text(event.data.get()),
            Arg::Int(recorded_at.unix()),
            Arg::Text(&event.account_sid),
            Arg::OptText(event.service_sid.as_deref()),
            Arg::OptText(event.request_id.as_deref()),
        ],
    )?;
    Ok(())
}

pub fn last_position(db: &dyn Db) -> Result<i64, StoreError> {
    db.value("SELECT COALESCE(MAX(position), 0) FROM events", &[], |r| {
        r.int(0)
    })
}

pub fn checkpoint(db: &dyn Db) -> Result<i64, StoreError> {
    db.value("SELECT position FROM checkpoint WHERE id = 1", &[], |r| {
        r.int(0)
    })
}

pub fn set_checkpoint(db: &dyn Db, position: i64) -> Result<(), StoreError> {
    db.execute(
        "UPDATE checkpoint SET position = ?1 WHERE id = 1",
        &[Arg::Int(position)],
    )?;
    Ok(())
}
