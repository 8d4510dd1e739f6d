//! Starting servers: `bindery serve` on 127.0.0.1 and a port it chose, on a fresh data dir or
//! on one used before, what it writes kept line by line; stopping them, gently or not.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;

use super::{command, first_account, poll_until, wait_until, Credentials, BINARY, PATIENCE};

/// A running `bindery serve` on 127.0.0.1 and a port it chose; killed when dropped.
pub struct TestApp {
    pub dir: TempDir,
    pub base_url: String,
    /// The account the server created on first start (empty for a used data dir started by
    /// [`TestApp::spawn_with`]; [`TestApp::spawn_logged`] takes the earlier run's).
    pub account: Credentials,
    /// What the server wrote on stdout (nothing: without a terminal there, the first account
    /// goes to a file).
    pub stdout: ServerLog,
    child: Child,
}

impl TestApp {
    pub fn spawn() -> TestApp {
        Self::spawn_with(TempDir::new().expect("temp dir"), &[])
    }

    pub fn spawn_with_env(env: &[(&str, &str)]) -> TestApp {
        Self::spawn_with(TempDir::new().expect("temp dir"), env)
    }

    pub fn spawn_with(dir: TempDir, env: &[(&str, &str)]) -> TestApp {
        let fresh = is_fresh(dir.path());
        let account = (!fresh).then(|| Credentials {
            user: String::new(),
            password: String::new(),
        });
        Self::start(Path::new(BINARY), dir, env, account).0
    }

    /// `bindery serve` on `dir`, fresh or used before, with `env`; every stderr line is kept
    /// in the returned log. A fresh dir writes its first account; a used one writes none, so
    /// `account` (the credentials of an earlier run) stands in for it.
    pub fn spawn_logged(
        dir: TempDir,
        env: &[(&str, &str)],
        account: Option<Credentials>,
    ) -> (TestApp, ServerLog) {
        Self::spawn_logged_from(Path::new(BINARY), dir, env, account)
    }

    /// [`TestApp::spawn_logged`] with another build of the binary (the crash test's release
    /// build).
    pub fn spawn_logged_from(
        binary: &Path,
        dir: TempDir,
        env: &[(&str, &str)],
        account: Option<Credentials>,
    ) -> (TestApp, ServerLog) {
        assert!(
            is_fresh(dir.path()) || account.is_some(),
            "a used data dir writes no account: pass the first run's"
        );
        Self::start(binary, dir, env, account)
    }

    fn start(
        binary: &Path,
        dir: TempDir,
        env: &[(&str, &str)],
        account: Option<Credentials>,
    ) -> (TestApp, ServerLog) {
        let mut child = KillOnDrop(Some(
            command(binary)
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir.path())
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("bindery serve starts"),
        ));
        let process = child.0.as_mut().expect("the child");
        let log = ServerLog::keep(process.stderr.take().expect("stderr"));
        let stdout = ServerLog::keep(process.stdout.take().expect("stdout"));
        let marker = "listening on http://";
        let up = poll_until(PATIENCE, || {
            log.value_after(marker).is_some() || log.closed()
        });
        let Some(address) = log.value_after(marker) else {
            panic!(
                "bindery {} listening on {}:\n{}",
                if up { "exited before" } else { "did not start" },
                dir.path().display(),
                log.lines().join("\n")
            );
        };
        // On a fresh data dir the server writes its first account before it listens.
        let account = account.unwrap_or_else(|| first_account(dir.path()));
        let app = TestApp {
            dir,
            base_url: format!("http://{address}"),
            account,
            stdout,
            child: child.0.take().expect("the child"),
        };
        (app, log)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("bindery exits")
    }

    /// Sends SIGTERM and returns at once.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Sends SIGKILL and returns at once (the process is reaped when the app is dropped or
    /// its data dir taken back).
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
    }

    /// The exit status, if the server exits within `within`.
    pub fn wait_for_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let mut status = None;
        poll_until(within, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        status
    }

    /// The data dir and the credentials, for a server started again on them; the process is
    /// killed first if it still runs.
    pub fn into_dir_and_account(mut self) -> (TempDir, Credentials) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, TempDir::new().expect("temp dir"));
        let account = Credentials {
            user: std::mem::take(&mut self.account.user),
            password: std::mem::take(&mut self.account.password),
        };
        (dir, account)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a server started on `dir` creates its database, and so its first account.
fn is_fresh(dir: &Path) -> bool {
    !dir.join("bindery.db").exists()
}

/// A process killed if the test fails before something else owns it.
pub struct KillOnDrop(pub Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every line a server wrote on a stream so far, kept as it writes them, and whether the
/// stream has ended (the server exited, or closed it).
#[derive(Clone, Default)]
pub struct ServerLog(Arc<Mutex<Kept>>);

#[derive(Default)]
struct Kept {
    lines: Vec<String>,
    closed: bool,
}

impl ServerLog {
    /// The lines of `stream`, read on a thread of their own until it ends (so the server
    /// never blocks on a full pipe).
    pub fn keep(stream: impl Read + Send + 'static) -> ServerLog {
        let log = ServerLog::default();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                kept.0.lock().expect("the log lock").lines.push(line);
            }
            kept.0.lock().expect("the log lock").closed = true;
        });
        log
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("the log lock").lines.clone()
    }

    /// Whether the stream has ended: every line the server wrote on it is in [`Self::lines`].
    pub fn closed(&self) -> bool {
        self.0.lock().expect("the log lock").closed
    }

    /// Waits until the stream has ended, so that what was not written never will be.
    #[track_caller]
    pub fn wait_closed(&self) {
        wait_until(PATIENCE, "the end of the server's output", || self.closed());
    }

    /// What follows `marker` on the first line holding it, up to whitespace or a quote.
    pub fn value_after(&self, marker: &str) -> Option<String> {
        self.lines().iter().find_map(|line| {
            let rest = line.split(marker).nth(1)?;
            Some(
                rest.chars()
                    .take_while(|c| !c.is_whitespace() && *c != '"')
                    .collect(),
            )
        })
    }

    /// Waits up to `within` for a line holding `marker`; false at once if the stream ends
    /// without one.
    pub fn wait_for(&self, marker: &str, within: Duration) -> bool {
        let found = || self.lines().iter().any(|l| l.contains(marker));
        poll_until(within, || found() || self.closed());
        found()
    }
}

/// A `bindery serve` that exited on its own: how, what it wrote on stderr, and its data dir.
pub struct Refused {
    pub status: ExitStatus,
    pub stderr: String,
    pub dir: TempDir,
}

/// Runs `bindery serve` on 127.0.0.1:0 and a fresh data dir with the variables named in
/// `removed` taken out of the environment, then `env` set; it must exit by itself within `within`
/// (it is killed, and the test fails, if it is still running then).
pub fn serve_until_exit(env: &[(&str, &str)], removed: &[&str], within: Duration) -> Refused {
    serve_until_exit_on(TempDir::new().expect("temp dir"), env, removed, within)
}

/// [`serve_until_exit`] on `dir`, fresh or used before.
pub fn serve_until_exit_on(
    dir: TempDir,
    env: &[(&str, &str)],
    removed: &[&str],
    within: Duration,
) -> Refused {
    let mut command = command(BINARY);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for name in removed {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let mut child = KillOnDrop(Some(command.spawn().expect("bindery serve starts")));
    let process = child.0.as_mut().expect("the child");
    let stderr = ServerLog::keep(process.stderr.take().expect("stderr"));
    let mut status = None;
    let exited = poll_until(within, || {
        status = process.try_wait().expect("try_wait");
        status.is_some()
    });
    assert!(
        exited,
        "bindery serve was still running after {within:?}; stderr:\n{}",
        stderr.lines().join("\n")
    );
    stderr.wait_closed();
    Refused {
        status: status.expect("an exit status"),
        stderr: stderr.lines().iter().map(|l| format!("{l}\n")).collect(),
        dir,
    }
}
