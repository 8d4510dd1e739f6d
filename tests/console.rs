//! The console over HTTP, as a browser would send it (the browser itself drives it in
//! tests/console): its headers, its session cookie, and every request a user can get wrong.

use std::time::Duration;

use crate::support::*;

const POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                      form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[test]
fn pages_forbid_loading_anything_from_elsewhere_and_being_cached() {
    let app = TestApp::spawn();
    let console = Console::of(&app);
    let page = console.get("/console/sign-in");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-security-policy"), Some(POLICY));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(
        page.body.contains(r#"<label for="username">"#),
        "{}",
        page.body
    );
    // Everything the page loads is the console's own.
    for asset in ["/console/assets/console.css", "/console/assets/console.js"] {
        assert!(page.body.contains(asset));
        assert_eq!(console.get(asset).status, 200, "{asset}");
    }
    assert!(!page.body.contains("http://") && !page.body.contains("https://"));
}

#[test]
fn signed_out_every_console_url_leads_to_the_sign_in_page() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("hidden"));
    let console = Console::of(&app);
    for path in [
        "/console".to_owned(),
        "/console/services".to_owned(),
        format!("/console/services/{service}"),
        format!("/console/services/{service}/users/alice"),
        "/console/credentials".to_owned(),
        "/console/no/such/page".to_owned(),
    ] {
        let page = console.get(&path);
        assert!(page.is_sign_in_redirect(), "{path}: {}", page.status);
        assert!(!page.body.contains("hidden"), "{path}");
    }
    // A form posted without a session changes nothing and leads there too.
    let page = console.post(
        &format!(
            "/console/services/{service}/users/alice/bindings/BS{}/test-push",
            "0".repeat(32)
        ),
        &[("csrf", "x")],
        &[],
    );
    assert!(page.is_sign_in_redirect(), "{}", page.status);
}

#[test]
fn the_session_cookie_is_http_only_strict_scoped_and_secure_behind_https() {
    let app = TestApp::spawn_with_env(&[("BINDERY_PUBLIC_URL", "https://push.example.com")]);
    let mut console = Console::of(&app);
    let page = console.post(
        "/console/sign-in",
        &[
            ("username", &app.account.user),
            ("password", &app.account.password),
        ],
        &[("Origin", "https://push.example.com")],
    );
    assert_eq!(page.status, 303, "{}", page.body);
    assert_eq!(page.location.as_deref(), Some("/console/services"));
    let cookie = page.set_cookie.unwrap();
    for part in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Secure",
        "Max-Age=28800",
    ] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    // Behind https, the origin a form must come from is the public URL's.
    console.cookie = None;
    let from_plain = console.sign_in(&app.account);
    assert_eq!(from_plain.status, 403, "{}", from_plain.body);

    let plain = TestApp::spawn();
    let page = Console::of(&plain).sign_in(&plain.account);
    assert!(!page.set_cookie.unwrap().contains("Secure"));
}

#[test]
fn a_form_from_another_origin_or_without_the_sessions_token_changes_nothing() {
    let app = TestApp::spawn();
    let mut console = Console::of(&app);
    assert_eq!(console.sign_in(&app.account).status, 303);
    let token = console.form_token();
    let origin = console.origin();
    let other_port = origin
        .rsplit_once(':')
        .map(|(host, _)| format!("{host}:1"))
        .unwrap();
    for (form_token, headers, why) in [
        (
            token.as_str(),
            vec![("Origin", other_port.as_str())],
            "another port",
        ),
        (
            token.as_str(),
            vec![("Sec-Fetch-Site", "same-site")],
            "same site",
        ),
        (
            token.as_str(),
            vec![("Sec-Fetch-Site", "cross-site")],
            "cross site",
        ),
        (token.as_str(), vec![("Origin", "null")], "an opaque origin"),
        (
            "guessed",
            vec![("Origin", origin.as_str())],
            "a guessed token",
        ),
    ] {
        let page = console.post("/console/sign-out", &[("csrf", form_token)], &headers);
        assert_eq!(page.status, 403, "{why}: {}", page.body);
        assert!(page.body.contains("did not come from the console"), "{why}");
        assert_eq!(
            console.get("/console/services").status,
            200,
            "{why}: still signed in"
        );
    }
    // A form without its fields is bad input, said in a page.
    let page = console.post("/console/sign-out", &[], &[("Origin", &origin)]);
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(
        page.body.contains("The form could not be read"),
        "{}",
        page.body
    );
    // Its own form, with its token: signed out, and the cookie goes.
    let page = console.post(
        "/console/sign-out",
        &[("csrf", &token)],
        &[("Origin", &origin)],
    );
    assert_eq!(page.status, 303);
    assert_eq!(
        page.location.as_deref(),
        Some("/console/sign-in?signed_out=1")
    );
    assert!(page.set_cookie.unwrap().contains("Max-Age=0"));
    assert!(console.get("/console/services").is_sign_in_redirect());
}

#[test]
fn failed_console_sign_ins_count_in_the_apis_throttle() {
    let app = TestApp::spawn();
    let mut console = Console::of(&app);
    let wrong = Credentials {
        user: app.account.user.clone(),
        password: "0".repeat(32),
    };
    for _ in 0..20 {
        let page = console.sign_in(&wrong);
        assert_eq!(page.status, 401);
        assert!(page.body.contains("do not sign in"));
        assert!(page.set_cookie.is_none());
    }
    let page = console.sign_in(&app.account);
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(page.body.contains("Too many failed sign-ins"));
    // The same address is refused by the API too, for the same failures.
    assert_eq!(app.get("/v2/Services", Some(&app.account)).0, 429);
    assert_eq!(app.metric("bindery_auth_failures_total", &[]), 20.0);
}

#[test]
fn a_session_ends_when_its_lifetime_does() {
    let app = TestApp::spawn_with_env(&[("BINDERY_CONSOLE__SESSION_LIFETIME", "2s")]);
    let mut console = Console::of(&app);
    let page = console.sign_in(&app.account);
    assert!(page.set_cookie.unwrap().contains("Max-Age=2"));
    assert_eq!(console.get("/console/services").status, 200);
    wait_until(Duration::from_secs(20), "the session to end", || {
        console.get("/console/services").is_sign_in_redirect()
    });
}

#[test]
fn bad_addresses_get_a_page_that_says_so() {
    let app = TestApp::spawn();
    let mut console = Console::of(&app);
    console.sign_in(&app.account);
    let missing = format!("IS{}", "0".repeat(32));
    for path in [
        format!("/console/services/{missing}"),
        "/console/services/not-a-sid".to_owned(),
        format!("/console/services/{missing}/users/alice"),
        "/console/no/such/page".to_owned(),
    ] {
        let page = console.get(&path);
        assert_eq!(page.status, 404, "{path}");
        assert!(
            page.body.contains("<h1>Not found</h1>"),
            "{path}: {}",
            page.body
        );
    }
    let service = sid(&app.create_service("chat"));
    let page = console.get(&format!(
        "/console/services/{service}/users?identity=nobody"
    ));
    assert_eq!(page.status, 404);
    assert!(page.body.contains("No user with identity “nobody”"));
    let page = console.get(&format!(
        "/console/services/{service}/users/alice?before=soon"
    ));
    assert_eq!(page.status, 400, "{}", page.body);
}

#[test]
fn the_console_can_be_turned_off() {
    let app = TestApp::spawn_with_env(&[("BINDERY_CONSOLE__ENABLED", "false")]);
    let page = Console::of(&app).get("/console/sign-in");
    assert_eq!(page.status, 404);
    assert_eq!(page.header("content-type"), Some("application/json"));
}
