//! The `direct` transport (CONTRACT §6): each push goes straight to APNs or FCM with the
//! credential its binding names. One client per credential, built from its sealed secrets on
//! first use and again when the credential changes, keeps one HTTP/2 connection that all its
//! pushes share as streams, and its provider token (APNs's JWT, FCM's OAuth token) until due.
//!
//! Pushes run on a runtime of their own, not on the HTTP workers: a retry waits on a timer
//! there, never in a sleeping thread, and the connections' tasks live there however the
//! requests that started them end. Each credential has its own in-flight limit inside a global
//! one, and a try holds its places only while it is on the wire, so one slow or throttling
//! provider cannot take the places of another (Sygnal #116).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bindery_domain::{BindingType, Credential, CredentialSecrets, CredentialSid};
use ring::signature::EcdsaKeyPair;
use tokio::sync::{Mutex as AsyncMutex, Semaphore};

use super::credential::{self, CredentialInput, ProviderCredential};
use super::guard::RemovalGuard;
use super::http2::{roots, tls_config_with, Connection};
use super::jwt::{self, CachedToken};
use super::verdict::{backoff, Provider, ProviderAnswer, Verdict, MAX_ATTEMPTS};
use super::{apns, fcm, payload, Attempted, DeliveryError, Outcome, Push};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::seal::Sealer;

/// `delivery.*` for the direct transport (CONTRACT §6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectSettings {
    pub apns_endpoint: String,
    pub apns_sandbox_endpoint: String,
    pub fcm_endpoint: String,
    /// Extra roots to trust beside the web's (a stand-in's, a proxy's).
    pub ca_file: Option<PathBuf>,
    /// How long notify waits for every push's final outcome, and the most one try waits for
    /// its answer: a provider that holds a stream open longer is taken for a hung one, and the
    /// try is made again (in the background, once notify has answered `pending`).
    pub deadline: Duration,
    /// Past this many "unregistered" answers through one credential in a minute, its
    /// removals stop (the guard, §6.4).
    pub unregistered_per_minute: u32,
    /// Pushes on the wire at once, in all.
    pub in_flight: usize,
    /// Pushes on the wire at once through one credential (APNs allows about 1,000 streams
    /// on a connection).
    pub in_flight_per_credential: usize,
}

impl DirectSettings {
    /// Whether the settings make a sender: `ca_file` reads and every endpoint is an https
    /// URL. Checked at start-up, so that a wrong setting stops it rather than every push.
    pub fn check(&self) -> Result<(Arc<rustls::RootCertStore>, Arc<rustls::ClientConfig>), String> {
        let roots = roots(self.ca_file.as_deref())?;
        let tls = tls_config_with(roots.clone(), None)?;
        for (key, endpoint) in [
            ("delivery.apns.endpoint", &self.apns_endpoint),
            (
                "delivery.apns.sandbox_endpoint",
                &self.apns_sandbox_endpoint,
            ),
            ("delivery.fcm.endpoint", &self.fcm_endpoint),
        ] {
            Connection::new(endpoint, tls.clone())
                .map_err(|e| format!("invalid setting {key}: {e}"))?;
        }
        Ok((roots, tls))
    }
}

impl Default for DirectSettings {
    fn default() -> Self {
        DirectSettings {
            apns_endpoint: "https://api.push.apple.com".into(),
            apns_sandbox_endpoint: "https://api.sandbox.push.apple.com".into(),
            fcm_endpoint: "https://fcm.googleapis.com".into(),
            ca_file: None,
            deadline: Duration::from_secs(10),
            unregistered_per_minute: 1000,
            in_flight: 2000,
            in_flight_per_credential: 1000,
        }
    }
}

/// The direct sender: its runtime, the clients per credential, and the credentials' health.
pub struct Direct {
    inner: Arc<Inner>,
    runtime: Option<tokio::runtime::Runtime>,
}

struct Inner {
    settings: DirectSettings,
    /// The web roots plus `ca_file`, shared by every client.
    roots: Arc<rustls::RootCertStore>,
    /// Those roots without a client certificate: the configuration of every client but
    /// those of certificate auth.
    tls: Arc<rustls::ClientConfig>,
    metrics: Metrics,
    sealer: Arc<Sealer>,
    clock: Arc<dyn Clock>,
    clients: Mutex<HashMap<CredentialSid, Arc<Client>>>,
    health: Mutex<Health>,
    global: Arc<Semaphore>,
}

struct Health {
    guard: RemovalGuard,
    /// Credentials the provider blamed, with its reason, until a push through them is
    /// delivered or they change.
    faults: HashMap<CredentialSid, String>,
    /// Credentials whose removals the guard holds now (warned once per burst).
    guarded: HashSet<CredentialSid>,
}

impl Direct {
    /// Starts the sender's runtime; fails when the settings do not pass [`DirectSettings::check`].
    pub fn start(
        settings: DirectSettings,
        metrics: Metrics,
        sealer: Arc<Sealer>,
        clock: Arc<dyn Clock>,
    ) -> Result<Direct, String> {
        let (roots, tls) = settings.check()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bindery-push")
            .enable_all()
            .build()
            .map_err(|e| format!("the push runtime did not start: {e}"))?;
        let inner = Arc::new(Inner {
            global: Arc::new(Semaphore::new(settings.in_flight.max(1))),
            health: Mutex::new(Health {
                guard: RemovalGuard::new(settings.unregistered_per_minute),
                faults: HashMap::new(),
                guarded: HashSet::new(),
            }),
            settings,
            roots,
            tls,
            metrics,
            sealer,
            clock,
            clients: Mutex::new(HashMap::new()),
        });
        // The guard's window slides with time, not only with answers: the health gauges
        // follow it.
        let weak = Arc::downgrade(&inner);
        runtime.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.refresh_health();
            }
        });
        Ok(Direct {
            inner,
            runtime: Some(runtime),
        })
    }

    pub fn deadline(&self) -> Duration {
        self.inner.settings.deadline
    }

    /// Starts `push` through `credential`; its final word arrives on the handle, however long
    /// the retries take.
    pub fn send(&self, push: Push, credential: Credential) -> tokio::task::JoinHandle<Attempted> {
        let inner = self.inner.clone();
        self.runtime
            .as_ref()
            .expect("the runtime runs until the sender is dropped")
            .spawn(async move { inner.push(push, &credential).await })
    }

    /// Whether `credential` pushes: no fault from its provider, and the guard not holding its
    /// removals (the credential body's `healthy`).
    pub fn healthy(&self, credential: &CredentialSid) -> bool {
        self.inner.healthy(credential, Instant::now())
    }

    /// What the provider said when it last blamed this credential (a wrong topic, a refused
    /// key), until a push through it is delivered or it changes.
    pub fn fault(&self, credential: &CredentialSid) -> Option<String> {
        self.inner
            .health
            .lock()
            .unwrap()
            .faults
            .get(credential)
            .cloned()
    }

    /// Drops a deleted credential's client; pushes already under way finish with it.
    pub fn forget(&self, credential: &CredentialSid) {
        self.inner.clients.lock().unwrap().remove(credential);
        self.reset_health(credential);
        let label = credential.to_string();
        let _ = self
            .inner
            .metrics
            .credential_healthy
            .remove_label_values(&[&label]);
    }

    /// Forgets what the provider and the guard held against a credential that was changed:
    /// the change may be its mend (a new key, the right environment).
    pub fn reset_health(&self, credential: &CredentialSid) {
        {
            let mut health = self.inner.health.lock().unwrap();
            health.faults.remove(credential);
            health.guarded.remove(credential);
            health.guard.forget(*credential);
        }
        if self.inner.clients.lock().unwrap().contains_key(credential) {
            self.inner.set_health_gauge(credential, Instant::now());
        }
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        // The last handle may go on an async thread, where a runtime must not block.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What a client is built from: a change to any of it is a new client.
#[derive(PartialEq, Eq)]
struct Fingerprint {
    secrets: CredentialSecrets,
    profile: bindery_domain::CredentialProfile,
    sandbox: Option<bool>,
}

impl Fingerprint {
    fn of(credential: &Credential) -> Fingerprint {
        Fingerprint {
            secrets: credential.secrets.clone(),
            profile: credential.profile.clone(),
            sandbox: credential.sandbox,
        }
    }
}

/// One credential's sender.
struct Client {
    fingerprint: Fingerprint,
    provider: Provider,
    /// Its in-flight limit.
    places: Semaphore,
    kind: Kind,
}

enum Kind {
    ApnsToken {
        connection: Connection,
        key: Arc<EcdsaKeyPair>,
        key_id: String,
        team_id: String,
        topic: String,
        token: AsyncMutex<CachedToken>,
    },
    ApnsCertificate {
        connection: Connection,
        topic: String,
    },
    Fcm {
        connection: Connection,
        tokens: fcm::TokenSource,
        project_id: String,
    },
}

/// One try's result: the answer, and the provider token it was signed in with.
type Tried = Result<(ProviderAnswer, Option<Arc<str>>), DeliveryError>;

impl Client {
    async fn try_once(&self, push: &Push) -> Tried {
        let now = unix_now();
        match &self.kind {
            Kind::ApnsToken {
                connection,
                key,
                key_id,
                team_id,
                topic,
                token,
            } => {
                let bearer = {
                    let mut kept = token.lock().await;
                    match kept.get(now) {
                        Some(bearer) => bearer,
                        None => {
                            let signed = jwt::apns_token(key, key_id, team_id, now);
                            let until = now + jwt::APNS_TOKEN_LIFETIME.as_secs();
                            kept.keep(&signed, until)
                        }
                    }
                };
                let request = payload::apns(push, topic, now);
                let answer = apns::send(connection, &request, Some(&bearer)).await?;
                Ok((answer, Some(bearer)))
            }
            Kind::ApnsCertificate { connection, topic } => {
                let request = payload::apns(push, topic, now);
                Ok((apns::send(connection, &request, None).await?, None))
            }
            Kind::Fcm {
                connection,
                tokens,
                project_id,
            } => {
                let bearer = tokens.token(now).await?;
                let message = payload::fcm(push);
                let answer = fcm::send(connection, project_id, &message, &bearer).await?;
                Ok((answer, Some(bearer)))
            }
        }
    }

    /// Forgets `token` after the provider refused it, so that the next try signs anew.
    async fn renew(&self, token: &str) {
        match &self.kind {
            Kind::ApnsToken { token: kept, .. } => kept.lock().await.renew(token),
            Kind::Fcm { tokens, .. } => tokens.renew(token).await,
            Kind::ApnsCertificate { .. } => {}
        }
    }
}

impl Inner {
    async fn push(self: Arc<Self>, push: Push, credential: &Credential) -> Attempted {
        let client = match self.client(credential) {
            Ok(client) => client,
            Err(error) => return Attempted::untried(error),
        };
        let provider = client.provider.as_str();
        let started = Instant::now();
        let (mut attempts, mut renewed, mut provider_status) = (0, false, None);
        let outcome = loop {
            attempts += 1;
            let tried = {
                let _own = client.places.acquire().await.expect("never closed");
                let _all = self.global.acquire().await.expect("never closed");
                let inflight = self.metrics.push_inflight.with_label_values(&[provider]);
                inflight.inc();
                let tried = tokio::time::timeout(self.settings.deadline, client.try_once(&push))
                    .await
                    .unwrap_or(Err(DeliveryError::Unreachable(
                        "the provider did not answer in time",
                    )));
                inflight.dec();
                tried
            };
            // What kept an answer from coming, when none came: the try's own error, which
            // says more than a reason string would.
            let mut unanswered = None;
            let (verdict, token) = match tried {
                Ok((answer, token)) => {
                    provider_status = Some(answer.status);
                    (answer.verdict(client.provider), token)
                }
                // A token endpoint's refusal is the credential's fault; anything else that
                // kept an answer from coming (a reset, GOAWAY, a timeout) is tried again.
                Err(error @ DeliveryError::TokenRefused(_)) => {
                    self.fault(credential.sid, &error.to_string());
                    break Outcome::Failed(error);
                }
                Err(error) => {
                    let verdict = Verdict::Transient {
                        reason: error.to_string(),
                        retry_after: None,
                    };
                    unanswered = Some(error);
                    (verdict, None)
                }
            };
            match verdict {
                Verdict::Delivered => {
                    self.healed(credential.sid);
                    break Outcome::Delivered;
                }
                Verdict::Unregistered { reason } => {
                    if self.may_remove(credential.sid) {
                        break Outcome::Unregistered(DeliveryError::rejected(&reason));
                    }
                    break Outcome::Failed(DeliveryError::UnregisteredGuard);
                }
                Verdict::RenewToken { reason } => {
                    if !renewed {
                        renewed = true;
                        if let Some(token) = token {
                            client.renew(&token).await;
                        }
                        continue;
                    }
                    self.fault(credential.sid, &reason);
                    break Outcome::Failed(DeliveryError::rejected(&reason));
                }
                Verdict::CredentialFault { reason } => {
                    self.fault(credential.sid, &reason);
                    break Outcome::Failed(DeliveryError::rejected(&reason));
                }
                Verdict::MessageFault { reason } => {
                    break Outcome::Failed(DeliveryError::rejected(&reason));
                }
                Verdict::Transient {
                    reason,
                    retry_after,
                } => {
                    if attempts >= MAX_ATTEMPTS {
                        break Outcome::Failed(
                            unanswered.unwrap_or_else(|| DeliveryError::rejected(&reason)),
                        );
                    }
                    self.metrics
                        .push_requests
                        .with_label_values(&[provider, "retried"])
                        .inc();
                    let wait = backoff(attempts + 1, retry_after, jitter());
                    tokio::time::sleep(wait).await;
                }
            }
        };
        self.metrics
            .push_requests
            .with_label_values(&[provider, outcome.label()])
            .inc();
        self.metrics
            .push_duration
            .with_label_values(&[provider])
            .observe(started.elapsed().as_secs_f64());
        Attempted {
            outcome,
            attempts,
            provider_status,
        }
    }

    /// The credential's client: the kept one while the credential is unchanged, else a new
    /// one read from its secrets.
    fn client(&self, credential: &Credential) -> Result<Arc<Client>, DeliveryError> {
        let fingerprint = Fingerprint::of(credential);
        if let Some(kept) = self.clients.lock().unwrap().get(&credential.sid) {
            if kept.fingerprint == fingerprint {
                return Ok(kept.clone());
            }
        }
        let client = Arc::new(self.build(credential, fingerprint).inspect_err(|e| {
            self.fault(credential.sid, &e.to_string());
        })?);
        {
            // Pushes that started together may have built one each: the first kept wins, so
            // that they share its connection.
            let mut clients = self.clients.lock().unwrap();
            match clients.get(&credential.sid) {
                Some(kept) if kept.fingerprint == client.fingerprint => return Ok(kept.clone()),
                _ => clients.insert(credential.sid, client.clone()),
            };
        }
        self.health.lock().unwrap().faults.remove(&credential.sid);
        self.set_health_gauge(&credential.sid, Instant::now());
        Ok(client)
    }

    fn build(
        &self,
        credential: &Credential,
        fingerprint: Fingerprint,
    ) -> Result<Client, DeliveryError> {
        let secrets = self
            .sealer
            .open_secrets(&credential.secrets)
            .map_err(|_| DeliveryError::CredentialInvalid("sealed under another key"))?;
        let input = CredentialInput {
            certificate: secrets.certificate.as_deref(),
            private_key: secrets.private_key.as_deref(),
            service_account: secrets.secret.as_deref().or(secrets.api_key.as_deref()),
            key_id: credential.profile.key_id.as_deref(),
            team_id: credential.profile.team_id.as_deref(),
            topic: credential.profile.topic.as_deref(),
        };
        let read = credential::read(credential.credential_type, &input, self.clock.now())
            .map_err(|e| DeliveryError::CredentialInvalid(e.field))?;
        let apns_endpoint = if credential.sandbox.unwrap_or(false) {
            &self.settings.apns_sandbox_endpoint
        } else {
            &self.settings.apns_endpoint
        };
        let connection = |endpoint: &str, tls: Arc<rustls::ClientConfig>, provider: Provider| {
            Connection::new(endpoint, tls)
                .map(|c| {
                    c.counting(
                        self.metrics
                            .push_connections_opened
                            .with_label_values(&[provider.as_str()]),
                    )
                })
                .map_err(|_| DeliveryError::Unreachable("the URL or proxy cannot be used"))
        };
        let (provider, kind) = match read {
            ProviderCredential::ApnsToken {
                key,
                key_id,
                team_id,
                topic,
            } => (
                Provider::Apns,
                Kind::ApnsToken {
                    connection: connection(apns_endpoint, self.tls.clone(), Provider::Apns)?,
                    key,
                    key_id,
                    team_id,
                    topic,
                    token: AsyncMutex::new(CachedToken::default()),
                },
            ),
            ProviderCredential::ApnsCertificate {
                chain, key, topic, ..
            } => {
                let tls = tls_config_with(self.roots.clone(), Some((chain, key.clone_key())))
                    .map_err(|_| DeliveryError::CredentialInvalid("Certificate"))?;
                (
                    Provider::Apns,
                    Kind::ApnsCertificate {
                        connection: connection(apns_endpoint, tls, Provider::Apns)?,
                        topic,
                    },
                )
            }
            ProviderCredential::ServiceAccount {
                key,
                project_id,
                client_email,
                token_uri,
            } => {
                let tokens =
                    fcm::TokenSource::new(&token_uri, &client_email, key, self.tls.clone())
                        .map_err(|_| DeliveryError::CredentialInvalid("token_uri"))?;
                (
                    Provider::Fcm,
                    Kind::Fcm {
                        connection: connection(
                            &self.settings.fcm_endpoint,
                            self.tls.clone(),
                            Provider::Fcm,
                        )?,
                        tokens,
                        project_id,
                    },
                )
            }
        };
        Ok(Client {
            fingerprint,
            provider,
            places: Semaphore::new(self.settings.in_flight_per_credential.max(1)),
            kind,
        })
    }

    /// Counts a removal through `credential` if the guard lets it; warns once per burst
    /// when it does not.
    fn may_remove(&self, credential: CredentialSid) -> bool {
        let now = Instant::now();
        let mut health = self.health.lock().unwrap();
        if health.guard.allow(credential, now) {
            return true;
        }
        if health.guarded.insert(credential) {
            tracing::warn!(
                %credential,
                limit = self.settings.unregistered_per_minute,
                "more \"unregistered\" answers through this credential in a minute than \
                 delivery.guard.unregistered_per_minute: its bindings are kept, not removed \
                 (a sandbox token sent to production, or the wrong topic, answers so)"
            );
        }
        drop(health);
        self.set_health_gauge(&credential, now);
        false
    }

    fn fault(&self, credential: CredentialSid, reason: &str) {
        let fresh = self
            .health
            .lock()
            .unwrap()
            .faults
            .insert(credential, reason.to_owned())
            .is_none();
        if fresh {
            tracing::warn!(%credential, reason, "the provider refused this credential");
        }
        self.set_health_gauge(&credential, Instant::now());
    }

    fn healed(&self, credential: CredentialSid) {
        let was_faulty = self
            .health
            .lock()
            .unwrap()
            .faults
            .remove(&credential)
            .is_some();
        if was_faulty {
            self.set_health_gauge(&credential, Instant::now());
        }
    }

    fn healthy(&self, credential: &CredentialSid, now: Instant) -> bool {
        let mut health = self.health.lock().unwrap();
        let healthy =
            !health.faults.contains_key(credential) && health.guard.healthy(*credential, now);
        if healthy {
            health.guarded.remove(credential);
        }
        healthy
    }

    fn set_health_gauge(&self, credential: &CredentialSid, now: Instant) {
        let healthy = self.healthy(credential, now);
        self.metrics
            .credential_healthy
            .with_label_values(&[&credential.to_string()])
            .set(i64::from(healthy));
    }

    /// Sets the gauges that time alone may change: those of the credentials with removals in
    /// the guard's window, which it may fill or leave. Every other change of health (a fault,
    /// a delivery, a new client) sets its gauge as it happens, so the credentials without
    /// removals are not visited: with 10,000 idle clients, visiting each every second cost
    /// 8% of a core in `make bench`.
    fn refresh_health(&self) {
        let now = Instant::now();
        let mut watched: Vec<CredentialSid> = self.health.lock().unwrap().guard.watched().collect();
        // Not a deleted one's (`forget` removed its gauge).
        let clients = self.clients.lock().unwrap();
        watched.retain(|credential| clients.contains_key(credential));
        drop(clients);
        for credential in watched {
            self.set_health_gauge(&credential, now);
        }
    }
}

/// The kinds of credential that push to a binding of `binding_type`: `apn` for apn bindings;
/// `fcm` or `gcm` for either of those (CONTRACT §6).
pub fn kinds_serving(binding_type: BindingType) -> &'static [BindingType] {
    match binding_type {
        BindingType::Apn => &[BindingType::Apn],
        BindingType::Fcm | BindingType::Gcm => &[BindingType::Fcm, BindingType::Gcm],
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A number from 0 to 1 that spreads retries made together.
fn jitter() -> f64 {
    let bytes = crate::secrets::random_bytes();
    f64::from(u16::from_le_bytes([bytes[0], bytes[1]])) / f64::from(u16::MAX)
}
