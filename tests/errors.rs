//! Every error a request can cause, in Twilio's shape: `{code, message, more_info, status}`.
//! (401 is in `auth.rs`.)

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

use crate::support::{
    assert_error, material, sid, user_bindings_path, user_path, Credentials, TestApp,
};

const ZEROS: &str = "00000000000000000000000000000000";

#[test]
fn unknown_routes_and_malformed_path_sids_are_20404() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let binding = sid(&app
        .register_binding(
            &service,
            "alice",
            &[("BindingType", "apn"), ("Address", "a")],
        )
        .expect(201));
    for path in [
        "/v2/Nothing".to_owned(),
        "/v1/Services".to_owned(),
        "/v2/Services/IS123/Nothing".to_owned(),
        format!("/v2/Services/{service}/Channels"),
        format!("/v2/Services/{service}/Users/alice/Bindings/{binding}/Nothing"),
        "/v2/Services/ISnot-a-sid".to_owned(),
        format!("/v2/Services/IS{}", "g".repeat(32)),
        format!("/v2/Services/{}", &service[..33]),
        format!("/v2/Services/US{ZEROS}"),
        "/v2/Services/ISnot-a-sid/Users".to_owned(),
        "/v2/Services/ISnot-a-sid/Users/alice".to_owned(),
        "/v2/Services/ISnot-a-sid/Bindings".to_owned(),
        format!("/v2/Services/ISnot-a-sid/Bindings/{binding}"),
        format!("/v2/Services/{service}/Bindings/CR{ZEROS}"),
        format!("/v2/Services/{service}/Bindings/nope"),
        format!("{}/BSnope", user_bindings_path(&service, "alice")),
        "/v2/Credentials/CRnope".to_owned(),
        format!("/v2/Credentials/IS{ZEROS}"),
    ] {
        assert_error(&app.get_raw(&path), 404, 20404);
    }
    for path in [
        "/v2/Services/ISnot-a-sid",
        "/v2/Credentials/CRnope",
        "/v2/Nothing",
    ] {
        assert_error(&app.delete(path), 404, 20404);
        assert_error(&app.post(path, &[("FriendlyName", "x")]), 404, 20404);
    }
    assert_error(
        &app.delete(&format!("/v2/Services/{service}/Bindings/nope")),
        404,
        20404,
    );
    // A method a route does not serve still answers in the error shape.
    for (method, path) in [
        ("POST", format!("/v2/Services/{service}/Bindings/{binding}")),
        ("PUT", format!("/v2/Services/{service}")),
        ("DELETE", "/v2/Services".to_owned()),
    ] {
        let reply = app.send(method, &path, &[], None);
        assert!(
            [404, 405].contains(&reply.status),
            "{method} {path}: {}",
            reply.text
        );
        let code = reply.body["code"].as_u64().unwrap_or(0);
        assert_error(&reply, reply.status, code);
    }
    assert_eq!(
        app.get_raw(&format!("/v2/Services/{service}/Bindings/{binding}"))
            .status,
        200,
        "nothing was deleted"
    );
    app.verify();
}

#[test]
fn a_missing_service_is_50050_and_a_missing_user_50200_on_every_route() {
    let app = TestApp::spawn();
    let missing = format!("IS{ZEROS}");
    let form = [("BindingType", "fcm"), ("Address", "t")];
    let fetch = |path: String| assert_error(&app.get_raw(&path), 404, 50050);
    fetch(format!("/v2/Services/{missing}"));
    fetch(format!("/v2/Services/{missing}/Users"));
    fetch(user_path(&missing, "alice"));
    fetch(user_path(&missing, &format!("US{ZEROS}")));
    fetch(user_bindings_path(&missing, "alice"));
    fetch(format!(
        "{}/BS{ZEROS}",
        user_bindings_path(&missing, "alice")
    ));
    fetch(format!("/v2/Services/{missing}/Bindings"));
    fetch(format!("/v2/Services/{missing}/Bindings/BS{ZEROS}"));
    assert_error(
        &app.post(&format!("/v2/Services/{missing}"), &[("FriendlyName", "x")]),
        404,
        50050,
    );
    assert_error(&app.delete(&format!("/v2/Services/{missing}")), 404, 50050);
    assert_error(&app.delete(&user_path(&missing, "alice")), 404, 50050);
    assert_error(
        &app.post(&user_path(&missing, "alice"), &[("FriendlyName", "x")]),
        404,
        50050,
    );
    assert_error(&app.register_binding(&missing, "alice", &form), 404, 50050);
    assert_error(
        &app.delete(&format!("/v2/Services/{missing}/Bindings/BS{ZEROS}")),
        404,
        50050,
    );

    let service = sid(&app.create_service("chat"));
    for user in ["alice", "a b", "Ünï", &format!("US{ZEROS}")] {
        let path = user_path(&service, user);
        assert_error(&app.get_raw(&path), 404, 50200);
        assert_error(&app.post(&path, &[("FriendlyName", "x")]), 404, 50200);
        assert_error(&app.delete(&path), 404, 50200);
        assert_error(&app.get_raw(&format!("{path}/Bindings")), 404, 50200);
        assert_error(
            &app.get_raw(&format!("{path}/Bindings/BS{ZEROS}")),
            404,
            50200,
        );
        assert_error(
            &app.delete(&format!("{path}/Bindings/BS{ZEROS}")),
            404,
            50200,
        );
    }
    app.verify();
}

/// `(status, code)` of an answer, for comparing one failure with another.
fn outcome(reply: crate::support::Reply) -> (u16, Option<u64>) {
    assert!(reply.body.get("type").is_none() && reply.body.get("title").is_none());
    (reply.status, reply.body["code"].as_u64())
}

#[test]
fn another_accounts_resources_answer_exactly_like_missing_ones() {
    let app = TestApp::spawn();
    let other: Credentials = app.other_account();
    let post = |path: &str, form: &[(&str, &str)]| app.post_as(&other, path, form).expect(201);
    let service = sid(&post("/v2/Services", &[("FriendlyName", "theirs")]));
    let user = sid(&post(
        &format!("/v2/Services/{service}/Users"),
        &[("Identity", "alice")],
    ));
    let binding = sid(&post(
        &user_bindings_path(&service, "alice"),
        &[("BindingType", "apn"), ("Address", "their-token")],
    ));
    let credential = sid(&post(
        "/v2/Credentials",
        &material::credential_form("fcm").pairs(),
    ));

    let missing_service = format!("IS{ZEROS}");
    let missing_binding = format!("BS{ZEROS}");
    let missing_credential = format!("CR{ZEROS}");
    // Each route with another account's SIDs, then with SIDs that name nothing.
    let routes = |s: &str, u: &str, b: &str, c: &str| {
        vec![
            ("GET", format!("/v2/Services/{s}")),
            ("POST", format!("/v2/Services/{s}")),
            ("DELETE", format!("/v2/Services/{s}")),
            ("GET", format!("/v2/Services/{s}/Users")),
            ("POST", format!("/v2/Services/{s}/Users")),
            ("GET", user_path(s, u)),
            ("POST", user_path(s, u)),
            ("DELETE", user_path(s, u)),
            ("GET", user_bindings_path(s, u)),
            ("POST", user_bindings_path(s, u)),
            ("GET", format!("{}/{b}", user_bindings_path(s, u))),
            ("DELETE", format!("{}/{b}", user_bindings_path(s, u))),
            ("GET", format!("/v2/Services/{s}/Bindings")),
            ("GET", format!("/v2/Services/{s}/Bindings/{b}")),
            ("DELETE", format!("/v2/Services/{s}/Bindings/{b}")),
            ("GET", format!("/v2/Credentials/{c}")),
            ("POST", format!("/v2/Credentials/{c}")),
            ("DELETE", format!("/v2/Credentials/{c}")),
        ]
    };
    let form = [
        ("FriendlyName", "mine now"),
        ("Identity", "bob"),
        ("BindingType", "fcm"),
        ("Address", "my-token"),
    ];
    let call = |method: &str, path: &str| match method {
        "POST" => app.post(path, &form),
        _ => app.send(method, path, &[], None),
    };
    let theirs = routes(&service, &user, &binding, &credential);
    let missing = routes(
        &missing_service,
        "alice",
        &missing_binding,
        &missing_credential,
    );
    for ((method, path), (_, nothing)) in theirs.iter().zip(&missing) {
        let got = outcome(call(method, path));
        assert_eq!(got.0, 404, "{method} {path}: {got:?}");
        assert_eq!(
            got,
            outcome(call(method, nothing)),
            "{method} {path} answers as {method} {nothing}"
        );
    }
    // Within one's own service, another account's binding and credential are also missing.
    let mine = sid(&app.create_service("mine"));
    app.create_user(&mine, "alice");
    for path in [
        format!("/v2/Services/{mine}/Bindings/{binding}"),
        format!("{}/{binding}", user_bindings_path(&mine, "alice")),
    ] {
        assert_error(&app.get_raw(&path), 404, 20404);
    }
    let with_their_credential = app.register_binding(
        &mine,
        "alice",
        &[
            ("BindingType", "fcm"),
            ("Address", "t"),
            ("CredentialSid", &credential),
        ],
    );
    let with_no_credential = app.register_binding(
        &mine,
        "alice",
        &[
            ("BindingType", "fcm"),
            ("Address", "t"),
            ("CredentialSid", &missing_credential),
        ],
    );
    assert_eq!(outcome(with_their_credential), outcome(with_no_credential));

    // Nothing of theirs changed.
    let fetched = app.send_as(&other, "GET", &format!("/v2/Services/{service}"), &[], None);
    assert_eq!(fetched.expect(200)["friendly_name"], "theirs");
    let bindings = app.send_as(
        &other,
        "GET",
        &user_bindings_path(&service, "alice"),
        &[],
        None,
    );
    let bindings = bindings.expect(200);
    assert_eq!(bindings["bindings"].as_array().unwrap().len(), 1);
    assert_eq!(bindings["bindings"][0]["sid"], binding.as_str());
    let credentials = app.send_as(&other, "GET", "/v2/Credentials", &[], None);
    assert_eq!(
        credentials.expect(200)["credentials"][0]["friendly_name"],
        serde_json::Value::Null
    );
    app.verify();
}

#[test]
fn a_body_over_the_limit_is_413_in_the_error_shape() {
    let app = TestApp::spawn_with_env(&[("BINDERY_HTTP__BODY_LIMIT", "1024")]);
    let service = sid(&app.create_service("chat"));
    let big = "x".repeat(2000);
    let replies = [
        app.post("/v2/Services", &[("FriendlyName", &big)]),
        app.register_binding(
            &service,
            "alice",
            &[("BindingType", "apn"), ("Address", &big)],
        ),
    ];
    for reply in &replies {
        assert_error(reply, 413, 20001);
    }
    let fits = "y".repeat(900);
    app.post("/v2/Services", &[("FriendlyName", &fits)])
        .expect(201);
    let listed = app.get_raw("/v2/Services").expect(200);
    assert_eq!(listed["services"].as_array().unwrap().len(), 2);
    assert_error(&app.get_raw(&user_path(&service, "alice")), 404, 50200);
    app.verify();
}

#[test]
fn a_post_that_is_not_a_form_is_415_in_the_error_shape() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let path = user_bindings_path(&service, "alice");
    let cases: [(&str, &str, &[u8]); 5] = [
        (
            "/v2/Services",
            "application/json",
            br#"{"FriendlyName":"json"}"#,
        ),
        ("/v2/Services", "text/plain", b"FriendlyName=text"),
        (
            "/v2/Services",
            "multipart/form-data; boundary=x",
            b"--x\r\nContent-Disposition: form-data; name=\"FriendlyName\"\r\n\r\nm\r\n--x--\r\n",
        ),
        (
            &path,
            "application/json",
            br#"{"BindingType":"apn","Address":"a"}"#,
        ),
        ("/v2/Credentials", "application/xml", b"<Type>apn</Type>"),
    ];
    for (path, content_type, body) in cases {
        let reply = app.post_raw(path, Some(content_type), body);
        assert_error(&reply, 415, 20001);
    }
    // A body with no Content-Type at all is not a form either.
    assert_error(
        &app.post_raw("/v2/Services", None, b"FriendlyName=untyped"),
        415,
        20001,
    );
    // The form type with a charset parameter, in any case, is a form.
    let typed = app.post_raw(
        "/v2/Services",
        Some("Application/X-WWW-Form-Urlencoded; charset=utf-8"),
        b"FriendlyName=charset",
    );
    assert_eq!(typed.expect(201)["friendly_name"], "charset");
    let listed = app.get_raw("/v2/Services").expect(200);
    assert_eq!(listed["services"].as_array().unwrap().len(), 2);
    app.verify();
}

#[test]
fn a_scalar_given_twice_and_a_body_that_is_not_utf8_are_400() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let form = Some("application/x-www-form-urlencoded");
    let twice = app.post_raw(
        &format!("/v2/Services/{service}"),
        form,
        b"FriendlyName=a&FriendlyName=b",
    );
    assert_error(&twice, 400, 20001);
    let twice = app.post_raw(
        &format!("/v2/Services/{service}/Users"),
        form,
        b"Identity=a&FriendlyName=x&FriendlyName=y",
    );
    assert_error(&twice, 400, 20001);
    let page_size_twice = app.get_raw("/v2/Services?PageSize=2&PageSize=3");
    assert_error(&page_size_twice, 400, 20001);

    let not_utf8 = app.post_raw("/v2/Services", form, b"FriendlyName=caf\xe9");
    assert_error(&not_utf8, 400, 20001);
    let not_utf8 = app.post_raw(
        &format!("/v2/Services/{service}/Users"),
        form,
        b"Identity=\xff\xfe",
    );
    assert_error(&not_utf8, 400, 20001);

    let listed = app.get_raw("/v2/Services").expect(200);
    assert_eq!(listed["services"].as_array().unwrap().len(), 1);
    assert_eq!(listed["services"][0]["friendly_name"], "chat");
    assert_eq!(
        app.get_raw(&format!("/v2/Services/{service}/Users"))
            .expect(200)["users"],
        serde_json::json!([])
    );
    app.verify();
}

#[test]
fn a_get_may_carry_a_form_content_type_and_a_delete_no_accept_header() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let listed = app.send(
        "GET",
        "/v2/Services",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        None,
    );
    assert_eq!(listed.expect(200)["meta"]["key"], "services");
    let deleted = app.send("DELETE", &format!("/v2/Services/{service}"), &[], None);
    assert_eq!(deleted.status, 204);
    assert_eq!(deleted.text, "");
    assert_eq!(deleted.header("content-length").unwrap_or("0"), "0");
    app.verify();
}

/// A `sqlite3` shell holding an exclusive lock on the database until it is dropped.
struct ExclusiveLock(Child);

impl ExclusiveLock {
    fn take(app: &TestApp) -> ExclusiveLock {
        let mut child = Command::new("sqlite3")
            .arg(app.data_dir().join("bindery.db"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the sqlite3 shell runs (CI installs it)");
        let stdin = child.stdin.as_mut().unwrap();
        stdin
            .write_all(b"BEGIN EXCLUSIVE;\nSELECT 'locked';\n")
            .unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked", "sqlite3 took the lock");
        ExclusiveLock(child)
    }
}

impl Drop for ExclusiveLock {
    fn drop(&mut self) {
        // Closing stdin ends the shell, which rolls back and releases the lock.
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

#[test]
fn a_locked_database_answers_503_with_retry_after_then_the_same_post_succeeds() {
    let app = TestApp::spawn_with_env(&[("BINDERY_STORAGE__BUSY_TIMEOUT", "200ms")]);
    let service = sid(&app.create_service("chat"));
    let register = [("BindingType", "apn"), ("Address", "locked-out-token")];

    // Answered while the lock is still held: the writer gave up waiting for it (after the
    // busy timeout; how long that took is no business of a test on a loaded machine).
    let lock = ExclusiveLock::take(&app);
    let refused = app.post("/v2/Services", &[("FriendlyName", "during the lock")]);
    assert_error(&refused, 503, 503);
    let retry_after = refused.header("retry-after").expect("a Retry-After header");
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
        "{retry_after}"
    );
    let refused = app.register_binding(&service, "alice", &register);
    assert_error(&refused, 503, 503);
    assert!(refused.header("retry-after").is_some());
    // Reads go on while the writer is locked out.
    app.get_raw(&format!("/v2/Services/{service}")).expect(200);
    drop(lock);

    let made = app
        .post("/v2/Services", &[("FriendlyName", "during the lock")])
        .expect(201);
    let binding = app
        .register_binding(&service, "alice", &register)
        .expect(201);
    let listed = app.get_raw("/v2/Services").expect(200);
    let names: Vec<&serde_json::Value> = listed["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["friendly_name"])
        .collect();
    assert_eq!(names, ["chat", "during the lock"], "nothing half-written");
    assert_eq!(made["sid"], listed["services"][1]["sid"]);
    assert_eq!(
        app.user_binding_sids(&service, "alice"),
        [sid(&binding)],
        "one binding, from the retry"
    );
    app.verify();
}
