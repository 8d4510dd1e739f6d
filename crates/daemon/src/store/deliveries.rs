//! Delivery records [EXT]: what became of each push, one row per notify and binding, the
//! newest [`KEPT_PER_BINDING`] of each binding kept. Like the idempotency cache, this table
//! sits beside the log and is no projection: records are not events, so they are neither
//! replayed, rebuilt, verified nor exported. A binding's records are deleted in the
//! transaction that removes it (`batch.rs`), and never written for a binding that is gone.
//!
//! Notification SIDs sort in creation order (`sids.rs`), so the key (binding, notification)
//! is also the index that lists a binding's records newest first and trims them.

use bindery_domain::*;

use super::sql::{Arg, Db, SqlRow};
use super::StoreError;

use crate::records::{DeliveryRecord, DeliveryStatus, KEPT_PER_BINDING};

/// The columns [`record`] reads, in its order.
pub const COLUMNS: &str = "notification_sid, binding_sid, service_sid, account_sid, \
     date_created, status, error, provider_status, attempts, latency_ms";

/// Upserts each record (a pending one is updated in place: its status, error, provider
/// status, attempts and latency; it keeps its date) when its binding exists, then trims each
/// binding written to to its newest [`KEPT_PER_BINDING`] records. An update of a record that
/// was already trimmed away writes it again, and the trim removes it again.
pub fn record(db: &dyn Db, records: &[DeliveryRecord]) -> Result<(), StoreError> {
    let mut bindings: Vec<&BindingSid> = Vec::new();
    for r in records {
        // The values are cast: PostgreSQL types a SELECT's parameters by themselves, not by
        // the columns they go into.
        db.execute(
            "INSERT INTO deliveries (notification_sid, binding_sid, service_sid, account_sid, \
                 date_created, status, error, provider_status, attempts, latency_ms) \
             SELECT CAST(?1 AS TEXT), CAST(?2 AS TEXT), CAST(?3 AS TEXT), CAST(?4 AS TEXT), \
                 CAST(?5 AS BIGINT), CAST(?6 AS TEXT), CAST(?7 AS TEXT), CAST(?8 AS BIGINT), \
                 CAST(?9 AS BIGINT), CAST(?10 AS BIGINT) \
             WHERE EXISTS (SELECT 1 FROM bindings WHERE sid = CAST(?2 AS TEXT)) \
             ON CONFLICT (binding_sid, notification_sid) DO UPDATE SET \
                 status = excluded.status, error = excluded.error, \
                 provider_status = excluded.provider_status, attempts = excluded.attempts, \
                 latency_ms = excluded.latency_ms",
            &[
                Arg::Text(r.notification_sid.as_str()),
                Arg::Text(r.binding_sid.as_str()),
                Arg::Text(r.service_sid.as_str()),
                Arg::Text(r.account_sid.as_str()),
                Arg::Int(r.date_created.unix()),
                Arg::Text(r.status.as_str()),
                Arg::OptText(r.error.as_deref()),
                Arg::OptInt(r.provider_status.map(i64::from)),
                Arg::Int(i64::from(r.attempts)),
                Arg::Int(i64::try_from(r.latency_ms).unwrap_or(i64::MAX)),
            ],
        )?;
        bindings.push(&r.binding_sid);
    }
    bindings.sort_unstable();
    bindings.dedup();
    // Everything older than the binding's KEPT_PER_BINDING-th newest record goes.
    for binding in bindings {
        db.execute(
            "DELETE FROM deliveries WHERE binding_sid = ?1 AND notification_sid < \
             (SELECT notification_sid FROM deliveries WHERE binding_sid = ?1 \
              ORDER BY notification_sid DESC LIMIT 1 OFFSET ?2)",
            &[
                Arg::Text(binding.as_str()),
                Arg::Int(KEPT_PER_BINDING as i64 - 1),
            ],
        )?;
    }
    Ok(())
}

/// Deletes every record of a binding (it is being removed).
pub fn forget_binding(db: &dyn Db, binding: &str) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM deliveries WHERE binding_sid = ?1",
        &[Arg::Text(binding)],
    )?;
    Ok(())
}

/// The notification SID of the record written last (the highest id): new notification SIDs
/// are made to sort after it, so records stay in order even if the clock stepped back across
/// a restart. Found at the end of the table's primary key, without a scan.
pub fn newest_notification_sid(db: &dyn Db) -> Result<Option<u128>, StoreError> {
    let text = db.one(
        "SELECT notification_sid FROM deliveries ORDER BY id DESC LIMIT 1",
        &[],
        |r| Ok(r.text(0)?.to_owned()),
    )?;
    Ok(text.and_then(|t| u128::from_str_radix(t.get(2..)?, 16).ok()))
}

fn sid<K: SidKind>(r: &dyn SqlRow, index: usize) -> Result<Sid<K>, StoreError> {
    Sid::parse(r.text(index)?).map_err(|e| StoreError::column(index, e))
}

/// Reads a row of [`COLUMNS`].
pub fn read(r: &dyn SqlRow) -> Result<DeliveryRecord, StoreError> {
    let status = r.text(5)?;
    Ok(DeliveryRecord {
        notification_sid: sid(r, 0)?,
        binding_sid: sid(r, 1)?,
        service_sid: sid(r, 2)?,
        account_sid: sid(r, 3)?,
        date_created: Timestamp::from_unix(r.int(4)?),
        status: DeliveryStatus::parse(status)
            .ok_or_else(|| StoreError::column(5, format!("{status:?} is not a delivery status")))?,
        error: r.opt_text(6)?.map(str::to_owned),
        provider_status: r
            .opt_int(7)?
            .map(|s| u16::try_from(s).map_err(|e| StoreError::column(7, e)))
            .transpose()?,
        attempts: u32::try_from(r.int(8)?).map_err(|e| StoreError::column(8, e))?,
        latency_ms: u64::try_from(r.int(9)?).unwrap_or(0),
    })
}
