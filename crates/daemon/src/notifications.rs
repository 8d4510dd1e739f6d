//! Notify: fan a message out to the bindings of the named users whose message types hold its
//! type, where the service enables that type, through the configured transport; remove the
//! bindings a transport reports unregistered, as provider feedback does; then record what
//! became of each push (`records.rs`).

use bindery_domain::notify::{configured, default_template, render, Priority, Variables};
use bindery_domain::*;

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::delivery::direct;
use crate::delivery::{Attempted, DeliveryError, Outcome, Push};
use crate::records::DeliveryRecord;
use crate::store::{Envelope, WriteError};
use crate::Daemon;

#[derive(Debug, Clone)]
pub struct NotifyRequest {
    /// Names the notify in its answer and its delivery records: from
    /// [`Daemon::new_notification_sid`].
    pub sid: NotificationSid,
    pub account: AccountSid,
    pub service: ServiceSid,
    pub identities: Vec<Identity>,
    /// Only this one of their bindings (the console's test push to one device); all when
    /// `None`.
    pub only_binding: Option<BindingSid>,
    pub message_type: MessageType,
    /// The text; without it the service's template for the type is rendered.
    pub body: Option<String>,
    pub title: Option<String>,
    pub sound: Option<String>,
    pub data: Option<serde_json::Value>,
    pub priority: Priority,
    /// Seconds the provider may hold the push for an unreachable device.
    pub ttl: Option<u32>,
    pub variables: Variables,
    pub request_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub binding_sid: BindingSid,
    pub binding_type: BindingType,
    pub outcome: Outcome,
    /// How many times the transport tried (0: not tried, e.g. its credential is missing).
    pub attempts: u32,
    /// The HTTP status of the provider's last answer, when one came.
    pub provider_status: Option<u16>,
    /// From notify handing the push out to its outcome (or to `pending`).
    pub latency: Duration,
}

#[derive(Debug, Clone)]
pub struct NotifyReport {
    /// Whether the service sends pushes of this type at all.
    pub enabled: bool,
    pub deliveries: Vec<Delivery>,
}

/// `load`'s answer for `key`, loaded the first time only.
fn once<K, V, E>(
    kept: &mut std::collections::HashMap<K, V>,
    key: K,
    load: impl FnOnce() -> Result<V, E>,
) -> Result<V, E>
where
    K: std::hash::Hash + Eq,
    V: Clone,
{
    if let Some(found) = kept.get(&key) {
        return Ok(found.clone());
    }
    let found = load()?;
    kept.insert(key, found.clone());
    Ok(found)
}

/// Which credential a binding's push goes through.
enum Pushing {
    With(Box<Credential>),
    /// The binding names a credential that was deleted.
    Missing(CredentialSid),
    /// It names none, and its account has none or several of the kind (direct transport).
    NoCredential,
}

impl Daemon {
    /// Acts on a push's final outcome: a binding the provider no longer knows is removed, as
    /// provider feedback removes it, with the provider's reason in its history.
    async fn finish(
        &self,
        account: AccountSid,
        service: ServiceSid,
        push: &Push,
        attempted: &Attempted,
        request_id: Option<String>,
    ) -> Result<(), WriteError> {
        let Outcome::Unregistered(reason) = &attempted.outcome else {
            return Ok(());
        };
        let provider_reason = match reason {
            DeliveryError::Rejected(reason) => Some(reason.clone()),
            _ => None,
        };
        let envelope = Envelope {
            command: Command::ReportInvalidAddress {
                account,
                service,
                binding_type: push.binding_type,
                address: push.address.clone(),
                provider_reason,
            },
            request_id,
            idempotency: None,
        };
        self.execute(envelope).await.map(|_| ())
    }

    /// Ends a push that was `pending` when its notify answered: acts on its outcome, and
    /// updates its delivery record in place.
    async fn finish_pending(
        &self,
        (notification, made, handed_out): (NotificationSid, Timestamp, Instant),
        (account, service): (AccountSid, ServiceSid),
        push: &Push,
        attempted: Attempted,
        request_id: Option<String>,
    ) {
        if let Err(e) = self
            .finish(account, service, push, &attempted, request_id)
            .await
        {
            // The binding stays; its next push is refused again, and removes it then.
            tracing::warn!(error = %e, binding = %push.binding_sid, "a dead token was not removed");
        }
        let delivery = Delivery {
            binding_sid: push.binding_sid,
            binding_type: push.binding_type,
            outcome: attempted.outcome,
            attempts: attempted.attempts,
            provider_status: attempted.provider_status,
            latency: handed_out.elapsed(),
        };
        let record = DeliveryRecord::of(notification, account, service, made, &delivery);
        if let Err(e) = self.record_deliveries(vec![record]).await {
            tracing::warn!(notification_sid = %notification, error = %e,
                "the delivery record of a pending push was not updated");
        }
    }

    pub async fn notify(&self, request: NotifyRequest) -> Result<NotifyReport, WriteError> {
        let made = self.clock().now();
        let (account, service, identities) =
            (request.account, request.service, request.identities.clone());
        let only_binding = request.only_binding;
        let sender = request.variables.user.clone();
        let direct = self.direct().is_some();
        let (service_row, targets, sender_name) = self.read(move |view| {
            let Some(service_row) = view.service(&account, &service)? else {
                return Ok((None, Vec::new(), None));
            };
            // The account's only credential of each kind, and the credentials bindings name,
            // each looked up once per notify.
            let mut only = std::collections::HashMap::new();
            let mut named = std::collections::HashMap::new();
            let mut targets = Vec::new();
            for identity in &identities {
                if let Some(user) =
                    view.user(&account, &service, &UserRef::Identity(identity.clone()))?
                {
                    for binding in view.bindings_of_user(&user.sid)? {
                        if only_binding.is_some_and(|only| only != binding.sid) {
                            continue;
                        }
                        let credential = match &binding.credential_sid {
                            Some(sid) => {
                                // Many bindings name the same credential: it is read once.
                                let found =
                                    once(&mut named, *sid, || view.credential(&account, sid))?;
                                match found {
                                    Some(credential) => Pushing::With(Box::new(credential)),
                                    None => Pushing::Missing(*sid),
                                }
                            }
                            None if direct => {
                                let kinds = direct::kinds_serving(binding.binding_type);
                                let found = once(&mut only, kinds, || {
                                    view.only_credential(&account, kinds)
                                })?;
                                found.map_or(Pushing::NoCredential, |c| Pushing::With(Box::new(c)))
                            }
                            None => Pushing::NoCredential,
                        };
                        targets.push((binding, credential));
                    }
                }
            }
            let sender_name = match Identity::parse(&sender) {
                Ok(identity) => view
                    .user(&account, &service, &UserRef::Identity(identity))?
                    .and_then(|u| u.friendly_name),
                Err(_) => None,
            };
            Ok((Some(service_row), targets, sender_name))
        })?;
        let service_row = service_row.ok_or(DomainError::ServiceNotFound(service))?;
        let notifications = &service_row.settings.notifications;
        if !notifications.enabled(request.message_type) {
            return Ok(NotifyReport {
                enabled: false,
                deliveries: Vec::new(),
            });
        }
        let (template, template_sound) = configured(notifications, request.message_type);
        let mut variables = request.variables.clone();
        if variables.user_friendly_name.is_empty() {
            variables.user_friendly_name = sender_name.unwrap_or_else(|| variables.user.clone());
        }
        let body = request.body.clone().unwrap_or_else(|| {
            render(
                template.unwrap_or(default_template(request.message_type)),
                &variables,
            )
        });
        let sound = request.sound.clone().or(template_sound.map(str::to_owned));
        let title = request
            .title
            .clone()
            .or_else(|| Some(service_row.friendly_name.clone()));

        // Every push's final outcome is waited for until then (direct transport).
        let deadline = self
            .direct()
            .map(|direct| tokio::time::Instant::now() + direct.deadline());
        let pending = targets
            .into_iter()
            .filter(|(binding, _)| binding.message_types.contains(request.message_type))
            .map(|(binding, credential)| {
                let push = Push {
                    binding_sid: binding.sid,
                    binding_type: binding.binding_type,
                    address: binding.address.clone(),
                    credential_sid: binding.credential_sid,
                    service_sid: service,
                    identity: binding.identity.clone(),
                    message_type: request.message_type,
                    title: title.clone(),
                    body: body.clone(),
                    sound: sound.clone(),
                    data: request.data.clone(),
                    priority: request.priority,
                    ttl: request.ttl,
                };
                let (request_id, notification) = (request.request_id.clone(), request.sid);
                async move {
                    // Runs when the fan-out hands the push out, not when it is queued.
                    let handed_out = Instant::now();
                    let attempted = match (credential, self.direct(), deadline) {
                        (Pushing::Missing(sid), _, _) => {
                            Attempted::untried(DeliveryError::CredentialMissing(sid))
                        }
                        (Pushing::With(credential), Some(direct), Some(deadline)) => {
                            let mut handle = direct.send(push.clone(), *credential);
                            match tokio::time::timeout_at(deadline, &mut handle).await {
                                Ok(Ok(attempted)) => attempted,
                                Ok(Err(_)) => Attempted::untried(DeliveryError::DispatcherStopped),
                                Err(_) => {
                                    // It goes on; what it ends with is acted on then.
                                    let (daemon, push) = (self.clone(), push.clone());
                                    tokio::spawn(async move {
                                        let Ok(attempted) = handle.await else { return };
                                        daemon
                                            .finish_pending(
                                                (notification, made, handed_out),
                                                (account, service),
                                                &push,
                                                attempted,
                                                request_id,
                                            )
                                            .await;
                                    });
                                    Attempted {
                                        outcome: Outcome::Pending,
                                        attempts: 1,
                                        provider_status: None,
                                    }
                                }
                            }
                        }
                        (Pushing::NoCredential, Some(_), _) => {
                            Attempted::untried(DeliveryError::NoCredential)
                        }
                        _ => self.deliver(push.clone()).await,
                    };
                    (push, attempted, handed_out.elapsed())
                }
            });
        let delivered: Vec<(Push, Attempted, Duration)> = futures_util::stream::iter(pending)
            .buffered(self.fan_out())
            .collect()
            .await;
        let mut deliveries = Vec::with_capacity(delivered.len());
        for (push, attempted, latency) in delivered {
            self.finish(
                account,
                service,
                &push,
                &attempted,
                request.request_id.clone(),
            )
            .await?;
            deliveries.push(Delivery {
                binding_sid: push.binding_sid,
                binding_type: push.binding_type,
                outcome: attempted.outcome,
                attempts: attempted.attempts,
                provider_status: attempted.provider_status,
                latency,
            });
        }
        let records = deliveries
            .iter()
            .map(|d| DeliveryRecord::of(request.sid, account, service, made, d))
            .collect();
        // The pushes went out whatever becomes of their records: a failure here is logged,
        // and the answer still says what was delivered.
        if let Err(e) = self.record_deliveries(records).await {
            tracing::warn!(
                notification_sid = %request.sid,
                error = %e,
                "delivery records not written"
            );
        }
        Ok(NotifyReport {
            enabled: true,
            deliveries,
        })
    }
}
