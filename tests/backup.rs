//! `bindery backup` while the server writes: the copy is consistent (a prefix of the log,
//! projections equal to its replay) and can be served again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tempfile::TempDir;

use crate::support::{bindery, sid, wait_until, TestApp, PATIENCE};

#[test]
fn a_backup_taken_under_writes_is_a_consistent_prefix_that_verifies() {
    let app = Arc::new(TestApp::spawn());
    let service = sid(&app.create_service("chat"));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (app, done, service) = (app.clone(), done.clone(), service.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !done.load(Ordering::SeqCst) && n < 2_000 {
                let address = format!("token-{n}");
                let reply = app.register_binding(
                    &service,
                    &format!("user{}", n % 7),
                    &[("BindingType", "fcm"), ("Address", &address)],
                );
                assert!(reply.status == 201, "registration {n}: {}", reply.status);
                n += 1;
            }
            n
        })
    };
    // Let some writes land before and during the copy.
    wait_until(PATIENCE, "50 events in the log", || {
        bindery(&app.data_dir(), &["export"])
            .stdout
            .split(|b| *b == b'\n')
            .count()
            >= 50
    });
    let copies = TempDir::new().unwrap();
    let copy = copies.path().join("bindery-backup.db");
    let backup = bindery(&app.data_dir(), &["backup", "--to", copy.to_str().unwrap()]);
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    done.store(true, Ordering::SeqCst);
    let registered = writer.join().unwrap();

    let again = bindery(&app.data_dir(), &["backup", "--to", copy.to_str().unwrap()]);
    assert!(
        !again.status.success(),
        "an existing file is never overwritten"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let restored = TempDir::new().unwrap();
    std::fs::copy(&copy, restored.path().join("bindery.db")).unwrap();
    let verified = bindery(restored.path(), &["verify"]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    let copied_log = bindery(restored.path(), &["export"]).stdout;
    let live_log = bindery(&app.data_dir(), &["export"]).stdout;
    assert!(
        !copied_log.is_empty() && live_log.starts_with(&copied_log),
        "a prefix of the log"
    );
    assert!(
        copied_log.len() < live_log.len() || registered < 50,
        "taken while writing"
    );
    app.verify();
}
