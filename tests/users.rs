//! Users: `/v2/Services/{ServiceSid}/Users[/{Sid}]`, addressed by User SID or by identity.

use serde_json::{json, Value};

use crate::support::{
    assert_error, is_twilio_date, keys, segment, sid, spec_fields, user_path, TestApp,
};

/// Identities as chat backends use them; the helper library sends `@` and `+` raw.
const IDENTITIES: [&str; 6] = [
    "alice@example.com",
    "user+1@x.com",
    "a b",
    "Zoë Ünïcode",
    "名前",
    "plus+and space@é",
];

#[test]
fn create_answers_201_with_every_spec_field_and_a_url_by_sid() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let reply = app.post(
        &format!("/v2/Services/{service}/Users"),
        &[
            ("Identity", "alice@example.com"),
            ("FriendlyName", "Alice"),
            ("Attributes", r#"{"team":"blue","n":1}"#),
            ("RoleSid", &format!("RL{}", "a".repeat(32))),
        ],
    );
    assert_eq!(reply.status, 201, "{}", reply.text);
    let user = reply.body;
    assert_eq!(keys(&user), spec_fields("chat.v2.service.user"), "{user}");
    let user_sid = sid(&user);
    assert!(user_sid.starts_with("US") && user_sid.len() == 34);
    assert_eq!(user["identity"], "alice@example.com");
    assert_eq!(user["friendly_name"], "Alice");
    assert_eq!(user["service_sid"], service.as_str());
    assert_eq!(user["account_sid"], app.account.user.as_str());
    assert_eq!(user["role_sid"], format!("RL{}", "a".repeat(32)));
    let attributes: Value =
        serde_json::from_str(user["attributes"].as_str().expect("a JSON string")).unwrap();
    assert_eq!(attributes, json!({"team": "blue", "n": 1}));
    assert_eq!(user["is_online"], Value::Null);
    assert_eq!(user["is_notifiable"], false, "no binding yet");
    assert_eq!(user["joined_channels_count"], 0);
    assert!(is_twilio_date(&user["date_created"]) && is_twilio_date(&user["date_updated"]));
    let url = app.url(&format!("/v2/Services/{service}/Users/{user_sid}"));
    assert_eq!(user["url"], url.as_str());
    assert_eq!(
        user["links"],
        json!({"user_channels": format!("{url}/Channels"),
               "user_bindings": format!("{url}/Bindings")})
    );
    app.verify();
}

#[test]
fn identities_with_at_plus_spaces_and_non_ascii_letters_are_fetched_by_path() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    for identity in IDENTITIES {
        let made = app.create_user(&service, identity);
        assert_eq!(made["identity"], identity);
        let user_sid = sid(&made);

        let by_identity = app.get_raw(&user_path(&service, identity));
        let by_identity = by_identity.expect(200);
        assert_eq!(by_identity["sid"], user_sid.as_str(), "{identity}");
        assert_eq!(by_identity["identity"], identity);
        let url = app.url(&format!("/v2/Services/{service}/Users/{user_sid}"));
        assert_eq!(by_identity["url"], url.as_str(), "url names the SID");

        let by_sid = app.get_raw(&user_path(&service, &user_sid)).expect(200);
        assert_eq!(by_sid, by_identity);
    }
    // `+` in a path is a plus, never a space; identities are case-sensitive.
    assert_error(
        &app.get_raw(&format!("/v2/Services/{service}/Users/a+b")),
        404,
        50200,
    );
    assert_error(
        &app.get_raw(&format!("/v2/Services/{service}/Users/ALICE@example.com")),
        404,
        50200,
    );
    // A percent-encoded `@` and `+` name the same user as the raw characters.
    let encoded = app
        .get_raw(&format!("/v2/Services/{service}/Users/user%2B1%40x.com"))
        .expect(200);
    assert_eq!(encoded["identity"], "user+1@x.com");

    let listed = app.walk(&format!("/v2/Services/{service}/Users"), "users");
    let identities: Vec<&Value> = listed.iter().map(|u| &u["identity"]).collect();
    assert_eq!(identities, IDENTITIES, "creation order");
    for user in &listed {
        assert_eq!(user["is_notifiable"], Value::Null, "null in lists: {user}");
        assert_eq!(keys(user), spec_fields("chat.v2.service.user"));
    }
    app.verify();
}

#[test]
fn create_refuses_duplicate_missing_sid_like_and_long_identities() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let users = format!("/v2/Services/{service}/Users");
    app.create_user(&service, "taken");

    assert_error(&app.post(&users, &[("Identity", "taken")]), 409, 50201);
    assert_error(&app.post(&users, &[]), 400, 50204);
    assert_error(&app.post(&users, &[("Identity", "")]), 400, 50204);
    assert_error(
        &app.post(&users, &[("FriendlyName", "no identity")]),
        400,
        50204,
    );
    let sid_like = format!("US{}", "0123456789abcdef".repeat(2));
    assert_error(&app.post(&users, &[("Identity", &sid_like)]), 400, 50206);
    let upper_sid_like = format!("US{}", "0123456789ABCDEF".repeat(2));
    assert_error(
        &app.post(&users, &[("Identity", &upper_sid_like)]),
        400,
        50206,
    );

    // 256 UTF-8 bytes is the limit: 128 two-byte letters pass, 129 (still few characters) do not.
    let at_limit = "é".repeat(128);
    app.create_user(&service, &at_limit);
    let over = "é".repeat(129);
    assert_error(&app.post(&users, &[("Identity", &over)]), 400, 50207);
    let over_ascii = "x".repeat(257);
    assert_error(&app.post(&users, &[("Identity", &over_ascii)]), 400, 50207);

    let bad_json = [("Identity", "bob"), ("Attributes", "{not json")];
    assert_error(&app.post(&users, &bad_json), 400, 20001);
    let bad_role = [("Identity", "bob"), ("RoleSid", "RL123")];
    assert_error(&app.post(&users, &bad_role), 400, 20001);
    let twice = [("Identity", "bob"), ("Identity", "carol")];
    assert_error(&app.post(&users, &twice), 400, 20001);

    let listed = app.walk(&users, "users");
    assert_eq!(listed.len(), 2, "only the two valid users were made");
    app.verify();
}

#[test]
fn is_notifiable_is_true_once_the_user_has_a_binding() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let user = app.create_user(&service, "dana");
    let path = user_path(&service, "dana");
    assert_eq!(app.get_raw(&path).expect(200)["is_notifiable"], false);
    let binding = app
        .register_binding(
            &service,
            "dana",
            &[("BindingType", "fcm"), ("Address", "fcm-token-dana")],
        )
        .expect(201);
    assert_eq!(binding["user_sid"], user["sid"]);
    let fetched = app.get_raw(&path).expect(200);
    assert_eq!(fetched["is_notifiable"], true, "{fetched}");
    let by_sid = app.get_raw(&user_path(&service, &sid(&user))).expect(200);
    assert_eq!(by_sid["is_notifiable"], true);
    // Any one-user body says so, not only a fetch; only lists leave it null.
    let updated = app.post(&path, &[("FriendlyName", "Dana")]).expect(200);
    assert_eq!(updated["is_notifiable"], true, "{updated}");
    let listed = app
        .get_raw(&format!("/v2/Services/{service}/Users"))
        .expect(200);
    assert_eq!(listed["users"][0]["is_notifiable"], Value::Null);
    app.verify();
}

/// A user body but `is_notifiable`, which `is_notifiable_is_true_once_the_user_has_a_binding`
/// looks at on its own.
fn without_notifiable(user: &Value) -> Value {
    let mut user = user.clone();
    user.as_object_mut().unwrap().remove("is_notifiable");
    user
}

#[test]
fn update_by_identity_changes_the_given_fields_only() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let identity = "Zoë Ünïcode";
    let made = app.post(
        &format!("/v2/Services/{service}/Users"),
        &[("Identity", identity), ("FriendlyName", "Zoe")],
    );
    let made = made.expect(201);
    let path = user_path(&service, identity);
    let role = format!("RL{}", "b".repeat(32));

    let updated = app
        .post(
            &path,
            &[
                ("Attributes", r#"{"tz":"Europe/Paris"}"#),
                ("RoleSid", &role),
            ],
        )
        .expect(200);
    assert_eq!(updated["sid"], made["sid"]);
    assert_eq!(updated["friendly_name"], "Zoe", "not named, not changed");
    assert_eq!(updated["role_sid"], role.as_str());
    let attributes: Value = serde_json::from_str(updated["attributes"].as_str().unwrap()).unwrap();
    assert_eq!(attributes, json!({"tz": "Europe/Paris"}));
    assert_eq!(updated["identity"], identity);
    assert_eq!(keys(&updated), spec_fields("chat.v2.service.user"));
    assert_eq!(
        updated["url"],
        app.url(&format!("/v2/Services/{service}/Users/{}", sid(&made)))
            .as_str()
    );

    let renamed = app
        .post(
            &user_path(&service, &sid(&made)),
            &[("FriendlyName", "Zoë")],
        )
        .expect(200);
    assert_eq!(renamed["friendly_name"], "Zoë");
    let fetched = app.get_raw(&path).expect(200);
    assert_eq!(without_notifiable(&fetched), without_notifiable(&renamed));

    assert_error(&app.post(&path, &[("Attributes", "[1,")]), 400, 20001);
    assert_error(&app.post(&path, &[("RoleSid", "nope")]), 400, 20001);
    assert_eq!(app.get_raw(&path).expect(200), fetched, "nothing changed");
    assert_error(
        &app.post(&user_path(&service, "nobody"), &[("FriendlyName", "x")]),
        404,
        50200,
    );
    app.verify();
}

#[test]
fn delete_answers_204_and_removes_the_users_bindings() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let identity = "user+1@x.com";
    let binding = app
        .register_binding(
            &service,
            identity,
            &[("BindingType", "apn"), ("Address", "apn-token-1")],
        )
        .expect(201);
    let other = app
        .register_binding(
            &service,
            "someone else",
            &[("BindingType", "apn"), ("Address", "apn-token-2")],
        )
        .expect(201);

    let deleted = app.delete(&user_path(&service, identity));
    assert_eq!(deleted.status, 204);
    assert_eq!(deleted.text, "");

    assert_error(&app.get_raw(&user_path(&service, identity)), 404, 50200);
    assert_error(
        &app.get_raw(&user_path(&service, binding["user_sid"].as_str().unwrap())),
        404,
        50200,
    );
    assert_error(
        &app.get_raw(&format!(
            "/v2/Services/{service}/Bindings/{}",
            sid(&binding)
        )),
        404,
        20404,
    );
    let remaining = app.walk(&format!("/v2/Services/{service}/Bindings"), "bindings");
    let remaining: Vec<String> = remaining.iter().map(sid).collect();
    assert_eq!(remaining, [sid(&other)]);
    assert_error(&app.delete(&user_path(&service, identity)), 404, 50200);

    // The identity is free again, for a new user with a new SID.
    let again = app.create_user(&service, identity);
    assert_ne!(again["sid"], binding["user_sid"]);
    assert_eq!(
        app.user_binding_sids(&service, identity),
        Vec::<String>::new()
    );
    app.verify();
}

#[test]
fn users_of_a_missing_or_malformed_service_are_not_found() {
    let app = TestApp::spawn();
    let missing = format!("IS{}", "0".repeat(32));
    assert_error(
        &app.get_raw(&format!("/v2/Services/{missing}/Users")),
        404,
        50050,
    );
    assert_error(
        &app.post(
            &format!("/v2/Services/{missing}/Users"),
            &[("Identity", "a")],
        ),
        404,
        50050,
    );
    assert_error(&app.get_raw(&user_path(&missing, "a")), 404, 50050);
    assert_error(
        &app.get_raw(&format!("/v2/Services/ISnope/Users/{}", segment("a b"))),
        404,
        20404,
    );
    app.verify();
}
