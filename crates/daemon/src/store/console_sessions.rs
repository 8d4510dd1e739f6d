//! The console's sign-ins: one row per session, found by the SHA-256 of the token its cookie
//! holds (the token itself is never stored), with the account it signed in as, the account
//! or API key SID it signed in with, its form token and when it ends. A session is found only
//! while it has not ended and the SID it signed in with is still the account's: revoking a key
//! ends every session it opened, on every node (they share the table). Not events: sessions
//! are neither replayed nor exported, and the log says nothing of who looked at it.

use bindery_domain::{AccountSid, Timestamp};

use super::sql::{Arg, Db};
use super::StoreError;

/// A session found by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    pub account: AccountSid,
    /// The account SID or API key SID it signed in with.
    pub principal: String,
    /// What every form of this session carries back (see the console's CSRF check).
    pub csrf_token: String,
    pub expires_at: Timestamp,
}

/// A change to the sessions, written through the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionWrite {
    Open {
        token_hash: String,
        session: ConsoleSession,
    },
    Close {
        token_hash: String,
    },
}

/// Applies `change`, and drops the sessions that have ended.
pub fn write(db: &dyn Db, change: &SessionWrite, now: Timestamp) -> Result<(), StoreError> {
    match change {
        SessionWrite::Open {
            token_hash,
            session,
        } => {
            db.execute(
                "INSERT INTO console_sessions \
                 (token_hash, account_sid, principal, csrf_token, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                &[
                    Arg::Text(token_hash),
                    Arg::Text(session.account.as_str()),
                    Arg::Text(&session.principal),
                    Arg::Text(&session.csrf_token),
                    Arg::Int(now.unix()),
                    Arg::Int(session.expires_at.unix()),
                ],
            )?;
        }
        SessionWrite::Close { token_hash } => {
            db.execute(
                "DELETE FROM console_sessions WHERE token_hash = ?1",
                &[Arg::Text(token_hash)],
            )?;
        }
    }
    db.execute(
        "DELETE FROM console_sessions WHERE expires_at <= ?1",
        &[Arg::Int(now.unix())],
    )?;
    Ok(())
}

/// The session `token_hash` names, if it has not ended and what it signed in with is still
/// its account's (the account itself, or an API key of it not revoked).
pub fn find(
    db: &dyn Db,
    token_hash: &str,
    now: Timestamp,
) -> Result<Option<ConsoleSession>, StoreError> {
    let found = db.all(
        "SELECT s.account_sid, s.principal, s.csrf_token, s.expires_at \
         FROM console_sessions s \
         WHERE s.token_hash = ?1 AND s.expires_at > ?2 \
           AND (EXISTS (SELECT 1 FROM accounts a \
                        WHERE a.sid = s.principal AND a.sid = s.account_sid) \
             OR EXISTS (SELECT 1 FROM api_keys k \
                        WHERE k.sid = s.principal AND k.account_sid = s.account_sid))",
        &[Arg::Text(token_hash), Arg::Int(now.unix())],
        |row| {
            Ok(ConsoleSession {
                account: super::rows::valid(row, 0)?,
                principal: row.text(1)?.to_owned(),
                csrf_token: row.text(2)?.to_owned(),
                expires_at: Timestamp::from_unix(row.int(3)?),
            })
        },
    )?;
    Ok(found.into_iter().next())
}
