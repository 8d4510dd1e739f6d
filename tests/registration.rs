//! Device registration [EXT]: `POST /v2/Services/{ServiceSid}/Users/{UserSid}/Bindings`, an
//! upsert on (user, endpoint, binding type).

use serde_json::{json, Value};

use crate::support::{
    assert_error, is_twilio_date, keys, material, sid, spec_fields, user_path, TestApp,
};

#[test]
fn the_first_registration_creates_the_user_and_answers_201() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let identity = "名前 user+1@x.com";
    assert_error(&app.get_raw(&user_path(&service, identity)), 404, 50200);

    let reply = app.register_binding(
        &service,
        identity,
        &[
            ("BindingType", "apn"),
            ("Address", "apn-device-token-0001"),
            ("Endpoint", "device-1"),
        ],
    );
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert!(!reply.text.contains("apn-device-token"), "{}", reply.text);
    let binding = reply.body;
    assert_eq!(
        keys(&binding),
        spec_fields("chat.v2.service.user.user_binding"),
        "{binding}"
    );
    assert!(sid(&binding).starts_with("BS"));
    assert_eq!(binding["identity"], identity);
    assert_eq!(binding["endpoint"], "device-1");
    assert_eq!(binding["binding_type"], "apn");
    assert_eq!(binding["service_sid"], service.as_str());
    assert_eq!(binding["account_sid"], app.account.user.as_str());
    assert_eq!(binding["credential_sid"], Value::Null);
    assert_eq!(
        binding["message_types"],
        json!([
            "new_message",
            "added_to_channel",
            "invited_to_channel",
            "removed_from_channel"
        ]),
        "all four by default"
    );
    assert!(is_twilio_date(&binding["date_created"]) && is_twilio_date(&binding["date_updated"]));

    let user = app.get_raw(&user_path(&service, identity)).expect(200);
    assert_eq!(user["identity"], identity);
    assert_eq!(binding["user_sid"], user["sid"]);
    assert_eq!(
        binding["url"],
        app.url(&format!(
            "/v2/Services/{service}/Users/{}/Bindings/{}",
            sid(&user),
            sid(&binding)
        ))
        .as_str(),
        "the url names the user by SID although the request named an identity"
    );
    app.verify();
}

#[test]
fn registering_the_same_endpoint_again_answers_200_with_the_same_sid_and_a_new_address() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let first = app
        .register_binding(
            &service,
            "alice",
            &[
                ("BindingType", "fcm"),
                ("Address", "old-token"),
                ("Endpoint", "phone"),
            ],
        )
        .expect(201);
    let credential = sid(&app.create_credential_of("fcm", &[]));
    let second = app.register_binding(
        &service,
        "alice",
        &[
            ("BindingType", "fcm"),
            ("Address", "new-token"),
            ("Endpoint", "phone"),
            ("CredentialSid", &credential),
            ("MessageTypes", "new_message"),
        ],
    );
    assert!(!second.text.contains("new-token"), "{}", second.text);
    let second = second.expect(200);
    assert_eq!(second["sid"], first["sid"], "updated in place");
    assert_eq!(second["date_created"], first["date_created"]);
    assert_eq!(second["credential_sid"], credential.as_str());
    assert_eq!(second["message_types"], json!(["new_message"]));
    assert_eq!(app.user_binding_sids(&service, "alice"), [sid(&first)]);

    // The same endpoint with another type is another binding.
    let apn = app
        .register_binding(
            &service,
            "alice",
            &[
                ("BindingType", "apn"),
                ("Address", "new-token"),
                ("Endpoint", "phone"),
            ],
        )
        .expect(201);
    assert_ne!(apn["sid"], first["sid"]);

    // The address was refreshed: the old token is free, the new one is held by alice's binding.
    app.register_binding(
        &service,
        "bob",
        &[("BindingType", "fcm"), ("Address", "old-token")],
    )
    .expect(201);
    assert_eq!(
        app.user_binding_sids(&service, "alice"),
        [sid(&first), sid(&apn)],
        "the old address no longer belongs to alice"
    );
    app.register_binding(
        &service,
        "bob",
        &[("BindingType", "fcm"), ("Address", "new-token")],
    )
    .expect(201);
    assert_eq!(
        app.user_binding_sids(&service, "alice"),
        [sid(&apn)],
        "the new address was alice's, so it moved to bob"
    );
    app.verify();
}

#[test]
fn without_an_endpoint_the_same_address_updates_one_binding() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let form = [("BindingType", "gcm"), ("Address", "gcm-token")];
    let first = app.register_binding(&service, "carol", &form).expect(201);
    assert!(
        !first["endpoint"].as_str().unwrap_or("").is_empty(),
        "{first}"
    );
    let again = app.register_binding(&service, "carol", &form).expect(200);
    assert_eq!(again["sid"], first["sid"]);
    assert_eq!(again["endpoint"], first["endpoint"]);
    app.verify();
}

#[test]
fn an_address_registered_by_another_user_moves_to_them() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let other_service = sid(&app.create_service("other"));
    let token = [("BindingType", "apn"), ("Address", "shared-device-token")];
    let alices = app.register_binding(&service, "alice", &token).expect(201);
    let fcm = app
        .register_binding(
            &service,
            "alice",
            &[("BindingType", "fcm"), ("Address", "shared-device-token")],
        )
        .expect(201);
    let elsewhere = app
        .register_binding(&other_service, "carol", &token)
        .expect(201);

    let bobs = app.register_binding(&service, "bob", &token).expect(201);
    assert_ne!(bobs["sid"], alices["sid"]);
    assert_eq!(
        app.user_binding_sids(&service, "alice"),
        [sid(&fcm)],
        "alice's apn binding is gone; her fcm binding of the same token is another type"
    );
    assert_eq!(app.user_binding_sids(&service, "bob"), [sid(&bobs)]);
    assert_error(
        &app.get_raw(&format!(
            "{}/Bindings/{}",
            user_path(&service, "alice"),
            sid(&alices)
        )),
        404,
        20404,
    );
    assert_error(
        &app.get_raw(&format!("/v2/Services/{service}/Bindings/{}", sid(&alices))),
        404,
        20404,
    );
    assert_eq!(
        app.user_binding_sids(&other_service, "carol"),
        [sid(&elsewhere)],
        "another service is another registry"
    );
    app.verify();
}

#[test]
fn the_per_user_limit_answers_409_naming_the_limit() {
    let app = TestApp::spawn_with_env(&[("BINDERY_BINDINGS__PER_USER_LIMIT", "3")]);
    let service = sid(&app.create_service("chat"));
    for i in 0..3 {
        let address = format!("token-{i}");
        app.register_binding(
            &service,
            "dana",
            &[("BindingType", "fcm"), ("Address", &address)],
        )
        .expect(201);
    }
    let fourth = app.register_binding(
        &service,
        "dana",
        &[("BindingType", "fcm"), ("Address", "token-3")],
    );
    assert_error(&fourth, 409, 20001);
    let message = fourth.body["message"].as_str().unwrap();
    assert!(message.contains('3'), "the limit is named: {message}");
    assert_eq!(app.user_binding_sids(&service, "dana").len(), 3);

    // Refreshing a binding the user holds is no new binding, and another user has a limit of
    // their own.
    app.register_binding(
        &service,
        "dana",
        &[("BindingType", "fcm"), ("Address", "token-0")],
    )
    .expect(200);
    app.register_binding(
        &service,
        "erin",
        &[("BindingType", "fcm"), ("Address", "token-3")],
    )
    .expect(201);
    app.verify();
}

/// A registration form.
type Form<'a> = &'a [(&'a str, &'a str)];

/// A push address that no answer may repeat, not even an error.
const SECRET_ADDRESS: &str = "secret-device-token-9d41c2";

#[test]
fn malformed_registrations_are_refused_and_write_nothing() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let other = app.other_account();
    let theirs = sid(&app
        .post_as(
            &other,
            "/v2/Credentials",
            &material::credential_form("apn").pairs(),
        )
        .expect(201));
    let missing_credential = format!("CR{}", "0".repeat(32));
    let cases: &[(Form, u16, u64)] = &[
        (&[("Address", SECRET_ADDRESS)], 400, 20001),
        (&[("BindingType", "apn")], 400, 20001),
        (&[("BindingType", "apn"), ("Address", "")], 400, 20001),
        (
            &[("BindingType", "webpush"), ("Address", SECRET_ADDRESS)],
            400,
            50209,
        ),
        (
            &[("BindingType", "APN"), ("Address", SECRET_ADDRESS)],
            400,
            50209,
        ),
        (
            &[
                ("BindingType", "apn"),
                ("BindingType", "fcm"),
                ("Address", SECRET_ADDRESS),
            ],
            400,
            20001,
        ),
        (
            &[
                ("BindingType", "apn"),
                ("Address", SECRET_ADDRESS),
                ("Address", "another-secret-address"),
            ],
            400,
            20001,
        ),
        (
            &[
                ("BindingType", "apn"),
                ("Address", SECRET_ADDRESS),
                ("MessageTypes", "new_message"),
                ("MessageTypes", "typing"),
            ],
            400,
            20001,
        ),
        (
            &[
                ("BindingType", "apn"),
                ("Address", SECRET_ADDRESS),
                ("CredentialSid", "CRnope"),
            ],
            400,
            20001,
        ),
        (
            &[
                ("BindingType", "apn"),
                ("Address", SECRET_ADDRESS),
                ("CredentialSid", &missing_credential),
            ],
            404,
            20404,
        ),
        (
            &[
                ("BindingType", "apn"),
                ("Address", SECRET_ADDRESS),
                ("CredentialSid", &theirs),
            ],
            404,
            20404,
        ),
    ];
    for (form, status, code) in cases {
        let reply = app.register_binding(&service, "frank", form);
        assert_error(&reply, *status, *code);
        assert!(
            !reply.text.contains(SECRET_ADDRESS),
            "an error echoed the push address: {}",
            reply.text
        );
    }
    assert_error(&app.get_raw(&user_path(&service, "frank")), 404, 50200);
    let sid_like = format!("US{}", "f".repeat(32));
    let form = [("BindingType", "apn"), ("Address", SECRET_ADDRESS)];
    assert_error(
        &app.register_binding(&service, &sid_like, &form),
        404,
        50200,
    );
    let too_long = "x".repeat(257);
    assert_error(
        &app.register_binding(&service, &too_long, &form),
        400,
        50207,
    );
    let missing_service = format!("IS{}", "0".repeat(32));
    assert_error(
        &app.register_binding(&missing_service, "frank", &form),
        404,
        50050,
    );
    let listed = app.walk(&format!("/v2/Services/{service}/Bindings"), "bindings");
    assert_eq!(listed, Vec::<Value>::new(), "nothing was registered");
    app.verify();
}

#[test]
fn a_credential_of_the_account_and_chosen_message_types_are_kept() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let credential = sid(&app.create_credential_of("apn", &[("Sandbox", "true")]));
    let binding = app
        .register_binding(
            &service,
            "gina",
            &[
                ("BindingType", "apn"),
                ("Address", "apn-token-gina"),
                ("CredentialSid", &credential),
                ("MessageTypes", "removed_from_channel"),
                ("MessageTypes", "new_message"),
            ],
        )
        .expect(201);
    assert_eq!(binding["credential_sid"], credential.as_str());
    assert_eq!(
        binding["message_types"],
        json!(["new_message", "removed_from_channel"])
    );
    let fetched = app
        .get_raw(&format!(
            "/v2/Services/{service}/Bindings/{}",
            sid(&binding)
        ))
        .expect(200);
    assert_eq!(fetched["credential_sid"], credential.as_str());
    assert_eq!(fetched["message_types"], binding["message_types"]);

    // Deleting the credential is allowed; the binding keeps naming it.
    assert_eq!(
        app.delete(&format!("/v2/Credentials/{credential}")).status,
        204
    );
    let after = app
        .get_raw(&format!(
            "/v2/Services/{service}/Bindings/{}",
            sid(&binding)
        ))
        .expect(200);
    assert_eq!(after["credential_sid"], credential.as_str());
    app.verify();
}
