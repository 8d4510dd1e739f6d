//! The writer: the one actor that owns the write connection.
//!
//! Group commit falls out of how an actix context runs: it drains every message waiting in the
//! mailbox before it handles notifications. Each `Execute` only queues its command and, if no
//! flush is pending, notifies a `Flush`; so while one transaction commits (blocking this
//! actor's own thread on fsync), arriving commands pile up in the mailbox, and the next `Flush`
//! commits all of them at once. Each caller hears back only after its transaction commits.
//!
//! Delivery records ([`RecordDeliveries`]) join the same group commit: a notify's records
//! wait in the mailbox with the commands and go into the next transaction, after its
//! commands, in a savepoint of their own. Under `synchronous = full` a transaction of their
//! own would cost every notify one more fsync, and a burst of notifies one each, where
//! joining the batch costs none; the savepoint keeps a failure of the records (which are
//! not events) from failing the commands they share a commit with.

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::feed::FeedWaiters;
use crate::metrics::Metrics;
use crate::records::DeliveryRecord;
use crate::store::{Committed, Envelope, Store, WriteError};

/// The most commands one transaction takes; more wait for the next one.
const MAX_BATCH: usize = 1024;

type Reply = oneshot::Sender<Result<Committed, WriteError>>;
type Recorded = oneshot::Sender<Result<(), WriteError>>;

pub struct Writer {
    store: Store,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    /// The long-polls of the change feed, woken by their account's events.
    feed: Arc<FeedWaiters>,
    group_commit: bool,
    pending: Vec<(Envelope, Reply)>,
    /// Delivery records waiting for the next transaction, one entry per message.
    pending_records: Vec<(Vec<DeliveryRecord>, Recorded)>,
    flush_scheduled: bool,
    /// Whether this writer's commits are all the registry's (SQLite), so that it keeps the
    /// log and bindings gauges itself; on PostgreSQL the node's listener keeps them from
    /// every node's notices, this one's included.
    counts_alone: bool,
}

impl Writer {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        group_commit: bool,
        feed: Arc<FeedWaiters>,
    ) -> Self {
        Writer {
            counts_alone: store.engine() == crate::store::sql::Engine::Sqlite,
            store,
            clock,
            metrics,
            feed,
            group_commit,
            pending: Vec::new(),
            pending_records: Vec::new(),
            flush_scheduled: false,
        }
    }

    fn flush(&mut self) {
        while !self.pending.is_empty() || !self.pending_records.is_empty() {
            let take = self.pending.len().min(MAX_BATCH);
            let (envelopes, replies): (Vec<Envelope>, Vec<Reply>) =
                self.pending.drain(..take).unzip();
            let take = self.pending_records.len().min(MAX_BATCH);
            let (records, recorded): (Vec<Vec<DeliveryRecord>>, Vec<Recorded>) =
                self.pending_records.drain(..take).unzip();
            let records: Vec<DeliveryRecord> = records.into_iter().flatten().collect();
            let started = std::time::Instant::now();
            let (results, records_result) =
                self.store
                    .execute_with_records(&envelopes, &records, self.clock.now());
            // A transaction of records alone is no batch of commands.
            if !envelopes.is_empty() {
                self.measure(started.elapsed(), &results);
            }
            for reply in recorded {
                let _ = reply.send(records_result.clone());
            }
            self.feed
                .publish(results.iter().flatten().flat_map(|c| &c.events));
            for (reply, result) in replies.into_iter().zip(results) {
                // A caller that went away (client disconnected) needs no answer; its write
                // stands, as it would had the answer been lost on the wire.
                let _ = reply.send(result);
            }
        }
    }
}

impl Writer {
    fn measure(&self, took: std::time::Duration, results: &[Result<Committed, WriteError>]) {
        let m = &self.metrics;
        m.commit_duration.observe(took.as_secs_f64());
        m.commit_batch_size.observe(results.len() as f64);
        for committed in results.iter().flatten() {
            for event in &committed.events {
                m.events_appended
                    .with_label_values(&[event.event.type_name()])
                    .inc();
            }
            if !self.counts_alone {
                continue;
            }
            if let Some(event) = committed.events.last() {
                m.set_log_position(event.position);
            }
            m.count_bindings(&committed.binding_changes, false);
        }
    }
}

impl Actor for Writer {
    type Context = Context<Self>;

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        self.flush();
        Running::Stop
    }
}

/// Decide and commit one command; answers after the commit.
pub struct Execute(pub Envelope);

impl Message for Execute {
    type Result = Result<Committed, WriteError>;
}

impl Handler<Execute> for Writer {
    type Result = ResponseFuture<Result<Committed, WriteError>>;

    fn handle(&mut self, Execute(envelope): Execute, ctx: &mut Self::Context) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        self.pending.push((envelope, reply));
        self.schedule(ctx);
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(WriteError::Unavailable("the writer stopped".into())))
        })
    }
}

impl Writer {
    /// Queues `pending` for the next transaction, or commits it now without group commit.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if !self.group_commit {
            self.flush();
        } else if !self.flush_scheduled {
            self.flush_scheduled = true;
            ctx.notify(Flush);
        }
    }
}

/// Upsert these delivery records (a pending one is updated in place) and keep the newest
/// [`crate::records::KEPT_PER_BINDING`] of each binding; answers after the commit. Records of
/// bindings that are gone are not written.
pub struct RecordDeliveries(pub Vec<DeliveryRecord>);

impl Message for RecordDeliveries {
    type Result = Result<(), WriteError>;
}

impl Handler<RecordDeliveries> for Writer {
    type Result = ResponseFuture<Result<(), WriteError>>;

    fn handle(
        &mut self,
        RecordDeliveries(records): RecordDeliveries,
        ctx: &mut Self::Context,
    ) -> Self::Result {
        let (reply, answer) = oneshot::channel();
        self.pending_records.push((records, reply));
        self.schedule(ctx);
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|_| Err(WriteError::Unavailable("the writer stopped".into())))
        })
    }
}

struct Flush;

impl Message for Flush {
    type Result = ();
}

impl Handler<Flush> for Writer {
    type Result = ();

    fn handle(&mut self, _: Flush, _: &mut Self::Context) {
        self.flush_scheduled = false;
        self.flush();
    }
}

/// Opens or closes a console session, in a transaction of its own, now.
pub struct WriteSessions(pub crate::store::console_sessions::SessionWrite);

impl Message for WriteSessions {
    type Result = Result<(), crate::store::StoreError>;
}

impl Handler<WriteSessions> for Writer {
    type Result = Result<(), crate::store::StoreError>;

    fn handle(
        &mut self,
        WriteSessions(change): WriteSessions,
        _: &mut Self::Context,
    ) -> Self::Result {
        self.store.write_sessions(&change, self.clock.now())
    }
}

/// Whether the database takes writes now: takes the write lock and lets it go.
pub struct Probe;

impl Message for Probe {
    type Result = Result<(), crate::store::StoreError>;
}

impl Handler<Probe> for Writer {
    type Result = Result<(), crate::store::StoreError>;

    fn handle(&mut self, _: Probe, _: &mut Self::Context) -> Self::Result {
        self.store.probe_writable()
    }
}

/// Commits what is pending, checkpoints the WAL into the database file and stops.
pub struct Close;

impl Message for Close {
    type Result = Result<(), crate::store::StoreError>;
}

impl Handler<Close> for Writer {
    type Result = Result<(), crate::store::StoreError>;

    fn handle(&mut self, _: Close, ctx: &mut Self::Context) -> Self::Result {
        self.flush();
        ctx.stop();
        self.store.checkpoint_wal()
    }
}
