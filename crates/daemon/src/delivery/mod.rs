//! Delivery: a push for one binding goes to the configured transport, one module each
//! (`log`, `desktop`, `webhook`), from the dispatcher actors' threads, never from an HTTP
//! worker. A transport answers delivered, failed, or unregistered (the provider says the token
//! is dead, which removes the binding as feedback does).

pub mod apns;
pub mod credential;
mod desktop;
pub mod direct;
mod error;
pub mod fcm;
pub mod guard;
pub mod http2;
pub mod jwt;
mod log;
pub mod payload;
pub mod verdict;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bindery_domain::notify::Priority;
use bindery_domain::{
    BindingSid, BindingType, CredentialSid, Identity, MessageType, PushAddress, ServiceSid,
};
use serde::Serialize;

use crate::metrics::Metrics;

pub use desktop::Desktop;
pub use error::DeliveryError;
pub use log::LogTransport;
pub use webhook::Webhook;

/// The most of a provider's or a sender's answer read: a reason or a verdict is a few bytes,
/// and an endless answer must not hold a dispatcher or fill memory.
pub const ANSWER_LIMIT: usize = 64 * 1024;

/// One push to one device.
#[derive(Debug, Clone, Serialize)]
pub struct Push {
    pub binding_sid: BindingSid,
    pub binding_type: BindingType,
    pub address: PushAddress,
    pub credential_sid: Option<CredentialSid>,
    pub service_sid: ServiceSid,
    pub identity: Identity,
    #[serde(rename = "type")]
    pub message_type: MessageType,
    pub title: Option<String>,
    pub body: String,
    pub sound: Option<String>,
    pub data: Option<serde_json::Value>,
    pub priority: Priority,
    /// Seconds the provider may hold the push for an unreachable device.
    pub ttl: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Failed(DeliveryError),
    /// The provider no longer knows the token.
    Unregistered(DeliveryError),
    /// Still being tried at `delivery.deadline`; it finishes in the background.
    Pending,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Failed(_) => "failed",
            Outcome::Unregistered(_) => "unregistered",
            Outcome::Pending => "pending",
        }
    }

    /// Why it was not delivered, if it was not.
    pub fn error(&self) -> Option<&DeliveryError> {
        match self {
            Outcome::Failed(e) | Outcome::Unregistered(e) => Some(e),
            Outcome::Delivered | Outcome::Pending => None,
        }
    }
}

pub trait Transport: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// Delivers one push, blocking until the transport has an answer.
    fn deliver(&self, push: &Push) -> Outcome;
    /// [`Transport::deliver`], with what a delivery record shows of the tries: a transport
    /// that retries or hears an HTTP status says so here; the others tried once, over no HTTP.
    fn deliver_attempted(&self, push: &Push) -> Attempted {
        Attempted::once(self.deliver(push))
    }
}

/// A push's outcome with the number of tries it took and the HTTP status of the last answer
/// that came (none when no answer came, or the transport speaks no HTTP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempted {
    pub outcome: Outcome,
    pub attempts: u32,
    pub provider_status: Option<u16>,
}

impl Attempted {
    /// One try, with no HTTP status: the `log` and `desktop` transports.
    pub fn once(outcome: Outcome) -> Attempted {
        Attempted {
            outcome,
            attempts: 1,
            provider_status: None,
        }
    }

    /// Not tried at all (the credential is missing, the dispatcher stopped).
    pub fn untried(error: DeliveryError) -> Attempted {
        Attempted {
            outcome: Outcome::Failed(error),
            attempts: 0,
            provider_status: None,
        }
    }
}

/// Which transport `delivery.transport` names, with its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportSettings {
    Log,
    Desktop,
    Webhook {
        url: String,
        timeout: Duration,
        retries: u32,
        /// Signs each POST (`X-Bindery-Signature`) when set.
        secret: Option<String>,
    },
    /// Straight to APNs and FCM, asynchronously, without the dispatchers.
    Direct(direct::DirectSettings),
}

/// Builds the configured transport, checking at start-up what it needs (a session bus for
/// `desktop`, an http(s) URL for `webhook`).
pub fn transport(settings: &TransportSettings) -> Result<Arc<dyn Transport>, String> {
    Ok(match settings {
        TransportSettings::Log => Arc::new(LogTransport),
        TransportSettings::Desktop => Arc::new(Desktop::connect()?),
        TransportSettings::Webhook {
            url,
            timeout,
            retries,
            secret,
        } => Arc::new(Webhook::new(url, *timeout, *retries, secret.as_deref())?),
        TransportSettings::Direct(_) => {
            return Err(
                "the direct transport is no dispatcher transport: see DaemonOptions::direct".into(),
            )
        }
    })
}

/// A pool of threads that deliver pushes, so that a slow provider never holds an HTTP worker.
pub struct Dispatcher {
    transport: Arc<dyn Transport>,
    metrics: Metrics,
}

impl Dispatcher {
    pub fn new(transport: Arc<dyn Transport>, metrics: Metrics) -> Self {
        Dispatcher { transport, metrics }
    }
}

impl Actor for Dispatcher {
    type Context = SyncContext<Self>;
}

pub struct Deliver(pub Push);

impl Message for Deliver {
    type Result = Attempted;
}

impl Handler<Deliver> for Dispatcher {
    type Result = MessageResult<Deliver>;

    fn handle(&mut self, Deliver(push): Deliver, _: &mut Self::Context) -> Self::Result {
        let attempted = self.transport.deliver_attempted(&push);
        self.metrics
            .deliveries
            .with_label_values(&[self.transport.name(), attempted.outcome.label()])
            .inc();
        MessageResult(attempted)
    }
}
