//! Authentication against a running server, with accounts and keys made by the CLI beside it.

use crate::support::{Credentials, TestApp};

#[test]
fn the_first_account_printed_by_serve_signs_in() {
    let app = TestApp::spawn();
    assert!(
        app.account.user.starts_with("AC"),
        "serve printed an account"
    );
    let (status, body) = app.get("/v2/Services", Some(&app.account));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["key"], "services");
}

#[test]
fn missing_wrong_and_malformed_credentials_answer_401_20003() {
    let app = TestApp::spawn();
    let wrong = Credentials {
        user: app.account.user.clone(),
        password: "0".repeat(32),
    };
    let malformed = Credentials {
        user: "nobody".into(),
        password: "x".into(),
    };
    for credentials in [None, Some(&wrong), Some(&malformed)] {
        let response = ureq::get(&app.url("/v2/Services"));
        let response = match credentials {
            Some(c) => response.set("Authorization", &crate::support::basic(c)),
            None => response,
        };
        let Err(ureq::Error::Status(401, response)) = response.call() else {
            panic!("expected 401")
        };
        assert_eq!(
            response.header("WWW-Authenticate"),
            Some("Basic realm=\"Bindery\"")
        );
        let body: serde_json::Value = response.into_json().unwrap();
        assert_eq!(body["code"], 20003);
        assert_eq!(body["status"], 401);
        assert_eq!(
            body["more_info"],
            "https://www.twilio.com/docs/errors/20003"
        );
        assert!(body.get("type").is_none() && body.get("title").is_none());
    }
}

#[test]
fn accounts_and_keys_made_while_serving_work_at_once_and_revoked_keys_stop() {
    let app = TestApp::spawn();
    let owner = app.other_account();
    assert_eq!(app.get("/v2/Services", Some(&owner)).0, 200);

    let key = app.create_key(&owner.user);
    let (status, created) =
        app.post_form("/v2/Services", &key, &[("FriendlyName", "made with a key")]);
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["account_sid"], owner.user,
        "a key acts for its account"
    );

    let revoked = crate::support::bindery(&app.data_dir(), &["keys", "revoke", &key.user]);
    assert!(revoked.status.success());
    assert_eq!(app.get("/v2/Services", Some(&key)).0, 401);
    assert_eq!(
        app.get("/v2/Services", Some(&owner)).0,
        200,
        "the account itself still works"
    );
}

#[test]
fn another_accounts_service_is_answered_as_missing() {
    let app = TestApp::spawn();
    let other = app.other_account();
    let (status, mine) = app.post_form("/v2/Services", &app.account, &[("FriendlyName", "mine")]);
    assert_eq!(status, 201, "{mine}");
    let path = format!("/v2/Services/{}", mine["sid"].as_str().unwrap());
    let (status, body) = app.get(&path, Some(&other));
    assert_eq!((status, body["code"].as_u64()), (404, Some(50050)));
    let (status, listed) = app.get("/v2/Services", Some(&other));
    assert_eq!(status, 200);
    assert_eq!(listed["services"].as_array().unwrap().len(), 0);
    assert_eq!(app.get(&path, Some(&app.account)).0, 200);
}

#[test]
fn service_pages_follow_next_page_url_without_repeats() {
    let app = TestApp::spawn();
    let mut made = Vec::new();
    for i in 0..5 {
        let (status, body) = app.post_form(
            "/v2/Services",
            &app.account,
            &[("FriendlyName", &format!("s{i}"))],
        );
        assert_eq!(status, 201);
        made.push(body["sid"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut url = Some(app.url("/v2/Services?PageSize=2"));
    while let Some(next) = url {
        let path = next
            .strip_prefix(&app.base_url)
            .expect("absolute URL on this server")
            .to_owned();
        let (status, page) = app.get(&path, Some(&app.account));
        assert_eq!(status, 200, "{page}");
        seen.extend(
            page["services"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["sid"].as_str().unwrap().to_owned()),
        );
        url = page["meta"]["next_page_url"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, made, "creation order, each once");
}

#[test]
fn serve_stops_cleanly_on_sigterm() {
    let app = TestApp::spawn();
    let status = app.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn repeated_wrong_passwords_are_throttled_per_client_address() {
    let app = TestApp::spawn();
    let wrong = Credentials {
        user: app.account.user.clone(),
        password: "0".repeat(32),
    };
    for attempt in 0..20 {
        assert_eq!(
            app.get("/v2/Services", Some(&wrong)).0,
            401,
            "attempt {attempt}"
        );
    }
    for credentials in [&wrong, &app.account] {
        let response = ureq::get(&app.url("/v2/Services"))
            .set("Authorization", &crate::support::basic(credentials))
            .call();
        let Err(ureq::Error::Status(429, response)) = response else {
            panic!("expected 429")
        };
        let wait: u64 = response.header("Retry-After").unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait));
        let body: serde_json::Value = response.into_json().unwrap();
        assert_eq!(body["code"], 20429);
    }
    assert_eq!(
        app.get("/healthz", None).0,
        200,
        "only sign-ins are throttled"
    );
}
