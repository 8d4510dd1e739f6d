//! The FCM stand-in: Google's OAuth token endpoint (`POST /token`, the JWT-bearer grant) and FCM
//! HTTP v1 (`POST /v1/projects/{project}/messages:send`), over TLS with HTTP/2 or HTTP/1.1, on
//! one port: the service account's `token_uri` points back at it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::RSA_PKCS1_2048_8192_SHA256;
use serde_json::{json, Map, Value};

use crate::ca::TestCa;
use crate::jwt::{now_secs, DecodedJwt};
use crate::keys::RsaTestKey;
use crate::record::{Received, Stats};
use crate::script::Script;
pub use crate::server::ServerSettings;
use crate::server::{self, json_reply, Conn, Counters, Handler, Reply, Request, Server};

pub const FIREBASE_MESSAGING_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const FCM_ERROR: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
const BAD_REQUEST: &str = "type.googleapis.com/google.rpc.BadRequest";
/// Google's limit on an assertion's `exp - iat`.
const ASSERTION_LIFETIME_SECS: i64 = 3600;
const CLOCK_SKEW_SECS: i64 = 5;
/// FCM's longest `android.ttl`: four weeks.
const MAX_TTL_SECS: u64 = 2_419_200;

/// A Firebase service account the stand-in knows, as its JSON key file describes it.
#[derive(Clone, Debug)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    pub private_key_id: String,
    pub token_uri: String,
    pub key: RsaTestKey,
}

impl ServiceAccount {
    /// The key file's JSON, shaped as the Firebase console's download.
    pub fn json(&self) -> Value {
        json!({
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": self.private_key_id,
            "private_key": self.key.pkcs8_pem(),
            "client_email": self.client_email,
            "client_id": "100000000000000000000",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        })
    }

    pub fn json_string(&self) -> String {
        serde_json::to_string_pretty(&self.json()).expect("JSON values serialize")
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, self.json_string())
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// What to answer a send to one registration token, after its request passed every check.
/// The [`Default`] is success.
#[derive(Clone, Debug, Default)]
pub enum Answer {
    /// 200 `{"name": "projects/…/messages/…"}`.
    #[default]
    Accept,
    /// 404 `NOT_FOUND`, errorCode `UNREGISTERED`.
    Unregistered,
    /// 400 `INVALID_ARGUMENT`, errorCode `INVALID_ARGUMENT`.
    InvalidArgument,
    /// 403 `PERMISSION_DENIED`, errorCode `SENDER_ID_MISMATCH`.
    SenderIdMismatch,
    /// 429 `RESOURCE_EXHAUSTED`, errorCode `QUOTA_EXCEEDED`, with `retry-after` when given.
    QuotaExceeded {
        retry_after: Option<u64>,
    },
    /// 500 `INTERNAL`.
    Internal {
        retry_after: Option<u64>,
    },
    /// 503 `UNAVAILABLE`.
    Unavailable {
        retry_after: Option<u64>,
    },
    /// 401 `UNAUTHENTICATED`; the access token it came with is revoked, so only a new one
    /// gets through.
    Unauthenticated,
    /// Any other status, Google status name and FCM errorCode.
    Other {
        code: u16,
        status: String,
        error_code: Option<String>,
    },
    Hang,
    /// Close the connection under the request (GOAWAY on HTTP/2, then the socket closes).
    CloseConnection,
    Delayed(Duration, Box<Answer>),
}

crate::script::scripted_answer!(Answer);

/// A running FCM stand-in; stops when dropped.
pub struct Fcm {
    server: Server,
    state: Arc<FcmHandler>,
}

struct FcmHandler {
    counters: Arc<Counters>,
    messages: AtomicU64,
    mutable: Mutex<FcmState>,
}

struct FcmState {
    token_uri: String,
    /// By `client_email`.
    accounts: HashMap<String, ServiceAccount>,
    first_account: Option<String>,
    tokens: HashMap<String, AccessToken>,
    token_lifetime: Duration,
    scripts: HashMap<String, Script<Answer>>,
    /// For tokens without a script of their own.
    default: Option<Script<Answer>>,
}

struct AccessToken {
    project_id: String,
    expires: Instant,
    revoked: bool,
}

impl Fcm {
    /// Starts with one service account, for project `bindery-test`, signed with
    /// [`RsaTestKey::A`].
    pub fn start(ca: &TestCa) -> anyhow::Result<Fcm> {
        Fcm::start_with(ca, ServerSettings::default())
    }

    pub fn start_with(ca: &TestCa, settings: ServerSettings) -> anyhow::Result<Fcm> {
        let (chain, key) = ca.server_identity();
        let mut tls = server::tls_builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        // Google's front ends speak both.
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let counters = Arc::new(Counters::default());
        let state = Arc::new(FcmHandler {
            counters: counters.clone(),
            messages: AtomicU64::new(0),
            mutable: Mutex::new(FcmState {
                token_uri: String::new(),
                accounts: HashMap::new(),
                first_account: None,
                tokens: HashMap::new(),
                token_lifetime: Duration::from_secs(3599),
                scripts: HashMap::new(),
                default: None,
            }),
        });
        let server = Server::start("fcm", tls, false, settings, state.clone(), counters)?;
        state.lock().token_uri = format!("https://{}/token", server.addr());
        let fcm = Fcm { server, state };
        fcm.add_service_account("bindery-test", RsaTestKey::A);
        Ok(fcm)
    }

    /// `https://127.0.0.1:<port>`: what `delivery.fcm.endpoint` names.
    pub fn url(&self) -> String {
        format!("https://{}", self.server.addr())
    }

    /// The OAuth token endpoint, as the service accounts' `token_uri`.
    pub fn token_uri(&self) -> String {
        self.state.lock().token_uri.clone()
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.server.addr()
    }

    /// The account the stand-in started with.
    pub fn service_account(&self) -> ServiceAccount {
        let state = self.state.lock();
        let email = state.first_account.as_ref().expect("start adds one");
        state.accounts[email].clone()
    }

    /// Registers another account (several may share a project or a key).
    pub fn add_service_account(&self, project_id: &str, key: RsaTestKey) -> ServiceAccount {
        let mut state = self.state.lock();
        let n = state.accounts.len() + 1;
        let mut id = [0u8; 20];
        SystemRandom::new()
            .fill(&mut id)
            .expect("the system's random source works");
        let account = ServiceAccount {
            project_id: project_id.to_owned(),
            client_email: format!("bindery-{n}@{project_id}.iam.gserviceaccount.com"),
            private_key_id: hex(&id),
            token_uri: state.token_uri.clone(),
            key,
        };
        state
            .accounts
            .insert(account.client_email.clone(), account.clone());
        state
            .first_account
            .get_or_insert(account.client_email.clone());
        account
    }

    /// Sets what sends to `registration_token` are answered, replacing its earlier script.
    pub fn script(&self, registration_token: &str, script: impl Into<Script<Answer>>) {
        self.state
            .lock()
            .scripts
            .insert(registration_token.to_owned(), script.into());
    }

    /// Sets what sends to every token without a script of its own are answered, e.g.
    /// `Answer::Accept.after(latency)` for a benchmark.
    pub fn script_all(&self, script: impl Into<Script<Answer>>) {
        self.state.lock().default = Some(script.into());
    }

    /// The `expires_in` of tokens issued from now on (Google's is 3599 seconds).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state.lock().token_lifetime = lifetime;
    }

    /// Makes every access token issued so far expired, as if its hour had passed.
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for token in self.state.lock().tokens.values_mut() {
            token.expires = now;
        }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.server.records().clone()
    }

    /// The requests to the OAuth token endpoint.
    pub fn token_requests(&self) -> Vec<Received> {
        self.server
            .records()
            .iter()
            .filter(|r| r.path.starts_with("/token"))
            .cloned()
            .collect()
    }

    /// The sends whose body named `registration_token`.
    pub fn sends_to(&self, registration_token: &str) -> Vec<Received> {
        self.server
            .records()
            .iter()
            .filter(|r| {
                r.json
                    .as_ref()
                    .and_then(|j| j.pointer("/message/token"))
                    .and_then(Value::as_str)
                    == Some(registration_token)
            })
            .cloned()
            .collect()
    }

    pub fn stats(&self) -> Stats {
        self.server.stats()
    }

    pub fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        self.server.wait_for_requests(n, timeout)
    }
}

impl Handler for FcmHandler {
    fn handle(&self, request: &Request, _conn: &Conn, record: &mut Received) -> Reply {
        let path = request.path.split('?').next().unwrap_or_default();
        if path == "/token" {
            return self.grant(request, record);
        }
        match path
            .strip_prefix("/v1/projects/")
            .and_then(|rest| rest.strip_suffix("/messages:send"))
        {
            Some(project) if !project.contains('/') && request.method == hyper::Method::POST => {
                self.send(project, request, record)
            }
            _ => google_error(
                record,
                404,
                "NOT_FOUND",
                "The requested URL was not found on this server.",
                None,
                None,
                None,
            ),
        }
    }
}

impl FcmHandler {
    fn lock(&self) -> MutexGuard<'_, FcmState> {
        self.mutable.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The JWT-bearer grant, checked as Google's token endpoint does.
    fn grant(&self, request: &Request, record: &mut Received) -> Reply {
        let form: Map<String, Value> = form_urlencoded::parse(&request.body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        record.json = Some(Value::Object(form.clone()));
        match self.check_grant(request, &form, record) {
            Ok((access_token, expires_in)) => json_reply(
                200,
                &[("cache-control", "no-store".to_owned())],
                &json!({
                    "access_token": access_token,
                    "expires_in": expires_in,
                    "token_type": "Bearer",
                }),
            ),
            Err((status, error, description)) => {
                record.reason = Some(error.to_owned());
                json_reply(
                    status,
                    &[],
                    &json!({ "error": error, "error_description": description }),
                )
            }
        }
    }

    fn check_grant(
        &self,
        request: &Request,
        form: &Map<String, Value>,
        record: &mut Received,
    ) -> Result<(String, u64), (u16, &'static str, String)> {
        let invalid_grant = |why: &str| (400, "invalid_grant", why.to_owned());
        if request.method != hyper::Method::POST {
            return Err((
                405,
                "invalid_request",
                "The token endpoint takes POST".to_owned(),
            ));
        }
        let form_type = request
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        if !form_type {
            return Err((
                400,
                "invalid_request",
                "The body must be application/x-www-form-urlencoded".to_owned(),
            ));
        }
        match form.get("grant_type").and_then(Value::as_str) {
            Some(JWT_BEARER) => {}
            Some(other) => {
                return Err((
                    400,
                    "unsupported_grant_type",
                    format!("Invalid grant_type: {other}"),
                ))
            }
            None => {
                return Err((
                    400,
                    "invalid_request",
                    "Missing required parameter: grant_type".to_owned(),
                ))
            }
        }
        let assertion = form.get("assertion").and_then(Value::as_str).ok_or((
            400,
            "invalid_request",
            "Missing required parameter: assertion".to_owned(),
        ))?;
        let jwt = DecodedJwt::parse(assertion)
            .map_err(|e| invalid_grant(&format!("Invalid JWT: {e}")))?;
        record.jwt = Some(jwt.clone());
        if jwt.header_str("alg") != Some("RS256") {
            return Err(invalid_grant("Invalid JWT: the algorithm must be RS256."));
        }
        let mut state = self.lock();
        let account = jwt
            .claim_str("iss")
            .and_then(|iss| state.accounts.get(iss))
            .ok_or_else(|| invalid_grant("Invalid grant: account not found"))?
            .clone();
        let kid_ok = jwt
            .header_str("kid")
            .is_none_or(|kid| kid == account.private_key_id);
        if !kid_ok || !jwt.verifies(&RSA_PKCS1_2048_8192_SHA256, &account.key.public_der()) {
            return Err(invalid_grant("Invalid JWT Signature."));
        }
        if jwt.claim_str("aud") != Some(state.token_uri.as_str()) {
            return Err(invalid_grant("Invalid JWT: Failed audience check."));
        }
        let scoped = jwt
            .claim_str("scope")
            .is_some_and(|s| s.split(' ').any(|s| s == FIREBASE_MESSAGING_SCOPE));
        if !scoped {
            return Err((
                400,
                "invalid_scope",
                "Invalid OAuth scope or ID token audience provided.".to_owned(),
            ));
        }
        let now = now_secs();
        let sane = match (jwt.claim_i64("iat"), jwt.claim_i64("exp")) {
            (Some(iat), Some(exp)) => {
                iat <= now + CLOCK_SKEW_SECS
                    && exp > now
                    && exp > iat
                    && exp - iat <= ASSERTION_LIFETIME_SECS
            }
            _ => false,
        };
        if !sane {
            return Err(invalid_grant(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
                 timeframe. Check your iat and exp values in the JWT claim.",
            ));
        }
        let mut secret = [0u8; 24];
        SystemRandom::new()
            .fill(&mut secret)
            .expect("the system's random source works");
        let n = self.counters.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
        let access_token = format!("ya29.standin-{n}-{}", hex(&secret));
        let lifetime = state.token_lifetime;
        state.tokens.insert(
            access_token.clone(),
            AccessToken {
                project_id: account.project_id,
                expires: Instant::now() + lifetime,
                revoked: false,
            },
        );
        Ok((access_token, lifetime.as_secs()))
    }

    fn send(&self, project: &str, request: &Request, record: &mut Received) -> Reply {
        let bearer = request
            .header("authorization")
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.to_owned());
        let token_project = {
            let state = self.lock();
            bearer
                .as_ref()
                .and_then(|b| state.tokens.get(b))
                .filter(|t| !t.revoked && t.expires > Instant::now())
                .map(|t| t.project_id.clone())
        };
        let Some(token_project) = token_project else {
            return unauthenticated(record);
        };
        if token_project != project {
            return google_error(
                record,
                403,
                "PERMISSION_DENIED",
                "SenderId mismatch",
                Some("SENDER_ID_MISMATCH"),
                None,
                None,
            );
        }
        let Some(body) = record.json.clone() else {
            return google_error(
                record,
                400,
                "INVALID_ARGUMENT",
                "Invalid JSON payload received.",
                None,
                None,
                None,
            );
        };
        let target = match check_message(&body) {
            Ok(target) => target,
            Err((field, description)) => {
                return google_error(
                    record,
                    400,
                    "INVALID_ARGUMENT",
                    &description,
                    Some("INVALID_ARGUMENT"),
                    Some(&field),
                    None,
                )
            }
        };
        let answer = {
            let mut state = self.lock();
            let state = &mut *state;
            match state.scripts.get_mut(&target) {
                Some(script) => script.next(),
                None => state.default.as_mut().map(Script::next).unwrap_or_default(),
            }
        };
        self.answer(answer, project, bearer.as_deref(), record)
    }

    fn answer(
        &self,
        answer: Answer,
        project: &str,
        bearer: Option<&str>,
        record: &mut Received,
    ) -> Reply {
        let retry = |s: Option<u64>| s.map(|s| s.to_string());
        match answer {
            Answer::Accept => {
                let n = self.messages.fetch_add(1, Ordering::SeqCst) + 1;
                json_reply(
                    200,
                    &[],
                    &json!({ "name": format!("projects/{project}/messages/0:{n}%standin") }),
                )
            }
            Answer::Unregistered => google_error(
                record,
                404,
                "NOT_FOUND",
                "Requested entity was not found.",
                Some("UNREGISTERED"),
                None,
                None,
            ),
            Answer::InvalidArgument => google_error(
                record,
                400,
                "INVALID_ARGUMENT",
                "The registration token is not a valid FCM registration token",
                Some("INVALID_ARGUMENT"),
                Some("message.token"),
                None,
            ),
            Answer::SenderIdMismatch => google_error(
                record,
                403,
                "PERMISSION_DENIED",
                "SenderId mismatch",
                Some("SENDER_ID_MISMATCH"),
                None,
                None,
            ),
            Answer::QuotaExceeded { retry_after } => google_error(
                record,
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Send requests'.",
                Some("QUOTA_EXCEEDED"),
                None,
                retry(retry_after),
            ),
            Answer::Internal { retry_after } => google_error(
                record,
                500,
                "INTERNAL",
                "Internal error encountered.",
                Some("INTERNAL"),
                None,
                retry(retry_after),
            ),
            Answer::Unavailable { retry_after } => google_error(
                record,
                503,
                "UNAVAILABLE",
                "The service is currently unavailable.",
                Some("UNAVAILABLE"),
                None,
                retry(retry_after),
            ),
            Answer::Unauthenticated => {
                if let Some(bearer) = bearer {
                    if let Some(token) = self.lock().tokens.get_mut(bearer) {
                        token.revoked = true;
                    }
                }
                unauthenticated(record)
            }
            Answer::Other {
                code,
                status,
                error_code,
            } => google_error(
                record,
                code,
                &status,
                "Scripted error.",
                error_code.as_deref(),
                None,
                None,
            ),
            Answer::Hang => Reply::Hang,
            Answer::CloseConnection => Reply::Close,
            Answer::Delayed(delay, then) => {
                Reply::After(delay, Box::new(self.answer(*then, project, bearer, record)))
            }
        }
    }
}

fn unauthenticated(record: &mut Received) -> Reply {
    google_error(
        record,
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login \
         cookie or other valid authentication credential.",
        None,
        None,
        None,
    )
}

/// Google's error JSON: `{"error": {"code", "message", "status", "details": [FcmError…]}}`.
fn google_error(
    record: &mut Received,
    code: u16,
    status: &str,
    message: &str,
    error_code: Option<&str>,
    field: Option<&str>,
    retry_after: Option<String>,
) -> Reply {
    let mut details = Vec::new();
    if let Some(error_code) = error_code {
        details.push(json!({ "@type": FCM_ERROR, "errorCode": error_code }));
    }
    if let Some(field) = field {
        details.push(json!({
            "@type": BAD_REQUEST,
            "fieldViolations": [{ "field": field, "description": message }],
        }));
    }
    let mut error = json!({ "code": code, "message": message, "status": status });
    if !details.is_empty() {
        error["details"] = Value::Array(details);
    }
    record.reason = Some(error_code.unwrap_or(status).to_owned());
    let headers: Vec<(&str, String)> = retry_after
        .map(|r| ("retry-after", r))
        .into_iter()
        .collect();
    json_reply(code, &headers, &json!({ "error": error }))
}

/// The checks FCM's proto-JSON parsing makes of a send's body; `Ok` is the message's target
/// (its token, else `/topics/<topic>` or the condition), `Err` is (field, description).
fn check_message(body: &Value) -> Result<String, (String, String)> {
    let bad = |field: &str, why: String| Err((field.to_owned(), why));
    let Some(top) = body.as_object() else {
        return bad(
            "",
            "Invalid JSON payload received. Expected an object.".to_owned(),
        );
    };
    known_fields("", top, &["message", "validate_only", "validateOnly"])?;
    let Some(message) = top.get("message").and_then(Value::as_object) else {
        return bad("message", "The message is missing.".to_owned());
    };
    known_fields(
        "message",
        message,
        &[
            "name",
            "data",
            "notification",
            "android",
            "webpush",
            "apns",
            "fcm_options",
            "fcmOptions",
            "token",
            "topic",
            "condition",
        ],
    )?;
    let targets: Vec<(&str, &Value)> = ["token", "topic", "condition"]
        .iter()
        .filter_map(|k| message.get(*k).map(|v| (*k, v)))
        .collect();
    let target = match targets.as_slice() {
        [(kind, Value::String(value))] if !value.is_empty() => match *kind {
            "topic" => format!("/topics/{value}"),
            _ => value.clone(),
        },
        [(kind, _)] => {
            return bad(
                &format!("message.{kind}"),
                format!("Invalid value at 'message.{kind}'"),
            )
        }
        _ => {
            return bad(
                "message",
                "Exactly one of token, topic or condition must be given.".to_owned(),
            )
        }
    };
    if let Some(notification) = message.get("notification") {
        strings_only(
            "message.notification",
            notification,
            Some(&["title", "body", "image"]),
        )?;
    }
    if let Some(data) = message.get("data") {
        check_data("message.data", data)?;
    }
    if let Some(android) = message.get("android") {
        let Some(android) = android.as_object() else {
            return bad(
                "message.android",
                "Invalid value at 'message.android'".to_owned(),
            );
        };
        known_fields(
            "message.android",
            android,
            &[
                "collapse_key",
                "collapseKey",
                "priority",
                "ttl",
                "restricted_package_name",
                "restrictedPackageName",
                "data",
                "notification",
                "fcm_options",
                "fcmOptions",
                "direct_boot_ok",
                "directBootOk",
            ],
        )?;
        match android.get("priority") {
            None => {}
            Some(Value::String(p)) if p == "HIGH" || p == "NORMAL" => {}
            Some(other) => {
                return bad(
                    "message.android.priority",
                    format!(
                        "Invalid value at 'message.android.priority' \
                         (type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority), {other}"
                    ),
                )
            }
        }
        if let Some(ttl) = android.get("ttl") {
            let seconds = ttl.as_str().and_then(duration_secs);
            if seconds.is_none_or(|s| s > MAX_TTL_SECS) {
                return bad(
                    "message.android.ttl",
                    format!("Invalid value at 'message.android.ttl' (type.googleapis.com/google.protobuf.Duration), {ttl}"),
                );
            }
        }
        if let Some(data) = android.get("data") {
            check_data("message.android.data", data)?;
        }
    }
    Ok(target)
}

fn known_fields(
    at: &str,
    object: &Map<String, Value>,
    known: &[&str],
) -> Result<(), (String, String)> {
    match object.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err((
            at.to_owned(),
            format!("Invalid JSON payload received. Unknown name \"{key}\" at '{at}': Cannot find field."),
        )),
    }
}

/// An object whose values are all strings (and, with `known`, whose keys are all known).
fn strings_only(at: &str, value: &Value, known: Option<&[&str]>) -> Result<(), (String, String)> {
    let Some(object) = value.as_object() else {
        return Err((at.to_owned(), format!("Invalid value at '{at}'")));
    };
    if let Some(known) = known {
        known_fields(at, object, known)?;
    }
    match object.iter().find(|(_, v)| !v.is_string()) {
        None => Ok(()),
        Some((key, v)) => Err((
            format!("{at}.{key}"),
            format!("Invalid value at '{at}[{key}].value' (TYPE_STRING), {v}"),
        )),
    }
}

/// `data`: string values only, and none of FCM's reserved keys.
fn check_data(at: &str, data: &Value) -> Result<(), (String, String)> {
    strings_only(at, data, None)?;
    let reserved = data
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys())
        .find(|k| {
            let k = k.to_ascii_lowercase();
            k == "from" || k == "message_type" || k.starts_with("google") || k.starts_with("gcm")
        });
    match reserved {
        None => Ok(()),
        Some(key) => Err((
            format!("{at}.{key}"),
            format!("Invalid data payload key: {key} is reserved."),
        )),
    }
}

/// A protobuf JSON duration, `"<seconds>s"` with up to nine fraction digits, in whole seconds.
fn duration_secs(text: &str) -> Option<u64> {
    let number = text.strip_suffix('s')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 {
        return None;
    }
    if number.contains('.') && fraction.is_empty() {
        return None;
    }
    whole.parse().ok()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_protobuf_json_does() {
        assert_eq!(duration_secs("3600s"), Some(3600));
        assert_eq!(duration_secs("0s"), Some(0));
        assert_eq!(duration_secs("1.5s"), Some(1));
        for bad in ["3600", "s", "-1s", "1.s", "1.0000000001s", "1m"] {
            assert_eq!(duration_secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_contracts_message_shape_passes() {
        let body = json!({"message": {
            "token": "t",
            "notification": {"title": "T", "body": "B"},
            "data": {"n": "3", "ok": "true"},
            "android": {"priority": "HIGH", "ttl": "60s"},
        }});
        assert_eq!(check_message(&body), Ok("t".to_owned()));
    }

    #[test]
    fn each_shape_error_names_its_field() {
        let cases = [
            (
                json!({"message": {"token": "t", "data": {"n": 3}}}),
                "message.data.n",
            ),
            (
                json!({"message": {"token": "t", "data": {"google.x": "1"}}}),
                "message.data.google.x",
            ),
            (
                json!({"message": {"token": "t", "android": {"priority": "high"}}}),
                "message.android.priority",
            ),
            (
                json!({"message": {"token": "t", "android": {"ttl": 60}}}),
                "message.android.ttl",
            ),
            (
                json!({"message": {"token": "t", "android": {"ttl": "2419201s"}}}),
                "message.android.ttl",
            ),
            (
                json!({"message": {"token": "t", "notification": {"title": 1}}}),
                "message.notification.title",
            ),
            (json!({"message": {"token": "t", "aps": {}}}), "message"),
            (json!({"message": {}}), "message"),
            (json!({"message": {"token": "t", "topic": "x"}}), "message"),
            (json!({"msg": {}}), ""),
        ];
        for (body, field) in cases {
            let (got, _) = check_message(&body).unwrap_err();
            assert_eq!(got, field, "{body}");
        }
    }
}
