//! The `desktop` transport against a real notification server: a private D-Bus session bus,
//! a virtual X display (Xvfb) and `dunst`, all started, and stopped, by the test. What dunst
//! shows is read back with `dunstctl history`; the `Notify` calls themselves with
//! `dbus-monitor`.
//!
//! These tests need `Xvfb` (Debian package `xvfb`), `dunst` and `dunstctl` (`dunst`) and
//! `dbus-daemon`, `dbus-send`, `dbus-monitor` (`dbus`), installed by `.ci/run`; they fail,
//! not skip, without them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::delivery::{chat_service, notify, register, result_for, DELIVERIES};
use crate::support::{poll_until, serve_until_exit, TestApp, PATIENCE};

const NOTIFICATIONS: &str = "org.freedesktop.Notifications";

/// A process the test started: sent SIGTERM when dropped, then SIGKILL if it still runs
/// after 3 s.
struct Guard {
    name: &'static str,
    child: Child,
}

impl Guard {
    #[track_caller]
    fn spawn(name: &'static str, command: &mut Command) -> Guard {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} (is it installed?): {e}"));
        Guard { name, child }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        if poll_until(Duration::from_secs(3), || self.exited().is_some()) {
            return;
        }
        eprintln!("{} ignored SIGTERM; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first line `child` writes on stdout, within `within`; the rest is drained on a thread
/// so that the child never blocks on (or dies of) a closed pipe.
fn first_line(guard: &mut Guard, within: Duration) -> String {
    let stdout = guard.child.stdout.take().expect("a piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let _ = tx.send(lines.next());
        lines.for_each(drop);
    });
    match rx.recv_timeout(within) {
        Ok(Some(line)) => line.trim().to_owned(),
        Ok(None) => panic!("{} exited without printing a line", guard.name),
        Err(_) => panic!("{} printed nothing within {within:?}", guard.name),
    }
}

/// A D-Bus session bus of our own, listening on a socket in a temporary directory, that
/// activates no service (so nothing but what the test starts answers on it); with Xvfb and
/// dunst when `with_server`. Dropping it stops dunst, the bus, then Xvfb.
struct Session {
    monitor: Option<Guard>,
    dunst: Option<Guard>,
    _bus: Guard,
    _xvfb: Option<Guard>,
    /// `DBUS_SESSION_BUS_ADDRESS`.
    bus: String,
    /// `DISPLAY`, when there is one.
    display: Option<String>,
    dir: TempDir,
}

impl Session {
    fn start(with_server: bool) -> Session {
        let dir = TempDir::new().expect("temp dir");
        // The display first: nothing may touch the bus before DISPLAY is known.
        let (xvfb, display) = if with_server {
            // `-displayfd 1`: Xvfb picks a free display number itself and prints it once it
            // accepts connections; no TCP, only the local socket.
            let mut xvfb = Guard::spawn(
                "Xvfb",
                Command::new("Xvfb")
                    .args(["-displayfd", "1", "-nolisten", "tcp", "-screen", "0"])
                    .arg("640x480x24")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(log_file(dir.path(), "xvfb.log")),
            );
            let number = first_line(&mut xvfb, PATIENCE);
            assert!(
                !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()),
                "Xvfb printed {number:?} for its display"
            );
            (Some(xvfb), Some(format!(":{number}")))
        } else {
            (None, None)
        };

        let config = dir.path().join("bus.conf");
        std::fs::write(&config, bus_config(dir.path())).expect("the bus configuration");
        let mut bus_command = Command::new("dbus-daemon");
        bus_command
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file(dir.path(), "dbus.log"));
        match &display {
            Some(display) => bus_command.env("DISPLAY", display),
            None => bus_command.env_remove("DISPLAY"),
        };
        let mut bus_daemon = Guard::spawn("dbus-daemon", &mut bus_command);
        let bus = first_line(&mut bus_daemon, PATIENCE);
        assert!(bus.starts_with("unix:"), "dbus-daemon printed {bus:?}");

        let mut session = Session {
            monitor: None,
            dunst: None,
            _bus: bus_daemon,
            _xvfb: xvfb,
            bus,
            display,
            dir,
        };
        if with_server {
            session.start_dunst();
            session.start_monitor();
        }
        session
    }

    fn start_dunst(&mut self) {
        let config_home = self.dir.path().join("config");
        std::fs::create_dir_all(&config_home).expect("a config home");
        let mut dunst = Guard::spawn(
            "dunst",
            Command::new("dunst")
                .env("DISPLAY", self.display.as_deref().expect("a display"))
                .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
                // The system's /etc/xdg/dunst/dunstrc, not the user's.
                .env("XDG_CONFIG_HOME", &config_home)
                .stdin(Stdio::null())
                .stdout(log_file(self.dir.path(), "dunst.log"))
                .stderr(log_file(self.dir.path(), "dunst.err")),
        );
        let pid = dunst.child.id().to_string();
        let mut owner_pid = None;
        let owned = poll_until(PATIENCE, || {
            if let Some(status) = dunst.exited() {
                panic!("dunst exited ({status}):\n{}", self.logs());
            }
            // Asking the bus for the owner's PID starts nothing.
            let owner = self.run(
                "dbus-send",
                &[
                    "--session",
                    "--print-reply=literal",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.GetConnectionUnixProcessID",
                    &format!("string:{NOTIFICATIONS}"),
                ],
            );
            if owner.status.success() {
                owner_pid = Some(String::from_utf8_lossy(&owner.stdout).into_owned());
            }
            owner_pid.is_some()
        });
        assert!(
            owned,
            "dunst did not take {NOTIFICATIONS} within {PATIENCE:?}:\n{}",
            self.logs()
        );
        let text = owner_pid.unwrap_or_default();
        assert_eq!(
            text.split_whitespace().last(),
            Some(pid.as_str()),
            "{NOTIFICATIONS} is owned by another process than our dunst: {text}"
        );
        self.dunst = Some(dunst);
    }

    /// `dbus-monitor` printing every `Notify` call to `notify.log`, attached before this
    /// returns.
    fn start_monitor(&mut self) {
        let path = self.dir.path().join("notify.log");
        let monitor = Guard::spawn(
            "dbus-monitor",
            Command::new("dbus-monitor")
                .args(["--address", &self.bus])
                .arg(format!(
                    "type='method_call',interface='{NOTIFICATIONS}',member='Notify'"
                ))
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&path).expect("notify.log"))
                .stderr(log_file(self.dir.path(), "monitor.err")),
        );
        // Once it is a monitor, it has lost the name it was given.
        assert!(
            poll_until(PATIENCE, || self.notify_calls().contains("NameLost")),
            "dbus-monitor did not attach:\n{}",
            self.logs()
        );
        self.monitor = Some(monitor);
    }

    /// What `dbus-monitor` printed so far, whitespace collapsed to single spaces.
    fn notify_calls(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("notify.log"))
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs a client on this bus (and display) to completion.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let mut command = Command::new(program);
        command
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .stdin(Stdio::null());
        if let Some(display) = &self.display {
            command.env("DISPLAY", display);
        }
        command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} (is it installed?): {e}"))
    }

    #[track_caller]
    fn dunstctl(&self, args: &[&str]) -> String {
        let output = self.run("dunstctl", args);
        assert!(
            output.status.success(),
            "dunstctl {args:?}: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.logs()
        );
        String::from_utf8(output.stdout).expect("UTF-8 from dunstctl")
    }

    /// Closes every notification dunst shows and returns its history, newest first, each as
    /// (appname, summary, body), once it holds at least `count`.
    fn history(&self, count: usize) -> Vec<(String, String, String)> {
        let mut shown = Vec::new();
        let enough = poll_until(PATIENCE, || {
            self.dunstctl(&["close-all"]);
            let text = self.dunstctl(&["history"]);
            let history: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("dunstctl history is not JSON ({e}): {text}"));
            let field = |n: &Value, name: &str| {
                n[name]["data"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no {name} in {n}"))
                    .to_owned()
            };
            shown = history["data"][0]
                .as_array()
                .unwrap_or_else(|| panic!("no history list in {text}"))
                .iter()
                .map(|n| (field(n, "appname"), field(n, "summary"), field(n, "body")))
                .collect();
            shown.len() >= count
        });
        assert!(
            enough,
            "dunst's history holds {} notifications, not {count}: {shown:?}\n{}",
            shown.len(),
            self.logs()
        );
        shown
    }

    /// Every log the session's processes wrote, for failure messages.
    fn logs(&self) -> String {
        [
            "xvfb.log",
            "dbus.log",
            "dunst.log",
            "dunst.err",
            "monitor.err",
        ]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            format!("--- {name}:\n{text}")
        })
        .collect::<Vec<_>>()
        .join("\n")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The clients before the bus; the bus and then Xvfb as the fields drop.
        self.monitor.take();
        self.dunst.take();
    }
}

fn log_file(dir: &Path, name: &str) -> std::fs::File {
    std::fs::File::create(dir.join(name)).expect("a log file")
}

/// A session bus on a socket in `dir` only, with no activatable service: dunst's
/// `org.knopwob.dunst.service` must not start a second dunst behind the test's back.
fn bus_config(dir: &Path) -> String {
    let dir: PathBuf = dir.canonicalize().expect("the temp dir");
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        dir.display()
    )
}

#[test]
fn a_push_is_shown_by_the_desktop_notification_server() {
    let session = Session::start(true);
    let app = TestApp::spawn_with_env(&[
        ("BINDERY_DELIVERY__TRANSPORT", "desktop"),
        ("DBUS_SESSION_BUS_ADDRESS", &session.bus),
    ]);
    let service = chat_service(&app, "Team Chat");
    let phone = register(
        &app,
        &service,
        "alice",
        &[("BindingType", "apn"), ("Address", "alice-apn-token")],
    );
    let labels = [("transport", "desktop"), ("outcome", "delivered")];
    let before = app.metric(DELIVERIES, &labels);

    let sent: [&[(&str, &str)]; 3] = [
        &[
            ("Identity", "alice"),
            ("Title", "Standup"),
            ("Body", "Starts in 5 minutes"),
        ],
        // Without Title the push's title, and so the summary, is the service's friendly name.
        &[("Identity", "alice"), ("Body", "Lunch is ready")],
        // Without Body the service's template is rendered.
        &[
            ("Identity", "alice"),
            ("Variables.USER", "bob"),
            ("Variables.MESSAGE", "see you there"),
        ],
    ];
    for pairs in sent {
        let answer = notify(&app, &service, pairs);
        assert_eq!(
            (&answer["targeted"], &answer["delivered"], &answer["failed"]),
            (&1.into(), &1.into(), &0.into()),
            "{answer}\n{}",
            session.logs()
        );
        let result = result_for(&answer, &phone);
        assert_eq!(result["status"], "delivered", "{answer}");
        assert_eq!(result["error"], Value::Null, "{answer}");
    }
    assert_eq!(app.metric(DELIVERIES, &labels), before + 3.0);

    let mut shown = session.history(3);
    shown.sort();
    let mut expected: Vec<(String, String, String)> = [
        ("Standup", "Starts in 5 minutes"),
        ("Team Chat", "Lunch is ready"),
        ("Team Chat", "bob: see you there"),
    ]
    .iter()
    .map(|(summary, body)| {
        (
            "Bindery".to_owned(),
            (*summary).to_owned(),
            (*body).to_owned(),
        )
    })
    .collect();
    expected.sort();
    assert_eq!(
        shown, expected,
        "(appname, summary, body) in dunst's history"
    );

    // The binding type and the identity travel as hints of each Notify call.
    let calls = session.notify_calls();
    assert_eq!(
        calls.matches("member=Notify").count(),
        3,
        "three Notify calls: {calls}"
    );
    for hint in [
        r#"string "binding_type" variant string "apn""#,
        r#"string "identity" variant string "alice""#,
    ] {
        assert_eq!(
            calls.matches(hint).count(),
            3,
            "{hint} in each call: {calls}"
        );
    }
    app.verify();
}

#[test]
fn the_desktop_transport_without_a_session_bus_refuses_to_start() {
    let refused = serve_until_exit(
        &[("BINDERY_DELIVERY__TRANSPORT", "desktop")],
        &["DBUS_SESSION_BUS_ADDRESS"],
        Duration::from_secs(20),
    );
    assert!(
        !refused.status.success(),
        "{:?}\n{}",
        refused.status,
        refused.stderr
    );
    for named in ["session bus", "DBUS_SESSION_BUS_ADDRESS"] {
        assert!(
            refused.stderr.contains(named),
            "the error names {named:?}:\n{}",
            refused.stderr
        );
    }
    assert!(
        !refused.stderr.contains("listening on"),
        "{}",
        refused.stderr
    );
    // Refused before anything was written: there is no log to verify.
    assert!(!refused.dir.path().join("bindery.db").exists());
}

#[test]
fn the_desktop_transport_with_a_bus_but_no_notification_server_refuses_to_start() {
    let session = Session::start(false);
    let refused = serve_until_exit(
        &[
            ("BINDERY_DELIVERY__TRANSPORT", "desktop"),
            ("DBUS_SESSION_BUS_ADDRESS", &session.bus),
        ],
        &[],
        Duration::from_secs(20),
    );
    assert!(
        !refused.status.success(),
        "{:?}\n{}",
        refused.status,
        refused.stderr
    );
    assert!(
        refused.stderr.contains("no notification server"),
        "{}",
        refused.stderr
    );
    assert!(!refused.dir.path().join("bindery.db").exists());
}
