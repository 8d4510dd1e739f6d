//! [EXT] Delivery records (`GET /v2/Services/{ServiceSid}/Bindings/{Sid}/Deliveries`): one
//! record per notify and binding, the newest 20 kept, newest first; gone with their binding;
//! not events, yet kept across a restart and a `bindery rebuild`.

use std::collections::BTreeSet;

use serde_json::Value;
use tempfile::TempDir;

use crate::delivery::{chat_service, notify, register, result_for};
use crate::support::{
    assert_error, bindery, exported_events, is_twilio_date, keys, sid, TestApp, PATIENCE,
};
use crate::webhook::{scripted, spawn_for};

fn path(service: &str, binding: &str) -> String {
    format!("/v2/Services/{service}/Bindings/{binding}/Deliveries")
}

/// The binding's records (one page, which holds them all), after checking the envelope.
#[track_caller]
fn records(app: &TestApp, service: &str, binding: &str) -> Vec<Value> {
    let page = app.get_raw(&path(service, binding)).expect(200);
    assert_eq!(page["meta"]["key"], "deliveries", "{page}");
    assert_eq!(page["meta"]["next_page_url"], Value::Null, "{page}");
    let records = page["deliveries"].as_array().expect("deliveries").clone();
    let fields: BTreeSet<String> = [
        "notification_sid",
        "date_created",
        "status",
        "error",
        "provider_status",
        "attempts",
        "latency_ms",
    ]
    .map(String::from)
    .into();
    for record in &records {
        assert_eq!(keys(record), fields, "{record}");
        assert!(is_twilio_date(&record["date_created"]), "{record}");
        assert!(record["latency_ms"].is_u64(), "{record}");
    }
    records
}

/// The one record of `binding` for the notify that answered `answer`.
#[track_caller]
fn record_of(app: &TestApp, service: &str, binding: &str, answer: &Value) -> Value {
    let records = records(app, service, binding);
    let found: Vec<&Value> = records
        .iter()
        .filter(|r| r["notification_sid"] == answer["sid"])
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one record of {} in {records:#?}",
        answer["sid"]
    );
    found[0].clone()
}

#[test]
fn a_notify_through_the_log_transport_leaves_a_delivered_record_under_its_sid() {
    let app = TestApp::spawn();
    let service = chat_service(&app, "Chat");
    let phone = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "alice-apn-token")],
    );
    assert_eq!(records(&app, &service, &phone), Vec::<Value>::new());

    let answer = notify(&app, &service, &[("Identity", "alice"), ("Body", "hi")]);
    assert_eq!(result_for(&answer, &phone)["status"], "delivered");
    let record = record_of(&app, &service, &phone, &answer);
    assert_eq!(record["status"], "delivered", "{record}");
    assert_eq!(record["error"], Value::Null, "{record}");
    assert_eq!(record["provider_status"], Value::Null, "{record}");
    assert_eq!(record["attempts"], 1, "{record}");

    // Not an event: the binding's history and the log hold no trace of it.
    let history = app
        .get_raw(&format!("/v2/Services/{service}/Bindings/{phone}/History"))
        .expect(200);
    assert_eq!(
        history["events"].as_array().map(Vec::len),
        Some(1),
        "{history}"
    );
    let exported = exported_events(&app.data_dir());
    assert!(
        !serde_json::to_string(&exported)
            .unwrap()
            .contains(answer["sid"].as_str().unwrap()),
        "the notification is in no event"
    );
    app.verify();
}

#[test]
fn a_binding_keeps_its_newest_twenty_records_newest_first_paged_like_any_list() {
    let app = TestApp::spawn();
    let service = chat_service(&app, "Chat");
    let phone = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "alice-apn-token")],
    );
    let sids: Vec<Value> = (0..23)
        .map(|i| {
            notify(
                &app,
                &service,
                &[("Identity", "alice"), ("Body", &i.to_string())],
            )["sid"]
                .clone()
        })
        .collect();
    let newest: Vec<Value> = sids[3..].iter().rev().cloned().collect();
    let listed: Vec<Value> = records(&app, &service, &phone)
        .iter()
        .map(|r| r["notification_sid"].clone())
        .collect();
    assert_eq!(listed, newest);

    // Pages of 7 walk the same 20, in the same order.
    let walked: Vec<Value> = app
        .walk(
            &format!("{}?PageSize=7", path(&service, &phone)),
            "deliveries",
        )
        .iter()
        .map(|r| r["notification_sid"].clone())
        .collect();
    assert_eq!(walked, newest);
    let first = app
        .get_raw(&format!("{}?PageSize=7", path(&service, &phone)))
        .expect(200);
    assert_eq!(first["meta"]["page_size"], 7);
    let second = app.follow(&first["meta"]["next_page_url"]).expect(200);
    assert_eq!(second["meta"]["page"], 1);
    let back = app.follow(&second["meta"]["previous_page_url"]).expect(200);
    assert_eq!(back["deliveries"], first["deliveries"]);
}

#[test]
fn a_500_leaves_a_failed_record_with_its_tries_and_a_410_removes_the_binding_and_its_records() {
    let sender = scripted(&[
        ("flaky-token", 500, r#"{"error":"down"}"#),
        ("refused-token", 400, r#"{"error":"bad request"}"#),
        ("gone-token", 410, r#"{"error":"gone"}"#),
    ]);
    let app = spawn_for(&sender);
    let service = chat_service(&app, "Chat");
    let flaky = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "flaky-token")],
    );
    let refused = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "fcm"), ("Address", "refused-token")],
    );
    let gone = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "gcm"), ("Address", "gone-token")],
    );
    let fine = register(
        &app,
        &service,
        "bob",
        &[("BindingType", "apn"), ("Address", "fine-token")],
    );
    let answer = notify(
        &app,
        &service,
        &[("Identity", "alice"), ("Identity", "bob"), ("Body", "hi")],
    );
    let record = record_of(&app, &service, &flaky, &answer);
    assert_eq!(record["status"], "failed", "{record}");
    assert_eq!(record["provider_status"], 500, "{record}");
    assert_eq!(record["attempts"], 3, "1 + retries (2): {record}");
    assert_eq!(sender.to("flaky-token").len(), 3);
    assert_eq!(
        record["error"],
        result_for(&answer, &flaky)["error"],
        "the answer's words: {record}"
    );
    assert!(
        record["error"]
            .as_str()
            .is_some_and(|e| e.contains("500") && !e.contains("127.0.0.1")),
        "{record}"
    );

    let record = record_of(&app, &service, &refused, &answer);
    assert_eq!(
        (
            &record["status"],
            &record["provider_status"],
            &record["attempts"]
        ),
        (&"failed".into(), &400.into(), &1.into()),
        "{record}"
    );
    let record = record_of(&app, &service, &fine, &answer);
    assert_eq!(
        (
            &record["status"],
            &record["provider_status"],
            &record["attempts"]
        ),
        (&"delivered".into(), &200.into(), &1.into()),
        "{record}"
    );

    // The 410 removed the binding (and its records with it): not found, as any gone binding.
    assert_eq!(result_for(&answer, &gone)["status"], "unregistered");
    assert!(!app.user_binding_sids(&service, "alice").contains(&gone));
    assert_error(&app.get_raw(&path(&service, &gone)), 404, 20404);
    app.verify();
}

#[test]
fn records_of_another_account_an_unknown_or_a_deleted_binding_are_not_found() {
    let app = TestApp::spawn();
    let service = chat_service(&app, "Chat");
    let phone = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "alice-apn-token")],
    );
    notify(&app, &service, &[("Identity", "alice"), ("Body", "hi")]);
    assert_eq!(records(&app, &service, &phone).len(), 1);

    let other = app.other_account();
    let theirs = app.send_as(&other, "GET", &path(&service, &phone), &[], None);
    assert_error(&theirs, 404, 50050);
    let their_service = sid(&app
        .post_as(&other, "/v2/Services", &[("FriendlyName", "theirs")])
        .expect(201));
    let crossed = app.send_as(&other, "GET", &path(&their_service, &phone), &[], None);
    assert_error(&crossed, 404, 20404);
    let elsewhere = sid(&app.create_service("Elsewhere"));
    assert_error(&app.get_raw(&path(&elsewhere, &phone)), 404, 20404);

    let unknown = "BS0123456789abcdef0123456789abcdef";
    assert_error(&app.get_raw(&path(&service, unknown)), 404, 20404);
    let unknown_service = "IS0123456789abcdef0123456789abcdef";
    assert_error(&app.get_raw(&path(unknown_service, &phone)), 404, 50050);
    assert_error(&app.get_raw(&path(&service, "BSnot-a-sid")), 404, 20404);

    assert_eq!(
        app.delete(&format!("/v2/Services/{service}/Bindings/{phone}"))
            .status,
        204
    );
    assert_error(&app.get_raw(&path(&service, &phone)), 404, 20404);
}

#[test]
fn records_survive_a_restart_and_a_rebuild_and_an_export_does_not_carry_them() {
    let app = TestApp::spawn();
    let service = chat_service(&app, "Chat");
    let phone = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "alice-apn-token")],
    );
    for body in ["one", "two"] {
        notify(&app, &service, &[("Identity", "alice"), ("Body", body)]);
    }
    let before = records(&app, &service, &phone);
    assert_eq!(before.len(), 2);
    app.terminate();
    let mut app = app;
    assert!(app.wait_for_exit(PATIENCE).is_some_and(|s| s.success()));
    let (dir, account) = app.into_dir_and_account();

    let rebuilt = bindery(dir.path(), &["rebuild"]);
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    let exported = bindery(dir.path(), &["export"]);
    assert!(exported.status.success());
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, &exported.stdout).unwrap();

    let (app, _log) = TestApp::spawn_logged(dir, &[], Some(account.clone()));
    assert_eq!(records(&app, &service, &phone), before);
    // New notifies sort after the ones recorded before the restart.
    let answer = notify(&app, &service, &[("Identity", "alice"), ("Body", "three")]);
    let after = records(&app, &service, &phone);
    assert_eq!(after.len(), 3);
    assert_eq!(after[0]["notification_sid"], answer["sid"]);
    assert_eq!(after[1..], before[..]);
    app.verify();

    // An import builds the projections from the log alone: the binding, without records.
    let imported = TempDir::new().unwrap();
    let key = app.data_dir().join("secret.key");
    std::fs::copy(&key, imported.path().join("secret.key")).unwrap();
    let done = bindery(
        imported.path(),
        &["import", "--from", file.to_str().unwrap()],
    );
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let (copy, _log) = TestApp::spawn_logged(imported, &[], Some(account));
    assert_eq!(records(&copy, &service, &phone), Vec::<Value>::new());
}
