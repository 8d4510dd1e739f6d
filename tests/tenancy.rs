//! Tenancy and authentication: two accounts, each with a credential, a service, users and
//! bindings. No route lets one account read, change, delete, list, page into, feed-read or
//! notify the other's resources: each attempt answers 404 exactly as the same request naming a
//! resource that does not exist, and the other account's data (and its event log) is unchanged
//! afterwards. Every route of `/openapi.json` is tried, so that a new route is covered as soon
//! as it is documented. Wrong, missing, revoked and malformed credentials answer 401 20003.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use bindery_standin::ClientCertSpec;
use serde_json::{json, Value};

use crate::support::{
    assert_error, basic, bindery, bindery_json, escape_all, form, material, sid, Credentials,
    Reply, TestApp,
};

const FORM: &str = "application/x-www-form-urlencoded";

/// One account's data.
struct Tenant {
    credentials: Credentials,
    /// Unique to this account: appears in its friendly names, identities and addresses.
    tag: String,
    credential: String,
    service: String,
    /// `alice` (an identity both accounts have) and `<tag>-only` (this account's alone).
    alice: String,
    only: String,
    only_identity: String,
    /// alice's apn and fcm bindings, and `<tag>-only`'s gcm one.
    bindings: Vec<String>,
    /// The push address of alice's apn binding.
    alice_apn_address: String,
}

impl Tenant {
    fn new(app: &TestApp, credentials: Credentials, tag: &str) -> Tenant {
        let post = |path: &str, pairs: &[(&str, &str)]| app.post_as(&credentials, path, pairs);
        // Certificate auth, the certificate for this account's own app.
        let certificate = material::certificate(&ClientCertSpec::new(&format!("com.{tag}")));
        let credential = sid(&post(
            "/v2/Credentials",
            &[
                ("Type", "apn"),
                ("FriendlyName", &format!("{tag} credential")),
                ("Certificate", &certificate.cert_pem),
                ("PrivateKey", &certificate.key_pkcs8_pem),
            ],
        )
        .expect(201));
        let service = sid(&post(
            "/v2/Services",
            &[("FriendlyName", &format!("{tag} service"))],
        )
        .expect(201));
        post(
            &format!("/v2/Services/{service}"),
            &[
                ("Notifications.NewMessage.Enabled", "true"),
                (
                    "Notifications.NewMessage.Template",
                    &format!("{tag}: ${{MESSAGE}}"),
                ),
            ],
        )
        .expect(200);
        let users = format!("/v2/Services/{service}/Users");
        let alice = sid(&post(
            &users,
            &[
                ("Identity", "alice"),
                ("FriendlyName", &format!("{tag} alice")),
                ("Attributes", &json!({"tag": tag}).to_string()),
            ],
        )
        .expect(201));
        let only_identity = format!("{tag}-only");
        let only = sid(&post(&users, &[("Identity", &only_identity)]).expect(201));
        let alice_apn_address = format!("{tag}-alice-apn-token");
        let mut bindings = Vec::new();
        for (user, kind, address) in [
            (&alice, "apn", alice_apn_address.clone()),
            (&alice, "fcm", format!("{tag}-alice-fcm-token")),
            (&only, "gcm", format!("{tag}-only-gcm-token")),
        ] {
            let mut pairs = vec![("BindingType", kind), ("Address", address.as_str())];
            if kind == "apn" {
                pairs.push(("CredentialSid", &credential));
            }
            bindings.push(sid(
                &post(&format!("{users}/{user}/Bindings"), &pairs).expect(201)
            ));
        }
        Tenant {
            credentials,
            tag: tag.to_owned(),
            credential,
            service,
            alice,
            only,
            only_identity,
            bindings,
            alice_apn_address,
        }
    }

    /// Strings that only this account's data holds: finding one in another account's answer
    /// is a leak.
    fn markers(&self) -> Vec<String> {
        let mut markers = vec![
            self.credentials.user.clone(),
            self.tag.clone(),
            self.credential.clone(),
            self.service.clone(),
            self.alice.clone(),
            self.only.clone(),
            self.only_identity.clone(),
            self.alice_apn_address.clone(),
        ];
        markers.extend(self.bindings.iter().cloned());
        markers
    }
}

fn get_as(app: &TestApp, credentials: &Credentials, path: &str) -> Reply {
    app.send_as(credentials, "GET", path, &[], None)
}

/// Every item of a list as `credentials` sees it, following `next_page_url`.
fn walk_as(app: &TestApp, credentials: &Credentials, path: &str, key: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut page = get_as(app, credentials, path).expect(200);
    loop {
        let found = page[key].as_array().expect("a list").clone();
        let done = found.is_empty();
        items.extend(found);
        let next = page["meta"]["next_page_url"].as_str().map(str::to_owned);
        match next {
            // The change feed always offers a next page; it ends where a page is empty.
            Some(next) if !done || key != "events" => {
                let path = next
                    .strip_prefix(&app.base_url)
                    .expect("on this server")
                    .to_owned();
                page = get_as(app, credentials, &path).expect(200);
            }
            _ => return items,
        }
    }
}

/// Everything an account can read of its own data, and its event log: must not change while
/// another account tries its routes.
fn snapshot(app: &TestApp, tenant: &Tenant) -> Value {
    let c = &tenant.credentials;
    let s = &tenant.service;
    let mut fetched = BTreeMap::new();
    let mut fetch = |path: String| {
        let body = get_as(app, c, &path).expect(200);
        fetched.insert(path, body);
    };
    let services = walk_as(app, c, "/v2/Services", "services");
    let credentials = walk_as(app, c, "/v2/Credentials", "credentials");
    let users = walk_as(app, c, &format!("/v2/Services/{s}/Users"), "users");
    let bindings = walk_as(app, c, &format!("/v2/Services/{s}/Bindings"), "bindings");
    for item in services
        .iter()
        .chain(&credentials)
        .chain(&users)
        .chain(&bindings)
    {
        let url = item["url"].as_str().expect("a url");
        fetch(
            url.strip_prefix(&app.base_url)
                .expect("on this server")
                .to_owned(),
        );
    }
    let mut user_bindings = BTreeMap::new();
    let mut history = BTreeMap::new();
    for user in &users {
        let u = sid(user);
        user_bindings.insert(
            u.clone(),
            walk_as(
                app,
                c,
                &format!("/v2/Services/{s}/Users/{u}/Bindings"),
                "bindings",
            ),
        );
        history.insert(
            u.clone(),
            walk_as(
                app,
                c,
                &format!("/v2/Services/{s}/Users/{u}/History"),
                "events",
            ),
        );
    }
    for binding in &tenant.bindings {
        history.insert(
            binding.clone(),
            walk_as(
                app,
                c,
                &format!("/v2/Services/{s}/Bindings/{binding}/History"),
                "events",
            ),
        );
    }
    let events = walk_as(app, c, "/v2/Events?After=0&PageSize=50", "events");
    json!({
        "services": services,
        "credentials": credentials,
        "users": users,
        "bindings": bindings,
        "user_bindings": user_bindings,
        "fetched": fetched,
        "history": history,
        "events": events,
    })
}

#[track_caller]
fn assert_no_leak(text: &str, other: &Tenant, what: &str) {
    for marker in other.markers() {
        assert!(
            !text.contains(&marker),
            "{what} shows {marker:?} of the other account: {text}"
        );
    }
}

// ---- Every documented route, as B, naming A's resources ----------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Service,
    Credential,
    User,
    Binding,
}

/// The kind of a path parameter, from the collection it follows (`/Services/{ServiceSid}`).
fn kind_of(path: &str, parameter: &str) -> Kind {
    let before = path
        .split(&format!("/{{{parameter}}}"))
        .next()
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or("");
    match before {
        "Services" => Kind::Service,
        "Credentials" => Kind::Credential,
        "Users" => Kind::User,
        "Bindings" => Kind::Binding,
        other => panic!(
            "{path}: {{{parameter}}} follows /{other}, which tenancy.rs does not know: \
             teach kind_of and value_of about it so that the route is tried across accounts"
        ),
    }
}

/// Whose value a path parameter takes in one attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pick {
    /// The caller's own resource.
    Own,
    /// The other account's resource (by SID).
    Other,
    /// The other account's user by identity (users only; an identity only it has).
    OtherIdentity,
}

fn value_of(kind: Kind, pick: Pick, own: &Tenant, other: &Tenant) -> String {
    let tenant = if pick == Pick::Own { own } else { other };
    match (kind, pick) {
        (Kind::User, Pick::OtherIdentity) => escape_all(&other.only_identity),
        (Kind::Service, _) => tenant.service.clone(),
        (Kind::Credential, _) => tenant.credential.clone(),
        (Kind::User, _) => tenant.alice.clone(),
        // alice's apn binding, so that the user-binding routes match with the own user.
        (Kind::Binding, _) => tenant.bindings[0].clone(),
    }
}

/// A well-formed value naming nothing, in place of the other account's.
fn missing_of(kind: Kind, pick: Pick) -> String {
    match (kind, pick) {
        (Kind::User, Pick::OtherIdentity) => "no-such-identity".to_owned(),
        (Kind::Service, _) => format!("IS{}", "f".repeat(32)),
        (Kind::Credential, _) => format!("CR{}", "f".repeat(32)),
        (Kind::User, _) => format!("US{}", "f".repeat(32)),
        (Kind::Binding, _) => format!("BS{}", "f".repeat(32)),
    }
}

/// A form body the operation accepts: each required property with a plausible value, and a
/// `FriendlyName` where the operation takes one (so that an update that went through would
/// show). Values name the other account's things where they can.
fn body_for(document: &Value, operation: &Value, other: &Tenant) -> Option<String> {
    let schema = &operation["requestBody"]["content"][FORM]["schema"];
    if schema.is_null() {
        return None;
    }
    let resolve = |schema: &Value| -> Value {
        match schema["$ref"].as_str() {
            Some(reference) => {
                let name = reference.trim_start_matches("#/components/schemas/");
                document["components"]["schemas"][name].clone()
            }
            None => schema.clone(),
        }
    };
    let schema = resolve(schema);
    let properties = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (name, property) in &properties {
        if !required.contains(name.as_str()) && name != "FriendlyName" {
            continue;
        }
        let property = resolve(property);
        let item = if property["type"] == "array" {
            resolve(&property["items"])
        } else {
            property.clone()
        };
        let value = match name.as_str() {
            "Address" => other.alice_apn_address.clone(),
            "Identity" => other.only_identity.clone(),
            "FriendlyName" => "written across accounts".to_owned(),
            _ => match item["enum"].as_array().and_then(|e| e.first()) {
                Some(first) => first.as_str().expect("a string enum").to_owned(),
                None => "x".to_owned(),
            },
        };
        pairs.push((name.clone(), value));
    }
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Some(form(&pairs))
}

fn send(
    app: &TestApp,
    credentials: &Credentials,
    method: &str,
    path: &str,
    body: &Option<String>,
) -> Reply {
    match body {
        Some(body) => app.send_as(
            credentials,
            method,
            path,
            &[("Content-Type", FORM)],
            Some(body.as_bytes()),
        ),
        None => app.send_as(credentials, method, path, &[], None),
    }
}

/// The parameters of a path template, in order.
fn parameters(path: &str) -> Vec<String> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_owned)
        .collect()
}

fn fill(path: &str, values: &[(String, String)]) -> String {
    let mut filled = path.to_owned();
    for (name, value) in values {
        filled = filled.replace(&format!("{{{name}}}"), value);
    }
    filled
}

/// Tries every documented route as `own` with `other`'s resources in its path parameters;
/// returns how many attempts were made, and every answer that was not a missing resource's.
fn try_every_route(
    app: &TestApp,
    document: &Value,
    own: &Tenant,
    other: &Tenant,
) -> (usize, Vec<String>) {
    let mut attempts = 0;
    let mut problems = Vec::new();
    let mut routes = 0;
    for (path, item) in document["paths"].as_object().expect("paths") {
        if !path.starts_with("/v2/") {
            continue;
        }
        for (method, operation) in item.as_object().expect("operations") {
            let method = method.to_uppercase();
            if !["GET", "POST", "DELETE"].contains(&method.as_str()) {
                continue;
            }
            let names = parameters(path);
            if names.is_empty() {
                continue;
            }
            routes += 1;
            let kinds: Vec<Kind> = names.iter().map(|n| kind_of(path, n)).collect();
            let body = body_for(document, operation, other);
            // Every choice of own / other for each parameter but all-own; users also by identity.
            let choices: Vec<Vec<Pick>> = kinds
                .iter()
                .map(|k| match k {
                    Kind::User => vec![Pick::Own, Pick::Other, Pick::OtherIdentity],
                    _ => vec![Pick::Own, Pick::Other],
                })
                .collect();
            let mut combinations: Vec<Vec<Pick>> = vec![Vec::new()];
            for options in &choices {
                combinations = combinations
                    .into_iter()
                    .flat_map(|prefix| {
                        options.iter().map(move |pick| {
                            let mut next = prefix.clone();
                            next.push(*pick);
                            next
                        })
                    })
                    .collect();
            }
            for picks in combinations {
                if picks.iter().all(|p| *p == Pick::Own) {
                    continue;
                }
                let service_is_own = kinds
                    .iter()
                    .zip(&picks)
                    .any(|(k, p)| *k == Kind::Service && *p == Pick::Own);
                // Registering under an identity the caller's own service does not have yet
                // creates that user there (CONTRACT 4.1): the caller's own business.
                if method == "POST"
                    && path.ends_with("/Users/{UserSid}/Bindings")
                    && service_is_own
                    && picks.contains(&Pick::OtherIdentity)
                {
                    continue;
                }
                let cross: Vec<(String, String)> = names
                    .iter()
                    .zip(&kinds)
                    .zip(&picks)
                    .map(|((n, k), p)| (n.clone(), value_of(*k, *p, own, other)))
                    .collect();
                let missing: Vec<(String, String)> = names
                    .iter()
                    .zip(&kinds)
                    .zip(&picks)
                    .map(|((n, k), p)| {
                        let value = match p {
                            Pick::Own => value_of(*k, *p, own, other),
                            _ => missing_of(*k, *p),
                        };
                        (n.clone(), value)
                    })
                    .collect();
                let cross_path = fill(path, &cross);
                let missing_path = fill(path, &missing);
                let crossed = send(app, &own.credentials, &method, &cross_path, &body);
                let absent = send(app, &own.credentials, &method, &missing_path, &body);
                let what = format!("{method} {path} with {picks:?} ({cross_path})");
                assert!(
                    crossed.status < 500 && absent.status < 500,
                    "{what}: {} / {}",
                    crossed.text,
                    absent.text
                );
                if crossed.status != 404 {
                    problems.push(format!(
                        "{what}: answered {} where another account's resource must answer 404 \
                         (the same request for a missing one, {missing_path}, answered {}): {}",
                        crossed.status, absent.status, crossed.text
                    ));
                } else {
                    assert_error(&crossed, 404, crossed.body["code"].as_u64().unwrap_or(0));
                }
                if (crossed.status, &crossed.body["code"]) != (absent.status, &absent.body["code"])
                {
                    problems.push(format!(
                        "{what}: answered unlike the same request for a missing resource \
                         ({missing_path}): {} vs {}",
                        crossed.text, absent.text
                    ));
                }
                // The answer says no more than it does for a missing resource.
                let mut text = crossed.text.clone();
                for ((_, theirs), (_, nothing)) in cross.iter().zip(&missing) {
                    text = text.replace(theirs.as_str(), nothing);
                }
                text = text.replace(&other.only_identity, "no-such-identity");
                if crossed.status >= 400 && text != absent.text {
                    problems.push(format!(
                        "{what}: the answer differs from a missing resource's: {text} vs {}",
                        absent.text
                    ));
                }
                if crossed.status < 400 {
                    // Whatever it answered, nothing of the other account may show.
                    for marker in other.markers() {
                        if text.contains(&marker) {
                            problems.push(format!("{what}: shows {marker:?}: {}", crossed.text));
                        }
                    }
                }
                attempts += 1;
            }
        }
    }
    assert!(
        routes >= 20,
        "only {routes} routes with path parameters were tried"
    );
    (attempts, problems)
}

/// Every documented GET, as `own` on its own resources (and with forged page tokens naming
/// `other`'s): nothing of `other` in any answer.
fn read_every_route(app: &TestApp, document: &Value, own: &Tenant, other: &Tenant) {
    let forged = [
        format!("PA{}", other.bindings[0]),
        format!("PB{}", other.bindings[2]),
        format!("PA{}", other.service),
        format!("PB{}", other.service),
        format!("PA{}", other.alice),
        format!("PA{}", other.credential),
        format!("PB{}", other.credential),
    ];
    for (path, item) in document["paths"].as_object().expect("paths") {
        let Some(operation) = item.get("get") else {
            continue;
        };
        if !path.starts_with("/v2/") {
            continue;
        }
        let values: Vec<(String, String)> = parameters(path)
            .into_iter()
            .map(|n| {
                let kind = kind_of(path, &n);
                (n, value_of(kind, Pick::Own, own, other))
            })
            .collect();
        let filled = fill(path, &values);
        let reply = get_as(app, &own.credentials, &filled);
        assert_eq!(reply.status, 200, "GET {filled}: {}", reply.text);
        assert_no_leak(&reply.text, other, &format!("GET {filled}"));
        let pages_by_token = operation["parameters"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "PageToken"));
        if pages_by_token {
            for token in &forged {
                let target = format!("{filled}?PageToken={token}");
                let reply = get_as(app, &own.credentials, &target);
                assert!(
                    reply.status == 200 || reply.status == 400,
                    "GET {target}: {}",
                    reply.text
                );
                if reply.status == 400 {
                    assert_error(&reply, 400, 20001);
                }
                // The page's own `url` repeats the token the caller sent: that is not a leak.
                let text = reply.text.replace(token.as_str(), "PAforged");
                assert_no_leak(&text, other, &format!("GET {target}"));
                // Only the caller's own items.
                if let Some(key) = reply.body["meta"]["key"].as_str() {
                    for item in reply.body[key].as_array().into_iter().flatten() {
                        if let Some(account) = item.get("account_sid") {
                            assert_eq!(account, &own.credentials.user, "GET {target}: {item}");
                        }
                    }
                }
            }
        }
    }
    // The whole change feed, page by page.
    let events = walk_as(
        app,
        &own.credentials,
        "/v2/Events?After=0&PageSize=7",
        "events",
    );
    assert!(!events.is_empty());
    assert_no_leak(&Value::Array(events).to_string(), other, "the change feed");
}

#[test]
fn no_route_reaches_another_accounts_resources() {
    let app = TestApp::spawn();
    let a_credentials = Credentials {
        user: app.account.user.clone(),
        password: app.account.password.clone(),
    };
    let a = Tenant::new(&app, a_credentials, "tenant-a");
    let b = Tenant::new(&app, app.other_account(), "tenant-b");
    let document = app.get_raw("/openapi.json").expect(200);
    let a_before = snapshot(&app, &a);
    let b_before = snapshot(&app, &b);

    // Each way round: B at A's resources, then A at B's.
    let (attempts, mut problems) = try_every_route(&app, &document, &b, &a);
    assert!(attempts >= 60, "only {attempts} attempts");
    assert_eq!(
        snapshot(&app, &a),
        a_before,
        "B's attempts changed A's data"
    );
    let (_, more) = try_every_route(&app, &document, &a, &b);
    problems.extend(more);
    assert_eq!(
        snapshot(&app, &b),
        b_before,
        "A's attempts changed B's data"
    );

    read_every_route(&app, &document, &b, &a);
    read_every_route(&app, &document, &a, &b);

    assert_eq!(snapshot(&app, &a), a_before);
    assert_eq!(snapshot(&app, &b), b_before);
    app.verify();
    assert!(
        problems.is_empty(),
        "{} of {attempts} attempts each way were not answered as a missing resource:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn notify_feedback_registration_and_idempotency_stay_within_the_account() {
    let app = TestApp::spawn();
    let a_credentials = Credentials {
        user: app.account.user.clone(),
        password: app.account.password.clone(),
    };
    let a = Tenant::new(&app, a_credentials, "tenant-a");
    let b = Tenant::new(&app, app.other_account(), "tenant-b");
    let a_before = snapshot(&app, &a);

    // Notify naming A's service: as missing.
    let notify = |service: &str, identities: &[&str]| {
        let mut pairs = vec![("Type", "new_message"), ("Body", "hello")];
        pairs.extend(identities.iter().map(|i| ("Identity", *i)));
        app.post_as(
            &b.credentials,
            &format!("/v2/Services/{service}/Notifications"),
            &pairs,
        )
    };
    assert_error(&notify(&a.service, &["alice"]), 404, 50050);
    assert_error(
        &notify(&format!("IS{}", "f".repeat(32)), &["alice"]),
        404,
        50050,
    );
    // Notify in B's service naming A's identities: A's users are not B's.
    let sent = notify(&b.service, &[&a.only_identity]).expect(201);
    assert_eq!(sent["targeted"], 0, "{sent}");
    assert_eq!(sent["results"], json!([]), "{sent}");
    // `alice` is a user of both: B reaches its own alice only.
    let sent = notify(&b.service, &["alice"]).expect(201);
    let targeted: BTreeSet<&str> = sent["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["binding_sid"].as_str())
        .collect();
    assert_eq!(
        targeted,
        BTreeSet::from([b.bindings[0].as_str(), b.bindings[1].as_str()]),
        "{sent}"
    );
    assert_no_leak(&sent.to_string(), &a, "notify");

    // Feedback: naming A's service is as missing; naming A's address in B's service removes
    // nothing of A's.
    let feedback = |service: &str, kind: &str, address: &str| {
        app.post_as(
            &b.credentials,
            &format!("/v2/Services/{service}/Bindings/Feedback"),
            &[
                ("BindingType", kind),
                ("Address", address),
                ("Reason", "unregistered"),
            ],
        )
    };
    assert_error(
        &feedback(&a.service, "apn", &a.alice_apn_address),
        404,
        50050,
    );
    assert_eq!(
        feedback(&b.service, "apn", &a.alice_apn_address).status,
        204
    );
    for kind in ["apn", "fcm", "gcm"] {
        for address in [
            "tenant-a-alice-apn-token",
            "tenant-a-alice-fcm-token",
            "tenant-a-only-gcm-token",
        ] {
            assert_eq!(feedback(&b.service, kind, address).status, 204);
        }
    }

    // Registering A's address in B's service: the address moves between B's bindings only.
    let registered = app
        .post_as(
            &b.credentials,
            &format!("/v2/Services/{}/Users/{}/Bindings", b.service, b.only),
            &[("BindingType", "apn"), ("Address", &a.alice_apn_address)],
        )
        .expect(201);
    assert_eq!(registered["account_sid"], b.credentials.user);
    // Naming A's credential: as a credential that does not exist.
    let with_credential = |credential: &str| {
        app.post_as(
            &b.credentials,
            &format!("/v2/Services/{}/Users/{}/Bindings", b.service, b.alice),
            &[
                ("BindingType", "apn"),
                ("Address", "b-new-token"),
                ("CredentialSid", credential),
            ],
        )
    };
    let crossed = with_credential(&a.credential);
    let absent = with_credential(&format!("CR{}", "f".repeat(32)));
    assert!((400..500).contains(&crossed.status), "{}", crossed.text);
    assert_eq!(
        (crossed.status, &crossed.body["code"]),
        (absent.status, &absent.body["code"]),
        "{} vs {}",
        crossed.text,
        absent.text
    );
    assert_eq!(
        crossed.body["message"]
            .as_str()
            .map(|m| m.replace(&a.credential, &format!("CR{}", "f".repeat(32)))),
        absent.body["message"].as_str().map(str::to_owned)
    );

    // The same Idempotency-Key and body from both accounts: two requests, two answers.
    let key = [("Idempotency-Key", "shared-key-1"), ("Content-Type", FORM)];
    let body = form(&[("FriendlyName", "idempotent")]);
    let first = app.send_as(
        &a.credentials,
        "POST",
        "/v2/Services",
        &key,
        Some(body.as_bytes()),
    );
    let first = first.expect(201);
    let second = app.send_as(
        &b.credentials,
        "POST",
        "/v2/Services",
        &key,
        Some(body.as_bytes()),
    );
    assert_eq!(second.status, 201, "{}", second.text);
    assert_eq!(
        second.body["account_sid"], b.credentials.user,
        "B got A's remembered answer: {}",
        second.text
    );
    assert_ne!(second.body["sid"], first["sid"]);
    // And a different body under A's key, from B: B's own first use of that key.
    let other_body = form(&[("FriendlyName", "idempotent too")]);
    let third = app.send_as(
        &b.credentials,
        "POST",
        "/v2/Services",
        &[("Idempotency-Key", "shared-key-2"), ("Content-Type", FORM)],
        Some(other_body.as_bytes()),
    );
    assert_eq!(third.status, 201, "{}", third.text);
    let fourth = app.send_as(
        &a.credentials,
        "POST",
        "/v2/Services",
        &[("Idempotency-Key", "shared-key-2"), ("Content-Type", FORM)],
        Some(body.as_bytes()),
    );
    assert_eq!(
        fourth.status, 201,
        "A's first use of the key: {}",
        fourth.text
    );
    assert_eq!(fourth.body["account_sid"], a.credentials.user);
    app.delete(&format!("/v2/Services/{}", sid(&first)))
        .expect(204);
    app.delete(&format!("/v2/Services/{}", sid(&fourth.body)))
        .expect(204);

    // A's data: as it was, but for the two services A made and deleted here.
    let mut a_after = snapshot(&app, &a);
    let mut a_expected = a_before.clone();
    for snapshot in [&mut a_after, &mut a_expected] {
        snapshot.as_object_mut().unwrap().remove("events");
    }
    assert_eq!(a_after, a_expected);
    let events = walk_as(&app, &a.credentials, "/v2/Events?After=0", "events");
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    let before_types: Vec<&str> = a_before["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(
        &types[before_types.len()..],
        [
            "ServiceCreated",
            "ServiceCreated",
            "ServiceDeleted",
            "ServiceDeleted"
        ],
        "A's log grew only by its own requests"
    );
    app.verify();
}

#[test]
fn wrong_missing_revoked_and_malformed_credentials_answer_401_20003() {
    let app = TestApp::spawn();
    let a = &app.account;
    let other = app.other_account();
    let service = sid(&app.create_service("mine"));
    let key = bindery_json(&app.data_dir(), &["keys", "create", "--account", &a.user]);
    let (key_sid, key_secret) = (
        key["sid"].as_str().unwrap().to_owned(),
        key["secret"].as_str().unwrap().to_owned(),
    );
    let revoked = bindery_json(&app.data_dir(), &["keys", "create", "--account", &a.user]);
    let revoked_sid = revoked["sid"].as_str().unwrap().to_owned();
    let revoked_secret = revoked["secret"].as_str().unwrap().to_owned();
    assert!(bindery(&app.data_dir(), &["keys", "revoke", &revoked_sid])
        .status
        .success());

    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let valid = b64(format!("{}:{}", a.user, a.password).as_bytes());
    let variants: Vec<(&str, Option<String>)> = vec![
        ("no header", None),
        ("empty header", Some(String::new())),
        ("scheme only", Some("Basic".into())),
        ("empty credentials", Some("Basic ".into())),
        ("another scheme", Some(format!("Bearer {valid}"))),
        ("no scheme", Some(valid.clone())),
        ("Digest", Some(format!("Digest username=\"{}\"", a.user))),
        ("bad base64", Some("Basic !!!not-base64!!!".into())),
        (
            "base64 cut short",
            Some(format!("Basic {}", &valid[..valid.len() - 3])),
        ),
        (
            "junk after the credentials",
            Some(format!("Basic {valid} junk")),
        ),
        (
            "no colon",
            Some(format!("Basic {}", b64(a.user.as_bytes()))),
        ),
        (
            "empty user",
            Some(format!(
                "Basic {}",
                b64(format!(":{}", a.password).as_bytes())
            )),
        ),
        (
            "empty password",
            Some(format!("Basic {}", b64(format!("{}:", a.user).as_bytes()))),
        ),
        ("empty both", Some(format!("Basic {}", b64(b":")))),
        (
            "not UTF-8",
            Some(format!("Basic {}", b64(b"AC\xff\xfe:\xff"))),
        ),
        (
            "NUL",
            Some(format!(
                "Basic {}",
                b64(format!("{}\0:{}", a.user, a.password).as_bytes())
            )),
        ),
        (
            "wrong token",
            Some(format!(
                "Basic {}",
                b64(format!("{}:{}", a.user, "0".repeat(32)).as_bytes())
            )),
        ),
        (
            "another account's token",
            Some(format!(
                "Basic {}",
                b64(format!("{}:{}", a.user, other.password).as_bytes())
            )),
        ),
        (
            "token with a suffix",
            Some(format!(
                "Basic {}",
                b64(format!("{}:{}x", a.user, a.password).as_bytes())
            )),
        ),
        (
            "unknown account",
            Some(format!(
                "Basic {}",
                b64(format!("AC{}:{}", "f".repeat(32), a.password).as_bytes())
            )),
        ),
        (
            "unknown SK",
            Some(format!(
                "Basic {}",
                b64(format!("SK{}:{}", "f".repeat(32), key_secret).as_bytes())
            )),
        ),
        (
            "SK with the wrong secret",
            Some(format!(
                "Basic {}",
                b64(format!("{key_sid}:{}", "0".repeat(32)).as_bytes())
            )),
        ),
        (
            "SK with the account token",
            Some(format!(
                "Basic {}",
                b64(format!("{key_sid}:{}", a.password).as_bytes())
            )),
        ),
        (
            "revoked SK",
            Some(format!(
                "Basic {}",
                b64(format!("{revoked_sid}:{revoked_secret}").as_bytes())
            )),
        ),
        (
            "other prefix",
            Some(format!(
                "Basic {}",
                b64(format!("IS{}:{}", &a.user[2..], a.password).as_bytes())
            )),
        ),
        (
            "huge",
            Some(format!(
                "Basic {}",
                b64(format!("{}:{}", a.user, "x".repeat(4096)).as_bytes())
            )),
        ),
    ];
    let routes = [
        ("GET", "/v2/Services".to_owned()),
        ("GET", format!("/v2/Services/{service}")),
        ("DELETE", format!("/v2/Services/{service}")),
        ("GET", "/v2/Events?After=0".to_owned()),
    ];
    for (what, authorization) in &variants {
        for (method, path) in &routes {
            let reply = app.send_authorization(authorization.as_deref(), method, path);
            assert_error(&reply, 401, 20003);
            assert_eq!(
                reply.header("WWW-Authenticate"),
                Some("Basic realm=\"Bindery\""),
                "{what}"
            );
            // A success clears the address's failures, so the throttle never answers here.
            app.get_raw("/v2/Services").expect(200);
        }
    }
    // What does sign in: the scheme in any case, an SK key of the account.
    for authorization in [
        format!("basic {valid}"),
        format!("BASIC {valid}"),
        basic(&Credentials {
            user: key_sid.clone(),
            password: key_secret.clone(),
        }),
    ] {
        let reply = app.send_authorization(
            Some(&authorization),
            "GET",
            &format!("/v2/Services/{service}"),
        );
        assert_eq!(reply.status, 200, "{authorization}: {}", reply.text);
    }
    assert_eq!(
        app.get_raw(&format!("/v2/Services/{service}")).status,
        200,
        "nothing was deleted"
    );
    app.verify();
}
