//! The event log: appending, and reading back in order. The log is the only source of truth.

use bindery_domain::*;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};

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

fn stored(r: &rusqlite::Row) -> rusqlite::Result<StoredEvent> {
    let data: String = r.get(5)?;
    Ok(StoredEvent {
        position: r.get(0)?,
        stream: r.get(1)?,
        stream_version: r.get(2)?,
        type_name: r.get(3)?,
        schema_version: r.get(4)?,
        data: serde_json::value::RawValue::from_string(data).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e))
        })?,
        recorded_at: Timestamp::from_unix(r.get(6)?).to_string(),
        account_sid: r.get(7)?,
        service_sid: r.get(8)?,
        request_id: r.get(9)?,
    })
}

/// The events matching `condition` (SQL over the events table, with `params`), in the order
/// and number `tail` gives (e.g. `ORDER BY position LIMIT 51`).
pub fn select(
    conn: &Connection,
    condition: &str,
    tail: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut statement =
        conn.prepare_cached(&format!("{SELECT_EVENTS} WHERE {condition} {tail}"))?;
    let events = statement
        .query_map(params, stored)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(events)
}

/// Calls `each` on every event after `after`, oldest first, without holding them all in memory.
pub fn for_each(
    conn: &Connection,
    after: i64,
    mut each: impl FnMut(StoredEvent) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "{SELECT_EVENTS} WHERE position > ?1 ORDER BY position"
    ))?;
    let mut rows = statement.query([after])?;
    while let Some(row) = rows.next()? {
        each(stored(row)?)?;
    }
    Ok(())
}

/// Calls `each` on every event, oldest first, decoded straight from its row (replay's path:
/// no stored text kept, no timestamp formatted and parsed again).
pub fn for_each_decoded(
    conn: &Connection,
    mut each: impl FnMut(RecordedEvent) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut statement = conn.prepare_cached(&format!("{SELECT_EVENTS} ORDER BY position"))?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let text = |i: usize| row.get_ref(i)?.as_str().map_err(rusqlite::Error::from);
        let optional = |i: usize| {
            row.get_ref(i)?
                .as_str_or_null()
                .map_err(rusqlite::Error::from)
        };
        each(decode(Columns {
            position: row.get(0)?,
            stream: text(1)?,
            stream_version: row.get(2)?,
            type_name: text(3)?,
            schema_version: row.get(4)?,
            data: text(5)?,
            recorded_at: Timestamp::from_unix(row.get(6)?),
            account_sid: text(7)?,
            service_sid: optional(8)?,
            request_id: optional(9)?,
        })?)?;
    }
    Ok(())
}

/// Whether any credential event holds a value sealed under a key (`seal::SEALED_PREFIX`):
/// then the data dir cannot do with a new key. Deleted credentials count too, since their
/// events are still exported and imported.
pub fn holds_sealed_secrets(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM events, json_each(events.data, '$.secrets') AS field \
             WHERE events.type IN ('CredentialCreated', 'CredentialUpdated') \
             AND substr(field.value, 1, ?2) = ?1)",
        )?
        .query_row(
            params![
                crate::seal::SEALED_PREFIX,
                crate::seal::SEALED_PREFIX.len() as i64
            ],
            |r| r.get(0),
        )?)
}

/// Appends one event to its stream at the next stream version.
pub fn append(
    conn: &Connection,
    event: &PendingEvent,
    at: Timestamp,
    request_id: Option<&str>,
) -> Result<RecordedEvent, StoreError> {
    let stream_version: i64 = conn
        .prepare_cached(
            "SELECT COALESCE(MAX(stream_version), 0) + 1 FROM events WHERE stream = ?1",
        )?
        .query_row([&event.stream], |r| r.get(0))?;
    conn.prepare_cached(
        "INSERT INTO events (stream, stream_version, type, schema_version, data, recorded_at, \
         account_sid, service_sid, request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        event.stream,
        stream_version,
        event.event.type_name(),
        event.event.schema_version(),
        event.event.encode_data(),
        at.unix(),
        event.account_sid.as_str(),
        event.service_sid.as_ref().map(|s| s.as_str()),
        request_id,
    ])?;
    Ok(RecordedEvent {
        position: conn.last_insert_rowid(),
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
pub fn insert_stored(conn: &Connection, event: &StoredEvent) -> Result<(), StoreError> {
    let recorded_at =
        Timestamp::parse_rfc3339(&event.recorded_at).ok_or_else(|| StoreError::Corrupt {
            position: event.position,
            what: format!("bad recorded_at {:?}", event.recorded_at),
        })?;
    conn.prepare_cached(
        "INSERT INTO events (position, stream, stream_version, type, schema_version, data, \
         recorded_at, account_sid, service_sid, request_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        event.position,
        event.stream,
        event.stream_version,
        event.type_name,
        event.schema_version,
        event.data.get(),
        recorded_at.unix(),
        event.account_sid,
        event.service_sid,
        event.request_id,
    ])?;
    Ok(())
}

pub fn last_position(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")?
        .query_row([], |r| r.get(0))
}

pub fn checkpoint(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT position FROM checkpoint WHERE id = 1")?
        .query_row([], |r| r.get(0))
}

pub fn set_checkpoint(conn: &Connection, position: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE checkpoint SET position = ?1 WHERE id = 1")?
        .execute([position])?;
    Ok(())
}
