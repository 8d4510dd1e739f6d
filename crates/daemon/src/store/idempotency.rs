//! Stored answers to POSTs that carried an `Idempotency-Key`: the same key with the same
//! request within a day answers what the first one did and appends nothing. This table is a
//! response cache beside the log, not a projection: it is neither rebuilt nor verified, and
//! it is written in the same transaction as the command it remembers.

use bindery_domain::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};

use super::StoredResponse;

/// How long a key is remembered.
pub const KEEP_SECONDS: i64 = 24 * 60 * 60;

pub struct Remembered {
    pub fingerprint: String,
    pub response: StoredResponse,
}

pub fn lookup(
    conn: &Connection,
    scope: &str,
    key: &str,
    now: Timestamp,
) -> rusqlite::Result<Option<Remembered>> {
    conn.prepare_cached(
        "SELECT fingerprint, status, body FROM idempotency_keys \
         WHERE scope = ?1 AND key = ?2 AND created_at > ?3",
    )?
    .query_row(params![scope, key, now.unix() - KEEP_SECONDS], |r| {
        Ok(Remembered {
            fingerprint: r.get(0)?,
            response: StoredResponse {
                status: r.get(1)?,
                body: r.get(2)?,
            },
        })
    })
    .optional()
}

pub fn remember(
    conn: &Connection,
    scope: &str,
    key: &str,
    fingerprint: &str,
    response: &StoredResponse,
    now: Timestamp,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status, body, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, \
         status = excluded.status, body = excluded.body, created_at = excluded.created_at",
    )?
    .execute(params![
        scope,
        key,
        fingerprint,
        response.status,
        response.body,
        now.unix()
    ])?;
    Ok(())
}

/// Forgets keys older than a day.
pub fn expire(conn: &Connection, now: Timestamp) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM idempotency_keys WHERE created_at <= ?1")?
        .execute([now.unix() - KEEP_SECONDS])?;
    Ok(())
}
