//! The sweeper: expires bindings not refreshed within `bindings.stale_after`. When it starts,
//! it sets an interval timer that sends it a [`Sweep`] every `interval` while it is this
//! node's turn to sweep (always on SQLite; one node at a time on PostgreSQL, see `cluster`); it can also be asked
//! to sweep now (`Daemon::sweep`). A sweep asks the writer to expire [`BATCH`] bindings at a
//! time until a batch finds none. The time comes from the daemon's clock, so tests move it
//! instead of sleeping.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bindery_domain::Command;

use super::writer::{Execute, Writer};
use crate::clock::Clock;
use crate::cluster::Node;
use crate::store::Envelope;

/// Bindings expired per transaction, so that one sweep never holds the writer for long.
const BATCH: u32 = 500;

pub struct Sweeper {
    writer: Addr<Writer>,
    /// Whether this node's turn it is (one node of many sweeps, see `cluster`).
    node: Arc<Node>,
    clock: Arc<dyn Clock>,
    stale_after: Duration,
    interval: Duration,
}

impl Sweeper {
    pub fn new(
        writer: Addr<Writer>,
        node: Arc<Node>,
        clock: Arc<dyn Clock>,
        stale_after: Duration,
        interval: Duration,
    ) -> Self {
        Sweeper {
            writer,
            node,
            clock,
            stale_after,
            interval,
        }
    }
}

impl Actor for Sweeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |sweeper, ctx| {
            if sweeper.node.sweeps() {
                ctx.notify(Sweep);
            }
        });
    }
}

/// Expire what is stale now; answers how many bindings were expired.
pub struct Sweep;

impl Message for Sweep {
    type Result = u64;
}

impl Handler<Sweep> for Sweeper {
    type Result = ResponseFuture<u64>;

    fn handle(&mut self, _: Sweep, _: &mut Self::Context) -> Self::Result {
        let writer = self.writer.clone();
        let older_than = self
            .clock
            .now()
            .plus_seconds(-(self.stale_after.as_secs() as i64));
        Box::pin(async move {
            let mut expired = 0;
            loop {
                let command = Command::ExpireStale {
                    older_than,
                    limit: BATCH,
                };
                match writer.send(Execute(Envelope::from(command))).await {
                    Ok(Ok(committed)) if !committed.events.is_empty() => {
                        expired += committed.events.len() as u64;
                    }
                    Ok(Ok(_)) => break,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "the sweep stopped; it will run again");
                        break;
                    }
                    Err(_) => break,
                }
            }
            if expired > 0 {
                tracing::info!(expired, "expired bindings not refreshed within stale_after");
            }
            expired
        })
    }
}
