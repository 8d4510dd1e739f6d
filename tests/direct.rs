//! The `direct` transport through the real binary: `bindery serve` pushes to the APNs and FCM
//! stand-ins (crates/standin), real HTTP/2 TLS servers on 127.0.0.1 with a test CA that check
//! what Apple and Google check, answering each row of CONTRACT §6.4 as a test scripts it.

use std::time::Duration;

use bindery_standin::{apns, fcm, Apns, ApnsAuth, ClientCert, ClientCertSpec, Fcm, TestCa};
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::delivery::{chat_service, notify, register, result_for};
use crate::support::{sid, wait_until, ServerLog, TestApp, PATIENCE};

const BUNDLE: &str = "com.example.chat";

/// A server on the direct transport, with the two stand-ins it pushes to.
struct Direct {
    app: TestApp,
    log: ServerLog,
    apns: Apns,
    fcm: Fcm,
    ca: TestCa,
    /// Kept for the CA's files.
    _dir: TempDir,
}

impl Direct {
    fn start() -> Direct {
        Direct::start_with(&[])
    }

    fn start_with(extra: &[(&str, &str)]) -> Direct {
        let dir = TempDir::new().unwrap();
        let ca = TestCa::new(dir.path()).unwrap();
        let apns = Apns::start(&ca, ApnsAuth::Certificate).unwrap();
        let fcm = Fcm::start(&ca).unwrap();
        let (apns_url, fcm_url) = (apns.url(), fcm.url());
        let ca_file = ca.ca_file().display().to_string();
        let mut env = vec![
            ("BINDERY_DELIVERY__TRANSPORT", "direct"),
            ("BINDERY_DELIVERY__APNS__ENDPOINT", apns_url.as_str()),
            (
                "BINDERY_DELIVERY__APNS__SANDBOX_ENDPOINT",
                apns_url.as_str(),
            ),
            ("BINDERY_DELIVERY__FCM__ENDPOINT", fcm_url.as_str()),
            ("BINDERY_DELIVERY__TLS__CA_FILE", ca_file.as_str()),
        ];
        env.extend_from_slice(extra);
        let (app, log) = TestApp::spawn_logged(TempDir::new().unwrap(), &env, None);
        Direct {
            app,
            log,
            apns,
            fcm,
            ca,
            _dir: dir,
        }
    }

    fn client_cert(&self) -> ClientCert {
        self.ca.client_cert(&ClientCertSpec::new(BUNDLE)).unwrap()
    }

    /// An APNs certificate-auth credential; its SID.
    fn apns_credential(&self, cert: &ClientCert) -> String {
        sid(&self.app.create_credential(&[
            ("Type", "apn"),
            ("Certificate", &cert.cert_pem),
            ("PrivateKey", &cert.key_pkcs8_pem),
        ]))
    }

    /// An FCM credential of the stand-in's service account; its SID.
    fn fcm_credential(&self) -> String {
        let account = self.fcm.service_account().json_string();
        sid(&self
            .app
            .create_credential(&[("Type", "fcm"), ("Secret", &account)]))
    }
}

fn status(result: &Value) -> &str {
    result["status"].as_str().unwrap_or_default()
}

#[test]
fn a_notify_reaches_apns_and_fcm_with_every_header_and_body_field() {
    let d = Direct::start();
    let cert = d.client_cert();
    let credential = d.apns_credential(&cert);
    d.fcm_credential();
    // The certificate's end is in the metrics from its creation on.
    let not_after = cert
        .not_after
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert_eq!(
        d.app.metric(
            "bindery_credential_expiry_timestamp_seconds",
            &[("credential", &credential)]
        ),
        not_after
    );
    let service = chat_service(&d.app, "Chat");
    let phone = register(
        &d.app,
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "apns-token-1")],
    );
    let tablet = register(
        &d.app,
        &service,
        "alice",
        &[("BindingType", "fcm"), ("Address", "fcm-token-1")],
    );
    let answer = notify(
        &d.app,
        &service,
        &[
            ("Identity", "alice"),
            ("Body", "hello"),
            ("Title", "From Bob"),
            ("Sound", "ding.caf"),
            ("Priority", "low"),
            ("Ttl", "60"),
            ("Data", r#"{"room": "general", "count": 3, "urgent": true}"#),
        ],
    );
    assert_eq!(status(result_for(&answer, &phone)), "delivered", "{answer}");
    assert_eq!(
        status(result_for(&answer, &tablet)),
        "delivered",
        "{answer}"
    );
    assert_eq!(
        (answer["delivered"].as_u64(), answer["failed"].as_u64()),
        (Some(2), Some(0))
    );

    let pushed = d.apns.pushes_to("apns-token-1");
    assert_eq!(pushed.len(), 1, "{pushed:?}");
    let push = &pushed[0];
    assert_eq!(push.protocol, "h2");
    assert_eq!(push.method, "POST");
    assert_eq!(push.path, "/3/device/apns-token-1");
    assert_eq!(
        push.header("apns-topic"),
        Some(BUNDLE),
        "from the certificate's UID"
    );
    assert_eq!(push.header("apns-push-type"), Some("alert"));
    assert_eq!(push.header("apns-priority"), Some("5"), "Priority=low");
    let expiration: i64 = push.header("apns-expiration").unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (expiration - (now + 60)).abs() <= 5,
        "{expiration} vs {now} + 60"
    );
    assert_eq!(
        push.header("authorization"),
        None,
        "certificate auth has no bearer"
    );
    assert_eq!(push.client_subject.as_deref(), Some(cert.subject.as_str()));
    assert_eq!(
        push.json.as_ref().unwrap(),
        &json!({
            "aps": {"alert": {"title": "From Bob", "body": "hello"}, "sound": "ding.caf"},
            "room": "general", "count": 3, "urgent": true,
        })
    );

    let account = d.fcm.service_account();
    let grants = d.fcm.token_requests();
    assert_eq!(grants.len(), 1, "{grants:?}");
    let assertion = grants[0].jwt.as_ref().expect("the grant's assertion");
    assert_eq!(assertion.claims["iss"], account.client_email.as_str());
    assert_eq!(assertion.claims["aud"], account.token_uri.as_str());
    assert_eq!(
        assertion.claims["scope"],
        "https://www.googleapis.com/auth/firebase.messaging"
    );
    let sent = d.fcm.sends_to("fcm-token-1");
    assert_eq!(sent.len(), 1, "{sent:?}");
    let send = &sent[0];
    assert_eq!(
        send.path,
        format!("/v1/projects/{}/messages:send", account.project_id)
    );
    assert!(send
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer ")));
    assert_eq!(
        send.json.as_ref().unwrap(),
        &json!({"message": {
            "token": "fcm-token-1",
            "notification": {"title": "From Bob", "body": "hello"},
            "data": {"room": "general", "count": "3", "urgent": "true"},
            "android": {"priority": "NORMAL", "ttl": "60s", "notification": {"sound": "ding.caf"}},
        }})
    );
    let secrets_in_log = d
        .log
        .lines()
        .into_iter()
        .filter(|l| l.contains("PRIVATE KEY") || l.contains("apns-token-1"))
        .collect::<Vec<_>>();
    assert!(secrets_in_log.is_empty(), "{secrets_in_log:?}");
}

/// Registers `address` for alice (apn) and notifies her; the answer's result for it.
fn push_once(d: &Direct, service: &str, address: &str) -> (String, Value) {
    let binding = register(
        &d.app,
        service,
        "alice",
        &[("BindingType", "apn"), ("Address", address)],
    );
    let answer = notify(&d.app, service, &[("Identity", "alice"), ("Body", "hi")]);
    let result = result_for(&answer, &binding).clone();
    (binding, result)
}

/// The binding's delivery records, newest first.
fn deliveries(d: &Direct, service: &str, binding: &str) -> Vec<Value> {
    let (code, body) = d.app.get(
        &format!("/v2/Services/{service}/Bindings/{binding}/Deliveries"),
        Some(&d.app.account),
    );
    assert_eq!(code, 200, "{body}");
    body["deliveries"].as_array().cloned().unwrap_or_default()
}

fn binding_exists(d: &Direct, service: &str, binding: &str) -> bool {
    let (code, _) = d.app.get(
        &format!("/v2/Services/{service}/Bindings/{binding}"),
        Some(&d.app.account),
    );
    code == 200
}

#[test]
fn every_apns_answer_has_its_outcome_and_a_dead_token_its_removal_with_the_reason() {
    let d = Direct::start();
    let cert = d.client_cert();
    d.apns_credential(&cert);
    let service = chat_service(&d.app, "Chat");
    let rows: &[(&str, apns::Answer, &str, Option<&str>, bool)] = &[
        ("ok", apns::Answer::Accept, "delivered", None, true),
        (
            "gone",
            apns::Answer::Unregistered,
            "unregistered",
            Some("Unregistered"),
            false,
        ),
        (
            "expired",
            apns::Answer::ExpiredToken,
            "unregistered",
            Some("ExpiredToken"),
            false,
        ),
        (
            "bad",
            apns::Answer::BadDeviceToken,
            "unregistered",
            Some("BadDeviceToken"),
            false,
        ),
        (
            "topic",
            apns::Answer::DeviceTokenNotForTopic,
            "failed",
            Some("DeviceTokenNotForTopic"),
            true,
        ),
        (
            "payload",
            apns::Answer::Other {
                status: 400,
                reason: "PayloadTooLarge".into(),
            },
            "failed",
            Some("PayloadTooLarge"),
            true,
        ),
    ];
    for (address, answer, outcome, error, kept) in rows {
        d.apns.script(address, answer.clone());
        // One device at a time, so each notify's result is this row's.
        let (binding, result) = push_once(&d, &service, address);
        assert_eq!(status(&result), *outcome, "{address}: {result}");
        assert_eq!(result["error"].as_str(), *error, "{address}: {result}");
        assert_eq!(binding_exists(&d, &service, &binding), *kept, "{address}");
        if !kept {
            let history = d
                .app
                .get(
                    &format!("/v2/Services/{service}/Bindings/{binding}/History"),
                    Some(&d.app.account),
                )
                .1;
            let last = history["events"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()
                .clone();
            assert_eq!(last["data"]["reason"], "token_invalid", "{history}");
            assert_eq!(
                last["data"]["provider_reason"].as_str(),
                *error,
                "{history}"
            );
        } else {
            d.app
                .delete(&format!("/v2/Services/{service}/Bindings/{binding}"))
                .expect(204);
        }
    }
    assert_eq!(
        d.app.metric(
            "bindery_push_requests_total",
            &[("provider", "apns"), ("outcome", "unregistered")]
        ),
        3.0
    );
}

#[test]
fn busy_and_failing_providers_are_retried_with_backoff_then_fail() {
    let d = Direct::start();
    let cert = d.client_cert();
    d.apns_credential(&cert);
    let service = chat_service(&d.app, "Chat");
    // Twice too busy (Retry-After: 1), then accepted: the third try delivers.
    d.apns.script(
        "busy",
        bindery_standin::Script::times(
            apns::Answer::TooManyRequests {
                retry_after: Some(1),
            },
            2,
        )
        .then(apns::Answer::Accept),
    );
    let (binding, result) = push_once(&d, &service, "busy");
    assert_eq!(status(&result), "delivered", "{result}");
    assert_eq!(d.apns.pushes_to("busy").len(), 3);
    assert!(binding_exists(&d, &service, &binding));
    let record = &deliveries(&d, &service, &binding)[0];
    assert_eq!(
        (
            &record["status"],
            &record["attempts"],
            &record["provider_status"]
        ),
        (&json!("delivered"), &json!(3), &json!(200)),
        "{record}"
    );
    d.app
        .delete(&format!("/v2/Services/{service}/Bindings/{binding}"))
        .expect(204);
    // Always failing: three tries in all, then failed, and the binding stays.
    d.apns.script(
        "down",
        apns::Answer::InternalServerError { retry_after: None },
    );
    let (binding, result) = push_once(&d, &service, "down");
    assert_eq!(status(&result), "failed", "{result}");
    assert_eq!(result["error"], "InternalServerError", "{result}");
    assert_eq!(d.apns.pushes_to("down").len(), 3);
    assert!(binding_exists(&d, &service, &binding));
    let record = &deliveries(&d, &service, &binding)[0];
    assert_eq!(
        (
            &record["status"],
            &record["attempts"],
            &record["provider_status"]
        ),
        (&json!("failed"), &json!(3), &json!(500)),
        "{record}"
    );
    assert_eq!(record["error"], "InternalServerError", "{record}");
    assert_eq!(
        d.app.metric(
            "bindery_push_requests_total",
            &[("provider", "apns"), ("outcome", "retried")]
        ),
        4.0
    );
}

#[test]
fn pushes_share_one_connection_and_one_oauth_token() {
    let d = Direct::start();
    d.apns_credential(&d.client_cert());
    d.fcm_credential();
    let service = chat_service(&d.app, "Chat");
    for n in 0..5 {
        register(
            &d.app,
            &service,
            &format!("user{n}"),
            &[("BindingType", "apn"), ("Address", &format!("apns-{n}"))],
        );
        register(
            &d.app,
            &service,
            &format!("user{n}"),
            &[("BindingType", "fcm"), ("Address", &format!("fcm-{n}"))],
        );
    }
    for _ in 0..3 {
        let identities: Vec<(&str, String)> =
            (0..5).map(|n| ("Identity", format!("user{n}"))).collect();
        let mut pairs: Vec<(&str, &str)> =
            identities.iter().map(|(k, v)| (*k, v.as_str())).collect();
        pairs.push(("Body", "hi"));
        let answer = notify(&d.app, &service, &pairs);
        assert_eq!(answer["delivered"], 10, "{answer}");
    }
    assert_eq!(d.apns.requests().len(), 15);
    assert_eq!(d.apns.stats().connections, 1, "{:?}", d.apns.stats());
    assert_eq!(d.fcm.sends_to("fcm-0").len(), 3);
    assert_eq!(d.fcm.stats().tokens_issued, 1, "{:?}", d.fcm.stats());
    for provider in ["apns", "fcm"] {
        assert_eq!(
            d.app.metric(
                "bindery_push_connections_opened_total",
                &[("provider", provider)]
            ),
            1.0,
            "{provider}"
        );
    }
}

#[test]
fn the_dead_token_guard_stops_removals_past_its_limit_and_marks_the_credential() {
    let d = Direct::start_with(&[("BINDERY_DELIVERY__GUARD__UNREGISTERED_PER_MINUTE", "2")]);
    let credential = d.apns_credential(&d.client_cert());
    d.apns.script_all(apns::Answer::BadDeviceToken);
    let service = chat_service(&d.app, "Chat");
    let bindings: Vec<String> = (0..4)
        .map(|n| {
            register(
                &d.app,
                &service,
                "alice",
                &[("BindingType", "apn"), ("Address", &format!("sandbox-{n}"))],
            )
        })
        .collect();
    let answer = notify(&d.app, &service, &[("Identity", "alice"), ("Body", "hi")]);
    let statuses: Vec<&str> = bindings
        .iter()
        .map(|b| status(result_for(&answer, b)))
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "unregistered").count(),
        2,
        "{answer}"
    );
    let held: Vec<&Value> = bindings
        .iter()
        .map(|b| result_for(&answer, b))
        .filter(|r| r["error"] == "unregistered_guard")
        .collect();
    assert_eq!(held.len(), 2, "{answer}");
    let kept = bindings
        .iter()
        .filter(|b| binding_exists(&d, &service, b))
        .count();
    assert_eq!(kept, 2);
    assert_eq!(
        d.app
            .metric("bindery_credential_healthy", &[("credential", &credential)]),
        0.0
    );
    let body = d
        .app
        .get(
            &format!("/v2/Credentials/{credential}"),
            Some(&d.app.account),
        )
        .1;
    assert_eq!(body["healthy"], false, "{body}");
    assert!(
        d.log
            .lines()
            .iter()
            .any(|l| l.contains("WARN") && l.contains("unregistered_per_minute")),
        "{:?}",
        d.log.lines()
    );
}

#[test]
fn a_provider_that_hangs_answers_pending_at_the_deadline_and_finishes_later() {
    let d = Direct::start_with(&[("BINDERY_DELIVERY__DEADLINE", "1s")]);
    d.apns_credential(&d.client_cert());
    let service = chat_service(&d.app, "Chat");
    // The first try is held open past the deadline: notify answers pending, the try times
    // out and is made again in the background, and the second answer (a dead token) removes
    // the binding then.
    d.apns.script(
        "slow",
        bindery_standin::Script::sequence([apns::Answer::Hang, apns::Answer::Unregistered]),
    );
    let (binding, result) = push_once(&d, &service, "slow");
    assert_eq!(status(&result), "pending", "{result}");
    assert_eq!(result["error"], Value::Null, "{result}");
    wait_until(PATIENCE, "the pending push removes its dead token", || {
        !binding_exists(&d, &service, &binding)
    });
    assert_eq!(d.apns.pushes_to("slow").len(), 2);
}

#[test]
fn a_connection_closed_mid_stream_is_reopened_and_the_push_tried_again() {
    let d = Direct::start();
    d.apns_credential(&d.client_cert());
    let service = chat_service(&d.app, "Chat");
    d.apns.script(
        "cut",
        bindery_standin::Script::sequence([apns::Answer::CloseConnection, apns::Answer::Accept]),
    );
    let (_, result) = push_once(&d, &service, "cut");
    assert_eq!(status(&result), "delivered", "{result}");
    assert_eq!(d.apns.stats().connections, 2, "{:?}", d.apns.stats());
    // Cut every time: three tries, then failed with what kept the answer from coming.
    d.apns.script("always-cut", apns::Answer::CloseConnection);
    let (binding, result) = push_once(&d, &service, "always-cut");
    assert_eq!(status(&result), "failed", "{result}");
    assert!(
        result["error"]
            .as_str()
            .is_some_and(|e| e.contains("could not be reached")),
        "{result}"
    );
    let record = &deliveries(&d, &service, &binding)[0];
    assert_eq!(
        (&record["attempts"], &record["provider_status"]),
        (&json!(3), &Value::Null),
        "{record}"
    );
}

#[test]
fn fcm_answers_have_their_outcomes_and_a_refused_token_is_renewed_once() {
    let d = Direct::start();
    d.fcm_credential();
    let service = chat_service(&d.app, "Chat");
    let rows: &[(&str, fcm::Answer, &str, Option<&str>, bool)] = &[
        ("ok", fcm::Answer::Accept, "delivered", None, true),
        (
            "gone",
            fcm::Answer::Unregistered,
            "unregistered",
            Some("UNREGISTERED"),
            false,
        ),
        (
            "wrong",
            fcm::Answer::SenderIdMismatch,
            "failed",
            Some("SENDER_ID_MISMATCH"),
            true,
        ),
        (
            "bad",
            fcm::Answer::InvalidArgument,
            "failed",
            Some("INVALID_ARGUMENT"),
            true,
        ),
    ];
    for (address, answer, outcome, error, kept) in rows {
        d.fcm.script(address, answer.clone());
        let binding = register(
            &d.app,
            &service,
            "bob",
            &[("BindingType", "fcm"), ("Address", address)],
        );
        let answer = notify(&d.app, &service, &[("Identity", "bob"), ("Body", "hi")]);
        let result = result_for(&answer, &binding);
        assert_eq!(status(result), *outcome, "{address}: {result}");
        assert_eq!(result["error"].as_str(), *error, "{address}: {result}");
        assert_eq!(binding_exists(&d, &service, &binding), *kept, "{address}");
        if *kept {
            d.app
                .delete(&format!("/v2/Services/{service}/Bindings/{binding}"))
                .expect(204);
        }
    }
    // FCM refuses the access token once: a new one is asked for, and the push goes.
    let issued = d.fcm.stats().tokens_issued;
    d.fcm.script(
        "renew",
        bindery_standin::Script::sequence([fcm::Answer::Unauthenticated, fcm::Answer::Accept]),
    );
    let binding = register(
        &d.app,
        &service,
        "bob",
        &[("BindingType", "fcm"), ("Address", "renew")],
    );
    let answer = notify(&d.app, &service, &[("Identity", "bob"), ("Body", "hi")]);
    assert_eq!(
        status(result_for(&answer, &binding)),
        "delivered",
        "{answer}"
    );
    assert_eq!(d.fcm.stats().tokens_issued, issued + 1);
}

#[test]
fn a_binding_without_its_credential_fails_with_the_reason() {
    let d = Direct::start();
    let service = chat_service(&d.app, "Chat");
    // No APNs credential at all.
    let (_, result) = push_once(&d, &service, "lonely");
    assert_eq!(result["error"], "no credential", "{result}");
    // Two of the kind, and the binding names neither.
    let cert = d.client_cert();
    let first = d.apns_credential(&cert);
    d.apns_credential(&cert);
    let answer = notify(&d.app, &service, &[("Identity", "alice"), ("Body", "hi")]);
    assert!(
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["error"] == "no credential"),
        "{answer}"
    );
    // Naming one pushes through it; once it is deleted, the push says so.
    let named = register(
        &d.app,
        &service,
        "carol",
        &[
            ("BindingType", "apn"),
            ("Address", "named"),
            ("CredentialSid", &first),
        ],
    );
    let answer = notify(&d.app, &service, &[("Identity", "carol"), ("Body", "hi")]);
    assert_eq!(status(result_for(&answer, &named)), "delivered", "{answer}");
    d.app
        .delete(&format!("/v2/Credentials/{first}"))
        .expect(204);
    let answer = notify(&d.app, &service, &[("Identity", "carol"), ("Body", "hi")]);
    let result = result_for(&answer, &named);
    assert_eq!(status(result), "failed", "{answer}");
    assert!(
        result["error"].as_str().unwrap().contains("missing"),
        "{answer}"
    );
}

#[test]
fn a_changed_credential_gets_a_new_client_and_pushes_in_flight_finish_on_the_old() {
    let d = Direct::start();
    let first = d.client_cert();
    let credential = d.apns_credential(&first);
    let service = chat_service(&d.app, "Chat");
    d.apns.script(
        "slowish",
        apns::Answer::Delayed(Duration::from_millis(800), Box::new(apns::Answer::Accept)),
    );
    std::thread::scope(|scope| {
        let pushing = scope.spawn(|| push_once(&d, &service, "slowish"));
        assert!(d.apns.wait_for_requests(1, PATIENCE));
        // While that push is on the wire, the credential gets a new certificate.
        let second = d.client_cert();
        d.app
            .post(
                &format!("/v2/Credentials/{credential}"),
                &[
                    ("Certificate", &second.cert_pem),
                    ("PrivateKey", &second.key_pkcs8_pem),
                ],
            )
            .expect(200);
        let (_, result) = pushing.join().unwrap();
        assert_eq!(status(&result), "delivered", "{result}");
    });
    let answer = notify(
        &d.app,
        &service,
        &[("Identity", "alice"), ("Body", "again")],
    );
    assert_eq!(answer["delivered"], 1, "{answer}");
    let pushes = d.apns.pushes_to("slowish");
    assert_eq!(pushes.len(), 2);
    assert_eq!(pushes[0].client_subject, Some(first.subject.clone()));
    assert_ne!(
        pushes[1].connection, pushes[0].connection,
        "a new client, a new connection"
    );
}

#[test]
fn a_direct_transport_that_cannot_reach_anything_refuses_to_start_naming_the_setting() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("no-such-roots.pem");
    let cases = [
        (
            ("BINDERY_DELIVERY__TLS__CA_FILE", missing.to_str().unwrap()),
            "delivery.tls.ca_file",
        ),
        (
            (
                "BINDERY_DELIVERY__APNS__ENDPOINT",
                "http://api.push.apple.com",
            ),
            "delivery.apns.endpoint",
        ),
        (
            ("BINDERY_DELIVERY__FCM__ENDPOINT", "fcm.googleapis.com"),
            "delivery.fcm.endpoint",
        ),
    ];
    for ((name, value), key) in cases {
        let data = TempDir::new().unwrap();
        let output = crate::support::command(crate::support::BINARY)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .envs([("BINDERY_DELIVERY__TRANSPORT", "direct"), (name, value)])
            .output()
            .expect("bindery runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{name}={value} started");
        assert!(stderr.contains(key), "{name}={value}: {stderr}");
        assert!(
            !data.path().join("bindery.db").exists(),
            "a refused start created a database"
        );
    }
}

#[test]
fn the_dashboards_push_panels_read_what_a_direct_server_serves() {
    use crate::metrics::{fetch, is_push_metric, panel_expressions, repository, samples};
    let d = Direct::start();
    d.apns_credential(&d.client_cert());
    d.fcm_credential();
    let service = chat_service(&d.app, "Chat");
    d.apns.script(
        "busy",
        apns::Answer::TooManyRequests {
            retry_after: Some(0),
        }
        .once(),
    );
    for (kind, address) in [("apn", "busy"), ("fcm", "fcm-device")] {
        register(
            &d.app,
            &service,
            "alice",
            &[("BindingType", kind), ("Address", address)],
        );
    }
    let answer = notify(&d.app, &service, &[("Identity", "alice"), ("Body", "hi")]);
    assert_eq!(answer["delivered"], 2, "{answer}");

    let path = repository().join("config/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let (_, _, text) = fetch(&d.app.url("/metrics"));
    let served: std::collections::BTreeSet<String> = samples(&text)
        .into_iter()
        .map(|(name, _, _)| name)
        .collect();
    let mut used = std::collections::BTreeSet::new();
    for (title, expr) in panel_expressions(&dashboard) {
        for name in crate::support::promql::metric_names(&expr) {
            if is_push_metric(&name) {
                assert!(
                    served.contains(&name),
                    "{title:?} reads {name}, not served: {expr}"
                );
                used.insert(name);
            }
        }
    }
    for family in [
        "bindery_push_requests_total",
        "bindery_push_duration_seconds_bucket",
        "bindery_push_inflight",
        "bindery_push_connections_opened_total",
        "bindery_credential_healthy",
        "bindery_credential_expiry_timestamp_seconds",
    ] {
        assert!(used.contains(family), "no panel shows {family}: {used:?}");
    }
}

#[test]
fn a_credential_deleted_while_its_push_is_in_flight_lets_it_finish_and_fails_the_next() {
    let d = Direct::start();
    let credential = d.apns_credential(&d.client_cert());
    let service = chat_service(&d.app, "Chat");
    d.apns.script(
        "held",
        apns::Answer::Delayed(Duration::from_millis(800), Box::new(apns::Answer::Accept)),
    );
    std::thread::scope(|scope| {
        let pushing = scope.spawn(|| push_once(&d, &service, "held"));
        assert!(d.apns.wait_for_requests(1, PATIENCE));
        d.app
            .delete(&format!("/v2/Credentials/{credential}"))
            .expect(204);
        let (_, result) = pushing.join().unwrap();
        assert_eq!(status(&result), "delivered", "{result}");
    });
    let answer = notify(
        &d.app,
        &service,
        &[("Identity", "alice"), ("Body", "again")],
    );
    assert_eq!(answer["failed"], 1, "{answer}");
    assert_eq!(answer["results"][0]["error"], "no credential", "{answer}");
    assert_eq!(d.apns.pushes_to("held").len(), 1);
}

#[test]
fn a_pending_push_that_ends_delivered_updates_its_record_in_place() {
    let d = Direct::start_with(&[("BINDERY_DELIVERY__DEADLINE", "1s")]);
    d.apns_credential(&d.client_cert());
    let service = chat_service(&d.app, "Chat");
    d.apns.script("late", apns::Answer::Hang.once());
    let (binding, result) = push_once(&d, &service, "late");
    assert_eq!(status(&result), "pending", "{result}");
    let first = deliveries(&d, &service, &binding);
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["status"], "pending", "{first:?}");
    wait_until(PATIENCE, "the pending record ends delivered", || {
        deliveries(&d, &service, &binding)[0]["status"] == "delivered"
    });
    let last = deliveries(&d, &service, &binding);
    assert_eq!(last.len(), 1, "updated in place: {last:?}");
    assert_eq!(last[0]["notification_sid"], first[0]["notification_sid"]);
    assert_eq!(last[0]["attempts"], 2, "{last:?}");
    assert_eq!(last[0]["provider_status"], 200, "{last:?}");
}

#[test]
fn a_hung_provider_holds_only_its_own_credentials_places() {
    // Two places per credential, four in all: six APNs pushes that hang take APNs's two,
    // and FCM's pushes still find theirs.
    let d = Direct::start_with(&[
        ("BINDERY_DELIVERY__DEADLINE", "2s"),
        ("BINDERY_DELIVERY__IN_FLIGHT", "4"),
        ("BINDERY_DELIVERY__IN_FLIGHT_PER_CREDENTIAL", "2"),
    ]);
    d.apns_credential(&d.client_cert());
    d.fcm_credential();
    d.apns.script_all(apns::Answer::Hang);
    let service = chat_service(&d.app, "Chat");
    let mut apns_bindings = Vec::new();
    for n in 0..6 {
        apns_bindings.push(register(
            &d.app,
            &service,
            "alice",
            &[("BindingType", "apn"), ("Address", &format!("hung-{n}"))],
        ));
    }
    let fcm_bindings: Vec<String> = (0..2)
        .map(|n| {
            register(
                &d.app,
                &service,
                "alice",
                &[("BindingType", "fcm"), ("Address", &format!("quick-{n}"))],
            )
        })
        .collect();
    let answer = notify(&d.app, &service, &[("Identity", "alice"), ("Body", "hi")]);
    for binding in &fcm_bindings {
        assert_eq!(
            status(result_for(&answer, binding)),
            "delivered",
            "{answer}"
        );
    }
    for binding in &apns_bindings {
        assert_eq!(status(result_for(&answer, binding)), "pending", "{answer}");
    }
    assert_eq!(answer["pending"], 6, "{answer}");
    // Never more than two on APNs's wire at once.
    assert!(
        d.apns.stats().max_concurrent_streams <= 2,
        "{:?}",
        d.apns.stats()
    );
}

/// A server on the direct transport with an APNs stand-in that takes token auth, and a
/// token-auth credential of `key` for `TOPIC`.
fn token_auth() -> (TestApp, Apns, ServerLog, TempDir) {
    let dir = TempDir::new().unwrap();
    let ca = TestCa::new(dir.path()).unwrap();
    let key = bindery_standin::ApnsKey::generate("KEYID12345", "TEAMID1234").unwrap();
    let apns = Apns::start(&ca, ApnsAuth::token(&key)).unwrap();
    let (url, ca_file) = (apns.url(), ca.ca_file().display().to_string());
    let (app, log) = TestApp::spawn_logged(
        TempDir::new().unwrap(),
        &[
            ("BINDERY_DELIVERY__TRANSPORT", "direct"),
            ("BINDERY_DELIVERY__APNS__ENDPOINT", url.as_str()),
            ("BINDERY_DELIVERY__APNS__SANDBOX_ENDPOINT", url.as_str()),
            ("BINDERY_DELIVERY__TLS__CA_FILE", ca_file.as_str()),
            // Everything Bindery logs, so that a token in any line would show.
            ("RUST_LOG", "debug"),
        ],
        None,
    );
    app.create_credential(&[
        ("Type", "apn"),
        ("PrivateKey", &key.p8_pem()),
        ("KeyId", "KEYID12345"),
        ("TeamId", "TEAMID1234"),
        ("Topic", BUNDLE),
    ]);
    (app, apns, log, dir)
}

#[test]
fn token_auth_signs_one_es256_jwt_and_reuses_it() {
    let (app, apns, log, _dir) = token_auth();
    let service = chat_service(&app, "Chat");
    for n in 0..3 {
        register(
            &app,
            &service,
            "alice",
            &[("BindingType", "apn"), ("Address", &format!("device-{n}"))],
        );
    }
    for _ in 0..2 {
        let answer = notify(&app, &service, &[("Identity", "alice"), ("Body", "hi")]);
        assert_eq!(answer["delivered"], 3, "{answer}");
    }
    let pushes = apns.requests();
    assert_eq!(pushes.len(), 6);
    let bearer = pushes[0].header("authorization").unwrap().to_owned();
    assert!(bearer.starts_with("bearer "), "{bearer}");
    assert!(
        pushes
            .iter()
            .all(|p| p.header("authorization") == Some(&bearer)),
        "one provider token for every push"
    );
    let jwt = pushes[0].jwt.as_ref().expect("the provider token");
    assert_eq!(jwt.header["alg"], "ES256");
    assert_eq!(jwt.header["kid"], "KEYID12345");
    assert_eq!(jwt.claims["iss"], "TEAMID1234");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let iat = jwt.claims["iat"].as_i64().unwrap();
    assert!((now - iat).abs() < 300, "iat {iat}, now {now}");
    assert_eq!(pushes[0].header("apns-topic"), Some(BUNDLE));
    assert_eq!(pushes[0].client_subject, None);
    assert_eq!(apns.stats().connections, 1);
    // Neither the provider token nor the key is in the log, even at debug.
    let token = bearer.trim_start_matches("bearer ");
    let leaked: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|l| l.contains(token) || l.contains("PRIVATE KEY"))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
}

#[test]
fn a_refused_provider_token_is_replaced_once_then_the_push_fails() {
    let (app, apns, _log, _dir) = token_auth();
    let service = chat_service(&app, "Chat");
    let binding = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "stale")],
    );
    // Refused once: a new token is signed and the push goes.
    apns.script("stale", apns::Answer::ExpiredProviderToken.once());
    let answer = notify(&app, &service, &[("Identity", "alice"), ("Body", "hi")]);
    assert_eq!(
        status(result_for(&answer, &binding)),
        "delivered",
        "{answer}"
    );
    let pushes = apns.pushes_to("stale");
    assert_eq!(pushes.len(), 2);
    assert_ne!(
        pushes[0].header("authorization"),
        pushes[1].header("authorization"),
        "the second try carries a new token"
    );
    // Refused every time: the new token once, then failed; the binding stays and the
    // credential is unhealthy.
    apns.script("stale", apns::Answer::InvalidProviderToken);
    let answer = notify(&app, &service, &[("Identity", "alice"), ("Body", "hi")]);
    let result = result_for(&answer, &binding);
    assert_eq!(status(result), "failed", "{answer}");
    assert_eq!(result["error"], "InvalidProviderToken", "{answer}");
    assert_eq!(apns.pushes_to("stale").len(), 4);
    let credentials = app.get("/v2/Credentials", Some(&app.account)).1;
    assert_eq!(
        credentials["credentials"][0]["healthy"], false,
        "{credentials}"
    );
    assert_eq!(
        credentials["credentials"][0]["auth"], "token",
        "{credentials}"
    );
    // Mended (an update), it is healthy again.
    let sid = credentials["credentials"][0]["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    app.post(
        &format!("/v2/Credentials/{sid}"),
        &[("FriendlyName", "mended")],
    )
    .expect(200);
    let fetched = app
        .get(&format!("/v2/Credentials/{sid}"), Some(&app.account))
        .1;
    assert_eq!(fetched["healthy"], true, "{fetched}");
}

#[test]
fn a_certificates_expiry_is_in_the_metrics_again_after_a_restart() {
    let d = Direct::start();
    let cert = d.client_cert();
    let credential = d.apns_credential(&cert);
    let expiry = |app: &TestApp| {
        app.metric(
            "bindery_credential_expiry_timestamp_seconds",
            &[("credential", &credential)],
        )
    };
    let before = expiry(&d.app);
    assert!(before > 0.0);
    let Direct { app, .. } = d;
    app.terminate();
    let mut app = app;
    assert!(app.wait_for_exit(PATIENCE).is_some_and(|s| s.success()));
    let (dir, account) = app.into_dir_and_account();
    // On the log transport this time: the gauge is the registry's, not the sender's.
    let (app, _log) = TestApp::spawn_logged(dir, &[], Some(account));
    assert_eq!(expiry(&app), before);
    // Gone with the credential.
    app.delete(&format!("/v2/Credentials/{credential}"))
        .expect(204);
    assert_eq!(expiry(&app), 0.0);
}
