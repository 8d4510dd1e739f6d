//! The write-ahead log stays bounded while a daemon writes: the writer hands checkpoints to
//! the checkpointer (see `actors/checkpointer.rs`) instead of SQLite's automatic checkpoint,
//! which its commit hook replaces. Were the hand-off broken, the log would only grow.

use std::time::Duration;

use bindery_daemon::store;
use bindery_daemon::{Daemon, DaemonOptions, Envelope};
use bindery_domain::*;
use tempfile::TempDir;

/// SQLite's page size here, and the size of a log frame's header.
const PAGE: u64 = 4096;
const FRAME: u64 = PAGE + 24;

fn wal_pages(dir: &std::path::Path) -> u64 {
    let wal = store::database_path(dir).with_extension("db-wal");
    std::fs::metadata(wal).map(|m| m.len() / FRAME).unwrap_or(0)
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
    // the size at which the writer asks for a checkpoint, in all.
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
        if n % 100 == 99 {
            // Room for the checkpointer's thread to run between commits on a busy machine.
            tokio::time::sleep(Duration::from_millis(5)).await;
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
