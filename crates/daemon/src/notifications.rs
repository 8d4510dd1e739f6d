//! Notify: fan a message out to the bindings of the named users whose message types hold its
//! type, where the service enables that type, through the configured transport; remove the
//! bindings a transport reports unregistered, as provider feedback does.

use bindery_domain::notify::{configured, default_template, render, Priority, Variables};
use bindery_domain::*;

use futures_util::StreamExt;

use crate::delivery::direct::{self, Sent};
use crate::delivery::{DeliveryError, Outcome, Push};
use crate::store::Envelope;
use crate::store::WriteError;
use crate::Daemon;

#[derive(Debug, Clone)]
pub struct NotifyRequest {
    pub account: AccountSid,
    pub service: ServiceSid,
    pub identities: Vec<Identity>,
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
    /// The HTTP status of the provider's last answer (direct transport).
    pub provider_status: Option<u16>,
    /// Tries made.
    pub attempts: u32,
    /// From the push being handed out to its outcome (or to `pending`).
    pub latency: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct NotifyReport {
    /// Whether the service sends pushes of this type at all.
    pub enabled: bool,
    pub deliveries: Vec<Delivery>,
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
        sent: &Sent,
        request_id: Option<String>,
    ) -> Result<(), WriteError> {
        let Outcome::Unregistered(reason) = &sent.outcome else {
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

    pub async fn notify(&self, request: NotifyRequest) -> Result<NotifyReport, WriteError> {
        let (account, service, identities) =
            (request.account, request.service, request.identities.clone());
        let sender = request.variables.user.clone();
        let direct = self.direct().is_some();
        let (service_row, targets, sender_name) = self.read(move |view| {
            let Some(service_row) = view.service(&account, &service)? else {
                return Ok((None, Vec::new(), None));
            };
            // The account's only credential of each kind, looked up once per notify.
            let mut only = std::collections::HashMap::new();
            let mut targets = Vec::new();
            for identity in &identities {
                if let Some(user) =
                    view.user(&account, &service, &UserRef::Identity(identity.clone()))?
                {
                    for binding in view.bindings_of_user(&user.sid)? {
                        let credential = match &binding.credential_sid {
                            Some(sid) => match view.credential(&account, sid)? {
                                Some(credential) => Pushing::With(Box::new(credential)),
                                None => Pushing::Missing(*sid),
                            },
                            None if direct => {
                                let kinds = direct::kinds_serving(binding.binding_type);
                                let found = match only.get(&kinds) {
                                    Some(found) => Clone::clone(found),
                                    None => {
                                        let found = view.only_credential(&account, kinds)?;
                                        only.insert(kinds, found.clone());
                                        found
                                    }
                                };
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
                let request_id = request.request_id.clone();
                async move {
                    let started = std::time::Instant::now();
                    let sent = match (credential, self.direct(), deadline) {
                        (Pushing::Missing(sid), _, _) => {
                            Sent::failed(DeliveryError::CredentialMissing(sid))
                        }
                        (Pushing::With(credential), Some(direct), Some(deadline)) => {
                            let mut handle = direct.send(push.clone(), *credential);
                            match tokio::time::timeout_at(deadline, &mut handle).await {
                                Ok(Ok(sent)) => sent,
                                Ok(Err(_)) => Sent::failed(DeliveryError::DispatcherStopped),
                                Err(_) => {
                                    // It goes on; what it ends with is acted on then.
                                    let (daemon, push) = (self.clone(), push.clone());
                                    tokio::spawn(async move {
                                        let Ok(sent) = handle.await else { return };
                                        let finished = daemon
                                            .finish(account, service, &push, &sent, request_id)
                                            .await;
                                        if let Err(e) = finished {
                                            // The binding stays; its next push is refused
                                            // again, and removes it then.
                                            tracing::warn!(error = %e, binding = %push.binding_sid,
                                                "a dead token was not removed");
                                        }
                                    });
                                    Sent {
                                        outcome: Outcome::Pending,
                                        provider_status: None,
                                        attempts: 1,
                                    }
                                }
                            }
                        }
                        (Pushing::NoCredential, Some(_), _) => {
                            Sent::failed(DeliveryError::NoCredential)
                        }
                        _ => Sent {
                            outcome: self.deliver(push.clone()).await,
                            provider_status: None,
                            attempts: 1,
                        },
                    };
                    (push, sent, started.elapsed())
                }
            });
        let delivered: Vec<(Push, Sent, std::time::Duration)> = futures_util::stream::iter(pending)
            .buffered(self.fan_out())
            .collect()
            .await;
        let mut deliveries = Vec::with_capacity(delivered.len());
        for (push, sent, latency) in delivered {
            self.finish(account, service, &push, &sent, request.request_id.clone())
                .await?;
            deliveries.push(Delivery {
                binding_sid: push.binding_sid,
                binding_type: push.binding_type,
                outcome: sent.outcome,
                provider_status: sent.provider_status,
                attempts: sent.attempts,
                latency,
            });
        }
        Ok(NotifyReport {
            enabled: true,
            deliveries,
        })
    }
}
