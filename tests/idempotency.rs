//! `Idempotency-Key` on POSTs: a retried request answers what the first one did and appends
//! nothing; the same key for a different request is refused.

use serde_json::Value;

use crate::support::{basic, bindery, TestApp};

fn post(app: &TestApp, path: &str, key: Option<&str>, form: &[(&str, &str)]) -> (u16, Value) {
    let mut request = ureq::post(&app.url(path)).set("Authorization", &basic(&app.account));
    if let Some(key) = key {
        request = request.set("Idempotency-Key", key);
    }
    let response = match request.send_form(form) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    (response.status(), response.into_json().unwrap())
}

fn log_length(app: &TestApp) -> usize {
    let exported = bindery(&app.data_dir(), &["export"]);
    String::from_utf8(exported.stdout).unwrap().lines().count()
}

#[test]
fn a_retried_registration_answers_the_first_answer_and_appends_nothing() {
    let app = TestApp::spawn();
    let (_, service) = post(
        &app,
        "/v2/Services",
        Some("svc-1"),
        &[("FriendlyName", "chat")],
    );
    let service = service["sid"].as_str().unwrap().to_owned();
    let path = format!("/v2/Services/{service}/Users/alice/Bindings");
    let form = [("BindingType", "apn"), ("Address", "token-1")];

    let first = post(&app, &path, Some("reg-1"), &form);
    assert_eq!(first.0, 201, "{}", first.1);
    let events = log_length(&app);
    let again = post(&app, &path, Some("reg-1"), &form);
    assert_eq!(
        again, first,
        "the same status and body, byte for byte in JSON"
    );
    assert_eq!(log_length(&app), events, "nothing appended");

    // Without the key the same form is a re-registration: 200 and a refreshed binding.
    assert_eq!(post(&app, &path, None, &form).0, 200);
    assert!(log_length(&app) > events);
}

#[test]
fn the_same_key_for_a_different_request_is_refused_with_422() {
    let app = TestApp::spawn();
    let (status, _) = post(&app, "/v2/Services", Some("k"), &[("FriendlyName", "one")]);
    assert_eq!(status, 201);
    let (status, body) = post(&app, "/v2/Services", Some("k"), &[("FriendlyName", "two")]);
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["code"], 20001);
    let (_, listed) = app.get("/v2/Services", Some(&app.account));
    assert_eq!(
        listed["services"].as_array().unwrap().len(),
        1,
        "nothing made by the refused one"
    );
}

#[test]
fn keys_belong_to_their_account_and_must_be_sane() {
    let app = TestApp::spawn();
    let (status, _) = post(&app, "/v2/Services", Some(""), &[("FriendlyName", "x")]);
    assert_eq!(status, 400);
    let long = "k".repeat(256);
    let (status, body) = post(&app, "/v2/Services", Some(&long), &[("FriendlyName", "x")]);
    assert_eq!((status, body["code"].as_u64()), (400, Some(20001)));

    // A refused command is not remembered: the same key may succeed once the cause is gone.
    let missing = format!("/v2/Services/IS{}/Users", "0".repeat(32));
    let (status, _) = post(&app, &missing, Some("retry"), &[("Identity", "alice")]);
    assert_eq!(status, 404);
    let (status, _) = post(
        &app,
        "/v2/Services",
        Some("retry"),
        &[("FriendlyName", "x")],
    );
    assert_eq!(status, 201, "nothing was remembered under the key");
}
