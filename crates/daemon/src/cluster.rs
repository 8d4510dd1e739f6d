//! What a node hears from the other nodes on one PostgreSQL database, and the one thing it
//! must do alone.
//!
//! Each node keeps one connection of its own, on a thread of its own, that `LISTEN`s on
//! [`CHANNEL`]: every commit that appends events sends a [`Notice`] there (`NOTIFY`, sent when
//! and only if the transaction commits). A notice wakes the change feed's long-polls of the
//! accounts it names, on every node, and, when sign-ins may have changed (an account or key
//! created or revoked), empties the node's cache of sign-ins. While that connection is down a
//! node may miss notices: it serves no sign-in from its cache until it is back, and then wakes
//! every long-poll to read again (they also look again every few seconds on their own, see
//! `FeedWaiters::poll_every`). The notices also keep the node's log and bindings gauges,
//! counted afresh at each connection, so that every node shows the registry's figures.
//!
//! The same connection holds the sweeper's turn: a session advisory lock that one node at a
//! time holds. When the node dies its connection closes, PostgreSQL lets the lock go, and the
//! next node to try takes it within [`TICK`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bindery_domain::AccountSid;
use sha2::{Digest, Sha256};

use crate::feed::FeedWaiters;
use crate::metrics::Metrics;
use crate::store::postgres::{Client, Notice, Target, CHANNEL};
use crate::store::sql::{Arg, Db};
use crate::store::{binding_counts, log, read_transaction, StoreError};

/// How often the listener checks its connection, measures the round trip and, when it is
/// not the sweeper, tries to become it.
pub const TICK: Duration = Duration::from_secs(1);

/// How long a node waits before connecting again after its listening connection failed.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// The advisory lock key of the sweeper's turn ("sweeper" in ASCII).
const SWEEPER_LOCK: i64 = 0x73_77_65_65_70_65_72;

/// The most sign-ins a node's cache holds; past it, it starts again empty.
const MAX_CACHED_SIGN_INS: usize = 10_000;

/// What the node's parts share with its listener.
#[derive(Default)]
pub struct Node {
    /// Whether this node may sweep now: always on SQLite; on PostgreSQL, while it holds the
    /// sweeper's lock.
    sweeper: AtomicBool,
    sign_ins: SignIns,
    stopped: AtomicBool,
}

impl Node {
    /// A node alone on its database (SQLite): it sweeps, and caches no sign-in (a SQLite read
    /// costs less than the cache would).
    pub fn alone() -> Arc<Node> {
        let node = Node::default();
        node.sweeper.store(true, Ordering::SeqCst);
        Arc::new(node)
    }

    /// Whether this node is the one that sweeps now.
    pub fn sweeps(&self) -> bool {
        self.sweeper.load(Ordering::SeqCst)
    }

    pub fn sign_ins(&self) -> &SignIns {
        &self.sign_ins
    }

    /// Ends the listener (at its next tick) and gives up the sweeper's turn.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// Sign-ins that succeeded, kept while the listener is connected (so that a revocation
/// committed by any node reaches this cache at once), by a hash of the username and password.
/// A lookup that raced a revocation does not fill it: an entry is kept only if the cache was
/// not emptied between the read that found it and the insertion.
#[derive(Default)]
pub struct SignIns {
    enabled: AtomicBool,
    generation: AtomicU64,
    entries: Mutex<HashMap<[u8; 32], AccountSid>>,
}

/// A cache slot: what a sign-in is kept under, and the generation it was read in.
pub struct SignInKey {
    hash: [u8; 32],
    generation: u64,
}

impl SignIns {
    /// The account this username and password sign in as, if the cache knows; and the key to
    /// keep the answer under when it does not.
    pub fn lookup(&self, username: &str, password: &str) -> Result<AccountSid, SignInKey> {
        let generation = self.generation.load(Ordering::SeqCst);
        let hash: [u8; 32] = Sha256::new()
            .chain_update(username.len().to_le_bytes())
            .chain_update(username)
            .chain_update(password)
            .finalize()
            .into();
        if self.enabled.load(Ordering::SeqCst) {
            if let Some(account) = self.lock().get(&hash) {
                return Ok(*account);
            }
        }
        Err(SignInKey { hash, generation })
    }

    /// Keeps a sign-in read from the database, unless the cache was emptied since `key` was
    /// made (the read may predate a revocation) or is off.
    pub fn keep(&self, key: SignInKey, account: AccountSid) {
        let mut entries = self.lock();
        if !self.enabled.load(Ordering::SeqCst)
            || self.generation.load(Ordering::SeqCst) != key.generation
        {
            return;
        }
        if entries.len() >= MAX_CACHED_SIGN_INS {
            entries.clear();
        }
        entries.insert(key.hash, account);
    }

    fn clear(&self) {
        let mut entries = self.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }

    fn set_enabled(&self, enabled: bool) {
        self.clear();
        self.enabled.store(enabled, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], AccountSid>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts the node's listener on a thread of its own.
pub fn listen(target: Target, node: Arc<Node>, feed: Arc<FeedWaiters>, metrics: Metrics) {
    std::thread::Builder::new()
        .name("bindery-listen".into())
        .spawn(move || {
            while !node.stopped.load(Ordering::SeqCst) {
                if let Err(e) = listen_once(&target, &node, &feed, &metrics) {
                    tracing::warn!(error = %e, "not hearing the other nodes; connecting again");
                }
                node.sign_ins.set_enabled(false);
                node.sweeper.store(false, Ordering::SeqCst);
                metrics.sweeper.set(0);
                if !node.stopped.load(Ordering::SeqCst) {
                    std::thread::sleep(RECONNECT_AFTER);
                }
            }
        })
        .expect("a thread for the listener");
}

/// One connection's life: `LISTEN`, then hear notices until it fails or the node stops.
fn listen_once(
    target: &Target,
    node: &Node,
    feed: &FeedWaiters,
    metrics: &Metrics,
) -> Result<(), StoreError> {
    let (notices, heard) = mpsc::channel();
    let client = Client::connect(target, Some(notices))?;
    client.batch(&format!("LISTEN {CHANNEL}"))?;
    // Listening from now on: what committed before is read again by every waiting long-poll,
    // and sign-ins are cached from now on only.
    let db: &dyn Db = &client;
    // One snapshot for the head and the counts: the notices of what it holds are skipped,
    // those of later commits (greater positions: they commit in position order) counted.
    let (head, bindings) =
        read_transaction(db, |db| Ok((log::last_position(db)?, binding_counts(db)?)))?;
    metrics.count_bindings(&bindings, true);
    metrics.set_log_position(head);
    node.sign_ins.set_enabled(true);
    feed.wake(None, head);
    tracing::info!("hearing the other nodes' commits");
    let mut next_tick = Instant::now();
    while !node.stopped.load(Ordering::SeqCst) {
        match heard.recv_timeout(next_tick.saturating_duration_since(Instant::now())) {
            Ok((_, payload)) => match serde_json::from_str::<Notice>(&payload) {
                Ok(notice) => {
                    if notice.auth {
                        node.sign_ins.clear();
                    }
                    if notice.position > head {
                        // The bindings first: a reader that sees the position sees them too.
                        metrics.count_bindings(&notice.bindings, false);
                        metrics.set_log_position(notice.position);
                    }
                    feed.wake(notice.accounts.as_deref(), notice.position);
                }
                Err(e) => tracing::warn!(error = %e, "an unreadable notice on {CHANNEL}"),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {
                next_tick = Instant::now() + TICK;
                tick(db, node, metrics)?;
            }
            // The connection ended.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(StoreError::Refused(
                    "the listening connection closed".into(),
                ))
            }
        }
        if client.is_broken() {
            return Err(StoreError::Refused("the listening connection broke".into()));
        }
    }
    Ok(())
}

/// Measures the round trip to the database and, unless this node sweeps, tries to.
fn tick(db: &dyn Db, node: &Node, metrics: &Metrics) -> Result<(), StoreError> {
    let started = Instant::now();
    if node.sweeps() {
        db.value("SELECT 1", &[], |r| r.int(0))?;
    } else {
        let taken = db.value(
            "SELECT pg_try_advisory_lock(?1)",
            &[Arg::Int(SWEEPER_LOCK)],
            |r| r.bool(0),
        )?;
        if taken {
            tracing::info!("this node sweeps expired bindings now");
            node.sweeper.store(true, Ordering::SeqCst);
            metrics.sweeper.set(1);
        }
    }
    metrics
        .database_round_trip
        .set(started.elapsed().as_secs_f64());
    Ok(())
}
