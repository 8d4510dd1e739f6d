//! What the production crates embed lives inside them: nothing under `src/` or `crates/*/src`
//! reaches into the test tree (or elsewhere outside its crate), and Twilio's spec is vendored
//! once, in the HTTP crate that serves it.

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::support::TestApp;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The paths given to `include_str!`, `include_bytes!` and `include!` in `text`.
fn included_paths(text: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for macro_name in ["include_str!(", "include_bytes!(", "include!("] {
        for (at, _) in text.match_indices(macro_name) {
            let rest = text[at + macro_name.len()..].trim_start();
            if let Some(quoted) = rest.strip_prefix('"') {
                if let Some(end) = quoted.find('"') {
                    paths.push(quoted[..end].to_owned());
                }
            }
        }
    }
    paths
}

/// `path` with `.` and `..` resolved by name (the file need not exist).
fn normalized(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn rust_sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn production_sources_embed_only_files_of_their_own_crate() {
    assert_eq!(
        included_paths(r#"const A: &str = include_str!("../../../tests/x.json");"#),
        ["../../../tests/x.json"]
    );
    let root = Path::new(ROOT);
    let mut crates = vec![root.to_owned()];
    for entry in std::fs::read_dir(root.join("crates")).expect("crates/") {
        crates.push(entry.expect("a directory entry").path());
    }
    let mut escapes = Vec::new();
    let mut includes = 0;
    for crate_dir in &crates {
        let mut sources = Vec::new();
        rust_sources(&crate_dir.join("src"), &mut sources);
        for source in sources {
            let text = std::fs::read_to_string(&source).expect("a source file");
            for included in included_paths(&text) {
                includes += 1;
                let target = normalized(&source.parent().expect("a folder").join(&included));
                let inside = target.starts_with(crate_dir)
                    && !target.starts_with(root.join("tests"))
                    && (crate_dir != root || target.starts_with(root.join("src")));
                if !inside || !target.is_file() {
                    escapes.push(format!("{}: {included}", source.display()));
                }
            }
        }
    }
    assert!(
        includes >= 2,
        "the OpenAPI documents are embedded somewhere"
    );
    assert!(
        escapes.is_empty(),
        "embedded from outside the crate:\n{}",
        escapes.join("\n")
    );
}

/// Every regular file named `name` under `dir`, past build output and installed packages.
fn files_named(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
        let entry = entry.expect("a directory entry");
        let path = entry.path();
        let kind = entry.file_type().expect("a file type");
        let skipped = ["target", ".git", "node_modules", ".venv", "venv"];
        if kind.is_dir() && !skipped.iter().any(|s| path.ends_with(s)) {
            files_named(&path, name, found);
        } else if kind.is_file() && path.ends_with(name) {
            found.push(path);
        }
    }
}

#[test]
fn twilios_spec_is_vendored_once_in_the_http_crate_and_served_from_there() {
    let root = Path::new(ROOT);
    let mut copies = Vec::new();
    files_named(root, "twilio_chat_v2.json", &mut copies);
    let vendored = root.join("crates/http/openapi/twilio_chat_v2.json");
    assert_eq!(
        copies,
        std::slice::from_ref(&vendored),
        "one copy, in the HTTP crate"
    );
    assert!(root
        .join("crates/http/openapi/TWILIO-OAI-LICENSE")
        .is_file());

    let spec: Value =
        serde_json::from_slice(&std::fs::read(&vendored).expect("the spec")).expect("JSON");
    let app = TestApp::spawn();
    let served = app.get_raw("/openapi.json").expect(200);
    let path = "/v2/Services/{ServiceSid}/Users/{UserSid}/Bindings";
    assert_eq!(
        served["paths"][path]["get"], spec["paths"][path]["get"],
        "a Twilio route is described by the vendored spec"
    );
    assert_eq!(
        served["components"]["schemas"]["chat.v2.service"],
        spec["components"]["schemas"]["chat.v2.service"]
    );
}
