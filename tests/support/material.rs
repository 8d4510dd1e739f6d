//! Push-credential material that Bindery accepts (CONTRACT §6.2): a credential's create and
//! update read its secrets as a sender would, so a test credential needs a real key. All of it
//! is made for the test run by the stand-ins' test CA and keys (`bindery-standin`), or is their
//! committed test-only RSA key; none of it is anyone's real credential.

use std::sync::OnceLock;

use bindery_standin::{ApnsKey, ClientCert, ClientCertSpec, RsaTestKey, ServiceAccount, TestCa};
use serde_json::Value;

use super::TestApp;

/// The token-auth ids and topic that [`credential_form`] gives an apn credential.
pub const KEY_ID: &str = "KEYID12345";
pub const TEAM_ID: &str = "TEAMID1234";
pub const TOPIC: &str = "com.example.bindery";
/// The Firebase project of [`service_account`]'s default.
pub const PROJECT: &str = "bindery-tests";

/// The run's APNs token-auth key (a fresh P-256 `.p8`).
pub fn apns_key() -> &'static ApnsKey {
    static KEY: OnceLock<ApnsKey> = OnceLock::new();
    KEY.get_or_init(|| ApnsKey::generate(KEY_ID, TEAM_ID).expect("a P-256 key"))
}

/// A client certificate of the run's test CA, shaped like Apple's push certificates (the
/// bundle id in the subject's UID).
pub fn certificate(spec: &ClientCertSpec) -> ClientCert {
    static CA: OnceLock<TestCa> = OnceLock::new();
    let ca = CA.get_or_init(|| {
        // The CA keeps its root in memory; the file it writes is not needed here.
        let dir = tempfile::TempDir::new().expect("a temp dir");
        TestCa::new(dir.path()).expect("a test CA")
    });
    ca.client_cert(spec).expect("a client certificate")
}

/// A Firebase service account of `project_id` with the committed test key A.
pub fn service_account(project_id: &str) -> ServiceAccount {
    ServiceAccount {
        project_id: project_id.to_owned(),
        client_email: format!("push@{project_id}.iam.gserviceaccount.com"),
        private_key_id: "0123456789abcdef".to_owned(),
        token_uri: "https://oauth2.googleapis.com/token".to_owned(),
        key: RsaTestKey::A,
    }
}

/// A line of a secret's base64 (a PEM's, or the PEM's inside a service account's JSON): what
/// must appear nowhere a secret must not, however the text around it is encoded.
pub fn secret_line(secret: &str) -> &str {
    secret
        .split(['\n', '"'])
        .flat_map(|line| line.split("\\n"))
        .find(|line| {
            line.len() >= 40
                && line
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        })
        .unwrap_or_else(|| panic!("no base64 line in {secret}"))
}

/// A form of owned fields, for requests built from material.
#[derive(Debug, Clone, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn with(mut self, name: &str, value: &str) -> Form {
        self.0.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

/// The form of a credential of `kind` that Bindery accepts, `Type` included: apn with token
/// auth ([`apns_key`], [`KEY_ID`], [`TEAM_ID`], [`TOPIC`]), fcm and gcm with the service account
/// of [`PROJECT`] (in `Secret` and `ApiKey`).
pub fn credential_form(kind: &str) -> Form {
    let form = Form::default().with("Type", kind);
    match kind {
        "apn" => form
            .with("PrivateKey", &apns_key().p8_pem())
            .with("KeyId", KEY_ID)
            .with("TeamId", TEAM_ID)
            .with("Topic", TOPIC),
        "fcm" => form.with("Secret", &service_account(PROJECT).json_string()),
        "gcm" => form.with("ApiKey", &service_account(PROJECT).json_string()),
        other => panic!("no material for a {other:?} credential"),
    }
}

impl TestApp {
    /// Creates a credential of `kind` from [`credential_form`] plus `extra` fields; it must
    /// answer 201.
    #[track_caller]
    pub fn create_credential_of(&self, kind: &str, extra: &[(&str, &str)]) -> Value {
        let mut form = credential_form(kind);
        for (name, value) in extra {
            form = form.with(name, value);
        }
        self.create_credential(&form.pairs())
    }
}
