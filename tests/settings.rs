//! Every command reads the same settings as `serve` (defaults < `--config FILE` < `BINDERY_*`
//! environment < flags) and refuses what it does not know; `rebuild` and `import` are refused
//! while a server holds the data dir.

use std::path::Path;
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::support::{bindery, bindery_json, TestApp, BINARY};

/// `bindery ARGS` with `env` added to a copy of this environment without BINDERY_* names.
fn bindery_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BINARY);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("BINDERY_") {
            command.env_remove(name);
        }
    }
    command.args(args).envs(env.iter().copied());
    command.output().expect("bindery runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every command but `serve`, with its arguments, on `dir`.
fn commands(dir: &Path) -> Vec<Vec<String>> {
    let dir = dir.to_str().unwrap().to_owned();
    let backup = format!("{dir}/copy.db");
    let export = format!("{dir}/events.jsonl");
    [
        vec!["accounts", "create"],
        vec!["accounts", "list"],
        vec![
            "keys",
            "create",
            "--account",
            "AC00000000000000000000000000000001",
        ],
        vec!["keys", "revoke", "SK00000000000000000000000000000001"],
        vec!["rebuild"],
        vec!["verify"],
        vec!["export"],
        vec!["backup", "--to", &backup],
        vec!["import", "--from", &export],
    ]
    .into_iter()
    .map(|args| {
        let mut args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        args.extend(["--data-dir".to_owned(), dir.clone()]);
        args
    })
    .collect()
}

#[test]
fn every_command_refuses_a_bad_value_or_an_unknown_setting_and_writes_nothing() {
    let dir = TempDir::new().unwrap();
    let refused = [
        (
            ("BINDERY_STORAGE__SYNCHRONOUS", "bogus"),
            "storage.synchronous",
        ),
        (("BINDERY_NO_SUCH_SETTING", "1"), "no_such_setting"),
    ];
    for args in commands(dir.path()) {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        for ((name, value), key) in refused {
            let output = bindery_env(&args, &[(name, value)]);
            assert!(
                !output.status.success(),
                "{name}={value} bindery {args:?} exited 0"
            );
            assert!(
                stderr(&output).contains(key),
                "{name}={value} bindery {args:?}: {}",
                stderr(&output)
            );
        }
    }
    assert!(
        !dir.path().join("bindery.db").exists(),
        "a refused command created a database"
    );
}

#[test]
fn a_data_dir_given_in_the_environment_or_a_file_means_the_same_to_every_command() {
    let root = TempDir::new().unwrap();
    let dir = root.path().join("registry");
    let dir_text = dir.to_str().unwrap();
    let created = bindery_env(
        &["accounts", "create", "--friendly-name", "from env"],
        &[("BINDERY_DATA_DIR", dir_text)],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(
        dir.join("bindery.db").exists(),
        "not created where BINDERY_DATA_DIR says"
    );

    let file = root.path().join("bindery.toml");
    std::fs::write(&file, format!("data_dir = {dir_text:?}\n")).unwrap();
    let listed = bindery_env(
        &["accounts", "list", "--config", file.to_str().unwrap()],
        &[],
    );
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("from env"),
        "--config's data_dir was not read"
    );

    // A flag wins over the environment.
    let elsewhere = root.path().join("elsewhere");
    let flagged = bindery_env(
        &[
            "accounts",
            "list",
            "--data-dir",
            elsewhere.to_str().unwrap(),
        ],
        &[("BINDERY_DATA_DIR", dir_text)],
    );
    assert!(!flagged.status.success(), "no database in the flag's dir");
    assert!(
        stderr(&flagged).contains("elsewhere"),
        "{}",
        stderr(&flagged)
    );
}

#[test]
fn rebuild_and_import_are_refused_beside_a_running_server_and_the_rest_are_not() {
    let app = TestApp::spawn();
    let dir = app.data_dir();
    let (status, _) = app.post_form("/v2/Services", &app.account, &[("FriendlyName", "chat")]);
    assert_eq!(status, 201);
    let export = bindery(&dir, &["export"]);
    assert!(export.status.success());
    std::fs::write(dir.join("events.jsonl"), &export.stdout).unwrap();

    for command in ["rebuild", "import"] {
        let mut args = vec![command];
        let from = dir.join("events.jsonl");
        if command == "import" {
            args.extend(["--from", from.to_str().unwrap()]);
        }
        let output = bindery(&dir, &args);
        assert!(!output.status.success(), "{command} ran beside the server");
        let message = stderr(&output);
        assert!(
            message.contains("stop the server") && message.contains(&dir.display().to_string()),
            "{command}: {message}"
        );
    }
    // A second server on the same data dir is refused too.
    let second = bindery(&dir, &["serve", "--listen", "127.0.0.1:0"]);
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("bindery.lock"),
        "{}",
        stderr(&second)
    );

    // The safe ones run beside it.
    let account = bindery_json(&dir, &["accounts", "create"]);
    let key = bindery_json(
        &dir,
        &[
            "keys",
            "create",
            "--account",
            account["account_sid"].as_str().unwrap(),
        ],
    );
    for args in [
        vec!["keys", "revoke", key["sid"].as_str().unwrap()],
        vec!["accounts", "list"],
        vec!["verify"],
        vec!["export"],
        vec!["backup", "--to", dir.join("copy.db").to_str().unwrap()],
    ] {
        let output = bindery(&dir, &args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    }
    let (status, body) = app.get("/v2/Services", Some(&app.account));
    assert_eq!(status, 200, "the server still serves: {body}");
    assert_eq!(body["services"].as_array().unwrap().len(), 1);

    assert!(app.stop().success());
    let rebuilt = bindery(&dir, &["rebuild"]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
}
