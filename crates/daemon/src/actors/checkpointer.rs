//! The checkpointer: copies committed pages from the write-ahead log into the database file,
//! on its own thread and connection.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold, on the
//! writer's thread: every few group commits, one of them also copied a thousand pages and
//! waited for their fsync (6% of a registration's CPU in `make bench`, and the slowest
//! commits). Here the writer's commit hook only asks for a checkpoint once the log holds
//! [`ASK_AT`] pages, and this actor runs a PASSIVE one, which never blocks the writer or the
//! readers. Should it fall behind (the log past [`WRITER_AT`] pages), the writer checkpoints
//! itself, as SQLite would have, so the log stays bounded. Durability is the commit's alone:
//! a checkpoint only moves what the log already holds.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use rusqlite::Connection;

use crate::store::{self, Store, StoreError, StoreOptions};

/// Log pages (of 4 KiB) after which the writer asks for a checkpoint.
pub const ASK_AT: i32 = 1000;
/// Log pages after which the writer checkpoints itself.
pub const WRITER_AT: i32 = 20_000;

pub struct Checkpointer {
    conn: Connection,
    asked: Arc<AtomicBool>,
}

impl Actor for Checkpointer {
    type Context = Context<Self>;
}

/// Checkpoint now.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Checkpoint;

impl Handler<Checkpoint> for Checkpointer {
    type Result = ();

    fn handle(&mut self, _: Checkpoint, _: &mut Self::Context) {
        // Asks from now on come after this checkpoint began, so none is lost.
        self.asked.store(false, Ordering::SeqCst);
        if let Err(e) = store::checkpoint_passive(&self.conn) {
            // A full disk or a busy database: the next commit asks again.
            tracing::debug!(error = %e, "checkpoint failed");
        }
    }
}

/// Starts a checkpointer on a thread of its own, and hands the writer's checkpoints to it.
/// The writer's commit hook holds its address, so it lives as long as the writer's store.
pub fn start(path: &Path, options: &StoreOptions, store: &mut Store) -> Result<(), StoreError> {
    let conn = store::open_checkpointer(path, options)?;
    let asked = Arc::new(AtomicBool::new(false));
    let actor_asked = asked.clone();
    let checkpointer =
        Checkpointer::start_in_arbiter(&Arbiter::new().handle(), move |_| Checkpointer {
            conn,
            asked: actor_asked,
        });
    store.on_commit(move |wal, pages| {
        if pages >= WRITER_AT {
            if let Err(e) = wal.checkpoint_v2(rusqlite::wal::CheckpointMode::PASSIVE) {
                tracing::debug!(error = %e, "checkpoint failed");
            }
        } else if pages >= ASK_AT && !asked.swap(true, Ordering::SeqCst) {
            checkpointer.do_send(Checkpoint);
        }
        // Never an error: SQLite would report it for a transaction that has committed.
        Ok(())
    })
}
