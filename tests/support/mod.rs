//! Test helpers: run the real binary, start a server and talk to it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

pub const BINARY: &str = env!("CARGO_BIN_EXE_bindery");

/// Runs `bindery ARGS --data-dir DIR` to completion.
pub fn bindery(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(BINARY)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("bindery runs")
}

/// Runs a command that must succeed and print one JSON object on stdout.
pub fn bindery_json(data_dir: &Path, args: &[&str]) -> Value {
    let output = bindery(data_dir, args);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// A running `bindery serve` on 127.0.0.1 and a port it chose; stopped when dropped.
pub struct TestApp {
    pub dir: TempDir,
    pub base_url: String,
    /// The account the server created on first start.
    pub account: Credentials,
    child: Child,
}

impl TestApp {
    pub fn spawn() -> TestApp {
        Self::spawn_with(TempDir::new().expect("temp dir"), &[])
    }

    pub fn spawn_with(dir: TempDir, env: &[(&str, &str)]) -> TestApp {
        // Looked at before the server starts, which creates the file.
        let fresh = !dir.path().join("bindery.db").exists();
        let mut child = Command::new(BINARY)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bindery serve starts");
        let stdout = lines_of(child.stdout.take().expect("stdout"));
        let address = wait_for_line(child.stderr.take().expect("stderr"), "listening on http://");
        // On a fresh data dir the server prints its first account before it listens.
        let mut printed = Vec::new();
        while fresh && !printed.iter().any(|l: &String| l.contains("auth_token:")) {
            match stdout.recv_timeout(Duration::from_secs(10)) {
                Ok(line) => printed.push(line),
                Err(_) => panic!("no first account printed; stdout was {printed:?}"),
            }
        }
        let field = |name: &str| {
            printed
                .iter()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
                .unwrap_or_default()
        };
        let account = Credentials {
            user: field("account_sid:"),
            password: field("auth_token:"),
        };
        TestApp {
            dir,
            base_url: format!("http://{address}"),
            account,
            child,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A GET signed with `credentials` (or unsigned), answering (status, JSON body).
    pub fn get(&self, path: &str, credentials: Option<&Credentials>) -> (u16, Value) {
        let mut request = ureq::get(&self.url(path));
        if let Some(c) = credentials {
            request = request.set("Authorization", &basic(c));
        }
        respond(request.call())
    }

    pub fn post_form(
        &self,
        path: &str,
        credentials: &Credentials,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        respond(
            ureq::post(&self.url(path))
                .set("Authorization", &basic(credentials))
                .send_form(form),
        )
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().expect("bindery exits")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn basic(c: &Credentials) -> String {
    use base64::Engine;
    let token =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.user, c.password));
    format!("Basic {token}")
}

fn respond(result: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = response.status();
    let text = response.into_string().expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).expect("JSON body")
    };
    (status, body)
}

/// The lines of `stream`, read on a thread of their own.
fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads `stream` until a line contains `marker`, returning what follows it up to whitespace;
/// keeps draining the stream afterwards so the server never blocks on a full pipe.
fn wait_for_line(stream: impl Read + Send + 'static, marker: &'static str) -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        let mut log = Vec::new();
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if !sent {
                if let Some(rest) = line.split(marker).nth(1) {
                    let address: String = rest
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '"')
                        .collect();
                    let _ = tx.send(Ok(address));
                    sent = true;
                } else {
                    log.push(line);
                }
            }
        }
        if !sent {
            let _ = tx.send(Err(log.join("\n")));
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(address)) => address,
        Ok(Err(log)) => panic!("bindery exited before listening:\n{log}"),
        Err(_) => panic!("bindery did not start listening within 30 s"),
    }
}
