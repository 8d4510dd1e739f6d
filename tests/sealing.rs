//! Push credentials' private fields are sealed at rest under `storage.secret_key_file`: a
//! stolen database file, WAL, backup or export holds no plaintext, and only the key file opens
//! them. An export imports byte-identical where the same key file is in place and is refused
//! under another; a server refuses to start without the key its credentials were sealed under.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bindery_daemon::seal::{self, SEALED_PREFIX};
use bindery_daemon::Sealer;
use bindery_domain::CredentialSecrets;
use bindery_standin::{ApnsKey, ClientCertSpec, RsaTestKey, ServiceAccount};
use tempfile::TempDir;

use crate::support::{
    bindery, bindery_json, command, material, serve_until_exit_on, sid, Credentials, TestApp,
    BINARY, PATIENCE,
};

/// Real material (CONTRACT §6.2: credentials are read before they are sealed), the same for
/// the whole run so that one test's runs can be compared.
struct Plaintexts {
    certificate: String,
    certificate_key: String,
    token_key: String,
    rotated_key: String,
    fcm_account: String,
    gcm_account: String,
}

fn plaintexts() -> &'static Plaintexts {
    static PLAINTEXTS: OnceLock<Plaintexts> = OnceLock::new();
    PLAINTEXTS.get_or_init(|| {
        let certificate = material::certificate(&ClientCertSpec::new("com.example.sealing"));
        let account = |project: &str, key| {
            ServiceAccount {
                key,
                ..material::service_account(project)
            }
            .json_string()
        };
        Plaintexts {
            certificate: certificate.cert_pem,
            certificate_key: certificate.key_traditional_pem,
            token_key: material::apns_key().p8_pem(),
            rotated_key: ApnsKey::generate(material::KEY_ID, material::TEAM_ID)
                .unwrap()
                .p8_pem(),
            fcm_account: account("sealing-fcm", RsaTestKey::A),
            gcm_account: account("sealing-gcm", RsaTestKey::B),
        }
    })
}

impl Plaintexts {
    fn all(&self) -> [&str; 6] {
        [
            &self.certificate,
            &self.certificate_key,
            &self.token_key,
            &self.rotated_key,
            &self.fcm_account,
            &self.gcm_account,
        ]
    }
}

fn key_file(dir: &Path) -> PathBuf {
    dir.join("secret.key")
}

/// Credentials of every kind (APNs with a certificate and with a token key), each private
/// field set, and the token key rotated.
fn create_credentials(app: &TestApp) -> Vec<String> {
    let p = plaintexts();
    let certificate = app.create_credential(&[
        ("Type", "apn"),
        ("Certificate", &p.certificate),
        ("PrivateKey", &p.certificate_key),
    ]);
    let token = app.create_credential_of("apn", &[]);
    let fcm = app.create_credential(&[("Type", "fcm"), ("Secret", &p.fcm_account)]);
    let gcm = app.create_credential(&[("Type", "gcm"), ("ApiKey", &p.gcm_account)]);
    let path = format!("/v2/Credentials/{}", sid(&token));
    app.post(&path, &[("PrivateKey", &p.rotated_key)])
        .expect(200);
    vec![sid(&certificate), sid(&token), sid(&fcm), sid(&gcm)]
}

#[track_caller]
fn assert_no_plaintext(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for plaintext in plaintexts().all() {
        let fragment = material::secret_line(plaintext);
        assert!(!text.contains(fragment), "{fragment} in clear in {what}");
    }
}

/// Every sealed value in `export` opened with the key in `key_file`; fails on any private
/// field that is not sealed.
#[track_caller]
fn open_export(export: &[u8], key_file: &Path) -> Vec<String> {
    let sealer = Sealer::load(key_file)
        .expect("a readable key file")
        .expect("a key file");
    let mut opened = Vec::new();
    for line in String::from_utf8_lossy(export).lines() {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        let Some(secrets) = event["data"].get("secrets") else {
            continue;
        };
        let secrets: CredentialSecrets = serde_json::from_value(secrets.clone()).unwrap();
        for (field, value) in seal::fields(&secrets) {
            assert!(value.starts_with(SEALED_PREFIX), "{field} unsealed: {line}");
            opened.push(sealer.open(field, value).expect("opens under the key file"));
        }
    }
    opened
}

#[track_caller]
fn export(dir: &Path) -> Vec<u8> {
    let output = bindery(dir, &["export"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn import(dir: &Path, file: &Path) -> std::process::Output {
    bindery(dir, &["import", "--from", file.to_str().unwrap()])
}

#[test]
fn no_plaintext_in_the_database_wal_export_backup_or_server_log() {
    // debug, the most the log ever says, so that nothing below it hides a leak.
    let (mut app, log) =
        TestApp::spawn_logged(TempDir::new().unwrap(), &[("RUST_LOG", "debug")], None);
    let sids = create_credentials(&app);
    let dir = app.data_dir();

    let mode = std::fs::metadata(key_file(&dir))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key file is its owner's alone");

    let exported = export(&dir);
    assert_no_plaintext("the export", &exported);
    let opened = open_export(&exported, &key_file(&dir));
    for plaintext in plaintexts().all() {
        assert!(
            opened.iter().any(|o| o == plaintext),
            "{plaintext} not sealed"
        );
    }

    let copies = TempDir::new().unwrap();
    let backup = copies.path().join("backup.db");
    let made = bindery(&dir, &["backup", "--to", backup.to_str().unwrap()]);
    assert!(made.status.success());
    assert_no_plaintext("the backup", &std::fs::read(&backup).unwrap());
    // While serving, the newest pages are in the WAL.
    for name in ["bindery.db", "bindery.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join(name)) {
            assert_no_plaintext(name, &bytes);
        }
    }
    for sid in &sids {
        app.get_raw(&format!("/v2/Credentials/{sid}")).expect(200);
    }

    // Stopped gently, so that what the server does on its way out (a checkpoint of the WAL
    // into the database) is in the files read below.
    app.terminate();
    let status = app.wait_for_exit(PATIENCE).expect("the server stops");
    assert!(status.success());
    log.wait_closed();
    for name in ["bindery.db", "bindery.db-wal"] {
        match std::fs::read(dir.join(name)) {
            Ok(bytes) => assert_no_plaintext(name, &bytes),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{name}: {e}"),
        }
    }
    app.stdout.wait_closed();
    let logged = log.lines().join("\n") + &app.stdout.lines().join("\n");
    assert!(
        logged.contains("POST"),
        "the log has the requests: {logged}"
    );
    assert_no_plaintext("the server's log", logged.as_bytes());
}

#[test]
fn a_second_start_reuses_the_key_file() {
    let (app, _) = TestApp::spawn_logged(TempDir::new().unwrap(), &[], None);
    create_credentials(&app);
    let key = std::fs::read(key_file(&app.data_dir())).unwrap();
    let (dir, account) = app.into_dir_and_account();

    let (again, _) = TestApp::spawn_logged(dir, &[], Some(account));
    assert_eq!(std::fs::read(key_file(&again.data_dir())).unwrap(), key);
    // Sealed by both runs, opened by the one key.
    let second = material::service_account("sealing-second").json_string();
    again.create_credential(&[("Type", "gcm"), ("ApiKey", &second)]);
    let opened = open_export(&export(&again.data_dir()), &key_file(&again.data_dir()));
    assert!(opened.contains(&plaintexts().gcm_account));
    assert!(opened.contains(&second));
    again.verify();
}

#[test]
fn export_import_export_is_byte_identical_with_the_key_copied_and_refused_under_another() {
    let app = TestApp::spawn();
    create_credentials(&app);
    let exported = export(&app.data_dir());
    let files = TempDir::new().unwrap();
    let file = files.path().join("events.jsonl");
    std::fs::write(&file, &exported).unwrap();

    let copied = TempDir::new().unwrap();
    std::fs::copy(key_file(&app.data_dir()), key_file(copied.path())).unwrap();
    let imported = import(copied.path(), &file);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert_eq!(export(copied.path()), exported);
    assert!(bindery(copied.path(), &["verify"]).status.success());

    // Another data dir's key, and none at all: refused, naming the key file, nothing imported.
    let elsewhere = TestApp::spawn();
    let other_key = TempDir::new().unwrap();
    std::fs::copy(key_file(&elsewhere.data_dir()), key_file(other_key.path())).unwrap();
    let keyless = TempDir::new().unwrap();
    for dir in [other_key.path(), keyless.path()] {
        let refused = import(dir, &file);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "imported under the wrong key");
        assert!(
            stderr.contains(&*key_file(dir).to_string_lossy()),
            "the message names the key file: {stderr}"
        );
        assert!(export(dir).is_empty(), "nothing was imported");
    }
    assert!(!key_file(keyless.path()).exists(), "import makes no key");
}

#[test]
fn a_missing_key_file_beside_sealed_credentials_refuses_to_serve() {
    let app = TestApp::spawn();
    create_credentials(&app);
    let (dir, _) = app.into_dir_and_account();
    let key = key_file(dir.path());
    std::fs::remove_file(&key).unwrap();

    let refused = serve_until_exit_on(dir, &[], &[], PATIENCE);
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains(&*key.to_string_lossy()),
        "the message names the key file: {}",
        refused.stderr
    );
    assert!(!key.exists(), "no new key that could not open them");

    // A key file that holds no key is refused too, naming it.
    std::fs::write(key_file(refused.dir.path()), "not a key\n").unwrap();
    let malformed = serve_until_exit_on(refused.dir, &[], &[], PATIENCE);
    assert!(!malformed.status.success());
    assert!(
        malformed.stderr.contains(&*key.to_string_lossy()),
        "{}",
        malformed.stderr
    );
}

/// An account and a gcm credential as a Bindery before sealing wrote them: the key in clear.
const PLAINTEXT_LOG: &str = concat!(
    r#"{"position":1,"stream":"AC018876d43a003f9a1c0e5b7d2468ace1","stream_version":1,"type":"AccountCreated","schema_version":1,"data":{"auth_token_hash":"078cd225a62e3ca56bd1053d268f1a171c707ac97847a6b4bf4bb24677d5fa9e","friendly_name":"Acme Chat"},"recorded_at":"2023-06-01T12:00:00Z","account_sid":"AC018876d43a003f9a1c0e5b7d2468ace1","service_sid":null,"request_id":null}"#,
    "\n",
    r#"{"position":2,"stream":"CR018876d44d887b2e9d4c1a0f3e5d6c8b","stream_version":1,"type":"CredentialCreated","schema_version":1,"data":{"credential_type":"gcm","friendly_name":"legacy","sandbox":null,"secrets":{"certificate":null,"private_key":null,"api_key":"plain-gcm-api-key-legacy","secret":null}},"recorded_at":"2023-06-01T12:00:30Z","account_sid":"AC018876d43a003f9a1c0e5b7d2468ace1","service_sid":null,"request_id":null}"#,
    "\n",
);
const LEGACY_ACCOUNT: &str = "AC018876d43a003f9a1c0e5b7d2468ace1";
const LEGACY_CREDENTIAL: &str = "CR018876d44d887b2e9d4c1a0f3e5d6c8b";

#[test]
fn a_log_written_before_sealing_imports_verifies_and_serves() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("legacy.jsonl");
    std::fs::write(&file, PLAINTEXT_LOG).unwrap();
    let imported = import(dir.path(), &file);
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(bindery(dir.path(), &["verify"]).status.success());
    let made = bindery_json(dir.path(), &["keys", "create", "--account", LEGACY_ACCOUNT]);
    let key = Credentials::printed(&made, "sid", "secret");

    // Nothing sealed yet: the first start makes a key instead of refusing.
    let (app, _) = TestApp::spawn_logged(dir, &[], Some(key));
    assert!(key_file(&app.data_dir()).exists());
    let legacy = app
        .get_raw(&format!("/v2/Credentials/{LEGACY_CREDENTIAL}"))
        .expect(200);
    assert_eq!(legacy["friendly_name"], "legacy");
    assert!(legacy["auth"].is_null(), "never read: {legacy}");
    let gcm_account = &plaintexts().gcm_account;
    app.create_credential(&[("Type", "gcm"), ("ApiKey", gcm_account)]);

    let exported = export(&app.data_dir());
    assert!(
        exported.starts_with(PLAINTEXT_LOG.as_bytes()),
        "the old events are never rewritten"
    );
    let sealer = Sealer::load(&key_file(&app.data_dir())).unwrap().unwrap();
    assert_eq!(
        sealer.open("api_key", "plain-gcm-api-key-legacy").unwrap(),
        "plain-gcm-api-key-legacy",
        "a value from before sealing reads as it is"
    );
    let rest = &exported[PLAINTEXT_LOG.len()..];
    assert_no_plaintext("the new events", rest);
    assert_eq!(
        open_export(rest, &key_file(&app.data_dir())),
        [gcm_account.as_str()],
        "new credentials are sealed"
    );
    app.verify();
}

#[test]
fn storage_secret_key_file_is_honoured_by_serve_and_import_alike() {
    let keys = TempDir::new().unwrap();
    let key = keys.path().join("bindery-credentials.key");
    let setting = key.to_str().unwrap();
    let (app, _) = TestApp::spawn_logged(
        TempDir::new().unwrap(),
        &[("BINDERY_STORAGE__SECRET_KEY_FILE", setting)],
        None,
    );
    create_credentials(&app);
    assert!(key.exists(), "made where the setting says");
    assert!(!key_file(&app.data_dir()).exists(), "not in the data dir");
    let exported = export(&app.data_dir());
    // Two for the certificate credential, one each for the token one, fcm and gcm, and the
    // rotation's event holds the token credential's whole new state: one more.
    assert_eq!(open_export(&exported, &key).len(), 6);
    let file = keys.path().join("events.jsonl");
    std::fs::write(&file, &exported).unwrap();

    // The same setting from a config file: import finds the key there, not in its data dir.
    let config = keys.path().join("bindery.toml");
    std::fs::write(
        &config,
        format!("[storage]\nsecret_key_file = {:?}\n", setting),
    )
    .unwrap();
    let target = TempDir::new().unwrap();
    let imported = command(BINARY)
        .args(["import", "--from", file.to_str().unwrap(), "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(target.path())
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert_eq!(export(target.path()), exported);
    // Without the setting, the same import looks in the data dir and finds no key.
    let unset = TempDir::new().unwrap();
    let refused = import(unset.path(), &file);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains(&*key_file(unset.path()).to_string_lossy()));
}
