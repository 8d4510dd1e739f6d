//! Many `bindery serve` nodes on one PostgreSQL database (CONTRACT §7): the invariants held
//! across nodes, the change feed and its long-polls, sign-ins, the sweeper's one turn, a node
//! killed under load, a failover of the database, the commands on PostgreSQL, and the
//! settings that cannot work. Every test runs real PostgreSQL servers of its own
//! (`bindery-pgtest`), a fresh database each.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::Duration;

use bindery_pgtest::Cluster;
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    assert_error, basic, bindery, form, serve_until_exit, sid, user_bindings_path, user_path,
    wait_until, write_key_file, Console, Credentials, Database, Node, Nodes, Reply, TestApp,
    PATIENCE,
};

const WAITERS: &str = "bindery_feed_waiters";
const WAKEUPS: &str = "bindery_feed_wakeups_total";
const SWEEPER: &str = "bindery_sweeper_active";

/// `count` nodes on a fresh database of `pg`, with `env` besides the database's settings.
fn fresh_nodes(pg: &Cluster, count: usize, env: &[(&str, &str)]) -> Nodes {
    Nodes::start(Database::new(pg.create_database()), count, env)
}

/// Runs `work(node index, thread index)` on `per_node` threads for each of `nodes`, all
/// released at once by a barrier; the results in node order, then thread order.
fn at_once<T: Send>(
    nodes: &[Node],
    per_node: usize,
    work: impl Fn(usize, usize) -> T + Sync,
) -> Vec<T> {
    let barrier = Barrier::new(nodes.len() * per_node);
    let (barrier, work) = (&barrier, &work);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..nodes.len())
            .flat_map(|n| (0..per_node).map(move |t| (n, t)))
            .map(|(n, t)| {
                scope.spawn(move || {
                    barrier.wait();
                    work(n, t)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

fn fcm(address: &str) -> [(&str, &str); 2] {
    [("BindingType", "fcm"), ("Address", address)]
}

/// A form POST with extra headers, as the first account.
fn post_with(
    node: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
    pairs: &[(&str, &str)],
) -> Reply {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    node.send("POST", path, &all, Some(form(pairs).as_bytes()))
}

/// An answer to a request that may fail on the way (a killed node, a database failing over).
struct Answer {
    status: u16,
    retry_after: Option<String>,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("status {}: not JSON ({e}): {}", self.status, self.text))
    }
}

/// A request that reports a failure to connect or a timeout instead of panicking.
fn attempt(
    agent: &ureq::Agent,
    base_url: &str,
    account: &Credentials,
    method: &str,
    path: &str,
    pairs: Option<&[(&str, &str)]>,
) -> Result<Answer, String> {
    let request = agent
        .request(method, &format!("{base_url}{path}"))
        .set("Authorization", &basic(account));
    let result = match pairs {
        Some(pairs) => request.send_form(pairs),
        None => request.call(),
    };
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(e)) => return Err(e.to_string()),
    };
    Ok(Answer {
        status: response.status(),
        retry_after: response.header("Retry-After").map(str::to_owned),
        text: response.into_string().map_err(|e| e.to_string())?,
    })
}

/// Tells the threads of a test to stop when dropped: a check that fails with them running
/// must not leave the scope that joins them waiting forever.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(timeout).build()
}

/// The binding `sid` of `service`, fetched through `node`: its status and body.
fn fetch_binding(node: &TestApp, service: &str, binding: &str) -> Reply {
    node.get_raw(&format!("/v2/Services/{service}/Bindings/{binding}"))
}

/// The history of a binding, oldest first.
fn binding_history(node: &TestApp, service: &str, binding: &str) -> Vec<Value> {
    node.walk(
        &format!("/v2/Services/{service}/Bindings/{binding}/History"),
        "events",
    )
}

/// The account's newest position, read through `node`'s change feed.
fn feed_head(node: &TestApp) -> i64 {
    let mut after = 0;
    loop {
        let page = node
            .get_raw(&format!("/v2/Events?After={after}&PageSize=1000"))
            .expect(200);
        after = page["meta"]["next_after"].as_i64().expect("next_after");
        if page["meta"]["next_page_url"].is_null() {
            return after;
        }
    }
}

#[test]
fn nodes_starting_together_on_an_empty_database_migrate_it_once_and_make_one_first_account() {
    let pg = Cluster::start();
    let nodes = fresh_nodes(&pg, 3, &[]);
    assert_eq!(
        nodes.first_accounts_written(),
        1,
        "one node made the first account and wrote it down:\n{}",
        nodes.logs()
    );
    let accounts = nodes.db.bindery(&["accounts", "list"]);
    assert!(accounts.status.success());
    let listed: Vec<Value> = String::from_utf8_lossy(&accounts.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("an account line"))
        .collect();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["account_sid"], nodes.account.user.as_str());
    let created: Vec<Value> = nodes
        .db
        .events()
        .into_iter()
        .filter(|e| e["type"] == "AccountCreated")
        .collect();
    assert_eq!(created.len(), 1, "{created:?}");

    // Each migration is recorded once, and the schema they made serves every node.
    assert_eq!(
        pg.psql(
            &nodes.db.url,
            "select string_agg(version::text, ',' order by version) from schema_migrations"
        ),
        "1,2,3"
    );
    for node in nodes.iter() {
        node.get_raw("/v2/Services").expect(200);
    }
}

#[test]
fn one_address_registered_for_three_users_through_three_nodes_at_once_ends_on_one_binding() {
    let pg = Cluster::start();
    let nodes = fresh_nodes(&pg, 3, &[]);
    let service = sid(&nodes[0].create_service("chat"));
    const ROUNDS: usize = 25;
    let mut rounds = Vec::new();
    for round in 0..ROUNDS {
        let address = format!("contested-{round}");
        let sids = at_once(&nodes, 1, |n, _| {
            let reply = nodes[n].register_binding(&service, &format!("racer-{n}"), &fcm(&address));
            sid(&reply.expect(201))
        });
        rounds.push(sids);
    }

    let listed: HashSet<String> = nodes[1]
        .walk(&format!("/v2/Services/{service}/Bindings"), "bindings")
        .iter()
        .map(sid)
        .collect();
    assert_eq!(listed.len(), ROUNDS, "one binding per address");
    for sids in &rounds {
        // The three in the order they committed: each took the address from the one before.
        let mut by_position: Vec<(i64, &String, Vec<Value>)> = sids
            .iter()
            .map(|binding| {
                let history = binding_history(&nodes[2], &service, binding);
                assert_eq!(history[0]["type"], "BindingRegistered", "{history:?}");
                (history[0]["position"].as_i64().unwrap(), binding, history)
            })
            .collect();
        by_position.sort_by_key(|(position, _, _)| *position);
        let (_, holder, holder_history) = by_position.last().unwrap();
        assert!(listed.contains(*holder), "the last to register holds it");
        assert_eq!(holder_history.len(), 1, "{holder_history:?}");
        for pair in by_position.windows(2) {
            let (_, older, history) = &pair[0];
            let (_, newer, _) = &pair[1];
            assert!(!listed.contains(*older), "{older} was superseded");
            let last = history.last().unwrap();
            assert_eq!(last["type"], "BindingSuperseded", "{history:?}");
            assert_eq!(last["data"]["by"], newer.as_str(), "{history:?}");
        }
    }
    nodes.db.verify();
}

#[test]
fn the_per_user_limit_holds_for_registrations_through_three_nodes_at_once() {
    const LIMIT: usize = 4;
    let pg = Cluster::start();
    let nodes = fresh_nodes(
        &pg,
        3,
        &[("BINDERY_BINDINGS__PER_USER_LIMIT", &LIMIT.to_string())],
    );
    let service = sid(&nodes[0].create_service("chat"));
    // Every other user is new: the racing registrations create it, too.
    for round in 0..4 {
        let user = format!("limited-{round}");
        if round % 2 == 0 {
            nodes[0].create_user(&service, &user);
        }
        let replies = at_once(&nodes, 4, |n, t| {
            let address = format!("device-{round}-{n}-{t}");
            nodes[n].register_binding(&service, &user, &fcm(&address))
        });
        let created = replies.iter().filter(|r| r.status == 201).count();
        assert_eq!(created, LIMIT, "exactly the limit succeeds: {replies:?}");
        for refused in replies.iter().filter(|r| r.status != 201) {
            assert_error(refused, 409, 20001);
            let message = refused.body["message"].as_str().unwrap();
            assert!(
                message.contains(&LIMIT.to_string()),
                "names the limit: {message}"
            );
        }
        assert_eq!(nodes[1].user_binding_sids(&service, &user).len(), LIMIT);
    }
    nodes.db.verify();
}

#[test]
fn one_idempotency_key_sent_to_three_nodes_at_once_gets_the_first_answer_everywhere() {
    let pg = Cluster::start();
    let nodes = fresh_nodes(&pg, 3, &[]);
    let service = sid(&nodes[0].create_service("chat"));
    const ROUNDS: usize = 8;
    for round in 0..ROUNDS {
        let key = format!("key-{round}");
        let headers = [("Idempotency-Key", key.as_str())];
        let address = format!("idem-{round}");
        let (path, pairs): (String, Vec<(&str, &str)>) = if round % 2 == 0 {
            ("/v2/Services".into(), vec![("FriendlyName", "once")])
        } else {
            (
                user_bindings_path(&service, &format!("idem-user-{round}")),
                vec![("BindingType", "apn"), ("Address", &address)],
            )
        };
        let replies = at_once(&nodes, 1, |n, _| {
            post_with(&nodes[n], &path, &headers, &pairs)
        });
        assert_eq!(replies[0].status, 201, "{}", replies[0].text);
        for reply in &replies[1..] {
            assert_eq!(
                (reply.status, &reply.text),
                (replies[0].status, &replies[0].text),
                "the same answer, byte for byte"
            );
        }
    }
    // One key with three different bodies at once: one is taken, the others refused.
    let replies = at_once(&nodes, 1, |n, _| {
        let name = format!("contested-{n}");
        post_with(
            &nodes[n],
            "/v2/Services",
            &[("Idempotency-Key", "contested")],
            &[("FriendlyName", &name)],
        )
    });
    let statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        1,
        "{replies:?}"
    );
    for refused in replies.iter().filter(|r| r.status != 201) {
        assert_error(refused, 422, 20001);
    }
    // A service per even key, the contested one and the one made first; a user and a binding
    // per odd key.
    let services = nodes[2].walk("/v2/Services", "services");
    assert_eq!(services.len(), 2 + ROUNDS / 2, "{services:?}");
    let bindings = nodes[1].walk(&format!("/v2/Services/{service}/Bindings"), "bindings");
    assert_eq!(bindings.len(), ROUNDS / 2, "{bindings:?}");
    let users = nodes[0].walk(&format!("/v2/Services/{service}/Users"), "users");
    assert_eq!(users.len(), ROUNDS / 2, "{users:?}");
    nodes.db.verify();
}

#[test]
fn nodes_registering_for_the_same_new_identity_at_once_all_succeed_on_one_user() {
    let pg = Cluster::start();
    let nodes = fresh_nodes(&pg, 3, &[]);
    let service = sid(&nodes[0].create_service("chat"));
    const ROUNDS: usize = 15;
    for round in 0..ROUNDS {
        let identity = format!("newcomer-{round}");
        let bindings = at_once(&nodes, 1, |n, _| {
            let address = format!("first-device-{round}-{n}");
            nodes[n]
                .register_binding(&service, &identity, &fcm(&address))
                .expect(201)
        });
        let user = nodes[1]
            .get_raw(&user_path(&service, &identity))
            .expect(200);
        for binding in &bindings {
            assert_eq!(binding["user_sid"], user["sid"], "{binding}");
            assert_eq!(binding["identity"], identity.as_str());
        }
        assert_eq!(nodes[2].user_binding_sids(&service, &identity).len(), 3);
    }
    let users = nodes[0].walk(&format!("/v2/Services/{service}/Users"), "users");
    assert_eq!(users.len(), ROUNDS, "one user per identity: {users:?}");
    nodes.db.verify();
}

#[test]
fn a_change_feed_reader_on_one_node_sees_every_event_once_in_order_while_two_others_write() {
    let pg = Cluster::start();
    let nodes = fresh_nodes(&pg, 3, &[]);
    let service = sid(&nodes[1].create_service("chat"));
    let written = AtomicBool::new(false);
    let seen: Vec<Value> = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut seen: Vec<Value> = Vec::new();
            let mut after = 0;
            loop {
                // Read before asking: once the writers are done, an empty page is the end.
                let finished = written.load(Ordering::SeqCst);
                let wait = if finished { 0 } else { 2 };
                let page = nodes[0]
                    .get_raw(&format!("/v2/Events?After={after}&PageSize=37&Wait={wait}"))
                    .expect(200);
                let events = page["events"].as_array().expect("events");
                for event in events {
                    assert_eq!(
                        event["position"].as_i64(),
                        Some(after + 1),
                        "the next position after {after}, neither skipped nor repeated"
                    );
                    after += 1;
                    seen.push(event.clone());
                }
                if events.is_empty() && finished {
                    return seen;
                }
            }
        });
        let writers: Vec<_> = (1..3)
            .flat_map(|n| (0..2).map(move |t| (n, t)))
            .map(|(n, t)| {
                let (nodes, service) = (&nodes, &service);
                scope.spawn(move || {
                    for k in 0..50 {
                        let user = format!("writer-{n}-{t}-{}", k / 5);
                        let address = format!("feed-{n}-{t}-{k}");
                        nodes[n]
                            .register_binding(service, &user, &fcm(&address))
                            .expect(201);
                    }
                })
            })
            .collect();
        // verify reads one snapshot: the writes of the other nodes meanwhile are no
        // difference.
        while writers.iter().any(|w| !w.is_finished()) {
            nodes.db.verify();
        }
        for writer in writers {
            writer.join().unwrap();
        }
        written.store(true, Ordering::SeqCst);
        reader.join().unwrap()
    });

    let logged: Vec<(i64, String, String)> = nodes
        .db
        .events()
        .iter()
        .map(|e| {
            (
                e["position"].as_i64().unwrap(),
                e["type"].as_str().unwrap().to_owned(),
                e["stream"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let read: Vec<(i64, String, String)> = seen
        .iter()
        .map(|e| {
            (
                e["position"].as_i64().unwrap(),
                e["type"].as_str().unwrap().to_owned(),
                e["sid"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(read.len() > 200, "hundreds of events: {}", read.len());
    assert_eq!(read, logged, "the feed is the log, in order");
}

/// A long-poll on `waiting` for the account's next event, answered after `writing` commits
/// one; checks that the notice of that commit woke it (the safety poll counts no wakeup).
fn long_poll_woken_across(waiting: &Node, writing: &Node, name: &str) {
    let head = feed_head(waiting);
    let wakeups = waiting.metric(WAKEUPS, &[]);
    let (page, service) = std::thread::scope(|scope| {
        let poll = scope.spawn(|| waiting.get_raw(&format!("/v2/Events?After={head}&Wait=30")));
        wait_until(PATIENCE, "the long-poll to wait", || {
            waiting.metric(WAITERS, &[]) == 1.0
        });
        let service = sid(&writing.create_service(name));
        (poll.join().unwrap().expect(200), service)
    });
    let events = page["events"].as_array().expect("events");
    assert_eq!(events[0]["type"], "ServiceCreated", "{page}");
    assert_eq!(events[0]["sid"], service.as_str());
    assert_eq!(events[0]["position"].as_i64(), Some(head + 1));
    assert!(
        waiting.metric(WAKEUPS, &[]) > wakeups,
        "{} was woken by the notice of {}'s commit, not by its safety poll",
        waiting.base_url,
        writing.base_url
    );
}

#[test]
fn a_long_poll_on_one_node_is_woken_by_another_nodes_commit() {
    let pg = Cluster::start();
    let nodes = fresh_nodes(&pg, 2, &[]);
    long_poll_woken_across(&nodes[0], &nodes[1], "heard");
    long_poll_woken_across(&nodes[1], &nodes[0], "heard back");
}

/// A key made by the CLI signs in on every node, and is refused on every node once the CLI
/// revokes it, though each node had it in its cache of sign-ins.
fn revocation_reaches_every_node(nodes: &Nodes) {
    let key = nodes.db.create_key(&nodes.account.user);
    for _ in 0..2 {
        // The second time each node may answer from its cache of sign-ins.
        for node in nodes.iter() {
            let (status, body) = node.get("/v2/Services", Some(&key));
            assert_eq!(status, 200, "{}: {body}", node.base_url);
        }
    }
    let revoked = nodes.db.bindery(&["keys", "revoke", &key.user]);
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    for (i, node) in nodes.iter().enumerate() {
        wait_until(
            PATIENCE,
            &format!("node {i} to refuse the revoked key"),
            || node.get("/v2/Services", Some(&key)).0 == 401,
        );
        let (status, body) = node.get("/v2/Services", Some(&key));
        assert_eq!(
            (status, body["code"].as_u64()),
            (401, Some(20003)),
            "{body}"
        );
        node.get_raw("/v2/Services").expect(200);
    }
}

#[test]
fn keys_revoked_or_created_through_the_cli_take_effect_on_every_node() {
    let pg = Cluster::start();
    let nodes = fresh_nodes(&pg, 3, &[]);
    revocation_reaches_every_node(&nodes);

    let fresh = nodes.db.create_key(&nodes.account.user);
    let other = nodes.db.bindery_json(&["accounts", "create"]);
    let other = Credentials::printed(&other, "account_sid", "auth_token");
    for node in nodes.iter() {
        assert_eq!(node.get("/v2/Services", Some(&fresh)).0, 200);
        assert_eq!(node.get("/v2/Services", Some(&other)).0, 200);
    }
}

#[test]
fn every_node_shows_the_registrys_bindings_and_log_position_in_its_metrics() {
    let pg = Cluster::start();
    let nodes = fresh_nodes(&pg, 2, &[]);
    let service = sid(&nodes[0].create_service("counted"));
    let mut written = Vec::new();
    for i in 0..3 {
        written.push(sid(&nodes[0]
            .register_binding(&service, "counted", &fcm(&format!("count-{i}")))
            .expect(201)));
    }
    let fcm_bindings = [("binding_type", "fcm")];
    let all_show = |count: f64| {
        let head = feed_head(&nodes[0]) as f64;
        for (i, node) in nodes.iter().enumerate() {
            wait_until(
                PATIENCE,
                &format!("node {i} to show the registry's {count} fcm bindings and its head"),
                || {
                    node.metric("bindery_bindings", &fcm_bindings) == count
                        && node.metric("bindery_log_position", &[]) == head
                },
            );
        }
    };
    all_show(3.0);

    // A deletion on the other node counts on both.
    let deleted = nodes[1].delete(&format!("/v2/Services/{service}/Bindings/{}", written[0]));
    assert_eq!(deleted.status, 204);
    all_show(2.0);

    // A node that starts on a registry with bindings counts them all.
    let db = Database::with_key_file(nodes.db.url.clone(), nodes.db.key_file());
    let late = Nodes::start_on_registry(db, 1, &[], nodes.account.clone());
    let head = feed_head(&nodes[0]) as f64;
    assert_eq!(late[0].metric("bindery_bindings", &fcm_bindings), 2.0);
    assert_eq!(late[0].metric("bindery_log_position", &[]), head);
}

#[test]
fn one_node_sweeps_at_a_time_and_another_takes_over_when_it_dies() {
    let pg = Cluster::start();
    let mut nodes = fresh_nodes(
        &pg,
        3,
        &[
            ("BINDERY_BINDINGS__STALE_AFTER", "2s"),
            ("BINDERY_BINDINGS__SWEEP_INTERVAL", "1s"),
        ],
    );
    let sweeping = |nodes: &Nodes, alive: &[usize]| -> Vec<usize> {
        alive
            .iter()
            .copied()
            .filter(|&i| nodes[i].metric(SWEEPER, &[]) == 1.0)
            .collect()
    };
    let mut first = Vec::new();
    wait_until(PATIENCE, "one node to sweep", || {
        first = sweeping(&nodes, &[0, 1, 2]);
        first.len() == 1
    });
    let killed = first[0];
    let survivors: Vec<usize> = (0..3).filter(|&i| i != killed).collect();
    assert_eq!(
        sweeping(&nodes, &survivors),
        Vec::<usize>::new(),
        "still one"
    );

    nodes[killed].kill();
    let mut next = Vec::new();
    wait_until(
        PATIENCE,
        "a surviving node to take the sweeper's turn",
        || {
            next = sweeping(&nodes, &survivors);
            next.len() == 1
        },
    );

    let node = &nodes[survivors[0]];
    let service = sid(&node.create_service("chat"));
    let binding = sid(&node
        .register_binding(&service, "sleepy", &fcm("stale-token"))
        .expect(201));
    wait_until(PATIENCE, "the stale binding to be expired", || {
        fetch_binding(node, &service, &binding).status == 404
    });
    let history = binding_history(&nodes[survivors[1]], &service, &binding);
    let last = history.last().unwrap();
    assert_eq!(last["type"], "BindingDeleted", "{history:?}");
    assert_eq!(last["data"]["reason"], "expired", "{history:?}");
    assert_eq!(
        sweeping(&nodes, &survivors),
        next,
        "the survivor still sweeps alone"
    );

    // Stopped gently, the sweeping node exits cleanly and the last one takes its turn.
    let stopping = next[0];
    let last = survivors.iter().copied().find(|&i| i != stopping).unwrap();
    let status = nodes.nodes.remove(stopping).app.stop();
    assert!(status.success(), "SIGTERM: {status}");
    let last = if last > stopping { last - 1 } else { last };
    wait_until(PATIENCE, "the last node to take the sweeper's turn", || {
        nodes[last].metric(SWEEPER, &[]) == 1.0
    });
}

#[test]
fn a_node_killed_under_writes_through_all_three_loses_no_acknowledged_write() {
    let pg = Cluster::start();
    let mut nodes = fresh_nodes(&pg, 3, &[]);
    let service = sid(&nodes[0].create_service("chat"));
    let urls: Vec<String> = nodes.iter().map(|n| n.base_url.clone()).collect();
    let account = nodes.account.clone();
    const KILLED: usize = 2;
    let stop = AtomicBool::new(false);
    let acked: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    let count = || acked.lock().unwrap().len();
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        for n in 0..3 {
            for t in 0..2 {
                let (urls, account, service, stop, acked) =
                    (&urls, &account, &service, &stop, &acked);
                scope.spawn(move || {
                    let agent = agent(Duration::from_secs(60));
                    for k in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let identity = format!("w{n}-{t}-{k}");
                        let address = format!("kill-{n}-{t}-{k}");
                        let path = user_bindings_path(service, &identity);
                        match attempt(
                            &agent,
                            &urls[n],
                            account,
                            "POST",
                            &path,
                            Some(&fcm(&address)),
                        ) {
                            Ok(answer) if answer.status == 201 => {
                                acked.lock().unwrap().push((sid(&answer.json()), identity));
                            }
                            // The killed node's last writes end with no answer.
                            Err(_) if n == KILLED => return,
                            Ok(answer) => {
                                panic!("node {n} answered {}: {}", answer.status, answer.text)
                            }
                            Err(e) => panic!("node {n} failed: {e}"),
                        }
                    }
                });
            }
        }
        wait_until(PATIENCE, "writes through every node", || count() >= 100);
        nodes[KILLED].kill();
        let at_kill = count();
        wait_until(PATIENCE, "more writes through the other nodes", || {
            count() >= at_kill + 100
        });
    });

    let acked = acked.into_inner().unwrap();
    for (binding, identity) in &acked {
        for node in &nodes[..KILLED] {
            let body = fetch_binding(node, &service, binding).expect(200);
            assert_eq!(body["identity"], identity.as_str());
        }
    }
    nodes.db.verify();
}

/// How the primary is lost before its standby is promoted.
#[derive(Clone, Copy, PartialEq)]
enum Loss {
    /// Killed: its port refuses connections.
    Killed,
    /// Hung: its port accepts connections, and nothing answers on them.
    Frozen,
}

#[test]
fn writes_resume_after_the_database_fails_over_to_its_synchronous_standby() {
    fail_over(Loss::Killed);
}

#[test]
fn writes_resume_after_failing_over_from_a_primary_that_hangs() {
    fail_over(Loss::Frozen);
}

/// Two nodes on a primary and its synchronous standby (a multi-host URL), writes and reads
/// running; the primary is lost, the standby promoted.
fn fail_over(loss: Loss) {
    let mut primary = Cluster::start_with(&[("synchronous_standby_names", "'FIRST 1 (b)'")]);
    let standby = primary.standby("b");
    primary.wait_sync("b");
    let single = primary.create_database();
    let dbname = single
        .split_whitespace()
        .find_map(|pair| pair.strip_prefix("dbname="))
        .expect("a dbname")
        .to_owned();
    let url = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname={dbname} \
         target_session_attrs=read-write",
        primary.port(),
        standby.port()
    );
    // A guard against a hang, well past busy_timeout (2 s): no request may take this long.
    const HANG: Duration = Duration::from_secs(20);
    let nodes = Nodes::start(
        Database::new(url),
        2,
        &[("BINDERY_STORAGE__BUSY_TIMEOUT", "2s")],
    );
    let service = sid(&nodes[0].create_service("chat"));
    let on_standby = serve_until_exit(
        &[
            ("BINDERY_STORAGE__ENGINE", "postgres"),
            ("BINDERY_STORAGE__POSTGRES__URL", &standby.url(&dbname)),
        ],
        &[],
        PATIENCE,
    );
    // A node pointed at the standby alone cannot serve: it says why.
    assert!(!on_standby.status.success());
    assert!(
        on_standby
            .stderr
            .contains("cannot open the PostgreSQL database")
            && on_standby.stderr.contains("read-only transaction"),
        "{}",
        on_standby.stderr
    );
    let urls: Vec<String> = nodes.iter().map(|n| n.base_url.clone()).collect();
    let account = nodes.account.clone();
    // The contract gives the nodes 30 s after the promotion to be back; this waits longer, so
    // only a node that never comes back fails it.
    let resumed = Duration::from_secs(60);
    let stop = AtomicBool::new(false);
    // Per node: the writes acknowledged (binding, identity), and the failures.
    let acked: Vec<Mutex<Vec<(String, String)>>> = (0..2).map(|_| Mutex::new(Vec::new())).collect();
    let failed: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let unavailable = Mutex::new(0usize);
    let count = |n: usize| acked[n].lock().unwrap().len();
    let ready = |node: usize| -> u16 {
        attempt(&agent(HANG), &urls[node], &account, "GET", "/readyz", None)
            .unwrap_or_else(|e| panic!("/readyz of node {node}: {e}"))
            .status
    };
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        // A reader per node: reads answer, or fail as writes do.
        for n in 0..2 {
            let (urls, account, stop, failed) = (&urls, &account, &stop, &failed);
            scope.spawn(move || {
                let agent = agent(HANG);
                while !stop.load(Ordering::SeqCst) {
                    match attempt(&agent, &urls[n], account, "GET", "/v2/Services", None) {
                        Ok(answer) if answer.status == 200 => {}
                        Ok(answer) if answer.status == 503 && answer.retry_after.is_some() => {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Ok(answer) => failed.lock().unwrap().push(format!(
                            "a read on node {n}: {} (Retry-After {:?}): {}",
                            answer.status, answer.retry_after, answer.text
                        )),
                        Err(e) => failed.lock().unwrap().push(format!(
                            "a read on node {n}: no answer within {HANG:?}: {e}"
                        )),
                    }
                }
            });
        }
        for n in 0..2 {
            for t in 0..2 {
                let (urls, account, service, stop, acked, failed, unavailable) = (
                    &urls,
                    &account,
                    &service,
                    &stop,
                    &acked,
                    &failed,
                    &unavailable,
                );
                scope.spawn(move || {
                    let agent = agent(HANG);
                    for k in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let identity = format!("f{n}-{t}-{k}");
                        let address = format!("failover-{n}-{t}-{k}");
                        let path = user_bindings_path(service, &identity);
                        match attempt(
                            &agent,
                            &urls[n],
                            account,
                            "POST",
                            &path,
                            Some(&fcm(&address)),
                        ) {
                            Ok(answer) if answer.status == 201 => {
                                acked[n]
                                    .lock()
                                    .unwrap()
                                    .push((sid(&answer.json()), identity));
                            }
                            Ok(answer) if answer.status == 503 && answer.retry_after.is_some() => {
                                *unavailable.lock().unwrap() += 1;
                                // As a client would, honouring Retry-After (shortened).
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            Ok(answer) => failed.lock().unwrap().push(format!(
                                "node {n}: {} (Retry-After {:?}): {}",
                                answer.status, answer.retry_after, answer.text
                            )),
                            Err(e) => failed
                                .lock()
                                .unwrap()
                                .push(format!("node {n}: no answer within {HANG:?}: {e}")),
                        }
                    }
                });
            }
        }
        wait_until(PATIENCE, "writes through both nodes", || {
            count(0) >= 10 && count(1) >= 10
        });
        assert_eq!(ready(0), 200);

        match loss {
            Loss::Killed => primary.kill(),
            Loss::Frozen => primary.freeze(),
        }
        wait_until(
            PATIENCE,
            "/readyz to answer 503 while the database is down",
            || ready(0) == 503 && ready(1) == 503,
        );
        wait_until(PATIENCE, "writes to fail with 503 while it is down", || {
            *unavailable.lock().unwrap() >= 4
        });

        let before = [count(0), count(1)];
        standby.promote();
        wait_until(resumed, "writes to resume through both nodes", || {
            count(0) > before[0] && count(1) > before[1]
        });
        wait_until(resumed, "/readyz to answer 200 again", || {
            ready(0) == 200 && ready(1) == 200
        });
    });
    // Each node's listener is back on the new primary: long-polls wake across nodes,
    // revocations reach the sign-in caches, and one node sweeps again.
    for node in nodes.iter() {
        wait_until(resumed, "the node to hear the others again", || {
            node.log
                .lines()
                .iter()
                .filter(|line| line.contains("hearing the other nodes' commits"))
                .count()
                >= 2
        });
    }
    long_poll_woken_across(&nodes[0], &nodes[1], "after the failover");
    revocation_reaches_every_node(&nodes);
    wait_until(resumed, "one node to sweep", || {
        nodes.iter().map(|n| n.metric(SWEEPER, &[])).sum::<f64>() == 1.0
    });
    let failed = failed.into_inner().unwrap();
    assert!(
        failed.is_empty(),
        "every failing write answers 503 with Retry-After, within {HANG:?}:\n{}\n{}",
        failed.join("\n"),
        nodes.logs()
    );

    for acked in &acked {
        for (binding, identity) in acked.lock().unwrap().iter() {
            for node in nodes.iter() {
                let body = fetch_binding(node, &service, binding).expect(200);
                assert_eq!(body["identity"], identity.as_str(), "acknowledged, so kept");
            }
        }
    }
    nodes.db.verify();
}

#[test]
fn export_and_import_move_a_registry_between_sqlite_and_postgresql_byte_for_byte() {
    // A SQLite registry with some history: a sealed credential, users, bindings, a deletion,
    // a revoked key.
    let sqlite = TestApp::spawn();
    let service = sid(&sqlite.create_service("moving"));
    sqlite.create_credential_of("fcm", &[("FriendlyName", "firebase")]);
    for i in 0..3 {
        sqlite
            .register_binding(&service, &format!("mover-{i}"), &fcm(&format!("move-{i}")))
            .expect(201);
    }
    let gone = sid(&sqlite
        .register_binding(&service, "mover-0", &fcm("move-gone"))
        .expect(201));
    assert_eq!(
        sqlite
            .delete(&format!("/v2/Services/{service}/Bindings/{gone}"))
            .status,
        204
    );
    let key = sqlite.create_key(&sqlite.account.user);
    assert!(bindery(sqlite.dir.path(), &["keys", "revoke", &key.user])
        .status
        .success());
    let exported = bindery(sqlite.dir.path(), &["export"]);
    assert!(exported.status.success());
    let (sqlite_dir, account) = sqlite.into_dir_and_account();
    let file = sqlite_dir.path().join("events.jsonl");
    std::fs::write(&file, &exported.stdout).unwrap();
    let file = file.to_str().unwrap();

    // Into an empty PostgreSQL database, under the same key, and out again: the same bytes.
    let pg = Cluster::start();
    let db = Database::with_key_file(pg.create_database(), &sqlite_dir.path().join("secret.key"));
    let imported = db.bindery(&["import", "--from", file]);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert_eq!(db.export(), exported.stdout, "export → import → export");
    db.verify();

    // verify finds a row changed behind the log's back, and rebuild repairs it.
    pg.psql(
        &db.url,
        &format!("update services set friendly_name = 'forged' where sid = '{service}'"),
    );
    let tampered = db.bindery(&["verify"]);
    assert_eq!(tampered.status.code(), Some(1));
    let report = String::from_utf8_lossy(&tampered.stdout);
    assert!(
        report.contains(&format!("services: row {service} differs in friendly_name")),
        "{report}"
    );
    let rebuilt = db.bindery(&["rebuild"]);
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert!(
        String::from_utf8_lossy(&rebuilt.stderr).contains("rebuilt the projections from"),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    db.verify();

    // A database that holds events takes no import; nothing changes.
    let again = db.bindery(&["import", "--from", file]);
    assert!(!again.status.success(), "an existing log is refused");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("the database already holds a log"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(db.export(), exported.stdout, "nothing changed");

    // backup is SQLite's; on PostgreSQL it refuses and names pg_dump.
    let copy = db.key_file().with_file_name("backup.db");
    let backup = db.bindery(&["backup", "--to", copy.to_str().unwrap()]);
    assert!(!backup.status.success());
    assert!(
        String::from_utf8_lossy(&backup.stderr).contains("pg_dump"),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    assert!(!copy.exists());

    // The imported registry serves: its account signs in on a node, its service is there.
    let node = Nodes::start_on_registry(db, 1, &[], account);
    assert_eq!(node.first_accounts_written(), 0);
    let served = node[0]
        .get_raw(&format!("/v2/Services/{service}"))
        .expect(200);
    assert_eq!(served["friendly_name"], "moving");
    let credentials = node[0].walk("/v2/Credentials", "credentials");
    assert_eq!(credentials.len(), 1);

    // And back into a fresh SQLite data dir, under the same key: the same bytes again.
    let back = TempDir::new().unwrap();
    std::fs::copy(node.db.key_file(), back.path().join("secret.key")).unwrap();
    let out_of_pg = node.db.export();
    let pg_file = back.path().join("from-postgres.jsonl");
    std::fs::write(&pg_file, &out_of_pg).unwrap();
    let imported = bindery(
        back.path(),
        &["import", "--from", pg_file.to_str().unwrap()],
    );
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert_eq!(bindery(back.path(), &["export"]).stdout, exported.stdout);
    assert!(bindery(back.path(), &["verify"]).status.success());
}

#[test]
fn a_rebuild_beside_serving_nodes_leaves_their_reads_answering() {
    let pg = Cluster::start();
    let nodes = fresh_nodes(&pg, 2, &[("BINDERY_STORAGE__BUSY_TIMEOUT", "2s")]);
    let service = sid(&nodes[0].create_service("kept"));
    let binding = sid(&nodes[1]
        .register_binding(&service, "kept", &fcm("kept-token"))
        .expect(201));
    let url = &nodes.db.url;
    // Hold the rebuild half-way: a transaction keeps the bindings' rows locked until the gate
    // opens, so the rebuild waits at `DELETE FROM bindings`, the last table it empties, with
    // every other projection emptied (uncommitted) and whatever it did first still held.
    pg.psql(url, "CREATE TABLE rebuild_gate (open boolean)");
    let rows_locked = "select count(*) from pg_locks l join pg_class c on c.oid = l.relation \
                       where c.relname = 'bindings' and l.mode = 'RowShareLock' and l.granted";
    // The rebuild's connection, named apart from the nodes'.
    let rebuild_url = format!("{url} application_name=rebuild");
    let rebuild_waits = "select count(*) from pg_stat_activity \
                         where application_name = 'rebuild' and wait_event_type = 'Lock'";
    /// Opens the gate when dropped, so that a failing check does not leave the rebuild
    /// (and the scope that joins it) waiting forever.
    struct Gate<'a>(&'a Cluster, &'a str);
    impl Drop for Gate<'_> {
        fn drop(&mut self) {
            self.0
                .psql(self.1, "INSERT INTO rebuild_gate VALUES (true)");
        }
    }
    std::thread::scope(|scope| {
        let gate = Gate(&pg, url);
        let holder = scope.spawn(|| {
            pg.psql(
                url,
                "BEGIN; SELECT sid FROM bindings FOR KEY SHARE; \
                 DO $$ BEGIN WHILE NOT EXISTS (SELECT 1 FROM rebuild_gate) LOOP \
                 PERFORM pg_sleep(0.01); END LOOP; END $$; COMMIT;",
            )
        });
        wait_until(PATIENCE, "the bindings' rows to be locked", || {
            pg.psql(url, rows_locked) != "0"
        });
        let rebuild = scope.spawn(|| {
            nodes.db.bindery_with(
                &[
                    ("BINDERY_STORAGE__POSTGRES__URL", &rebuild_url),
                    ("BINDERY_STORAGE__BUSY_TIMEOUT", "60s"),
                ],
                &["rebuild"],
            )
        });
        wait_until(PATIENCE, "the rebuild to wait for the locked rows", || {
            pg.psql(url, rebuild_waits) != "0"
        });
        // Until it commits, every node reads the projections as they were.
        let read = |i: usize, path: &str| -> Value {
            let answer = attempt(
                &agent(PATIENCE),
                &nodes[i].base_url,
                &nodes.account,
                "GET",
                path,
                None,
            )
            .unwrap_or_else(|e| panic!("node {i}: {e}"));
            assert_eq!(
                answer.status, 200,
                "node {i}, {path} during the rebuild: {}",
                answer.text
            );
            answer.json()
        };
        for i in 0..nodes.len() {
            let services = read(i, "/v2/Services");
            assert_eq!(services["services"][0]["sid"], service.as_str());
            let found = read(i, &format!("/v2/Services/{service}/Bindings/{binding}"));
            assert_eq!(found["identity"], "kept");
        }
        drop(gate);
        holder.join().unwrap();
        let rebuilt = rebuild.join().unwrap();
        assert!(
            rebuilt.status.success(),
            "{}",
            String::from_utf8_lossy(&rebuilt.stderr)
        );
    });
    pg.psql(url, "DROP TABLE rebuild_gate");
    nodes.db.verify();
    nodes[1].create_service("after the rebuild");
    nodes.db.verify();
}

#[test]
fn settings_that_cannot_reach_postgresql_refuse_to_start_and_say_why() {
    let within = PATIENCE;
    let engine = ("BINDERY_STORAGE__ENGINE", "postgres");

    let no_url = serve_until_exit(&[engine], &[], within);
    assert!(!no_url.status.success());
    assert!(
        no_url.stderr.contains("storage.postgres.url"),
        "{}",
        no_url.stderr
    );

    for bad in [
        "host=127.0.0.1 port=nope",
        "postgres://[::1",
        "sslmode=sometimes",
    ] {
        let refused = serve_until_exit(
            &[engine, ("BINDERY_STORAGE__POSTGRES__URL", bad)],
            &[],
            within,
        );
        assert!(!refused.status.success(), "{bad}");
        assert!(
            refused
                .stderr
                .contains("invalid setting storage.postgres.url: not a connection string"),
            "{bad}: {}",
            refused.stderr
        );
        assert_eq!(
            refused.stderr.matches("storage.postgres.url").count(),
            1,
            "the setting is named once: {}",
            refused.stderr
        );
        // The commands read the same settings and refuse the same way.
        let verify = bindery_on(
            &[engine, ("BINDERY_STORAGE__POSTGRES__URL", bad)],
            &["verify"],
        );
        assert!(!verify.status.success());
        assert!(
            String::from_utf8_lossy(&verify.stderr).contains("storage.postgres.url"),
            "{}",
            String::from_utf8_lossy(&verify.stderr)
        );
    }

    let unknown = serve_until_exit(&[("BINDERY_STORAGE__ENGINE", "mysql")], &[], within);
    assert!(!unknown.status.success());
    assert!(
        unknown.stderr.contains("storage.engine"),
        "{}",
        unknown.stderr
    );

    // Nothing listens on the port: start-up fails at once, naming the database.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("host=127.0.0.1 port={port} user=postgres dbname=nowhere");
    let refused = serve_until_exit(
        &[
            engine,
            ("BINDERY_STORAGE__POSTGRES__URL", &url),
            ("BINDERY_STORAGE__BUSY_TIMEOUT", "1s"),
        ],
        &[],
        within,
    );
    assert!(!refused.status.success());
    assert!(
        refused
            .stderr
            .contains("cannot open the PostgreSQL database \"nowhere\"")
            && refused.stderr.contains("Connection refused")
            && refused.stderr.matches("error connecting").count() == 1,
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains(&url),
        "the URL may hold a password"
    );

    // Something listens but never answers: start-up gives up after busy_timeout, no hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "host=127.0.0.1 port={} user=postgres dbname=silent",
        silent.local_addr().unwrap().port()
    );
    let refused = serve_until_exit(
        &[
            engine,
            ("BINDERY_STORAGE__POSTGRES__URL", &url),
            ("BINDERY_STORAGE__BUSY_TIMEOUT", "1s"),
        ],
        &[],
        within,
    );
    drop(silent);
    assert!(!refused.status.success());
    assert!(
        refused
            .stderr
            .contains("cannot open the PostgreSQL database \"silent\"")
            && refused.stderr.contains("did not answer within"),
        "{}",
        refused.stderr
    );
}

#[test]
fn nodes_that_do_not_fit_the_registry_refuse_to_join_it() {
    let pg = Cluster::start();
    let nodes = fresh_nodes(&pg, 1, &[]);
    let other = TempDir::new().unwrap();
    let other_key = other.path().join("other.key");
    write_key_file(&other_key);
    let mut env: Vec<(String, String)> = nodes.db.env();
    env.retain(|(name, _)| name != "BINDERY_STORAGE__SECRET_KEY_FILE");
    env.push((
        "BINDERY_STORAGE__SECRET_KEY_FILE".into(),
        other_key.display().to_string(),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let refused = serve_until_exit(&env, &[], PATIENCE);
    assert!(!refused.status.success());
    assert!(
        refused
            .stderr
            .contains("is not the key this registry's credentials are sealed under"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("other.key"), "{}", refused.stderr);
    // The node already serving is untouched.
    nodes[0].get_raw("/v2/Services").expect(200);

    // A schema migrated by a newer Bindery: an older node does not serve it.
    pg.psql(
        &nodes.db.url,
        "insert into schema_migrations (version) values (99)",
    );
    let env = nodes.db.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let refused = serve_until_exit(&env, &[], PATIENCE);
    assert!(!refused.status.success());
    assert!(
        refused
            .stderr
            .contains("the database was written by a newer Bindery (99 migrations"),
        "{}",
        refused.stderr
    );
}

/// `bindery ARGS` with exactly these settings in the environment, on a scratch data dir.
fn bindery_on(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let dir = TempDir::new().unwrap();
    crate::support::command(crate::support::BINARY)
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .envs(env.iter().copied())
        .output()
        .expect("bindery runs")
}

#[test]
fn a_console_session_is_known_on_every_node_and_ends_everywhere() {
    let pg = Cluster::start();
    let nodes = fresh_nodes(&pg, 2, &[]);
    let mut first = Console::at(&nodes[0].base_url);
    assert_eq!(first.sign_in(&nodes.account).status, 303);
    // The same cookie through the other node: one session, kept in the database.
    let mut second = Console::at(&nodes[1].base_url);
    second.cookie = first.cookie.clone();
    assert_eq!(second.get("/console/services").status, 200);
    let token = second.form_token();
    let origin = second.origin();
    let out = second.post(
        "/console/sign-out",
        &[("csrf", &token)],
        &[("Origin", &origin)],
    );
    assert_eq!(out.status, 303);
    assert!(first.get("/console/services").is_sign_in_redirect());

    // A key's sessions end on every node when it is revoked through any.
    let key = nodes.db.create_key(&nodes.account.user);
    let mut by_key = Console::at(&nodes[0].base_url);
    assert_eq!(by_key.sign_in(&key).status, 303);
    assert_eq!(by_key.get("/console/services").status, 200);
    assert!(nodes
        .db
        .bindery(&["keys", "revoke", &key.user])
        .status
        .success());
    let mut elsewhere = Console::at(&nodes[1].base_url);
    elsewhere.cookie = by_key.cookie.clone();
    assert!(by_key.get("/console/services").is_sign_in_redirect());
    assert!(elsewhere.get("/console/services").is_sign_in_redirect());
}
