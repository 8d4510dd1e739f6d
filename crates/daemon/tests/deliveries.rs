//! Delivery records through a real [`Daemon`]: written with the writer's group commit,
//! upserted in place, trimmed to the newest 20 per binding, listed newest first, never written
//! for a binding that is gone and deleted with their binding however it goes (deleted,
//! expired), left alone by a rebuild and by `verify`. On both engines.

mod engines;

use std::sync::Arc;
use std::time::Duration;

use bindery_daemon::clock::ManualClock;
use bindery_daemon::queries::{Cursor, Page, PageRequest};
use bindery_daemon::records::{DeliveryRecord, DeliveryStatus, KEPT_PER_BINDING};
use bindery_daemon::store::sql::Arg;
use bindery_daemon::{Committed, Daemon, DaemonOptions, Envelope};
use bindery_domain::*;
use engines::{on_both_engines, Database, Engine, Server};

const DAY: i64 = 24 * 60 * 60;
/// 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000;

fn options(database: &Database, clock: &ManualClock) -> DaemonOptions {
    DaemonOptions {
        clock: Arc::new(clock.clone()),
        stale_after: Duration::from_secs((60 * DAY) as u64),
        ..database.daemon_options()
    }
}

async fn run(daemon: &Daemon, command: Command) -> Committed {
    let what = format!("{command:?}");
    daemon
        .execute(Envelope::from(command))
        .await
        .unwrap_or_else(|e| panic!("{what} was refused: {e}"))
}

/// An account with one service: their SIDs.
async fn service(daemon: &Daemon) -> (AccountSid, ServiceSid) {
    let account = match run(
        daemon,
        Command::CreateAccount {
            friendly_name: "records".into(),
            auth_token_hash: SecretHash::of("not a real token"),
        },
    )
    .await
    .row
    {
        Some(Row::Account(account)) => account.sid,
        other => panic!("not an account: {other:?}"),
    };
    let service = match run(
        daemon,
        Command::CreateService {
            account,
            friendly_name: "chat".into(),
        },
    )
    .await
    .row
    {
        Some(Row::Service(service)) => service.sid,
        other => panic!("not a service: {other:?}"),
    };
    (account, service)
}

async fn register(
    daemon: &Daemon,
    (account, service): (AccountSid, ServiceSid),
    identity: &str,
    address: &str,
) -> BindingSid {
    let command = Command::RegisterBinding(RegisterBinding {
        account,
        service,
        user: UserRef::Identity(Identity::parse(identity).unwrap()),
        binding_type: BindingType::Apn,
        address: PushAddress::parse(address).unwrap(),
        endpoint: None,
        credential: None,
        message_types: None,
        per_user_limit: 20,
    });
    match run(daemon, command).await.row {
        Some(Row::Binding(binding)) => binding.sid,
        other => panic!("not a binding: {other:?}"),
    }
}

fn record(
    notification: NotificationSid,
    (account, service): (AccountSid, ServiceSid),
    binding: BindingSid,
    status: DeliveryStatus,
    attempts: u32,
    date: i64,
) -> DeliveryRecord {
    DeliveryRecord {
        notification_sid: notification,
        binding_sid: binding,
        service_sid: service,
        account_sid: account,
        date_created: Timestamp::from_unix(date),
        status,
        error: (status == DeliveryStatus::Failed).then(|| "the sender answered 500".into()),
        provider_status: (attempts > 0).then_some(500),
        attempts,
        latency_ms: 7,
    }
}

fn page(
    daemon: &Daemon,
    (account, service): (AccountSid, ServiceSid),
    binding: BindingSid,
    cursor: Cursor,
    size: usize,
) -> Option<Page<DeliveryRecord>> {
    daemon
        .read(move |view| {
            view.deliveries(&account, &service, &binding, &PageRequest { cursor, size })
        })
        .unwrap()
}

/// Every record of the binding, newest first, from one page of 100.
fn all(daemon: &Daemon, ids: (AccountSid, ServiceSid), binding: BindingSid) -> Vec<DeliveryRecord> {
    let page = page(daemon, ids, binding, Cursor::Start, 100).expect("the binding exists");
    assert!(!page.more);
    page.items
}

/// The rows the table holds for a binding, whether or not the binding still exists.
fn rows_of(database: &Database, binding: BindingSid) -> i64 {
    database.count(
        "SELECT COUNT(*) FROM deliveries WHERE binding_sid = ?1",
        &[Arg::Text(binding.as_str())],
    )
}

async fn a_record_is_updated_in_place_and_a_binding_keeps_its_newest_twenty_newest_first(
    engine: Engine,
) {
    let server = Server::start(engine);
    let database = server.database();
    let clock = ManualClock::at(Timestamp::from_unix(T0));
    let daemon = Daemon::start(options(&database, &clock)).unwrap();
    let ids = service(&daemon).await;
    let phone = register(&daemon, ids, "alice", "alice-token").await;
    let tablet = register(&daemon, ids, "bob", "bob-token").await;
    let sids: Vec<NotificationSid> = (0..25).map(|_| daemon.new_notification_sid()).collect();
    assert!(sids.windows(2).all(|w| w[0] < w[1]), "in creation order");

    // A pending record, then its outcome: one record, updated in place, keeping its date.
    daemon
        .record_deliveries(vec![record(
            sids[0],
            ids,
            phone,
            DeliveryStatus::Pending,
            1,
            T0,
        )])
        .await
        .unwrap();
    assert_eq!(all(&daemon, ids, phone)[0].status, DeliveryStatus::Pending);
    let ended = record(sids[0], ids, phone, DeliveryStatus::Failed, 3, T0 + 9);
    daemon.record_deliveries(vec![ended.clone()]).await.unwrap();
    assert_eq!(
        all(&daemon, ids, phone),
        vec![DeliveryRecord {
            date_created: Timestamp::from_unix(T0),
            ..ended
        }]
    );

    // 24 more, some in one message and some alone, and one for the other binding.
    let (batch, alone) = sids[1..].split_at(10);
    daemon
        .record_deliveries(
            batch
                .iter()
                .map(|sid| record(*sid, ids, phone, DeliveryStatus::Delivered, 1, T0 + 10))
                .chain([record(
                    sids[3],
                    ids,
                    tablet,
                    DeliveryStatus::Delivered,
                    1,
                    T0 + 10,
                )])
                .collect(),
        )
        .await
        .unwrap();
    let writes = alone.iter().map(|sid| {
        daemon.record_deliveries(vec![record(
            *sid,
            ids,
            phone,
            DeliveryStatus::Delivered,
            1,
            T0 + 20,
        )])
    });
    for written in futures_util::future::join_all(writes).await {
        written.unwrap();
    }
    let kept = all(&daemon, ids, phone);
    let newest: Vec<NotificationSid> = sids[5..].iter().rev().copied().collect();
    assert_eq!(
        kept.iter().map(|r| r.notification_sid).collect::<Vec<_>>(),
        newest,
        "the newest {KEPT_PER_BINDING}, newest first"
    );
    assert_eq!(rows_of(&database, phone), KEPT_PER_BINDING as i64);
    assert_eq!(
        all(&daemon, ids, tablet)
            .iter()
            .map(|r| r.notification_sid)
            .collect::<Vec<_>>(),
        vec![sids[3]],
        "another binding's records are its own"
    );

    // The outcome of a record already trimmed away does not bring it back.
    daemon
        .record_deliveries(vec![record(
            sids[1],
            ids,
            phone,
            DeliveryStatus::Delivered,
            2,
            T0 + 30,
        )])
        .await
        .unwrap();
    assert_eq!(all(&daemon, ids, phone), kept);

    // Pages of 7: forward with PA (older), and back with PB (newer).
    let first = page(&daemon, ids, phone, Cursor::Start, 7).unwrap();
    assert!(first.more);
    assert_eq!(first.items, kept[..7]);
    let after = |p: &Page<DeliveryRecord>| {
        Cursor::After(p.items.last().unwrap().notification_sid.to_string())
    };
    let second = page(&daemon, ids, phone, after(&first), 7).unwrap();
    assert!(second.more);
    assert_eq!(second.items, kept[7..14]);
    let third = page(&daemon, ids, phone, after(&second), 7).unwrap();
    assert!(!third.more);
    assert_eq!(third.items, kept[14..]);
    let back = Cursor::Before(second.items[0].notification_sid.to_string());
    assert_eq!(page(&daemon, ids, phone, back, 7).unwrap().items, kept[..7]);

    // Another account's view of the binding, or another service's, is no binding at all.
    let other = service(&daemon).await;
    assert_eq!(page(&daemon, other, phone, Cursor::Start, 50), None);
    assert_eq!(
        page(&daemon, (ids.0, other.1), phone, Cursor::Start, 50),
        None
    );

    // Records are not events: verify compares the projections only, and they pass.
    daemon.shutdown().await.unwrap();
    database.assert_verifies();
}

async fn records_go_with_their_binding_and_survive_a_rebuild_and_a_restart(engine: Engine) {
    let server = Server::start(engine);
    let database = server.database();
    let clock = ManualClock::at(Timestamp::from_unix(T0));
    let daemon = Daemon::start(options(&database, &clock)).unwrap();
    let ids = service(&daemon).await;
    let deleted = register(&daemon, ids, "alice", "deleted-token").await;
    let stale = register(&daemon, ids, "bob", "stale-token").await;
    let kept = register(&daemon, ids, "carol", "kept-token").await;
    let notify = daemon.new_notification_sid();
    let records: Vec<DeliveryRecord> = [deleted, stale, kept]
        .into_iter()
        .map(|b| record(notify, ids, b, DeliveryStatus::Delivered, 1, T0))
        .collect();
    daemon.record_deliveries(records.clone()).await.unwrap();
    for binding in [deleted, stale, kept] {
        assert_eq!(rows_of(&database, binding), 1);
    }

    // Deleted: its records go in the same transaction, and none are written for it after.
    run(
        &daemon,
        Command::DeleteBinding {
            account: ids.0,
            service: ids.1,
            user: None,
            binding: deleted,
            reason: BindingRemoval::Api,
        },
    )
    .await;
    assert_eq!(rows_of(&database, deleted), 0);
    assert_eq!(page(&daemon, ids, deleted, Cursor::Start, 50), None);
    daemon
        .record_deliveries(vec![record(
            daemon.new_notification_sid(),
            ids,
            deleted,
            DeliveryStatus::Failed,
            1,
            T0,
        )])
        .await
        .unwrap();
    assert_eq!(
        rows_of(&database, deleted),
        0,
        "no record of a binding gone"
    );

    // Expired by the sweeper: the same.
    clock.advance(30 * DAY);
    register(&daemon, ids, "carol", "kept-token").await;
    clock.advance(31 * DAY);
    assert_eq!(daemon.sweep().await, 1);
    assert_eq!(rows_of(&database, stale), 0);
    assert_eq!(all(&daemon, ids, kept), vec![records[2].clone()]);
    daemon.shutdown().await.unwrap();

    // A rebuild replays the log into the projections and leaves the records be.
    let mut store = database.open();
    store.rebuild().unwrap();
    drop(store);
    database.assert_verifies();

    // Started again: the records are there, and new notifications sort after them.
    let daemon = Daemon::start(options(&database, &clock)).unwrap();
    assert_eq!(all(&daemon, ids, kept), vec![records[2].clone()]);
    assert!(daemon.new_notification_sid() > notify);
    daemon.shutdown().await.unwrap();
}

on_both_engines!(async:
    a_record_is_updated_in_place_and_a_binding_keeps_its_newest_twenty_newest_first,
    records_go_with_their_binding_and_survive_a_rebuild_and_a_restart,
);
