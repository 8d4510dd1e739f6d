//! Long-polls of the change feed (`GET /v2/Events?Wait=…`): bounded per account and in all,
//! and woken only by their own account's events.

use serde_json::Value;

use crate::support::{sid, wait_until, Credentials, TestApp, PATIENCE};

const WAITERS: &str = "bindery_feed_waiters";
const WAKEUPS: &str = "bindery_feed_wakeups_total";

/// The account's newest position (its feed's `next_after` from the start).
fn newest(app: &TestApp, account: &Credentials) -> i64 {
    let mut after = 0;
    loop {
        let page = app
            .send_as(
                account,
                "GET",
                &format!("/v2/Events?After={after}&PageSize=200"),
                &[],
                None,
            )
            .expect(200);
        let next = page["meta"]["next_after"].as_i64().expect("next_after");
        if page["meta"]["next_page_url"].is_null() {
            return next;
        }
        after = next;
    }
}

fn poll(app: &TestApp, account: &Credentials, after: i64) -> crate::support::Reply {
    app.send_as(
        account,
        "GET",
        &format!("/v2/Events?After={after}&Wait=30"),
        &[],
        None,
    )
}

fn types(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().expect("type").to_owned())
        .collect()
}

#[test]
fn long_polls_are_bounded_per_account_and_in_all() {
    let app = TestApp::spawn_with_env(&[
        ("BINDERY_HTTP__LONG_POLLS", "3"),
        ("BINDERY_HTTP__LONG_POLLS_PER_ACCOUNT", "2"),
    ]);
    let alice = app.account.clone();
    let bob = app.other_account();
    let (alice_at, bob_at) = (newest(&app, &alice), newest(&app, &bob));
    std::thread::scope(|scope| {
        let alice_polls: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| poll(&app, &alice, alice_at)))
            .collect();
        wait_until(PATIENCE, "alice's two polls wait", || {
            app.metric(WAITERS, &[]) == 2.0
        });
        let third = poll(&app, &alice, alice_at);
        assert_eq!(third.status, 429, "{}", third.text);
        assert_eq!(third.header("Retry-After"), Some("1"));
        assert_eq!(third.body["code"], 20429, "{}", third.text);
        assert!(
            third.text.contains("already has 2 long-polls"),
            "{}",
            third.text
        );

        let bob_poll = scope.spawn(|| poll(&app, &bob, bob_at));
        wait_until(PATIENCE, "bob's poll waits too", || {
            app.metric(WAITERS, &[]) == 3.0
        });
        let over = poll(&app, &bob, bob_at);
        assert_eq!(over.status, 429, "{}", over.text);
        assert!(
            over.text.contains("3 long-polls are waiting"),
            "{}",
            over.text
        );
        // A poll that need not wait is answered, limits or not.
        app.send_as(&bob, "GET", "/v2/Events?After=0&Wait=30", &[], None)
            .expect(200);

        app.create_service("alice's chat");
        for waiting in alice_polls {
            let page = waiting.join().unwrap().expect(200);
            assert_eq!(types(&page), ["ServiceCreated"], "{page}");
        }
        app.post_as(&bob, "/v2/Services", &[("FriendlyName", "bob's chat")])
            .expect(201);
        let page = bob_poll.join().unwrap().expect(200);
        assert_eq!(types(&page), ["ServiceCreated"], "{page}");
    });
    wait_until(PATIENCE, "every place is given back", || {
        app.metric(WAITERS, &[]) == 0.0
    });
    // And taken again.
    std::thread::scope(|scope| {
        let again = scope.spawn(|| poll(&app, &alice, newest(&app, &alice)));
        wait_until(PATIENCE, "a new poll waits", || {
            app.metric(WAITERS, &[]) == 1.0
        });
        app.create_service("later");
        assert_eq!(
            types(&again.join().unwrap().expect(200)),
            ["ServiceCreated"]
        );
    });
}

#[test]
fn a_poll_is_woken_only_by_its_own_accounts_events() {
    let app = TestApp::spawn();
    let stranger = app.other_account();
    let theirs = sid(&app
        .post_as(&stranger, "/v2/Services", &[("FriendlyName", "theirs")])
        .expect(201));
    let after = newest(&app, &app.account);
    let woken = app.metric(WAKEUPS, &[]);
    let page = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| poll(&app, &app.account, after));
        wait_until(PATIENCE, "the poll waits", || {
            app.metric(WAITERS, &[]) == 1.0
        });
        for i in 0..10 {
            let path = format!("/v2/Services/{theirs}/Users/u{i}/Bindings");
            app.post_as(
                &stranger,
                &path,
                &[("BindingType", "apn"), ("Address", &format!("token-{i}"))],
            )
            .expect(201);
        }
        app.create_service("ours");
        waiting.join().unwrap().expect(200)
    });
    assert_eq!(types(&page), ["ServiceCreated"], "{page}");
    assert_eq!(
        app.metric(WAKEUPS, &[]),
        woken + 1.0,
        "twenty events of another account woke the poll"
    );
}
