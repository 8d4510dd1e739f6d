//! The accounts a test signs in as: the first one, which a server creates on a fresh data dir,
//! and others made with the CLI.

use std::path::Path;

use serde_json::Value;

use super::{bindery_json, TestApp};

/// An account SID and a secret (an auth token, or an API key's secret) for HTTP Basic.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// The credentials a server wrote for the first account it created in `data_dir`: with no
/// terminal on stdout, it writes them to `first-account.json`, which only its owner may read,
/// before it listens. The one way a test learns them.
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

impl Credentials {
    /// The credentials in what the CLI printed: the SID and the secret under these names.
    #[track_caller]
    pub fn printed(made: &Value, user: &str, password: &str) -> Credentials {
        let field = |name: &str| {
            made[name]
                .as_str()
                .unwrap_or_else(|| panic!("no {name} in {made}"))
                .to_owned()
        };
        Credentials {
            user: field(user),
            password: field(password),
        }
    }
}

impl TestApp {
    /// Another account, made by the CLI beside the running server.
    pub fn other_account(&self) -> Credentials {
        let made = bindery_json(self.dir.path(), &["accounts", "create"]);
        Credentials::printed(&made, "account_sid", "auth_token")
    }

    /// A new API key of `account` (its SID), made by the CLI beside the running server.
    pub fn create_key(&self, account: &str) -> Credentials {
        let made = bindery_json(self.dir.path(), &["keys", "create", "--account", account]);
        Credentials::printed(&made, "sid", "secret")
    }
}
