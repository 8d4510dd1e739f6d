//! Credentials' private fields are sealed where they enter the daemon: the log, the projection
//! rows and an export hold only sealed values, which open under the data dir's key file and no
//! other. A log written before sealing still imports, verifies and reads.

use std::path::Path;

use bindery_daemon::seal::{self, SEALED_PREFIX};
use bindery_daemon::store::{self, StoreOptions};
use bindery_daemon::{
    Committed, Daemon, DaemonOptions, Envelope, ImportKey, SealError, Sealer, Store, StoreError,
};
use bindery_domain::*;
use tempfile::TempDir;

const CERTIFICATE: &str = "-----BEGIN CERTIFICATE-----plain-certificate-body";
const PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----plain-private-key-body";
const ROTATED_KEY: &str = "-----BEGIN PRIVATE KEY-----plain-rotated-key-body";
const API_KEY: &str = "plain-gcm-api-key";
const SECRET: &str = "{\"private_key\": \"plain-fcm-service-account-key\"}";
const PLAINTEXTS: [&str; 5] = [CERTIFICATE, PRIVATE_KEY, ROTATED_KEY, API_KEY, SECRET];

/// Fragments of the plaintexts that must appear nowhere at rest.
const FRAGMENTS: [&str; 5] = [
    "plain-certificate",
    "plain-private-key",
    "plain-rotated-key",
    "plain-gcm",
    "plain-fcm",
];

async fn run(daemon: &Daemon, command: Command) -> Committed {
    daemon
        .execute(Envelope::from(command))
        .await
        .unwrap_or_else(|e| panic!("refused: {e}"))
}

fn all_secrets() -> CredentialSecrets {
    CredentialSecrets {
        certificate: Some(CERTIFICATE.into()),
        private_key: Some(PRIVATE_KEY.into()),
        api_key: Some(API_KEY.into()),
        secret: Some(SECRET.into()),
    }
}

fn credential_of(committed: &Committed) -> Credential {
    Credential::try_from(committed.row.clone().expect("a row")).expect("a credential")
}

/// A daemon on `dir` creates an account and a credential with every private field, then
/// rotates its private key; returns the credential's SID.
fn create_and_rotate(dir: &Path) -> CredentialSid {
    actix_rt::System::new().block_on(async {
        let daemon = Daemon::start(DaemonOptions::new(dir.to_owned())).unwrap();
        let account = run(
            &daemon,
            Command::CreateAccount {
                friendly_name: "sealing".into(),
                auth_token_hash: SecretHash::of("not a real token"),
            },
        )
        .await;
        let account = AccountSid::parse(account.row.unwrap().sid()).unwrap();
        let created = credential_of(
            &run(
                &daemon,
                Command::CreateCredential {
                    account,
                    credential_type: BindingType::Apn,
                    friendly_name: Some("ios".into()),
                    sandbox: Some(true),
                    secrets: all_secrets(),
                    fields: ProfileFields::default(),
                    profile: CredentialProfile::default(),
                },
            )
            .await,
        );
        for (_, value) in seal::fields(&created.secrets) {
            assert!(value.starts_with(SEALED_PREFIX), "the row holds {value}");
        }
        assert_eq!(
            daemon.sealer().open_secrets(&created.secrets).unwrap(),
            all_secrets()
        );
        let updated = credential_of(
            &run(
                &daemon,
                Command::UpdateCredential {
                    account,
                    credential: created.sid,
                    friendly_name: None,
                    sandbox: None,
                    secrets: CredentialSecrets {
                        private_key: Some(ROTATED_KEY.into()),
                        ..Default::default()
                    },
                    fields: ProfileFields::default(),
                    profile: None,
                },
            )
            .await,
        );
        let opened = daemon.sealer().open_secrets(&updated.secrets).unwrap();
        assert_eq!(opened.private_key.as_deref(), Some(ROTATED_KEY));
        assert_eq!(
            updated.secrets.certificate, created.secrets.certificate,
            "a field not given keeps its sealed value"
        );
        daemon.shutdown().await.unwrap();
        created.sid
    })
}

fn export_of(dir: &Path) -> String {
    let mut out = Vec::new();
    store::export(
        &store::database_path(dir),
        &mut out,
        &StoreOptions::default(),
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

fn key_file(dir: &Path) -> std::path::PathBuf {
    seal::default_key_file(dir)
}

fn import_into(dir: &Path, export: &str) -> Result<store::ImportReport, StoreError> {
    let key = ImportKey::load(&key_file(dir))?;
    Store::open(&store::database_path(dir), &StoreOptions::default())?
        .import(&mut export.as_bytes(), &key)
}

#[test]
fn the_log_rows_and_export_hold_sealed_values_that_open_with_the_key_file() {
    let dir = TempDir::new().unwrap();
    let sid = create_and_rotate(dir.path());

    let conn = store::open_reader(
        &store::database_path(dir.path()),
        StoreOptions::default().busy_timeout,
    )
    .unwrap();
    let mut at_rest: Vec<String> = conn
        .prepare("SELECT data FROM events")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    at_rest.push(
        conn.query_row("SELECT secrets FROM credentials", [], |r| r.get(0))
            .unwrap(),
    );
    let export = export_of(dir.path());
    at_rest.push(export.clone());
    for text in &at_rest {
        for fragment in FRAGMENTS {
            assert!(!text.contains(fragment), "{fragment} in clear: {text}");
        }
    }

    // Every sealed value of the export opens with the key file, to the plaintext it sealed.
    let sealer = Sealer::load(&key_file(dir.path()))
        .unwrap()
        .expect("a key file");
    let mut opened = Vec::new();
    for line in export.lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(secrets) = event["data"].get("secrets") {
            let secrets: CredentialSecrets = serde_json::from_value(secrets.clone()).unwrap();
            for (field, value) in seal::fields(&secrets) {
                assert!(value.starts_with(SEALED_PREFIX), "{field}: {value}");
                opened.push(sealer.open(field, value).unwrap());
            }
        }
    }
    for plaintext in PLAINTEXTS {
        assert!(opened.iter().any(|o| o == plaintext), "{plaintext} missing");
    }
    let row = match Store::open(&store::database_path(dir.path()), &StoreOptions::default())
        .unwrap()
        .load_row(EntityKind::Credential, sid.as_str())
        .unwrap()
    {
        Some(Row::Credential(c)) => c,
        other => panic!("{other:?}"),
    };
    let secrets = sealer.open_secrets(&row.secrets).unwrap();
    assert_eq!(secrets.private_key.as_deref(), Some(ROTATED_KEY));
    assert_eq!(secrets.certificate.as_deref(), Some(CERTIFICATE));
    assert!(
        store::verify(&store::database_path(dir.path()), &StoreOptions::default())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_second_start_reuses_the_key_and_a_missing_one_refuses_to_start() {
    let dir = TempDir::new().unwrap();
    create_and_rotate(dir.path());
    let key = std::fs::read(key_file(dir.path())).unwrap();
    // A second start opens what the first sealed, under the same key.
    create_and_rotate(dir.path());
    assert_eq!(std::fs::read(key_file(dir.path())).unwrap(), key);

    std::fs::remove_file(key_file(dir.path())).unwrap();
    let refused = actix_rt::System::new()
        .block_on(async { Daemon::start(DaemonOptions::new(dir.path().to_owned())).err() });
    match refused {
        Some(StoreError::Seal(error @ SealError::MissingBesideSealed(_))) => {
            let message = error.to_string();
            assert!(
                message.contains(&*key_file(dir.path()).to_string_lossy()),
                "{message}"
            );
        }
        other => panic!("expected a refusal naming the key file, got {other:?}"),
    }
    assert!(!key_file(dir.path()).exists(), "no new key was made");
}

#[test]
fn an_export_imports_byte_identical_under_its_key_and_is_refused_under_another() {
    let source = TempDir::new().unwrap();
    create_and_rotate(source.path());
    let export = export_of(source.path());

    let same_key = TempDir::new().unwrap();
    std::fs::copy(key_file(source.path()), key_file(same_key.path())).unwrap();
    import_into(same_key.path(), &export).unwrap();
    assert_eq!(export_of(same_key.path()), export);

    let other = TempDir::new().unwrap();
    Sealer::create(&key_file(other.path())).unwrap();
    let error = import_into(other.path(), &export).unwrap_err().to_string();
    assert!(
        error.contains(&*key_file(other.path()).to_string_lossy()),
        "{error}"
    );
    assert_eq!(export_of(other.path()), "", "nothing imported");

    let keyless = TempDir::new().unwrap();
    let error = import_into(keyless.path(), &export)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&*key_file(keyless.path()).to_string_lossy()),
        "{error}"
    );
    assert_eq!(export_of(keyless.path()), "", "nothing imported");
    assert!(!key_file(keyless.path()).exists(), "import makes no key");
}

/// An account and a credential as a Bindery before sealing wrote them: secrets in clear.
const PLAINTEXT_LOG: &str = concat!(
    r#"{"position":1,"stream":"AC018876d43a003f9a1c0e5b7d2468ace1","stream_version":1,"type":"AccountCreated","schema_version":1,"data":{"auth_token_hash":"078cd225a62e3ca56bd1053d268f1a171c707ac97847a6b4bf4bb24677d5fa9e","friendly_name":"Acme Chat"},"recorded_at":"2023-06-01T12:00:00Z","account_sid":"AC018876d43a003f9a1c0e5b7d2468ace1","service_sid":null,"request_id":null}"#,
    "\n",
    r#"{"position":2,"stream":"CR018876d44d887b2e9d4c1a0f3e5d6c8b","stream_version":1,"type":"CredentialCreated","schema_version":1,"data":{"credential_type":"gcm","friendly_name":null,"sandbox":null,"secrets":{"certificate":null,"private_key":null,"api_key":"plain-gcm-api-key","secret":null}},"recorded_at":"2023-06-01T12:00:30Z","account_sid":"AC018876d43a003f9a1c0e5b7d2468ace1","service_sid":null,"request_id":null}"#,
    "\n",
);

#[test]
fn a_log_written_before_sealing_imports_verifies_and_reads() {
    let dir = TempDir::new().unwrap();
    import_into(dir.path(), PLAINTEXT_LOG).unwrap();
    let path = store::database_path(dir.path());
    assert!(store::verify(&path, &StoreOptions::default())
        .unwrap()
        .is_empty());
    assert_eq!(export_of(dir.path()), PLAINTEXT_LOG, "never rewritten");

    // Nothing there is sealed, so a first start makes a key rather than refusing.
    actix_rt::System::new().block_on(async {
        let daemon = Daemon::start(DaemonOptions::new(dir.path().to_owned())).unwrap();
        let credential = match Store::open(&path, &StoreOptions::default())
            .unwrap()
            .load_row(EntityKind::Credential, "CR018876d44d887b2e9d4c1a0f3e5d6c8b")
            .unwrap()
        {
            Some(Row::Credential(c)) => c,
            other => panic!("{other:?}"),
        };
        let opened = daemon.sealer().open_secrets(&credential.secrets).unwrap();
        assert_eq!(opened.api_key.as_deref(), Some(API_KEY));
        daemon.shutdown().await.unwrap();
    });
    assert!(key_file(dir.path()).exists());
    assert_eq!(export_of(dir.path()), PLAINTEXT_LOG);
}
