//! Notify through the default `log` transport, and the helpers the transport tests share
//! (`tests/webhook.rs`, `tests/desktop.rs`).

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{sid, TestApp, PATIENCE};

pub const DELIVERIES: &str = "bindery_deliveries_total";

/// A service named `friendly_name` that sends `new_message` pushes with the template
/// `${USER}: ${MESSAGE}`; its SID.
#[track_caller]
pub fn chat_service(app: &TestApp, friendly_name: &str) -> String {
    let service = sid(&app.create_service(friendly_name));
    let updated = app
        .post(
            &format!("/v2/Services/{service}"),
            &[
                ("Notifications.NewMessage.Enabled", "true"),
                ("Notifications.NewMessage.Template", "${USER}: ${MESSAGE}"),
            ],
        )
        .expect(200);
    assert_eq!(
        updated["notifications"]["new_message"]["enabled"], true,
        "{updated}"
    );
    service
}

/// Registers a device for `identity`; it must answer 201. The binding's SID.
#[track_caller]
pub fn register(app: &TestApp, service: &str, identity: &str, pairs: &[(&str, &str)]) -> String {
    sid(&app.register_binding(service, identity, pairs).expect(201))
}

/// `POST /v2/Services/{service}/Notifications`; it must answer 201.
#[track_caller]
pub fn notify(app: &TestApp, service: &str, pairs: &[(&str, &str)]) -> Value {
    let answer = app
        .post(&format!("/v2/Services/{service}/Notifications"), pairs)
        .expect(201);
    assert!(
        answer["sid"].as_str().is_some_and(|s| s.starts_with("NO")),
        "{answer}"
    );
    assert_eq!(answer["service_sid"], service, "{answer}");
    answer
}

/// The result of `answer` for `binding`; there must be exactly one.
#[track_caller]
pub fn result_for<'a>(answer: &'a Value, binding: &str) -> &'a Value {
    let found: Vec<&Value> = answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {answer}"))
        .iter()
        .filter(|r| r["binding_sid"] == binding)
        .collect();
    assert_eq!(found.len(), 1, "one result for {binding} in {answer}");
    found[0]
}

/// The binding SIDs of `answer`'s results, sorted.
pub fn targeted(answer: &Value) -> Vec<String> {
    let mut sids: Vec<String> = answer["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results in {answer}"))
        .iter()
        .map(|r| r["binding_sid"].as_str().expect("binding_sid").to_owned())
        .collect();
    sids.sort();
    sids
}

pub fn sorted(sids: &[&str]) -> Vec<String> {
    let mut sids: Vec<String> = sids.iter().map(|s| (*s).to_owned()).collect();
    sids.sort();
    sids
}

#[test]
fn the_log_transport_delivers_to_every_targeted_binding_and_counts_it() {
    let (app, log) = TestApp::spawn_logged(TempDir::new().expect("temp dir"), &[], None);
    let service = chat_service(&app, "Chat");
    let alice_phone = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "alice-apn-token-0001")],
    );
    let alice_tablet = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "fcm"), ("Address", "alice-fcm-token-0002")],
    );
    let bob_phone = register(
        &app,
        &service,
        "bob",
        &[("BindingType", "gcm"), ("Address", "bob-gcm-token-0003")],
    );
    // Carol is not named, so her device is not targeted.
    register(
        &app,
        &service,
        "carol",
        &[("BindingType", "apn"), ("Address", "carol-apn-token-0004")],
    );
    let labels = [("transport", "log"), ("outcome", "delivered")];
    let before = app.metric(DELIVERIES, &labels);

    let answer = notify(
        &app,
        &service,
        &[
            ("Identity", "alice"),
            ("Identity", "bob"),
            ("Body", "lunch at noon"),
        ],
    );
    assert_eq!(answer["type"], "new_message", "{answer}");
    assert_eq!(
        answer["identities"],
        serde_json::json!(["alice", "bob"]),
        "{answer}"
    );
    assert_eq!(answer["enabled"], true, "{answer}");
    assert_eq!(
        (&answer["targeted"], &answer["delivered"], &answer["failed"]),
        (&3.into(), &3.into(), &0.into()),
        "{answer}"
    );
    assert_eq!(
        targeted(&answer),
        sorted(&[&alice_phone, &alice_tablet, &bob_phone])
    );
    for binding in [&alice_phone, &alice_tablet, &bob_phone] {
        let result = result_for(&answer, binding);
        assert_eq!(result["status"], "delivered", "{answer}");
        assert_eq!(result["error"], Value::Null, "{answer}");
    }
    assert_eq!(result_for(&answer, &alice_phone)["binding_type"], "apn");
    assert_eq!(result_for(&answer, &bob_phone)["binding_type"], "gcm");
    assert_eq!(app.metric(DELIVERIES, &labels), before + 3.0);

    // One log line per push, with the binding's SID and never the whole token.
    for binding in [&alice_phone, &alice_tablet, &bob_phone] {
        assert!(
            log.wait_for(binding, PATIENCE),
            "no log line names {binding}:\n{}",
            log.lines().join("\n")
        );
    }
    let lines = log.lines().join("\n");
    for token in [
        "alice-apn-token-0001",
        "alice-fcm-token-0002",
        "bob-gcm-token-0003",
    ] {
        assert!(
            !lines.contains(token),
            "{token} was logged in full:\n{lines}"
        );
    }
    app.verify();
}

/// Message bodies are users' chat text: the `log` transport says at `info` what was sent to
/// whom, and writes the body only at `debug`.
#[test]
fn the_log_transport_writes_message_bodies_only_at_debug() {
    for (level, body_logged) in [("info", false), ("debug", true)] {
        let (app, log) = TestApp::spawn_logged(
            TempDir::new().expect("temp dir"),
            &[("RUST_LOG", level)],
            None,
        );
        let service = chat_service(&app, "Chat");
        let binding = register(
            &app,
            &service,
            "alice",
            &[("BindingType", "apn"), ("Address", "alice-apn-token-0001")],
        );
        let body = "the secret plan is at noon";
        let answer = notify(&app, &service, &[("Identity", "alice"), ("Body", body)]);
        assert_eq!(result_for(&answer, &binding)["status"], "delivered");
        assert!(app.stop().success());
        log.wait_closed();
        let lines = log.lines().join("\n");
        let push = log
            .lines()
            .into_iter()
            .find(|l| l.contains(" push ") || l.ends_with(" push"))
            .unwrap_or_else(|| panic!("no push line at {level}:\n{lines}"));
        assert!(push.contains(&binding) && push.contains("alice"), "{push}");
        assert_eq!(
            lines.contains(body),
            body_logged,
            "RUST_LOG={level}: the body logged is {}:\n{lines}",
            lines.contains(body)
        );
    }
}
