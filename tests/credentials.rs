//! Push credentials: `/v2/Credentials[/{Sid}]`, account-scoped; secrets go in and never come
//! out. Create and update read what they are given as a sender would (CONTRACT §6.2): what
//! cannot push answers 400 naming the field and stores nothing, and the body shows what was
//! found ([EXT] `auth`, `topic`, `expires`).

use bindery_domain::Timestamp;
use bindery_standin::{ClientCert, ClientCertSpec, RsaTestKey};
use serde_json::Value;

use crate::support::material::{self, credential_form, Form, PROJECT, TOPIC};
use crate::support::{assert_error, exported_events, is_twilio_date, keys, sid, TestApp};

/// The secrets of every credential these tests make, as fragments that must never come out.
fn secret_fragments(certificates: &[&ClientCert]) -> Vec<String> {
    let mut secrets = vec![
        material::apns_key().p8_pem(),
        RsaTestKey::A.pkcs8_pem().to_owned(),
    ];
    for cert in certificates {
        secrets.extend([
            cert.key_pkcs8_pem.clone(),
            cert.key_traditional_pem.clone(),
            cert.cert_pem.clone(),
        ]);
    }
    secrets
        .iter()
        .map(|secret| material::secret_line(secret).to_owned())
        .collect()
}

/// No answer may carry a secret, whatever the route.
#[track_caller]
fn assert_no_secret(text: &str, fragments: &[String]) {
    for fragment in fragments {
        assert!(
            !text.contains(fragment.as_str()),
            "a secret came out: {text}"
        );
    }
}

/// A body's [EXT] `auth`, `topic` and `expires`.
fn profile(body: &Value) -> (Value, Value, Value) {
    (
        body["auth"].clone(),
        body["topic"].clone(),
        body["expires"].clone(),
    )
}

fn certificate_auth(cert: &ClientCert) -> Form {
    Form::default()
        .with("Type", "apn")
        .with("Certificate", &cert.cert_pem)
        .with("PrivateKey", &cert.key_traditional_pem)
}

/// The date a certificate's notAfter shows as.
fn expiry(cert: &ClientCert) -> String {
    Timestamp::from(cert.not_after).to_string()
}

/// How many events the account's log holds: a refused request appends none.
fn log_length(app: &TestApp) -> usize {
    let mut after = 0;
    let mut events = 0;
    loop {
        let page = app
            .get_raw(&format!("/v2/Events?After={after}&PageSize=1000"))
            .expect(200);
        let items = page["events"].as_array().expect("events").len();
        events += items;
        if page["meta"]["next_page_url"].is_null() || items == 0 {
            return events;
        }
        after = page["meta"]["next_after"].as_i64().expect("next_after");
    }
}

#[test]
fn each_kind_is_created_with_every_described_field_what_it_pushes_with_and_no_secret() {
    let app = TestApp::spawn();
    let fields = app.served_fields("chat.v2.credential");
    for added in ["auth", "topic", "expires"] {
        assert!(fields.contains(added), "{added} is described: {fields:?}");
    }
    let cert = material::certificate(&ClientCertSpec::new("com.example.cert"));
    let secrets = secret_fragments(&[&cert]);

    let token = app.post(
        "/v2/Credentials",
        &credential_form("apn")
            .with("FriendlyName", "iOS production")
            .with("Sandbox", "true")
            .pairs(),
    );
    assert_eq!(token.status, 201, "{}", token.text);
    assert_no_secret(&token.text, &secrets);
    let token = token.body;
    assert_eq!(keys(&token), fields, "{token}");
    assert!(sid(&token).starts_with("CR"));
    assert_eq!(token["type"], "apn");
    assert_eq!(token["sandbox"], "True", "sandbox is a string: {token}");
    assert_eq!(token["friendly_name"], "iOS production");
    assert_eq!(token["account_sid"], app.account.user.as_str());
    assert!(is_twilio_date(&token["date_created"]) && is_twilio_date(&token["date_updated"]));
    assert_eq!(
        token["url"],
        app.url(&format!("/v2/Credentials/{}", sid(&token)))
            .as_str()
    );
    assert_eq!(profile(&token), ("token".into(), TOPIC.into(), Value::Null));

    let certificate = app.post(
        "/v2/Credentials",
        &certificate_auth(&cert).with("Sandbox", "FALSE").pairs(),
    );
    assert_no_secret(&certificate.text, &secrets);
    let certificate = certificate.expect(201);
    assert_eq!(keys(&certificate), fields);
    assert_eq!(certificate["sandbox"], "False");
    assert_eq!(certificate["auth"], "certificate");
    assert_eq!(
        certificate["topic"], "com.example.cert",
        "the subject's UID"
    );
    assert_eq!(certificate["expires"], expiry(&cert).as_str());
    assert!(is_twilio_date(&certificate["expires"]));

    let named = app.create_credential(
        &certificate_auth(&cert)
            .with("Topic", "com.example.cert.voip")
            .pairs(),
    );
    assert_eq!(
        named["topic"], "com.example.cert.voip",
        "a Topic given wins"
    );

    let fcm = app.post("/v2/Credentials", &credential_form("fcm").pairs());
    assert_no_secret(&fcm.text, &secrets);
    let fcm = fcm.expect(201);
    assert_eq!(fcm["type"], "fcm");
    assert_eq!(keys(&fcm), fields);
    assert!(
        fcm["sandbox"].is_null() || fcm["sandbox"] == "False",
        "{fcm}"
    );
    assert_eq!(
        profile(&fcm),
        ("service_account".into(), PROJECT.into(), Value::Null)
    );

    let gcm = app.post("/v2/Credentials", &credential_form("gcm").pairs());
    assert_no_secret(&gcm.text, &secrets);
    let gcm = gcm.expect(201);
    assert_eq!(gcm["type"], "gcm");
    assert_eq!(gcm["auth"], "service_account");

    let listed = app.get_raw("/v2/Credentials");
    assert_no_secret(&listed.text, &secrets);
    let listed = listed.expect(200);
    assert_eq!(listed["meta"]["key"], "credentials");
    let types: Vec<&Value> = listed["credentials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["type"])
        .collect();
    assert_eq!(types, ["apn", "apn", "apn", "fcm", "gcm"], "creation order");
    for credential in listed["credentials"].as_array().unwrap() {
        assert_eq!(keys(credential), fields);
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
        &credential_form("fcm").with("FriendlyName", &long).pairs(),
    );
    assert_error(&too_long, 400, 20001);
    // 64 characters is the limit, counted in characters, not bytes.
    let at_limit = "é".repeat(64);
    let made = app.create_credential_of("fcm", &[("FriendlyName", &at_limit)]);
    assert_eq!(made["friendly_name"], at_limit.as_str());

    let listed = app.get_raw("/v2/Credentials").expect(200);
    assert_eq!(listed["credentials"].as_array().unwrap().len(), 1);
    app.verify();
}

#[test]
fn each_fault_answers_400_naming_the_field_and_stores_nothing() {
    let app = TestApp::spawn();
    let cert = material::certificate(&ClientCertSpec::new("com.example.chat"));
    let stranger = material::certificate(&ClientCertSpec::new("com.example.chat"));
    let expired = material::certificate(&ClientCertSpec::new("com.example.chat").expired());
    let rsa = RsaTestKey::A.pkcs8_pem();
    let token = |drop: &str| {
        let mut form = Form::default();
        for (name, value) in credential_form("apn").pairs() {
            if name != drop {
                form = form.with(name, value);
            }
        }
        form
    };
    let with_key = |key: &str| token("PrivateKey").with("PrivateKey", key);
    let cases: Vec<(&str, Form, &str)> = vec![
        (
            "a key that does not parse",
            with_key("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----"),
            "PrivateKey",
        ),
        (
            "a token key that is not P-256 (RSA)",
            with_key(rsa),
            "PrivateKey",
        ),
        (
            "a KeyId of 9 characters",
            token("KeyId").with("KeyId", "KEYID1234"),
            "KeyId",
        ),
        (
            "a TeamId of 11 characters",
            token("TeamId").with("TeamId", "TEAMID12345"),
            "TeamId",
        ),
        ("token auth without KeyId", token("KeyId"), "KeyId"),
        ("token auth without TeamId", token("TeamId"), "TeamId"),
        ("token auth without Topic", token("Topic"), "Topic"),
        (
            "token auth without a key",
            token("PrivateKey"),
            "PrivateKey",
        ),
        (
            "a certificate that does not match its key",
            certificate_auth(&cert).with("PrivateKey", &stranger.key_pkcs8_pem),
            "PrivateKey",
        ),
        (
            "a certificate that does not parse",
            Form::default()
                .with("Type", "apn")
                .with(
                    "Certificate",
                    "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----",
                )
                .with("PrivateKey", &cert.key_pkcs8_pem),
            "Certificate",
        ),
        (
            "an expired certificate",
            certificate_auth(&expired),
            "Certificate",
        ),
        (
            "a Certificate with a KeyId",
            certificate_auth(&cert).with("KeyId", material::KEY_ID),
            "KeyId",
        ),
        (
            "an FCM Secret that is not a service account",
            Form::default()
                .with("Type", "fcm")
                .with("Secret", "AAAAlegacy-server-key:APA91bH"),
            "Secret",
        ),
        (
            "a GCM ApiKey that is not a service account",
            Form::default()
                .with("Type", "gcm")
                .with("ApiKey", "AIzaSyLegacyServerKey"),
            "ApiKey",
        ),
        (
            "a service account for an apn credential",
            credential_form("apn").with("ApiKey", "{}"),
            "ApiKey",
        ),
    ];
    let events = log_length(&app);
    for (what, form, field) in &cases {
        let reply = app.post("/v2/Credentials", &form.pairs());
        assert_error(&reply, 400, 20001);
        let message = reply.body["message"].as_str().unwrap();
        assert!(message.contains(field), "{what}: {message}");
        for (name, value) in form.pairs() {
            if ["PrivateKey", "Certificate", "Secret", "ApiKey"].contains(&name) {
                assert!(!message.contains(value), "{what} quotes {name}: {message}");
            }
        }
    }
    assert_eq!(log_length(&app), events, "nothing was stored");
    let listed = app.get_raw("/v2/Credentials").expect(200);
    assert_eq!(listed["credentials"], Value::Array(vec![]));
    app.verify();
}

#[test]
fn fetch_update_and_delete_a_credential() {
    let app = TestApp::spawn();
    // An RSA key, as Apple's push certificates have, so that a renewal can keep it.
    let spec = ClientCertSpec::new("com.example.chat").rsa(RsaTestKey::B);
    let cert = material::certificate(&spec);
    let made = app.create_credential(
        &certificate_auth(&cert)
            .with("FriendlyName", "old")
            .with("Sandbox", "True")
            .pairs(),
    );
    let path = format!("/v2/Credentials/{}", sid(&made));
    let renewed = material::certificate(
        &spec.not_after(cert.not_after + std::time::Duration::from_secs(86_400)),
    );
    let secrets = secret_fragments(&[&cert, &renewed]);

    let fetched = app.get_raw(&path);
    assert_no_secret(&fetched.text, &secrets);
    assert_eq!(fetched.expect(200), made);

    let updated = app.post(
        &path,
        &[
            ("FriendlyName", "new"),
            ("Sandbox", "false"),
            ("Certificate", &renewed.cert_pem),
        ],
    );
    assert_no_secret(&updated.text, &secrets);
    let updated = updated.expect(200);
    assert_eq!(updated["friendly_name"], "new");
    assert_eq!(updated["sandbox"], "False");
    assert_eq!(updated["type"], "apn", "the type stays");
    assert_eq!(updated["sid"], made["sid"]);
    assert_eq!(updated["auth"], "certificate");
    assert_eq!(
        updated["expires"],
        expiry(&renewed).as_str(),
        "the renewal's"
    );
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
fn an_update_is_read_with_what_is_stored_and_one_that_breaks_it_changes_nothing() {
    let app = TestApp::spawn();
    let made = app.create_credential_of("apn", &[("FriendlyName", "ios")]);
    let path = format!("/v2/Credentials/{}", sid(&made));

    // A new topic alone: read with the stored key, key id and team.
    let moved = app
        .post(&path, &[("Topic", "com.example.next")])
        .expect(200);
    assert_eq!(
        profile(&moved),
        ("token".into(), "com.example.next".into(), Value::Null)
    );
    // A name or sandbox alone reads nothing and keeps what the credential pushes with.
    let renamed = app
        .post(&path, &[("FriendlyName", "renamed"), ("Sandbox", "true")])
        .expect(200);
    assert_eq!(profile(&renamed), profile(&moved));

    let cert = material::certificate(&ClientCertSpec::new("com.example.chat"));
    let events = log_length(&app);
    for (form, field) in [
        (vec![("PrivateKey", "junk")], "PrivateKey"),
        (vec![("KeyId", "short")], "KeyId"),
        (vec![("TeamId", "")], "TeamId"),
        (vec![("Topic", "")], "Topic"),
        (
            vec![
                ("Certificate", cert.cert_pem.as_str()),
                ("PrivateKey", cert.key_pkcs8_pem.as_str()),
                ("KeyId", material::KEY_ID),
            ],
            "KeyId",
        ),
        // A certificate alone: the token's .p8 key is not kept for it, so its key is missing.
        (vec![("Certificate", cert.cert_pem.as_str())], "PrivateKey"),
        (vec![("Secret", "{}")], "Secret"),
    ] {
        let reply = app.post(&path, &form);
        assert_error(&reply, 400, 20001);
        let message = reply.body["message"].as_str().unwrap();
        assert!(message.contains(field), "{form:?}: {message}");
    }
    assert_eq!(log_length(&app), events, "nothing was stored");
    assert_eq!(app.get_raw(&path).expect(200), renamed, "unchanged");

    // A whole certificate: the credential switches to certificate auth.
    let switched = app
        .post(
            &path,
            &[
                ("Certificate", &cert.cert_pem),
                ("PrivateKey", &cert.key_pkcs8_pem),
            ],
        )
        .expect(200);
    assert_eq!(switched["auth"], "certificate");
    assert_eq!(
        switched["topic"], "com.example.chat",
        "the certificate's UID"
    );
    assert_eq!(switched["expires"], expiry(&cert).as_str());
    app.verify();
}

#[test]
fn secrets_reach_no_answer_change_feed_or_export_and_the_profile_does() {
    let app = TestApp::spawn();
    let cert = material::certificate(&ClientCertSpec::new("com.example.cert"));
    let secrets = secret_fragments(&[&cert]);
    let token = app.create_credential_of("apn", &[]);
    let certificate = app.create_credential(&certificate_auth(&cert).pairs());
    app.create_credential_of("fcm", &[]);
    app.post(
        &format!("/v2/Credentials/{}", sid(&token)),
        &[("PrivateKey", &material::apns_key().p8_pem())],
    )
    .expect(200);

    let feed = app.get_raw("/v2/Events?PageSize=1000");
    assert_no_secret(&feed.text, &secrets);
    let events = feed.expect(200)["events"].as_array().unwrap().clone();
    let of = |sid: &str, kind: &str| -> Value {
        events
            .iter()
            .find(|e| e["sid"] == sid && e["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} of {sid} in {events:?}"))["data"]
            .clone()
    };
    let created = of(&sid(&certificate), "CredentialCreated");
    assert!(created.get("secrets").is_none(), "{created}");
    assert_eq!(created["profile"]["auth"], "certificate");
    assert_eq!(created["profile"]["topic"], "com.example.cert");
    let rotated = of(&sid(&token), "CredentialUpdated");
    assert!(rotated.get("secrets").is_none(), "{rotated}");
    assert_eq!(rotated["profile"]["topic"], TOPIC);
    assert_eq!(rotated["profile"]["key_id"], material::KEY_ID);

    let exported = exported_events(&app.data_dir());
    let text = serde_json::to_string(&exported).unwrap();
    for fragment in &secrets {
        assert!(!text.contains(fragment.as_str()), "in clear in the export");
    }
    let kinds: Vec<&Value> = exported
        .iter()
        .filter(|e| e["type"] == "CredentialCreated")
        .map(|e| &e["data"]["profile"]["auth"])
        .collect();
    assert_eq!(kinds, ["token", "certificate", "service_account"]);
    app.verify();
}

#[test]
fn another_accounts_credential_is_answered_as_missing() {
    let app = TestApp::spawn();
    let other = app.other_account();
    let theirs = app
        .post_as(&other, "/v2/Credentials", &credential_form("fcm").pairs())
        .expect(201);
    let path = format!("/v2/Credentials/{}", sid(&theirs));
    let missing = format!("/v2/Credentials/CR{}", "0".repeat(32));
    let key = material::service_account("mine").json_string();
    for path in [&path, &missing] {
        assert_error(&app.get_raw(path), 404, 20404);
        assert_error(&app.post(path, &[("FriendlyName", "mine")]), 404, 20404);
        // Secrets for it too: not found, not read against another account's credential.
        assert_error(&app.post(path, &[("Secret", &key)]), 404, 20404);
        assert_error(&app.delete(path), 404, 20404);
    }
    let listed = app.get_raw("/v2/Credentials").expect(200);
    assert_eq!(listed["credentials"].as_array().unwrap().len(), 0);
    let still = app.send_as(&other, "GET", &path, &[], None).expect(200);
    assert_eq!(still, theirs, "untouched by the other account");
    app.verify();
}
