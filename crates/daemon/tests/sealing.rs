//! Credentials' private fields are sealed where they enter the daemon: the log, the projection
//! rows and an export hold only sealed values, which open under the data dir's key file and no
//! other. A log written before sealing still imports, verifies and reads. On both engines: the
//! key file is in the data dir whichever holds the log.

mod engines;

use bindery_daemon::seal::{self, SEALED_PREFIX};
use bindery_daemon::store::{self, StoreOptions};
use bindery_daemon::{Committed, Daemon, Envelope, ImportKey, SealError, Sealer, StoreError};
use bindery_domain::*;
use bindery_standin::{ApnsKey, ClientCertSpec, RsaTestKey, ServiceAccount, TestCa};
use engines::{on_both_engines, Database, Engine, Server};
use tempfile::TempDir;

/// Real material (made for this test: a stand-in CA's certificates, a fresh `.p8`, the
/// committed RSA test key in a service account): credentials are read before they are
/// sealed, and only what can push is accepted.
struct Material {
    token_key: String,
    rotated_token_key: String,
    certificate: String,
    /// The same key's certificate, renewed.
    renewed_certificate: String,
    certificate_key: String,
    fcm_account: String,
    gcm_account: String,
    _ca_dir: TempDir,
}

impl Material {
    fn new() -> Material {
        let ca_dir = TempDir::new().unwrap();
        let ca = TestCa::new(ca_dir.path()).unwrap();
        let spec = ClientCertSpec::new("com.example.sealing").rsa(RsaTestKey::A);
        let certificate = ca.client_cert(&spec).unwrap();
        let renewed = ca.client_cert(&spec).unwrap();
        let account = |project: &str| {
            ServiceAccount {
                project_id: project.into(),
                client_email: format!("push@{project}.iam.gserviceaccount.com"),
                private_key_id: "0123".into(),
                token_uri: "https://oauth2.googleapis.com/token".into(),
                key: RsaTestKey::B,
            }
            .json_string()
        };
        let p8 = || {
            ApnsKey::generate("KEYID12345", "TEAMID1234")
                .unwrap()
                .p8_pem()
        };
        Material {
            token_key: p8(),
            rotated_token_key: p8(),
            certificate: certificate.cert_pem,
            renewed_certificate: renewed.cert_pem,
            certificate_key: certificate.key_traditional_pem,
            fcm_account: account("sealing-fcm"),
            gcm_account: account("sealing-gcm"),
            _ca_dir: ca_dir,
        }
    }

    fn plaintexts(&self) -> [&str; 7] {
        [
            &self.token_key,
            &self.rotated_token_key,
            &self.certificate,
            &self.renewed_certificate,
            &self.certificate_key,
            &self.fcm_account,
            &self.gcm_account,
        ]
    }
}

/// A line of a PEM's base64 (or of the PEM inside a service account's JSON): what must
/// appear nowhere at rest.
fn fragment(plaintext: &str) -> &str {
    plaintext
        .split(['\n', '"'])
        .flat_map(|line| line.split("\\n"))
        .find(|line| {
            line.len() >= 40
                && line
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        })
        .unwrap_or_else(|| panic!("no base64 line in {plaintext}"))
}

async fn run(daemon: &Daemon, command: Command) -> Committed {
    daemon
        .execute(Envelope::from(command))
        .await
        .unwrap_or_else(|e| panic!("refused: {e}"))
}

fn credential_of(committed: &Committed) -> Credential {
    Credential::try_from(committed.row.clone().expect("a row")).expect("a credential")
}

fn create(
    account: AccountSid,
    credential_type: BindingType,
    secrets: CredentialSecrets,
    fields: ProfileFields,
) -> Command {
    Command::CreateCredential {
        account,
        credential_type,
        friendly_name: Some(credential_type.as_str().into()),
        sandbox: Some(true),
        secrets,
        fields,
        profile: CredentialProfile::default(),
    }
}

fn update(account: AccountSid, credential: CredentialSid, secrets: CredentialSecrets) -> Command {
    Command::UpdateCredential {
        account,
        credential,
        friendly_name: None,
        sandbox: None,
        secrets,
        fields: ProfileFields::default(),
        profile: None,
    }
}

/// The token and the certificate credential.
struct Made {
    token: CredentialSid,
    certificate: CredentialSid,
}

/// A daemon on `database` creates an account and a credential of each kind (every private
/// field among them), then rotates the token credential's key and renews the certificate one's
/// certificate.
fn create_and_rotate(database: &Database, material: &Material) -> Made {
    actix_rt::System::new().block_on(async {
        let daemon = Daemon::start(database.daemon_options()).unwrap();
        let account = run(
            &daemon,
            Command::CreateAccount {
                friendly_name: "sealing".into(),
                auth_token_hash: SecretHash::of("not a real token"),
            },
        )
        .await;
        let account = AccountSid::parse(account.row.unwrap().sid()).unwrap();
        let token_secrets = CredentialSecrets {
            private_key: Some(material.token_key.clone()),
            ..Default::default()
        };
        let certificate_secrets = CredentialSecrets {
            certificate: Some(material.certificate.clone()),
            private_key: Some(material.certificate_key.clone()),
            ..Default::default()
        };
        let token_fields = ProfileFields {
            key_id: Some("KEYID12345".into()),
            team_id: Some("TEAMID1234".into()),
            topic: Some("com.example.sealing".into()),
        };
        let mut made = Vec::new();
        for (credential_type, secrets, fields) in [
            (BindingType::Apn, token_secrets, token_fields),
            (
                BindingType::Apn,
                certificate_secrets.clone(),
                ProfileFields::default(),
            ),
            (
                BindingType::Fcm,
                CredentialSecrets {
                    secret: Some(material.fcm_account.clone()),
                    ..Default::default()
                },
                ProfileFields::default(),
            ),
            (
                BindingType::Gcm,
                CredentialSecrets {
                    api_key: Some(material.gcm_account.clone()),
                    ..Default::default()
                },
                ProfileFields::default(),
            ),
        ] {
            let created = credential_of(
                &run(
                    &daemon,
                    create(account, credential_type, secrets.clone(), fields),
                )
                .await,
            );
            for (_, value) in seal::fields(&created.secrets) {
                assert!(value.starts_with(SEALED_PREFIX), "the row holds {value}");
            }
            assert_eq!(
                daemon.sealer().open_secrets(&created.secrets).unwrap(),
                secrets
            );
            made.push(created);
        }

        let rotated = credential_of(
            &run(
                &daemon,
                update(
                    account,
                    made[0].sid,
                    CredentialSecrets {
                        private_key: Some(material.rotated_token_key.clone()),
                        ..Default::default()
                    },
                ),
            )
            .await,
        );
        let opened = daemon.sealer().open_secrets(&rotated.secrets).unwrap();
        assert_eq!(
            opened.private_key.as_deref(),
            Some(material.rotated_token_key.as_str())
        );
        assert_eq!(
            rotated.profile, made[0].profile,
            "the same key id, team, topic"
        );

        let renewed = credential_of(
            &run(
                &daemon,
                update(
                    account,
                    made[1].sid,
                    CredentialSecrets {
                        certificate: Some(material.renewed_certificate.clone()),
                        ..Default::default()
                    },
                ),
            )
            .await,
        );
        for (_, value) in seal::fields(&renewed.secrets) {
            assert!(value.starts_with(SEALED_PREFIX), "the row holds {value}");
        }
        let opened = daemon.sealer().open_secrets(&renewed.secrets).unwrap();
        assert_eq!(
            opened.private_key, certificate_secrets.private_key,
            "a field not given keeps its value"
        );
        assert_eq!(
            opened.certificate.as_deref(),
            Some(material.renewed_certificate.as_str())
        );
        daemon.shutdown().await.unwrap();
        Made {
            token: made[0].sid,
            certificate: made[1].sid,
        }
    })
}

fn key_file(database: &Database) -> std::path::PathBuf {
    seal::default_key_file(database.dir.path())
}

fn import_into(database: &Database, export: &str) -> Result<store::ImportReport, StoreError> {
    let key = ImportKey::load(&key_file(database))?;
    database
        .open_with(&StoreOptions::default())?
        .import(&mut export.as_bytes(), &key)
}

fn credential_row(database: &Database, sid: &str) -> Credential {
    match database
        .open()
        .load_row(EntityKind::Credential, sid)
        .unwrap()
    {
        Some(Row::Credential(c)) => c,
        other => panic!("{other:?}"),
    }
}

fn the_log_rows_and_export_hold_sealed_values_that_open_with_the_key_file(engine: Engine) {
    let server = Server::start(engine);
    let database = server.database();
    let material = Material::new();
    let made = create_and_rotate(&database, &material);

    let mut at_rest: Vec<String> = database.read(|db| {
        db.all(
            "SELECT data FROM events UNION ALL SELECT secrets FROM credentials",
            &[],
            |r| Ok(r.text(0)?.to_owned()),
        )
    });
    let export = database.export();
    at_rest.push(export.clone());
    for text in &at_rest {
        for plaintext in material.plaintexts() {
            let fragment = fragment(plaintext);
            assert!(!text.contains(fragment), "{fragment} in clear: {text}");
        }
    }

    // Every sealed value of the export opens with the key file, to the plaintext it sealed.
    let sealer = Sealer::load(&key_file(&database))
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
    for plaintext in material.plaintexts() {
        assert!(opened.iter().any(|o| o == plaintext), "{plaintext} missing");
    }
    let token = sealer
        .open_secrets(&credential_row(&database, made.token.as_str()).secrets)
        .unwrap();
    assert_eq!(
        token.private_key.as_deref(),
        Some(material.rotated_token_key.as_str())
    );
    let certificate = credential_row(&database, made.certificate.as_str());
    assert_eq!(
        certificate.profile.topic.as_deref(),
        Some("com.example.sealing"),
        "the certificate's UID"
    );
    let certificate = sealer.open_secrets(&certificate.secrets).unwrap();
    assert_eq!(
        certificate.certificate.as_deref(),
        Some(material.renewed_certificate.as_str())
    );
    assert_eq!(
        certificate.private_key.as_deref(),
        Some(material.certificate_key.as_str())
    );
    database.assert_verifies();
}

fn a_second_start_reuses_the_key_and_a_missing_one_refuses_to_start(engine: Engine) {
    let server = Server::start(engine);
    let database = server.database();
    let material = Material::new();
    create_and_rotate(&database, &material);
    let key = std::fs::read(key_file(&database)).unwrap();
    // A second start opens what the first sealed, under the same key.
    create_and_rotate(&database, &material);
    assert_eq!(std::fs::read(key_file(&database)).unwrap(), key);

    std::fs::remove_file(key_file(&database)).unwrap();
    let refused =
        actix_rt::System::new().block_on(async { Daemon::start(database.daemon_options()).err() });
    match refused {
        Some(StoreError::Seal(error @ SealError::MissingBesideSealed(_))) => {
            let message = error.to_string();
            assert!(
                message.contains(&*key_file(&database).to_string_lossy()),
                "{message}"
            );
        }
        other => panic!("expected a refusal naming the key file, got {other:?}"),
    }
    assert!(!key_file(&database).exists(), "no new key was made");
}

fn an_export_imports_byte_identical_under_its_key_and_is_refused_under_another(engine: Engine) {
    let server = Server::start(engine);
    let source = server.database();
    create_and_rotate(&source, &Material::new());
    let export = source.export();

    let same_key = server.database();
    std::fs::copy(key_file(&source), key_file(&same_key)).unwrap();
    import_into(&same_key, &export).unwrap();
    assert_eq!(same_key.export(), export);

    let other = server.database();
    Sealer::create(&key_file(&other)).unwrap();
    let error = import_into(&other, &export).unwrap_err().to_string();
    assert!(
        error.contains(&*key_file(&other).to_string_lossy()),
        "{error}"
    );
    assert_eq!(other.export(), "", "nothing imported");

    let keyless = server.database();
    let error = import_into(&keyless, &export).unwrap_err().to_string();
    assert!(
        error.contains(&*key_file(&keyless).to_string_lossy()),
        "{error}"
    );
    assert_eq!(keyless.export(), "", "nothing imported");
    assert!(!key_file(&keyless).exists(), "import makes no key");
}

/// An account and a credential as a Bindery before sealing wrote them: secrets in clear.
const PLAINTEXT_LOG: &str = concat!(
    r#"{"position":1,"stream":"AC018876d43a003f9a1c0e5b7d2468ace1","stream_version":1,"type":"AccountCreated","schema_version":1,"data":{"auth_token_hash":"078cd225a62e3ca56bd1053d268f1a171c707ac97847a6b4bf4bb24677d5fa9e","friendly_name":"Acme Chat"},"recorded_at":"2023-06-01T12:00:00Z","account_sid":"AC018876d43a003f9a1c0e5b7d2468ace1","service_sid":null,"request_id":null}"#,
    "\n",
    r#"{"position":2,"stream":"CR018876d44d887b2e9d4c1a0f3e5d6c8b","stream_version":1,"type":"CredentialCreated","schema_version":1,"data":{"credential_type":"gcm","friendly_name":null,"sandbox":null,"secrets":{"certificate":null,"private_key":null,"api_key":"plain-gcm-api-key","secret":null}},"recorded_at":"2023-06-01T12:00:30Z","account_sid":"AC018876d43a003f9a1c0e5b7d2468ace1","service_sid":null,"request_id":null}"#,
    "\n",
);

fn a_log_written_before_sealing_imports_verifies_and_reads(engine: Engine) {
    let server = Server::start(engine);
    let database = server.database();
    import_into(&database, PLAINTEXT_LOG).unwrap();
    database.assert_verifies();
    assert_eq!(database.export(), PLAINTEXT_LOG, "never rewritten");

    // Nothing there is sealed, so a first start makes a key rather than refusing.
    actix_rt::System::new().block_on(async {
        let daemon = Daemon::start(database.daemon_options()).unwrap();
        let credential = credential_row(&database, "CR018876d44d887b2e9d4c1a0f3e5d6c8b");
        let opened = daemon.sealer().open_secrets(&credential.secrets).unwrap();
        assert_eq!(opened.api_key.as_deref(), Some("plain-gcm-api-key"));
        daemon.shutdown().await.unwrap();
    });
    assert!(key_file(&database).exists());
    assert_eq!(database.export(), PLAINTEXT_LOG);
}

on_both_engines!(
    the_log_rows_and_export_hold_sealed_values_that_open_with_the_key_file,
    a_second_start_reuses_the_key_and_a_missing_one_refuses_to_start,
    an_export_imports_byte_identical_under_its_key_and_is_refused_under_another,
    a_log_written_before_sealing_imports_verifies_and_reads,
);
