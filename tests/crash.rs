//! Crash safety: the release binary is killed with SIGKILL at random moments while several
//! clients register devices, re-register them, delete bindings, create and delete users; it is
//! restarted on the same data dir each time. After every crash the harness checks, against a
//! model built from acknowledged answers only:
//!
//! - every acknowledged write is there (its events are in the log under its request id, and
//!   the users and bindings it left are in the database and served by the API);
//! - a refused request left nothing, and a request that got no answer left all of its events
//!   and effects or none of them;
//! - the log has no gap (positions 1..N, each stream's versions 1..k, the checkpoint at N) and
//!   what was in it before the crash is unchanged; no binding outlives its user;
//! - `bindery verify` passes.
//!
//! Each client owns its identities (and so its bindings), so the order of its requests is the
//! order they took effect in and each answer is predicted exactly; the clients still share the
//! services and the writer's group commits. A request in doubt is resolved from its events in
//! the log (all or none) and the model follows what was observed from then on.
//!
//! Settings (environment): `BINDERY_CRASH_CYCLES` (default 20; `make soak` runs 200),
//! `BINDERY_CRASH_CLIENTS` (4), `BINDERY_CRASH_SEED` (random, printed), `BINDERY_CRASH_BIN`
//! (default `target/release/bindery`, built by `make test`; the debug binary if it is missing).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::{basic, command, segment, Credentials, ServerLog, TestApp, BINARY, PATIENCE};

const SERVICES: usize = 2;
const USERS_PER_CLIENT: usize = 6;
/// Set low on the server so that the limit's refusals (409) are part of the mix.
const PER_USER_LIMIT: usize = 6;
const BINDING_TYPES: [&str; 3] = ["apn", "fcm", "gcm"];
/// Milliseconds of load before the SIGKILL, drawn from this range.
const KILL_AFTER_MS: (u64, u64) = (50, 400);

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_write_and_half_applies_nothing() {
    let settings = Settings::from_env();
    let outcome = run(&settings);
    println!("{}", outcome.summary(&settings));
}

// ---- Settings and randomness ----

struct Settings {
    cycles: usize,
    clients: usize,
    seed: u64,
    binary: PathBuf,
}

impl Settings {
    fn from_env() -> Settings {
        let number = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .map(|v| {
                    v.parse::<u64>()
                        .unwrap_or_else(|_| panic!("{name}={v}: not a number"))
                })
                .unwrap_or(default)
        };
        let clock_seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let settings = Settings {
            cycles: number("BINDERY_CRASH_CYCLES", 20) as usize,
            clients: number("BINDERY_CRASH_CLIENTS", 4).max(1) as usize,
            seed: number("BINDERY_CRASH_SEED", clock_seed),
            binary: server_binary(),
        };
        assert!(
            settings.cycles >= 1,
            "BINDERY_CRASH_CYCLES must be at least 1"
        );
        eprintln!(
            "crash: {} cycles, {} clients, seed {} (BINDERY_CRASH_SEED), binary {}",
            settings.cycles,
            settings.clients,
            settings.seed,
            settings.binary.display()
        );
        settings
    }
}

/// `BINDERY_CRASH_BIN`, else `target/release/bindery` beside the debug binary cargo built for
/// this test, else (with a note) that debug binary.
fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BINDERY_CRASH_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "BINDERY_CRASH_BIN={} is no file",
            path.display()
        );
        return path;
    }
    let debug = PathBuf::from(BINARY);
    let release = debug
        .parent()
        .and_then(Path::parent)
        .map(|target| target.join("release").join("bindery"))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/bindery"));
    if !release.is_file() {
        eprintln!(
            "crash: note: {} is missing (`cargo build --release --bin bindery`, or `make test`); \
             using the debug binary",
            release.display()
        );
        return debug;
    }
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(r), Some(d)) = (modified(&release), modified(&debug)) {
        if r < d {
            eprintln!(
                "crash: note: {} is older than the debug build; it may be stale \
                 (`cargo build --release --bin bindery`)",
                release.display()
            );
        }
    }
    release
}

/// SplitMix64: small, seedable, good enough to draw a workload from.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn between(&mut self, (low, high): (u64, u64)) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

// ---- The model: what the acknowledged requests of one client left ----

#[derive(Clone, Debug, PartialEq, Eq)]
struct UserM {
    service: usize,
    /// `None` only for a user created by a request in doubt, until it is observed.
    sid: Option<String>,
}

/// The registration key: (identity, endpoint, binding type).
type Key = (String, String, String);

#[derive(Clone, Debug, PartialEq, Eq)]
struct BindingM {
    service: usize,
    address: String,
    sid: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct World {
    /// identity → user
    users: BTreeMap<String, UserM>,
    bindings: BTreeMap<Key, BindingM>,
}

fn same_sid(model: &Option<String>, observed: &Option<String>) -> bool {
    model.is_none() || model == observed
}

impl World {
    /// Whether `observed` is this model, a SID the model does not know yet matching any.
    fn agrees(&self, observed: &World) -> bool {
        self.users.len() == observed.users.len()
            && self.bindings.len() == observed.bindings.len()
            && self.users.iter().all(|(identity, u)| {
                observed
                    .users
                    .get(identity)
                    .is_some_and(|o| o.service == u.service && same_sid(&u.sid, &o.sid))
            })
            && self.bindings.iter().all(|(key, b)| {
                observed.bindings.get(key).is_some_and(|o| {
                    o.service == b.service && o.address == b.address && same_sid(&b.sid, &o.sid)
                })
            })
    }

    /// The part of the world whose identities start with `prefix`.
    fn owned_by(&self, prefix: &str) -> World {
        World {
            users: self
                .users
                .iter()
                .filter(|(identity, _)| identity.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            bindings: self
                .bindings
                .iter()
                .filter(|(key, _)| key.0.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The binding with this SID, if the model holds it.
    fn binding_by_sid(&self, sid: &str) -> Option<(&Key, &BindingM)> {
        self.bindings
            .iter()
            .find(|(_, b)| b.sid.as_deref() == Some(sid))
    }

    /// The SIDs of bindings here and not in `next`, with their identity and service.
    fn removed_in(&self, next: &World) -> Vec<(String, String, usize)> {
        self.bindings
            .iter()
            .filter(|(key, b)| next.bindings.get(*key).map(|n| &n.sid) != Some(&b.sid))
            .filter_map(|(key, b)| Some((b.sid.clone()?, key.0.clone(), b.service)))
            .collect()
    }
}

/// How `observed` differs from `model`; each line names what an acknowledged answer promised
/// and what is there.
fn differences(model: &World, observed: &World) -> Vec<String> {
    let mut out = Vec::new();
    for (identity, u) in &model.users {
        match observed.users.get(identity) {
            None => out.push(format!("user {identity} ({:?}) is missing", u.sid)),
            Some(o) if o.service != u.service || !same_sid(&u.sid, &o.sid) => {
                out.push(format!("user {identity}: expected {u:?}, found {o:?}"))
            }
            Some(_) => {}
        }
    }
    for (identity, o) in &observed.users {
        if !model.users.contains_key(identity) {
            out.push(format!("user {identity} ({:?}) should not exist", o.sid));
        }
    }
    for (key, b) in &model.bindings {
        match observed.bindings.get(key) {
            None => out.push(format!("binding {key:?} ({b:?}) is missing")),
            Some(o)
                if o.service != b.service
                    || o.address != b.address
                    || !same_sid(&b.sid, &o.sid) =>
            {
                out.push(format!("binding {key:?}: expected {b:?}, found {o:?}"))
            }
            Some(_) => {}
        }
    }
    for (key, o) in &observed.bindings {
        if !model.bindings.contains_key(key) {
            out.push(format!("binding {key:?} ({o:?}) should not exist"));
        }
    }
    out
}

/// How many things the model holds (as acknowledged) that `observed` lacks or holds otherwise,
/// counting only those that `untouched` (the model with a request in doubt applied) agrees on.
fn lost(model: &World, untouched: &World, observed: &World) -> usize {
    let users = model
        .users
        .iter()
        .filter(|(identity, u)| untouched.users.get(*identity) == Some(*u))
        .filter(|(identity, u)| {
            observed
                .users
                .get(*identity)
                .is_none_or(|o| o.service != u.service || !same_sid(&u.sid, &o.sid))
        })
        .count();
    let bindings = model
        .bindings
        .iter()
        .filter(|(key, b)| untouched.bindings.get(*key) == Some(*b))
        .filter(|(key, b)| {
            observed.bindings.get(*key).is_none_or(|o| {
                o.service != b.service || o.address != b.address || !same_sid(&b.sid, &o.sid)
            })
        })
        .count();
    users + bindings
}

// ---- Requests ----

#[derive(Clone, Debug)]
enum Op {
    /// POST …/Users/{identity or sid}/Bindings
    Register {
        identity: String,
        service: usize,
        user_path: String,
        endpoint: String,
        binding_type: String,
        address: String,
    },
    /// DELETE …/Bindings/{sid}, or …/Users/{identity}/Bindings/{sid}
    DeleteBinding {
        service: usize,
        sid: String,
        via_user: Option<String>,
    },
    /// DELETE …/Users/{identity or sid}
    DeleteUser {
        identity: String,
        service: usize,
        user_path: String,
    },
    /// POST …/Users with Identity
    CreateUser { identity: String, service: usize },
}

/// What a request must answer given the model, the model after it, and how many events it
/// appends.
struct Predicted {
    status: u16,
    after: World,
    events: usize,
}

fn refused(world: &World, status: u16) -> Predicted {
    Predicted {
        status,
        after: world.clone(),
        events: 0,
    }
}

/// Bindery's rules (CONTRACT.md §3, §4.1) applied to the model.
fn predict(world: &World, op: &Op) -> Predicted {
    let mut after = world.clone();
    match op {
        Op::Register {
            identity,
            service,
            user_path,
            endpoint,
            binding_type,
            address,
        } => {
            let user = world.users.get(identity);
            if user.is_none() && user_path != identity {
                return refused(world, 404);
            }
            let key = (identity.clone(), endpoint.clone(), binding_type.clone());
            let existing = world.bindings.get(&key);
            let holder = world
                .bindings
                .iter()
                .find(|(k, b)| {
                    b.service == *service
                        && k.2 == *binding_type
                        && b.address == *address
                        && **k != key
                })
                .map(|(k, _)| k.clone());
            if existing.is_none() {
                let held = world.bindings.keys().filter(|k| k.0 == *identity).count();
                let freed = usize::from(holder.as_ref().is_some_and(|h| h.0 == *identity));
                if held - freed >= PER_USER_LIMIT {
                    return refused(world, 409);
                }
            }
            let mut events = 1;
            if user.is_none() {
                after.users.insert(
                    identity.clone(),
                    UserM {
                        service: *service,
                        sid: None,
                    },
                );
                events += 1;
            }
            if let Some(holder) = holder {
                after.bindings.remove(&holder);
                events += 1;
            }
            let status = match existing {
                Some(b) => {
                    after.bindings.insert(
                        key,
                        BindingM {
                            address: address.clone(),
                            ..b.clone()
                        },
                    );
                    200
                }
                None => {
                    after.bindings.insert(
                        key,
                        BindingM {
                            service: *service,
                            address: address.clone(),
                            sid: None,
                        },
                    );
                    201
                }
            };
            Predicted {
                status,
                after,
                events,
            }
        }
        Op::DeleteBinding { sid, via_user, .. } => {
            let found = world
                .binding_by_sid(sid)
                .filter(|(key, _)| via_user.as_ref().is_none_or(|u| *u == key.0))
                .map(|(key, _)| key.clone());
            match found {
                Some(key) => {
                    after.bindings.remove(&key);
                    Predicted {
                        status: 204,
                        after,
                        events: 1,
                    }
                }
                None => refused(world, 404),
            }
        }
        Op::DeleteUser { identity, .. } => {
            if !world.users.contains_key(identity) {
                return refused(world, 404);
            }
            after.users.remove(identity);
            after.bindings.retain(|key, _| key.0 != *identity);
            let removed = world.bindings.len() - after.bindings.len();
            Predicted {
                status: 204,
                after,
                events: 1 + removed,
            }
        }
        Op::CreateUser { identity, service } => {
            if world.users.contains_key(identity) {
                return refused(world, 409);
            }
            after.users.insert(
                identity.clone(),
                UserM {
                    service: *service,
                    sid: None,
                },
            );
            Predicted {
                status: 201,
                after,
                events: 1,
            }
        }
    }
}

/// What came back.
enum Answer {
    /// A complete answer with a status below 500.
    Status(u16, String),
    /// No answer, part of one, or a 5xx: the request may or may not have taken effect.
    Doubt(String),
}

fn send(
    agent: &ureq::Agent,
    base: &str,
    auth: &str,
    services: &[String],
    op: &Op,
    rid: &str,
) -> Answer {
    let services_path = |s: usize| format!("{base}/v2/Services/{}", services[s]);
    let (method, url, form): (&str, String, Vec<(&str, &str)>) = match op {
        Op::Register {
            service,
            user_path,
            endpoint,
            binding_type,
            address,
            ..
        } => (
            "POST",
            format!(
                "{}/Users/{}/Bindings",
                services_path(*service),
                segment(user_path)
            ),
            vec![
                ("BindingType", binding_type.as_str()),
                ("Address", address.as_str()),
                ("Endpoint", endpoint.as_str()),
            ],
        ),
        Op::DeleteBinding {
            service,
            sid,
            via_user,
        } => (
            "DELETE",
            match via_user {
                Some(user) => format!(
                    "{}/Users/{}/Bindings/{sid}",
                    services_path(*service),
                    segment(user)
                ),
                None => format!("{}/Bindings/{sid}", services_path(*service)),
            },
            Vec::new(),
        ),
        Op::DeleteUser {
            service, user_path, ..
        } => (
            "DELETE",
            format!("{}/Users/{}", services_path(*service), segment(user_path)),
            Vec::new(),
        ),
        Op::CreateUser { identity, service } => (
            "POST",
            format!("{}/Users", services_path(*service)),
            vec![("Identity", identity.as_str())],
        ),
    };
    let request = agent
        .request(method, &url)
        .set("Authorization", auth)
        .set("X-Request-Id", rid);
    let result = if method == "POST" {
        request.send_form(&form)
    } else {
        request.call()
    };
    match result {
        Ok(response) => {
            let status = response.status();
            match response.into_string() {
                Ok(text) => Answer::Status(status, text),
                Err(e) => Answer::Doubt(format!("status {status}, then the body was cut: {e}")),
            }
        }
        Err(ureq::Error::Status(status, response)) if status < 500 => {
            Answer::Status(status, response.into_string().unwrap_or_default())
        }
        Err(ureq::Error::Status(status, response)) => Answer::Doubt(format!(
            "status {status}: {}",
            response.into_string().unwrap_or_default()
        )),
        Err(ureq::Error::Transport(e)) => Answer::Doubt(e.to_string()),
    }
}

// ---- One client ----

/// Client `client`'s `k`th identity and the service it lives in.
fn identity_of(client: usize, k: usize) -> (String, usize) {
    (format!("c{client}-u{k}"), k % SERVICES)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Acknowledged,
    Refused,
    InDoubt,
}

/// A request sent this cycle: its id, how many events it appends if it takes effect, and
/// what its sender heard.
struct Sent {
    rid: String,
    events: usize,
    fate: Fate,
}

struct Doubt {
    op: Op,
    rid: String,
    why: String,
    after: World,
    events: usize,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    acknowledged: u64,
    refused: u64,
    in_doubt: u64,
    applied: u64,
    not_applied: u64,
    server_errors: u64,
    lost: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.acknowledged += other.acknowledged;
        self.refused += other.refused;
        self.in_doubt += other.in_doubt;
        self.applied += other.applied;
        self.not_applied += other.not_applied;
        self.server_errors += other.server_errors;
        self.lost += other.lost;
    }
}

struct Client {
    id: usize,
    rng: Rng,
    /// What this client's acknowledged requests (and observed requests in doubt) left.
    world: World,
    /// Bindings this client saw go, for deletes that must answer 404.
    gone: Vec<(String, String, usize)>,
    counter: u64,
    sent: Vec<Sent>,
    doubt: Option<Doubt>,
    counts: Counts,
    violations: Vec<String>,
    /// The latest requests and answers, for a failure report.
    recent: Vec<String>,
}

impl Client {
    fn new(id: usize, seed: u64) -> Client {
        Client {
            id,
            rng: Rng(seed ^ (id as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F)),
            world: World::default(),
            gone: Vec::new(),
            counter: 0,
            sent: Vec::new(),
            doubt: None,
            counts: Counts::default(),
            violations: Vec::new(),
            recent: Vec::new(),
        }
    }

    fn prefix(&self) -> String {
        format!("c{}-", self.id)
    }

    fn fresh(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn note(&mut self, line: String) {
        self.recent.push(line);
        if self.recent.len() > 40 {
            self.recent.remove(0);
        }
    }

    /// The path segment for `identity`: its SID now and then, when the model knows it.
    fn user_path(&mut self, identity: &str) -> String {
        match self.world.users.get(identity).and_then(|u| u.sid.clone()) {
            Some(sid) if self.rng.chance(30) => sid,
            _ => identity.to_owned(),
        }
    }

    fn random_binding(&mut self) -> Option<(Key, BindingM)> {
        if self.world.bindings.is_empty() {
            return None;
        }
        let n = self.rng.below(self.world.bindings.len());
        self.world
            .bindings
            .iter()
            .nth(n)
            .map(|(k, b)| (k.clone(), b.clone()))
    }

    /// The address of another binding of this service and type, if any.
    fn address_to_move(&mut self, service: usize, binding_type: &str, not: &Key) -> Option<String> {
        let candidates: Vec<String> = self
            .world
            .bindings
            .iter()
            .filter(|(k, b)| b.service == service && k.2 == binding_type && *k != not)
            .map(|(_, b)| b.address.clone())
            .collect();
        (!candidates.is_empty()).then(|| candidates[self.rng.below(candidates.len())].clone())
    }

    fn register_new(&mut self) -> Op {
        let n = self.fresh();
        let endpoint = format!("c{}-device-{n}", self.id);
        let mut address = format!("c{}-token-{n:06x}", self.id);
        let (identity, service, binding_type);
        match self.random_binding().filter(|_| self.rng.chance(15)) {
            // A move: the address another binding holds goes to a new device.
            Some((key, b)) => {
                service = b.service;
                binding_type = key.2.clone();
                address = b.address;
                let same_service: Vec<usize> = (0..USERS_PER_CLIENT)
                    .filter(|k| k % SERVICES == service)
                    .collect();
                identity = identity_of(self.id, same_service[self.rng.below(same_service.len())]).0;
            }
            None => {
                (identity, service) = identity_of(self.id, self.rng.below(USERS_PER_CLIENT));
                binding_type = BINDING_TYPES[self.rng.below(BINDING_TYPES.len())].to_owned();
            }
        }
        let user_path = self.user_path(&identity);
        Op::Register {
            identity,
            service,
            user_path,
            endpoint,
            binding_type,
            address,
        }
    }

    fn next_op(&mut self) -> Op {
        let roll = self.rng.below(100);
        match roll {
            0..=44 => self.register_new(),
            45..=64 => {
                let Some((key, b)) = self.random_binding() else {
                    return self.register_new();
                };
                let n = self.fresh();
                let address = match self.rng.below(100) {
                    0..=59 => format!("c{}-token-{n:06x}", self.id),
                    60..=84 => b.address.clone(),
                    _ => self
                        .address_to_move(b.service, &key.2, &key)
                        .unwrap_or_else(|| format!("c{}-token-{n:06x}", self.id)),
                };
                let user_path = self.user_path(&key.0);
                Op::Register {
                    identity: key.0,
                    service: b.service,
                    user_path,
                    endpoint: key.1,
                    binding_type: key.2,
                    address,
                }
            }
            65..=79 => {
                let target = if self.rng.chance(15) || self.world.bindings.is_empty() {
                    (!self.gone.is_empty())
                        .then(|| self.gone[self.rng.below(self.gone.len())].clone())
                } else {
                    self.random_binding()
                        .and_then(|(key, b)| Some((b.sid?, key.0, b.service)))
                };
                let Some((sid, identity, service)) = target else {
                    return self.register_new();
                };
                let via_user = self.rng.chance(50).then_some(identity);
                Op::DeleteBinding {
                    service,
                    sid,
                    via_user,
                }
            }
            80..=89 => {
                let (identity, service) = identity_of(self.id, self.rng.below(USERS_PER_CLIENT));
                let user_path = self.user_path(&identity);
                Op::DeleteUser {
                    identity,
                    service,
                    user_path,
                }
            }
            _ => {
                let (identity, service) = identity_of(self.id, self.rng.below(USERS_PER_CLIENT));
                Op::CreateUser { identity, service }
            }
        }
    }

    /// Sends requests until `stop`, or until one is in doubt (the server is gone then).
    fn run(&mut self, base: &str, auth: &str, services: &[String], stop: &AtomicBool) {
        // Half the clients keep their connection alive, half open one per request.
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .max_idle_connections(if self.id.is_multiple_of(2) { 4 } else { 0 })
            .build();
        while !stop.load(Ordering::SeqCst) && self.violations.is_empty() {
            let op = self.next_op();
            let n = self.fresh();
            let rid = format!("crash-c{}-r{n}", self.id);
            let predicted = predict(&self.world, &op);
            let answer = send(&agent, base, auth, services, &op, &rid);
            match answer {
                Answer::Doubt(why) => {
                    self.note(format!("{rid} {op:?} -> in doubt: {why}"));
                    self.counts.in_doubt += 1;
                    if why.starts_with("status 5") {
                        self.counts.server_errors += 1;
                    }
                    self.sent.push(Sent {
                        rid: rid.clone(),
                        events: predicted.events,
                        fate: Fate::InDoubt,
                    });
                    self.doubt = Some(Doubt {
                        op,
                        rid,
                        why,
                        after: predicted.after,
                        events: predicted.events,
                    });
                    return;
                }
                Answer::Status(status, text) => {
                    self.note(format!("{rid} {op:?} -> {status}"));
                    let fate = if (200..300).contains(&status) {
                        Fate::Acknowledged
                    } else {
                        Fate::Refused
                    };
                    self.sent.push(Sent {
                        rid: rid.clone(),
                        events: predicted.events,
                        fate,
                    });
                    if status != predicted.status {
                        // An acknowledged entity that answers as missing was lost.
                        if (predicted.status == 204 && status == 404)
                            || (predicted.status == 200 && status == 201)
                        {
                            self.counts.lost += 1;
                        }
                        self.violations.push(format!(
                            "{rid} {op:?}: answered {status} where the acknowledged history \
                             predicts {}: {text}",
                            predicted.status
                        ));
                        return;
                    }
                    if fate == Fate::Refused {
                        self.counts.refused += 1;
                        continue;
                    }
                    self.counts.acknowledged += 1;
                    let mut after = predicted.after;
                    if let Err(e) = fill_sids(&mut after, &op, &text) {
                        self.violations
                            .push(format!("{rid} {op:?} -> {status}: {e}"));
                        return;
                    }
                    self.adopt(after);
                }
            }
        }
    }

    /// Takes `next` as the model, remembering the bindings that left it.
    fn adopt(&mut self, next: World) {
        self.gone.extend(self.world.removed_in(&next));
        if self.gone.len() > 64 {
            let extra = self.gone.len() - 64;
            self.gone.drain(..extra);
        }
        self.world = next;
    }
}

/// Puts the SIDs an acknowledged answer names into the model, checking those it knew.
fn fill_sids(after: &mut World, op: &Op, text: &str) -> Result<(), String> {
    let body = || serde_json::from_str::<Value>(text).map_err(|e| format!("no JSON ({e}): {text}"));
    let field = |body: &Value, name: &str| -> Result<String, String> {
        body[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no {name} in {body}"))
    };
    let settle = |slot: &mut Option<String>, found: String, what: &str| match slot {
        Some(known) if *known != found => Err(format!("{what} was {known}, answered {found}")),
        _ => {
            *slot = Some(found);
            Ok(())
        }
    };
    match op {
        Op::Register {
            identity,
            endpoint,
            binding_type,
            ..
        } => {
            let body = body()?;
            for (name, want) in [
                ("identity", identity),
                ("endpoint", endpoint),
                ("binding_type", binding_type),
            ] {
                if field(&body, name)? != *want {
                    return Err(format!("{name} is not {want}: {body}"));
                }
            }
            let key = (identity.clone(), endpoint.clone(), binding_type.clone());
            let binding = after.bindings.get_mut(&key).ok_or("not in the model")?;
            settle(&mut binding.sid, field(&body, "sid")?, "binding sid")?;
            let user = after
                .users
                .get_mut(identity)
                .ok_or("no user in the model")?;
            settle(&mut user.sid, field(&body, "user_sid")?, "user sid")
        }
        Op::CreateUser { identity, .. } => {
            let body = body()?;
            let user = after.users.get_mut(identity).ok_or("not in the model")?;
            settle(&mut user.sid, field(&body, "sid")?, "user sid")
        }
        Op::DeleteBinding { .. } | Op::DeleteUser { .. } => {
            if text.is_empty() {
                Ok(())
            } else {
                Err(format!("a 204 with a body: {text}"))
            }
        }
    }
}

// ---- The server ----

/// `bindery serve` from `binary` on `dir` with the harness's per-user limit, its stderr kept;
/// on a fresh dir, `account` is `None` and the first account it writes is the app's.
fn start(binary: &Path, dir: TempDir, account: Option<Credentials>) -> (TestApp, ServerLog) {
    let limit = PER_USER_LIMIT.to_string();
    TestApp::spawn_logged_from(
        binary,
        dir,
        &[("BINDERY_BINDINGS__PER_USER_LIMIT", &limit)],
        account,
    )
}

/// The last lines the server wrote on stderr, for a failure's report.
fn log_tail(log: &ServerLog) -> String {
    let lines = log.lines();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// `bindery verify --data-dir DIR` must exit 0.
fn verify(binary: &Path, dir: &Path) -> Result<(), String> {
    let output = command(binary)
        .arg("verify")
        .arg("--data-dir")
        .arg(dir)
        .output()
        .expect("bindery verify runs");
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "bindery verify failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

// ---- The database, read with the sqlite3 CLI while the server is down ----

/// The rows of `query`, read-only (a crashed database keeps its WAL for the server's own
/// recovery).
fn sql(db: &Path, query: &str) -> Vec<Value> {
    let output = Command::new("sqlite3")
        .arg("-readonly")
        .arg("-json")
        .arg(db)
        .arg(query)
        .output()
        .expect("the sqlite3 CLI runs (apt-get install sqlite3)");
    assert!(
        output.status.success(),
        "sqlite3 {query}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    if text.trim().is_empty() {
        return Vec::new();
    }
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("sqlite3 {query}: {e}: {text}"))
}

fn int(row: &Value, name: &str) -> i64 {
    row[name]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer {name} in {row}"))
}

fn text(row: &Value, name: &str) -> String {
    row[name]
        .as_str()
        .unwrap_or_else(|| panic!("no text {name} in {row}"))
        .to_owned()
}

/// What the log held at the last check: its last position and a fingerprint of it.
#[derive(Default, Clone, PartialEq, Debug)]
struct LogMark {
    last: i64,
    fingerprint: String,
}

/// A SHA-256 of every column of every event up to `up_to`, in log order: any change to one of
/// them, even one that keeps every length, changes it.
fn fingerprint(db: &Path, up_to: i64) -> String {
    use sha2::{Digest, Sha256};
    let rows = sql(
        db,
        &format!("SELECT * FROM events WHERE position <= {up_to} ORDER BY position"),
    );
    let mut hash = Sha256::new();
    for row in &rows {
        // One row a line; serde_json writes an object's keys in order.
        hash.update(row.to_string().as_bytes());
        hash.update(b"\n");
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The log has no gap, each stream's versions run 1..k, the checkpoint is at the end, what
/// the log held at `before` is unchanged, and no binding outlives its user.
fn check_log(db: &Path, before: &LogMark, violations: &mut Vec<String>) -> LogMark {
    let row = &sql(
        db,
        "SELECT count(*) AS n, coalesce(min(position), 0) AS lo, \
         coalesce(max(position), 0) AS hi FROM events",
    )[0];
    let (n, lo, hi) = (int(row, "n"), int(row, "lo"), int(row, "hi"));
    if n != hi || (n > 0 && lo != 1) {
        violations.push(format!(
            "the log has a gap: {n} events at positions {lo}..={hi}"
        ));
    }
    let streams = sql(
        db,
        "SELECT stream, count(*) AS n, min(stream_version) AS lo, max(stream_version) AS hi \
         FROM events GROUP BY stream HAVING count(*) != max(stream_version) \
         OR min(stream_version) != 1 LIMIT 10",
    );
    if !streams.is_empty() {
        violations.push(format!("streams whose versions are not 1..k: {streams:?}"));
    }
    let checkpoint = int(&sql(db, "SELECT position FROM checkpoint")[0], "position");
    if checkpoint != hi {
        violations.push(format!(
            "the projection checkpoint is at {checkpoint}, the log ends at {hi}"
        ));
    }
    if hi < before.last {
        violations.push(format!(
            "the log shrank: it ended at {} and now ends at {hi}",
            before.last
        ));
    } else if fingerprint(db, before.last) != before.fingerprint {
        violations.push(format!(
            "the log up to position {} changed since the last check",
            before.last
        ));
    }
    let orphans = sql(
        db,
        "SELECT b.sid, b.user_sid, b.identity FROM bindings b LEFT JOIN users u \
         ON u.sid = b.user_sid WHERE u.sid IS NULL OR u.identity != b.identity \
         OR u.service_sid != b.service_sid LIMIT 10",
    );
    if !orphans.is_empty() {
        violations.push(format!("bindings without their user: {orphans:?}"));
    }
    LogMark {
        last: hi,
        fingerprint: fingerprint(db, hi),
    }
}

/// Every user and binding of the services, as stored.
fn observe_db(db: &Path, services: &[String]) -> World {
    let index = |sid: &str| {
        services
            .iter()
            .position(|s| s == sid)
            .unwrap_or_else(|| panic!("a row of an unknown service {sid}"))
    };
    let list = services
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut world = World::default();
    for row in sql(
        db,
        &format!("SELECT identity, sid, service_sid FROM users WHERE service_sid IN ({list})"),
    ) {
        world.users.insert(
            text(&row, "identity"),
            UserM {
                service: index(&text(&row, "service_sid")),
                sid: Some(text(&row, "sid")),
            },
        );
    }
    for row in sql(
        db,
        &format!(
            "SELECT sid, identity, endpoint, binding_type, address, service_sid FROM bindings \
             WHERE service_sid IN ({list})"
        ),
    ) {
        world.bindings.insert(
            (
                text(&row, "identity"),
                text(&row, "endpoint"),
                text(&row, "binding_type"),
            ),
            BindingM {
                service: index(&text(&row, "service_sid")),
                address: text(&row, "address"),
                sid: Some(text(&row, "sid")),
            },
        );
    }
    world
}

/// How many events each request id of this harness appended after `after`.
fn events_by_request(db: &Path, after: i64) -> BTreeMap<String, usize> {
    sql(
        db,
        &format!(
            "SELECT request_id, count(*) AS n FROM events WHERE position > {after} \
             AND request_id LIKE 'crash-%' GROUP BY request_id"
        ),
    )
    .iter()
    .map(|row| (text(row, "request_id"), int(row, "n") as usize))
    .collect()
}

// ---- Through the API, once the server is back ----

fn walk(agent: &ureq::Agent, auth: &str, base: &str, path: &str, key: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut url = format!("{base}{path}");
    loop {
        let page: Value = agent
            .get(&url)
            .set("Authorization", auth)
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .into_json()
            .expect("a JSON page");
        items.extend(page[key].as_array().expect("a list").iter().cloned());
        match page["meta"]["next_page_url"].as_str() {
            Some(next) => url = next.to_owned(),
            None => return items,
        }
    }
}

/// The served users and bindings must be the model's, SIDs included.
fn check_api(server: &TestApp, auth: &str, services: &[String], model: &World) -> Vec<String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let mut served_users = BTreeSet::new();
    let mut served_bindings = BTreeSet::new();
    for (index, service) in services.iter().enumerate() {
        for user in walk(
            &agent,
            auth,
            &server.base_url,
            &format!("/v2/Services/{service}/Users?PageSize=100"),
            "users",
        ) {
            served_users.insert((index, text(&user, "identity"), text(&user, "sid")));
        }
        for binding in walk(
            &agent,
            auth,
            &server.base_url,
            &format!("/v2/Services/{service}/Bindings?PageSize=50"),
            "bindings",
        ) {
            served_bindings.insert((
                index,
                text(&binding, "identity"),
                text(&binding, "endpoint"),
                text(&binding, "binding_type"),
                text(&binding, "sid"),
            ));
        }
    }
    let expected_users: BTreeSet<_> = model
        .users
        .iter()
        .map(|(identity, u)| {
            (
                u.service,
                identity.clone(),
                u.sid.clone().unwrap_or_default(),
            )
        })
        .collect();
    let expected_bindings: BTreeSet<_> = model
        .bindings
        .iter()
        .map(|((identity, endpoint, kind), b)| {
            (
                b.service,
                identity.clone(),
                endpoint.clone(),
                kind.clone(),
                b.sid.clone().unwrap_or_default(),
            )
        })
        .collect();
    let mut out = Vec::new();
    for missing in expected_users.difference(&served_users) {
        out.push(format!("the API does not serve user {missing:?}"));
    }
    for extra in served_users.difference(&expected_users) {
        out.push(format!("the API serves an unexpected user {extra:?}"));
    }
    for missing in expected_bindings.difference(&served_bindings) {
        out.push(format!("the API does not serve binding {missing:?}"));
    }
    for extra in served_bindings.difference(&expected_bindings) {
        out.push(format!("the API serves an unexpected binding {extra:?}"));
    }
    out
}

// ---- The run ----

struct Outcome {
    cycles: usize,
    counts: Counts,
    events: i64,
    took: Duration,
}

impl Outcome {
    fn summary(&self, settings: &Settings) -> String {
        let c = &self.counts;
        format!(
            "crash soak: {} cycles, {} requests acknowledged, {} lost, verify ok \
             ({} refused as predicted, {} in doubt: {} applied, {} not; {} server errors; \
             {} events in the log; {} clients; seed {}; {:.1} s)",
            self.cycles,
            c.acknowledged,
            c.lost,
            c.refused,
            c.in_doubt,
            c.applied,
            c.not_applied,
            c.server_errors,
            self.events,
            settings.clients,
            settings.seed,
            self.took.as_secs_f64()
        )
    }
}

/// Fails the test with everything needed to understand `violations`.
fn fail(
    cycle: usize,
    settings: &Settings,
    clients: &[Client],
    violations: &[String],
    log: &str,
) -> ! {
    let mut report = format!(
        "crash cycle {cycle} (seed {}): {} violation(s):\n  {}\n",
        settings.seed,
        violations.len(),
        violations.join("\n  ")
    );
    for client in clients {
        report.push_str(&format!(
            "client {} latest requests:\n  {}\n",
            client.id,
            client.recent.join("\n  ")
        ));
    }
    if !log.is_empty() {
        report.push_str(&format!("server log (tail):\n{log}\n"));
    }
    panic!("{report}");
}

fn run(settings: &Settings) -> Outcome {
    let started = Instant::now();
    let mut dir = TempDir::new().expect("temp dir");
    let db = dir.path().join("bindery.db");
    let mut rng = Rng(settings.seed);
    let mut clients: Vec<Client> = (0..settings.clients)
        .map(|id| Client::new(id, settings.seed))
        .collect();
    let mut account: Option<Credentials> = None;
    let mut services: Vec<String> = Vec::new();
    let mut mark = LogMark::default();
    let mut totals = Counts::default();

    for cycle in 1..=settings.cycles {
        let (mut server, log) = start(&settings.binary, dir, account.take());
        account = Some(server.account.clone());
        let auth = basic(&server.account);
        if services.is_empty() {
            let agent = ureq::agent();
            for n in 0..SERVICES {
                let body: Value = agent
                    .post(&server.url("/v2/Services"))
                    .set("Authorization", &auth)
                    .send_form(&[("FriendlyName", &format!("crash {n}"))])
                    .expect("a service")
                    .into_json()
                    .expect("a JSON body");
                services.push(text(&body, "sid"));
            }
            mark = LogMark {
                last: int(&sql(&db, "SELECT max(position) AS p FROM events")[0], "p"),
                fingerprint: String::new(),
            };
            mark.fingerprint = fingerprint(&db, mark.last);
        } else {
            let model = merged(&clients);
            let violations = check_api(&server, &auth, &services, &model);
            if !violations.is_empty() {
                fail(cycle, settings, &clients, &violations, &log_tail(&log));
            }
        }

        // Load, and a SIGKILL at a random moment in it.
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = clients
            .drain(..)
            .map(|mut client| {
                let (base, auth, services, stop) = (
                    server.base_url.clone(),
                    auth.clone(),
                    services.clone(),
                    stop.clone(),
                );
                client.sent.clear();
                client.doubt = None;
                std::thread::spawn(move || {
                    client.run(&base, &auth, &services, &stop);
                    client
                })
            })
            .collect();
        let delay = rng.between(KILL_AFTER_MS);
        std::thread::sleep(Duration::from_millis(delay));
        server.kill();
        stop.store(true, Ordering::SeqCst);
        clients = workers
            .into_iter()
            .map(|w| w.join().expect("a client thread"))
            .collect();
        // Reaped; the data dir is back for the next start.
        (dir, _) = server.into_dir_and_account();
        let log = log_tail(&log);

        // The server is down: the crashed database as the next start will find it.
        let mut violations: Vec<String> = clients
            .iter()
            .flat_map(|c| c.violations.iter().cloned())
            .collect();
        let events = events_by_request(&db, mark.last);
        mark = check_log(&db, &mark, &mut violations);
        if let Err(e) = verify(&settings.binary, dir.path()) {
            violations.push(e);
        }
        let observed = observe_db(&db, &services);
        let mut cycle_counts = Counts::default();
        for client in &mut clients {
            reconcile(client, &events, &observed, &mut violations);
            cycle_counts.add(&client.counts);
            totals.add(&client.counts);
            client.counts = Counts::default();
        }
        let unknown: Vec<&String> = events
            .keys()
            .filter(|rid| {
                !clients
                    .iter()
                    .any(|c| c.sent.iter().any(|s| &s.rid == *rid))
            })
            .collect();
        if !unknown.is_empty() {
            violations.push(format!("events under request ids never sent: {unknown:?}"));
        }
        eprintln!(
            "crash cycle {cycle}: killed after {delay} ms; {} acknowledged, {} refused, \
             {} in doubt ({} applied); log at {}",
            cycle_counts.acknowledged,
            cycle_counts.refused,
            cycle_counts.in_doubt,
            cycle_counts.applied,
            mark.last
        );
        if !violations.is_empty() || totals.lost > 0 {
            fail(cycle, settings, &clients, &violations, &log);
        }
    }

    // The end: start once more, check what is served, stop cleanly and check again.
    let (mut server, log) = start(&settings.binary, dir, account);
    let auth = basic(&server.account);
    let mut violations = check_api(&server, &auth, &services, &merged(&clients));
    server.terminate();
    match server.wait_for_exit(PATIENCE) {
        Some(status) if status.success() => {}
        Some(status) => violations.push(format!("after SIGTERM bindery exited with {status}")),
        None => violations.push(format!("bindery still ran {PATIENCE:?} after SIGTERM")),
    }
    let (dir, _) = server.into_dir_and_account();
    let log = log_tail(&log);
    mark = check_log(&db, &mark, &mut violations);
    if let Err(e) = verify(&settings.binary, dir.path()) {
        violations.push(e);
    }
    let observed = observe_db(&db, &services);
    violations.extend(differences(&merged(&clients), &observed));
    if !violations.is_empty() {
        fail(settings.cycles + 1, settings, &clients, &violations, &log);
    }
    assert_eq!(totals.lost, 0);
    Outcome {
        cycles: settings.cycles,
        counts: totals,
        events: mark.last,
        took: started.elapsed(),
    }
}

/// Every client's model, together.
fn merged(clients: &[Client]) -> World {
    let mut world = World::default();
    for client in clients {
        world.users.extend(client.world.users.clone());
        world.bindings.extend(client.world.bindings.clone());
    }
    world
}

/// Checks one client's requests of the cycle against the log, and its model against the
/// database; a request in doubt counts as applied when its events are all there, as not
/// applied when none is, and as half-applied otherwise.
fn reconcile(
    client: &mut Client,
    events: &BTreeMap<String, usize>,
    observed: &World,
    violations: &mut Vec<String>,
) {
    for sent in &client.sent {
        let found = events.get(&sent.rid).copied().unwrap_or(0);
        let fine = match sent.fate {
            Fate::Acknowledged => found == sent.events,
            Fate::Refused => found == 0,
            Fate::InDoubt => found == 0 || found == sent.events,
        };
        if !fine {
            if sent.fate == Fate::Acknowledged && found < sent.events {
                client.counts.lost += 1;
            }
            violations.push(format!(
                "{} ({:?}) left {found} event(s) in the log; it appends {} when it takes effect",
                sent.rid, sent.fate, sent.events
            ));
        }
    }
    let observed = observed.owned_by(&client.prefix());
    let before = client.world.clone();
    let expected = match &client.doubt {
        None => before.clone(),
        Some(doubt) => {
            let applied = doubt.events > 0 && events.get(&doubt.rid).copied().unwrap_or(0) > 0;
            if applied {
                client.counts.applied += 1;
                doubt.after.clone()
            } else {
                client.counts.not_applied += 1;
                before.clone()
            }
        }
    };
    if expected.agrees(&observed) {
        client.adopt(observed);
        return;
    }
    let untouched = client
        .doubt
        .as_ref()
        .map(|d| d.after.clone())
        .unwrap_or_else(|| before.clone());
    client.counts.lost += lost(&before, &untouched, &observed) as u64;
    violations.push(format!(
        "client {}: the database is not what its acknowledged requests{} left:\n    {}",
        client.id,
        match &client.doubt {
            Some(d) => format!(
                " and its request in doubt ({} {:?}: {})",
                d.rid, d.op, d.why
            ),
            None => String::new(),
        },
        differences(&expected, &observed).join("\n    ")
    ));
}
