//! Form and query fields checked as the spec types them: every field of a served route that
//! the spec gives an `enum` or a `format` refuses what they exclude (400, naming the field
//! and what it allows) and stores nothing; the service's webhook settings in detail.

use serde_json::Value;

use crate::support::{assert_error, form, material, sid, Reply, TestApp};

/// How many events the account's log holds: a refused request appends none.
fn log_length(app: &TestApp) -> usize {
    let mut after = 0;
    let mut events = 0;
    loop {
        let page = app
            .get_raw(&format!("/v2/Events?After={after}&PageSize=1000"))
            .expect(200);
        let items = page["events"].as_array().expect("events").len();
        events += items;
        if page["meta"]["next_page_url"].is_null() || items == 0 {
            return events;
        }
        after = page["meta"]["next_after"].as_i64().expect("next_after");
    }
}

/// `node`, with a `$ref` into `document` followed.
fn resolve<'a>(document: &'a Value, node: &'a Value) -> &'a Value {
    match node["$ref"].as_str() {
        Some(reference) => {
            let target = reference
                .strip_prefix('#')
                .and_then(|pointer| document.pointer(pointer))
                .unwrap_or_else(|| panic!("{reference} is not in the document"));
            resolve(document, target)
        }
        None => node,
    }
}

/// A field of a served operation that the spec gives an `enum` or a string `format`.
#[derive(Debug)]
struct Constrained {
    method: String,
    path: String,
    /// `query` or `body`.
    place: &'static str,
    name: String,
    allowed: Option<Vec<String>>,
    format: Option<String>,
}

/// Every constrained field of the document Bindery serves (whose Twilio operations are
/// Twilio's spec, verbatim). Integer formats (`int64` on `PageSize`) are the integer's width,
/// checked in `paging_limits.rs`.
fn constrained_fields(document: &Value) -> Vec<Constrained> {
    let mut found = Vec::new();
    let mut add = |method: &str, path: &str, place, name: &str, schema: &Value| {
        let schema = resolve(document, schema);
        let items = resolve(document, &schema["items"]);
        let allowed = [schema, items].into_iter().find_map(|s| {
            s["enum"].as_array().map(|values| {
                values
                    .iter()
                    .map(|v| v.as_str().expect("a string enum").to_owned())
                    .collect()
            })
        });
        let format = [schema, items]
            .into_iter()
            .filter(|s| s["type"] == "string")
            .find_map(|s| s["format"].as_str().map(str::to_owned));
        if allowed.is_some() || format.is_some() {
            found.push(Constrained {
                method: method.to_uppercase(),
                path: path.to_owned(),
                place,
                name: name.to_owned(),
                allowed,
                format,
            });
        }
    };
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let parameter = resolve(document, parameter);
                if parameter["in"] == "query" {
                    let name = parameter["name"].as_str().expect("a name");
                    add(method, path, "query", name, &parameter["schema"]);
                }
            }
            let body =
                &operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"];
            let body = resolve(document, body);
            for (name, schema) in body["properties"].as_object().into_iter().flatten() {
                add(method, path, "body", name, schema);
            }
        }
    }
    found
}

/// What a request needs besides the field under test, to be accepted (a credential's create
/// takes material of its type: see `Fixture::send`).
fn base_form(method: &str, path: &str) -> Vec<(&'static str, &'static str)> {
    match (method, path) {
        ("POST", "/v2/Services/{ServiceSid}/Users/{UserSid}/Bindings") => {
            vec![("BindingType", "apn"), ("Address", "spec-token")]
        }
        ("POST", "/v2/Services/{ServiceSid}/Bindings/Feedback") => {
            vec![("BindingType", "apn"), ("Address", "spec-token")]
        }
        ("POST", "/v2/Services/{ServiceSid}/Notifications") => vec![("Identity", "alice")],
        _ => Vec::new(),
    }
}

/// Values the field's `enum` or `format` excludes.
fn refused_values(field: &Constrained) -> Vec<String> {
    match (&field.allowed, field.format.as_deref()) {
        (Some(allowed), _) => {
            let first = &allowed[0];
            let mut values = vec![
                format!("{first}x"),
                format!(" {first}"),
                "none-of-these".to_owned(),
            ];
            for changed in [first.to_uppercase(), first.to_lowercase()] {
                if !allowed.contains(&changed) {
                    values.push(changed);
                }
            }
            values
        }
        (None, Some("uri")) => [
            "not a url",
            "http//x",
            "/relative/hook",
            "//example.com/hook",
            "https://exa mple.com/hook",
            " https://example.com/hook",
            "https://example.com/%zz",
            "https://bücher.example/hook",
        ]
        .map(String::from)
        .to_vec(),
        (None, format) => panic!(
            "{} {} {}: format {format:?} is not handled; teach this test about it",
            field.method, field.path, field.name
        ),
    }
}

/// Values the field accepts.
fn accepted_values(field: &Constrained) -> Vec<String> {
    match (&field.allowed, field.format.as_deref()) {
        (Some(allowed), _) => allowed.clone(),
        _ => [
            "https://example.com/hook",
            "http://127.0.0.1:8080/hook?x=1#top",
            "urn:example:hook",
        ]
        .map(String::from)
        .to_vec(),
    }
}

struct Fixture {
    service: String,
    credential: String,
    binding: String,
}

impl Fixture {
    fn path(&self, template: &str) -> String {
        let sid = if template.starts_with("/v2/Credentials") {
            self.credential.as_str()
        } else if template.ends_with("/Users/{Sid}") {
            "alice"
        } else if template.ends_with("/Bindings/{Sid}") {
            self.binding.as_str()
        } else {
            self.service.as_str()
        };
        template
            .replace("{ServiceSid}", &self.service)
            .replace("{UserSid}", "alice")
            .replace("{Sid}", sid)
    }

    fn send(&self, app: &TestApp, field: &Constrained, value: &str) -> Reply {
        let path = self.path(&field.path);
        // A credential is read on the way in (CONTRACT §6.2): it needs material of its type.
        let material = (field.method == "POST" && field.path == "/v2/Credentials").then(|| {
            let kind = if field.name == "Type" { value } else { "apn" };
            if ["apn", "fcm", "gcm"].contains(&kind) {
                material::credential_form(kind)
            } else {
                material::Form::default()
            }
        });
        let base = match &material {
            Some(form) => form.pairs(),
            None => base_form(&field.method, &field.path),
        };
        let mut pairs: Vec<(&str, &str)> = base
            .into_iter()
            .filter(|(name, _)| *name != field.name)
            .collect();
        pairs.push((&field.name, value));
        match (field.method.as_str(), field.place) {
            ("GET", "query") => app.get_raw(&format!("{path}?{}", form(&pairs))),
            ("POST", "body") => app.post(&path, &pairs),
            other => panic!("{other:?} {}: teach this test about it", field.path),
        }
    }
}

#[test]
fn every_enum_and_format_field_of_a_served_route_refuses_what_the_spec_excludes() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("spec"));
    let binding = sid(&app
        .register_binding(
            &service,
            "alice",
            &[("BindingType", "fcm"), ("Address", "alice-token")],
        )
        .expect(201));
    let credential = sid(&app.create_credential_of("apn", &[]));
    let fixture = Fixture {
        service: service.clone(),
        credential,
        binding,
    };
    let document = app.get_raw("/openapi.json").expect(200);
    let fields = constrained_fields(&document);
    let named: Vec<String> = fields
        .iter()
        .map(|f| format!("{} {} {}", f.method, f.path, f.name))
        .collect();
    // The constrained fields of CONTRACT.md's resources and of the extensions are all found.
    for expected in [
        "POST /v2/Services/{Sid} PreWebhookUrl",
        "POST /v2/Services/{Sid} PostWebhookUrl",
        "POST /v2/Services/{Sid} WebhookMethod",
        "POST /v2/Credentials Type",
        "GET /v2/Services/{ServiceSid}/Bindings BindingType",
        "GET /v2/Services/{ServiceSid}/Users/{UserSid}/Bindings BindingType",
        "POST /v2/Services/{ServiceSid}/Users/{UserSid}/Bindings BindingType",
        "POST /v2/Services/{ServiceSid}/Users/{UserSid}/Bindings MessageTypes",
        "POST /v2/Services/{ServiceSid}/Bindings/Feedback Reason",
        "POST /v2/Services/{ServiceSid}/Notifications Type",
    ] {
        assert!(
            named.iter().any(|n| n == expected),
            "{expected} in {named:#?}"
        );
    }

    let service_path = format!("/v2/Services/{service}");
    for field in &fields {
        let what = format!("{} {} {}", field.method, field.path, field.name);
        // The contract gives an unknown binding type its own code.
        let code = if field.name == "BindingType" {
            50209
        } else {
            20001
        };
        for value in refused_values(field) {
            let (events, stored) = (log_length(&app), app.get_raw(&service_path).expect(200));
            let reply = fixture.send(&app, field, &value);
            assert_error(&reply, 400, code);
            let message = reply.body["message"].as_str().unwrap_or_default();
            assert!(message.contains(&field.name), "{what} {value:?}: {message}");
            match &field.allowed {
                Some(allowed) => {
                    for v in allowed {
                        assert!(message.contains(v.as_str()), "{what}: {message}");
                    }
                }
                None => assert!(message.contains("URI"), "{what}: {message}"),
            }
            assert_eq!(log_length(&app), events, "{what} {value:?} stored nothing");
            assert_eq!(app.get_raw(&service_path).expect(200), stored, "{what}");
        }
        for value in accepted_values(field) {
            let reply = fixture.send(&app, field, &value);
            assert!(
                (200..300).contains(&reply.status),
                "{what} {value:?}: {}",
                reply.text
            );
        }
    }
    app.verify();
}

#[test]
fn a_service_refuses_webhook_settings_the_spec_excludes_and_keeps_the_old_ones() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("hooks"));
    let path = format!("/v2/Services/{service}");
    let before = app
        .post(
            &path,
            &[
                ("PreWebhookUrl", "https://hooks.example.com/pre"),
                ("PostWebhookUrl", "https://hooks.example.com/post?v=2"),
                ("WebhookMethod", "GET"),
            ],
        )
        .expect(200);
    assert_eq!(before["pre_webhook_url"], "https://hooks.example.com/pre");
    assert_eq!(
        before["post_webhook_url"],
        "https://hooks.example.com/post?v=2"
    );
    assert_eq!(before["webhook_method"], "GET");

    for (field, value, allowed) in [
        ("WebhookMethod", "PUT", "GET, POST"),
        ("WebhookMethod", "post", "GET, POST"),
        ("PreWebhookUrl", "not a url", "absolute URI"),
        ("PostWebhookUrl", "http//x", "absolute URI"),
        ("PostWebhookUrl", "hooks.example.com/post", "absolute URI"),
    ] {
        // With a good change beside it: the whole update is refused.
        let reply = app.post(&path, &[("FriendlyName", "renamed"), (field, value)]);
        assert_error(&reply, 400, 20001);
        let message = reply.body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field) && message.contains(allowed) && message.contains(value),
            "{message}"
        );
        assert_eq!(app.get_raw(&path).expect(200), before, "{field}={value}");
    }

    // An empty value still clears a webhook setting, as before these checks.
    let cleared = app
        .post(
            &path,
            &[
                ("PreWebhookUrl", ""),
                ("PostWebhookUrl", ""),
                ("WebhookMethod", ""),
            ],
        )
        .expect(200);
    for field in ["pre_webhook_url", "post_webhook_url", "webhook_method"] {
        assert_eq!(cleared[field], "", "{field}: {cleared}");
    }
    assert_eq!(app.get_raw(&path).expect(200), cleared);
    let again = app.post(&path, &[("WebhookMethod", "POST")]).expect(200);
    assert_eq!(again["webhook_method"], "POST");
    assert_eq!(again["pre_webhook_url"], "", "only what is named changes");
    app.verify();
}
