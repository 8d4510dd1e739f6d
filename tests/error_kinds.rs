//! Error kinds: every failure a handler reports is a kind, and `crates/http/src/error.rs`
//! alone maps each kind to its HTTP status, Twilio code and headers. One request per kind
//! pins the wire answer; a scan of the HTTP crate's sources keeps the choice in error.rs.

use std::path::Path;

use crate::support::{assert_error, sid, user_path, Credentials, Reply, TestApp};

const ZEROS: &str = "00000000000000000000000000000000";

/// The `StatusCode` constants a handler may still name: the success statuses it answers.
const SUCCESS_STATUSES: [&str; 4] = ["OK", "CREATED", "NO_CONTENT", "from_u16"];

/// Where in `line` an error status, a Twilio code or a hand-built `ApiError` is named.
fn chosen_outside_error_rs(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices("StatusCode::") {
        let name: String = line[at + "StatusCode::".len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !SUCCESS_STATUSES.contains(&name.as_str()) {
            found.push(format!("StatusCode::{name}"));
        }
    }
    for (at, _) in line.match_indices("ApiError::new(") {
        let argument = line[at + "ApiError::new(".len()..].trim_start();
        if !argument.is_empty() && !argument.starts_with("ErrorKind::") {
            found.push(format!("ApiError::new({argument}"));
        }
    }
    // Twilio's codes are five digits, 20xxx or 5xxxx.
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_number = bytes[i].is_ascii_digit()
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if !starts_number {
            i += 1;
            continue;
        }
        let end = (i..bytes.len())
            .find(|&j| !(bytes[j].is_ascii_digit() || bytes[j] == b'_'))
            .unwrap_or(bytes.len());
        let digits: String = line[i..end].chars().filter(|c| *c != '_').collect();
        if let Ok(number) = digits.parse::<u64>() {
            if (20_000..=20_999).contains(&number) || (50_000..=59_999).contains(&number) {
                found.push(number.to_string());
            }
        }
        i = end;
    }
    found
}

#[test]
fn only_error_rs_maps_a_failure_to_a_status_or_a_code() {
    // The scanner itself finds what it looks for.
    assert_eq!(
        chosen_outside_error_rs("ApiError::new(StatusCode::BAD_REQUEST, 50209, m)"),
        [
            "StatusCode::BAD_REQUEST",
            "ApiError::new(StatusCode::BAD_REQUEST, 50209, m)",
            "50209"
        ]
    );
    assert!(chosen_outside_error_rs("Ok((StatusCode::CREATED, body)) // 10_000 u64").is_empty());
    assert!(chosen_outside_error_rs("ApiError::new(ErrorKind::NotFound, m)").is_empty());

    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/http/src");
    let mut offences = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&sources).expect("the HTTP crate's sources") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("error.rs") {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&path).expect("a source file");
        for (number, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for found in chosen_outside_error_rs(line) {
                offences.push(format!("{}:{}: {found}", path.display(), number + 1));
            }
        }
    }
    assert!(
        files >= 10,
        "only {files} source files found in {sources:?}"
    );
    assert!(
        offences.is_empty(),
        "a failure's status or code chosen outside error.rs:\n{}",
        offences.join("\n")
    );
}

fn post_with_key(app: &TestApp, key: &str, friendly_name: &str) -> Reply {
    app.send(
        "POST",
        "/v2/Services",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Idempotency-Key", key),
        ],
        Some(format!("FriendlyName={friendly_name}").as_bytes()),
    )
}

#[test]
fn each_error_kind_answers_its_status_code_and_headers() {
    let app = TestApp::spawn_with_env(&[
        ("BINDERY_HTTP__BODY_LIMIT", "1024"),
        ("BINDERY_BINDINGS__PER_USER_LIMIT", "1"),
    ]);
    let service = sid(&app.create_service("kinds"));
    let users = format!("/v2/Services/{service}/Users");
    app.create_user(&service, "taken");
    app.register_binding(
        &service,
        "full",
        &[("BindingType", "apn"), ("Address", "full-0")],
    )
    .expect(201);
    post_with_key(&app, "kinds-key", "first").expect(201);

    let cases: Vec<(&str, Reply, u16, u64)> = vec![
        (
            "bad parameter",
            app.get_raw("/v2/Services?PageSize=zero"),
            400,
            20001,
        ),
        (
            "not found",
            app.get_raw("/v2/Credentials/CRnope"),
            404,
            20404,
        ),
        (
            "service not found",
            app.get_raw(&format!("/v2/Services/IS{ZEROS}")),
            404,
            50050,
        ),
        (
            "user not found",
            app.get_raw(&user_path(&service, "nobody")),
            404,
            50200,
        ),
        (
            "identity taken",
            app.post(&users, &[("Identity", "taken")]),
            409,
            50201,
        ),
        ("identity missing", app.post(&users, &[]), 400, 50204),
        (
            "identity missing on notify",
            app.post(
                &format!("/v2/Services/{service}/Notifications"),
                &[("Body", "hi")],
            ),
            400,
            50204,
        ),
        (
            "identity looks like a user sid",
            app.post(&users, &[("Identity", &format!("US{ZEROS}"))]),
            400,
            50206,
        ),
        (
            "identity too long",
            app.post(&users, &[("Identity", &"i".repeat(257))]),
            400,
            50207,
        ),
        (
            "invalid binding type",
            app.list_user_bindings(&service, "full", "BindingType=telegraph"),
            400,
            50209,
        ),
        (
            "invalid binding type in feedback",
            app.post(
                &format!("/v2/Services/{service}/Bindings/Feedback"),
                &[("BindingType", "telegraph"), ("Address", "a")],
            ),
            400,
            50209,
        ),
        (
            "binding limit",
            app.register_binding(
                &service,
                "full",
                &[("BindingType", "fcm"), ("Address", "full-1")],
            ),
            409,
            20001,
        ),
        (
            "body too large",
            app.post("/v2/Services", &[("FriendlyName", &"x".repeat(2000))]),
            413,
            20001,
        ),
        (
            "not a form",
            app.post_raw("/v2/Services", Some("application/json"), b"{}"),
            415,
            20001,
        ),
        (
            "idempotency key reused",
            post_with_key(&app, "kinds-key", "second"),
            422,
            20001,
        ),
    ];
    for (kind, reply, status, code) in &cases {
        assert_eq!(
            (reply.status, reply.body["code"].as_u64()),
            (*status, Some(*code)),
            "{kind}: {}",
            reply.text
        );
        assert_error(reply, *status, *code);
        assert_eq!(reply.header("retry-after"), None, "{kind}");
        assert_eq!(reply.header("www-authenticate"), None, "{kind}");
    }

    let refused = app.send("PUT", &format!("/v2/Services/{service}"), &[], None);
    assert_error(&refused, 405, 20004);
    let allow = refused
        .header("allow")
        .expect("405 names the methods served");
    for method in ["GET", "POST", "DELETE"] {
        assert!(allow.contains(method), "{allow}");
    }

    let stranger = Credentials {
        user: format!("AC{ZEROS}"),
        password: "wrong".to_owned(),
    };
    let unsigned = app.send_as(&stranger, "GET", "/v2/Services", &[], None);
    assert_error(&unsigned, 401, 20003);
    assert_eq!(
        unsigned.header("www-authenticate"),
        Some("Basic realm=\"Bindery\"")
    );
    assert_eq!(unsigned.header("retry-after"), None);

    // Nothing refused above was stored: the services are "kinds" and the keyed "first".
    assert_eq!(app.user_binding_sids(&service, "full").len(), 1);
    let services = app.get_raw("/v2/Services").expect(200);
    assert_eq!(services["services"].as_array().map(Vec::len), Some(2));
    let listed = app.get_raw(&users).expect(200);
    assert_eq!(listed["users"].as_array().map(Vec::len), Some(2));
    app.verify();

    // Last, as it locks this address out: failed sign-ins past the limit are 429 with a wait.
    let throttled = (0..40)
        .map(|_| app.send_as(&stranger, "GET", "/v2/Services", &[], None))
        .find(|reply| reply.status == 429)
        .expect("failed sign-ins are throttled");
    assert_error(&throttled, 429, 20429);
    let wait: u64 = throttled
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("429 says when to retry");
    assert!((1..=60).contains(&wait), "{wait}");
}
