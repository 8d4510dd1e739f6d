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

/// The credentials a server wrote for the first account it created in `data_dir` (with no
/// terminal on stdout, it writes them to a file only its owner may read).
pub fn first_account(data_dir: &Path) -> Credentials {
    let file = data_dir.join("first-account.json");
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("no first account in {}: {e}", file.display()));
    let value: Value = serde_json::from_str(&text).expect("the first account is JSON");
    let field = |name: &str| {
        value[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} missing in {text}"))
            .to_owned()
    };
    Credentials {
        user: field("account_sid"),
        password: field("auth_token"),
    }
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
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bindery serve starts");
        let address = wait_for_line(child.stderr.take().expect("stderr"), "listening on http://");
        // On a fresh data dir the server writes its first account before it listens.
        let account = if fresh {
            first_account(dir.path())
        } else {
            Credentials {
                user: String::new(),
                password: String::new(),
            }
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

// ---- Requests with full control over method, headers and body, and the answers in full ----

/// An answer: status, headers, the raw text and its JSON (`Null` when the body is empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub text: String,
    pub body: Value,
    headers: Vec<(String, String)>,
}

impl Reply {
    /// A header's value, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts a successful JSON answer with this status and returns its body.
    #[track_caller]
    pub fn expect(self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", self.text);
        self.body
    }
}

fn reply(result: Result<ureq::Response, ureq::Error>) -> Reply {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(e) => panic!("request failed: {e}"),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .filter_map(|name| {
            let value = response.header(&name)?.to_owned();
            Some((name, value))
        })
        .collect();
    let text = response.into_string().expect("a text body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("status {status}: the body is not JSON ({e}): {text:?}"))
    };
    Reply {
        status,
        text,
        body,
        headers,
    }
}

/// `value` percent-encoded as a path segment the way Twilio's helper library sends it: `@`,
/// `+` and the other RFC 3986 pchars raw, a space as `%20`, non-ASCII as its UTF-8 bytes.
pub fn segment(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `pairs` as an `application/x-www-form-urlencoded` body or query string.
pub fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| {
        let mut out = String::new();
        for byte in text.bytes() {
            match byte {
                b' ' => out.push('+'),
                b if b.is_ascii_alphanumeric() || b"-._*".contains(&b) => out.push(b as char),
                b => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `/v2/Services/{service}/Users/{user}`, the user (SID or identity) encoded as a segment.
pub fn user_path(service: &str, user: &str) -> String {
    format!("/v2/Services/{service}/Users/{}", segment(user))
}

/// `…/Users/{user}/Bindings`.
pub fn user_bindings_path(service: &str, user: &str) -> String {
    format!("{}/Bindings", user_path(service, user))
}

/// The `sid` of a JSON body.
#[track_caller]
pub fn sid(body: &Value) -> String {
    body["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("no sid in {body}"))
        .to_owned()
}

/// The names of a JSON object's keys.
pub fn keys(body: &Value) -> std::collections::BTreeSet<String> {
    body.as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"))
        .keys()
        .cloned()
        .collect()
}

/// The properties Twilio's spec lists for `schema` (e.g. `chat.v2.service`).
pub fn spec_fields(schema: &str) -> std::collections::BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/contract/twilio_chat_v2.json");
    let spec: Value = serde_json::from_slice(&std::fs::read(&path).expect("the spec")).unwrap();
    keys(&spec["components"]["schemas"][schema]["properties"])
}

/// Asserts a Twilio error body: exactly `code`, `message`, `more_info`, `status`, with these
/// values, and the same HTTP status.
#[track_caller]
pub fn assert_error(reply: &Reply, status: u16, code: u64) {
    assert_eq!(
        (reply.status, reply.body["code"].as_u64()),
        (status, Some(code)),
        "{}",
        reply.text
    );
    let expected: std::collections::BTreeSet<String> = ["code", "message", "more_info", "status"]
        .map(String::from)
        .into();
    assert_eq!(keys(&reply.body), expected, "{}", reply.text);
    assert_eq!(reply.body["status"], status, "{}", reply.text);
    assert_eq!(
        reply.body["more_info"],
        format!("https://www.twilio.com/docs/errors/{code}")
    );
    assert!(
        reply.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        reply.text
    );
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        reply.header("content-type")
    );
}

/// Whether `text` is a date exactly as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn is_twilio_date(text: &Value) -> bool {
    let Some(text) = text.as_str() else {
        return false;
    };
    let bytes = text.as_bytes();
    bytes.len() == 20
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            10 => *b == b'T',
            13 | 16 => *b == b':',
            19 => *b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

impl TestApp {
    pub fn spawn_with_env(env: &[(&str, &str)]) -> TestApp {
        Self::spawn_with(TempDir::new().expect("temp dir"), env)
    }

    /// Another account, made by the CLI beside the running server.
    pub fn other_account(&self) -> Credentials {
        let made = bindery_json(self.dir.path(), &["accounts", "create"]);
        Credentials {
            user: made["account_sid"].as_str().unwrap().to_owned(),
            password: made["auth_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Any request signed as `credentials`; `body` is sent as given, with the headers given.
    pub fn send_as(
        &self,
        credentials: &Credentials,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        let mut request =
            ureq::request(method, &self.url(path)).set("Authorization", &basic(credentials));
        for (name, value) in headers {
            request = request.set(name, value);
        }
        reply(match body {
            Some(bytes) => request.send_bytes(bytes),
            None => request.call(),
        })
    }

    /// A request signed as the first account.
    pub fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        self.send_as(&self.account, method, path, headers, body)
    }

    /// A GET as the first account, answered in full.
    pub fn get_raw(&self, path: &str) -> Reply {
        self.send("GET", path, &[], None)
    }

    /// A DELETE as the first account, with no `Accept` header, as the helper library sends it.
    pub fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, &[], None)
    }

    /// A POST as the first account with this content type (none when `None`) and body.
    pub fn post_raw(&self, path: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
        let headers: Vec<(&str, &str)> = content_type
            .map(|t| ("Content-Type", t))
            .into_iter()
            .collect();
        self.send("POST", path, &headers, Some(body))
    }

    /// A form POST as `credentials`.
    pub fn post_as(&self, credentials: &Credentials, path: &str, pairs: &[(&str, &str)]) -> Reply {
        let headers = [("Content-Type", "application/x-www-form-urlencoded")];
        self.send_as(
            credentials,
            "POST",
            path,
            &headers,
            Some(form(pairs).as_bytes()),
        )
    }

    /// A form POST as the first account.
    pub fn post(&self, path: &str, pairs: &[(&str, &str)]) -> Reply {
        self.post_as(&self.account, path, pairs)
    }

    /// Follows a URL this server gave out (absolute, on its own origin).
    #[track_caller]
    pub fn follow(&self, url: &Value) -> Reply {
        let url = url.as_str().unwrap_or_else(|| panic!("not a URL: {url}"));
        let path = url
            .strip_prefix(&self.base_url)
            .unwrap_or_else(|| panic!("{url} is not on {}", self.base_url));
        self.get_raw(path)
    }

    /// Every item of a list, following `next_page_url` from `path` to the end.
    pub fn walk(&self, path: &str, key: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut page = self.get_raw(path).expect(200);
        loop {
            items.extend(page[key].as_array().expect("a list").iter().cloned());
            let next = page["meta"]["next_page_url"].clone();
            if next.is_null() {
                return items;
            }
            page = self.follow(&next).expect(200);
        }
    }

    /// `bindery verify` on this server's data dir must find every projection row equal to a
    /// replay of the log.
    #[track_caller]
    pub fn verify(&self) {
        let output = bindery(self.dir.path(), &["verify"]);
        assert!(
            output.status.success(),
            "bindery verify failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Creates a service; it must answer 201.
    #[track_caller]
    pub fn create_service(&self, friendly_name: &str) -> Value {
        self.post("/v2/Services", &[("FriendlyName", friendly_name)])
            .expect(201)
    }

    /// Creates a user by identity; it must answer 201.
    #[track_caller]
    pub fn create_user(&self, service: &str, identity: &str) -> Value {
        self.post(
            &format!("/v2/Services/{service}/Users"),
            &[("Identity", identity)],
        )
        .expect(201)
    }

    /// Creates a push credential; it must answer 201.
    #[track_caller]
    pub fn create_credential(&self, pairs: &[(&str, &str)]) -> Value {
        self.post("/v2/Credentials", pairs).expect(201)
    }

    /// Registers a device for `user` (SID or identity) [EXT].
    pub fn register_binding(&self, service: &str, user: &str, pairs: &[(&str, &str)]) -> Reply {
        self.post(&user_bindings_path(service, user), pairs)
    }

    /// The first page of a user's bindings, with `query` (e.g. `BindingType=apn`) appended.
    pub fn list_user_bindings(&self, service: &str, user: &str, query: &str) -> Reply {
        let path = user_bindings_path(service, user);
        if query.is_empty() {
            self.get_raw(&path)
        } else {
            self.get_raw(&format!("{path}?{query}"))
        }
    }

    /// The SIDs of every binding `user` holds, all pages.
    pub fn user_binding_sids(&self, service: &str, user: &str) -> Vec<String> {
        self.walk(&user_bindings_path(service, user), "bindings")
            .iter()
            .map(sid)
            .collect()
    }
}

/// The decoded `name=value` pairs of a URL's query string (`+` is a space there).
pub fn query_pairs(url: &str) -> Vec<(String, String)> {
    let decode = |text: &str| {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).expect("UTF-8 after decoding")
    };
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

// ---- Servers whose stderr is kept, stopped by SIGTERM, restarted on the same data dir ----

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

/// Every line a server wrote on stderr so far, kept as it writes them.
#[derive(Clone, Default)]
pub struct ServerLog(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl ServerLog {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().expect("the log lock").clone()
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

    /// Waits up to `within` for a line holding `marker`.
    pub fn wait_for(&self, marker: &str, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        loop {
            if self.lines().iter().any(|l| l.contains(marker)) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl TestApp {
    /// `bindery serve` on `dir`, fresh or used before, with `env`; every stderr line is kept
    /// in the returned log. A fresh dir writes its first account; a used one writes none, so
    /// `account` (the credentials of an earlier run) stands in for it.
    pub fn spawn_logged(
        dir: TempDir,
        env: &[(&str, &str)],
        account: Option<Credentials>,
    ) -> (TestApp, ServerLog) {
        let fresh = !dir.path().join("bindery.db").exists();
        assert!(
            fresh || account.is_some(),
            "a used data dir writes no account: pass the first run's"
        );
        let mut child = KillOnDrop(Some(
            Command::new(BINARY)
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir.path())
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("bindery serve starts"),
        ));
        let process = child.0.as_mut().expect("the child");
        let stderr = lines_of(process.stderr.take().expect("stderr"));
        let log = ServerLog::default();
        let kept = log.clone();
        let (listening, address) = mpsc::channel();
        std::thread::spawn(move || {
            let marker = "listening on http://";
            let mut sent = false;
            for line in stderr {
                let found = !sent && line.contains(marker);
                kept.0.lock().expect("the log lock").push(line);
                if found {
                    let _ = listening.send(());
                    sent = true;
                }
            }
        });
        if address.recv_timeout(Duration::from_secs(30)).is_err() {
            panic!(
                "bindery did not start listening within 30 s:\n{}",
                log.lines().join("\n")
            );
        }
        let address = log
            .value_after("listening on http://")
            .expect("the listening line");
        let account = match account {
            Some(account) => account,
            None => first_account(dir.path()),
        };
        let app = TestApp {
            dir,
            base_url: format!("http://{address}"),
            account,
            child: child.0.take().expect("the child"),
        };
        (app, log)
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

    /// The exit status, if the server exits within `within`.
    pub fn wait_for_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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

// ---- Delivery: `/metrics` samples, and servers that must refuse to start ----

impl TestApp {
    /// The value of the `/metrics` sample named `name` whose labels include `labels`; 0 when
    /// that series has not been touched yet (Prometheus leaves it out until then).
    #[track_caller]
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = ureq::get(&self.url("/metrics"))
            .timeout(Duration::from_secs(10))
            .call()
            .expect("GET /metrics")
            .into_string()
            .expect("a text body");
        text.lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (found, labels_text) = match series.split_once('{') {
                    Some((found, rest)) => (found, rest.strip_suffix('}').unwrap_or(rest)),
                    None => (series, ""),
                };
                let have: Vec<&str> = labels_text.split(',').collect();
                let wanted = found == name
                    && labels
                        .iter()
                        .all(|(k, v)| have.contains(&format!("{k}=\"{v}\"").as_str()));
                wanted.then(|| value.parse::<f64>().expect("a sample value"))
            })
            .unwrap_or(0.0)
    }
}

/// A `bindery serve` that exited on its own: how, what it wrote on stderr, and its data dir.
pub struct Refused {
    pub status: std::process::ExitStatus,
    pub stderr: String,
    pub dir: TempDir,
}

/// Runs `bindery serve` on 127.0.0.1:0 and a fresh data dir with the variables named in
/// `removed` taken out of the environment, then `env` set; it must exit by itself within `within`
/// (it is killed, and the test fails, if it is still running then).
pub fn serve_until_exit(env: &[(&str, &str)], removed: &[&str], within: Duration) -> Refused {
    let dir = TempDir::new().expect("temp dir");
    let output = TempDir::new().expect("temp dir");
    let stderr_path = output.path().join("stderr");
    let mut command = Command::new(BINARY);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).expect("a stderr file"));
    for name in removed {
        command.env_remove(name);
    }
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("bindery serve starts");
    let deadline = std::time::Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "bindery serve was still running after {within:?}; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Refused {
        status,
        stderr: std::fs::read_to_string(&stderr_path).expect("the stderr file"),
        dir,
    }
}

// ---- Hostile input and tenancy: raw HTTP, raw `Authorization` headers, the SQLite tables ----

/// An answer read off a raw socket: status, headers and the body's bytes (de-chunked).
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when empty); panics on a body that is not JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        if self.body.is_empty() {
            return Value::Null;
        }
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {}: the body is not JSON ({e}): {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// `value` with every byte but ASCII letters and digits percent-encoded (so `.` and `..` reach
/// the server as `%2E` and `%2E%2E`, which a URL parser would otherwise resolve away).
pub fn escape_all(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return out;
        };
        data = &data[line_end + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

impl TestApp {
    /// One request written byte for byte on a fresh connection: `target` exactly as given (no
    /// URL parsing or normalising), `headers` plus `Host`, `Content-Length` (when there is a
    /// body and `headers` name no `Transfer-Encoding`) and `Connection: close`. The server may answer before it read the whole body (one
    /// over the limit): a failed write is ignored and the answer read all the same.
    pub fn raw_http(
        &self,
        method: &str,
        target: &[u8],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawReply {
        use std::io::Write;
        let address = self.base_url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("a read timeout");
        let mut head = Vec::new();
        head.extend_from_slice(method.as_bytes());
        head.push(b' ');
        head.extend_from_slice(target);
        head.extend_from_slice(format!(" HTTP/1.1\r\nHost: {address}\r\n").as_bytes());
        for (name, value) in headers {
            head.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        let chunked = headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("transfer-encoding"));
        if !chunked && (!body.is_empty() || method == "POST") {
            head.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        head.extend_from_slice(b"Connection: close\r\n\r\n");
        let _ = stream.write_all(&head).and_then(|_| stream.write_all(body));
        let mut answer = Vec::new();
        let mut buffer = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
                // A reset after the answer was sent (the server closed with unread input).
                Err(_) if !answer.is_empty() => break,
                Err(e) => panic!(
                    "no answer to {method} {:?}: {e}",
                    String::from_utf8_lossy(target)
                ),
            }
        }
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&answer)));
        let head = String::from_utf8_lossy(&answer[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {head:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let rest = &answer[split + 4..];
        let chunked = headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
        });
        let body = if chunked {
            dechunk(rest)
        } else {
            let length = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(rest.len());
            rest[..length.min(rest.len())].to_vec()
        };
        RawReply {
            status,
            headers,
            body,
        }
    }

    /// [`TestApp::raw_http`] signed as `credentials`.
    pub fn raw_as(
        &self,
        credentials: &Credentials,
        method: &str,
        target: &[u8],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawReply {
        let authorization = basic(credentials);
        let mut all = vec![("Authorization", authorization.as_str())];
        all.extend_from_slice(headers);
        self.raw_http(method, target, &all, body)
    }

    /// A request with exactly this `Authorization` header value (none when `None`).
    pub fn send_authorization(
        &self,
        authorization: Option<&str>,
        method: &str,
        path: &str,
    ) -> Reply {
        let mut request = ureq::request(method, &self.url(path));
        if let Some(value) = authorization {
            request = request.set("Authorization", value);
        }
        reply(request.call())
    }

    /// The tables of the server's SQLite database as the `sqlite3` CLI lists them (`.tables`);
    /// `None` when that CLI is not installed.
    pub fn sqlite_tables(&self) -> Option<Vec<String>> {
        let output = match Command::new("sqlite3")
            .arg(self.dir.path().join("bindery.db"))
            .arg(".tables")
            .output()
        {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("sqlite3: {e}"),
        };
        assert!(
            output.status.success(),
            "sqlite3 .tables failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut tables: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        tables.sort();
        Some(tables)
    }
}
