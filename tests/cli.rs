//! The administration commands, run as an operator would.

use std::process::Command;

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{bindery, bindery_json};

fn is_sid(value: &Value, prefix: &str) -> bool {
    value.as_str().is_some_and(|s| {
        s.len() == 34
            && s.starts_with(prefix)
            && s[2..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

#[test]
fn accounts_create_prints_the_sid_and_token_as_json() {
    let dir = TempDir::new().unwrap();
    let created = bindery_json(
        dir.path(),
        &["accounts", "create", "--friendly-name", "Acme"],
    );
    let object = created.as_object().unwrap();
    assert_eq!(object.len(), 2, "{created}");
    assert!(is_sid(&created["account_sid"], "AC"), "{created}");
    assert_eq!(created["auth_token"].as_str().unwrap().len(), 32);

    let listed = bindery(dir.path(), &["accounts", "list"]);
    let line: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(line["account_sid"], created["account_sid"]);
    assert_eq!(line["friendly_name"], "Acme");
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains(created["auth_token"].as_str().unwrap())
    );
}

#[test]
fn keys_are_created_for_an_existing_account_and_revoked_once() {
    let dir = TempDir::new().unwrap();
    let account = bindery_json(dir.path(), &["accounts", "create"]);
    let account_sid = account["account_sid"].as_str().unwrap();
    let key = bindery_json(dir.path(), &["keys", "create", "--account", account_sid]);
    assert!(is_sid(&key["sid"], "SK"), "{key}");
    assert_eq!(key["secret"].as_str().unwrap().len(), 32);

    let sid = key["sid"].as_str().unwrap();
    assert!(bindery(dir.path(), &["keys", "revoke", sid])
        .status
        .success());
    let again = bindery(dir.path(), &["keys", "revoke", sid]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains(&format!("API key {sid} not found")));
}

#[test]
fn bad_sids_on_the_command_line_are_named_in_the_error() {
    let dir = TempDir::new().unwrap();
    let output = bindery(dir.path(), &["keys", "create", "--account", "ACnope"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("\"ACnope\" is not a valid account SID")
    );
    let missing = format!("AC{}", "0".repeat(32));
    let output = bindery(dir.path(), &["keys", "create", "--account", &missing]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(&format!("Account {missing} not found"))
    );
    assert!(
        output.stdout.is_empty(),
        "nothing printed on stdout on failure"
    );
}

/// Some history to verify and export: accounts, keys, a revoked key.
fn some_history(dir: &std::path::Path) -> String {
    let account = bindery_json(dir, &["accounts", "create"]);
    let sid = account["account_sid"].as_str().unwrap().to_owned();
    for _ in 0..3 {
        bindery_json(dir, &["keys", "create", "--account", &sid]);
    }
    let revoked = bindery_json(dir, &["keys", "create", "--account", &sid]);
    assert!(
        bindery(dir, &["keys", "revoke", revoked["sid"].as_str().unwrap()])
            .status
            .success()
    );
    sid
}

fn sqlite(dir: &std::path::Path, sql: &str) {
    let status = Command::new("sqlite3")
        .arg(dir.join("bindery.db"))
        .arg(sql)
        .status()
        .unwrap();
    assert!(status.success(), "sqlite3 {sql}");
}

#[test]
fn verify_passes_then_names_the_table_and_row_altered_by_hand() {
    let dir = TempDir::new().unwrap();
    let account = some_history(dir.path());
    let clean = bindery(dir.path(), &["verify"]);
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stdout)
    );

    sqlite(
        dir.path(),
        &format!("UPDATE accounts SET friendly_name = 'forged' WHERE sid = '{account}'"),
    );
    let tampered = bindery(dir.path(), &["verify"]);
    assert_eq!(tampered.status.code(), Some(1));
    let report = String::from_utf8_lossy(&tampered.stdout);
    assert!(
        report.contains(&format!("accounts: row {account} differs in friendly_name")),
        "{report}"
    );

    // A row the log never made, and a row removed behind the log's back.
    sqlite(dir.path(), "INSERT INTO api_keys VALUES ('SK00000000000000000000000000000001', 'AC00000000000000000000000000000001', '', '00', 0, 0)");
    sqlite(
        dir.path(),
        "DELETE FROM api_keys WHERE sid = (SELECT max(sid) FROM api_keys)",
    );
    let report = String::from_utf8_lossy(&bindery(dir.path(), &["verify"]).stdout).into_owned();
    assert!(report.contains("api_keys: row SK00000000000000000000000000000001 is in the database but not in the replay"), "{report}");
    assert!(
        report.contains("is missing from the database (the log has it)"),
        "{report}"
    );

    assert!(bindery(dir.path(), &["rebuild"]).status.success());
    assert!(
        bindery(dir.path(), &["verify"]).status.success(),
        "rebuild repairs the projections"
    );
}

#[test]
fn export_import_export_is_byte_identical_and_verifies() {
    let (first, second) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    some_history(first.path());
    let exported = bindery(first.path(), &["export"]);
    assert!(exported.status.success());
    assert_eq!(String::from_utf8_lossy(&exported.stdout).lines().count(), 6);

    let file = first.path().join("events.jsonl");
    std::fs::write(&file, &exported.stdout).unwrap();
    let imported = bindery(second.path(), &["import", "--from", file.to_str().unwrap()]);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let again = bindery(second.path(), &["export"]);
    assert_eq!(again.stdout, exported.stdout);
    assert!(bindery(second.path(), &["verify"]).status.success());

    let twice = bindery(second.path(), &["import", "--from", file.to_str().unwrap()]);
    assert!(!twice.status.success(), "an existing log is refused");
    assert!(String::from_utf8_lossy(&twice.stderr).contains("already holds a log"));
    assert_eq!(
        bindery(second.path(), &["export"]).stdout,
        exported.stdout,
        "nothing changed"
    );
}

#[test]
fn no_secret_is_exported_in_clear() {
    let dir = TempDir::new().unwrap();
    let account = bindery_json(dir.path(), &["accounts", "create"]);
    let key = bindery_json(
        dir.path(),
        &[
            "keys",
            "create",
            "--account",
            account["account_sid"].as_str().unwrap(),
        ],
    );
    let exported = String::from_utf8(bindery(dir.path(), &["export"]).stdout).unwrap();
    assert!(!exported.contains(account["auth_token"].as_str().unwrap()));
    assert!(!exported.contains(key["secret"].as_str().unwrap()));
}
