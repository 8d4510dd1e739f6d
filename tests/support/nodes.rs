//! Many `bindery serve` nodes on one PostgreSQL database (CONTRACT §7), and the one-shot
//! commands run against that database: [`Database`] is the settings that put a process on it
//! (the engine, the URL, the sealing key file every node shares), [`Nodes`] the servers
//! started on it, each on a data dir of its own.
//!
//! The PostgreSQL servers themselves come from `bindery-pgtest` (real servers, never a mock).

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;
use tempfile::TempDir;

use super::{command, first_account, Credentials, ServerLog, TestApp, BINARY};

/// The settings of a process on one PostgreSQL database: `storage.engine = "postgres"`, its
/// URL, and a sealing key file (nodes of one registry must share it, or they refuse to
/// start). Also a scratch data dir for the one-shot commands (on PostgreSQL they keep nothing
/// there).
pub struct Database {
    /// The libpq connection string (`storage.postgres.url`).
    pub url: String,
    key_file: PathBuf,
    /// Holds the key file (unless it was given) and the commands' data dir.
    scratch: TempDir,
}

impl Database {
    /// The database at `url`, with a fresh sealing key written for it.
    pub fn new(url: impl Into<String>) -> Database {
        let scratch = TempDir::new().expect("temp dir");
        let key_file = scratch.path().join("shared-secret.key");
        write_key_file(&key_file);
        Database {
            url: url.into(),
            key_file,
            scratch,
        }
    }

    /// The database at `url`, sealed under the key in `key_file` (a SQLite data dir's
    /// `secret.key`, for an export of it to import).
    pub fn with_key_file(url: impl Into<String>, key_file: &Path) -> Database {
        let scratch = TempDir::new().expect("temp dir");
        let copy = scratch.path().join("shared-secret.key");
        std::fs::copy(key_file, &copy).expect("copying the key file");
        Database {
            url: url.into(),
            key_file: copy,
            scratch,
        }
    }

    /// The sealing key file the nodes share.
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// The variables that put a process on this database.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("BINDERY_STORAGE__ENGINE".into(), "postgres".into()),
            ("BINDERY_STORAGE__POSTGRES__URL".into(), self.url.clone()),
            (
                "BINDERY_STORAGE__SECRET_KEY_FILE".into(),
                self.key_file.display().to_string(),
            ),
        ]
    }

    /// Runs `bindery ARGS` on this database to completion (with a scratch data dir).
    pub fn bindery(&self, args: &[&str]) -> Output {
        self.bindery_with(&[], args)
    }

    /// [`Database::bindery`] with more settings in `env`.
    pub fn bindery_with(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        command(BINARY)
            .args(args)
            .arg("--data-dir")
            .arg(self.scratch.path().join("data"))
            .envs(self.env())
            .envs(env.iter().copied())
            .output()
            .expect("bindery runs")
    }

    /// Runs a command that must succeed and print one JSON object on stdout.
    #[track_caller]
    pub fn bindery_json(&self, args: &[&str]) -> Value {
        let output = self.bindery(args);
        assert!(
            output.status.success(),
            "{args:?} on PostgreSQL failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?} printed no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        })
    }

    /// `bindery verify` must find every projection row equal to a replay of the log.
    #[track_caller]
    pub fn verify(&self) {
        let output = self.bindery(&["verify"]);
        assert!(
            output.status.success(),
            "bindery verify on PostgreSQL failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `bindery export`'s output: every event, one JSON line each.
    #[track_caller]
    pub fn export(&self) -> Vec<u8> {
        let output = self.bindery(&["export"]);
        assert!(
            output.status.success(),
            "bindery export on PostgreSQL failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    /// The exported events, parsed.
    #[track_caller]
    pub fn events(&self) -> Vec<Value> {
        String::from_utf8(self.export())
            .expect("UTF-8")
            .lines()
            .map(|line| serde_json::from_str(line).expect("an exported event"))
            .collect()
    }

    /// A new API key of `account` (its SID), made by the CLI on this database.
    pub fn create_key(&self, account: &str) -> Credentials {
        let made = self.bindery_json(&["keys", "create", "--account", account]);
        Credentials::printed(&made, "sid", "secret")
    }
}

/// Writes a sealing key file as Bindery makes one: 64 hex digits and a newline, mode 0600.
pub fn write_key_file(path: &Path) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("random bytes");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("creating the key file");
    writeln!(file, "{}", hex::encode(bytes)).expect("writing the key file");
}

/// One `bindery serve` of many: the server (signed in as the registry's first account) and
/// what it wrote on stderr.
pub struct Node {
    pub app: TestApp,
    pub log: ServerLog,
}

impl Deref for Node {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl DerefMut for Node {
    fn deref_mut(&mut self) -> &mut TestApp {
        &mut self.app
    }
}

impl Node {
    /// The last lines the node wrote, for a failure's message.
    pub fn log_tail(&self) -> String {
        let lines = self.log.lines();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// `bindery serve` nodes on one [`Database`], each on 127.0.0.1, a port of its own and a data
/// dir of its own; killed when dropped (drop them before the PostgreSQL server).
pub struct Nodes {
    pub db: Database,
    pub nodes: Vec<Node>,
    /// The registry's first account, which one of the nodes created.
    pub account: Credentials,
}

impl Nodes {
    /// Starts `count` nodes at once (each from a thread of its own) on a database with no
    /// registry yet, with `env` besides [`Database::env`]; returns once every one listens.
    /// One of them creates the first account; every node is signed in as it.
    pub fn start(db: Database, count: usize, env: &[(&str, &str)]) -> Nodes {
        let nodes = start_nodes(&db, count, env);
        let written: Vec<&Node> = nodes
            .iter()
            .filter(|node| node.dir.path().join("first-account.json").exists())
            .collect();
        let Some(first) = written.first() else {
            panic!("no node wrote first-account.json: is the database fresh?");
        };
        let account = first_account(first.dir.path());
        Self::signed_in(db, nodes, account)
    }

    /// Starts `count` nodes at once on a registry that has accounts already (no node creates
    /// one), signed in as `account`.
    pub fn start_on_registry(
        db: Database,
        count: usize,
        env: &[(&str, &str)],
        account: Credentials,
    ) -> Nodes {
        let nodes = start_nodes(&db, count, env);
        Self::signed_in(db, nodes, account)
    }

    fn signed_in(db: Database, mut nodes: Vec<Node>, account: Credentials) -> Nodes {
        for node in &mut nodes {
            node.app.account = account.clone();
        }
        Nodes { db, nodes, account }
    }

    /// How many of the nodes wrote a first account into their data dir.
    pub fn first_accounts_written(&self) -> usize {
        self.nodes
            .iter()
            .filter(|node| node.dir.path().join("first-account.json").exists())
            .count()
    }

    /// Every node's last lines, for a failure's message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, node)| format!("--- node {i} ({}):\n{}", node.base_url, node.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Deref for Nodes {
    type Target = [Node];
    fn deref(&self) -> &[Node] {
        &self.nodes
    }
}

impl DerefMut for Nodes {
    fn deref_mut(&mut self) -> &mut [Node] {
        &mut self.nodes
    }
}

/// `count` nodes started at once; their stderr is kept.
fn start_nodes(db: &Database, count: usize, env: &[(&str, &str)]) -> Vec<Node> {
    let mut all: Vec<(String, String)> = db.env();
    all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    std::thread::scope(|scope| {
        let starting: Vec<_> = (0..count)
            .map(|_| {
                scope.spawn(|| {
                    // An account to stand in until the first one is known: a node on
                    // PostgreSQL keeps no database in its data dir, so `TestApp` cannot tell
                    // whether it will write one.
                    let placeholder = Credentials {
                        user: String::new(),
                        password: String::new(),
                    };
                    let dir = TempDir::new().expect("temp dir");
                    let (app, log) = TestApp::spawn_logged(dir, &all, Some(placeholder));
                    Node { app, log }
                })
            })
            .collect();
        starting
            .into_iter()
            .map(|node| node.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}
