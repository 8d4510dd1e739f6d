//! The actors around the store, and [`Daemon`], the handle the HTTP adapter talks to.

mod checkpointer;
mod reader;
mod sweeper;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

pub use reader::Readers;
pub use sweeper::{Sweep, Sweeper};
pub use writer::{Close, Execute, Probe, RecordDeliveries, WriteSessions, Writer};

use std::sync::Mutex;

use bindery_domain::{AccountSid, NewSids, NotificationSid};

use crate::clock::{Clock, SystemClock};
use crate::cluster::{self, Node};
use crate::delivery::direct::{Direct, DirectSettings};
use crate::delivery::{
    Attempted, Deliver, DeliveryError, Dispatcher, LogTransport, Push, Transport,
};
use crate::feed::{FeedSubscription, FeedWaiters, WaitLimits, WaitRefused};
use crate::metrics::Metrics;
use crate::queries::ReadView;
use crate::records::DeliveryRecord;
use crate::seal::Sealer;
use crate::sids::MonotonicSids;
use crate::store::console_sessions::{ConsoleSession, SessionWrite};
use crate::store::{self, Committed, Envelope, Store, StoreError, StoreOptions, WriteError};

/// On PostgreSQL, how often a long-poll of the change feed reads again though no notice woke
/// it: the safety net under `LISTEN`/`NOTIFY`.
const FEED_SAFETY_POLL: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct DaemonOptions {
    pub data_dir: PathBuf,
    /// The key that seals credentials' private fields; made on a data dir's first start.
    pub secret_key_file: PathBuf,
    pub store: StoreOptions,
    /// The PostgreSQL database (`storage.engine = "postgres"`); `None` keeps the log in
    /// SQLite in `data_dir`.
    pub postgres: Option<store::postgres::Target>,
    pub group_commit: bool,
    /// Read-only connections opened at start; more open when more reads run at once.
    pub readers: usize,
    pub clock: Arc<dyn Clock>,
    pub metrics: Metrics,
    pub transport: Arc<dyn Transport>,
    /// Threads delivering pushes at once.
    pub dispatchers: usize,
    /// Push straight to APNs and FCM (`delivery.transport = "direct"`) instead of through
    /// `transport`.
    pub direct: Option<DirectSettings>,
    /// Bindings not refreshed for this long are expired.
    pub stale_after: Duration,
    /// How often the sweeper looks for stale bindings.
    pub sweep_interval: Duration,
    /// How many long-polls of the change feed may wait.
    pub wait_limits: WaitLimits,
}

impl DaemonOptions {
    /// Where the store is: the PostgreSQL database, else the SQLite file of the data dir.
    pub fn location(&self) -> store::Location {
        match &self.postgres {
            Some(target) => store::Location::Postgres(Box::new(target.clone())),
            None => store::Location::Sqlite(store::database_path(&self.data_dir)),
        }
    }

    pub fn new(data_dir: PathBuf) -> Self {
        DaemonOptions {
            secret_key_file: crate::seal::default_key_file(&data_dir),
            data_dir,
            store: StoreOptions::default(),
            postgres: None,
            group_commit: true,
            readers: 2,
            clock: Arc::new(SystemClock),
            metrics: Metrics::new(),
            transport: Arc::new(LogTransport),
            dispatchers: 4,
            direct: None,
            stale_after: Duration::from_secs(60 * 24 * 60 * 60),
            sweep_interval: Duration::from_secs(60 * 60),
            wait_limits: WaitLimits::default(),
        }
    }
}

/// The running daemon: the writer's, dispatchers' and sweeper's addresses, the pool of read-only
/// connections, and the change feed's waiters.
#[derive(Clone)]
pub struct Daemon {
    writer: Addr<Writer>,
    readers: Arc<Readers>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    dispatcher: Addr<Dispatcher>,
    sweeper: Addr<Sweeper>,
    feed: Arc<FeedWaiters>,
    sealer: Arc<Sealer>,
    /// The direct sender, with `delivery.transport = "direct"`.
    direct: Option<Arc<Direct>>,
    /// Pushes one notify hands to the dispatchers (or the direct sender) at once.
    fan_out: usize,
    /// Notification SIDs, in creation order (delivery records list newest first by them).
    notification_sids: Arc<Mutex<MonotonicSids>>,
    /// What this node shares with the others (PostgreSQL), or knows alone (SQLite).
    node: Arc<Node>,
    /// The longest a write waits for the writer's answer (PostgreSQL: `busy_timeout`); none on
    /// SQLite, whose writer answers once its commit is done whatever it takes.
    write_deadline: Option<Duration>,
}

impl Daemon {
    /// Opens the store and starts the actors; call inside a running actix `System`.
    pub fn start(options: DaemonOptions) -> Result<Daemon, StoreError> {
        let location = options.location();
        let mut store = Store::open_at(&location, &options.store)?;
        let sealer = Arc::new(Sealer::load_or_create(&options.secret_key_file, || {
            store.holds_sealed_secrets()
        })?);
        store.check_sealing_key(&sealer)?;
        let metrics = options.metrics.clone();
        let position = store.projection_position()?;
        metrics.projection_position.set(position);
        metrics.log_position.set(store.log_position()?);
        let notification_sids = MonotonicSids::after(store.newest_notification_sid()?);
        metrics.count_bindings(&store.binding_counts()?, true);
        // Fail now, not on the first request, if a reader cannot open the database.
        let readers = Arc::new(Readers::open(
            &location,
            options.store.busy_timeout,
            options.readers,
            metrics.clone(),
        )?);
        let clock = options.clock.clone();
        let group_commit = options.group_commit;
        let writer_clock = clock.clone();
        let writer_metrics = metrics.clone();
        let feed = FeedWaiters::new(options.wait_limits, metrics.clone());
        let writer_feed = feed.clone();
        if let store::Location::Sqlite(path) = &location {
            checkpointer::start(path, &options.store, &mut store)?;
        }
        let writer = Writer::start_in_arbiter(&Arbiter::new().handle(), move |_| {
            Writer::new(
                store,
                writer_clock,
                writer_metrics,
                group_commit,
                writer_feed,
            )
        });
        let (transport, dispatch_metrics) = (options.transport.clone(), metrics.clone());
        let dispatcher = SyncArbiter::start(options.dispatchers.max(1), move || {
            Dispatcher::new(transport.clone(), dispatch_metrics.clone())
        });
        let direct = match options.direct {
            Some(settings) => Some(Arc::new(
                Direct::start(settings, metrics.clone(), sealer.clone(), clock.clone())
                    .map_err(StoreError::Refused)?,
            )),
            None => None,
        };
        let fan_out = match &direct {
            // Every push of a notify at once: they wait in their credential's queue, where its
            // limit keeps a slow provider from holding the others' places. Handing them out
            // in notify's order instead would let the first credential's pushes hold the
            // rest back. A notify names at most 1,000 users, so this is bounded too.
            Some(_) => usize::MAX,
            None => options.dispatchers.max(1),
        };
        let node = match &options.postgres {
            Some(target) => {
                let node = Arc::new(Node::default());
                // Every wait looks again this often, in case a notice was lost.
                feed.poll_every(FEED_SAFETY_POLL);
                cluster::listen(target.clone(), node.clone(), feed.clone(), metrics.clone());
                node
            }
            None => {
                metrics.sweeper.set(1);
                Node::alone()
            }
        };
        let sweeper = Sweeper::new(
            writer.clone(),
            node.clone(),
            clock.clone(),
            options.stale_after,
            options.sweep_interval,
        )
        .start();
        let daemon = Daemon {
            writer,
            readers,
            clock,
            metrics,
            dispatcher,
            sweeper,
            feed,
            sealer,
            direct,
            fan_out,
            notification_sids: Arc::new(Mutex::new(notification_sids)),
            node,
            write_deadline: options.postgres.as_ref().map(|t| t.timeout),
        };
        for credential in daemon.read(|view| view.expiring_credentials())? {
            daemon.show_expiry(&credential);
        }
        Ok(daemon)
    }

    /// Runs a command through the writer. A credential's private fields are read (see
    /// [`credential_check`](crate::credential_check)) and sealed here, where they enter, so
    /// that nothing below (the log, the projections, exports, backups) ever holds them in
    /// clear, and nothing that cannot push is stored.
    pub async fn execute(&self, mut envelope: Envelope) -> Result<Committed, WriteError> {
        crate::credential_check::check(
            &mut envelope.command,
            self.clock.now(),
            &self.sealer,
            |account, sid| self.read(|view| view.credential(account, sid)),
        )?;
        self.sealer.seal_command(&mut envelope.command);
        let (deleted, updated) = match &envelope.command {
            bindery_domain::Command::DeleteCredential { credential, .. } => {
                (Some(*credential), None)
            }
            bindery_domain::Command::UpdateCredential { credential, .. } => {
                (None, Some(*credential))
            }
            _ => (None, None),
        };
        let sent = self.writer.send(Execute(envelope));
        let answered = match self.write_deadline {
            // On PostgreSQL a caller hears within the deadline, whatever the database does;
            // a write still queued or running then may yet commit (as when an answer is lost
            // on the wire: an Idempotency-Key makes the retry safe).
            Some(deadline) => tokio::time::timeout(deadline, sent)
                .await
                .unwrap_or_else(|_| {
                    Ok(Err(WriteError::Unavailable(
                        "the database did not answer in time".into(),
                    )))
                }),
            None => sent.await,
        };
        let committed = answered
            .unwrap_or_else(|_| Err(WriteError::Unavailable("the writer is not running".into())))?;
        if let Some(credential) = deleted {
            if let Some(direct) = &self.direct {
                direct.forget(&credential);
            }
            let _ = self
                .metrics
                .credential_expiry
                .remove_label_values(&[credential.as_str()]);
        }
        if let (Some(credential), Some(direct)) = (updated, &self.direct) {
            direct.reset_health(&credential);
        }
        if let Some(bindery_domain::Row::Credential(credential)) = &committed.row {
            self.show_expiry(credential);
        }
        Ok(committed)
    }

    /// `bindery_credential_expiry_timestamp_seconds` for a certificate credential.
    fn show_expiry(&self, credential: &bindery_domain::Credential) {
        let label = [credential.sid.as_str()];
        match credential.profile.expires {
            Some(expires) => self
                .metrics
                .credential_expiry
                .with_label_values(&label)
                .set(expires.unix()),
            None => {
                let _ = self.metrics.credential_expiry.remove_label_values(&label);
            }
        }
    }

    /// Whether `credential` pushes (the body's `healthy`): nothing but the direct transport
    /// can find it otherwise.
    /// Why the provider last refused this credential, while that stands (direct transport).
    pub fn credential_fault(&self, credential: &bindery_domain::CredentialSid) -> Option<String> {
        self.direct
            .as_ref()
            .and_then(|direct| direct.fault(credential))
    }

    pub fn credential_healthy(&self, credential: &bindery_domain::CredentialSid) -> bool {
        self.direct
            .as_ref()
            .is_none_or(|direct| direct.healthy(credential))
    }

    /// The direct sender, when pushes go straight to the providers.
    pub fn direct(&self) -> Option<&Direct> {
        self.direct.as_deref()
    }

    /// A new notify's SID: it names the notify in its answer and its delivery records, and
    /// sorts after every one made before.
    pub fn new_notification_sid(&self) -> NotificationSid {
        self.notification_sids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .new_sid()
    }

    /// Writes delivery records through the writer, with the next group commit: each is
    /// upserted (a `pending` record written again with its outcome is updated in place) and
    /// each binding keeps its newest [`crate::records::KEPT_PER_BINDING`]; a binding that is
    /// gone gets none. Answers after the commit. Notify calls it once per notify; a transport
    /// that finishes pushes in the background calls it again for them as they end.
    pub async fn record_deliveries(&self, records: Vec<DeliveryRecord>) -> Result<(), WriteError> {
        if records.is_empty() {
            return Ok(());
        }
        self.writer
            .send(RecordDeliveries(records))
            .await
            .unwrap_or_else(|_| Err(WriteError::Unavailable("the writer is not running".into())))
    }

    /// The key credentials are sealed under: what opens them for a sender. Nothing opens
    /// them on the way to an answer.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Runs a query now, on this thread, on a read-only connection (see [`Readers`]).
    pub fn read<F, R>(&self, query: F) -> Result<R, StoreError>
    where
        F: FnOnce(&ReadView) -> Result<R, StoreError>,
    {
        self.readers.run(query)
    }

    /// Why the daemon cannot serve writes now, if it cannot: the database does not take the
    /// write lock, or the projections lag the log.
    pub async fn readiness(&self) -> Result<(), String> {
        // The reason is shown without authentication: it names no path (the log has them).
        let failed = |what: &str, e: StoreError| {
            tracing::warn!(error = %e, "not ready: the database is not {what}");
            format!("the database is not {what}: {}", e.kind_of_failure())
        };
        match self.writer.send(Probe).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(failed("writable", e)),
            Err(_) => return Err("the writer is not running".into()),
        }
        match self.read(|view| view.positions()) {
            Ok((projected, logged)) if projected == logged => Ok(()),
            Ok((projected, logged)) => Err(format!(
                "projections at position {projected}, the log at {logged}"
            )),
            Err(e) => Err(failed("readable", e)),
        }
    }

    /// Hands one push to a dispatcher thread and waits for the transport's answer.
    pub async fn deliver(&self, push: Push) -> Attempted {
        // Counted down however the wait ends, a caller that went away included.
        struct InFlight<'a>(&'a prometheus::IntGauge);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.dec();
            }
        }
        self.metrics.deliveries_in_flight.inc();
        let _counted = InFlight(&self.metrics.deliveries_in_flight);
        self.dispatcher
            .send(Deliver(push))
            .await
            .unwrap_or_else(|_| Attempted::untried(DeliveryError::DispatcherStopped))
    }

    /// Expires what is stale now (the sweeper also does this on its own schedule).
    pub async fn sweep(&self) -> u64 {
        self.sweeper.send(Sweep).await.unwrap_or(0)
    }

    /// A place among the long-polls waiting for `account`'s events, if the limits leave one.
    pub fn subscribe_feed(&self, account: AccountSid) -> Result<FeedSubscription, WaitRefused> {
        self.feed.subscribe(account)
    }

    /// Pushes one notify hands to the dispatchers at once: as many as they have threads, so a
    /// large fan-out queues in its own request, not as thousands of messages in their mailbox
    /// (all of them for `direct`, whose limits are per credential and in all).
    pub fn fan_out(&self) -> usize {
        self.fan_out
    }

    /// The account that `username:password` (HTTP Basic) signs in as, checked as
    /// [`ReadView::authenticate`] checks it. On PostgreSQL a sign-in that succeeded is kept
    /// by the node while it hears the other nodes (see `cluster`): every request signs in,
    /// and a round trip each would cost every request; a key revoked through any node
    /// empties the cache at once.
    pub fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<AccountSid>, StoreError> {
        let key = match self.node.sign_ins().lookup(username, password) {
            Ok(account) => return Ok(Some(account)),
            Err(key) => key,
        };
        let account = self.read(|view| view.authenticate(username, password))?;
        if let Some(account) = account {
            self.node.sign_ins().keep(key, account);
        }
        Ok(account)
    }

    /// Opens a console session for `account`, signed in with `principal` (its account SID or
    /// API key SID), ending `lifetime` from now; answers the token for the cookie (shown
    /// once: only its hash is stored) and the session.
    pub async fn open_console_session(
        &self,
        account: AccountSid,
        principal: &str,
        lifetime: Duration,
    ) -> Result<(String, ConsoleSession), StoreError> {
        let token = hex::encode(
            [
                crate::secrets::random_bytes(),
                crate::secrets::random_bytes(),
            ]
            .concat(),
        );
        let session = ConsoleSession {
            account,
            principal: principal.to_owned(),
            csrf_token: crate::secrets::new_secret(),
            expires_at: self
                .clock
                .now()
                .plus_seconds(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
        };
        let change = SessionWrite::Open {
            token_hash: session_token_hash(&token),
            session: session.clone(),
        };
        self.write_sessions(change).await?;
        Ok((token, session))
    }

    /// Ends the console session of `token`, on every node.
    pub async fn close_console_session(&self, token: &str) -> Result<(), StoreError> {
        let token_hash = session_token_hash(token);
        self.write_sessions(SessionWrite::Close { token_hash })
            .await
    }

    /// The console session of `token`, while it lasts and what it signed in with is not
    /// revoked.
    pub fn console_session(&self, token: &str) -> Result<Option<ConsoleSession>, StoreError> {
        let now = self.clock.now();
        self.read(|view| view.console_session(&session_token_hash(token), now))
    }

    async fn write_sessions(&self, change: SessionWrite) -> Result<(), StoreError> {
        self.writer
            .send(WriteSessions(change))
            .await
            .unwrap_or_else(|_| Err(StoreError::Refused("the writer is not running".into())))
    }

    /// Commits what is pending and closes the database cleanly.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.node.stop();
        self.writer.send(Close).await.unwrap_or(Ok(()))
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// How long a caller should wait before retrying after the storage was unavailable.
    pub fn retry_after(&self) -> Duration {
        Duration::from_secs(1)
    }
}

/// What a console session's token is stored under: its SHA-256, in hex.
fn session_token_hash(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}
