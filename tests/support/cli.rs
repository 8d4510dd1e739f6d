//! The binary's one-shot commands on a data dir (`bindery verify`, `export`, `accounts`…), and
//! what they, or the `sqlite3` CLI, show of a data dir from outside the server.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use super::TestApp;

pub const BINARY: &str = env!("CARGO_BIN_EXE_bindery");

/// A command running `binary` without the caller's `BINDERY_*` variables: the binary reads
/// each as a setting and refuses unknown ones, such as the crash test's `BINDERY_CRASH_*`, so
/// a test sets exactly the settings it means.
pub fn command(binary: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BINDERY_") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `bindery ARGS --data-dir DIR` to completion.
pub fn bindery(data_dir: &Path, args: &[&str]) -> Output {
    command(BINARY)
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

/// Every event of the log, as `bindery export` writes them (one JSON object a line).
#[track_caller]
pub fn exported_events(data_dir: &Path) -> Vec<Value> {
    let output = bindery(data_dir, &["export"]);
    assert!(
        output.status.success(),
        "bindery export failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("an exported event ({e}): {line}"))
        })
        .collect()
}

impl TestApp {
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
