//! The server's log: one JSON line per request with its id, route, status and duration, and
//! never a secret, a token or a push address.

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{basic, Credentials, TestApp, PATIENCE};

#[test]
fn json_logs_carry_one_line_per_request_and_no_secret() {
    let (app, log) = TestApp::spawn_logged(
        TempDir::new().unwrap(),
        &[("BINDERY_LOG__FORMAT", "json")],
        None,
    );
    let account = app.account.clone();
    let file = app.data_dir().join("first-account.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&file.metadata().unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o600,
        "only its owner may read the first account"
    );
    let url = |path: &str| app.url(path);

    let service: Value = ureq::post(&url("/v2/Services"))
        .set("Authorization", &basic(&account))
        .send_form(&[("FriendlyName", "chat")])
        .unwrap()
        .into_json()
        .unwrap();
    let token = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2";
    let registered = ureq::post(&url(&format!(
        "/v2/Services/{}/Users/alice/Bindings",
        service["sid"].as_str().unwrap()
    )))
    .set("Authorization", &basic(&account))
    .set("X-Request-Id", "test-request-1")
    .send_form(&[
        ("BindingType", "apn"),
        ("Address", token),
        ("Endpoint", "phone"),
    ])
    .unwrap();
    assert_eq!(registered.header("X-Request-Id"), Some("test-request-1"));
    let wrong = Credentials {
        user: account.user.clone(),
        password: "f".repeat(32),
    };
    let refused = ureq::get(&url("/v2/Services"))
        .set("Authorization", &basic(&wrong))
        .call();
    assert!(matches!(refused, Err(ureq::Error::Status(401, _))));

    let mut app = app;
    app.terminate();
    let status = app.wait_for_exit(PATIENCE);
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let stdout = &app.stdout;
    // Everything it wrote is in: both streams ended with the process.
    log.wait_closed();
    stdout.wait_closed();
    // No terminal on stdout: the first account went to a file, and nothing to stdout.
    assert_eq!(stdout.lines(), Vec::<String>::new());
    let log = log.lines().join("\n");

    // The first start's auth token is not in the log (the journal, under systemd); where it
    // is, is.
    for secret in [account.password.as_str(), wrong.password.as_str(), token] {
        assert!(!log.contains(secret), "a secret or token in the log");
    }
    assert!(log.contains(&file.display().to_string()), "{log}");
    let requests: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|l| l["fields"]["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 3, "one line per request");
    let registration = requests
        .iter()
        .find(|l| l["fields"]["request_id"] == "test-request-1")
        .unwrap();
    assert_eq!(
        registration["fields"]["route"],
        "/v2/Services/{ServiceSid}/Users/{UserSid}/Bindings"
    );
    assert_eq!(registration["fields"]["status"], 201);
    assert!(registration["fields"]["duration_ms"].as_f64().is_some());
    assert!(requests.iter().any(|l| l["fields"]["status"] == 401));
    // The request id is recorded with the events the request appended.
    let exported = crate::support::bindery(&app.data_dir(), &["export"]);
    assert!(String::from_utf8_lossy(&exported.stdout).contains("\"request_id\":\"test-request-1\""));
}
