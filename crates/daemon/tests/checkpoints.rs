//! The write-ahead log stays bounded while a daemon writes: the writer hands checkpoints to
//! the checkpointer (see `actors/checkpointer.rs`) instead of SQLite's automatic checkpoint,
//! which its commit hook replaces. Were the hand-off broken, the log would only grow.

use std::time::{Duration, Instant};

use bindery_daemon::store;
use bindery_daemon::{Daemon, DaemonOptions, Envelope};
use bindery_domain::*;
use tempfile::TempDir;

/// SQLite's page size here, and the size of a log frame's header.
const PAGE: u64 = 4096;
const FRAME: u64 = PAGE + 24;
/// Log pages at which the writer asks the checkpointer for a checkpoint
/// (`actors::checkpointer::ASK_AT`).
const ASK_AT: u32 = 1000;

/// The length of the log's file, in frames.
fn wal_pages(dir: &std::path::Path) -> u64 {
    let wal = store::database_path(dir).with_extension("db-wal");
    std::fs::metadata(wal).map(|m| m.len() / FRAME).unwrap_or(0)
}

/// What the log's index (the `-shm` file) says: the frames the log holds now, and how many of
/// them a checkpoint has copied into the database file. These are SQLite's `mxFrame` and
/// `nBackfill`, at bytes 16 and 96, in the machine's byte order
/// (<https://www.sqlite.org/walformat.html>); both fall to 0 when the log starts over.
fn wal_index(dir: &std::path::Path) -> (u32, u32) {
    let shm = store::database_path(dir).with_extension("db-shm");
    let bytes = std::fs::read(&shm).unwrap_or_default();
    let at = |offset: usize| {
        bytes
            .get(offset..offset + 4)
            .map_or(0, |b| u32::from_ne_bytes(b.try_into().expect("four bytes")))
    };
    (at(16), at(96))
}

/// Waits until `condition` holds, giving the runtime back between checks; panics naming
/// `what` after `within` (a guard against a hang, not a measurement).
async fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "gave up after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[actix_rt::test]
async fn the_log_stays_bounded_while_thousands_of_commits_append_to_it() {
    let dir = TempDir::new().unwrap();
    let daemon = Daemon::start(DaemonOptions::new(dir.path().to_owned())).unwrap();
    let run = |command: Command| {
        let daemon = daemon.clone();
        async move { daemon.execute(Envelope::from(command)).await.unwrap() }
    };
    let account = match run(Command::CreateAccount {
        friendly_name: "checkpoints".into(),
        auth_token_hash: SecretHash::of("not a real token"),
    })
    .await
    .row
    {
        Some(Row::Account(account)) => account.sid,
        other => panic!("not an account: {other:?}"),
    };
    let service = match run(Command::CreateService {
        account,
        friendly_name: "chat".into(),
    })
    .await
    .row
    {
        Some(Row::Service(service)) => service.sid,
        other => panic!("not a service: {other:?}"),
    };
    // One commit each (one at a time), each adding a few pages to the log: several times
    // the size at which the writer asks for a checkpoint, in all; pausing now and then until
    // the checkpointer has caught up, as a pause in the load lets it.
    let mut largest = 0;
    for n in 0..3000 {
        run(Command::RegisterBinding(RegisterBinding {
            account,
            service,
            user: UserRef::Identity(Identity::parse(&format!("user-{n}")).unwrap()),
            binding_type: BindingType::Fcm,
            address: PushAddress::parse(&format!("token-{n:064}")).unwrap(),
            endpoint: None,
            credential: None,
            message_types: None,
            per_user_limit: 20,
        }))
        .await;
        largest = largest.max(wal_pages(dir.path()));
        let (frames, _) = wal_index(dir.path());
        if frames >= 2 * ASK_AT {
            // The writer has asked for checkpoints since the log passed ASK_AT pages. The log
            // starts over only at a commit that finds all of it copied, which under writes
            // without a pause may take long on a busy machine (the writer checkpoints itself
            // only at 20,000 pages): pause the writes until the checkpointer, on its own, has
            // copied everything, which a broken hand-off never does.
            wait_until(
                Duration::from_secs(30),
                &format!("the checkpointer to copy the log's {frames} frames"),
                || {
                    let (frames, copied) = wal_index(dir.path());
                    copied == frames
                },
            )
            .await;
        }
    }
    let database_pages = std::fs::metadata(store::database_path(dir.path()))
        .unwrap()
        .len()
        / PAGE;
    assert!(
        largest < 4 * 1000,
        "the log grew to {largest} pages (the writer asks for a checkpoint at 1000)"
    );
    // The rows reached the database file: checkpoints copied them there.
    assert!(
        database_pages > 100,
        "the database file has {database_pages} pages"
    );
    daemon.shutdown().await.unwrap();
}
