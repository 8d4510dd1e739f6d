//! Services: `/v2/Services[/{Sid}]`, created, read, changed and deleted as Twilio's helper
//! library does it.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::{assert_error, is_twilio_date, keys, sid, spec_fields, TestApp};

#[test]
fn a_created_service_has_every_field_of_the_spec() {
    let app = TestApp::spawn();
    let reply = app.post("/v2/Services", &[("FriendlyName", "Chat")]);
    assert_eq!(reply.status, 201, "{}", reply.text);
    let service = reply.body;
    assert_eq!(keys(&service), spec_fields("chat.v2.service"), "{service}");

    let service_sid = sid(&service);
    assert!(
        service_sid.starts_with("IS") && service_sid.len() == 34,
        "{service_sid}"
    );
    assert_eq!(service["account_sid"], app.account.user.as_str());
    assert_eq!(service["friendly_name"], "Chat");
    assert!(is_twilio_date(&service["date_created"]), "{service}");
    assert!(is_twilio_date(&service["date_updated"]), "{service}");
    // The spec marks these non-nullable: they take its defaults.
    for field in [
        "typing_indicator_timeout",
        "pre_webhook_retry_count",
        "post_webhook_retry_count",
        "read_status_enabled",
        "reachability_enabled",
    ] {
        assert!(!service[field].is_null(), "{field} is null in {service}");
    }
    let notifications = &service["notifications"];
    for kind in [
        "new_message",
        "added_to_channel",
        "invited_to_channel",
        "removed_from_channel",
    ] {
        assert_eq!(notifications[kind]["enabled"], false, "{notifications}");
        let fields = keys(&notifications[kind]);
        assert!(
            fields.contains("template") && fields.contains("sound"),
            "{kind}: {fields:?}"
        );
    }
    assert!(
        keys(&notifications["new_message"]).contains("badge_count_enabled"),
        "{notifications}"
    );
    assert!(
        keys(notifications).contains("log_enabled"),
        "{notifications}"
    );

    let url = app.url(&format!("/v2/Services/{service_sid}"));
    assert_eq!(service["url"], url.as_str());
    assert_eq!(
        service["links"],
        json!({
            "channels": format!("{url}/Channels"),
            "users": format!("{url}/Users"),
            "roles": format!("{url}/Roles"),
            "bindings": format!("{url}/Bindings"),
        })
    );

    let fetched = app
        .get_raw(&format!("/v2/Services/{service_sid}"))
        .expect(200);
    assert_eq!(fetched, service, "fetch answers what create answered");
    app.verify();
}

#[test]
fn create_without_friendly_name_or_with_a_repeated_one_is_malformed() {
    let app = TestApp::spawn();
    assert_error(&app.post("/v2/Services", &[]), 400, 20001);
    let twice = app.post(
        "/v2/Services",
        &[("FriendlyName", "a"), ("FriendlyName", "b")],
    );
    assert_error(&twice, 400, 20001);
    let listed = app.get_raw("/v2/Services").expect(200);
    assert_eq!(listed["services"], json!([]), "nothing was created");
    app.verify();
}

#[test]
fn update_takes_dotted_and_undotted_names_case_insensitive_booleans_and_repeated_filters() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("before"));
    let path = format!("/v2/Services/{service}");

    let updated = app
        .post(
            &path,
            &[
                ("FriendlyName", "after"),
                ("Notifications.NewMessage.Enabled", "true"),
                ("Notifications.NewMessage.Template", "${USER}: ${MESSAGE}"),
                ("NotificationsAddedToChannelEnabled", "TRUE"),
                ("ReadStatusEnabled", "False"),
                ("TypingIndicatorTimeout", "9"),
                ("WebhookFilters", "onMessageSent"),
                ("WebhookFilters", "onChannelAdded"),
            ],
        )
        .expect(200);
    assert_eq!(updated["friendly_name"], "after");
    let notifications = &updated["notifications"];
    assert_eq!(notifications["new_message"]["enabled"], true, "{updated}");
    assert_eq!(
        notifications["new_message"]["template"], "${USER}: ${MESSAGE}",
        "{updated}"
    );
    assert_eq!(notifications["added_to_channel"]["enabled"], true);
    assert_eq!(
        notifications["invited_to_channel"]["enabled"], false,
        "untouched"
    );
    assert_eq!(updated["read_status_enabled"], false);
    assert_eq!(updated["typing_indicator_timeout"], 9);
    assert_eq!(
        updated["webhook_filters"],
        json!(["onMessageSent", "onChannelAdded"])
    );
    assert_eq!(keys(&updated), spec_fields("chat.v2.service"));

    // The older undotted spelling of the same setting, in mixed case.
    let again = app
        .post(&path, &[("NotificationsNewMessageEnabled", "fAlSe")])
        .expect(200);
    assert_eq!(again["notifications"]["new_message"]["enabled"], false);
    assert_eq!(
        again["notifications"]["new_message"]["template"], "${USER}: ${MESSAGE}",
        "an update changes only what it names"
    );
    assert_eq!(again["friendly_name"], "after");

    let fetched = app.get_raw(&path).expect(200);
    assert_eq!(fetched, again, "the update was stored");
    app.verify();
}

#[test]
fn update_refuses_a_bad_boolean_count_or_role_sid_and_changes_nothing() {
    let app = TestApp::spawn();
    let service = app.create_service("steady");
    let path = format!("/v2/Services/{}", sid(&service));
    for bad in [
        [("Notifications.NewMessage.Enabled", "yes")],
        [("ReachabilityEnabled", "1")],
        [("TypingIndicatorTimeout", "soon")],
        [("DefaultServiceRoleSid", "RLnot-a-role")],
    ] {
        assert_error(&app.post(&path, &bad), 400, 20001);
    }
    let twice = app.post(
        &path,
        &[
            ("Notifications.NewMessage.Enabled", "true"),
            ("NotificationsNewMessageEnabled", "false"),
        ],
    );
    assert_error(&twice, 400, 20001);
    assert_eq!(app.get_raw(&path).expect(200), service, "nothing changed");
    app.verify();
}

#[test]
fn list_answers_every_service_of_the_account_in_creation_order() {
    let app = TestApp::spawn();
    let made: Vec<Value> = (0..3)
        .map(|i| app.create_service(&format!("s{i}")))
        .collect();
    let listed = app.get_raw("/v2/Services").expect(200);
    assert_eq!(listed["meta"]["key"], "services");
    assert_eq!(listed["services"], Value::Array(made));
    app.verify();
}

fn count(app: &TestApp, table: &str, service: &str) -> u64 {
    let output = Command::new("sqlite3")
        .arg(app.data_dir().join("bindery.db"))
        .arg(format!(
            "SELECT count(*) FROM {table} WHERE service_sid = '{service}'"
        ))
        .output()
        .expect("sqlite3 runs");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn delete_answers_204_with_an_empty_body_and_removes_users_and_bindings() {
    let app = TestApp::spawn();
    let doomed = sid(&app.create_service("doomed"));
    let kept = sid(&app.create_service("kept"));
    for service in [&doomed, &kept] {
        app.create_user(service, "alice");
        app.register_binding(
            service,
            "alice",
            &[("BindingType", "apn"), ("Address", "token-a")],
        )
        .expect(201);
        app.register_binding(
            service,
            "bob",
            &[("BindingType", "fcm"), ("Address", "token-b")],
        )
        .expect(201);
    }
    let binding = sid(&app.walk(&format!("/v2/Services/{doomed}/Bindings"), "bindings")[0]);

    let deleted = app.delete(&format!("/v2/Services/{doomed}"));
    assert_eq!(deleted.status, 204);
    assert_eq!(deleted.text, "", "a 204 has no body");

    for path in [
        format!("/v2/Services/{doomed}"),
        format!("/v2/Services/{doomed}/Users"),
        format!("/v2/Services/{doomed}/Users/alice"),
        format!("/v2/Services/{doomed}/Bindings"),
        format!("/v2/Services/{doomed}/Bindings/{binding}"),
    ] {
        assert_error(&app.get_raw(&path), 404, 50050);
    }
    assert_error(&app.delete(&format!("/v2/Services/{doomed}")), 404, 50050);
    // The cascade reached the stored rows, not only the routes in front of them.
    assert_eq!(count(&app, "users", &doomed), 0);
    assert_eq!(count(&app, "bindings", &doomed), 0);
    assert_eq!(count(&app, "users", &kept), 2);
    assert_eq!(count(&app, "bindings", &kept), 2);

    let listed = app.get_raw("/v2/Services").expect(200);
    assert_eq!(listed["services"].as_array().unwrap().len(), 1);
    assert_eq!(
        app.walk(&format!("/v2/Services/{kept}/Bindings"), "bindings")
            .len(),
        2,
        "the other service keeps its bindings"
    );
    app.verify();
}
