//! Notify's `Identity` list: an identity named twice is one user, pushed once per binding;
//! at most 1000 distinct identities per request, through the default `log` transport.

use serde_json::{json, Value};

use crate::delivery::{chat_service, notify, register, sorted, targeted, DELIVERIES};
use crate::support::{assert_error, form, TestApp};

/// Every push the log transport made, whatever its outcome.
fn pushes(app: &TestApp) -> f64 {
    ["delivered", "failed", "unregistered"]
        .into_iter()
        .map(|outcome| app.metric(DELIVERIES, &[("transport", "log"), ("outcome", outcome)]))
        .sum()
}

/// A notify form naming `identities`, in order.
fn naming(identities: &[String]) -> String {
    let mut body = form(&[("Body", "hello")]);
    for identity in identities {
        body.push('&');
        body.push_str(&form(&[("Identity", identity)]));
    }
    body
}

fn post_notify(app: &TestApp, service: &str, body: &str) -> crate::support::Reply {
    app.post_raw(
        &format!("/v2/Services/{service}/Notifications"),
        Some("application/x-www-form-urlencoded"),
        body.as_bytes(),
    )
}

#[test]
fn an_identity_named_twice_is_pushed_once_per_binding_in_first_named_order() {
    let app = TestApp::spawn();
    let service = chat_service(&app, "Chat");
    let alice_phone = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "alice-apn")],
    );
    let alice_tablet = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "fcm"), ("Address", "alice-fcm")],
    );
    let bob_phone = register(
        &app,
        &service,
        "bob",
        &[("BindingType", "gcm"), ("Address", "bob-gcm")],
    );
    let before = pushes(&app);

    let answer = notify(
        &app,
        &service,
        &[
            ("Identity", "bob"),
            ("Identity", "alice"),
            ("Identity", "bob"),
            ("Identity", "alice"),
            ("Identity", "alice"),
            ("Body", "once"),
        ],
    );
    assert_eq!(answer["identities"], json!(["bob", "alice"]), "{answer}");
    assert_eq!(
        targeted(&answer),
        sorted(&[&alice_phone, &alice_tablet, &bob_phone]),
        "one result per binding: {answer}"
    );
    assert_eq!(
        (&answer["targeted"], &answer["delivered"]),
        (&3.into(), &3.into()),
        "{answer}"
    );
    assert_eq!(pushes(&app), before + 3.0, "one push per binding");

    // Identities are case-sensitive: "Alice" is someone else, not a repeat of "alice".
    let answer = notify(
        &app,
        &service,
        &[("Identity", "alice"), ("Identity", "Alice"), ("Body", "hi")],
    );
    assert_eq!(answer["identities"], json!(["alice", "Alice"]), "{answer}");
    assert_eq!(answer["targeted"], 2, "{answer}");
    assert_eq!(pushes(&app), before + 5.0);
    app.verify();
}

#[test]
fn a_notify_names_at_most_1000_distinct_identities() {
    let app = TestApp::spawn();
    let service = chat_service(&app, "Crowd");
    let names: Vec<String> = (0..1001).map(|i| format!("user-{i:04}")).collect();
    // Devices for the first, a middle and the last of the 1000, and for the 1001st.
    let mut bindings = Vec::new();
    for name in [&names[0], &names[500], &names[999], &names[1000]] {
        bindings.push(register(
            &app,
            &service,
            name,
            &[
                ("BindingType", "fcm"),
                ("Address", &format!("{name}-token")),
            ],
        ));
    }
    let before = pushes(&app);

    let refused = post_notify(&app, &service, &naming(&names));
    assert_error(&refused, 400, 20001);
    let message = refused.body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Identity") && message.contains("1000"),
        "{message}"
    );
    assert_eq!(pushes(&app), before, "nothing was pushed");

    // Repeats do not count towards the limit: 1000 identities, some named twice.
    let mut repeated: Vec<String> = names[..1000].to_vec();
    repeated.extend(names[..10].iter().cloned());
    let answer = post_notify(&app, &service, &naming(&repeated)).expect(201);
    let identities: Vec<Value> = names[..1000].iter().map(|n| json!(n)).collect();
    assert_eq!(
        answer["identities"],
        Value::Array(identities),
        "first-named order"
    );
    assert_eq!(
        targeted(&answer),
        sorted(&[&bindings[0], &bindings[1], &bindings[2]]),
        "the 1001st user's device is not named: {answer}"
    );
    assert_eq!(answer["delivered"], 3, "{answer}");
    assert_eq!(pushes(&app), before + 3.0);

    // Exactly 1000 distinct identities, the 1001st among them instead of the first.
    let answer = post_notify(&app, &service, &naming(&names[1..])).expect(201);
    assert_eq!(answer["identities"].as_array().map(Vec::len), Some(1000));
    assert_eq!(
        targeted(&answer),
        sorted(&[&bindings[1], &bindings[2], &bindings[3]]),
        "{answer}"
    );
    assert_eq!(pushes(&app), before + 6.0);
    app.verify();
}
