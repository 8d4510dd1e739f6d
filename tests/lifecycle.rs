//! The lifecycle of a binding [EXT]: provider feedback removes it, a device moving between users
//! supersedes it, and every change is in the log, readable as a binding's or a user's history
//! (even after the binding or user is gone) and as an account's change feed, long-polled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{
    assert_error, form, is_twilio_date, material, sid, user_bindings_path, user_path, wait_until,
    Credentials, Pending, Reply, TestApp, PATIENCE,
};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

fn feedback_path(service: &str) -> String {
    format!("/v2/Services/{service}/Bindings/Feedback")
}

fn binding_history_path(service: &str, binding: &str) -> String {
    format!("/v2/Services/{service}/Bindings/{binding}/History")
}

fn user_history_path(service: &str, user: &str) -> String {
    format!("{}/History", user_path(service, user))
}

/// A form POST as the first account, with an `X-Request-Id`.
fn post_with_request_id(
    app: &TestApp,
    path: &str,
    request_id: &str,
    pairs: &[(&str, &str)],
) -> Reply {
    app.send(
        "POST",
        path,
        &[FORM, ("X-Request-Id", request_id)],
        Some(form(pairs).as_bytes()),
    )
}

/// Every event of a history, all pages, checked for the shape every event has.
#[track_caller]
fn history(app: &TestApp, path: &str) -> Vec<Value> {
    let events = app.walk(path, "events");
    for event in &events {
        assert!(event["position"].is_i64(), "{event}");
        assert!(event["sid"].is_string(), "{event}");
        assert!(event["type"].is_string(), "{event}");
        assert!(is_twilio_date(&event["date_created"]), "{event}");
        assert!(event["data"].is_object(), "{event}");
    }
    let positions: Vec<i64> = events.iter().map(position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "oldest first, each once: {positions:?}"
    );
    events
}

fn position(event: &Value) -> i64 {
    event["position"].as_i64().expect("a position")
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().expect("a type"))
        .collect()
}

/// The newest position of `credentials`' account, read without waiting, all pages; every page
/// but the last is full and names the next.
fn last_position(app: &TestApp, credentials: &Credentials) -> i64 {
    let size = 500;
    let mut after = 0;
    loop {
        let page = app
            .send_as(
                credentials,
                "GET",
                &format!("/v2/Events?After={after}&PageSize={size}"),
                &[],
                None,
            )
            .expect(200);
        let count = page["events"].as_array().expect("events").len();
        let next = page["meta"]["next_after"].as_i64().expect("next_after");
        if page["meta"]["next_page_url"].is_null() {
            return next;
        }
        assert_eq!(count, size, "a page with more after it is full");
        after = next;
    }
}

/// Every event the account's feed holds, from the start, without waiting.
fn whole_feed(app: &TestApp, credentials: &Credentials) -> Vec<Value> {
    let mut events = Vec::new();
    let mut path = "/v2/Events?After=0&PageSize=200".to_owned();
    loop {
        let page = app
            .send_as(credentials, "GET", &path, &[], None)
            .expect(200);
        assert_eq!(page["meta"]["key"], "events");
        let items = page["events"].as_array().expect("events");
        events.extend(items.iter().cloned());
        let next = &page["meta"]["next_page_url"];
        if next.is_null() {
            return events;
        }
        assert_eq!(items.len(), 200, "a page with more after it is full");
        let url = next.as_str().expect("a URL");
        path = url
            .strip_prefix(&app.base_url)
            .unwrap_or_else(|| panic!("{url} is not on {}", app.base_url))
            .to_owned();
    }
}

#[test]
fn feedback_removes_the_binding_holding_the_address_in_that_service_and_type_only() {
    let app = TestApp::spawn();
    let chat = sid(&app.create_service("chat"));
    let other = sid(&app.create_service("other"));
    let register = |service: &str, identity: &str, binding_type: &str, address: &str| {
        let reply = app.register_binding(
            service,
            identity,
            &[("BindingType", binding_type), ("Address", address)],
        );
        sid(&reply.expect(201))
    };
    let target = register(&chat, "alice", "apn", "shared-token");
    let same_address_other_type = register(&chat, "alice", "fcm", "shared-token");
    let same_address_other_service = register(&other, "alice", "apn", "shared-token");
    let other_address = register(&chat, "bob", "apn", "bob-token");
    let survivors = [
        (&chat, &same_address_other_type),
        (&other, &same_address_other_service),
        (&chat, &other_address),
    ];

    let reply = post_with_request_id(
        &app,
        &feedback_path(&chat),
        "feedback-req-0001",
        &[
            ("BindingType", "apn"),
            ("Address", "shared-token"),
            ("Reason", "unregistered"),
        ],
    );
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(reply.text, "", "a 204 has an empty body");
    assert_error(
        &app.get_raw(&format!("/v2/Services/{chat}/Bindings/{target}")),
        404,
        20404,
    );
    for (service, binding) in survivors {
        app.get_raw(&format!("/v2/Services/{service}/Bindings/{binding}"))
            .expect(200);
    }
    assert_eq!(
        app.user_binding_sids(&chat, "alice"),
        vec![same_address_other_type.clone()]
    );

    // The history says why it went, and which request removed it.
    let events = history(&app, &binding_history_path(&chat, &target));
    assert_eq!(types(&events), ["BindingRegistered", "BindingDeleted"]);
    let deleted = &events[1];
    assert_eq!(deleted["sid"], target.as_str());
    assert_eq!(deleted["service_sid"], chat.as_str());
    assert_eq!(deleted["data"], json!({"reason": "token_invalid"}));
    assert_eq!(deleted["request_id"], "feedback-req-0001");
    assert_eq!(events[0]["data"]["address"], "shared-token");
    assert_ne!(events[0]["request_id"], "feedback-req-0001");

    // 204 also when no binding holds the address (any longer): and nothing is appended.
    let before = last_position(&app, &app.account);
    for (binding_type, address, reason) in [
        ("apn", "shared-token", "unregistered"),
        ("apn", "nobody-holds-this", "invalid"),
        ("gcm", "shared-token", "expired"),
        ("fcm", "bob-token", "invalid"),
    ] {
        let reply = app.post(
            &feedback_path(&chat),
            &[
                ("BindingType", binding_type),
                ("Address", address),
                ("Reason", reason),
            ],
        );
        assert_eq!(
            reply.status, 204,
            "{binding_type} {address}: {}",
            reply.text
        );
        assert_eq!(reply.text, "");
    }
    assert_eq!(
        last_position(&app, &app.account),
        before,
        "feedback for an address nobody holds appends nothing"
    );

    // Refused, in Twilio's error shape, and nothing removed.
    let valid = [
        ("BindingType", "fcm"),
        ("Address", "shared-token"),
        ("Reason", "invalid"),
    ];
    let with = |name: &str, value: &'static str| -> Vec<(&'static str, &'static str)> {
        valid
            .iter()
            .map(|&(n, v)| if n == name { (n, value) } else { (n, v) })
            .collect()
    };
    assert_error(
        &app.post(&feedback_path(&chat), &with("Reason", "bogus")),
        400,
        20001,
    );
    assert_error(
        &app.post(&feedback_path(&chat), &with("Reason", "Unregistered")),
        400,
        20001,
    );
    assert_error(
        &app.post(&feedback_path(&chat), &with("BindingType", "sms")),
        400,
        50209,
    );
    let missing = format!("IS{}", "0".repeat(32));
    assert_error(&app.post(&feedback_path(&missing), &valid), 404, 50050);
    let stranger = app.other_account();
    assert_error(
        &app.post_as(&stranger, &feedback_path(&chat), &valid),
        404,
        50050,
    );
    for (service, binding) in survivors {
        app.get_raw(&format!("/v2/Services/{service}/Bindings/{binding}"))
            .expect(200);
    }
    assert_eq!(last_position(&app, &app.account), before);

    // The other type's binding of that address goes when its own type is reported.
    let reply = app.post(&feedback_path(&chat), &valid);
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_error(
        &app.get_raw(&format!(
            "/v2/Services/{chat}/Bindings/{same_address_other_type}"
        )),
        404,
        20404,
    );
    let events = history(&app, &binding_history_path(&chat, &same_address_other_type));
    assert_eq!(
        events.last().unwrap()["data"],
        json!({"reason": "token_invalid"})
    );
    app.get_raw(&format!(
        "/v2/Services/{other}/Bindings/{same_address_other_service}"
    ))
    .expect(200);
    app.verify();
}

#[test]
fn a_device_moving_between_users_is_shown_in_both_histories_even_after_they_are_deleted() {
    let app = TestApp::spawn();
    let chat = sid(&app.create_service("chat"));
    let token = [("BindingType", "apn"), ("Address", "device-token-T")];
    let alices = app.register_binding(&chat, "alice", &token).expect(201);
    let (alice_binding, alice) = (
        sid(&alices),
        alices["user_sid"].as_str().unwrap().to_owned(),
    );
    let bobs = app.register_binding(&chat, "bob", &token).expect(201);
    let (bob_binding, bob) = (sid(&bobs), bobs["user_sid"].as_str().unwrap().to_owned());
    assert_ne!(alice_binding, bob_binding);
    assert_eq!(app.user_binding_sids(&chat, "alice"), Vec::<String>::new());
    assert_eq!(
        app.user_binding_sids(&chat, "bob"),
        vec![bob_binding.clone()]
    );

    // Alice's history: she was created, registered the device, and lost it to bob.
    let alice_history = history(&app, &user_history_path(&chat, &alice));
    assert_eq!(
        types(&alice_history),
        ["UserCreated", "BindingRegistered", "BindingSuperseded"]
    );
    assert_eq!(alice_history[0]["sid"], alice.as_str());
    assert_eq!(alice_history[0]["data"]["identity"], "alice");
    let registered = &alice_history[1];
    assert_eq!(registered["sid"], alice_binding.as_str());
    assert_eq!(registered["service_sid"], chat.as_str());
    let data = &registered["data"];
    assert_eq!(data["user_sid"], alice.as_str());
    assert_eq!(data["identity"], "alice");
    assert_eq!(data["binding_type"], "apn");
    assert_eq!(data["address"], "device-token-T");
    assert_eq!(data["endpoint"], alices["endpoint"]);
    assert_eq!(data["credential_sid"], Value::Null);
    assert_eq!(data["message_types"], alices["message_types"]);
    let superseded = &alice_history[2];
    assert_eq!(superseded["sid"], alice_binding.as_str());
    assert_eq!(
        superseded["data"],
        json!({"by": bob_binding, "by_user_sid": bob})
    );
    assert_eq!(
        history(&app, &user_history_path(&chat, "alice")),
        alice_history,
        "by identity as by SID"
    );

    // Bob's history: created, then registered the device.
    let bob_history = history(&app, &user_history_path(&chat, &bob));
    assert_eq!(types(&bob_history), ["UserCreated", "BindingRegistered"]);
    assert_eq!(bob_history[1]["sid"], bob_binding.as_str());
    assert_eq!(bob_history[1]["data"]["user_sid"], bob.as_str());
    assert_eq!(bob_history[1]["data"]["address"], "device-token-T");
    assert!(
        position(superseded) < position(&bob_history[1]),
        "the old holder is superseded before the new binding is registered"
    );
    assert_eq!(history(&app, &user_history_path(&chat, "bob")), bob_history);

    // Each binding's own history.
    let alice_binding_history = history(&app, &binding_history_path(&chat, &alice_binding));
    assert_eq!(alice_binding_history, alice_history[1..].to_vec());
    assert_eq!(
        history(&app, &binding_history_path(&chat, &bob_binding)),
        bob_history[1..].to_vec()
    );

    // Bob is deleted: both histories still answer, by SID and by identity.
    let reply = app.send(
        "DELETE",
        &user_path(&chat, &bob),
        &[("X-Request-Id", "delete-bob")],
        None,
    );
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_error(&app.get_raw(&user_path(&chat, &bob)), 404, 50200);
    assert_error(&app.get_raw(&user_path(&chat, "bob")), 404, 50200);
    for bob_ref in [bob.as_str(), "bob"] {
        let events = history(&app, &user_history_path(&chat, bob_ref));
        assert_eq!(
            types(&events),
            [
                "UserCreated",
                "BindingRegistered",
                "BindingDeleted",
                "UserDeleted"
            ],
            "bob's history by {bob_ref}"
        );
        assert_eq!(events[..2], bob_history[..]);
        assert_eq!(events[2]["sid"], bob_binding.as_str());
        assert_eq!(events[2]["data"], json!({"reason": "user_deleted"}));
        assert_eq!(events[2]["request_id"], "delete-bob");
        assert_eq!(events[3]["sid"], bob.as_str());
        assert_eq!(events[3]["data"], json!({"reason": "api"}));
        assert_eq!(events[3]["request_id"], "delete-bob");
    }
    for alice_ref in [alice.as_str(), "alice"] {
        assert_eq!(
            history(&app, &user_history_path(&chat, alice_ref)),
            alice_history,
            "alice's history by {alice_ref} does not change"
        );
    }
    let bob_binding_history = history(&app, &binding_history_path(&chat, &bob_binding));
    assert_eq!(
        types(&bob_binding_history),
        ["BindingRegistered", "BindingDeleted"]
    );

    // Alice is deleted by identity: she had no binding left to remove.
    assert_eq!(app.delete(&user_path(&chat, "alice")).status, 204);
    let events = history(&app, &user_history_path(&chat, "alice"));
    assert_eq!(
        types(&events),
        [
            "UserCreated",
            "BindingRegistered",
            "BindingSuperseded",
            "UserDeleted"
        ]
    );
    assert_eq!(history(&app, &user_history_path(&chat, &alice)), events);
    assert_eq!(
        history(&app, &binding_history_path(&chat, &alice_binding)),
        alice_binding_history
    );

    // A new bob: by identity the history is the newest bob's; the old one stays by SID.
    let new_bob = sid(&app.create_user(&chat, "bob"));
    let events = history(&app, &user_history_path(&chat, "bob"));
    assert_eq!(types(&events), ["UserCreated"]);
    assert_eq!(events[0]["sid"], new_bob.as_str());
    assert_eq!(
        types(&history(&app, &user_history_path(&chat, &bob))).len(),
        4,
        "the deleted bob's history, by SID"
    );
    assert_error(
        &app.get_raw(&user_history_path(&chat, "nobody-ever")),
        404,
        50200,
    );
    app.verify();
}

#[test]
fn histories_belong_to_one_account_and_are_paged() {
    let app = TestApp::spawn();
    let chat = sid(&app.create_service("chat"));
    let first = app
        .register_binding(
            &chat,
            "alice",
            &[
                ("BindingType", "fcm"),
                ("Address", "token-00"),
                ("Endpoint", "phone"),
            ],
        )
        .expect(201);
    let (binding, alice) = (sid(&first), first["user_sid"].as_str().unwrap().to_owned());
    // Eleven re-registrations of the same device: twelve binding events in all.
    for n in 1..=11 {
        let address = format!("token-{n:02}");
        let reply = app.register_binding(
            &chat,
            "alice",
            &[
                ("BindingType", "fcm"),
                ("Address", &address),
                ("Endpoint", "phone"),
            ],
        );
        assert_eq!(sid(&reply.expect(200)), binding);
    }
    let path = binding_history_path(&chat, &binding);
    let whole = history(&app, &path);
    assert_eq!(whole.len(), 12);
    assert_eq!(types(&whole[..1]), ["BindingRegistered"]);
    assert!(types(&whole[1..]).iter().all(|t| *t == "BindingUpdated"));
    assert_eq!(whole[11]["data"]["address"], "token-11");

    // Five at a time: three pages, in order, each naming the next until the last.
    let mut page = app.get_raw(&format!("{path}?PageSize=5")).expect(200);
    let mut paged = Vec::new();
    let mut sizes = Vec::new();
    loop {
        assert_eq!(page["meta"]["key"], "events");
        assert_eq!(page["meta"]["page_size"], 5);
        let events = page["events"].as_array().unwrap();
        sizes.push(events.len());
        paged.extend(events.iter().cloned());
        let next = page["meta"]["next_page_url"].clone();
        if next.is_null() {
            break;
        }
        page = app.follow(&next).expect(200);
    }
    assert_eq!(sizes, [5, 5, 2]);
    assert_eq!(
        paged, whole,
        "the pages together are the whole history, once"
    );

    let user_path_ = user_history_path(&chat, &alice);
    let user_whole = history(&app, &user_path_);
    assert_eq!(user_whole.len(), 13, "UserCreated and the binding's twelve");
    assert_eq!(
        app.walk(&format!("{user_path_}?PageSize=4"), "events"),
        user_whole
    );
    assert_eq!(
        app.walk(
            &format!("{}?PageSize=4", user_history_path(&chat, "alice")),
            "events"
        ),
        user_whole
    );

    // Another account learns nothing: the service is not found.
    let stranger = app.other_account();
    let as_stranger = |path: &str| app.send_as(&stranger, "GET", path, &[], None);
    assert_error(&as_stranger(&path), 404, 50050);
    assert_error(&as_stranger(&user_history_path(&chat, &alice)), 404, 50050);
    assert_error(&as_stranger(&user_history_path(&chat, "alice")), 404, 50050);
    // Nor through a service of its own.
    let theirs = sid(&app
        .post_as(&stranger, "/v2/Services", &[("FriendlyName", "theirs")])
        .expect(201));
    // (Whether a history no event belongs to is an empty page or a 404 is not settled; either
    // way it must show nothing.)
    let shows_nothing = |reply: Reply, code: u64| {
        if reply.status == 200 {
            assert_eq!(reply.body["events"], json!([]), "{}", reply.text);
        } else {
            assert_error(&reply, 404, code);
        }
    };
    shows_nothing(as_stranger(&binding_history_path(&theirs, &binding)), 20404);
    shows_nothing(as_stranger(&user_history_path(&theirs, &alice)), 50200);
    assert_error(
        &as_stranger(&user_history_path(&theirs, "alice")),
        404,
        50200,
    );
    // And its feed holds none of our events.
    let ours: BTreeSet<i64> = whole_feed(&app, &app.account)
        .iter()
        .map(position)
        .collect();
    for event in whole_feed(&app, &stranger) {
        assert!(!ours.contains(&position(&event)), "{event}");
        assert_ne!(event["sid"], binding.as_str());
        assert_ne!(event["service_sid"], chat.as_str());
    }
    app.verify();
}

// ---- The change feed ----

/// What a feed consumer keeps of a binding: (service, identity, binding type, endpoint,
/// message types), by binding SID.
type Bindings = BTreeMap<String, (String, String, String, String, BTreeSet<String>)>;

fn message_types(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("message_types is not a list: {value}"))
        .iter()
        .map(|t| t.as_str().expect("a message type").to_owned())
        .collect()
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
        .to_owned()
}

/// Folds one event of the feed into the consumer's copy.
#[track_caller]
fn apply(bindings: &mut Bindings, event: &Value) {
    let sid = text(&event["sid"]);
    let data = &event["data"];
    match event["type"].as_str().expect("a type") {
        "BindingRegistered" => {
            let row = (
                text(&event["service_sid"]),
                text(&data["identity"]),
                text(&data["binding_type"]),
                text(&data["endpoint"]),
                message_types(&data["message_types"]),
            );
            assert!(
                bindings.insert(sid, row).is_none(),
                "registered twice: {event}"
            );
        }
        "BindingUpdated" => {
            let row = bindings
                .get_mut(&sid)
                .unwrap_or_else(|| panic!("an update of a binding never registered: {event}"));
            row.4 = message_types(&data["message_types"]);
        }
        "BindingSuperseded" | "BindingDeleted" => {
            assert!(
                bindings.remove(&sid).is_some(),
                "a removal of a binding not held: {event}"
            );
        }
        _ => {}
    }
}

/// The bindings the API lists for these services, all pages, as a consumer keeps them.
fn listed(app: &TestApp, services: &[&str]) -> Bindings {
    let mut bindings = Bindings::new();
    for service in services {
        for binding in app.walk(&format!("/v2/Services/{service}/Bindings"), "bindings") {
            bindings.insert(
                sid(&binding),
                (
                    text(&binding["service_sid"]),
                    text(&binding["identity"]),
                    text(&binding["binding_type"]),
                    text(&binding["endpoint"]),
                    message_types(&binding["message_types"]),
                ),
            );
        }
    }
    bindings
}

/// A small deterministic generator (SplitMix64), so the mix of writes is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What the consumer saw: its position at the end, its copy, and every event it read.
struct Consumed {
    position: i64,
    bindings: Bindings,
    events: Vec<Value>,
    polls: usize,
}

/// Long-polls the feed from 0, folding every event into its copy, until `target` tells it the
/// position where the writes ended and it has reached it.
fn consume(app: &TestApp, target: mpsc::Receiver<i64>) -> Consumed {
    let size = 50;
    let mut consumed = Consumed {
        position: 0,
        bindings: Bindings::new(),
        events: Vec::new(),
        polls: 0,
    };
    let mut end = None;
    loop {
        if end.is_none() {
            match target.try_recv() {
                Ok(position) => end = Some(position),
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => panic!("the writer gave up"),
            }
        }
        if end.is_some_and(|end| consumed.position >= end) {
            return consumed;
        }
        let path = format!(
            "/v2/Events?After={}&Wait=5&PageSize={size}",
            consumed.position
        );
        let page = app.get_raw(&path).expect(200);
        consumed.polls += 1;
        assert_eq!(page["meta"]["key"], "events");
        let events = page["events"].as_array().expect("events");
        if !page["meta"]["next_page_url"].is_null() {
            assert_eq!(events.len(), size, "more waiting, so this page is full");
        }
        for event in events {
            assert!(
                position(event) > consumed.position,
                "the feed goes forward: {event} after {}",
                consumed.position
            );
            consumed.position = position(event);
            apply(&mut consumed.bindings, event);
            consumed.events.push(event.clone());
        }
        assert_eq!(
            page["meta"]["next_after"], consumed.position,
            "next_after is the last position read (or After when none)"
        );
    }
}

#[test]
fn a_change_feed_consumer_keeps_an_exact_copy_of_the_bindings() {
    let app = TestApp::spawn();
    let stranger = app.other_account();
    let theirs = sid(&app
        .post_as(&stranger, "/v2/Services", &[("FriendlyName", "theirs")])
        .expect(201));
    // The service account's key: a line of its PEM must reach no event.
    let secret = material::credential_form("fcm");
    let key_line = bindery_standin::RsaTestKey::A
        .pkcs8_pem()
        .lines()
        .nth(1)
        .expect("a base64 line");

    let consumed = std::thread::scope(|scope| {
        let (target, end) = mpsc::channel();
        let consumer = scope.spawn(|| consume(&app, end));

        let services = [
            sid(&app.create_service("chat")),
            sid(&app.create_service("support")),
        ];
        let credential =
            sid(&app.create_credential(&secret.clone().with("FriendlyName", "firebase").pairs()));
        // A service that goes with all its bindings midway.
        let doomed = sid(&app.create_service("doomed"));
        let mut doomed_bindings = Vec::new();
        for (n, identity) in ["x", "y", "z"].iter().enumerate() {
            let address = format!("doomed-token-{n}");
            let reply = app.register_binding(
                &doomed,
                identity,
                &[("BindingType", "apn"), ("Address", &address)],
            );
            doomed_bindings.push(sid(&reply.expect(201)));
        }

        let identities = [
            "alice",
            "bob",
            "carol",
            "dave",
            "zoë van dijk",
            "user+1@x.com",
        ];
        let addresses: Vec<String> = (0..10).map(|n| format!("token-{n}")).collect();
        let binding_types = ["apn", "gcm", "fcm"];
        let endpoints = ["phone", "tablet", "laptop"];
        let kinds = [
            "new_message",
            "added_to_channel",
            "invited_to_channel",
            "removed_from_channel",
        ];
        let reasons = ["unregistered", "invalid", "expired"];
        let mut rng = Rng(0x5EED_B1D5);
        // (service, identity, type, endpoint, address) of each registration answered.
        let mut registered: Vec<(String, String, String, Option<String>, String)> = Vec::new();
        let mut sids: Vec<(String, String)> = Vec::new();
        let mut theirs_sids = BTreeSet::from([theirs.clone()]);
        for step in 0..240 {
            if step == 60 {
                assert_eq!(app.delete(&format!("/v2/Services/{doomed}")).status, 204);
            }
            let roll = rng.below(100);
            if roll < 45 || registered.is_empty() || (55..70).contains(&roll) {
                // Register: new, or again (same endpoint, maybe a new address), or a move
                // (another identity takes an address someone holds).
                let (service, identity, binding_type, endpoint, address) =
                    if roll < 45 || registered.is_empty() {
                        let endpoint = (rng.below(3) > 0).then(|| rng.pick(&endpoints).to_string());
                        (
                            rng.pick(&services).clone(),
                            rng.pick(&identities).to_string(),
                            rng.pick(&binding_types).to_string(),
                            endpoint,
                            rng.pick(&addresses).clone(),
                        )
                    } else if roll < 62 {
                        let mut again = rng.pick(&registered).clone();
                        if again.3.is_some() && rng.below(2) == 0 {
                            again.4 = rng.pick(&addresses).clone();
                        }
                        again
                    } else {
                        let mut moved = rng.pick(&registered).clone();
                        moved.1 = rng.pick(&identities).to_string();
                        moved.3 = None;
                        moved
                    };
                let mut pairs = vec![
                    ("BindingType", binding_type.as_str()),
                    ("Address", address.as_str()),
                ];
                if let Some(endpoint) = &endpoint {
                    pairs.push(("Endpoint", endpoint.as_str()));
                }
                if rng.below(3) == 0 {
                    for kind in kinds {
                        if rng.below(2) == 0 {
                            pairs.push(("MessageTypes", kind));
                        }
                    }
                }
                if binding_type == "fcm" && rng.below(2) == 0 {
                    pairs.push(("CredentialSid", credential.as_str()));
                }
                let reply = app.register_binding(&service, &identity, &pairs);
                match reply.status {
                    200 | 201 => {
                        sids.push((service.clone(), sid(&reply.body)));
                        registered.push((service, identity, binding_type, endpoint, address));
                    }
                    409 => assert_eq!(reply.body["code"], 20001, "{}", reply.text),
                    _ => panic!("registration {pairs:?} answered {}", reply.text),
                }
            } else if roll < 55 {
                let (service, binding) = rng.pick(&sids).clone();
                let path = if rng.below(2) == 0 {
                    format!("/v2/Services/{service}/Bindings/{binding}")
                } else {
                    let (_, identity, ..) = rng.pick(&registered).clone();
                    format!("{}/{binding}", user_bindings_path(&service, &identity))
                };
                let reply = app.delete(&path);
                assert!([204, 404].contains(&reply.status), "{path}: {}", reply.text);
            } else if roll < 77 {
                let service = rng.pick(&services);
                let identity = rng.pick(&identities);
                let reply = app.delete(&user_path(service, identity));
                assert!([204, 404].contains(&reply.status), "{}", reply.text);
            } else if roll < 92 {
                // Feedback, mostly for an address someone registered.
                let (service, _, binding_type, _, address) = rng.pick(&registered).clone();
                let reason = rng.pick(&reasons);
                let reply = app.post(
                    &feedback_path(&service),
                    &[
                        ("BindingType", &binding_type),
                        ("Address", &address),
                        ("Reason", reason),
                    ],
                );
                assert_eq!(reply.status, 204, "{}", reply.text);
            } else {
                // Another account writes meanwhile.
                let address = format!("their-token-{step}");
                let reply = app.send_as(
                    &stranger,
                    "POST",
                    &user_bindings_path(&theirs, "alice"),
                    &[FORM],
                    Some(form(&[("BindingType", "apn"), ("Address", &address)]).as_bytes()),
                );
                let body = reply.expect(201);
                theirs_sids.insert(sid(&body));
                theirs_sids.insert(text(&body["user_sid"]));
            }
        }

        // The writes are done: where does the log end now?
        let end = last_position(&app, &app.account);
        target.send(end).expect("the consumer listens");
        let consumed = consumer.join().expect("the consumer ran to the end");
        assert_eq!(consumed.position, end, "the consumer caught up exactly");

        let listed = listed(&app, &[&services[0], &services[1]]);
        assert!(listed.len() >= 5, "the mix left a few bindings: {listed:?}");
        assert_eq!(
            consumed.bindings, listed,
            "the consumer's copy is the registry's bindings"
        );
        for event in &consumed.events {
            assert!(
                !theirs_sids.contains(&text(&event["sid"])),
                "another account's event: {event}"
            );
            assert_ne!(event["service_sid"], theirs.as_str(), "{event}");
        }
        assert!(listed.keys().all(|b| !theirs_sids.contains(b)));
        for binding in &doomed_bindings {
            assert!(
                !consumed.bindings.contains_key(binding),
                "the deleted service's binding {binding} is gone from the copy"
            );
        }
        consumed
    });

    // The mix exercised every way a binding changes or leaves.
    let count = |kind: &str, reason: Option<&str>| {
        consumed
            .events
            .iter()
            .filter(|e| e["type"] == kind && reason.is_none_or(|r| e["data"]["reason"] == r))
            .count()
    };
    for (kind, reason) in [
        ("BindingRegistered", None),
        ("BindingUpdated", None),
        ("BindingSuperseded", None),
        ("BindingDeleted", Some("api")),
        ("BindingDeleted", Some("user_deleted")),
        ("BindingDeleted", Some("token_invalid")),
        ("BindingDeleted", Some("service_deleted")),
        ("UserDeleted", None),
        ("CredentialCreated", None),
    ] {
        assert!(count(kind, reason) > 0, "no {kind} {reason:?} in the feed");
    }
    assert!(consumed.polls > 1);
    // No secret reaches the feed.
    for event in &consumed.events {
        let data = event["data"].as_object().expect("data is an object");
        for secret in ["auth_token_hash", "secret_hash", "secrets"] {
            assert!(!data.contains_key(secret), "{event}");
        }
        assert!(!event.to_string().contains(key_line), "{event}");
    }
    assert_eq!(
        count("AccountCreated", None),
        1,
        "the account's own creation only"
    );
    assert_eq!(
        consumed.events,
        whole_feed(&app, &app.account),
        "long-polled or read at once, the feed is the same"
    );
    app.verify();
}

/// `GET /v2/Events?After={after}&Wait={wait}` as `credentials`, once the server has parked it
/// among the change feed's waiters (`bindery_feed_waiters` counts it): from then on, a write
/// of its account wakes it. Its answer is read later.
fn start_poll(app: &TestApp, credentials: &Credentials, after: i64, wait: u64) -> Pending {
    let waiting = app.metric("bindery_feed_waiters", &[]);
    let target = format!("/v2/Events?After={after}&Wait={wait}");
    let poll = app.raw_start_as(credentials, "GET", target.as_bytes());
    wait_until(PATIENCE, "the server to park the long poll", || {
        app.metric("bindery_feed_waiters", &[]) > waiting
    });
    poll
}

#[test]
fn a_long_poll_waits_and_wakes_when_an_event_is_written() {
    let app = TestApp::spawn();
    let chat = sid(&app.create_service("chat"));
    app.register_binding(
        &chat,
        "alice",
        &[("BindingType", "apn"), ("Address", "a-token")],
    )
    .expect(201);
    let latest = last_position(&app, &app.account);

    // Nothing new within Wait=1: an empty page, after waiting. The one timing here is a
    // lower bound on the server's own wait, measured around it: load only lengthens it.
    let asked = Instant::now();
    let page = app
        .get_raw(&format!("/v2/Events?After={latest}&Wait=1"))
        .expect(200);
    let waited = asked.elapsed();
    assert_eq!(page["events"], json!([]));
    assert_eq!(page["meta"]["key"], "events");
    assert_eq!(page["meta"]["next_after"], latest);
    assert_eq!(page["meta"]["next_page_url"], Value::Null);
    assert!(
        waited >= Duration::from_millis(900),
        "Wait=1 with nothing new waits about a second, not {waited:?}"
    );

    // A poll with Wait=30, parked on the server, is answered by a registration made while it
    // waits: with its events, which it would not have had, had Wait run out.
    let poll = start_poll(&app, &app.account, latest, 30);
    let bob = app
        .register_binding(
            &chat,
            "bob",
            &[("BindingType", "fcm"), ("Address", "b-token")],
        )
        .expect(201);
    let page = poll.answer();
    assert_eq!(page.status, 200, "{page:?}");
    let page = page.json();
    let events = page["events"].as_array().unwrap();
    assert_eq!(
        types(events),
        ["UserCreated", "BindingRegistered"],
        "bob's creation and his binding: {page}"
    );
    assert!(events.iter().all(|e| position(e) > latest));
    assert_eq!(events[1]["sid"], bob["sid"]);
    assert_eq!(events[1]["data"]["identity"], "bob");
    assert_eq!(page["meta"]["next_after"], position(&events[1]));

    // Another account's writes do not answer this account's poll: it waits past them, for the
    // write of its own account that follows.
    let stranger = app.other_account();
    let theirs = sid(&app
        .post_as(&stranger, "/v2/Services", &[("FriendlyName", "theirs")])
        .expect(201));
    let latest = last_position(&app, &app.account);
    let poll = start_poll(&app, &app.account, latest, 30);
    app.send_as(
        &stranger,
        "POST",
        &user_bindings_path(&theirs, "mallory"),
        &[FORM],
        Some(form(&[("BindingType", "apn"), ("Address", "their-token")]).as_bytes()),
    )
    .expect(201);
    let carol = app.create_user(&chat, "carol");
    let page = poll.answer();
    assert_eq!(page.status, 200, "{page:?}");
    let page = page.json();
    let events = page["events"].as_array().unwrap();
    assert_eq!(
        types(events),
        ["UserCreated"],
        "carol's creation, and nothing of the other account's: {page}"
    );
    assert_eq!(events[0]["sid"], carol["sid"], "{page}");
    let theirs_feed = whole_feed(&app, &stranger);
    assert!(theirs_feed
        .iter()
        .any(|e| e["data"]["identity"] == "mallory"));
    assert!(whole_feed(&app, &app.account)
        .iter()
        .all(|e| e["service_sid"] != theirs.as_str() && e["data"]["identity"] != "mallory"));
    app.verify();
}
