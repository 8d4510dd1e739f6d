//! Delivery records [EXT]: what became of each push, one row per notify and binding, the
//! newest [`KEPT_PER_BINDING`] of each binding kept. Like the idempotency cache, this table
//! sits beside the log and is no projection: records are not events, so they are neither
//! replayed, rebuilt, verified nor exported. A binding's records are deleted in the
//! transaction that removes it (`batch.rs`), and never written for a binding that is gone.
//!
//! Notification SIDs sort in creation order (`sids.rs`), so the key (binding, notification)
//! is also the index that lists a binding's records newest first and trims them.

use bindery_domain::*;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{params, Connection, OptionalExtension};

use crate::records::{DeliveryRecord, DeliveryStatus, KEPT_PER_BINDING};

/// The columns [`record`] reads, in its order.
pub const COLUMNS: &str = "notification_sid, binding_sid, service_sid, account_sid, \
     date_created, status, error, provider_status, attempts, latency_ms";

/// Upserts each record (a pending one is updated in place: its status, error, provider
/// status, attempts and latency; it keeps its date) when its binding exists, then trims each
/// binding written to to its newest [`KEPT_PER_BINDING`] records. An update of a record that
/// was already trimmed away writes it again, and the trim removes it again.
pub fn record(conn: &Connection, records: &[DeliveryRecord]) -> rusqlite::Result<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO deliveries (notification_sid, binding_sid, service_sid, account_sid, \
             date_created, status, error, provider_status, attempts, latency_ms) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 \
         WHERE EXISTS (SELECT 1 FROM bindings WHERE sid = ?2) \
         ON CONFLICT (binding_sid, notification_sid) DO UPDATE SET \
             status = excluded.status, error = excluded.error, \
             provider_status = excluded.provider_status, attempts = excluded.attempts, \
             latency_ms = excluded.latency_ms",
    )?;
    let mut bindings: Vec<&BindingSid> = Vec::new();
    for r in records {
        upsert.execute(params![
            r.notification_sid.as_str(),
            r.binding_sid.as_str(),
            r.service_sid.as_str(),
            r.account_sid.as_str(),
            r.date_created.unix(),
            r.status.as_str(),
            r.error,
            r.provider_status,
            r.attempts,
            i64::try_from(r.latency_ms).unwrap_or(i64::MAX),
        ])?;
        bindings.push(&r.binding_sid);
    }
    bindings.sort_unstable();
    bindings.dedup();
    // Everything older than the binding's KEPT_PER_BINDING-th newest record goes.
    let mut trim = conn.prepare_cached(
        "DELETE FROM deliveries WHERE binding_sid = ?1 AND notification_sid < \
         (SELECT notification_sid FROM deliveries WHERE binding_sid = ?1 \
          ORDER BY notification_sid DESC LIMIT 1 OFFSET ?2)",
    )?;
    for binding in bindings {
        trim.execute(params![binding.as_str(), KEPT_PER_BINDING as i64 - 1])?;
    }
    Ok(())
}

/// Deletes every record of a binding (it is being removed).
pub fn forget_binding(conn: &Connection, binding: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM deliveries WHERE binding_sid = ?1")?
        .execute([binding])?;
    Ok(())
}

/// The notification SID of the record written last (the highest row id): new notification
/// SIDs are made to sort after it, so records stay in order even if the clock stepped back
/// across a restart. Found at the end of the table's B-tree, without a scan.
pub fn newest_notification_sid(conn: &Connection) -> rusqlite::Result<Option<u128>> {
    let text: Option<String> = conn
        .query_row(
            "SELECT notification_sid FROM deliveries ORDER BY rowid DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(text.and_then(|t| u128::from_str_radix(t.get(2..)?, 16).ok()))
}

/// A SID column; one that does not parse means the database was changed behind Bindery's back.
struct Column<K>(Sid<K>);

impl<K: SidKind> FromSql for Column<K> {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        Sid::parse(value.as_str()?)
            .map(Column)
            .map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// Reads a row of [`COLUMNS`].
pub fn read(r: &rusqlite::Row) -> rusqlite::Result<DeliveryRecord> {
    let status: String = r.get(5)?;
    Ok(DeliveryRecord {
        notification_sid: r.get::<_, Column<_>>(0)?.0,
        binding_sid: r.get::<_, Column<_>>(1)?.0,
        service_sid: r.get::<_, Column<_>>(2)?.0,
        account_sid: r.get::<_, Column<_>>(3)?.0,
        date_created: Timestamp::from_unix(r.get(4)?),
        status: DeliveryStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                5,
                rusqlite::types::Type::Text,
                format!("{status:?} is not a delivery status").into(),
            )
        })?,
        error: r.get(6)?,
        provider_status: r.get(7)?,
        attempts: r.get(8)?,
        latency_ms: u64::try_from(r.get::<_, i64>(9)?).unwrap_or(0),
    })
}
