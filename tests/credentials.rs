//! Push credentials: `/v2/Credentials[/{Sid}]`, account-scoped; secrets go in and never come out.

use serde_json::Value;

use crate::support::{assert_error, is_twilio_date, keys, sid, spec_fields, TestApp};

const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----secret-certificate-body";
const PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----secret-private-key-body";
const API_KEY: &str = "gcm-secret-api-key-0123";
const FCM_SECRET: &str = "fcm-secret-server-key-4567";

/// No answer may carry a secret, whatever the route.
#[track_caller]
fn assert_no_secret(text: &str) {
    for secret in [CERTIFICATE, PRIVATE_KEY, API_KEY, FCM_SECRET] {
        assert!(!text.contains(secret), "a secret was returned: {text}");
    }
    for fragment in ["secret-certificate", "secret-private-key", "secret-api-key"] {
        assert!(!text.contains(fragment), "a secret was returned: {text}");
    }
}

#[test]
fn apn_fcm_and_gcm_credentials_are_created_with_every_spec_field_and_no_secret() {
    let app = TestApp::spawn();
    let apn = app.post(
        "/v2/Credentials",
        &[
            ("Type", "apn"),
            ("FriendlyName", "iOS production"),
            ("Certificate", CERTIFICATE),
            ("PrivateKey", PRIVATE_KEY),
            ("Sandbox", "true"),
        ],
    );
    assert_eq!(apn.status, 201, "{}", apn.text);
    assert_no_secret(&apn.text);
    let apn = apn.body;
    assert_eq!(keys(&apn), spec_fields("chat.v2.credential"), "{apn}");
    assert!(sid(&apn).starts_with("CR"));
    assert_eq!(apn["type"], "apn");
    assert_eq!(apn["sandbox"], "True", "sandbox is a string: {apn}");
    assert_eq!(apn["friendly_name"], "iOS production");
    assert_eq!(apn["account_sid"], app.account.user.as_str());
    assert!(is_twilio_date(&apn["date_created"]) && is_twilio_date(&apn["date_updated"]));
    assert_eq!(
        apn["url"],
        app.url(&format!("/v2/Credentials/{}", sid(&apn))).as_str()
    );

    let sandbox_off = app.post(
        "/v2/Credentials",
        &[
            ("Type", "apn"),
            ("Certificate", CERTIFICATE),
            ("Sandbox", "FALSE"),
        ],
    );
    assert_no_secret(&sandbox_off.text);
    assert_eq!(sandbox_off.expect(201)["sandbox"], "False");

    let fcm = app.post(
        "/v2/Credentials",
        &[("Type", "fcm"), ("Secret", FCM_SECRET)],
    );
    assert_no_secret(&fcm.text);
    let fcm = fcm.expect(201);
    assert_eq!(fcm["type"], "fcm");
    assert_eq!(keys(&fcm), spec_fields("chat.v2.credential"));
    assert!(
        fcm["sandbox"].is_null() || fcm["sandbox"] == "False",
        "{fcm}"
    );

    let gcm = app.post("/v2/Credentials", &[("Type", "gcm"), ("ApiKey", API_KEY)]);
    assert_no_secret(&gcm.text);
    assert_eq!(gcm.expect(201)["type"], "gcm");

    let listed = app.get_raw("/v2/Credentials");
    assert_no_secret(&listed.text);
    let listed = listed.expect(200);
    assert_eq!(listed["meta"]["key"], "credentials");
    let types: Vec<&Value> = listed["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["type"])
        .collect();
    assert_eq!(types, ["apn", "apn", "fcm", "gcm"], "creation order");
    for credential in listed["credentials"].as_array().unwrap() {
        assert_eq!(keys(credential), spec_fields("chat.v2.credential"));
    }
    app.verify();
}

#[test]
fn a_missing_or_unknown_type_or_a_long_friendly_name_is_malformed() {
    let app = TestApp::spawn();
    for bad in [
        vec![("FriendlyName", "no type")],
        vec![("Type", "webpush")],
        vec![("Type", "APN-ish")],
        vec![("Type", "apn"), ("Type", "fcm")],
        vec![("Type", "apn"), ("Sandbox", "perhaps")],
    ] {
        assert_error(&app.post("/v2/Credentials", &bad), 400, 20001);
    }
    let long = "x".repeat(65);
    let too_long = app.post(
        "/v2/Credentials",
        &[("Type", "fcm"), ("FriendlyName", &long)],
    );
    assert_error(&too_long, 400, 20001);
    // 64 characters is the limit, counted in characters, not bytes.
    let at_limit = "é".repeat(64);
    let made = app.create_credential(&[("Type", "fcm"), ("FriendlyName", &at_limit)]);
    assert_eq!(made["friendly_name"], at_limit.as_str());

    let listed = app.get_raw("/v2/Credentials").expect(200);
    assert_eq!(listed["credentials"].as_array().unwrap().len(), 1);
    app.verify();
}

#[test]
fn fetch_update_and_delete_a_credential() {
    let app = TestApp::spawn();
    let made = app.create_credential(&[
        ("Type", "apn"),
        ("FriendlyName", "old"),
        ("Certificate", CERTIFICATE),
        ("PrivateKey", PRIVATE_KEY),
        ("Sandbox", "True"),
    ]);
    let path = format!("/v2/Credentials/{}", sid(&made));

    let fetched = app.get_raw(&path);
    assert_no_secret(&fetched.text);
    assert_eq!(fetched.expect(200), made);

    let updated = app.post(
        &path,
        &[
            ("FriendlyName", "new"),
            ("Sandbox", "false"),
            (
                "Certificate",
                "-----BEGIN CERTIFICATE-----secret-certificate-rotated",
            ),
        ],
    );
    assert_no_secret(&updated.text);
    assert!(!updated.text.contains("rotated"), "{}", updated.text);
    let updated = updated.expect(200);
    assert_eq!(updated["friendly_name"], "new");
    assert_eq!(updated["sandbox"], "False");
    assert_eq!(updated["type"], "apn", "the type stays");
    assert_eq!(updated["sid"], made["sid"]);
    assert_eq!(app.get_raw(&path).expect(200), updated);

    let long = "y".repeat(65);
    assert_error(&app.post(&path, &[("FriendlyName", &long)]), 400, 20001);

    let deleted = app.delete(&path);
    assert_eq!(deleted.status, 204);
    assert_eq!(deleted.text, "");
    assert_error(&app.get_raw(&path), 404, 20404);
    assert_error(&app.delete(&path), 404, 20404);
    assert_error(&app.post(&path, &[("FriendlyName", "x")]), 404, 20404);
    let listed = app.get_raw("/v2/Credentials").expect(200);
    assert_eq!(listed["credentials"].as_array().unwrap().len(), 0);
    app.verify();
}

#[test]
fn another_accounts_credential_is_answered_as_missing() {
    let app = TestApp::spawn();
    let other = app.other_account();
    let theirs = app
        .post_as(&other, "/v2/Credentials", &[("Type", "fcm")])
        .expect(201);
    let path = format!("/v2/Credentials/{}", sid(&theirs));
    let missing = format!("/v2/Credentials/CR{}", "0".repeat(32));
    for path in [&path, &missing] {
        assert_error(&app.get_raw(path), 404, 20404);
        assert_error(&app.post(path, &[("FriendlyName", "mine")]), 404, 20404);
        assert_error(&app.delete(path), 404, 20404);
    }
    let listed = app.get_raw("/v2/Credentials").expect(200);
    assert_eq!(listed["credentials"].as_array().unwrap().len(), 0);
    let still = app.send_as(&other, "GET", &path, &[], None).expect(200);
    assert_eq!(still, theirs, "untouched by the other account");
    app.verify();
}
