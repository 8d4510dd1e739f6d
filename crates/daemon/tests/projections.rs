//! Whatever commands arrive, in whatever batches, the SQL store keeps its promises on either
//! engine: its incremental projections equal a replay of its log, a rebuild changes no byte,
//! the registry's invariants hold, and it decides every command exactly as the in-memory model
//! does. Every assertion reads the database through the store's own seam (`Db`), so the same
//! ones run on SQLite and on PostgreSQL.
//!
//! The commands are drawn from a deliberately small universe (two accounts, a few services,
//! identities, addresses and endpoints, and a low per-user limit) so that they collide: the same
//! device registered twice, an address moving between users, a user at its limit, a binding
//! deleted through the wrong user or the wrong account.

mod engines;

use std::collections::{BTreeMap, HashMap, HashSet};

use bindery_daemon::store::sql::{Arg, Db, Engine as SqlEngine, SqlRow, Value};
use bindery_daemon::store::{self, rows, StoreError, PROJECTION_TABLES};
use bindery_daemon::{Envelope, Store, StoreOptions, Synchronous, WriteError};
use bindery_domain::memory::{CountingSids, MemoryState};
use bindery_domain::*;
use engines::{on_both_engines, Database, Engine, Server};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError, TestRunner};

/// Identities that SQL could get wrong: case, `@`, `+`, a space and a non-ASCII letter.
const IDENTITIES: [&str; 4] = ["alice", "Alice", "bob+ios@example.com", "zoë van dijk"];
const ADDRESSES: [&str; 5] = [
    "a1b2c3d4e5f6",
    "A1B2C3D4E5F6",
    "fcm:APA91b-1",
    "fcm:APA91b-2",
    "token with spaces é",
];
const ENDPOINTS: [&str; 3] = ["device-1", "device-2", "iPhone de Zoë"];
const FRIENDLY_NAMES: [&str; 3] = ["Alice A.", "support", "Zoë"];
/// Kept byte for byte, so the odd spacing must survive the round trip through SQL.
const ATTRIBUTES: [&str; 4] = [
    "{}",
    r#"{"team": "blue"}"#,
    "[1, 2, 3]",
    r#"  {"x" : null}  "#,
];
const ROLES: [&str; 2] = [
    "RL00000000000000000000000000000001",
    "RL00000000000000000000000000000002",
];
/// Three patches the settings take and two they refuse.
const SETTINGS_PATCHES: [&str; 5] = [
    "{}",
    r#"{"typing_indicator_timeout": 9}"#,
    r#"{"notifications": {"new_message": {"enabled": true, "template": "${MESSAGE}"}}}"#,
    r#"{"colour": "red"}"#,
    r#"{"read_status_enabled": 3}"#,
];
/// Low, so that sequences reach it.
const PER_USER_LIMIT: u32 = 3;
const START: i64 = 1_700_000_000;

/// A service by its place in the prelude, and whether the request is made as the other account
/// (whose requests must find nothing of this service).
#[derive(Debug, Clone, Copy)]
struct Scope {
    service: usize,
    foreign: bool,
}

#[derive(Debug, Clone, Copy)]
enum UserPick {
    Identity(usize),
    /// The i-th live user of the scope's service, by SID.
    Live(usize),
    /// The i-th user created in the run, by SID: perhaps deleted, perhaps of another service.
    Any(usize),
}

#[derive(Debug, Clone, Copy)]
enum BindingPick {
    /// The i-th live binding of the scope's service.
    Live(usize),
    /// The i-th binding registered in the run: perhaps gone, perhaps of another service.
    Any(usize),
}

/// Who a binding is deleted through: the service route (nobody), its owner, or someone else.
#[derive(Debug, Clone, Copy)]
enum OwnerPick {
    Nobody,
    Owner { by_identity: bool },
    Someone(UserPick),
}

#[derive(Debug, Clone, Copy)]
enum CredentialPick {
    /// The i-th live credential of the account making the request.
    Live(usize),
    /// The i-th credential created in the run: perhaps deleted, perhaps another account's.
    Any(usize),
}

#[derive(Debug, Clone)]
enum Step {
    CreateUser {
        scope: Scope,
        identity: usize,
        friendly_name: Option<usize>,
        attributes: Option<usize>,
    },
    UpdateUser {
        scope: Scope,
        user: UserPick,
        friendly_name: Option<usize>,
        attributes: Option<usize>,
        role: Option<usize>,
    },
    DeleteUser {
        scope: Scope,
        user: UserPick,
    },
    RegisterBinding {
        scope: Scope,
        user: UserPick,
        binding_type: usize,
        address: usize,
        endpoint: Option<usize>,
        credential: Option<CredentialPick>,
        /// Bits over [`MessageType::ALL`]; zero is refused.
        message_types: Option<u8>,
    },
    /// The device of an existing binding registers again, perhaps with a new address.
    Reregister {
        scope: Scope,
        binding: BindingPick,
        by_identity: bool,
        /// `None`: the address the binding holds.
        address: Option<usize>,
        message_types: Option<u8>,
    },
    DeleteBinding {
        scope: Scope,
        owner: OwnerPick,
        binding: BindingPick,
    },
    UpdateService {
        scope: Scope,
        friendly_name: Option<usize>,
        patch: usize,
    },
    DeleteService {
        scope: Scope,
    },
    CreateCredential {
        account: usize,
        credential_type: usize,
    },
    DeleteCredential {
        account: usize,
        credential: CredentialPick,
    },
}

#[derive(Debug, Clone)]
struct Run {
    /// How many services each of the two accounts has.
    services_per_account: (usize, usize),
    steps: Vec<Step>,
    /// Batch sizes and how many seconds the clock moves before each batch; cycled.
    batches: Vec<(usize, i64)>,
}

/// An index into a pool, favouring its first entry so that commands meet on it.
fn favouring_first(len: usize) -> impl Strategy<Value = usize> {
    prop_oneof![2 => Just(0), 3 => 0..len]
}

fn scope() -> impl Strategy<Value = Scope> {
    (favouring_first(4), prop::bool::weighted(0.1))
        .prop_map(|(service, foreign)| Scope { service, foreign })
}

fn user_pick() -> impl Strategy<Value = UserPick> {
    prop_oneof![
        6 => favouring_first(IDENTITIES.len()).prop_map(UserPick::Identity),
        3 => (0..8usize).prop_map(UserPick::Live),
        1 => (0..8usize).prop_map(UserPick::Any),
    ]
}

fn binding_pick() -> impl Strategy<Value = BindingPick> {
    prop_oneof![
        4 => (0..8usize).prop_map(BindingPick::Live),
        1 => (0..16usize).prop_map(BindingPick::Any),
    ]
}

fn owner_pick() -> impl Strategy<Value = OwnerPick> {
    prop_oneof![
        2 => Just(OwnerPick::Nobody),
        3 => any::<bool>().prop_map(|by_identity| OwnerPick::Owner { by_identity }),
        1 => user_pick().prop_map(OwnerPick::Someone),
    ]
}

fn credential_pick() -> impl Strategy<Value = CredentialPick> {
    prop_oneof![
        3 => (0..4usize).prop_map(CredentialPick::Live),
        1 => (0..4usize).prop_map(CredentialPick::Any),
    ]
}

fn maybe<S: Strategy>(probability: f64, strategy: S) -> impl Strategy<Value = Option<S::Value>> {
    prop::option::weighted(probability, strategy)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        24 => (
            scope(),
            user_pick(),
            favouring_first(BindingType::ALL.len()),
            0..ADDRESSES.len(),
            maybe(0.6, 0..ENDPOINTS.len()),
            maybe(0.2, credential_pick()),
            maybe(0.3, 0u8..16),
        )
            .prop_map(
                |(scope, user, binding_type, address, endpoint, credential, message_types)| {
                    Step::RegisterBinding {
                        scope,
                        user,
                        binding_type,
                        address,
                        endpoint,
                        credential,
                        message_types,
                    }
                }
            ),
        6 => (
            scope(),
            binding_pick(),
            any::<bool>(),
            maybe(0.5, 0..ADDRESSES.len()),
            maybe(0.3, 1u8..16),
        )
            .prop_map(|(scope, binding, by_identity, address, message_types)| {
                Step::Reregister {
                    scope,
                    binding,
                    by_identity,
                    address,
                    message_types,
                }
            }),
        3 => (
            scope(),
            0..IDENTITIES.len(),
            maybe(0.5, 0..FRIENDLY_NAMES.len()),
            maybe(0.5, 0..ATTRIBUTES.len()),
        )
            .prop_map(|(scope, identity, friendly_name, attributes)| Step::CreateUser {
                scope,
                identity,
                friendly_name,
                attributes,
            }),
        4 => (
            scope(),
            user_pick(),
            maybe(0.5, 0..FRIENDLY_NAMES.len()),
            maybe(0.5, 0..ATTRIBUTES.len()),
            maybe(0.3, 0..ROLES.len()),
        )
            .prop_map(|(scope, user, friendly_name, attributes, role)| Step::UpdateUser {
                scope,
                user,
                friendly_name,
                attributes,
                role,
            }),
        3 => (scope(), user_pick()).prop_map(|(scope, user)| Step::DeleteUser { scope, user }),
        8 => (scope(), owner_pick(), binding_pick())
            .prop_map(|(scope, owner, binding)| Step::DeleteBinding { scope, owner, binding }),
        2 => (scope(), maybe(0.5, 0..FRIENDLY_NAMES.len()), 0..SETTINGS_PATCHES.len())
            .prop_map(|(scope, friendly_name, patch)| Step::UpdateService {
                scope,
                friendly_name,
                patch,
            }),
        // Rare: a deleted service refuses every later command made on it.
        1 => scope().prop_map(|scope| Step::DeleteService { scope }),
        2 => (0..2usize, 0..BindingType::ALL.len()).prop_map(|(account, credential_type)| {
            Step::CreateCredential {
                account,
                credential_type,
            }
        }),
        1 => (0..2usize, credential_pick())
            .prop_map(|(account, credential)| Step::DeleteCredential { account, credential }),
    ]
}

fn run() -> impl Strategy<Value = Run> {
    (
        (1..=2usize, 1..=2usize),
        vec(step(), 1..=40),
        vec((1..=8usize, 0..=2i64), 1..=12),
    )
        .prop_map(|(services_per_account, steps, batches)| Run {
            services_per_account,
            steps,
            batches,
        })
}

/// SIDs that no run ever creates, for references made before anything of the kind exists.
fn never<K: SidKind>() -> Sid<K> {
    Sid::from_bytes([0xff; 16])
}

/// What one world (the store or the model) has created, so that a step names the same entity
/// in both although their SIDs differ; and a label per SID ("User#3") to compare them by.
#[derive(Default)]
struct World {
    accounts: Vec<AccountSid>,
    services: Vec<ServiceSid>,
    service_account: HashMap<ServiceSid, AccountSid>,
    users: Vec<UserSid>,
    user_service: HashMap<UserSid, ServiceSid>,
    user_identity: HashMap<UserSid, Identity>,
    bindings: Vec<BindingSid>,
    binding_service: HashMap<BindingSid, ServiceSid>,
    binding_owner: HashMap<BindingSid, UserSid>,
    /// The device of each binding: its endpoint, type and current address.
    binding_device: HashMap<BindingSid, (Endpoint, BindingType, PushAddress)>,
    credentials: Vec<CredentialSid>,
    credential_account: HashMap<CredentialSid, AccountSid>,
    /// Streams whose entity an accepted command removed.
    removed: HashSet<String>,
    labels: HashMap<String, String>,
    created_per_kind: HashMap<String, usize>,
}

impl World {
    fn record(&mut self, recorded: &RecordedEvent) {
        let stream = recorded.stream.as_str();
        if recorded.event.is_creation() {
            let kind = format!("{:?}", recorded.event.entity());
            let count = self.created_per_kind.entry(kind.clone()).or_default();
            self.labels
                .insert(stream.to_owned(), format!("{kind}#{count}"));
            *count += 1;
        }
        match &recorded.event {
            Event::AccountCreated { .. } => self.accounts.push(stream.parse().unwrap()),
            Event::ServiceCreated { .. } => {
                let sid: ServiceSid = stream.parse().unwrap();
                self.services.push(sid);
                self.service_account.insert(sid, recorded.account_sid);
            }
            Event::UserCreated { identity, .. } => {
                let sid: UserSid = stream.parse().unwrap();
                self.users.push(sid);
                self.user_service.insert(sid, recorded.service_sid.unwrap());
                self.user_identity.insert(sid, identity.clone());
            }
            Event::BindingRegistered {
                user_sid,
                endpoint,
                binding_type,
                address,
                ..
            } => {
                let sid: BindingSid = stream.parse().unwrap();
                let device = (endpoint.clone(), *binding_type, address.clone());
                self.binding_device.insert(sid, device);
                self.bindings.push(sid);
                self.binding_service
                    .insert(sid, recorded.service_sid.unwrap());
                self.binding_owner.insert(sid, *user_sid);
            }
            Event::BindingUpdated { address, .. } => {
                let sid: BindingSid = stream.parse().unwrap();
                if let Some(device) = self.binding_device.get_mut(&sid) {
                    device.2 = address.clone();
                }
            }
            Event::CredentialCreated { .. } => {
                let sid: CredentialSid = stream.parse().unwrap();
                self.credentials.push(sid);
                self.credential_account.insert(sid, recorded.account_sid);
            }
            Event::ServiceDeleted {}
            | Event::UserDeleted { .. }
            | Event::BindingDeleted { .. }
            | Event::BindingSuperseded { .. }
            | Event::CredentialDeleted {}
            | Event::ApiKeyRevoked {} => {
                self.removed.insert(stream.to_owned());
            }
            _ => {}
        }
    }

    fn is_live(&self, sid: &str) -> bool {
        !self.removed.contains(sid)
    }

    /// Replaces every SID this world created by its label; other text is kept.
    fn normalize(&self, text: &str) -> String {
        const SID_LEN: usize = 34;
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(next) = rest.chars().next() {
            match rest.get(..SID_LEN).and_then(|sid| self.labels.get(sid)) {
                Some(label) => {
                    out.push_str(label);
                    rest = &rest[SID_LEN..];
                }
                None => {
                    out.push(next);
                    rest = &rest[next.len_utf8()..];
                }
            }
        }
        out
    }

    fn scope(&self, scope: Scope) -> (AccountSid, ServiceSid) {
        let service = self.services[scope.service % self.services.len()];
        let owner = self.service_account[&service];
        let account = if scope.foreign {
            *self.accounts.iter().find(|a| **a != owner).unwrap()
        } else {
            owner
        };
        (account, service)
    }

    fn account(&self, index: usize) -> AccountSid {
        self.accounts[index % self.accounts.len()]
    }

    fn user(&self, pick: UserPick, service: ServiceSid) -> UserRef {
        let any = |i: usize| match self.users.len() {
            0 => never(),
            n => self.users[i % n],
        };
        match pick {
            UserPick::Identity(i) => UserRef::Identity(Identity::parse(IDENTITIES[i]).unwrap()),
            UserPick::Live(i) => {
                let live: Vec<UserSid> = self
                    .users
                    .iter()
                    .filter(|u| self.is_live(u.as_str()) && self.user_service[u] == service)
                    .copied()
                    .collect();
                UserRef::Sid(match live.len() {
                    0 => any(i),
                    n => live[i % n],
                })
            }
            UserPick::Any(i) => UserRef::Sid(any(i)),
        }
    }

    fn binding(&self, pick: BindingPick, service: ServiceSid) -> BindingSid {
        let any = |i: usize| match self.bindings.len() {
            0 => never(),
            n => self.bindings[i % n],
        };
        match pick {
            BindingPick::Live(i) => {
                let live: Vec<BindingSid> = self
                    .bindings
                    .iter()
                    .filter(|b| self.is_live(b.as_str()) && self.binding_service[b] == service)
                    .copied()
                    .collect();
                match live.len() {
                    0 => any(i),
                    n => live[i % n],
                }
            }
            BindingPick::Any(i) => any(i),
        }
    }

    fn credential(&self, pick: CredentialPick, account: AccountSid) -> CredentialSid {
        let any = |i: usize| match self.credentials.len() {
            0 => never(),
            n => self.credentials[i % n],
        };
        match pick {
            CredentialPick::Live(i) => {
                let live: Vec<CredentialSid> = self
                    .credentials
                    .iter()
                    .filter(|c| self.is_live(c.as_str()) && self.credential_account[c] == account)
                    .copied()
                    .collect();
                match live.len() {
                    0 => any(i),
                    n => live[i % n],
                }
            }
            CredentialPick::Any(i) => any(i),
        }
    }

    /// The command a step means in this world.
    fn command(&self, step: &Step) -> Command {
        let text = |pool: &[&str], i: Option<usize>| i.map(|i| pool[i].to_owned());
        let attributes = |i: Option<usize>| i.map(|i| Attributes::parse(ATTRIBUTES[i]).unwrap());
        match *step {
            Step::CreateUser {
                scope,
                identity,
                friendly_name,
                attributes: chosen,
            } => {
                let (account, service) = self.scope(scope);
                Command::CreateUser {
                    account,
                    service,
                    identity: Identity::parse(IDENTITIES[identity]).unwrap(),
                    friendly_name: text(&FRIENDLY_NAMES, friendly_name),
                    attributes: attributes(chosen),
                    role_sid: None,
                }
            }
            Step::UpdateUser {
                scope,
                user,
                friendly_name,
                attributes: chosen,
                role,
            } => {
                let (account, service) = self.scope(scope);
                Command::UpdateUser {
                    account,
                    service,
                    user: self.user(user, service),
                    friendly_name: text(&FRIENDLY_NAMES, friendly_name),
                    attributes: attributes(chosen),
                    role_sid: text(&ROLES, role),
                }
            }
            Step::DeleteUser { scope, user } => {
                let (account, service) = self.scope(scope);
                Command::DeleteUser {
                    account,
                    service,
                    user: self.user(user, service),
                }
            }
            Step::RegisterBinding {
                scope,
                user,
                binding_type,
                address,
                endpoint,
                credential,
                message_types,
            } => {
                let (account, service) = self.scope(scope);
                Command::RegisterBinding(RegisterBinding {
                    account,
                    service,
                    user: self.user(user, service),
                    binding_type: BindingType::ALL[binding_type],
                    address: PushAddress::parse(ADDRESSES[address]).unwrap(),
                    endpoint: endpoint.map(|i| Endpoint::parse(ENDPOINTS[i]).unwrap()),
                    credential: credential.map(|pick| self.credential(pick, account)),
                    message_types: message_types.map(message_types_of),
                    per_user_limit: PER_USER_LIMIT,
                })
            }
            Step::Reregister {
                scope,
                binding,
                by_identity,
                address,
                message_types,
            } => {
                let (account, service) = self.scope(scope);
                let binding = self.binding(binding, service);
                let (user, (endpoint, binding_type, held)) = match (
                    self.binding_owner.get(&binding),
                    self.binding_device.get(&binding),
                ) {
                    (Some(owner), Some(device)) if by_identity => (
                        UserRef::Identity(self.user_identity[owner].clone()),
                        device.clone(),
                    ),
                    (Some(owner), Some(device)) => (UserRef::Sid(*owner), device.clone()),
                    // No binding yet: a device nobody registered.
                    _ => (
                        UserRef::Identity(Identity::parse(IDENTITIES[0]).unwrap()),
                        (
                            Endpoint::parse(ENDPOINTS[0]).unwrap(),
                            BindingType::Apn,
                            PushAddress::parse(ADDRESSES[0]).unwrap(),
                        ),
                    ),
                };
                Command::RegisterBinding(RegisterBinding {
                    account,
                    service,
                    user,
                    binding_type,
                    address: address.map_or(held, |i| PushAddress::parse(ADDRESSES[i]).unwrap()),
                    endpoint: Some(endpoint),
                    credential: None,
                    message_types: message_types.map(message_types_of),
                    per_user_limit: PER_USER_LIMIT,
                })
            }
            Step::DeleteBinding {
                scope,
                owner,
                binding,
            } => {
                let (account, service) = self.scope(scope);
                let binding = self.binding(binding, service);
                let user = match owner {
                    OwnerPick::Nobody => None,
                    OwnerPick::Owner { by_identity } => {
                        let owner = self.binding_owner.get(&binding).copied();
                        Some(match (owner, by_identity) {
                            (Some(owner), true) => {
                                UserRef::Identity(self.user_identity[&owner].clone())
                            }
                            (Some(owner), false) => UserRef::Sid(owner),
                            (None, _) => UserRef::Sid(never()),
                        })
                    }
                    OwnerPick::Someone(pick) => Some(self.user(pick, service)),
                };
                Command::DeleteBinding {
                    account,
                    service,
                    user,
                    binding,
                    reason: BindingRemoval::Api,
                }
            }
            Step::UpdateService {
                scope,
                friendly_name,
                patch,
            } => {
                let (account, service) = self.scope(scope);
                Command::UpdateService {
                    account,
                    service,
                    friendly_name: text(&FRIENDLY_NAMES, friendly_name),
                    settings: serde_json::from_str(SETTINGS_PATCHES[patch]).unwrap(),
                }
            }
            Step::DeleteService { scope } => {
                let (account, service) = self.scope(scope);
                Command::DeleteService { account, service }
            }
            Step::CreateCredential {
                account,
                credential_type,
            } => Command::CreateCredential {
                account: self.account(account),
                credential_type: BindingType::ALL[credential_type],
                friendly_name: Some(format!("credential {credential_type}")),
                sandbox: Some(credential_type == 0),
                secrets: CredentialSecrets {
                    secret: Some("s3cret".into()),
                    ..CredentialSecrets::default()
                },
                fields: ProfileFields::default(),
                // What the daemon's reading would find; replay must keep it too.
                profile: CredentialProfile {
                    auth: Some(CredentialAuth::Certificate),
                    topic: Some(format!("com.example.app{credential_type}")),
                    expires: Some(Timestamp::from_unix(1_900_000_000)),
                    ..CredentialProfile::default()
                },
            },
            Step::DeleteCredential {
                account,
                credential,
            } => {
                let account = self.account(account);
                Command::DeleteCredential {
                    account,
                    credential: self.credential(credential, account),
                }
            }
        }
    }
}

fn message_types_of(bits: u8) -> MessageTypes {
    MessageType::ALL
        .into_iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, t)| t)
        .collect()
}

/// What became of a command, with SIDs replaced by labels so that the two worlds compare.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Accepted {
        created: bool,
        subject_row: Option<String>,
        events: Vec<String>,
    },
    Refused(String),
}

fn event_shape(world: &World, e: &RecordedEvent) -> String {
    world.normalize(&format!(
        "#{} {} v{} {} (schema {}) {} at {} in {}/{:?}",
        e.position,
        e.stream,
        e.stream_version,
        e.event.type_name(),
        e.event.schema_version(),
        e.event.encode_data(),
        e.recorded_at,
        e.account_sid,
        e.service_sid.map(|s| s.to_string()),
    ))
}

/// Every field of a row, in full (the address too: `PushAddress`'s Debug hides it).
fn row_shape(world: &World, row: &Row) -> String {
    let text = match row {
        Row::Account(a) => format!(
            "{} {:?} token {} {}..{}",
            a.sid,
            a.friendly_name,
            a.auth_token_hash.to_hex(),
            a.date_created,
            a.date_updated
        ),
        Row::ApiKey(k) => format!(
            "{} of {} {:?} secret {} {}..{}",
            k.sid,
            k.account_sid,
            k.friendly_name,
            k.secret_hash.to_hex(),
            k.date_created,
            k.date_updated
        ),
        Row::Service(s) => format!(
            "{} of {} {:?} {:?} {}..{}",
            s.sid, s.account_sid, s.friendly_name, s.settings, s.date_created, s.date_updated
        ),
        Row::Credential(c) => format!(
            "{} of {} {:?} {:?} sandbox {:?} {:?} {}..{}",
            c.sid,
            c.account_sid,
            c.credential_type,
            c.friendly_name,
            c.sandbox,
            c.secrets,
            c.date_created,
            c.date_updated
        ),
        Row::User(u) => format!(
            "{} of {}/{} {:?} name {:?} attributes {:?} role {:?} {}..{}",
            u.sid,
            u.account_sid,
            u.service_sid,
            u.identity,
            u.friendly_name,
            u.attributes.as_ref().map(Attributes::as_str),
            u.role_sid,
            u.date_created,
            u.date_updated
        ),
        Row::Binding(b) => format!(
            "{} of {}/{} user {} {:?} endpoint {:?} {:?} address {:?} credential {:?} {:?} {}..{}",
            b.sid,
            b.account_sid,
            b.service_sid,
            b.user_sid,
            b.identity,
            b.endpoint.as_str(),
            b.binding_type,
            b.address.as_str(),
            b.credential_sid,
            b.message_types,
            b.date_created,
            b.date_updated
        ),
    };
    world.normalize(&format!("{:?} {text}", row.kind()))
}

/// The store's reading of one row of a projection table.
type ReadRow = fn(&dyn SqlRow) -> Result<Row, StoreError>;

/// Every projection row of the store, read back as the domain's rows (by the store's own
/// readers of each table's columns).
fn store_rows(db: &dyn Db) -> Result<Vec<Row>, StoreError> {
    let tables: [(&str, &str, ReadRow); 6] = [
        ("accounts", rows::ACCOUNT_COLUMNS, |r| {
            rows::account(r).map(Row::Account)
        }),
        ("api_keys", rows::API_KEY_COLUMNS, |r| {
            rows::api_key(r).map(Row::ApiKey)
        }),
        ("services", rows::SERVICE_COLUMNS, |r| {
            rows::service(r).map(Row::Service)
        }),
        ("credentials", rows::CREDENTIAL_COLUMNS, |r| {
            rows::credential(r).map(Row::Credential)
        }),
        ("users", rows::USER_COLUMNS, |r| {
            rows::user(r).map(Row::User)
        }),
        ("bindings", rows::BINDING_COLUMNS, |r| {
            rows::binding(r).map(Row::Binding)
        }),
    ];
    let mut all = Vec::new();
    for (table, columns, read) in tables {
        all.extend(db.all(&format!("SELECT {columns} FROM {table}"), &[], read)?);
    }
    Ok(all)
}

/// Both worlds' projections agree row for row, labels standing in for SIDs.
fn assert_same_projections(worlds: &Worlds, reader: &dyn Db) -> Result<(), TestCaseError> {
    let ours: HashSet<String> = store_rows(reader)?
        .iter()
        .map(|row| row_shape(&worlds.ours, row))
        .collect();
    let modelled: HashSet<String> = worlds
        .model
        .rows
        .values()
        .map(|row| row_shape(&worlds.theirs, row))
        .collect();
    let mut only_store: Vec<&String> = ours.difference(&modelled).collect();
    let mut only_model: Vec<&String> = modelled.difference(&ours).collect();
    only_store.sort();
    only_model.sort();
    prop_assert!(
        only_store.is_empty() && only_model.is_empty(),
        "the store and the model differ:\nonly in the store: {only_store:#?}\nonly in the model: {only_model:#?}"
    );
    Ok(())
}

/// Every row a query returns, each of its first `width` columns as `verify` compares them (a
/// boolean as SQLite's 0/1, on either engine).
fn all_rows(
    db: &dyn Db,
    sql: &str,
    args: &[Arg<'_>],
    width: usize,
) -> Result<Vec<Vec<Value>>, StoreError> {
    db.all(sql, args, |r| (0..width).map(|i| r.value(i)).collect())
}

/// The registry's invariants, checked with SQL on the live database.
fn assert_invariants(worlds: &mut Worlds, db: &dyn Db) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        worlds.store.projection_position()?,
        worlds.store.log_position()?,
        "the checkpoint is not the last event's position"
    );
    // Each row a query finds is a violation. `IS DISTINCT FROM`, which both engines have, is
    // SQLite's `IS NOT`: a NULL on one side only differs.
    let checks = [
        (
            "two users of one service share an identity",
            "SELECT service_sid, identity FROM users GROUP BY service_sid, identity \
             HAVING count(*) > 1",
            2,
        ),
        (
            "two bindings of one service and type share an address",
            "SELECT service_sid, binding_type, address FROM bindings \
             GROUP BY service_sid, binding_type, address HAVING count(*) > 1",
            3,
        ),
        (
            "two bindings share a user, endpoint and type",
            "SELECT user_sid, endpoint, binding_type FROM bindings \
             GROUP BY user_sid, endpoint, binding_type HAVING count(*) > 1",
            3,
        ),
        (
            "a binding's user is missing, or of another service, account or identity",
            "SELECT b.sid, b.user_sid FROM bindings b LEFT JOIN users u ON u.sid = b.user_sid \
             WHERE u.sid IS NULL OR u.service_sid IS DISTINCT FROM b.service_sid \
             OR u.account_sid IS DISTINCT FROM b.account_sid \
             OR u.identity IS DISTINCT FROM b.identity",
            2,
        ),
        (
            "a user's service is missing or of another account",
            "SELECT u.sid, u.service_sid FROM users u LEFT JOIN services s \
             ON s.sid = u.service_sid \
             WHERE s.sid IS NULL OR s.account_sid IS DISTINCT FROM u.account_sid",
            2,
        ),
        (
            "a user holds more bindings than the per-user limit",
            &format!(
                "SELECT user_sid, count(*) FROM bindings GROUP BY user_sid \
                 HAVING count(*) > {PER_USER_LIMIT}"
            ),
            2,
        ),
    ];
    for (invariant, sql, width) in checks {
        let found = all_rows(db, sql, &[], width)?;
        prop_assert!(found.is_empty(), "{invariant}: {found:?}");
    }

    // Nothing of a removed entity remains: not its row, nor the users and bindings under it.
    // Each row with the SIDs it hangs from, in one query (not one per removed SID: on
    // PostgreSQL each is a round trip).
    let held = db.all(
        "SELECT 'service', sid, NULL, NULL FROM services \
         UNION ALL SELECT 'credential', sid, NULL, NULL FROM credentials \
         UNION ALL SELECT 'user', sid, service_sid, NULL FROM users \
         UNION ALL SELECT 'binding', sid, user_sid, service_sid FROM bindings",
        &[],
        |r| {
            let sids = [r.opt_text(1)?, r.opt_text(2)?, r.opt_text(3)?];
            Ok((r.text(0)?.to_owned(), sids.map(|s| s.map(str::to_owned))))
        },
    )?;
    for (kind, sids) in held {
        let removed = sids
            .iter()
            .flatten()
            .find(|s| worlds.ours.removed.contains(*s));
        prop_assert!(
            removed.is_none(),
            "{:?} was removed, yet {} {:?} remains",
            removed,
            kind,
            sids[0]
        );
    }

    // Positions are 1..=N, and each stream's versions are 1..=k in the order of the log.
    let events = db.all(
        "SELECT position, stream, stream_version FROM events ORDER BY position",
        &[],
        |r| Ok((r.int(0)?, r.text(1)?.to_owned(), r.int(2)?)),
    )?;
    let mut versions: HashMap<String, i64> = HashMap::new();
    for (expected_position, (position, stream, version)) in (1..).zip(events) {
        prop_assert_eq!(position, expected_position, "a gap in the log's positions");
        let previous = versions.entry(stream.clone()).or_insert(0);
        prop_assert_eq!(
            version,
            *previous + 1,
            "stream {} skips a version at position {}",
            stream,
            position
        );
        *previous = version;
    }
    Ok(())
}

/// A table's columns, in their order, from the engine's catalogue.
fn columns_of(db: &dyn Db, table: &str) -> Result<Vec<String>, StoreError> {
    let sql = match db.engine() {
        SqlEngine::Sqlite => "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
        SqlEngine::Postgres => {
            "SELECT attname::text FROM pg_attribute \
             WHERE attrelid = ?1::text::regclass AND attnum > 0 AND NOT attisdropped \
             ORDER BY attnum"
        }
    };
    db.all(sql, &[Arg::Text(table)], |r| Ok(r.text(0)?.to_owned()))
}

/// Every projection table's rows, with every column the catalogue lists, in SID order; and
/// the checkpoint.
fn snapshot(db: &dyn Db) -> Result<BTreeMap<&'static str, Vec<Vec<Value>>>, StoreError> {
    let mut tables = BTreeMap::new();
    for table in PROJECTION_TABLES.into_iter().chain(["checkpoint"]) {
        let columns = columns_of(db, table)?;
        let order = if table == "checkpoint" { "id" } else { "sid" };
        let sql = format!(
            "SELECT {} FROM {table} ORDER BY {order}",
            columns.join(", ")
        );
        tables.insert(table, all_rows(db, &sql, &[], columns.len())?);
    }
    Ok(tables)
}

/// Every table and index, with its definition, in name order.
fn schema_of(db: &dyn Db) -> Result<Vec<(String, String, Option<String>)>, StoreError> {
    let sql = match db.engine() {
        SqlEngine::Sqlite => "SELECT type, name, sql FROM sqlite_schema ORDER BY name",
        // A table's definition is its columns, as the catalogue has them.
        SqlEngine::Postgres => {
            "SELECT 'table', c.relname::text, string_agg(a.attname::text || ' ' \
                 || format_type(a.atttypid, a.atttypmod) \
                 || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END, ', ' ORDER BY a.attnum) \
             FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid \
             WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' \
                 AND a.attnum > 0 AND NOT a.attisdropped \
             GROUP BY c.relname \
             UNION ALL SELECT 'index', indexname::text, indexdef FROM pg_indexes \
             WHERE schemaname = current_schema() \
             ORDER BY 2"
        }
    };
    db.all(sql, &[], |r| {
        Ok((
            r.text(0)?.to_owned(),
            r.text(1)?.to_owned(),
            r.opt_text(2)?.map(str::to_owned),
        ))
    })
}

/// The SQL store and the in-memory model, fed the same commands at the same times.
struct Worlds {
    store: Store,
    /// The store's database, which the assertions read on a connection of their own.
    database: Database,
    ours: World,
    model: MemoryState,
    model_sids: CountingSids,
    theirs: World,
}

impl Worlds {
    fn new(database: Database) -> Worlds {
        let options = StoreOptions {
            // Durability is not under test; fsync would only slow the cases down.
            synchronous: Synchronous::Normal,
            ..StoreOptions::default()
        };
        let store = database.open_with(&options).unwrap();
        Worlds {
            store,
            database,
            ours: World::default(),
            model: MemoryState::default(),
            model_sids: CountingSids::default(),
            theirs: World::default(),
        }
    }

    /// Two accounts, each with a credential, then each account's services; all accepted.
    fn set_up(&mut self, services_per_account: (usize, usize), now: Timestamp) {
        for n in 0..2 {
            self.set_up_one(
                |_| Command::CreateAccount {
                    friendly_name: format!("account {n}"),
                    auth_token_hash: SecretHash::of(&format!("token {n}")),
                },
                now,
            );
            self.set_up_one(
                |world| Command::CreateCredential {
                    account: world.accounts[n],
                    credential_type: BindingType::Apn,
                    friendly_name: None,
                    sandbox: None,
                    secrets: CredentialSecrets::default(),
                    fields: ProfileFields::default(),
                    profile: CredentialProfile::default(),
                },
                now,
            );
        }
        let (first, second) = services_per_account;
        let services = (0..first)
            .map(|s| (0, s))
            .chain((0..second).map(|s| (1, s)));
        for (owner, n) in services {
            self.set_up_one(
                |world| Command::CreateService {
                    account: world.accounts[owner],
                    friendly_name: format!("service {owner}.{n}"),
                },
                now,
            );
        }
    }

    fn set_up_one(&mut self, command: impl Fn(&World) -> Command, now: Timestamp) {
        let committed = self
            .store
            .execute_one(command(&self.ours).into(), now)
            .unwrap();
        committed.events.iter().for_each(|e| self.ours.record(e));
        let decision = self
            .model
            .execute(&mut self.model_sids, &command(&self.theirs), now)
            .unwrap();
        let recorded = &self.model.log[self.model.log.len() - decision.events.len()..];
        recorded.iter().for_each(|e| self.theirs.record(e));
    }

    /// Runs one batch through the store's group commit and, command by command, through the
    /// model, and checks that every command had the same outcome in both.
    fn run_batch(&mut self, batch: &[(usize, &Step)], now: Timestamp) -> Result<(), TestCaseError> {
        // References are resolved before the batch runs, as a client's requests would be.
        let ours: Vec<Envelope> = batch
            .iter()
            .map(|(i, step)| Envelope {
                command: self.ours.command(step),
                request_id: Some(format!("RQ{i:032x}")),
                idempotency: None,
            })
            .collect();
        let theirs: Vec<Command> = batch
            .iter()
            .map(|(_, step)| self.theirs.command(step))
            .collect();
        let position_before = self.store.log_position()?;
        let results = self.store.execute(&ours, now);
        prop_assert_eq!(results.len(), batch.len());

        let mut appended = 0;
        for (((index, step), result), command) in batch.iter().zip(results).zip(&theirs) {
            let our_outcome = match result {
                Ok(committed) => {
                    committed.events.iter().for_each(|e| self.ours.record(e));
                    appended += committed.events.len() as i64;
                    Outcome::Accepted {
                        created: committed.created,
                        subject_row: committed.row.map(|row| row_shape(&self.ours, &row)),
                        events: committed
                            .events
                            .iter()
                            .map(|e| event_shape(&self.ours, e))
                            .collect(),
                    }
                }
                Err(WriteError::Refused(refusal)) => {
                    Outcome::Refused(self.ours.normalize(&format!("{refusal:?}")))
                }
                Err(failure) => {
                    return Err(TestCaseError::fail(format!(
                        "step {index} ({step:?}) failed in the store: {failure}"
                    )))
                }
            };
            let their_outcome = self.model_outcome(command, now);
            prop_assert_eq!(
                our_outcome,
                their_outcome,
                "step {} ({:?}) was decided differently by the store (left) and the model",
                index,
                step
            );
        }
        // Refused commands appended nothing: the log grew by exactly the accepted events.
        prop_assert_eq!(self.store.log_position()?, position_before + appended);
        Ok(())
    }

    fn model_outcome(&mut self, command: &Command, now: Timestamp) -> Outcome {
        match self.model.execute(&mut self.model_sids, command, now) {
            Ok(decision) => {
                let recorded = &self.model.log[self.model.log.len() - decision.events.len()..];
                recorded.iter().for_each(|e| self.theirs.record(e));
                Outcome::Accepted {
                    created: decision.created,
                    subject_row: self
                        .model
                        .rows
                        .get(&decision.subject)
                        .map(|row| row_shape(&self.theirs, row)),
                    events: recorded
                        .iter()
                        .map(|e| event_shape(&self.theirs, e))
                        .collect(),
                }
            }
            Err(Refusal::Domain(refusal)) => {
                Outcome::Refused(self.theirs.normalize(&format!("{refusal:?}")))
            }
            Err(Refusal::State(never)) => match never {},
        }
    }
}

fn check(server: &Server, run: Run) -> Result<(), TestCaseError> {
    let mut worlds = Worlds::new(server.case_database());
    let location = worlds.database.location.clone();
    // The assertions' read-only connection, beside the writer for the whole case (as a reader
    // of the daemon's pool is), so that it prepares each of its statements once.
    store::with_reader(&location, &StoreOptions::default(), |reader| {
        Ok(play(&mut worlds, &run, reader))
    })?
}

fn play(worlds: &mut Worlds, run: &Run, reader: &dyn Db) -> Result<(), TestCaseError> {
    let mut now = Timestamp::from_unix(START);
    worlds.set_up(run.services_per_account, now);

    let mut steps = run.steps.iter().enumerate().peekable();
    let mut batches = run.batches.iter().cycle();
    while steps.peek().is_some() {
        let &(size, advance) = batches.next().expect("a cycle never ends");
        now = now.plus_seconds(advance);
        let batch: Vec<(usize, &Step)> = steps.by_ref().take(size).collect();
        worlds.run_batch(&batch, now)?;
        assert_invariants(worlds, reader)?;
        assert_same_projections(worlds, reader)?;
    }

    let differences = store::verify_at(&worlds.database.location, &StoreOptions::default())?;
    prop_assert!(
        differences.is_empty(),
        "{}",
        engines::unverified(&differences)
    );

    let (before, schema_before) = (snapshot(reader)?, schema_of(reader)?);
    let replayed = worlds.store.rebuild()?;
    prop_assert_eq!(replayed as i64, worlds.store.log_position()?);
    let after = snapshot(reader)?;
    prop_assert!(
        before == after,
        "rebuild changed the projections:\nbefore: {before:#?}\nafter: {after:#?}"
    );
    // Rebuild drops the projections' indexes and makes them again: all of them, the same.
    prop_assert_eq!(schema_before, schema_of(reader)?);
    Ok(())
}

fn config() -> ProptestConfig {
    // PROPTEST_CASES=5000 for a long hunt; 64 keeps the suite quick in debug builds, on
    // PostgreSQL too (~18 s on two cores, against ~3 s on SQLite: every statement is a round
    // trip to the server).
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        // Next to this file: the crate's sources are not under `tests/`, so proptest's default
        // (a tree parallel to `src`) cannot find its place and warns on every run. Both
        // engines read and add to the one file: a run that failed on one is tried on both.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        source_file: Some(file!()),
        ..ProptestConfig::default()
    }
}

/// The property, on one engine: one server for the whole run, an empty database for each case
/// (see `Server::case_database`).
fn projections_equal_replay_and_the_model_and_keep_the_invariants(engine: Engine) {
    let server = Server::start(engine);
    let mut runner = TestRunner::new(config());
    if let Err(failure) = runner.run(&run(), |run| check(&server, run)) {
        panic!("{failure}\n{runner}");
    }
}

on_both_engines!(projections_equal_replay_and_the_model_and_keep_the_invariants);
