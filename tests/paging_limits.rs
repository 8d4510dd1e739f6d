//! `Page`, `PageSize` and `PageToken` at and past the edges of their integers: every value
//! answers a page (a size clamped to the list's max) or Twilio's 400, never a dead worker.

use serde_json::Value;

use crate::support::{assert_error, query_pairs, sid, user_bindings_path, user_path, TestApp};

const U64_MAX: &str = "18446744073709551615";
const I64_MAX: &str = "9223372036854775807";
const I64_MAX_LESS_ONE: &str = "9223372036854775806";

/// Every list route, each holding at least two items, with the largest page it answers.
fn lists(app: &TestApp) -> Vec<(String, &'static str, u64)> {
    let service = sid(&app.create_service("one"));
    app.create_service("two");
    app.create_user(&service, "bob");
    let phone = [("BindingType", "apn"), ("Endpoint", "alice-phone")];
    let binding = sid(&app
        .register_binding(&service, "alice", &[phone[0], phone[1], ("Address", "a-1")])
        .expect(201));
    // The same device again, with a new token: a second event in the binding's history.
    app.register_binding(&service, "alice", &[phone[0], phone[1], ("Address", "a-2")])
        .expect(200);
    app.register_binding(
        &service,
        "alice",
        &[("BindingType", "fcm"), ("Address", "a-3")],
    )
    .expect(201);
    for name in ["c1", "c2"] {
        app.create_credential_of("apn", &[("FriendlyName", name)]);
    }
    vec![
        ("/v2/Services".to_owned(), "services", 100),
        ("/v2/Credentials".to_owned(), "credentials", 1000),
        (format!("/v2/Services/{service}/Users"), "users", 100),
        (format!("/v2/Services/{service}/Bindings"), "bindings", 50),
        (user_bindings_path(&service, "alice"), "bindings", 50),
        (
            format!("{}/History", user_path(&service, "alice")),
            "events",
            1000,
        ),
        (
            format!("/v2/Services/{service}/Bindings/{binding}/History"),
            "events",
            1000,
        ),
    ]
}

/// How many items the list at `path` holds (all fit in its first page).
fn count(app: &TestApp, path: &str, key: &str) -> usize {
    let page = app.get_raw(path).expect(200);
    assert_eq!(
        page["meta"]["next_page_url"],
        Value::Null,
        "{path}: one page"
    );
    let items = page[key].as_array().map_or(0, Vec::len);
    assert!(items >= 2, "{path}: {page}");
    items
}

/// The value of `name` in the query of `url`, which must have exactly one.
#[track_caller]
fn query_value(url: &Value, name: &str) -> String {
    let url = url.as_str().unwrap_or_else(|| panic!("not a URL: {url}"));
    let values: Vec<String> = query_pairs(url)
        .into_iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values.len(), 1, "{name} in {url}");
    values[0].clone()
}

#[test]
fn a_page_past_a_signed_64_bit_integer_is_refused_on_every_list() {
    let app = TestApp::spawn();
    for (path, key, _) in lists(&app) {
        count(&app, &path, key);
        // The page after u64::MAX cannot be numbered; the largest page numbers are refused.
        for page in [U64_MAX, "18446744073709551616", "9223372036854775808"] {
            let reply = app.get_raw(&format!("{path}?PageSize=1&Page={page}"));
            assert_error(&reply, 400, 20001);
            let message = reply.body["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("Page") && message.contains(I64_MAX),
                "{path}: {message}"
            );
        }
        // The largest accepted page leads on to a page that is accepted too, and back.
        let last = app
            .get_raw(&format!("{path}?PageSize=1&Page={I64_MAX}"))
            .expect(200);
        let meta = &last["meta"];
        assert_eq!(meta["page"].as_u64(), Some(i64::MAX as u64), "{path}");
        assert_eq!(
            query_value(&meta["next_page_url"], "Page"),
            I64_MAX,
            "{path}"
        );
        let next = app.follow(&meta["next_page_url"]).expect(200);
        assert_eq!(
            next[key].as_array().map(Vec::len),
            Some(1),
            "{path}: {next}"
        );
        assert_ne!(next[key][0], last[key][0], "{path}: the next page moved on");
        assert_eq!(
            query_value(&next["meta"]["previous_page_url"], "Page"),
            I64_MAX_LESS_ONE,
            "{path}"
        );
        let back = app.follow(&next["meta"]["previous_page_url"]).expect(200);
        assert_eq!(back[key], last[key], "{path}");
    }
    app.verify();
}

#[test]
fn a_page_size_past_any_integer_is_clamped_to_the_lists_max() {
    let app = TestApp::spawn();
    for (path, key, max) in lists(&app) {
        let items = count(&app, &path, key);
        for size in [
            U64_MAX,
            I64_MAX,
            "18446744073709551616",
            "340282366920938463463374607431768211456",
            &"9".repeat(400),
        ] {
            let page = app.get_raw(&format!("{path}?PageSize={size}")).expect(200);
            assert_eq!(page["meta"]["page_size"].as_u64(), Some(max), "{path}");
            assert_eq!(
                query_value(&page["meta"]["url"], "PageSize"),
                max.to_string()
            );
            assert_eq!(page[key].as_array().map(Vec::len), Some(items), "{path}");
        }
        for bad in ["0", "-1", &format!("-{U64_MAX}"), "1e3", "0x10", ""] {
            let reply = app.get_raw(&format!("{path}?PageSize={bad}"));
            assert_error(&reply, 400, 20001);
        }
        for bad in ["-1", &format!("-{U64_MAX}"), "1.0", "0x1", ""] {
            assert_error(&app.get_raw(&format!("{path}?Page={bad}")), 400, 20001);
        }
    }
    app.verify();
}

#[test]
fn a_history_page_token_names_a_position_that_fits_the_log() {
    let app = TestApp::spawn();
    let histories: Vec<String> = lists(&app)
        .into_iter()
        .filter(|(_, key, _)| *key == "events")
        .map(|(path, _, _)| path)
        .collect();
    assert_eq!(histories.len(), 2);
    for path in histories {
        let first = app.get_raw(&format!("{path}?PageSize=1")).expect(200);
        let token = query_value(&first["meta"]["next_page_url"], "PageToken");
        let second = app.follow(&first["meta"]["next_page_url"]).expect(200);
        assert_ne!(second["events"][0], first["events"][0], "{path}: {token}");
        for bad in [
            format!("PA{U64_MAX}"),
            format!("PB{U64_MAX}"),
            format!("PA{}", "9".repeat(40)),
            "PA9223372036854775808".to_owned(),
            "PA-1".to_owned(),
            "PAnot-a-position".to_owned(),
        ] {
            let reply = app.get_raw(&format!("{path}?PageToken={bad}"));
            assert_error(&reply, 400, 20001);
            assert!(
                reply.body["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("PageToken")),
                "{}",
                reply.text
            );
        }
        // The largest position is a position: after it there is nothing yet.
        let past = app
            .get_raw(&format!("{path}?PageToken=PA{I64_MAX}"))
            .expect(200);
        assert_eq!(past["events"], Value::Array(Vec::new()), "{path}");
    }
    app.verify();
}
