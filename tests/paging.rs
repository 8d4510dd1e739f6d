//! Lists and keyset paging: page sizes, `meta`, absolute page URLs that keep filters, going
//! back, and walking the pages while another client writes.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::support::{
    assert_error, form, query_pairs, sid, user_bindings_path, wait_until, Reply, TestApp, PATIENCE,
};

/// Every list route of one service with one user, and the largest page each may answer.
fn lists(service: &str) -> [(String, &'static str, u64); 5] {
    [
        ("/v2/Services".to_owned(), "services", 100),
        ("/v2/Credentials".to_owned(), "credentials", 1000),
        (format!("/v2/Services/{service}/Users"), "users", 100),
        (format!("/v2/Services/{service}/Bindings"), "bindings", 50),
        (user_bindings_path(service, "alice"), "bindings", 50),
    ]
}

fn service_with_a_binding(app: &TestApp) -> String {
    let service = sid(&app.create_service("chat"));
    app.register_binding(
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "a")],
    )
    .expect(201);
    app.create_credential_of("apn", &[]);
    service
}

#[test]
fn page_size_defaults_to_50_and_is_clamped_to_each_lists_max() {
    let app = TestApp::spawn();
    let service = service_with_a_binding(&app);
    for (path, key, max) in lists(&service) {
        let page = app.get_raw(&path).expect(200);
        let meta = &page["meta"];
        assert_eq!(meta["key"], key, "{path}");
        assert_eq!(meta["page_size"], 50, "{path}: {meta}");
        assert_eq!(meta["page"], 0);
        assert_eq!(meta["previous_page_url"], Value::Null);
        assert_eq!(meta["next_page_url"], Value::Null, "{path}: one page");
        assert_eq!(page[key].as_array().unwrap().len(), 1, "{path}");

        let clamped = app.get_raw(&format!("{path}?PageSize=5000")).expect(200);
        assert_eq!(clamped["meta"]["page_size"], max, "{path}");
        let url = clamped["meta"]["url"].as_str().unwrap();
        assert!(url.contains(&format!("PageSize={max}")), "{url}");

        let small = app.get_raw(&format!("{path}?PageSize=7")).expect(200);
        assert_eq!(small["meta"]["page_size"], 7);

        for bad in [
            "PageSize=ten",
            "PageSize=-1",
            "PageSize=0",
            "PageSize=1.5",
            "Page=x",
        ] {
            assert_error(&app.get_raw(&format!("{path}?{bad}")), 400, 20001);
        }
        assert_error(
            &app.get_raw(&format!("{path}?PageToken=garbage")),
            400,
            20001,
        );
    }
    app.verify();
}

#[test]
fn page_urls_are_absolute_keep_filters_and_lead_forward_and_back() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("chat"));
    let mut expected = Vec::new();
    for i in 0..7 {
        for (binding_type, identity) in [("apn", "alice@example.com"), ("gcm", "bob smith")] {
            let address = format!("{binding_type}-{identity}-{i}");
            let reply = app.register_binding(
                &service,
                identity,
                &[("BindingType", binding_type), ("Address", &address)],
            );
            let binding = reply.expect(201);
            if identity == "alice@example.com" {
                expected.push(sid(&binding));
            }
        }
        // A binding that the filters below leave out.
        let address = format!("fcm-{i}");
        app.register_binding(
            &service,
            "alice@example.com",
            &[("BindingType", "fcm"), ("Address", &address)],
        )
        .expect(201);
    }
    let filters = form(&[
        ("BindingType", "apn"),
        ("BindingType", "gcm"),
        ("Identity", "alice@example.com"),
    ]);
    let first = app
        .get_raw(&format!(
            "/v2/Services/{service}/Bindings?{filters}&PageSize=3"
        ))
        .expect(200);

    let mut pages: Vec<Value> = vec![first];
    loop {
        let meta = pages.last().unwrap()["meta"].clone();
        for name in [
            "url",
            "first_page_url",
            "next_page_url",
            "previous_page_url",
        ] {
            let Some(url) = meta[name].as_str() else {
                continue;
            };
            assert!(url.starts_with(&app.url("/v2/Services/")), "{name}: {url}");
            let params = query_pairs(url);
            for (key, value) in [
                ("BindingType", "apn"),
                ("BindingType", "gcm"),
                ("Identity", "alice@example.com"),
                ("PageSize", "3"),
            ] {
                assert!(
                    params.contains(&(key.to_owned(), value.to_owned())),
                    "{name} lost {key}={value}: {url}"
                );
            }
        }
        if meta["next_page_url"].is_null() {
            break;
        }
        let next = app.follow(&meta["next_page_url"]).expect(200);
        assert_eq!(next["meta"]["page"], pages.len() as u64);
        assert_eq!(next["meta"]["url"], meta["next_page_url"]);
        pages.push(next);
    }
    let sids_of = |page: &Value| -> Vec<String> {
        page["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .map(sid)
            .collect()
    };
    let walked: Vec<String> = pages.iter().flat_map(sids_of).collect();
    assert_eq!(
        walked, expected,
        "alice's apn bindings, each once, in order"
    );
    assert_eq!(pages.len(), 3, "7 bindings in pages of 3");

    // Back from the last page to the first, page by page.
    for i in (1..pages.len()).rev() {
        let back = app
            .follow(&pages[i]["meta"]["previous_page_url"])
            .expect(200);
        assert_eq!(sids_of(&back), sids_of(&pages[i - 1]), "page {}", i - 1);
        assert_eq!(back["meta"]["page"], (i - 1) as u64);
    }
    let first_again = app.follow(&pages[2]["meta"]["first_page_url"]).expect(200);
    assert_eq!(sids_of(&first_again), sids_of(&pages[0]));
    assert_eq!(first_again["meta"]["previous_page_url"], Value::Null);
    app.verify();
}

#[test]
fn users_services_and_credentials_page_in_creation_order() {
    let app = TestApp::spawn();
    let service = sid(&app.create_service("s0"));
    let mut services = vec![service.clone()];
    let mut users = Vec::new();
    let mut credentials = Vec::new();
    for i in 0..5 {
        services.push(sid(&app.create_service(&format!("s{}", i + 1))));
        users.push(sid(&app.create_user(&service, &format!("user {i}"))));
        credentials.push(sid(&app.create_credential_of("fcm", &[])));
    }
    let walked = |path: &str, key: &str| -> Vec<String> {
        app.walk(&format!("{path}?PageSize=2"), key)
            .iter()
            .map(sid)
            .collect()
    };
    assert_eq!(walked("/v2/Services", "services"), services);
    assert_eq!(
        walked(&format!("/v2/Services/{service}/Users"), "users"),
        users
    );
    assert_eq!(walked("/v2/Credentials", "credentials"), credentials);
    app.verify();
}

/// Registers one binding for `user`, answering its SID.
fn register(app: &TestApp, service: &str, user: &str, address: &str) -> String {
    let reply: Reply = app.register_binding(
        service,
        user,
        &[("BindingType", "fcm"), ("Address", address)],
    );
    sid(&reply.expect(201))
}

#[test]
fn walking_a_users_bindings_while_another_client_writes_neither_repeats_nor_skips() {
    let app = Arc::new(TestApp::spawn_with_env(&[(
        "BINDERY_BINDINGS__PER_USER_LIMIT",
        "1000",
    )]));
    let service = sid(&app.create_service("chat"));
    let user = "walker+1@example.com";
    let throughout: Vec<String> = (0..24)
        .map(|i| register(&app, &service, user, &format!("before-{i}")))
        .collect();

    // The writer and the walk take turns: the writer keeps at most two writes ahead of the
    // pages walked, and the walk waits for a write before each next page.
    let done = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicUsize::new(0));
    let pages = Arc::new(AtomicUsize::new(0));
    let made_during = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (app, service) = (Arc::clone(&app), service.clone());
        let (done, writes, pages, made_during) = (
            Arc::clone(&done),
            Arc::clone(&writes),
            Arc::clone(&pages),
            Arc::clone(&made_during),
        );
        std::thread::spawn(move || {
            let mut i = 0;
            // Bounded, so that the walk reaches an end.
            while i < 60 {
                wait_until(PATIENCE, "the walk to read another page", || {
                    done.load(Ordering::SeqCst) || pages.load(Ordering::SeqCst) + 2 > i
                });
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let made = register(&app, &service, user, &format!("during-{i}"));
                made_during.lock().unwrap().push(made.clone());
                // Every other new binding is deleted again, some before the walk reaches them.
                if i % 2 == 1 {
                    let path = format!("{}/{made}", user_bindings_path(&service, user));
                    assert_eq!(app.delete(&path).status, 204);
                }
                i += 1;
                writes.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    wait_until(PATIENCE, "the other client's first writes", || {
        writes.load(Ordering::SeqCst) >= 2
    });

    let mut walked = Vec::new();
    let mut writes_seen = Vec::new();
    let mut page = app
        .list_user_bindings(&service, user, "PageSize=3")
        .expect(200);
    loop {
        assert_eq!(page["meta"]["page_size"], 3);
        walked.extend(page["bindings"].as_array().unwrap().iter().map(sid));
        let seen = writes.load(Ordering::SeqCst);
        writes_seen.push(seen);
        pages.fetch_add(1, Ordering::SeqCst);
        if page["meta"]["next_page_url"].is_null() {
            break;
        }
        wait_until(PATIENCE, "a write between two pages", || {
            writes.load(Ordering::SeqCst) > seen || writer.is_finished()
        });
        page = app.follow(&page["meta"]["next_page_url"]).expect(200);
    }
    done.store(true, Ordering::SeqCst);
    writer.join().expect("the writer thread finished");

    assert!(
        writes_seen.first() != writes_seen.last(),
        "the other client wrote during the walk: {writes_seen:?}"
    );
    let mut sorted = walked.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(walked, sorted, "creation (SID) order, no repeats");
    for binding in &throughout {
        assert_eq!(
            walked.iter().filter(|s| *s == binding).count(),
            1,
            "{binding} existed throughout and was seen once"
        );
    }
    let made_during = made_during.lock().unwrap();
    let possible: BTreeSet<&String> = throughout.iter().chain(made_during.iter()).collect();
    assert!(
        walked.iter().all(|s| possible.contains(s)),
        "nothing unknown was listed"
    );
    app.verify();
}
