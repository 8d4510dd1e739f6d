//! Stored answers to POSTs that carried an `Idempotency-Key`: the same key with the same
//! request within a day answers what the first one did and appends nothing. This table is a
//! response cache beside the log, not a projection: it is neither rebuilt nor verified, and
//! it is written in the same transaction as the command it remembers.

use bindery_domain::Timestamp;

use super::sql::{Arg, Db};
use super::{StoreError, StoredResponse};

/// How long a key is remembered.
pub const KEEP_SECONDS: i64 = 24 * 60 * 60;

pub struct Remembered {
    pub fingerprint: String,
    pub response: StoredResponse,
}

pub fn lookup(
    db: &dyn Db,
    scope: &str,
    key: &str,
    now: Timestamp,
) -> Result<Option<Remembered>, StoreError> {
    db.one(
        "SELECT fingerprint, status, body FROM idempotency_keys \
         WHERE scope = ?1 AND key = ?2 AND created_at > ?3",
        &[
            Arg::Text(scope),
            Arg::Text(key),
            Arg::Int(now.unix() - KEEP_SECONDS),
        ],
        |r| {
            Ok(Remembered {
                fingerprint: r.text(0)?.to_owned(),
                response: StoredResponse {
                    status: u16::try_from(r.int(1)?).map_err(|e| StoreError::column(1, e))?,
                    body: r.text(2)?.to_owned(),
                },
            })
        },
    )
}

pub fn remember(
    db: &dyn Db,
    scope: &str,
    key: &str,
    fingerprint: &str,
    response: &StoredResponse,
    now: Timestamp,
) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status, body, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, \
         status = excluded.status, body = excluded.body, created_at = excluded.created_at",
        &[
            Arg::Text(scope),
            Arg::Text(key),
            Arg::Text(fingerprint),
            Arg::Int(i64::from(response.status)),
            Arg::Text(&response.body),
            Arg::Int(now.unix()),
        ],
    )?;
    Ok(())
}

/// Forgets keys older than a day.
pub fn expire(db: &dyn Db, now: Timestamp) -> Result<(), StoreError> {
    db.execute(
        "DELETE FROM idempotency_keys WHERE created_at <= ?1",
        &[Arg::Int(now.unix() - KEEP_SECONDS)],
    )?;
    Ok(())
}
