//! Bindings not refreshed within `stale_after` are expired by the sweeper, with the time coming
//! from a [`ManualClock`] the test moves: no test here sleeps.
//!
//! Each test runs a real [`Daemon`] (writer, readers, sweeper) inside an actix `System` on a
//! fresh database (on either engine), and ends with the log replaying into exactly the live
//! projections.

mod engines;

use std::sync::Arc;
use std::time::Duration;

use bindery_daemon::clock::ManualClock;
use bindery_daemon::queries::{Cursor, EventFilter, PageRequest};
use bindery_daemon::{Committed, Daemon, DaemonOptions, Envelope};
use bindery_domain::*;
use engines::{on_both_engines, Database, Engine, Server};

const DAY: i64 = 24 * 60 * 60;
const STALE_AFTER_DAYS: i64 = 60;
/// 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000;

fn options(database: &Database, clock: &ManualClock) -> DaemonOptions {
    DaemonOptions {
        clock: Arc::new(clock.clone()),
        stale_after: Duration::from_secs((STALE_AFTER_DAYS * DAY) as u64),
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

fn create_account() -> Command {
    Command::CreateAccount {
        friendly_name: "expiry".into(),
        auth_token_hash: SecretHash::of("not a real token"),
    }
}

fn create_service(account: AccountSid) -> Command {
    Command::CreateService {
        account,
        friendly_name: "chat".into(),
    }
}

fn register(
    account: AccountSid,
    service: ServiceSid,
    identity: &str,
    binding_type: BindingType,
    address: &str,
) -> Command {
    Command::RegisterBinding(RegisterBinding {
        account,
        service,
        user: UserRef::Identity(Identity::parse(identity).unwrap()),
        binding_type,
        address: PushAddress::parse(address).unwrap(),
        endpoint: None,
        credential: None,
        message_types: None,
        per_user_limit: 20,
    })
}

fn account_of(committed: &Committed) -> AccountSid {
    match &committed.row {
        Some(Row::Account(account)) => account.sid,
        other => panic!("not an account: {other:?}"),
    }
}

fn service_of(committed: &Committed) -> ServiceSid {
    match &committed.row {
        Some(Row::Service(service)) => service.sid,
        other => panic!("not a service: {other:?}"),
    }
}

fn binding_of(committed: &Committed) -> Binding {
    match &committed.row {
        Some(Row::Binding(binding)) => binding.clone(),
        other => panic!("not a binding: {other:?}"),
    }
}

/// Every event of one binding's stream, oldest first.
async fn history(
    daemon: &Daemon,
    account: AccountSid,
    service: ServiceSid,
    binding: BindingSid,
) -> Vec<RecordedEvent> {
    let page = daemon
        .read(move |view| {
            view.events(
                &account,
                &EventFilter::Binding(service, binding),
                &PageRequest {
                    cursor: Cursor::Start,
                    size: 1000,
                },
            )
        })
        .unwrap();
    assert!(!page.more);
    page.items
}

async fn binding_exists(
    daemon: &Daemon,
    account: AccountSid,
    service: ServiceSid,
    binding: BindingSid,
) -> bool {
    daemon
        .read(move |view| view.binding(&account, &service, &binding))
        .unwrap()
        .is_some()
}

/// The newest log position.
async fn log_position(daemon: &Daemon) -> i64 {
    daemon.read(|view| view.positions()).unwrap().1
}

/// How many bindings the log has ever expired.
async fn expired_events(daemon: &Daemon, account: AccountSid) -> usize {
    let mut cursor = Cursor::Start;
    let mut expired = 0;
    loop {
        let request = PageRequest {
            cursor: cursor.clone(),
            size: 1000,
        };
        let page = daemon
            .read(move |view| view.events(&account, &EventFilter::Account, &request))
            .unwrap();
        expired += page
            .items
            .iter()
            .filter(|e| {
                e.event
                    == Event::BindingDeleted {
                        reason: BindingRemoval::Expired,
                        provider_reason: None,
                    }
            })
            .count();
        match (page.more, page.items.last()) {
            (true, Some(last)) => cursor = Cursor::After(last.position.to_string()),
            _ => return expired,
        }
    }
}

fn gauge(daemon: &Daemon, binding_type: BindingType) -> i64 {
    daemon
        .metrics()
        .bindings
        .with_label_values(&[binding_type.as_str()])
        .get()
}

/// The bindings gauges once they count every commit: at once on SQLite, whose writer keeps
/// them; on PostgreSQL once the node's listener has heard the notice of the log's head.
async fn gauges(daemon: &Daemon) -> [i64; 3] {
    let head = log_position(daemon).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while daemon.metrics().log_position.get() < head {
        assert!(
            std::time::Instant::now() < deadline,
            "the gauges did not reach position {head}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    BindingType::ALL.map(|t| gauge(daemon, t))
}

/// Closes the daemon cleanly, then replays the log: every projection row must match.
async fn shut_down_and_verify(daemon: &Daemon, database: &Database) {
    daemon.shutdown().await.unwrap();
    database.assert_verifies();
}

async fn bindings_not_refreshed_within_stale_after_are_expired_and_refreshed_ones_survive(
    engine: Engine,
) {
    let server = Server::start(engine);
    let database = server.database();
    let clock = ManualClock::at(Timestamp::from_unix(T0));
    let daemon = Daemon::start(options(&database, &clock)).unwrap();

    let account = account_of(&run(&daemon, create_account()).await);
    let service = service_of(&run(&daemon, create_service(account)).await);
    let mut bindings = Vec::new();
    for (identity, binding_type, address) in [
        ("alice", BindingType::Apn, "alice-apn-token"),
        ("alice", BindingType::Fcm, "alice-fcm-token"),
        ("bob", BindingType::Gcm, "bob-gcm-token"),
        ("carol", BindingType::Apn, "carol-apn-token"),
    ] {
        let committed = run(
            &daemon,
            register(account, service, identity, binding_type, address),
        )
        .await;
        assert!(committed.created);
        let binding = binding_of(&committed);
        assert_eq!(binding.date_updated, Timestamp::from_unix(T0));
        bindings.push(binding);
    }
    // Apn, Gcm, Fcm: the order of `BindingType::ALL`.
    let all_types = BindingType::ALL;
    let count_of = |t: BindingType, list: &[&Binding]| {
        list.iter().filter(|b| b.binding_type == t).count() as i64
    };
    let everyone: Vec<&Binding> = bindings.iter().collect();
    assert_eq!(
        gauges(&daemon).await,
        all_types.map(|t| count_of(t, &everyone)),
        "the gauge counts every registration"
    );

    // Thirty days on, alice's apn device registers again: the same binding, refreshed.
    clock.advance(30 * DAY);
    let refreshed = run(
        &daemon,
        register(
            account,
            service,
            "alice",
            BindingType::Apn,
            "alice-apn-token",
        ),
    )
    .await;
    assert!(!refreshed.created, "a re-registration updates in place");
    let refreshed = binding_of(&refreshed);
    assert_eq!(refreshed.sid, bindings[0].sid);
    assert_eq!(
        refreshed.date_updated,
        Timestamp::from_unix(T0 + 30 * DAY),
        "registering again refreshes date_updated"
    );
    assert_eq!(refreshed.date_created, Timestamp::from_unix(T0));

    // Nothing is stale yet: a sweep expires nothing and appends nothing.
    let before = log_position(&daemon).await;
    assert_eq!(daemon.sweep().await, 0, "nothing is older than 60 days yet");
    assert_eq!(
        log_position(&daemon).await,
        before,
        "an idle sweep appends nothing"
    );
    for binding in &bindings {
        assert!(binding_exists(&daemon, account, service, binding.sid).await);
    }

    // Sixty-one days after t0: everything but the refreshed binding is 61 days old.
    clock.advance(31 * DAY);
    let gauges_before = gauges(&daemon).await;
    let expired = daemon.sweep().await;
    assert_eq!(
        expired, 3,
        "exactly the three bindings not refreshed expire"
    );

    let stale: Vec<&Binding> = bindings[1..].iter().collect();
    for binding in &stale {
        assert!(
            !binding_exists(&daemon, account, service, binding.sid).await,
            "{} ({}) should have expired",
            binding.sid,
            binding.identity.as_str()
        );
        let events = history(&daemon, account, service, binding.sid).await;
        let last = events.last().expect("the binding has a history");
        assert_eq!(
            last.event,
            Event::BindingDeleted {
                reason: BindingRemoval::Expired,
                provider_reason: None,
            },
            "the history of {} ends with its expiry: {events:?}",
            binding.sid
        );
        assert_eq!(last.recorded_at, Timestamp::from_unix(T0 + 61 * DAY));
        assert_eq!(last.service_sid, Some(service));
        assert_eq!(last.account_sid, account);
        assert_eq!(events.len(), 2, "registered, then expired: {events:?}");
    }
    assert!(
        binding_exists(&daemon, account, service, bindings[0].sid).await,
        "the binding refreshed at day 30 is 31 days old and stays"
    );
    let survivor = history(&daemon, account, service, bindings[0].sid).await;
    assert!(
        matches!(
            survivor.last().map(|e| &e.event),
            Some(Event::BindingUpdated { .. })
        ),
        "{survivor:?}"
    );

    let expected_drop = all_types.map(|t| count_of(t, &stale));
    let gauges_after = gauges(&daemon).await;
    for (i, binding_type) in all_types.iter().enumerate() {
        assert_eq!(
            gauges_before[i] - gauges_after[i],
            expected_drop[i],
            "the {} gauge drops by the {} expired",
            binding_type.as_str(),
            expected_drop[i]
        );
    }
    assert_eq!(gauges_after, [1, 0, 0], "only alice's apn binding is left");

    // Sweeping again at the same moment finds nothing more.
    let before = log_position(&daemon).await;
    assert_eq!(daemon.sweep().await, 0);
    assert_eq!(log_position(&daemon).await, before);

    // The survivor goes too once it is itself more than 60 days old.
    clock.advance(30 * DAY);
    assert_eq!(daemon.sweep().await, 1);
    assert!(!binding_exists(&daemon, account, service, bindings[0].sid).await);
    assert_eq!(gauges(&daemon).await, [0, 0, 0]);
    assert_eq!(expired_events(&daemon, account).await, 4);

    shut_down_and_verify(&daemon, &database).await;
}

async fn a_sweep_with_nothing_stale_expires_nothing(engine: Engine) {
    let server = Server::start(engine);
    let database = server.database();
    let clock = ManualClock::at(Timestamp::from_unix(T0));
    let daemon = Daemon::start(options(&database, &clock)).unwrap();

    // An empty registry.
    assert_eq!(daemon.sweep().await, 0);

    let account = account_of(&run(&daemon, create_account()).await);
    let service = service_of(&run(&daemon, create_service(account)).await);
    let mut sids = Vec::new();
    for n in 0..5 {
        let committed = run(
            &daemon,
            register(
                account,
                service,
                &format!("user-{n}"),
                BindingType::Fcm,
                &format!("token-{n}"),
            ),
        )
        .await;
        sids.push(binding_of(&committed).sid);
    }
    // Fresh, a day old, and 59 days old: none is stale.
    let position = log_position(&daemon).await;
    for days in [0, 1, 58] {
        clock.advance(days * DAY);
        assert_eq!(daemon.sweep().await, 0);
    }
    assert_eq!(
        log_position(&daemon).await,
        position,
        "sweeps that find nothing append nothing"
    );
    for sid in &sids {
        assert!(binding_exists(&daemon, account, service, *sid).await);
    }
    assert_eq!(gauges(&daemon).await[2], 5, "the fcm gauge");
    assert_eq!(expired_events(&daemon, account).await, 0);

    shut_down_and_verify(&daemon, &database).await;
}

async fn one_sweep_expires_more_stale_bindings_than_one_batch_holds(engine: Engine) {
    const USERS: usize = 100;
    const PER_USER: usize = 12;
    const STALE: usize = USERS * PER_USER;
    const FRESH: usize = 7;
    let server = Server::start(engine);
    let database = server.database();

    // 1,200 bindings (100 users with 12 each) registered at t0, straight into the store, 300 per
    // transaction.
    let (account, service) = {
        let mut store = database.open();
        let now = Timestamp::from_unix(T0);
        let account = account_of(&store.execute_one(create_account().into(), now).unwrap());
        let service = service_of(
            &store
                .execute_one(create_service(account).into(), now)
                .unwrap(),
        );
        let commands: Vec<Envelope> = (0..USERS)
            .flat_map(|u| {
                (0..PER_USER).map(move |b| {
                    let binding_type = BindingType::ALL[b % 3];
                    register(
                        account,
                        service,
                        &format!("user-{u:03}"),
                        binding_type,
                        &format!("token-{u:03}-{b:02}"),
                    )
                    .into()
                })
            })
            .collect();
        let mut registered = 0;
        for batch in commands.chunks(300) {
            for result in store.execute(batch, now) {
                let committed = result.unwrap();
                assert!(committed.created);
                registered += 1;
            }
        }
        assert_eq!(registered, STALE);
        (account, service)
    };

    // The daemon starts 61 days later and counts what the store holds.
    let clock = ManualClock::at(Timestamp::from_unix(T0 + 61 * DAY));
    let daemon = Daemon::start(options(&database, &clock)).unwrap();
    assert_eq!(gauges(&daemon).await.iter().sum::<i64>(), STALE as i64);
    assert_eq!(gauges(&daemon).await, [400, 400, 400]);

    // A few devices registered just now: they must survive the sweep.
    let mut fresh = Vec::new();
    for n in 0..FRESH {
        let committed = run(
            &daemon,
            register(
                account,
                service,
                &format!("fresh-{n}"),
                BindingType::Apn,
                &format!("fresh-token-{n}"),
            ),
        )
        .await;
        fresh.push(binding_of(&committed).sid);
    }

    let position = log_position(&daemon).await;
    let commits = daemon.metrics().commit_batch_size.get_sample_count();
    let expired = daemon.sweep().await;
    assert!(
        daemon.metrics().commit_batch_size.get_sample_count() - commits >= 3,
        "1,200 bindings take at least three transactions of at most 500"
    );
    assert_eq!(
        expired, STALE as u64,
        "one sweep() expires every stale binding, across several batches of 500"
    );
    assert_eq!(
        log_position(&daemon).await,
        position + STALE as i64,
        "one BindingDeleted per expired binding"
    );
    assert_eq!(expired_events(&daemon, account).await, STALE);
    assert_eq!(
        gauges(&daemon).await,
        [FRESH as i64, 0, 0],
        "only the fresh apn bindings are counted"
    );
    let left = daemon
        .read(move |view| {
            view.bindings(
                &account,
                &service,
                &Default::default(),
                &PageRequest {
                    cursor: Cursor::Start,
                    size: 1000,
                },
            )
        })
        .unwrap();
    let left: Vec<BindingSid> = left.items.iter().map(|b| b.sid).collect();
    assert_eq!(left, fresh, "exactly the fresh bindings are left");
    assert_eq!(daemon.sweep().await, 0, "nothing stale is left");

    shut_down_and_verify(&daemon, &database).await;
}

on_both_engines!(async:
    bindings_not_refreshed_within_stale_after_are_expired_and_refreshed_ones_survive,
    a_sweep_with_nothing_stale_expires_nothing,
    one_sweep_expires_more_stale_bindings_than_one_batch_holds,
);
