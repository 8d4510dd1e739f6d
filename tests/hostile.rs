//! Hostile input: bodies over the limit, deep and malformed JSON in `Attributes`, text that is
//! not UTF-8, NUL bytes, thousands of repeated keys, and identities that look like paths or
//! SQL. Every answer is a clean 2xx or 4xx in Twilio's error shape, and comes (a request still
//! unanswered after `support::REQUEST_TIMEOUT` fails the test; how long an answer took is not
//! measured, which on a loaded machine would flake); whatever is stored reads back byte for
//! byte; and the database still verifies and keeps its tables.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::delivery::{chat_service, register, result_for, targeted};
use crate::support::{
    assert_error, escape_all, form, material, segment, sid, user_bindings_path, user_path, TestApp,
};

const LIMIT: usize = 64 * 1024;
const FORM: &str = "application/x-www-form-urlencoded";

/// A server whose body limit is known, whatever the caller's environment says.
fn spawn() -> TestApp {
    TestApp::spawn_with_env(&[("BINDERY_HTTP__BODY_LIMIT", &LIMIT.to_string())])
}

/// A clean answer: not a server error, and a 4xx in Twilio's error shape.
#[track_caller]
fn assert_clean(status: u16, body: &Value, what: &str) {
    assert!(
        (200..500).contains(&status),
        "{what}: answered {status}: {body}"
    );
    if status >= 400 {
        assert_eq!(body["status"], status, "{what}: {body}");
        assert!(body["code"].is_u64(), "{what}: {body}");
        assert!(body["message"].is_string(), "{what}: {body}");
    }
}

/// The server still answers.
#[track_caller]
fn assert_alive(app: &TestApp) {
    app.get_raw("/v2/Services?PageSize=1").expect(200);
}

/// Every user of a service, by identity (each must be listed once).
fn users_by_identity(app: &TestApp, service: &str) -> BTreeMap<String, Value> {
    let mut users = BTreeMap::new();
    for user in app.walk(&format!("/v2/Services/{service}/Users"), "users") {
        let identity = user["identity"].as_str().expect("an identity").to_owned();
        assert!(
            users.insert(identity.clone(), user).is_none(),
            "{identity:?} listed twice"
        );
    }
    users
}

/// The tables Bindery's schema creates, which hostile identities must not have touched.
const TABLES: [&str; 7] = [
    "accounts",
    "api_keys",
    "bindings",
    "credentials",
    "events",
    "services",
    "users",
];

#[track_caller]
fn assert_database_intact(app: &TestApp) {
    app.verify();
    match app.sqlite_tables() {
        Some(tables) => {
            for table in TABLES {
                assert!(tables.iter().any(|t| t == table), "{table} in {tables:?}");
            }
        }
        None => eprintln!("no sqlite3 CLI: the tables were checked by `bindery verify` only"),
    }
}

#[test]
fn bodies_over_the_limit_answer_413_in_the_twilio_shape() {
    let app = spawn();
    let service = sid(&app.create_service("limits"));
    let users = format!("/v2/Services/{service}/Users");

    // Exactly at the limit is read (then judged on its content); one byte more is refused.
    let prefix = "Identity=at-the-limit&Attributes=%22";
    let at_limit = format!("{prefix}{}%22", "x".repeat(LIMIT - prefix.len() - 3));
    assert_eq!(at_limit.len(), LIMIT);
    let created = app
        .post_raw(&users, Some(FORM), at_limit.as_bytes())
        .expect(201);
    assert_eq!(
        created["attributes"].as_str().map(str::len),
        Some(LIMIT - prefix.len() - 3 + 2)
    );
    let over = format!("{prefix}{}%22", "x".repeat(LIMIT - prefix.len() - 2));
    assert_eq!(over.len(), LIMIT + 1);
    assert_error(
        &app.post_raw(&users, Some(FORM), over.as_bytes()),
        413,
        20001,
    );

    // Every POST route, with a body far over the limit.
    let register = user_bindings_path(&service, "alice");
    for (path, name) in [
        ("/v2/Services".to_owned(), "FriendlyName"),
        ("/v2/Credentials".to_owned(), "Certificate"),
        (users.clone(), "Identity"),
        (user_path(&service, "at-the-limit"), "FriendlyName"),
        (register.clone(), "Address"),
        (format!("/v2/Services/{service}"), "FriendlyName"),
        (
            format!("/v2/Services/{service}/Bindings/Feedback"),
            "Address",
        ),
        (format!("/v2/Services/{service}/Notifications"), "Body"),
    ] {
        let body = form(&[(name, &"x".repeat(3 * LIMIT))]);
        let reply = app.post_raw(&path, Some(FORM), body.as_bytes());
        assert_error(&reply, 413, 20001);
    }

    // Megabytes, announced or not, and sent whole or cut short by the server: a 413 still.
    let auth = crate::support::basic(&app.account);
    for size in [1 << 20, 8 << 20] {
        let body = vec![b'a'; size];
        let reply = app.raw_http(
            "POST",
            users.as_bytes(),
            &[("Authorization", &auth), ("Content-Type", FORM)],
            &body,
        );
        assert_eq!(reply.status, 413, "{size} bytes: {:?}", reply);
        assert!(
            reply
                .header("Content-Type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{reply:?}"
        );
        let body = reply.json();
        assert_eq!(
            (body["code"].as_u64(), body["status"].as_u64()),
            (Some(20001), Some(413))
        );
    }
    // Chunked, so that no Content-Length announces the size.
    let mut chunked = Vec::new();
    for _ in 0..4 {
        chunked.extend_from_slice(format!("{:x}\r\n", LIMIT).as_bytes());
        chunked.extend(std::iter::repeat_n(b'a', LIMIT));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = app.raw_http(
        "POST",
        users.as_bytes(),
        &[
            ("Authorization", &auth),
            ("Content-Type", FORM),
            ("Transfer-Encoding", "chunked"),
        ],
        &chunked,
    );
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(reply.json()["code"], 20001);

    assert_alive(&app);
    assert_eq!(
        users_by_identity(&app, &service)
            .into_keys()
            .collect::<Vec<_>>(),
        ["at-the-limit"],
        "nothing over the limit was stored"
    );
    assert_database_intact(&app);
}

#[test]
fn deep_malformed_and_huge_json_in_attributes_is_refused_or_kept_verbatim() {
    let app = spawn();
    let service = sid(&app.create_service("attributes"));
    let users = format!("/v2/Services/{service}/Users");
    app.create_user(&service, "updated");

    let malformed = [
        "[".repeat(10_000),
        "{".repeat(10_000),
        format!("{}{}", "[".repeat(10_000), "]".repeat(9_999)),
        "{".into(),
        "}".into(),
        "{'a': 1}".into(),
        "{\"a\": 1,}".into(),
        "[1, 2,]".into(),
        "{\"a\" 1}".into(),
        "NaN".into(),
        "Infinity".into(),
        "undefined".into(),
        "{\"a\": 1} trailing".into(),
        "\"unterminated".into(),
        "\"\u{0}\"".into(),
        "{\"a\": \"\\x\"}".into(),
        "0x10".into(),
        "01".into(),
        "\u{0}".into(),
    ];
    for (n, attributes) in malformed.iter().enumerate() {
        let reply = app.post(
            &users,
            &[
                ("Identity", &format!("bad-{n}")),
                ("Attributes", attributes),
            ],
        );
        assert_error(&reply, 400, 20001);
    }

    // Valid JSON, however deep, long or large its numbers: stored as given, or (past the
    // parser's recursion limit) refused cleanly; never a server error.
    let valid = [
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        format!("{}1{}", "{\"a\":".repeat(2_000), "}".repeat(2_000)),
        format!("{}{}", "[".repeat(128), "]".repeat(128)),
        "1e999".into(),
        "-1e-999".into(),
        "9".repeat(10_000),
        format!("-{}.{}e+999999999999", "1".repeat(100), "2".repeat(100)),
        "123456789012345678901234567890123456789012345678901234567890".into(),
        "18446744073709551616".into(),
        "-9223372036854775809".into(),
        "  {\"spaced\" :\t[ 1 , 2 ]\n}  ".into(),
        "{\"a\":1,\"a\":2}".into(),
        "\"\\u0000\\ud83d\\ude00\"".into(),
        "\"\\ud800\"".into(),
        "{\"\u{202E}\": \"\u{0}\"}".into(),
    ];
    let mut stored = BTreeMap::new();
    for (n, attributes) in valid.iter().enumerate() {
        let identity = format!("good-{n}");
        let reply = app.post(
            &users,
            &[("Identity", &identity), ("Attributes", attributes)],
        );
        assert_clean(reply.status, &reply.body, &format!("Attributes #{n}"));
        match reply.status {
            201 => {
                assert_eq!(reply.body["attributes"].as_str(), Some(attributes.as_str()));
                stored.insert(identity, attributes.clone());
            }
            _ => assert_error(&reply, 400, 20001),
        }
        // The same through an update of an existing user.
        let update = app.post(
            &user_path(&service, "updated"),
            &[("Attributes", attributes)],
        );
        assert_clean(update.status, &update.body, &format!("update #{n}"));
        match update.status {
            200 => {
                assert_eq!(
                    update.body["attributes"].as_str(),
                    Some(attributes.as_str())
                );
                stored.insert("updated".into(), attributes.clone());
            }
            _ => assert_error(&update, 400, 20001),
        }
    }
    assert!(
        stored.contains_key("good-10") && stored.contains_key("good-12"),
        "plain JSON is kept: {:?}",
        stored.keys()
    );

    // Fetched and listed byte for byte.
    let listed = users_by_identity(&app, &service);
    for (identity, attributes) in &stored {
        let fetched = app.get_raw(&user_path(&service, identity)).expect(200);
        assert_eq!(
            fetched["attributes"].as_str(),
            Some(attributes.as_str()),
            "{identity}"
        );
        assert_eq!(
            listed[identity]["attributes"].as_str(),
            Some(attributes.as_str())
        );
    }
    assert!(
        listed.keys().all(|i| !i.starts_with("bad-")),
        "{:?}",
        listed.keys()
    );
    assert_alive(&app);
    assert_database_intact(&app);
}

#[test]
fn text_that_is_not_utf8_is_answered_cleanly() {
    let app = spawn();
    let service = sid(&app.create_service("utf-8"));
    let users = format!("/v2/Services/{service}/Users");

    // Raw bytes that are not UTF-8, in a form body.
    for body in [
        &b"Identity=\xff\xfe"[..],
        b"Identity=ok&FriendlyName=\xc3\x28",
        b"\xed\xa0\x80=x&Identity=ok2",
        b"Identity=\x80",
    ] {
        let reply = app.post_raw(&users, Some(FORM), body);
        assert_error(&reply, 400, 20001);
    }
    // Percent-escapes of bytes that are not UTF-8, in bodies, queries and paths.
    for (n, escaped) in ["%FF%FE", "%C3%28", "%ED%A0%80", "%80", "%F0%9F%98"]
        .iter()
        .enumerate()
    {
        let body = format!("Identity=escaped-{n}&FriendlyName={escaped}");
        let reply = app.post_raw(&users, Some(FORM), body.as_bytes());
        assert_clean(reply.status, &reply.body, escaped);
        let reply = app.get_raw(&format!("{users}/{escaped}"));
        assert_clean(reply.status, &reply.body, escaped);
        let reply = app.get_raw(&format!("{users}?PageToken={escaped}"));
        assert_clean(reply.status, &reply.body, escaped);
        let reply = app.get_raw(&format!(
            "/v2/Services/{service}/Bindings?Identity={escaped}"
        ));
        assert_clean(reply.status, &reply.body, escaped);
        let reply = app.get_raw(&format!("/v2/Services/{escaped}"));
        assert_clean(reply.status, &reply.body, escaped);
    }
    // Raw bytes that are not UTF-8 in the request target itself.
    for target in [
        format!("{users}/\u{0}").into_bytes(),
        [users.as_bytes(), b"/\xff\xfe"].concat(),
        [users.as_bytes(), b"?PageSize=\xff"].concat(),
        b"/v2/Services/\xc3\x28".to_vec(),
    ] {
        let reply = app.raw_as(&app.account, "GET", &target, &[], b"");
        assert!(
            (400..500).contains(&reply.status),
            "{:?}: {reply:?}",
            String::from_utf8_lossy(&target)
        );
    }
    assert_alive(&app);
    assert_database_intact(&app);
}

/// Two different identities must stay two users. An identity sent as percent-escapes of bytes
/// that are not UTF-8 must be refused (400, as raw bytes that are not UTF-8 are), or kept apart
/// from every other identity; replacing the bytes with U+FFFD merges distinct identities.
#[test]
fn identities_escaped_as_bytes_that_are_not_utf8_are_never_merged() {
    let app = spawn();
    let service = sid(&app.create_service("utf-8 identities"));
    let users = format!("/v2/Services/{service}/Users");
    let mut created = Vec::new();
    for escaped in ["%FF%FE", "%FE%FF", "%80%81", "%C0%AF"] {
        let reply = app.post_raw(&users, Some(FORM), format!("Identity={escaped}").as_bytes());
        assert!(
            reply.status == 201 || reply.status == 400,
            "Identity={escaped}: {} {}",
            reply.status,
            reply.text
        );
        if reply.status == 400 {
            assert_error(&reply, 400, 20001);
        } else {
            created.push((escaped, sid(&reply.body)));
        }
    }
    for (escaped, user) in &created {
        let fetched = app.get_raw(&format!("{users}/{escaped}"));
        assert_eq!(
            (fetched.status, fetched.body["sid"].as_str()),
            (200, Some(user.as_str())),
            "{escaped} must fetch the user it made"
        );
    }
    // A path whose escapes are not UTF-8 names no one: it is refused as malformed, as such a
    // form value is, rather than decoded lossily onto someone else.
    let reply = app.get_raw(&format!("{users}/%FD%FC"));
    assert_error(&reply, 400, 20001);
    app.verify();
}

#[test]
fn nul_bytes_are_stored_and_read_back_exactly() {
    let app = spawn();
    let named = app.post("/v2/Services", &[("FriendlyName", "nul\u{0}service")]);
    assert_clean(named.status, &named.body, "service");
    if named.status == 201 {
        let fetched = app.get_raw(&format!("/v2/Services/{}", sid(&named.body)));
        assert_eq!(fetched.expect(200)["friendly_name"], "nul\u{0}service");
    }
    let service = sid(&app.create_service("nul bytes"));
    // A NUL in a secret: not a service account, refused cleanly.
    let secret = app.post("/v2/Credentials", &[("Type", "fcm"), ("Secret", "s\u{0}")]);
    assert_clean(secret.status, &secret.body, "credential secret");
    let credential = app.post(
        "/v2/Credentials",
        &material::credential_form("fcm")
            .with("FriendlyName", "c\u{0}")
            .pairs(),
    );
    assert_clean(credential.status, &credential.body, "credential");
    if credential.status == 201 {
        let fetched = app
            .get_raw(&format!("/v2/Credentials/{}", sid(&credential.body)))
            .expect(200);
        assert_eq!(fetched["friendly_name"], "c\u{0}");
    }

    let users = format!("/v2/Services/{service}/Users");
    let mut stored = Vec::new();
    for (identity, friendly_name) in [
        ("a\u{0}b", "f\u{0}n"),
        ("\u{0}", "\u{0}"),
        ("\u{0}\u{0}\u{0}", "x"),
        ("trailing\u{0}", "\u{0}leading"),
        ("a", "a\u{0}"),
    ] {
        let reply = app.post(
            &users,
            &[("Identity", identity), ("FriendlyName", friendly_name)],
        );
        assert_clean(reply.status, &reply.body, &format!("{identity:?}"));
        if reply.status != 201 {
            continue;
        }
        assert_eq!(reply.body["identity"], identity);
        assert_eq!(reply.body["friendly_name"], friendly_name);
        // By identity in the path, both with the helper library's encoding and every byte escaped.
        for path in [
            user_path(&service, identity),
            format!("{users}/{}", escape_all(identity)),
        ] {
            let fetched = app.get_raw(&path).expect(200);
            assert_eq!(fetched["sid"], reply.body["sid"], "{path}");
            assert_eq!(fetched["identity"], identity);
            assert_eq!(fetched["friendly_name"], friendly_name);
        }
        // A binding whose endpoint and address hold NUL too.
        let binding = app.register_binding(
            &service,
            identity,
            &[
                ("BindingType", "fcm"),
                ("Address", &format!("tok\u{0}{identity}")),
                ("Endpoint", &format!("end\u{0}{identity}")),
            ],
        );
        assert_clean(binding.status, &binding.body, "binding");
        if binding.status == 201 {
            assert_eq!(binding.body["identity"], identity);
            assert_eq!(binding.body["endpoint"], format!("end\u{0}{identity}"));
        }
        stored.push((identity, friendly_name));
    }
    assert!(!stored.is_empty(), "no identity with a NUL was kept");
    // The NUL is part of the identity: the same text without it is someone else.
    assert_error(&app.get_raw(&user_path(&service, "ab")), 404, 50200);

    let listed = users_by_identity(&app, &service);
    for (identity, friendly_name) in &stored {
        assert_eq!(
            listed[*identity]["friendly_name"], *friendly_name,
            "{identity:?}"
        );
    }
    // Updated to a NUL-laden friendly name, read back the same.
    let (identity, _) = stored[0];
    let updated = app
        .post(
            &user_path(&service, identity),
            &[("FriendlyName", "\u{0}new\u{0}")],
        )
        .expect(200);
    assert_eq!(updated["friendly_name"], "\u{0}new\u{0}");
    assert_eq!(
        app.get_raw(&user_path(&service, identity)).expect(200)["friendly_name"],
        "\u{0}new\u{0}"
    );
    assert_database_intact(&app);
}

#[test]
fn thousands_of_repeated_keys_are_answered_cleanly_in_bounded_time() {
    let app = spawn();
    let service = sid(&app.create_service("repeats"));
    app.register_binding(
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "tok-apn")],
    )
    .expect(201);
    app.register_binding(
        &service,
        "alice",
        &[("BindingType", "fcm"), ("Address", "tok-fcm")],
    )
    .expect(201);

    // 10,000 `BindingType=apn` in a list query: 160 kB of request target.
    for (path, count) in [
        (format!("/v2/Services/{service}/Bindings"), 10_000),
        (user_bindings_path(&service, "alice"), 10_000),
        (format!("/v2/Services/{service}/Bindings"), 1_000),
        (user_bindings_path(&service, "alice"), 1_000),
    ] {
        let query = vec!["BindingType=apn"; count].join("&");
        let reply = app.raw_as(
            &app.account,
            "GET",
            format!("{path}?{query}").as_bytes(),
            &[],
            b"",
        );
        assert!(
            (200..500).contains(&reply.status),
            "{count} keys: {}",
            reply.status
        );
        if reply.status == 200 {
            let bindings = reply.json()["bindings"]
                .as_array()
                .cloned()
                .expect("a list");
            assert_eq!(bindings.len(), 1, "only the apn binding");
            assert_eq!(bindings[0]["binding_type"], "apn");
        } else if !reply.body.is_empty() {
            let body = reply.json();
            assert_eq!(body["status"], reply.status, "{body}");
        }
    }

    // MessageTypes repeated in a registration: as many as fit under the body limit, then more.
    let register = user_bindings_path(&service, "bob");
    for (count, fits) in [(2_000, true), (10_000, false)] {
        let mut body = form(&[("BindingType", "gcm"), ("Address", "tok-bob")]);
        body.push_str(&"&MessageTypes=new_message".repeat(count));
        assert_eq!(body.len() <= LIMIT, fits);
        let reply = app.post_raw(&register, Some(FORM), body.as_bytes());
        if fits {
            assert!(reply.status == 201 || reply.status == 200, "{}", reply.text);
            assert_eq!(
                reply.body["message_types"],
                serde_json::json!(["new_message"])
            );
        } else {
            assert_error(&reply, 413, 20001);
        }
    }
    // Repeated scalars are malformed, however many.
    let body = "Identity=carol&".repeat(4_000);
    let reply = app.post_raw(
        &format!("/v2/Services/{service}/Users"),
        Some(FORM),
        body.as_bytes(),
    );
    assert_error(&reply, 400, 20001);
    assert_alive(&app);
    assert_database_intact(&app);
}

/// The most identities one notify may name.
const NOTIFY_LIMIT: usize = 1_000;

#[test]
fn a_notify_to_a_thousand_identities_reaches_every_binding() {
    let app = spawn();
    let service = chat_service(&app, "fan-out");
    let identities: Vec<String> = (0..NOTIFY_LIMIT).map(|n| format!("fan-{n:04}")).collect();
    // One binding each, registered by a few clients at once.
    let bindings: Vec<String> = std::thread::scope(|scope| {
        let clients: Vec<_> = identities
            .chunks(NOTIFY_LIMIT / 4)
            .map(|chunk| {
                let (app, service) = (&app, &service);
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|identity| {
                            let address = format!("token-{identity}");
                            register(
                                app,
                                service,
                                identity,
                                &[("BindingType", "fcm"), ("Address", &address)],
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        clients
            .into_iter()
            .flat_map(|c| c.join().expect("a client"))
            .collect()
    });

    let mut body = form(&[("Body", "hi")]);
    for identity in &identities {
        body.push_str(&format!("&Identity={identity}"));
    }
    assert!(body.len() <= LIMIT, "{} bytes", body.len());
    let reply = app.post_raw(
        &format!("/v2/Services/{service}/Notifications"),
        Some(FORM),
        body.as_bytes(),
    );
    assert_eq!(reply.status, 201, "{}", reply.text);
    let answer = &reply.body;
    assert_eq!(answer["enabled"], true, "{answer}");
    assert_eq!(
        answer["identities"].as_array().map(Vec::len),
        Some(NOTIFY_LIMIT),
        "every identity named"
    );
    assert_eq!(
        (&answer["targeted"], &answer["delivered"], &answer["failed"]),
        (&NOTIFY_LIMIT.into(), &NOTIFY_LIMIT.into(), &0.into()),
        "one push to each identity's binding"
    );
    let mut expected = bindings.clone();
    expected.sort();
    assert_eq!(targeted(answer), expected);
    for binding in &bindings {
        assert_eq!(result_for(answer, binding)["status"], "delivered");
    }
    assert_alive(&app);
    assert_database_intact(&app);
}

#[test]
fn identities_that_look_like_paths_or_sql_are_stored_verbatim_and_harmless() {
    let app = spawn();
    let service = sid(&app.create_service("hostile identities"));
    let users = format!("/v2/Services/{service}/Users");
    let identities = [
        "../../etc/passwd",
        "..%2F..%2F",
        "..\\..\\windows\\win.ini",
        "/etc/passwd",
        "..",
        ".",
        "%2e%2e",
        "a/b",
        "'; DROP TABLE users; --",
        "\" OR 1=1 --",
        "' OR '1'='1",
        "Robert'); DROP TABLE bindings;--",
        "1; SELECT * FROM accounts",
        "x' UNION SELECT auth_token_hash FROM accounts --",
        "%00",
        "%",
        "%%",
        "+",
        "a b",
        "?x=1&y=2#frag",
        "\u{202E}gnp.exe",
        "\u{200F}\u{202B}rtl\u{202C}",
        "*",
        "$(rm -rf /)",
        "<script>alert(1)</script>",
        "US0123456789abcdef0123456789abcde",
    ];
    let mut made = BTreeMap::new();
    for identity in identities {
        let created = app.post(&users, &[("Identity", identity)]).expect(201);
        assert_eq!(created["identity"], identity);
        made.insert(identity, sid(&created));
    }
    for (identity, user) in &made {
        // Fetched by identity in the path, however it is encoded.
        for target in [
            user_path(&service, identity),
            format!("{users}/{}", escape_all(identity)),
        ] {
            let reply = app.raw_as(&app.account, "GET", target.as_bytes(), &[], b"");
            assert_eq!(reply.status, 200, "{target}: {reply:?}");
            let body = reply.json();
            assert_eq!(
                (body["identity"].as_str(), body["sid"].as_str()),
                (Some(*identity), Some(user.as_str())),
                "{target}"
            );
        }
        // Registered and listed by identity, and deleted by it.
        let target = format!("{users}/{}/Bindings", escape_all(identity));
        let body = form(&[
            ("BindingType", "apn"),
            ("Address", &format!("tok {identity}")),
        ]);
        let reply = app.raw_as(
            &app.account,
            "POST",
            target.as_bytes(),
            &[("Content-Type", FORM)],
            body.as_bytes(),
        );
        assert_eq!(reply.status, 201, "{target}: {reply:?}");
        let binding = reply.json();
        assert_eq!(
            (binding["identity"].as_str(), binding["user_sid"].as_str()),
            (Some(*identity), Some(user.as_str()))
        );
        let listed = app.raw_as(&app.account, "GET", target.as_bytes(), &[], b"");
        assert_eq!(listed.status, 200, "{target}");
        let listed = listed.json();
        assert_eq!(
            listed["bindings"].as_array().map(Vec::len),
            Some(1),
            "{listed}"
        );
        let filtered = app
            .get_raw(&format!(
                "/v2/Services/{service}/Bindings?{}",
                form(&[("Identity", identity)])
            ))
            .expect(200);
        assert_eq!(
            filtered["bindings"].as_array().map(Vec::len),
            Some(1),
            "{identity:?}: {filtered}"
        );
        assert_eq!(filtered["bindings"][0]["identity"], *identity);
    }
    // Listed verbatim, each once, and nothing else.
    let listed = users_by_identity(&app, &service);
    assert_eq!(
        listed.keys().map(String::as_str).collect::<Vec<_>>(),
        made.keys().copied().collect::<Vec<_>>()
    );
    // Deleting one by identity removes that one only.
    let doomed = "'; DROP TABLE users; --";
    let target = format!("{users}/{}", segment(doomed));
    assert_eq!(app.delete(&target).status, 204);
    assert_error(&app.get_raw(&target), 404, 50200);
    assert_eq!(users_by_identity(&app, &service).len(), made.len() - 1);
    // Another service and the account's other data are untouched.
    assert_eq!(app.walk("/v2/Services", "services").len(), 1);
    assert_alive(&app);
    assert_database_intact(&app);
}
