//! The APNs stand-in: `POST /3/device/{token}` over HTTP/2 and TLS, with token auth (an ES256
//! provider token in `authorization`) or certificate auth (a client certificate from the test
//! CA), answering as Apple documents and as each device token's script says.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::ECDSA_P256_SHA256_FIXED;
use rustls::server::WebPkiClientVerifier;
use serde_json::{json, Value};

use crate::ca::{uid_of, TestCa};
use crate::jwt::{now_secs, DecodedJwt};
use crate::keys::{ApnsKey, ApnsPublicKey};
use crate::record::{Received, Stats};
use crate::script::Script;
pub use crate::server::ServerSettings;
use crate::server::{self, json_reply, Conn, Counters, Handler, Reply, Request, Server};

/// Apple's limit on a provider token's age.
const TOKEN_LIFETIME_SECS: i64 = 3600;
/// How far in the future an `iat` may be before it counts as a clock error, not rounding.
const CLOCK_SKEW_SECS: i64 = 5;
/// Apple's payload limit for a regular push.
const MAX_PAYLOAD: usize = 4096;
const PUSH_TYPES: &[&str] = &[
    "alert",
    "background",
    "location",
    "voip",
    "complication",
    "fileprovider",
    "mdm",
    "liveactivity",
    "pushtotalk",
    "widgets",
];

/// How the stand-in authenticates providers.
#[derive(Clone, Debug)]
pub enum ApnsAuth {
    /// Provider tokens signed with this key: the JWT's header `kid` must be `key_id` and its
    /// `iss` claim `team_id`.
    Token {
        key: ApnsPublicKey,
        key_id: String,
        team_id: String,
    },
    /// A client certificate issued by the test CA, on every connection.
    Certificate,
}

impl ApnsAuth {
    pub fn token(key: &ApnsKey) -> ApnsAuth {
        ApnsAuth::Token {
            key: key.public(),
            key_id: key.key_id.clone(),
            team_id: key.team_id.clone(),
        }
    }
}

/// What to answer a push to one device token, after its request passed every check. The
/// [`Default`] is success.
#[derive(Clone, Debug, Default)]
pub enum Answer {
    /// 200 with an `apns-id`.
    #[default]
    Accept,
    /// 410 `Unregistered` with a `timestamp`.
    Unregistered,
    /// 410 `ExpiredToken` with a `timestamp`.
    ExpiredToken,
    /// 400 `BadDeviceToken`.
    BadDeviceToken,
    /// 400 `DeviceTokenNotForTopic`.
    DeviceTokenNotForTopic,
    /// 429 `TooManyRequests`, with `retry-after` (seconds) when given.
    TooManyRequests { retry_after: Option<u64> },
    /// 500 `InternalServerError`.
    InternalServerError { retry_after: Option<u64> },
    /// 503 `ServiceUnavailable`.
    ServiceUnavailable { retry_after: Option<u64> },
    /// 403 `ExpiredProviderToken`; the provider token it came with is refused from then on,
    /// as Apple refuses an expired one, so only a new token gets through.
    ExpiredProviderToken,
    /// 403 `InvalidProviderToken`.
    InvalidProviderToken,
    /// Any other status and reason.
    Other { status: u16, reason: String },
    /// Never answer.
    Hang,
    /// Close the connection under the request (GOAWAY, then the socket closes).
    CloseConnection,
    /// The inner answer, after a delay.
    Delayed(Duration, Box<Answer>),
}

crate::script::scripted_answer!(Answer);

/// A running APNs stand-in; stops when dropped.
pub struct Apns {
    server: Server,
    state: Arc<ApnsHandler>,
}

struct ApnsHandler {
    auth: ApnsAuth,
    mutable: Mutex<ApnsState>,
}

#[derive(Default)]
struct ApnsState {
    scripts: HashMap<String, Script<Answer>>,
    /// For tokens without a script of their own.
    default: Option<Script<Answer>>,
    /// Provider tokens answered `ExpiredProviderToken` by a script.
    expired_tokens: HashSet<String>,
    topics: Option<Vec<String>>,
}

impl Apns {
    pub fn start(ca: &TestCa, auth: ApnsAuth) -> anyhow::Result<Apns> {
        Apns::start_with(ca, auth, ServerSettings::default())
    }

    pub fn start_with(
        ca: &TestCa,
        auth: ApnsAuth,
        settings: ServerSettings,
    ) -> anyhow::Result<Apns> {
        let (chain, key) = ca.server_identity();
        let builder = server::tls_builder();
        let mut tls = match auth {
            ApnsAuth::Token { .. } => builder.with_no_client_auth(),
            ApnsAuth::Certificate => {
                // Mandatory: a connection without a certificate from the test CA (or with an
                // expired one) fails its handshake, as Apple's does.
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    ca.roots()?,
                    Arc::new(rustls::crypto::ring::default_provider()),
                )
                .build()?;
                builder.with_client_cert_verifier(verifier)
            }
        }
        .with_single_cert(chain, key)?;
        // APNs speaks HTTP/2 only.
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let state = Arc::new(ApnsHandler {
            auth,
            mutable: Mutex::new(ApnsState::default()),
        });
        let server = Server::start(
            "apns",
            tls,
            true,
            settings,
            state.clone(),
            Arc::new(Counters::default()),
        )?;
        Ok(Apns { server, state })
    }

    /// `https://127.0.0.1:<port>`: what `delivery.apns.endpoint` (or `sandbox_endpoint`) names.
    pub fn url(&self) -> String {
        format!("https://{}", self.server.addr())
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    /// Sets what pushes to `device_token` are answered, replacing its earlier script.
    pub fn script(&self, device_token: &str, script: impl Into<Script<Answer>>) {
        self.state
            .lock()
            .scripts
            .insert(device_token.to_owned(), script.into());
    }

    /// Sets what pushes to every token without a script of its own are answered, e.g.
    /// `Answer::Accept.after(latency)` for a benchmark.
    pub fn script_all(&self, script: impl Into<Script<Answer>>) {
        self.state.lock().default = Some(script.into());
    }

    /// Only these `apns-topic`s are accepted under token auth (others: 400 `TopicDisallowed`);
    /// by default any is. Under certificate auth the topic must be the certificate's `UID`.
    pub fn allow_topics<S: Into<String>>(&self, topics: impl IntoIterator<Item = S>) {
        self.state.lock().topics = Some(topics.into_iter().map(Into::into).collect());
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Received> {
        self.server.records().clone()
    }

    /// The requests that were pushes to `device_token`.
    pub fn pushes_to(&self, device_token: &str) -> Vec<Received> {
        let path = format!("/3/device/{device_token}");
        self.server
            .records()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    pub fn stats(&self) -> Stats {
        self.server.stats()
    }

    /// Waits until `n` requests have arrived; false if `timeout` passes first.
    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.server.wait_for_requests(n, timeout)
    }
}

impl ApnsHandler {
    fn lock(&self) -> MutexGuard<'_, ApnsState> {
        self.mutable.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The checks Apple makes, in its order, up to the script; `Err` is (status, reason).
    fn check(
        &self,
        request: &Request,
        conn: &Conn,
        record: &mut Received,
    ) -> Result<String, (u16, &'static str)> {
        if request.method != hyper::Method::POST {
            return Err((405, "MethodNotAllowed"));
        }
        let token = match request.path.strip_prefix("/3/device/") {
            Some(token) if !token.is_empty() && !token.contains(['/', '?']) => token.to_owned(),
            Some(_) => return Err((400, "MissingDeviceToken")),
            None => return Err((404, "BadPath")),
        };
        for name in request.headers.keys() {
            if name.as_str().starts_with("apns-")
                && request.headers.get_all(name).iter().count() > 1
            {
                return Err((400, "DuplicateHeaders"));
            }
        }
        let provider_token = self.check_auth(request, record)?;
        let topic = request.header("apns-topic").ok_or((400, "MissingTopic"))?;
        match (&self.auth, &conn.client_subject) {
            (ApnsAuth::Certificate, Some(subject)) => {
                // A push certificate also covers its app's `.voip`, `.complication`… topics.
                let uid = uid_of(subject).unwrap_or_default();
                let covered = !uid.is_empty()
                    && topic
                        .strip_prefix(uid)
                        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
                if !covered {
                    return Err((400, "TopicDisallowed"));
                }
            }
            (ApnsAuth::Certificate, None) => return Err((403, "MissingProviderToken")),
            (ApnsAuth::Token { .. }, _) => {
                if let Some(topics) = &self.lock().topics {
                    if !topics.iter().any(|t| t == topic) {
                        return Err((400, "TopicDisallowed"));
                    }
                }
            }
        }
        // Apple would default a missing push type and priority; §6.3 of the contract makes both
        // part of every push, so a missing one is refused here to catch it.
        match request.header("apns-push-type") {
            Some(kind) if PUSH_TYPES.contains(&kind) => {}
            _ => return Err((400, "InvalidPushType")),
        }
        match request.header("apns-priority") {
            Some("5" | "10") => {}
            _ => return Err((400, "BadPriority")),
        }
        if let Some(expiration) = request.headers.get("apns-expiration") {
            let ok = expiration
                .to_str()
                .ok()
                .is_some_and(|e| e.parse::<u64>().is_ok());
            if !ok {
                return Err((400, "BadExpirationDate"));
            }
        }
        if let Some(id) = request.headers.get("apns-id") {
            if !id.to_str().is_ok_and(is_uuid) {
                return Err((400, "BadMessageId"));
            }
        }
        if request
            .headers
            .get("apns-collapse-id")
            .is_some_and(|c| c.len() > 64)
        {
            return Err((400, "BadCollapseId"));
        }
        if request.body.is_empty() {
            return Err((400, "PayloadEmpty"));
        }
        if request.body.len() > MAX_PAYLOAD {
            return Err((413, "PayloadTooLarge"));
        }
        // Apple documents no reason for a payload that is not JSON or has no `aps`; this one
        // is the stand-in's own, so a test sees the mistake by name.
        match &record.json {
            Some(Value::Object(body)) if body.get("aps").is_some_and(Value::is_object) => {}
            _ => return Err((400, "BadPayload")),
        }
        if let Some(provider_token) = provider_token {
            if self.lock().expired_tokens.contains(&provider_token) {
                return Err((403, "ExpiredProviderToken"));
            }
        }
        Ok(token)
    }

    /// Under token auth, the provider token when it is good; under certificate auth, `None`
    /// (the TLS handshake already checked the certificate).
    fn check_auth(
        &self,
        request: &Request,
        record: &mut Received,
    ) -> Result<Option<String>, (u16, &'static str)> {
        let ApnsAuth::Token {
            key,
            key_id,
            team_id,
        } = &self.auth
        else {
            return Ok(None);
        };
        let header = request
            .header("authorization")
            .ok_or((403, "MissingProviderToken"))?;
        let (scheme, token) = header
            .split_once(' ')
            .ok_or((403, "InvalidProviderToken"))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err((403, "InvalidProviderToken"));
        }
        let jwt = DecodedJwt::parse(token).map_err(|_| (403, "InvalidProviderToken"))?;
        record.jwt = Some(jwt.clone());
        let good = jwt.header_str("alg") == Some("ES256")
            && jwt.header_str("kid") == Some(key_id.as_str())
            && jwt.claim_str("iss") == Some(team_id.as_str())
            && jwt.verifies(&ECDSA_P256_SHA256_FIXED, &key.0);
        if !good {
            return Err((403, "InvalidProviderToken"));
        }
        let now = now_secs();
        match jwt.claim_i64("iat") {
            Some(iat) if iat > now + CLOCK_SKEW_SECS => Err((403, "InvalidProviderToken")),
            Some(iat) if now - iat > TOKEN_LIFETIME_SECS => Err((403, "ExpiredProviderToken")),
            Some(_) => Ok(Some(token.to_owned())),
            None => Err((403, "InvalidProviderToken")),
        }
    }
}

impl Handler for ApnsHandler {
    fn handle(&self, request: &Request, conn: &Conn, record: &mut Received) -> Reply {
        let apns_id = request
            .header("apns-id")
            .filter(|id| is_uuid(id))
            .map(str::to_owned)
            .unwrap_or_else(new_uuid);
        let token = match self.check(request, conn, record) {
            Ok(token) => token,
            Err((status, reason)) => {
                record.reason = Some(reason.to_owned());
                return reply(status, reason, &apns_id, None, None);
            }
        };
        let answer = {
            let mut state = self.lock();
            let state = &mut *state;
            match state.scripts.get_mut(&token) {
                Some(script) => script.next(),
                None => state.default.as_mut().map(Script::next).unwrap_or_default(),
            }
        };
        self.answer(answer, request, &apns_id, record)
    }
}

impl ApnsHandler {
    fn answer(
        &self,
        answer: Answer,
        request: &Request,
        apns_id: &str,
        record: &mut Received,
    ) -> Reply {
        let (status, reason, retry_after) = match answer {
            Answer::Accept => {
                return Reply::Answer(
                    hyper::Response::builder()
                        .status(200)
                        .header("apns-id", apns_id)
                        .body(Default::default())
                        .expect("valid"),
                )
            }
            Answer::Hang => return Reply::Hang,
            Answer::CloseConnection => return Reply::Close,
            Answer::Delayed(delay, then) => {
                return Reply::After(
                    delay,
                    Box::new(self.answer(*then, request, apns_id, record)),
                )
            }
            Answer::Unregistered => (410, "Unregistered".to_owned(), None),
            Answer::ExpiredToken => (410, "ExpiredToken".to_owned(), None),
            Answer::BadDeviceToken => (400, "BadDeviceToken".to_owned(), None),
            Answer::DeviceTokenNotForTopic => (400, "DeviceTokenNotForTopic".to_owned(), None),
            Answer::TooManyRequests { retry_after } => {
                (429, "TooManyRequests".to_owned(), retry_after)
            }
            Answer::InternalServerError { retry_after } => {
                (500, "InternalServerError".to_owned(), retry_after)
            }
            Answer::ServiceUnavailable { retry_after } => {
                (503, "ServiceUnavailable".to_owned(), retry_after)
            }
            Answer::ExpiredProviderToken => {
                if let Some(token) = bearer(request) {
                    self.lock().expired_tokens.insert(token.to_owned());
                }
                (403, "ExpiredProviderToken".to_owned(), None)
            }
            Answer::InvalidProviderToken => (403, "InvalidProviderToken".to_owned(), None),
            Answer::Other { status, reason } => (status, reason, None),
        };
        let timestamp = (status == 410).then(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0)
        });
        record.reason = Some(reason.clone());
        reply(status, &reason, apns_id, timestamp, retry_after)
    }
}

fn reply(
    status: u16,
    reason: &str,
    apns_id: &str,
    timestamp: Option<u64>,
    retry_after: Option<u64>,
) -> Reply {
    let mut body = json!({ "reason": reason });
    if let Some(timestamp) = timestamp {
        body["timestamp"] = json!(timestamp);
    }
    let mut headers = vec![("apns-id", apns_id.to_owned())];
    if let Some(seconds) = retry_after {
        headers.push(("retry-after", seconds.to_string()));
    }
    json_reply(status, &headers, &body)
}

fn bearer(request: &Request) -> Option<&str> {
    let (scheme, token) = request.header("authorization")?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// Apple's `apns-id` form: a UUID, 8-4-4-4-12 hex digits.
fn is_uuid(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn new_uuid() -> String {
    let mut b = [0u8; 16];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source works");
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_uuids() {
        let id = new_uuid();
        assert!(is_uuid(&id), "{id}");
        assert!(!is_uuid("not-a-uuid"));
    }
}
