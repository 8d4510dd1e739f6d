//! An export written before registrations had an endpoint and message types (`BindingRegistered`
//! v1) still imports, reads as the current shape, and exports unchanged: the log is never
//! rewritten, only upcast as it is read. Events this Bindery cannot read are refused whole. A
//! credential from before profiles (v1) reads with none, and a SQLite database from before
//! profiles migrates. On both engines, but for that SQLite migration.

mod engines;

use bindery_daemon::store::sql::Arg;
use bindery_daemon::store::{self, ImportReport, PROJECTION_TABLES};
use bindery_daemon::{ImportKey, Store, StoreError, StoreOptions};
use bindery_domain::*;
use engines::{on_both_engines, Database, Engine, Server};
use tempfile::TempDir;

/// AccountCreated, ServiceCreated, UserCreated, then a v1 BindingRegistered: no `endpoint`, no
/// `message_types`.
const FIXTURE: &str = include_str!("fixtures/v1-binding-registered.jsonl");
const ACCOUNT: &str = "AC018876d43a003f9a1c0e5b7d2468ace1";
const SERVICE: &str = "IS018876d44d887b2e9d4c1a0f3e5d6c8b";
const USER: &str = "US018876d524600c4d8e2f6a1b3c5d7e9f";
const BINDING: &str = "BS018876d524600c4d8e2f6a1b3c5d7ea0";
const IDENTITY: &str = "zoë+ios@example.com";
const ADDRESS: &str = "8f3e2a7c9b1d4e6f0a2c4e6b8d0f1a3c5e7b9d1f3a5c7e9b0d2f4a6c8e0b1d3f";
/// When the fixture's user and binding were registered.
const REGISTERED_AT: i64 = 1_685_620_860;

struct EmptyStore {
    store: Store,
    database: Database,
    /// The data dir's key as import finds it (none: the fixture holds no sealed values).
    key: ImportKey,
    /// Dropped last: the PostgreSQL server, if the store is on one.
    _server: Server,
}

fn empty_store(engine: Engine) -> EmptyStore {
    let server = Server::start(engine);
    let database = server.database();
    let store = database.open();
    let key = key_of(&database);
    EmptyStore {
        store,
        database,
        key,
        _server: server,
    }
}

fn key_of(database: &Database) -> ImportKey {
    ImportKey::load(&bindery_daemon::seal::default_key_file(database.dir.path())).unwrap()
}

fn imported_fixture(engine: Engine) -> EmptyStore {
    let mut fresh = empty_store(engine);
    let report = fresh
        .store
        .import(&mut FIXTURE.as_bytes(), &fresh.key)
        .unwrap();
    assert_eq!(
        report,
        ImportReport {
            events: 4,
            last_position: 4
        }
    );
    fresh
}

fn binding_row(store: &mut Store) -> Binding {
    match store.load_row(EntityKind::Binding, BINDING).unwrap() {
        Some(Row::Binding(binding)) => binding,
        other => panic!("expected the fixture's binding, found {other:?}"),
    }
}

fn a_v1_registration_reads_with_its_derived_endpoint_and_every_message_type(engine: Engine) {
    let mut imported = imported_fixture(engine);
    let binding = binding_row(&mut imported.store);

    let identity = Identity::parse(IDENTITY).unwrap();
    let address = PushAddress::parse(ADDRESS).unwrap();
    assert_eq!(
        binding.endpoint,
        Endpoint::derived(&identity, BindingType::Apn, &address)
    );
    // Pinned as well: v1 endpoints are computed on every read, so a change to the derivation
    // would silently move every v1 device to a new endpoint.
    assert_eq!(
        binding.endpoint.as_str(),
        "zoë+ios@example.com:apn:88a0cc4e665deaf7"
    );
    assert_eq!(binding.message_types, MessageTypes::all());
    assert_eq!(binding.user_sid.as_str(), USER);
    assert_eq!(binding.service_sid.as_str(), SERVICE);
    assert_eq!(binding.account_sid.as_str(), ACCOUNT);
    assert_eq!(binding.identity, identity);
    assert_eq!(binding.address, address);
    assert_eq!(binding.binding_type, BindingType::Apn);
    assert_eq!(binding.credential_sid, None);
    assert_eq!(binding.date_created, Timestamp::from_unix(REGISTERED_AT));
    assert_eq!(binding.date_updated, Timestamp::from_unix(REGISTERED_AT));

    imported.database.assert_verifies();
}

fn the_log_keeps_the_v1_data_as_it_was_written(engine: Engine) {
    let imported = imported_fixture(engine);
    let (version, data) = imported.database.read(|db| {
        db.value(
            "SELECT schema_version, data FROM events WHERE stream = ?1",
            &[Arg::Text(BINDING)],
            |r| Ok((r.int(0)?, r.text(1)?.to_owned())),
        )
    });
    assert_eq!(version, 1);
    let fixture_line = FIXTURE.lines().nth(3).unwrap();
    assert!(
        fixture_line.contains(&format!(r#""data":{data},"#)),
        "stored data {data} is not the fixture's"
    );
    assert!(!data.contains("endpoint") && !data.contains("message_types"));
}

fn export_after_import_reproduces_the_fixture_byte_for_byte(engine: Engine) {
    let imported = imported_fixture(engine);
    let mut exported = Vec::new();
    let location = &imported.database.location;
    let count = store::export(location, &mut exported, &StoreOptions::default()).unwrap();
    assert_eq!(count, 4);
    assert_eq!(String::from_utf8(exported).unwrap(), FIXTURE);
}

fn the_same_device_registering_again_updates_its_v1_binding(engine: Engine) {
    let mut imported = imported_fixture(engine);
    let register = Command::RegisterBinding(RegisterBinding {
        account: AccountSid::parse(ACCOUNT).unwrap(),
        service: ServiceSid::parse(SERVICE).unwrap(),
        user: UserRef::parse(IDENTITY).unwrap(),
        binding_type: BindingType::Apn,
        address: PushAddress::parse(ADDRESS).unwrap(),
        // As a v1 client would: no endpoint, so the derived one, which must find the binding.
        endpoint: None,
        credential: None,
        message_types: None,
        per_user_limit: 10,
    });
    let committed = imported
        .store
        .execute_one(register.into(), Timestamp::from_unix(REGISTERED_AT + 60))
        .unwrap();

    assert!(!committed.created, "a second binding for one device");
    let kinds: Vec<(&str, &str)> = committed
        .events
        .iter()
        .map(|e| (e.stream.as_str(), e.event.type_name()))
        .collect();
    assert_eq!(kinds, [(BINDING, "BindingUpdated")]);
    let binding = binding_row(&mut imported.store);
    assert_eq!(
        binding.date_updated,
        Timestamp::from_unix(REGISTERED_AT + 60)
    );
    imported.database.assert_verifies();
}

/// The fixture with its last line (the v1 registration) changed by `edit`.
fn fixture_with_last_event(edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut lines: Vec<String> = FIXTURE.lines().map(str::to_owned).collect();
    let last = lines.last_mut().unwrap();
    let mut event: serde_json::Value = serde_json::from_str(last).unwrap();
    edit(&mut event);
    *last = event.to_string();
    lines.join("\n") + "\n"
}

/// Imports `export`, expecting a refusal; returns its message after checking that nothing of
/// the export was kept.
fn refused_import(engine: Engine, export: &str) -> String {
    let mut fresh = empty_store(engine);
    let message = match fresh.store.import(&mut export.as_bytes(), &fresh.key) {
        Err(StoreError::Refused(message)) => message,
        other => panic!("expected the import to be refused, got {other:?}"),
    };

    assert_eq!(fresh.store.log_position().unwrap(), 0);
    assert_eq!(fresh.store.projection_position().unwrap(), 0);
    for table in PROJECTION_TABLES.into_iter().chain(["events"]) {
        let rows = fresh
            .database
            .count(&format!("SELECT count(*) FROM {table}"), &[]);
        assert_eq!(rows, 0, "the refused import left rows in {table}");
    }
    // Still empty enough to take a good import.
    fresh
        .store
        .import(&mut FIXTURE.as_bytes(), &fresh.key)
        .unwrap();
    message
}

fn an_unknown_event_type_refuses_the_whole_import(engine: Engine) {
    let export = fixture_with_last_event(|event| event["type"] = "BindingMoved".into());
    let message = refused_import(engine, &export);
    assert!(message.contains("line 4"), "{message}");
    assert!(
        message.contains(r#"unknown event type "BindingMoved""#),
        "{message}"
    );
}

fn an_event_from_a_future_schema_version_refuses_the_whole_import(engine: Engine) {
    let export = fixture_with_last_event(|event| event["schema_version"] = 3.into());
    let message = refused_import(engine, &export);
    assert!(message.contains("line 4"), "{message}");
    assert!(
        message.contains("BindingRegistered schema version 3 is newer than this Bindery knows (2)"),
        "{message}"
    );
}

fn a_second_creation_of_a_stream_refuses_the_whole_import(engine: Engine) {
    // The fixture's user, created again under a new identity at version 2 of its stream.
    let mut export = FIXTURE.to_owned();
    let line = FIXTURE
        .lines()
        .find(|l| l.contains("\"UserCreated\""))
        .unwrap();
    let mut forged: serde_json::Value = serde_json::from_str(line).unwrap();
    forged["position"] = 5.into();
    forged["stream_version"] = 2.into();
    forged["data"]["identity"] = "mallory".into();
    export.push_str(&format!("{forged}\n"));
    let message = refused_import(engine, &export);
    assert!(message.contains("line 5"), "{message}");
    assert!(
        message.contains("starts with its one creation event"),
        "{message}"
    );
}

/// A v1 credential (written before credentials were read on the way in: no profile).
const V1_CREDENTIAL: &str = r#"{"position":5,"stream":"CR018876d524600c4d8e2f6a1b3c5d7ea1","stream_version":1,"type":"CredentialCreated","schema_version":1,"data":{"credential_type":"fcm","friendly_name":"android","sandbox":null,"secrets":{"certificate":null,"private_key":null,"api_key":null,"secret":"legacy-server-key"}},"recorded_at":"2023-06-01T12:02:00Z","account_sid":"AC018876d43a003f9a1c0e5b7d2468ace1","service_sid":null,"request_id":null}"#;

const V1_CREDENTIAL_SID: &str = "CR018876d524600c4d8e2f6a1b3c5d7ea1";

fn a_v1_credential_reads_with_an_unknown_profile(engine: Engine) {
    let server = Server::start(engine);
    let database = server.database();
    let export = FIXTURE.to_owned() + V1_CREDENTIAL + "\n";
    let mut store = database.open();
    store
        .import(&mut export.as_bytes(), &key_of(&database))
        .unwrap();
    let credential = match store
        .load_row(EntityKind::Credential, V1_CREDENTIAL_SID)
        .unwrap()
    {
        Some(Row::Credential(c)) => c,
        other => panic!("{other:?}"),
    };
    assert!(credential.profile.is_unknown(), "{:?}", credential.profile);
    drop(store);
    database.assert_verifies();
}

on_both_engines!(
    a_v1_registration_reads_with_its_derived_endpoint_and_every_message_type,
    the_log_keeps_the_v1_data_as_it_was_written,
    export_after_import_reproduces_the_fixture_byte_for_byte,
    the_same_device_registering_again_updates_its_v1_binding,
    an_unknown_event_type_refuses_the_whole_import,
    an_event_from_a_future_schema_version_refuses_the_whole_import,
    a_second_creation_of_a_stream_refuses_the_whole_import,
    a_v1_credential_reads_with_an_unknown_profile,
);

/// SQLite's alone: PostgreSQL's schema was born with profiles (its one migration has them).
#[test]
fn a_sqlite_database_from_before_profiles_migrates() {
    let dir = TempDir::new().unwrap();
    let path = store::database_path(dir.path());
    let export = FIXTURE.to_owned() + V1_CREDENTIAL + "\n";
    {
        let mut store = Store::open(&path, &StoreOptions::default()).unwrap();
        let key = ImportKey::load(&bindery_daemon::seal::default_key_file(dir.path())).unwrap();
        store.import(&mut export.as_bytes(), &key).unwrap();
    }
    // The same database as the Bindery before profiles left it: no profile column (nor what
    // later migrations added), six migrations. Opening it again migrates, and the migrated
    // rows equal the log's replay.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "ALTER TABLE credentials DROP COLUMN profile; DROP TABLE console_sessions; \
         DROP INDEX deliveries_failed; DROP INDEX events_binding_removals; \
         PRAGMA user_version = 6;",
    )
    .unwrap();
    drop(conn);
    drop(Store::open(&path, &StoreOptions::default()).unwrap());
    let (version, profile): (i64, String) =
        store::open_reader(&path, StoreOptions::default().busy_timeout)
            .unwrap()
            .query_row(
                "SELECT (SELECT user_version FROM pragma_user_version), profile FROM credentials",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
    assert_eq!(
        (version, profile.as_str()),
        (8, "{}"),
        "every migration applied"
    );
    let differences = store::verify(&path, &StoreOptions::default()).unwrap();
    assert!(differences.is_empty(), "{differences:#?}");
}
