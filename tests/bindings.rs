//! Bindings under both paths: the user's (`…/Users/{UserSid}/Bindings[/{Sid}]`) and the
//! service's (`/v2/Services/{ServiceSid}/Bindings[/{Sid}]`), one binding visible under both.

use serde_json::Value;

use crate::support::{
    assert_error, form, keys, segment, sid, spec_fields, user_bindings_path, user_path, Reply,
    TestApp,
};

/// Push addresses that must never come back in a body.
const ADDRESSES: [&str; 4] = [
    "ADDRESS-apn-7f3a9c",
    "ADDRESS-fcm-2b8e11",
    "ADDRESS-gcm-55d0aa",
    "ADDRESS-bob-e0e0e0",
];

/// A service where "alice@example.com" has one binding of each type and "bob smith" one fcm.
struct Fixture {
    app: TestApp,
    service: String,
    alice: String,
    apn: String,
    fcm: String,
    gcm: String,
    bob: String,
}

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob smith";

fn fixture() -> Fixture {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let register = |user: &str, binding_type: &str, address: &str| {
        let reply = app.register_binding(
            &service,
            user,
            &[("BindingType", binding_type), ("Address", address)],
        );
        assert_no_address(&reply);
        sid(&reply.expect(201))
    };
    let apn = register(ALICE, "apn", ADDRESSES[0]);
    let fcm = register(ALICE, "fcm", ADDRESSES[1]);
    let gcm = register(ALICE, "gcm", ADDRESSES[2]);
    let bob = register(BOB, "fcm", ADDRESSES[3]);
    let alice = sid(&app.get_raw(&user_path(&service, ALICE)).expect(200));
    Fixture {
        app,
        service,
        alice,
        apn,
        fcm,
        gcm,
        bob,
    }
}

#[track_caller]
fn assert_no_address(reply: &Reply) {
    for address in ADDRESSES {
        assert!(
            !reply.text.contains(address),
            "the push address leaked: {}",
            reply.text
        );
    }
    assert!(!reply.text.contains("ADDRESS-"), "{}", reply.text);
    if let Some(object) = reply.body.as_object() {
        assert!(!object.contains_key("address"), "{}", reply.text);
    }
}

fn sids(list: &Value) -> Vec<String> {
    list["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(sid)
        .collect()
}

#[test]
fn the_user_binding_list_filters_by_repeated_binding_type() {
    let f = fixture();
    let (app, service) = (&f.app, &f.service);
    for user in [ALICE, f.alice.as_str()] {
        let all = app.list_user_bindings(service, user, "");
        assert_no_address(&all);
        let all = all.expect(200);
        assert_eq!(all["meta"]["key"], "bindings");
        assert_eq!(sids(&all), [f.apn.as_str(), f.fcm.as_str(), f.gcm.as_str()]);
        for binding in all["bindings"].as_array().unwrap() {
            assert_eq!(
                keys(binding),
                spec_fields("chat.v2.service.user.user_binding")
            );
            assert_eq!(binding["user_sid"], f.alice.as_str());
            assert_eq!(binding["identity"], ALICE);
        }

        let two = app
            .list_user_bindings(service, user, "BindingType=apn&BindingType=gcm")
            .expect(200);
        assert_eq!(sids(&two), [f.apn.as_str(), f.gcm.as_str()]);
        let one = app
            .list_user_bindings(service, user, "BindingType=fcm")
            .expect(200);
        assert_eq!(
            sids(&one),
            [f.fcm.as_str()],
            "bob's fcm binding is not alice's"
        );
        let bogus = app.list_user_bindings(service, user, "BindingType=apn&BindingType=voip");
        assert_error(&bogus, 400, 50209);
    }
    assert_error(&app.list_user_bindings(service, "nobody", ""), 404, 50200);
    f.app.verify();
}

#[test]
fn fetch_and_delete_through_the_user_path() {
    let f = fixture();
    let (app, service) = (&f.app, &f.service);
    let by_identity = format!("{}/{}", user_bindings_path(service, ALICE), f.fcm);
    let by_sid = format!("{}/{}", user_bindings_path(service, &f.alice), f.fcm);
    let fetched = app.get_raw(&by_identity);
    assert_no_address(&fetched);
    let fetched = fetched.expect(200);
    assert_eq!(sid(&fetched), f.fcm);
    assert_eq!(
        keys(&fetched),
        spec_fields("chat.v2.service.user.user_binding")
    );
    assert_eq!(
        fetched["url"],
        app.url(&by_sid).as_str(),
        "the url names the user by SID"
    );
    assert_eq!(app.get_raw(&by_sid).expect(200), fetched);

    let deleted = app.delete(&by_identity);
    assert_eq!(deleted.status, 204);
    assert_eq!(deleted.text, "");
    assert_error(&app.get_raw(&by_sid), 404, 20404);
    assert_error(&app.delete(&by_sid), 404, 20404);
    assert_error(
        &app.get_raw(&format!("/v2/Services/{service}/Bindings/{}", f.fcm)),
        404,
        20404,
    );
    assert_eq!(
        app.user_binding_sids(service, ALICE),
        [f.apn.as_str(), f.gcm.as_str()]
    );
    app.verify();
}

#[test]
fn a_binding_of_another_user_is_not_found_through_this_users_path() {
    let f = fixture();
    let (app, service) = (&f.app, &f.service);
    for user in [ALICE, f.alice.as_str()] {
        let path = format!("{}/{}", user_bindings_path(service, user), f.bob);
        assert_error(&app.get_raw(&path), 404, 20404);
        assert_error(&app.delete(&path), 404, 20404);
    }
    let bobs = format!("{}/{}", user_bindings_path(service, BOB), f.bob);
    assert_eq!(
        sid(&app.get_raw(&bobs).expect(200)),
        f.bob,
        "bob's binding survived"
    );
    let missing = format!(
        "{}/BS{}",
        user_bindings_path(service, ALICE),
        "0".repeat(32)
    );
    assert_error(&app.get_raw(&missing), 404, 20404);
    let malformed = format!("{}/BSxyz", user_bindings_path(service, ALICE));
    assert_error(&app.get_raw(&malformed), 404, 20404);
    assert_error(&app.delete(&malformed), 404, 20404);
    let no_user = format!("{}/{}", user_bindings_path(service, "nobody"), f.bob);
    assert_error(&app.get_raw(&no_user), 404, 50200);
    app.verify();
}

#[test]
fn the_service_path_shows_the_same_binding_linked_to_its_user_by_identity() {
    let f = fixture();
    let (app, service) = (&f.app, &f.service);
    let user_binding = app
        .get_raw(&format!("{}/{}", user_bindings_path(service, BOB), f.bob))
        .expect(200);
    let path = format!("/v2/Services/{service}/Bindings/{}", f.bob);
    let fetched = app.get_raw(&path);
    assert_no_address(&fetched);
    let fetched = fetched.expect(200);
    assert_eq!(keys(&fetched), spec_fields("chat.v2.service.binding"));
    assert!(!keys(&fetched).contains("user_sid"));
    for field in [
        "sid",
        "account_sid",
        "service_sid",
        "date_created",
        "date_updated",
        "endpoint",
        "identity",
        "credential_sid",
        "binding_type",
        "message_types",
    ] {
        assert_eq!(fetched[field], user_binding[field], "{field}");
    }
    assert_eq!(fetched["url"], app.url(&path).as_str());
    let link = app.url(&user_path(service, BOB));
    assert_eq!(fetched["links"]["user"], link.as_str());
    assert!(link.ends_with("/Users/bob%20smith"), "{link}");
    let linked = app.follow(&fetched["links"]["user"]).expect(200);
    assert_eq!(linked["identity"], BOB, "the link leads to the user");

    let listed = app.get_raw(&format!("/v2/Services/{service}/Bindings"));
    assert_no_address(&listed);
    let listed = listed.expect(200);
    assert_eq!(listed["meta"]["key"], "bindings");
    assert_eq!(
        sids(&listed),
        [
            f.apn.as_str(),
            f.fcm.as_str(),
            f.gcm.as_str(),
            f.bob.as_str()
        ]
    );
    for binding in listed["bindings"].as_array().unwrap() {
        assert_eq!(keys(binding), spec_fields("chat.v2.service.binding"));
        let identity = binding["identity"].as_str().unwrap();
        assert_eq!(
            binding["links"]["user"],
            app.url(&format!(
                "/v2/Services/{service}/Users/{}",
                segment(identity)
            ))
            .as_str()
        );
    }
    app.verify();
}

#[test]
fn the_service_list_filters_by_repeated_binding_type_and_identity() {
    let f = fixture();
    let (app, service) = (&f.app, &f.service);
    let list = |query: &str| app.get_raw(&format!("/v2/Services/{service}/Bindings?{query}"));
    assert_eq!(
        sids(&list("BindingType=fcm").expect(200)),
        [f.fcm.as_str(), f.bob.as_str()]
    );
    assert_eq!(
        sids(&list("BindingType=fcm&BindingType=apn").expect(200)),
        [f.apn.as_str(), f.fcm.as_str(), f.bob.as_str()]
    );
    let alice = form(&[("Identity", ALICE)]);
    assert_eq!(
        sids(&list(&alice).expect(200)),
        [f.apn.as_str(), f.fcm.as_str(), f.gcm.as_str()]
    );
    assert_eq!(
        sids(&list("Identity=bob%20smith&Identity=alice%40example.com").expect(200)),
        [
            f.apn.as_str(),
            f.fcm.as_str(),
            f.gcm.as_str(),
            f.bob.as_str()
        ]
    );
    assert_eq!(
        sids(&list("Identity=bob+smith&BindingType=fcm").expect(200)),
        [f.bob.as_str()],
        "in a query string `+` is a space"
    );
    assert_eq!(
        sids(&list("Identity=nobody").expect(200)),
        Vec::<String>::new()
    );
    assert_error(&list("BindingType=sms"), 400, 50209);
    app.verify();
}

#[test]
fn deleting_under_the_service_path_removes_it_from_the_user_path() {
    let f = fixture();
    let (app, service) = (&f.app, &f.service);
    let deleted = app.delete(&format!("/v2/Services/{service}/Bindings/{}", f.gcm));
    assert_eq!(deleted.status, 204);
    assert_eq!(deleted.text, "");
    assert_error(
        &app.get_raw(&format!("{}/{}", user_bindings_path(service, ALICE), f.gcm)),
        404,
        20404,
    );
    assert_eq!(
        app.user_binding_sids(service, ALICE),
        [f.apn.as_str(), f.fcm.as_str()]
    );
    assert_error(
        &app.delete(&format!("/v2/Services/{service}/Bindings/{}", f.gcm)),
        404,
        20404,
    );
    assert_error(
        &app.get_raw(&format!("/v2/Services/{service}/Bindings/BSshort")),
        404,
        20404,
    );
    // The user remains, still notifiable through the bindings left.
    let user = app.get_raw(&user_path(service, ALICE)).expect(200);
    assert_eq!(user["is_notifiable"], true);
    app.verify();
}

#[test]
fn a_binding_of_another_service_is_not_found_under_this_one() {
    let f = fixture();
    let (app, service) = (&f.app, &f.service);
    let elsewhere = sid(&app.create_service("elsewhere"));
    app.create_user(&elsewhere, ALICE);
    assert_error(
        &app.get_raw(&format!("/v2/Services/{elsewhere}/Bindings/{}", f.apn)),
        404,
        20404,
    );
    assert_error(
        &app.delete(&format!("/v2/Services/{elsewhere}/Bindings/{}", f.apn)),
        404,
        20404,
    );
    assert_error(
        &app.get_raw(&format!(
            "{}/{}",
            user_bindings_path(&elsewhere, ALICE),
            f.apn
        )),
        404,
        20404,
    );
    assert_eq!(app.user_binding_sids(service, ALICE).len(), 3);
    app.verify();
}
