//! Storage faults under a running server: the disk fills up, another process holds the
//! database lock past the busy timeout, the data dir turns read-only while serving. Each must
//! answer 503 in Twilio's error shape with `Retry-After`, report not-ready on `/readyz`, lose
//! nothing that was acknowledged, and recover by itself, without a restart, once the fault goes
//! away. A data dir that is already read-only when the server starts is refused at start-up
//! instead (SQLite would open it read-only for good), and served once it is writable.
//!
//! The full disk is a small tmpfs. The read-only turn is a passthrough FUSE file system,
//! `tests/faults/rofs.py` (Debian's python3-fusepy, which CI installs), that refuses every
//! write with EROFS at the flip of a switch: the kernel will not remount a tmpfs read-only
//! while SQLite holds its files open for writing (EBUSY), and device-mapper is not available.
//!
//! The tests mount file systems, so they run as root (as they do here and in CI); every mount
//! is undone by a guard, and every process they start is stopped, even when a test fails.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{
    assert_error, exported_events, poll_until, sid, Credentials, Reply, ServerLog, TestApp,
    PATIENCE,
};

/// `ENOSPC`: no space left on device.
const ENOSPC: i32 = 28;

/// A tmpfs mounted on a directory, unmounted when dropped (after what runs on it stopped).
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("a mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .expect("mount runs");
        assert!(
            output.status.success(),
            "mounting a tmpfs needs root: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Tmpfs {
            path: path.to_owned(),
        }
    }

    /// `mount -o remount,MODE` (`ro` or `rw`); the error is mount's stderr.
    fn remount(&self, mode: &str) -> Result<(), String> {
        let output = Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.path)
            .output()
            .expect("mount runs");
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        unmount(&self.path);
    }
}

/// Unmounts `path`, retrying while it is busy for a moment; still busy, it is detached, and
/// the kernel frees it when the last user lets go.
fn unmount(path: &Path) {
    let unmounted = poll_until(Duration::from_secs(1), || {
        Command::new("umount")
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !unmounted {
        let _ = Command::new("umount").arg("-l").arg(path).status();
    }
}

/// `EROFS`: read-only file system.
const EROFS: i32 = 30;

/// The passthrough FUSE file system of `tests/faults/rofs.py`: a backing dir mirrored on a
/// mount point, turned read-only while mounted by creating its switch file (every write,
/// truncate, create, unlink, rename, mkdir, chmod, and open for writing then fails with EROFS,
/// through descriptors already open too) and writable again by removing it. Unmounted when
/// dropped (after what runs on it stopped), and its process waited for.
struct SwitchableFs {
    path: PathBuf,
    switch: PathBuf,
    process: Child,
}

impl SwitchableFs {
    /// Mounts `outer/backing` on `outer/mnt`, with the switch at `outer/read-only`.
    fn mount(outer: &Path) -> SwitchableFs {
        let (backing, path) = (outer.join("backing"), outer.join("mnt"));
        for dir in [&backing, &path] {
            std::fs::create_dir_all(dir).expect("a dir for the FUSE mount");
        }
        let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults/rofs.py");
        // Debian's interpreter, which sees python3-fusepy (a pyenv one on PATH would not).
        let mut process = Command::new("/usr/bin/python3")
            .arg(helper)
            .arg(&backing)
            .arg(&path)
            .arg(outer.join("read-only"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("/usr/bin/python3 runs");
        // The helper prints `mounted` once the kernel has mounted it, or exits with the reason.
        let stdout = process.stdout.take().expect("the helper's stdout");
        let (mounted, said) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = mounted.send(line);
        });
        let fs = SwitchableFs {
            path,
            switch: outer.join("read-only"),
            process,
        };
        let line = said
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_default();
        assert_eq!(
            line.trim(),
            "mounted",
            "the FUSE helper did not mount (it needs root, /dev/fuse and python3-fusepy, \
             which CI installs); see its stderr above"
        );
        fs
    }

    /// Turns the file system read-only (`true`) or writable; the next operation sees it.
    fn set_read_only(&self, read_only: bool) {
        if read_only {
            std::fs::write(&self.switch, b"").expect("the switch is created");
        } else {
            std::fs::remove_file(&self.switch).expect("the switch is removed");
        }
    }
}

impl Drop for SwitchableFs {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.switch);
        unmount(&self.path);
        // Unmounted, the helper's loop ends and it exits; if it does not, stop it.
        if !poll_until(Duration::from_secs(5), || {
            matches!(self.process.try_wait(), Ok(Some(_)))
        }) {
            let _ = self.process.kill();
            let _ = self.process.wait();
        }
    }
}

/// A `sqlite3` shell holding `BEGIN EXCLUSIVE` on a database until it is dropped.
struct ExclusiveLock(Child);

impl ExclusiveLock {
    fn take(database: &Path) -> ExclusiveLock {
        let mut lock = ExclusiveLock(
            Command::new("sqlite3")
                .arg(database)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("the sqlite3 shell runs (CI installs it)"),
        );
        let stdin = lock.0.stdin.as_mut().unwrap();
        stdin
            .write_all(b"BEGIN EXCLUSIVE;\nSELECT 'locked';\n")
            .unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        BufReader::new(lock.0.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked", "sqlite3 took the lock");
        lock
    }
}

impl Drop for ExclusiveLock {
    fn drop(&mut self) {
        // Closing stdin ends the shell, which rolls back and releases the lock.
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

/// A data dir on a fresh tmpfs of `size`: the outer dir, the mount, and the data dir in it.
/// Drop them in reverse order (data dir, mount, outer), which is how locals declared in this
/// order are dropped.
fn data_dir_on_tmpfs(size: &str) -> (TempDir, Tmpfs, TempDir) {
    let outer = TempDir::new().expect("temp dir");
    let tmpfs = Tmpfs::mount(&outer.path().join("tmpfs"), size);
    let data = TempDir::new_in(&tmpfs.path).expect("a data dir on the tmpfs");
    (outer, tmpfs, data)
}

/// The last lines the server wrote on stderr, for failure messages (without the `/readyz`
/// request lines, which polling repeats).
fn tail(log: &ServerLog) -> String {
    let lines: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|l| !l.contains("route=/readyz"))
        .collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

/// Once the fault is gone: the refused `request`, retried, is created and the server reports
/// ready again, all without a restart. Answers the new binding's SID.
#[track_caller]
fn recovers(
    app: &TestApp,
    log: &ServerLog,
    refusals: &Refusals,
    what: &str,
    request: impl Fn() -> Reply,
) -> String {
    let created = retry_until_created(what, log, refusals, PATIENCE, request);
    assert_ready_again(app, log, PATIENCE);
    sid(&created)
}

/// The request ids of the writes answered 503: each must have left nothing behind.
#[derive(Default)]
struct Refusals(Mutex<Vec<String>>);

impl Refusals {
    /// Asserts a 503 (see [`assert_unavailable`]) and notes its request id.
    #[track_caller]
    fn note(&self, what: &str, reply: &Reply, log: &ServerLog) {
        assert_unavailable(what, reply, log);
        let id = reply
            .header("x-request-id")
            .unwrap_or_else(|| panic!("{what}: a 503 without X-Request-Id"));
        self.0.lock().expect("the refusals").push(id.to_owned());
    }

    /// In the log of the stopped server's `data_dir`, no event came from a refused write,
    /// and none holds any of `names` (what refused writes named and no later write did: an
    /// identity, a friendly name).
    #[track_caller]
    fn assert_left_nothing(&self, data_dir: &Path, names: &[String]) {
        let refused: BTreeSet<String> = self
            .0
            .lock()
            .expect("the refusals")
            .iter()
            .cloned()
            .collect();
        assert!(!refused.is_empty(), "no write was refused");
        let events = exported_events(data_dir);
        for event in &events {
            assert!(
                !event["request_id"]
                    .as_str()
                    .is_some_and(|id| refused.contains(id)),
                "a write answered 503 left an event: {event}"
            );
            let text = event.to_string();
            for name in names {
                assert!(
                    !text.contains(&format!("\"{name}\"")),
                    "{name:?}, named only by refused writes, is in the log: {event}"
                );
            }
        }
        // The log was read: the test's own writes are in it.
        assert!(events.len() > 3, "{} events", events.len());
    }
}

/// The one service the test made: a create refused under the fault left nothing behind.
fn assert_one_service(app: &TestApp) {
    let services = app.get_raw("/v2/Services").expect(200);
    assert_eq!(
        services["services"].as_array().map(Vec::len),
        Some(1),
        "the refused service was not half-written: {services}"
    );
}

/// Retries `request` as a client would, waiting what `Retry-After` says between 503s (a
/// client's pause, not a wait for the server), until it answers 201 or `within` passes;
/// answers the body of the 201.
#[track_caller]
fn retry_until_created(
    what: &str,
    log: &ServerLog,
    refusals: &Refusals,
    within: Duration,
    request: impl Fn() -> Reply,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let reply = request();
        if reply.status == 201 {
            return reply.body;
        }
        refusals.note(what, &reply, log);
        assert!(
            Instant::now() < deadline,
            "{what}: still {} {} {within:?} after the fault went away\nserver log:\n{}",
            reply.status,
            reply.text,
            tail(log)
        );
        let wait = reply
            .header("retry-after")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(1);
        std::thread::sleep(Duration::from_secs(wait.min(2)));
    }
}

/// Asserts a 503 in Twilio's error shape with a `Retry-After` of at least one second.
#[track_caller]
fn assert_unavailable(what: &str, reply: &Reply, log: &ServerLog) {
    assert_eq!(
        reply.status,
        503,
        "{what}: {}\nserver log:\n{}",
        reply.text,
        tail(log)
    );
    assert_error(reply, 503, 503);
    let retry_after = reply
        .header("retry-after")
        .unwrap_or_else(|| panic!("{what}: a 503 without Retry-After"));
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
        "{what}: Retry-After {retry_after:?}"
    );
}

/// `/readyz`: status and body.
fn readyz(app: &TestApp) -> (u16, Value) {
    app.get("/readyz", None)
}

/// Asserts `/readyz` answers 503 with a reason.
#[track_caller]
fn assert_not_ready(app: &TestApp, log: &ServerLog) {
    let (status, body) = readyz(app);
    assert_eq!(
        status,
        503,
        "/readyz during the fault: {body}\nserver log:\n{}",
        tail(log)
    );
    assert!(
        body["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "/readyz gives no reason: {body}"
    );
    // /readyz answers anyone: it says what is wrong, never where (the log has the path). The
    // data dir's own folder names are random, so none of them may appear either.
    let data_dir = app.data_dir();
    let text = body.to_string();
    assert!(
        !text.contains(&data_dir.display().to_string()),
        "/readyz names the data dir: {body}"
    );
    for folder in data_dir.iter().map(|p| p.to_string_lossy()) {
        assert!(
            !(folder.starts_with(".tmp") && text.contains(folder.as_ref())),
            "/readyz names {folder}: {body}"
        );
    }
}

/// Waits up to `within` for `/readyz` to answer 200; asserts it does.
#[track_caller]
fn assert_ready_again(app: &TestApp, log: &ServerLog, within: Duration) {
    let mut last = (0, Value::Null);
    let ready = poll_until(within, || {
        last = readyz(app);
        last.0 == 200
    });
    let (status, body) = last;
    assert!(
        ready,
        "/readyz still answers {status} {body} {within:?} after the fault went away\n\
         server log:\n{}",
        tail(log)
    );
    assert_eq!(body["status"], "ready", "{body}");
}

/// Registers `token-{n}` for `user-{n}` (one binding a user, well under the per-user limit).
fn register(app: &TestApp, service: &str, n: usize) -> Reply {
    app.register_binding(
        service,
        &format!("user-{n}"),
        &[("BindingType", "fcm"), ("Address", &format!("token-{n}"))],
    )
}

/// Asserts the service's bindings (all pages) are exactly those in `acknowledged`: none lost,
/// and none from a refused write.
#[track_caller]
fn assert_all_listed(app: &TestApp, service: &str, acknowledged: &[String]) {
    let listed: BTreeSet<String> = app
        .walk(&format!("/v2/Services/{service}/Bindings"), "bindings")
        .iter()
        .map(sid)
        .collect();
    let acknowledged: BTreeSet<String> = acknowledged.iter().cloned().collect();
    let lost: Vec<&String> = acknowledged.difference(&listed).collect();
    assert!(
        lost.is_empty(),
        "acknowledged bindings missing: {lost:?} (listed {})",
        listed.len()
    );
    let unasked: Vec<&String> = listed.difference(&acknowledged).collect();
    assert!(
        unasked.is_empty(),
        "bindings no acknowledged write made: {unasked:?}"
    );
}

/// SIGTERM; the server must exit 0 within a few seconds, then `bindery verify` must pass.
#[track_caller]
fn stop_and_verify(mut app: TestApp, log: &ServerLog) -> (TempDir, Credentials) {
    app.terminate();
    let status = app.wait_for_exit(PATIENCE);
    assert!(
        status.is_some_and(|s| s.success()),
        "the server did not exit cleanly on SIGTERM: {status:?}\nserver log:\n{}",
        tail(log)
    );
    app.verify();
    app.into_dir_and_account()
}

/// Fills the file system holding `dir` with `dir/filler` until the disk is full, then gives
/// `leave` bytes back. Returns the filler's path.
fn fill_disk(dir: &Path, leave: u64) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("the filler");
    let mut written = 0u64;
    for chunk in [64 * 1024, 4096] {
        let bytes = vec![0xa5u8; chunk];
        loop {
            match file.write(&bytes) {
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(ENOSPC) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
    }
    file.set_len(written.saturating_sub(leave))
        .expect("the filler shrinks");
    path
}

/// Grows `filler` until its file system has no page left.
fn top_up(filler: &Path) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(filler)
        .expect("the filler");
    let page = [0x5au8; 4096];
    loop {
        match file.write(&page) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(ENOSPC) => return,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
}

#[test]
fn a_full_disk_answers_503_loses_nothing_and_recovers_when_space_is_freed() {
    let (_outer, tmpfs, data) = data_dir_on_tmpfs("4m");
    let (app, log) = TestApp::spawn_logged(data, &[], None);
    let service = sid(&app.create_service("chat"));
    let mut acknowledged = Vec::new();
    for n in 0..3 {
        acknowledged.push(sid(&register(&app, &service, n).expect(201)));
    }

    // The disk fills up, leaving room for a few more commits.
    let filler = fill_disk(&tmpfs.path, 160 * 1024);
    let refusals = Refusals::default();
    let mut refused_at = None;
    for n in 3..500 {
        let reply = register(&app, &service, n);
        if reply.status == 201 {
            acknowledged.push(sid(&reply.body));
            continue;
        }
        refusals.note(&format!("registration {n} on a full disk"), &reply, &log);
        refused_at = Some(n);
        break;
    }
    let refused_at = refused_at.expect("a registration is refused once the disk is full");
    assert!(
        refused_at > 3,
        "the disk left room for some writes before the first 503"
    );
    // Whatever room the refused commit left, the disk is now full to the last page.
    top_up(&filler);
    assert_not_ready(&app, &log);
    // Other writes, while the disk is still full: refused the same way (or, if one fits, kept).
    let mut never_made = Vec::new();
    for n in 1000..1003 {
        let reply = register(&app, &service, n);
        match reply.status {
            201 => acknowledged.push(sid(&reply.body)),
            _ => {
                refusals.note(&format!("registration {n} on a full disk"), &reply, &log);
                never_made.push(format!("user-{n}"));
            }
        }
    }
    // Reads go on.
    assert_all_listed(&app, &service, &acknowledged);
    assert_eq!(
        app.get_raw(&format!("/v2/Services/{service}")).status,
        200,
        "a read on a full disk"
    );

    // Space comes back: the same registration now succeeds, without a restart.
    std::fs::remove_file(&filler).expect("the filler goes");
    acknowledged.push(recovers(
        &app,
        &log,
        &refusals,
        "the refused registration, retried once space is free",
        || register(&app, &service, refused_at),
    ));
    assert_all_listed(&app, &service, &acknowledged);
    let (data, _) = stop_and_verify(app, &log);
    refusals.assert_left_nothing(data.path(), &never_made);
}

#[test]
fn a_database_locked_past_the_busy_timeout_is_503_and_not_ready_until_released() {
    let (app, log) = TestApp::spawn_logged(
        TempDir::new().expect("temp dir"),
        &[("BINDERY_STORAGE__BUSY_TIMEOUT", "200ms")],
        None,
    );
    let service = sid(&app.create_service("chat"));
    let mut acknowledged = vec![sid(&register(&app, &service, 0).expect(201))];
    assert_eq!(readyz(&app).0, 200, "ready before the lock");

    // Answered while the lock is held: the writer gave up waiting for it after the busy
    // timeout.
    let lock = ExclusiveLock::take(&app.data_dir().join("bindery.db"));
    let refusals = Refusals::default();
    refusals.note(
        "a registration while locked",
        &register(&app, &service, 1),
        &log,
    );
    assert_not_ready(&app, &log);
    // And still not ready after a later write, refused too, while the lock is held.
    refusals.note(
        "a service created while locked",
        &app.post("/v2/Services", &[("FriendlyName", "locked out")]),
        &log,
    );
    assert_not_ready(&app, &log);
    // Reads go on while the writer is locked out.
    assert_all_listed(&app, &service, &acknowledged);
    drop(lock);

    acknowledged.push(recovers(
        &app,
        &log,
        &refusals,
        "the refused registration, retried once the lock is released",
        || register(&app, &service, 1),
    ));
    assert_all_listed(&app, &service, &acknowledged);
    assert_one_service(&app);
    let (data, _) = stop_and_verify(app, &log);
    refusals.assert_left_nothing(data.path(), &["locked out".to_owned()]);
}

/// A data dir that is read-only when the server starts (here a tmpfs remounted read-only while
/// no server runs; the kernel refuses that, EBUSY, while SQLite holds the database, WAL and
/// shared memory open for writing, which the test also checks). SQLite would open the
/// database read-only for good, so Bindery refuses to start, naming the cause, while the
/// read-only tools (export, verify) still work; once writable, it starts and nothing is lost.
/// A data dir turning read-only under a running server is the next test's case.
#[test]
fn a_read_only_data_dir_refuses_to_serve_and_serves_again_once_writable() {
    let (_outer, tmpfs, data) = data_dir_on_tmpfs("16m");
    let (app, log) = TestApp::spawn_logged(data, &[], None);
    let service = sid(&app.create_service("chat"));
    let mut acknowledged = Vec::new();
    for n in 0..3 {
        acknowledged.push(sid(&register(&app, &service, n).expect(201)));
    }
    assert!(
        tmpfs.remount("ro").is_err(),
        "the kernel made the data dir read-only under a running server"
    );
    acknowledged.push(sid(&register(&app, &service, 3).expect(201)));
    let (data, account) = stop_and_verify(app, &log);

    tmpfs
        .remount("ro")
        .expect("the data dir remounts read-only once the server stopped");
    let mut refused = crate::support::command(crate::support::BINARY)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut status = None;
    if !poll_until(PATIENCE, || {
        status = refused.try_wait().unwrap();
        status.is_some()
    }) {
        let _ = refused.kill();
        panic!("bindery served a read-only data dir");
    }
    let status = status.expect("an exit status");
    let mut message = String::new();
    std::io::Read::read_to_string(&mut refused.stderr.take().unwrap(), &mut message).unwrap();
    assert!(!status.success());
    assert!(
        message.contains("cannot be written") && message.contains("read-only"),
        "{message}"
    );
    for tool in [&["verify"][..], &["export"][..]] {
        let output = crate::support::bindery(data.path(), tool);
        assert!(
            output.status.success(),
            "{tool:?} on a read-only data dir: {output:?}"
        );
    }

    tmpfs
        .remount("rw")
        .expect("the data dir remounts read-write");
    let (app, log) = TestApp::spawn_logged(data, &[], Some(account));
    acknowledged.push(sid(&register(&app, &service, 4).expect(201)));
    assert_ready_again(&app, &log, PATIENCE);
    assert_all_listed(&app, &service, &acknowledged);
    stop_and_verify(app, &log);
}

/// The data dir turns read-only under the running server, as when the kernel remounts a file
/// system read-only on an error: the files SQLite holds open stay open, but every write through
/// them fails with EROFS. The data dir is on the FUSE file system of `tests/faults/rofs.py`,
/// which does exactly that at the flip of a switch (a tmpfs cannot be remounted read-only
/// while SQLite holds its files open for writing, and device-mapper is not to be had here).
#[test]
fn a_data_dir_turning_read_only_while_serving_answers_503_loses_nothing_and_recovers() {
    let outer = TempDir::new().expect("temp dir");
    let fs = SwitchableFs::mount(outer.path());
    let data = TempDir::new_in(&fs.path).expect("a data dir on the FUSE mount");
    let (app, log) = TestApp::spawn_logged(data, &[], None);
    let name = app.data_dir().file_name().expect("a name").to_owned();
    assert!(
        outer
            .path()
            .join("backing")
            .join(name)
            .join("bindery.db")
            .exists(),
        "the database went through the FUSE mount to its backing dir"
    );
    let service = sid(&app.create_service("chat"));
    let mut acknowledged = Vec::new();
    let mut first = Value::Null;
    for n in 0..3 {
        let body = register(&app, &service, n).expect(201);
        acknowledged.push(sid(&body));
        if n == 0 {
            first = body;
        }
    }
    assert_eq!(readyz(&app).0, 200, "ready before the fault");

    fs.set_read_only(true);
    let refused = std::fs::write(fs.path.join("probe"), b"x").expect_err("a write is refused");
    assert_eq!(refused.raw_os_error(), Some(EROFS), "{refused}");

    let refusals = Refusals::default();
    refusals.note(
        "a registration on a read-only data dir",
        &register(&app, &service, 3),
        &log,
    );
    refusals.note(
        "a service created on a read-only data dir",
        &app.post("/v2/Services", &[("FriendlyName", "read-only")]),
        &log,
    );
    // Its binding is listed still, at the end (among the acknowledged).
    refusals.note(
        "a binding deleted on a read-only data dir",
        &app.delete(&format!("/v2/Services/{service}/Bindings/{}", sid(&first))),
        &log,
    );
    assert_not_ready(&app, &log);
    let (_, body) = readyz(&app);
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not writable")),
        "/readyz names the cause: {body}"
    );
    // Nothing gets through while the fault lasts: a later write is refused too, and the
    // server is still not ready after it.
    refusals.note(
        "a registration, again, on a read-only data dir",
        &register(&app, &service, 3),
        &log,
    );
    assert_not_ready(&app, &log);
    // Reads go on: they need only the database, the WAL and the WAL index, all open already.
    assert_all_listed(&app, &service, &acknowledged);
    assert_eq!(app.follow(&first["url"]).expect(200), first, "a fetch");
    assert_eq!(
        app.get_raw(&format!("/v2/Services/{service}")).status,
        200,
        "a read on a read-only data dir"
    );

    // Writable again: the refused registration now succeeds, without a restart.
    fs.set_read_only(false);
    acknowledged.push(recovers(
        &app,
        &log,
        &refusals,
        "the refused registration, retried once the data dir is writable",
        || register(&app, &service, 3),
    ));
    for n in 4..6 {
        acknowledged.push(sid(&register(&app, &service, n).expect(201)));
    }

    // Again, with registrations in flight as the data dir turns read-only and back: each is
    // acknowledged or refused with a 503, and every acknowledged one is kept.
    const WRITERS: usize = 4;
    let (stop, created) = (AtomicBool::new(false), AtomicUsize::new(0));
    // Bit `t` is set once writer `t` had a registration refused.
    let refused_by = AtomicUsize::new(0);
    let (written, refused) = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|t| {
                let (app, log, service, refusals) = (&app, &log, &service, &refusals);
                let (stop, created, refused_by) = (&stop, &created, &refused_by);
                scope.spawn(move || {
                    let (mut written, mut refused) = (Vec::new(), Vec::new());
                    // Only a guard: the main thread stops the writers.
                    let deadline = Instant::now() + 3 * PATIENCE;
                    for n in (100 + 1000 * t..).take_while(|_| Instant::now() < deadline) {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let reply = register(app, service, n);
                        if reply.status == 201 {
                            created.fetch_add(1, Ordering::SeqCst);
                            written.push(sid(&reply.body));
                        } else {
                            refusals.note(&format!("registration {n} in flight"), &reply, log);
                            refused_by.fetch_or(1 << t, Ordering::SeqCst);
                            // Never tried again: its user must not exist.
                            refused.push(format!("user-{n}"));
                            // A client's pause before it tries again.
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    (written, refused)
                })
            })
            .collect();
        // Some get through before the fault, every writer has one refused under it (so what
        // any of them sent before the fault has been answered), and some get through again
        // once it is gone.
        let waited = poll_until(PATIENCE, || created.load(Ordering::SeqCst) >= 2 * WRITERS);
        fs.set_read_only(true);
        let waited = waited
            && poll_until(PATIENCE, || {
                refused_by.load(Ordering::SeqCst) == (1 << WRITERS) - 1
            });
        fs.set_read_only(false);
        let created_before = created.load(Ordering::SeqCst);
        let waited =
            waited && poll_until(PATIENCE, || created.load(Ordering::SeqCst) > created_before);
        stop.store(true, Ordering::SeqCst);
        let (mut written, mut refused) = (Vec::new(), Vec::new());
        for writer in writers {
            let (sids, more) = writer.join().expect("a writer");
            written.extend(sids);
            refused.extend(more);
        }
        assert!(
            waited,
            "registrations in flight: {} acknowledged, refused by writers {:#b}; either none \
             was refused while read-only or none acknowledged before or after\nserver log:\n{}",
            created.load(Ordering::SeqCst),
            refused_by.load(Ordering::SeqCst),
            tail(&log)
        );
        (written, refused)
    });
    assert!(refused.len() >= WRITERS, "{} refused", refused.len());
    acknowledged.extend(written);
    assert_ready_again(&app, &log, PATIENCE);
    assert_all_listed(&app, &service, &acknowledged);
    assert_one_service(&app);
    let (data, _) = stop_and_verify(app, &log);
    let mut never_made = refused;
    never_made.push("read-only".to_owned());
    refusals.assert_left_nothing(data.path(), &never_made);
}
