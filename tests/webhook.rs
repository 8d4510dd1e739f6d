//! The `webhook` transport against a sender played by the test: a small HTTP/1.1 server on
//! 127.0.0.1 that records every request and answers as each test scripts it (by the push's
//! `address`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use crate::delivery::{chat_service, notify, register, result_for, sorted, targeted, DELIVERIES};
use crate::support::{serve_until_exit, sid, wait_until, TestApp, PATIENCE};

/// What the sender answers to one push: status and JSON body.
type Script = dyn Fn(&Value) -> (u16, &'static str) + Send + Sync;

/// One request the sender received.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    method: String,
    path: String,
    content_type: String,
    /// `X-Bindery-Signature`, when the push was signed.
    signature: Option<String>,
    text: String,
    body: Value,
}

/// The sender: a listener thread and one thread per connection; stopped when dropped.
pub(crate) struct Sender {
    url: String,
    address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sender {
    fn start(script: impl Fn(&Value) -> (u16, &'static str) + Send + Sync + 'static) -> Sender {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port on 127.0.0.1");
        let address = listener.local_addr().expect("the sender's address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let thread = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (script, received) = (script.clone(), received.clone());
                    std::thread::spawn(move || {
                        if let Err(e) = answer(stream, &*script, &received) {
                            eprintln!("the test sender failed on a connection: {e}");
                        }
                    });
                }
            })
        };
        Sender {
            url: format!("http://{address}/push"),
            address,
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("the sender's lock").clone()
    }

    /// The pushes received for this device token.
    pub(crate) fn to(&self, address: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.body["address"] == address)
            .collect()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the listener thread so that it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one request (Content-Length or chunked body), records it, answers as scripted and
/// closes the connection.
fn answer(
    mut stream: TcpStream,
    script: &Script,
    received: &Mutex<Vec<Received>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(()); // The listener's wake-up connection.
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let bytes = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut bytes = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            bytes.extend_from_slice(&chunk[..size]);
        }
        bytes
    } else {
        let length = header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut bytes = vec![0; length];
        reader.read_exact(&mut bytes)?;
        bytes
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    let (status, reply) = script(&body);
    received.lock().expect("the sender's lock").push(Received {
        method,
        path,
        content_type: header("content-type").unwrap_or_default(),
        signature: header("x-bindery-signature"),
        text,
        body,
    });
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        410 => "Gone",
        500 => "Internal Server Error",
        _ => "Whatever",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    )?;
    stream.flush()
}

/// The sender answers 200 `{"ok":true}` unless the push's address is one of `special`.
pub(crate) fn scripted(special: &'static [(&'static str, u16, &'static str)]) -> Sender {
    Sender::start(move |push| {
        special
            .iter()
            .find(|(address, _, _)| push["address"] == *address)
            .map(|(_, status, body)| (*status, *body))
            .unwrap_or((200, r#"{"ok":true}"#))
    })
}

/// Bindery sending to `sender`, retrying twice.
pub(crate) fn spawn_for(sender: &Sender) -> TestApp {
    TestApp::spawn_with_env(&[
        ("BINDERY_DELIVERY__TRANSPORT", "webhook"),
        ("BINDERY_DELIVERY__WEBHOOK__URL", &sender.url),
        ("BINDERY_DELIVERY__WEBHOOK__RETRIES", "2"),
        ("BINDERY_DELIVERY__WEBHOOK__TIMEOUT", "2s"),
    ])
}

fn history_types(app: &TestApp, service: &str, binding: &str) -> Vec<Value> {
    app.get_raw(&format!(
        "/v2/Services/{service}/Bindings/{binding}/History"
    ))
    .expect(200)["events"]
        .as_array()
        .expect("events")
        .clone()
}

#[test]
fn each_push_is_posted_as_json_and_counted_delivered() {
    let sender = scripted(&[]);
    let app = spawn_for(&sender);
    let service = chat_service(&app, "Team Chat");
    let credential = sid(&app.create_credential_of("fcm", &[("FriendlyName", "android")]));
    let alice_phone = register(
        &app,
        &service,
        "alice",
        &[
            ("BindingType", "fcm"),
            ("Address", "alice-fcm-token"),
            ("CredentialSid", &credential),
        ],
    );
    let alice_laptop = register(
        &app,
        &service,
        "alice",
        &[
            ("BindingType", "apn"),
            ("Address", "alice-apn-token"),
            ("Endpoint", "alice-laptop"),
        ],
    );
    let bob_phone = register(
        &app,
        &service,
        "bob",
        &[("BindingType", "gcm"), ("Address", "bob-gcm-token")],
    );
    let delivered = [("transport", "webhook"), ("outcome", "delivered")];
    let before = app.metric(DELIVERIES, &delivered);

    let answer = notify(
        &app,
        &service,
        &[
            ("Identity", "alice"),
            ("Identity", "bob"),
            ("Title", "Standup"),
            ("Body", "starts in 5 minutes"),
            ("Sound", "ding.caf"),
            ("Data", r#"{"channel":"general","unread":3}"#),
        ],
    );
    assert_eq!(
        (
            &answer["enabled"],
            &answer["targeted"],
            &answer["delivered"],
            &answer["failed"]
        ),
        (&true.into(), &3.into(), &3.into(), &0.into()),
        "{answer}"
    );
    assert_eq!(
        targeted(&answer),
        sorted(&[&alice_phone, &alice_laptop, &bob_phone])
    );
    for binding in [&alice_phone, &alice_laptop, &bob_phone] {
        let result = result_for(&answer, binding);
        assert_eq!(result["status"], "delivered", "{answer}");
        assert_eq!(result["error"], Value::Null, "{answer}");
    }

    let received = sender.received();
    assert_eq!(received.len(), 3, "one POST per binding: {received:#?}");
    for request in &received {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/push")
        );
        assert!(
            request.content_type.starts_with("application/json"),
            "{request:?}"
        );
        assert!(
            request.body.is_object(),
            "not a JSON object: {}",
            request.text
        );
    }
    for (binding, binding_type, address, identity, credential_sid) in [
        (
            &alice_phone,
            "fcm",
            "alice-fcm-token",
            "alice",
            json!(credential),
        ),
        (
            &alice_laptop,
            "apn",
            "alice-apn-token",
            "alice",
            Value::Null,
        ),
        (&bob_phone, "gcm", "bob-gcm-token", "bob", Value::Null),
    ] {
        let pushes = sender.to(address);
        assert_eq!(pushes.len(), 1, "one push to {address}: {received:#?}");
        let push = &pushes[0].body;
        assert_eq!(push["binding_sid"], binding.as_str(), "{push}");
        assert_eq!(push["binding_type"], binding_type, "{push}");
        assert_eq!(push["credential_sid"], credential_sid, "{push}");
        assert_eq!(push["identity"], identity, "{push}");
        assert_eq!(push["service_sid"], service.as_str(), "{push}");
        assert_eq!(push["type"], "new_message", "{push}");
        assert_eq!(push["title"], "Standup", "{push}");
        assert_eq!(push["body"], "starts in 5 minutes", "{push}");
        assert_eq!(push["sound"], "ding.caf", "{push}");
        assert_eq!(
            push["data"],
            json!({"channel": "general", "unread": 3}),
            "{push}"
        );
    }
    assert_eq!(app.metric(DELIVERIES, &delivered), before + 3.0);

    // Without Body the service's template is rendered; without Title the push carries the
    // service's friendly name; without Data, no data.
    let answer = notify(
        &app,
        &service,
        &[
            ("Identity", "bob"),
            ("Variables.USER", "alice"),
            ("Variables.MESSAGE", "are you coming?"),
        ],
    );
    assert_eq!(
        (&answer["targeted"], &answer["delivered"]),
        (&1.into(), &1.into()),
        "{answer}"
    );
    let pushes = sender.to("bob-gcm-token");
    assert_eq!(pushes.len(), 2, "{pushes:#?}");
    let push = &pushes[1].body;
    assert_eq!(push["body"], "alice: are you coming?", "{push}");
    assert_eq!(push["title"], "Team Chat", "{push}");
    assert_eq!(push["data"], Value::Null, "{push}");
    assert_eq!(app.metric(DELIVERIES, &delivered), before + 4.0);
    app.verify();
}

#[test]
fn a_410_or_an_unregistered_verdict_removes_the_binding_as_token_invalid() {
    let sender = scripted(&[
        ("gone-token", 410, r#"{"error":"gone"}"#),
        ("verdict-token", 200, r#"{"verdict":"unregistered"}"#),
    ]);
    let app = spawn_for(&sender);
    let service = chat_service(&app, "Chat");
    let gone = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "gone-token")],
    );
    let verdict = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "fcm"), ("Address", "verdict-token")],
    );
    let alive = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "gcm"), ("Address", "alive-token")],
    );
    let unregistered = [("transport", "webhook"), ("outcome", "unregistered")];
    let before = app.metric(DELIVERIES, &unregistered);

    let answer = notify(&app, &service, &[("Identity", "alice"), ("Body", "hi")]);
    assert_eq!(
        (&answer["targeted"], &answer["delivered"], &answer["failed"]),
        (&3.into(), &1.into(), &2.into()),
        "{answer}"
    );
    assert_eq!(
        result_for(&answer, &alive)["status"],
        "delivered",
        "{answer}"
    );
    for binding in [&gone, &verdict] {
        let result = result_for(&answer, binding);
        assert_eq!(result["status"], "unregistered", "{answer}");
        assert!(
            result["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{answer}"
        );
    }
    assert_eq!(sender.to("gone-token").len(), 1, "a 410 is not retried");
    assert_eq!(sender.to("verdict-token").len(), 1);
    assert_eq!(app.metric(DELIVERIES, &unregistered), before + 2.0);

    assert_eq!(
        app.user_binding_sids(&service, "alice"),
        vec![alive.clone()]
    );
    for binding in [&gone, &verdict] {
        let events = history_types(&app, &service, binding);
        let types: Vec<&str> = events
            .iter()
            .map(|e| e["type"].as_str().expect("type"))
            .collect();
        assert_eq!(
            types,
            ["BindingRegistered", "BindingDeleted"],
            "{events:#?}"
        );
        assert_eq!(events[1]["data"]["reason"], "token_invalid", "{events:#?}");
        assert_eq!(events[1]["sid"], binding.as_str(), "{events:#?}");
    }

    // The next notify targets only the device left.
    let answer = notify(&app, &service, &[("Identity", "alice"), ("Body", "again")]);
    assert_eq!(targeted(&answer), vec![alive.clone()], "{answer}");
    assert_eq!(sender.to("gone-token").len(), 1);
    app.verify();
}

#[test]
fn a_500_is_retried_then_failed_and_a_400_fails_at_once_and_both_bindings_stay() {
    let sender = scripted(&[
        ("flaky-token", 500, r#"{"error":"down"}"#),
        ("refused-token", 400, r#"{"error":"bad request"}"#),
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
        "bob",
        &[("BindingType", "fcm"), ("Address", "refused-token")],
    );
    let failed = [("transport", "webhook"), ("outcome", "failed")];
    let before = app.metric(DELIVERIES, &failed);

    let answer = notify(
        &app,
        &service,
        &[("Identity", "alice"), ("Identity", "bob"), ("Body", "hi")],
    );
    assert_eq!(
        (&answer["targeted"], &answer["delivered"], &answer["failed"]),
        (&2.into(), &0.into(), &2.into()),
        "{answer}"
    );
    let flaky_result = result_for(&answer, &flaky);
    assert_eq!(flaky_result["status"], "failed", "{answer}");
    assert!(
        flaky_result["error"]
            .as_str()
            .is_some_and(|e| e.contains("500")),
        "{answer}"
    );
    let refused_result = result_for(&answer, &refused);
    assert_eq!(refused_result["status"], "failed", "{answer}");
    assert!(
        refused_result["error"]
            .as_str()
            .is_some_and(|e| e.contains("400")),
        "{answer}"
    );
    assert_eq!(
        sender.to("flaky-token").len(),
        3,
        "a 500 is tried 1 + retries (2) times"
    );
    assert_eq!(sender.to("refused-token").len(), 1, "a 400 is not retried");
    assert_eq!(app.metric(DELIVERIES, &failed), before + 2.0);

    assert_eq!(
        app.user_binding_sids(&service, "alice"),
        vec![flaky.clone()]
    );
    assert_eq!(
        app.user_binding_sids(&service, "bob"),
        vec![refused.clone()]
    );
    for binding in [&flaky, &refused] {
        let events = history_types(&app, &service, binding);
        let types: Vec<&str> = events
            .iter()
            .map(|e| e["type"].as_str().expect("type"))
            .collect();
        assert_eq!(types, ["BindingRegistered"], "{events:#?}");
    }
    app.verify();
}

#[test]
fn only_bindings_taking_the_type_are_targeted_and_only_where_the_service_enables_it() {
    let sender = scripted(&[]);
    let app = spawn_for(&sender);
    let service = chat_service(&app, "Chat");
    let messages = register(
        &app,
        &service,
        "alice",
        &[
            ("BindingType", "apn"),
            ("Address", "messages-token"),
            ("MessageTypes", "new_message"),
            ("MessageTypes", "added_to_channel"),
        ],
    );
    register(
        &app,
        &service,
        "alice",
        &[
            ("BindingType", "fcm"),
            ("Address", "invites-token"),
            ("MessageTypes", "invited_to_channel"),
        ],
    );

    let answer = notify(
        &app,
        &service,
        &[
            ("Identity", "alice"),
            ("Type", "new_message"),
            ("Body", "hi"),
        ],
    );
    assert_eq!(answer["enabled"], true, "{answer}");
    assert_eq!(targeted(&answer), vec![messages.clone()], "{answer}");
    assert_eq!(answer["delivered"], 1, "{answer}");
    assert_eq!(sender.to("messages-token").len(), 1);
    assert!(sender.to("invites-token").is_empty());

    // The service does not enable invited_to_channel: nobody is targeted, though a binding
    // takes that type.
    let answer = notify(
        &app,
        &service,
        &[
            ("Identity", "alice"),
            ("Type", "invited_to_channel"),
            ("Body", "join us"),
        ],
    );
    assert_eq!(answer["type"], "invited_to_channel", "{answer}");
    assert_eq!(
        (&answer["enabled"], &answer["targeted"], &answer["results"]),
        (&false.into(), &0.into(), &json!([])),
        "{answer}"
    );

    // A service that enables nothing (the default) targets nobody.
    let quiet = sid(&app.create_service("Quiet"));
    register(
        &app,
        &quiet,
        "alice",
        &[("BindingType", "apn"), ("Address", "quiet-token")],
    );
    let answer = notify(&app, &quiet, &[("Identity", "alice"), ("Body", "hi")]);
    assert_eq!(
        (
            &answer["enabled"],
            &answer["targeted"],
            &answer["delivered"]
        ),
        (&false.into(), &0.into(), &0.into()),
        "{answer}"
    );
    assert_eq!(sender.received().len(), 1, "{:#?}", sender.received());
    app.verify();
}

#[test]
fn a_binding_whose_credential_was_deleted_fails_without_calling_the_sender() {
    let sender = scripted(&[]);
    let app = spawn_for(&sender);
    let service = chat_service(&app, "Chat");
    let credential = sid(&app.create_credential_of("fcm", &[("FriendlyName", "old")]));
    let orphan = register(
        &app,
        &service,
        "alice",
        &[
            ("BindingType", "fcm"),
            ("Address", "orphan-token"),
            ("CredentialSid", &credential),
        ],
    );
    let plain = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "plain-token")],
    );
    let deleted = app.delete(&format!("/v2/Credentials/{credential}"));
    assert_eq!(deleted.status, 204, "{}", deleted.text);

    let answer = notify(&app, &service, &[("Identity", "alice"), ("Body", "hi")]);
    assert_eq!(
        (&answer["targeted"], &answer["delivered"], &answer["failed"]),
        (&2.into(), &1.into(), &1.into()),
        "{answer}"
    );
    assert_eq!(result_for(&answer, &plain)["status"], "delivered");
    let result = result_for(&answer, &orphan);
    assert_eq!(result["status"], "failed", "{answer}");
    let error = result["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&credential) && error.contains("missing"),
        "the error names the missing credential: {answer}"
    );
    assert!(
        sender.to("orphan-token").is_empty(),
        "{:#?}",
        sender.received()
    );
    assert_eq!(sender.to("plain-token").len(), 1);
    // A failure is not feedback: the binding stays.
    let mut left = app.user_binding_sids(&service, "alice");
    left.sort();
    assert_eq!(left, sorted(&[&orphan, &plain]));
    app.verify();
}

#[test]
fn the_webhook_transport_without_an_http_url_refuses_to_start() {
    for (env, naming) in [
        (
            vec![("BINDERY_DELIVERY__TRANSPORT", "webhook")],
            "delivery.webhook.url",
        ),
        (
            vec![
                ("BINDERY_DELIVERY__TRANSPORT", "webhook"),
                ("BINDERY_DELIVERY__WEBHOOK__URL", "ftp://127.0.0.1/push"),
            ],
            "delivery.webhook.url",
        ),
    ] {
        let refused = serve_until_exit(
            &env,
            &["BINDERY_DELIVERY__WEBHOOK__URL"],
            Duration::from_secs(20),
        );
        assert!(
            !refused.status.success(),
            "{env:?}: {:?}\n{}",
            refused.status,
            refused.stderr
        );
        assert!(
            refused.stderr.contains(naming),
            "{env:?}: the error names {naming}:\n{}",
            refused.stderr
        );
        assert!(
            !refused.stderr.contains("listening on"),
            "{}",
            refused.stderr
        );
        // Refused before anything was written: there is no log to verify.
        assert!(
            !refused.dir.path().join("bindery.db").exists(),
            "a refused start wrote a database"
        );
    }
}

/// The URL's secrets, and the URL itself, must reach neither an answer nor a log line: ureq's
/// own errors print the URL.
#[test]
fn the_webhook_url_and_its_secrets_reach_no_answer_and_no_log_line() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let failing = scripted(&[("down-token", 500, r#"{"error":"down"}"#)]);
    let cases = [
        // Nothing listens there: a transport error, whose text names the URL.
        (
            format!("http://hook-user:pass-s3cret@{closed}/push?token=tok-s3cret"),
            "could not be reached",
        ),
        // The sender answers 500 every time.
        (
            format!(
                "http://hook-user:pass-s3cret@{}/push?token=tok-s3cret",
                failing.address
            ),
            "answered 500",
        ),
    ];
    for (url, expected) in cases {
        let env = [
            ("BINDERY_DELIVERY__TRANSPORT", "webhook"),
            ("BINDERY_DELIVERY__WEBHOOK__URL", url.as_str()),
            ("BINDERY_DELIVERY__WEBHOOK__RETRIES", "1"),
            ("BINDERY_DELIVERY__WEBHOOK__TIMEOUT", "2s"),
        ];
        let (app, log) = TestApp::spawn_logged(tempfile::TempDir::new().unwrap(), &env, None);
        let service = chat_service(&app, "Chat");
        let binding = register(
            &app,
            &service,
            "alice",
            &[("BindingType", "apn"), ("Address", "down-token")],
        );
        let answer = notify(&app, &service, &[("Identity", "alice"), ("Body", "hi")]);
        let result = result_for(&answer, &binding);
        assert_eq!(result["status"], "failed", "{answer}");
        let error = result["error"].as_str().expect("an error text");
        assert!(error.contains(expected), "{error}");
        assert!(app.stop().success());
        log.wait_closed();
        let text = answer.to_string();
        let lines = log.lines().join("\n");
        for secret in ["pass-s3cret", "tok-s3cret", "hook-user", "/push"] {
            assert!(!text.contains(secret), "{secret} in the answer: {text}");
            assert!(!lines.contains(secret), "{secret} in the log:\n{lines}");
        }
    }
}

/// A sender's answer is read up to a limit: a verdict buried past it is no verdict, and the
/// binding stays.
#[test]
fn a_senders_answer_is_read_only_up_to_a_limit() {
    let padded: &'static str = Box::leak(
        format!(
            r#"{{"verdict":"unregistered","padding":"{}"}}"#,
            "x".repeat(1024 * 1024)
        )
        .into_boxed_str(),
    );
    let short = r#"{"verdict":"unregistered"}"#;
    let sender = Sender::start(move |push| {
        if push["address"] == "huge-answer-token" {
            (200, padded)
        } else {
            (200, short)
        }
    });
    let app = spawn_for(&sender);
    let service = chat_service(&app, "Chat");
    let huge = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "huge-answer-token")],
    );
    let small = register(
        &app,
        &service,
        "bob",
        &[("BindingType", "apn"), ("Address", "small-answer-token")],
    );
    let answer = notify(
        &app,
        &service,
        &[("Identity", "alice"), ("Identity", "bob"), ("Body", "hi")],
    );
    assert_eq!(
        result_for(&answer, &huge)["status"],
        "delivered",
        "{answer}"
    );
    assert_eq!(
        result_for(&answer, &small)["status"],
        "unregistered",
        "{answer}"
    );
    assert_eq!(app.user_binding_sids(&service, "alice"), vec![huge]);
    assert!(app.user_binding_sids(&service, "bob").is_empty());
    app.verify();
}

/// A notify hands the dispatchers as many pushes at once as they have threads (4 by default),
/// not one per binding: the rest wait in the request, not in the dispatchers' mailbox.
#[test]
fn a_large_fan_out_hands_the_dispatchers_a_bounded_number_of_pushes_at_once() {
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let entered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sender = {
        let (gate, entered) = (gate.clone(), entered.clone());
        Sender::start(move |_| {
            entered.fetch_add(1, Ordering::SeqCst);
            let (open, opened) = &*gate;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
            (200, r#"{"ok":true}"#)
        })
    };
    let app = TestApp::spawn_with_env(&[
        ("BINDERY_DELIVERY__TRANSPORT", "webhook"),
        ("BINDERY_DELIVERY__WEBHOOK__URL", &sender.url),
        ("BINDERY_DELIVERY__WEBHOOK__TIMEOUT", "60s"),
    ]);
    let service = chat_service(&app, "Chat");
    for user in 0..4 {
        for device in 0..5 {
            register(
                &app,
                &service,
                &format!("user{user}"),
                &[
                    ("BindingType", "fcm"),
                    ("Address", &format!("token-{user}-{device}")),
                    ("Endpoint", &format!("device-{device}")),
                ],
            );
        }
    }
    let in_flight = "bindery_deliveries_in_flight";
    /// Opens the gate when dropped, so that a failed assertion does not leave the notify
    /// waiting on the sender forever.
    struct Opens(Arc<(Mutex<bool>, std::sync::Condvar)>);
    impl Drop for Opens {
        fn drop(&mut self) {
            *self.0 .0.lock().unwrap_or_else(|e| e.into_inner()) = true;
            self.0 .1.notify_all();
        }
    }
    let answer = std::thread::scope(|scope| {
        let opens = Opens(gate.clone());
        let notifying = scope.spawn(|| {
            let identities: Vec<(&str, String)> =
                (0..4).map(|u| ("Identity", format!("user{u}"))).collect();
            let mut pairs: Vec<(&str, &str)> =
                identities.iter().map(|(k, v)| (*k, v.as_str())).collect();
            pairs.push(("Body", "hi"));
            notify(&app, &service, &pairs)
        });
        wait_until(PATIENCE, "the sender holds four pushes", || {
            entered.load(Ordering::SeqCst) >= 4
        });
        assert_eq!(
            app.metric(in_flight, &[]),
            4.0,
            "twenty pushes, four dispatcher threads"
        );
        drop(opens);
        notifying.join().unwrap()
    });
    assert_eq!(
        (&answer["targeted"], &answer["delivered"]),
        (&20.into(), &20.into()),
        "{answer}"
    );
    assert_eq!(entered.load(Ordering::SeqCst), 20);
    assert_eq!(app.metric(in_flight, &[]), 0.0);
}

/// With `delivery.webhook.secret`, each POST carries `X-Bindery-Signature: t=…,v1=…`, the
/// HMAC-SHA256 of "<t>.<body>"; without, none. The secret reaches no answer and no log line.
#[test]
fn pushes_are_signed_when_a_webhook_secret_is_set() {
    let secret = "whsec-test-s3cret";
    let sender = scripted(&[]);
    let env = [
        ("BINDERY_DELIVERY__TRANSPORT", "webhook"),
        ("BINDERY_DELIVERY__WEBHOOK__URL", sender.url.as_str()),
        ("BINDERY_DELIVERY__WEBHOOK__SECRET", secret),
    ];
    let (app, log) = TestApp::spawn_logged(tempfile::TempDir::new().unwrap(), &env, None);
    let service = chat_service(&app, "Chat");
    register(
        &app,
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "signed-token")],
    );
    let answer = notify(&app, &service, &[("Identity", "alice"), ("Body", "hi")]);
    let received = sender.to("signed-token");
    assert_eq!(received.len(), 1);
    let signature = received[0].signature.clone().expect("a signature header");
    let (t, v1) = signature
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .unwrap_or_else(|| panic!("not t=…,v1=…: {signature}"));
    let sent_at: u64 = t.parse().expect("t is unix seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(sent_at.abs_diff(now) < 600, "t={sent_at}, now {now}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let signed = format!("{t}.{}", received[0].text);
    let expected = hex::decode(v1).expect("v1 is hex");
    ring::hmac::verify(&key, signed.as_bytes(), &expected)
        .expect("v1 is the HMAC-SHA256 of <t>.<body> under the secret");
    assert!(
        ring::hmac::verify(&key, format!("{t}.{{}}").as_bytes(), &expected).is_err(),
        "the signature covers the body"
    );
    assert!(app.stop().success());
    log.wait_closed();
    assert!(!answer.to_string().contains(secret));
    assert!(
        !log.lines().join("\n").contains(secret),
        "the secret in the log"
    );

    // Without a secret, nothing is signed.
    let sender = scripted(&[]);
    let app = spawn_for(&sender);
    let service = chat_service(&app, "Chat");
    register(
        &app,
        &service,
        "bob",
        &[("BindingType", "apn"), ("Address", "plain-token")],
    );
    notify(&app, &service, &[("Identity", "bob"), ("Body", "hi")]);
    assert_eq!(sender.to("plain-token")[0].signature, None);
}

/// Notify's `Priority` (high, the default, or low) and `Ttl` (0 to 28 days) reach the sender
/// with the push; other values, and a `Data` key named aps, answer 400 and push nothing.
#[test]
fn priority_and_ttl_reach_the_sender_and_bad_ones_push_nothing() {
    let sender = scripted(&[]);
    let app = spawn_for(&sender);
    let service = chat_service(&app, "Chat");
    register(
        &app,
        &service,
        "alice",
        &[("BindingType", "fcm"), ("Address", "ttl-token")],
    );
    let path = format!("/v2/Services/{service}/Notifications");
    notify(&app, &service, &[("Identity", "alice"), ("Body", "a")]);
    notify(
        &app,
        &service,
        &[
            ("Identity", "alice"),
            ("Body", "b"),
            ("Priority", "low"),
            ("Ttl", "2419200"),
        ],
    );
    let pushes = sender.to("ttl-token");
    assert_eq!(pushes.len(), 2);
    assert_eq!(
        (&pushes[0].body["priority"], &pushes[0].body["ttl"]),
        (&json!("high"), &Value::Null)
    );
    assert_eq!(
        (&pushes[1].body["priority"], &pushes[1].body["ttl"]),
        (&json!("low"), &json!(2419200))
    );
    for (name, value, naming) in [
        ("Priority", "urgent", "Priority"),
        ("Priority", "HIGH", "Priority"),
        ("Ttl", "2419201", "Ttl"),
        ("Ttl", "-1", "Ttl"),
        ("Ttl", "soon", "Ttl"),
        ("Data", r#"{"aps":{"badge":1}}"#, "aps"),
    ] {
        let reply = app.post(
            &path,
            &[("Identity", "alice"), ("Body", "c"), (name, value)],
        );
        assert_eq!(reply.status, 400, "{name}={value}: {}", reply.text);
        assert_eq!(reply.body["code"], 20001, "{}", reply.text);
        assert!(
            reply.text.contains(naming),
            "{name}={value}: {}",
            reply.text
        );
    }
    assert_eq!(sender.to("ttl-token").len(), 2, "a refused notify pushed");
}
