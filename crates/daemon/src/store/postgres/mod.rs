//! The PostgreSQL engine: many stateless Bindery nodes on one database, which replicates and
//! fails over by itself (Bindery adds no coordination of its own).
//!
//! What only PostgreSQL has lives here: the connection ([`client`]), the migrations
//! (`migrations/`, applied once however many nodes start together, under an advisory lock),
//! the write lock, and the notices that tell the other nodes what a commit changed.
//!
//! **The write lock.** Every write transaction first takes the checkpoint row `FOR UPDATE`
//! and numbers its events from the position it holds. Transactions that write the log thus
//! commit one at a time across all nodes, so log positions are dense and in commit order (a
//! sequence hands out numbers that commit out of order, and a change-feed reader asking for
//! `position > last` skips the late ones), and every decision reads the state the last
//! commit left (READ COMMITTED: each statement sees what committed before it began). The
//! invariants still live in the unique indexes. Group commit keeps the lock's cost to one
//! wait per batch, not per command.

pub mod client;

use bindery_domain::{AccountSid, EntityKind};
use serde::{Deserialize, Serialize};

use crate::store::sql::{Arg, Db};
use crate::store::{BindingCounts, Committed, StoreError};

pub use client::{Client, Target};

/// The channel a commit notifies on, with what it changed (see [`Notice`]).
pub const CHANNEL: &str = "bindery_log";

/// What a commit tells every node (`NOTIFY`, delivered when and only if it commits, and in
/// commit order): the log's new head, whose feeds to wake, whether sign-ins may have changed,
/// and how many bindings of each type it added or removed (every node's gauges count the
/// registry's bindings, not only the ones it wrote).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub position: i64,
    /// The accounts that got events; `None`: too many to name, wake them all.
    pub accounts: Option<Vec<AccountSid>>,
    /// Whether an account or API key was created, changed or revoked.
    pub auth: bool,
    #[serde(default)]
    pub bindings: BindingCounts,
}

/// PostgreSQL's limit on a payload is 8000 bytes; a notice naming more accounts than fit
/// says "all".
const MAX_NAMED_ACCOUNTS: usize = 100;

impl Notice {
    /// The notice of a batch's commands, or `None` when they appended no event.
    pub fn of<'a>(commands: impl IntoIterator<Item = &'a Committed>) -> Option<Notice> {
        let mut notice: Option<Notice> = None;
        for committed in commands {
            for event in &committed.events {
                let notice = notice.get_or_insert(Notice {
                    position: 0,
                    accounts: Some(Vec::new()),
                    auth: false,
                    bindings: BindingCounts::default(),
                });
                notice.position = notice.position.max(event.position);
                notice.auth |= matches!(
                    event.event.entity(),
                    EntityKind::Account | EntityKind::ApiKey
                );
                if let Some(accounts) = &mut notice.accounts {
                    if !accounts.contains(&event.account_sid) {
                        accounts.push(event.account_sid);
                    }
                    if accounts.len() > MAX_NAMED_ACCOUNTS {
                        notice.accounts = None;
                    }
                }
            }
            if let Some(notice) = &mut notice {
                notice.bindings.add_all(&committed.binding_changes);
            }
        }
        notice
    }
}

/// Queues `notice` for the other nodes, inside the write transaction: it is sent when the
/// transaction commits, and never if it rolls back.
pub fn notify(db: &dyn Db, notice: &Notice) -> Result<(), StoreError> {
    let payload = serde_json::to_string(notice).expect("a notice serializes");
    db.execute(
        "SELECT pg_notify(?1, ?2)",
        &[Arg::Text(CHANNEL), Arg::Text(&payload)],
    )?;
    Ok(())
}

/// The advisory lock key under which nodes migrate one at a time ("bindery" in ASCII).
const MIGRATION_LOCK: i64 = 0x62_69_6e_64_65_72_79;

/// The migrations, one file each, in order.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_schema.sql"),
    include_str!("migrations/0002_sealing_key.sql"),
    include_str!("migrations/0003_console_sessions.sql"),
];

/// Brings the database's schema up to date, in one transaction, under an advisory lock: of
/// several nodes starting together on an empty database, one migrates, the others find it
/// done.
pub fn migrate(client: &Client) -> Result<(), StoreError> {
    let db: &dyn Db = client;
    db.batch("BEGIN")?;
    let result = (|| {
        db.execute(
            "SELECT pg_advisory_xact_lock(?1)",
            &[Arg::Int(MIGRATION_LOCK)],
        )?;
        db.batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (\
                 version    BIGINT PRIMARY KEY, \
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )?;
        let applied = db.value(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
            |r| r.int(0),
        )? as usize;
        if applied > MIGRATIONS.len() {
            return Err(StoreError::TooNew {
                found: applied,
                known: MIGRATIONS.len(),
            });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
            db.batch(sql)?;
            db.execute(
                "INSERT INTO schema_migrations (version) VALUES (?1)",
                &[Arg::Int(index as i64 + 1)],
            )?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => db.batch("COMMIT"),
        Err(e) => {
            let _ = db.batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Begins a write transaction and takes the write lock; returns the log's last position.
pub fn begin_write(client: &Client) -> Result<i64, StoreError> {
    let db: &dyn Db = client;
    db.execute("BEGIN", &[])?;
    db.value(
        "SELECT position FROM checkpoint WHERE id = 1 FOR UPDATE",
        &[],
        |r| r.int(0),
    )
}

/// Whether the database takes writes now: the primary answers, and a real write commits
/// (a standby, or a primary that lost its synchronous standby, does not).
pub fn probe_writable(db: &Client) -> Result<(), StoreError> {
    db.batch("BEGIN")?;
    let probed = db
        .execute("UPDATE health SET probes = probes + 1 WHERE id = 1", &[])
        .and_then(|_| db.batch("COMMIT"));
    if probed.is_err() && !db.is_broken() {
        let _ = db.batch("ROLLBACK");
    }
    probed
}

/// Records `proposed` as the registry's sealed key check unless one is recorded; answers
/// the one recorded (see `Sealer::check_shared`).
pub fn claim_key_check(db: &dyn Db, proposed: &str) -> Result<String, StoreError> {
    db.execute(
        "INSERT INTO sealing_key (id, check_value) VALUES (1, ?1) ON CONFLICT (id) DO NOTHING",
        &[Arg::Text(proposed)],
    )?;
    db.value(
        "SELECT check_value FROM sealing_key WHERE id = 1",
        &[],
        |r| Ok(r.text(0)?.to_owned()),
    )
}
