//! SIGTERM under load: the server stops accepting, finishes what it took, exits 0, and every
//! registration it acknowledged is there when it starts again on the same data dir.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    basic, command, form, poll_until, sid, user_bindings_path, wait_until, KillOnDrop, TestApp,
    BINARY, PATIENCE,
};

/// What one client saw: acknowledged registrations and the answers it got otherwise.
#[derive(Default)]
struct Seen {
    /// binding SID → (identity, endpoint, binding type)
    acknowledged: BTreeMap<String, (String, String, String)>,
    /// Statuses other than 2xx, with a body, before the transport failed.
    refused: Vec<(u16, String)>,
    /// The error that stopped the client.
    stopped_by: Option<String>,
}

const CLIENTS: usize = 4;
const ACKNOWLEDGED_BEFORE_SIGTERM: usize = 200;

#[test]
fn sigterm_under_load_exits_zero_and_keeps_every_acknowledged_registration() {
    let started = Instant::now();
    let (app, log) = TestApp::spawn_logged(tempfile::TempDir::new().unwrap(), &[], None);
    let mut app = app;
    let service = sid(&app.create_service("chat"));

    let acknowledged = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(CLIENTS + 1));
    let seen: Vec<Arc<Mutex<Seen>>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let base = app.base_url.clone();
            let authorization = basic(&app.account);
            let service = service.clone();
            let acknowledged = acknowledged.clone();
            let barrier = barrier.clone();
            let seen = seen[client].clone();
            std::thread::spawn(move || {
                // Half the clients keep their connection alive between requests, half open a
                // new one each time: both kinds must see their acknowledged writes kept.
                let agent = ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(15))
                    .max_idle_connections(if client % 2 == 0 { 4 } else { 0 })
                    .build();
                barrier.wait();
                let deadline = Instant::now() + Duration::from_secs(60);
                for n in 0.. {
                    assert!(Instant::now() < deadline, "client {client} never stopped");
                    // At most 20 bindings a user: ten per identity.
                    let identity = format!("client{client}-user{}", n / 10);
                    let endpoint = format!("client{client}-device{n}");
                    let kind = ["apn", "fcm", "gcm"][n % 3];
                    let address = format!("token-{client}-{n}");
                    let body = form(&[
                        ("BindingType", kind),
                        ("Address", &address),
                        ("Endpoint", &endpoint),
                    ]);
                    let url = format!("{base}{}", user_bindings_path(&service, &identity));
                    let result = agent
                        .post(&url)
                        .set("Authorization", &authorization)
                        .set("Content-Type", "application/x-www-form-urlencoded")
                        .send_string(&body);
                    let mut seen = seen.lock().unwrap();
                    match result {
                        Ok(response) => {
                            let status = response.status();
                            let body: Value = response.into_json().expect("a JSON body");
                            assert!(status == 200 || status == 201, "{status}: {body}");
                            assert_eq!(body["endpoint"], endpoint.as_str(), "{body}");
                            seen.acknowledged
                                .insert(sid(&body), (identity, endpoint, kind.to_owned()));
                            acknowledged.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(ureq::Error::Status(status, response)) => {
                            let text = response.into_string().unwrap_or_default();
                            seen.refused.push((status, text));
                        }
                        Err(error) => {
                            seen.stopped_by = Some(error.to_string());
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    barrier.wait();

    wait_until(
        PATIENCE,
        &format!("{ACKNOWLEDGED_BEFORE_SIGTERM} registrations acknowledged"),
        || acknowledged.load(Ordering::SeqCst) >= ACKNOWLEDGED_BEFORE_SIGTERM,
    );
    let at_sigterm = acknowledged.load(Ordering::SeqCst);
    app.terminate();
    let terminated = Instant::now();

    for client in clients {
        client.join().expect("a client thread");
    }
    let clients_stopped = terminated.elapsed();
    let status = app.wait_for_exit(PATIENCE);
    let exited = terminated.elapsed();
    let status = status.unwrap_or_else(|| {
        panic!(
            "bindery still runs {PATIENCE:?} after SIGTERM; its log:\n{}",
            log.lines().join("\n")
        )
    });
    // It exited: its whole log is there once the pipe is drained.
    log.wait_closed();
    let log_text = log.lines().join("\n");
    assert!(
        status.success(),
        "bindery exited with {status} after SIGTERM; its log:\n{log_text}"
    );
    assert!(
        log_text.contains("stopped"),
        "no `stopped` line after SIGTERM:\n{log_text}"
    );

    let mut expected = BTreeMap::new();
    for (client, seen) in seen.iter().enumerate() {
        let seen = seen.lock().unwrap();
        let Some(error) = &seen.stopped_by else {
            panic!("client {client} ran until the server went away");
        };
        eprintln!(
            "client {client}: {} acknowledged, {} refused, then {error}",
            seen.acknowledged.len(),
            seen.refused.len()
        );
        // A refusal while the server shuts down must say so; nothing else may be refused.
        for (status, text) in &seen.refused {
            assert_eq!(*status, 503, "refused during shutdown: {text}");
        }
        expected.extend(seen.acknowledged.clone());
    }
    let total = expected.len();
    assert!(total >= at_sigterm);
    eprintln!(
        "{total} registrations acknowledged ({at_sigterm} before SIGTERM); clients stopped \
         {clients_stopped:?} and the server exited {exited:?} after SIGTERM"
    );

    // Again on the same data dir, with the first run's account.
    let (dir, account) = app.into_dir_and_account();
    let (app, _log) = TestApp::spawn_logged(dir, &[], Some(account));
    let stored: BTreeMap<String, Value> = app
        .walk(
            &format!("/v2/Services/{service}/Bindings?PageSize=50"),
            "bindings",
        )
        .into_iter()
        .map(|b| (sid(&b), b))
        .collect();
    let mut missing = Vec::new();
    for (binding, (identity, endpoint, kind)) in &expected {
        match stored.get(binding) {
            None => missing.push(binding.clone()),
            Some(found) => {
                assert_eq!(found["identity"], identity.as_str(), "{found}");
                assert_eq!(found["endpoint"], endpoint.as_str(), "{found}");
                assert_eq!(found["binding_type"], kind.as_str(), "{found}");
            }
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {total} acknowledged registrations are gone after the restart: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // Unacknowledged requests may have committed too (their answer lost on the wire), but
    // nothing else exists.
    assert!(stored.len() <= total + CLIENTS, "{} stored", stored.len());
    app.verify();
    eprintln!("took {:?} in all", started.elapsed());
}

/// A server whose log nobody reads any more (its stderr pipe closed: the reader died, a
/// `| tee` exited) must still answer, and still stop on SIGTERM.
#[test]
fn sigterm_stops_the_server_even_when_nobody_reads_its_log() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::TempDir::new().unwrap();
    let mut server = KillOnDrop(Some(
        command(BINARY)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bindery serve starts"),
    ));
    let child = server.0.as_mut().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let address = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "bindery exited before listening"
        );
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    drop(stderr);

    let health = ureq::get(&format!("http://{address}/healthz"))
        .timeout(Duration::from_secs(5))
        .call();
    let answered = match health {
        Ok(response) => format!("{}", response.status()),
        Err(e) => format!("{e}"),
    };

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let mut status = None;
    poll_until(PATIENCE, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert!(
        answered == "200" && status.is_some_and(|s| s.success()),
        "with its log pipe closed, GET /healthz answered {answered:?}, and {PATIENCE:?} after \
         SIGTERM \
         the server {}",
        match status {
            Some(status) => format!("had exited with {status}"),
            None => "still ran".to_owned(),
        }
    );
}
