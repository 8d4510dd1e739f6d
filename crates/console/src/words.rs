//! What the log and the delivery records say, in the words of a person: why a device left
//! ("moved to bob's phone", "Apple said the token is no longer valid", "not refreshed for 60
//! days"), and what a push's outcome means.

use std::time::Duration;

use bindery_daemon::records::DeliveryStatus;
use bindery_domain::{BindingRemoval, BindingType, Event, UserRemoval};

/// Who runs the push service a binding type goes through.
pub fn provider(binding_type: Option<BindingType>) -> &'static str {
    match binding_type {
        Some(BindingType::Apn) => "Apple",
        Some(BindingType::Fcm) => "Firebase",
        Some(BindingType::Gcm) => "Google",
        None => "The push provider",
    }
}

/// A binding type as people name it.
pub fn kind(binding_type: BindingType) -> &'static str {
    match binding_type {
        BindingType::Apn => "Apple (APNs)",
        BindingType::Fcm => "Firebase (FCM)",
        BindingType::Gcm => "Google (GCM)",
    }
}

/// What is known of a binding that an event names, besides the event.
#[derive(Debug, Clone, Default)]
pub struct BindingFacts {
    pub binding_type: Option<BindingType>,
    /// The device's endpoint, when known.
    pub endpoint: Option<String>,
}

/// What the other side of a move is: the user that took the address, and its device.
#[derive(Debug, Clone, Default)]
pub struct MovedTo {
    pub identity: Option<String>,
    pub endpoint: Option<String>,
    /// Whether it is the same user (a re-install that registered a new endpoint).
    pub same_user: bool,
}

/// One event of a user's timeline, as a sentence.
pub fn event(
    event: &Event,
    facts: &BindingFacts,
    moved_to: Option<&MovedTo>,
    new_token: bool,
    stale_after: Duration,
) -> String {
    match event {
        Event::UserCreated { identity, .. } => format!("User “{}” created.", identity.as_str()),
        Event::UserUpdated { .. } => "The user's name, attributes or role changed.".into(),
        Event::UserDeleted { reason } => match reason {
            UserRemoval::Api => "The user was deleted through the API.".into(),
            UserRemoval::ServiceDeleted => "The user was removed with its service.".into(),
        },
        Event::BindingRegistered {
            binding_type,
            endpoint,
            ..
        } => format!(
            "A device registered for {} pushes, endpoint “{}”.",
            kind(*binding_type),
            endpoint.as_str()
        ),
        Event::BindingUpdated { .. } => {
            if new_token {
                "The device registered again with a new token.".into()
            } else {
                "The device registered again (refreshed).".into()
            }
        }
        Event::BindingSuperseded { .. } => {
            let to = moved_to.cloned().unwrap_or_default();
            let device = to
                .endpoint
                .map(|e| format!("device “{e}”"))
                .unwrap_or_else(|| "device".into());
            match (to.same_user, to.identity) {
                (true, _) => format!(
                    "Replaced: its token was registered again by this user's {device}, so it moved there."
                ),
                (false, Some(identity)) => format!(
                    "Moved to {identity}'s {device}: the same token was registered for {identity}, \
                     and a token belongs to one device."
                ),
                (false, None) => format!(
                    "Moved to another user's {device}: the same token was registered for them."
                ),
            }
        }
        Event::BindingDeleted {
            reason,
            provider_reason,
        } => match reason {
            BindingRemoval::Api => "Deleted through the API.".into(),
            BindingRemoval::UserDeleted => "Removed with its user.".into(),
            BindingRemoval::ServiceDeleted => "Removed with its service.".into(),
            BindingRemoval::Expired => format!(
                "Expired: not refreshed for {}, so the registry let it go.",
                span(stale_after)
            ),
            BindingRemoval::TokenInvalid => match provider_reason {
                Some(said) => format!(
                    "{} said the token is no longer valid ({said}: {}), so it was removed.",
                    provider(facts.binding_type),
                    provider_error(said)
                ),
                None => "A sender reported the token as no longer valid (feedback), so it was \
                         removed."
                    .into(),
            },
        },
        _ => event.type_name().to_owned(),
    }
}

/// A duration as people say it: "60 days", "12 hours", "90 seconds".
pub fn span(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let (count, unit) = if seconds >= 86_400 && seconds.is_multiple_of(86_400) {
        (seconds / 86_400, "day")
    } else if seconds >= 3600 && seconds.is_multiple_of(3600) {
        (seconds / 3600, "hour")
    } else if seconds >= 60 && seconds.is_multiple_of(60) {
        (seconds / 60, "minute")
    } else {
        (seconds, "second")
    };
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

/// A delivery's outcome, in the words of CONTRACT §6.4, and what it means.
pub fn outcome(status: DeliveryStatus) -> (&'static str, &'static str) {
    match status {
        DeliveryStatus::Delivered => (
            "delivered",
            "The provider accepted the push for the device.",
        ),
        DeliveryStatus::Failed => (
            "failed",
            "The push did not go through; the device is kept and the next push tries again.",
        ),
        DeliveryStatus::Unregistered => (
            "unregistered",
            "The provider said the token is no longer valid; the device was removed.",
        ),
        DeliveryStatus::Pending => (
            "pending",
            "Still being retried when the answer was due; the outcome is recorded when it ends.",
        ),
    }
}

/// What a delivery's error means, for the errors people meet.
pub fn delivery_error(error: &str) -> String {
    let known = provider_error(error);
    if known.is_empty() {
        error.to_owned()
    } else {
        format!("{error}: {known}")
    }
}

/// What a provider's reason (or Bindery's own error word) means; empty when it is not one
/// of those.
pub fn provider_error(reason: &str) -> &'static str {
    match reason {
        "BadDeviceToken" => {
            "Apple does not know this token; often a development token sent to production, \
             or the reverse"
        }
        "Unregistered" => "the app is no longer on the device, or no longer allows pushes",
        "ExpiredToken" => "the token expired",
        "DeviceTokenNotForTopic" | "TopicDisallowed" => {
            "the token belongs to another app than the credential's topic"
        }
        "UNREGISTERED" => {
            "the app instance is no longer registered (uninstalled, or its token changed)"
        }
        "INVALID_ARGUMENT" => "the provider refused the token or the message as malformed",
        "SENDER_ID_MISMATCH" => "the token belongs to another Firebase project",
        "TooManyRequests" | "QUOTA_EXCEEDED" => {
            "the provider is throttling pushes to this device or app"
        }
        "ExpiredProviderToken" | "InvalidProviderToken" | "THIRD_PARTY_AUTH_ERROR" => {
            "the provider refused the credential's key"
        }
        "unregistered_guard" => {
            "held back: too many devices were rejected through this credential within a minute, \
             so Bindery kept this one rather than remove it"
        }
        "no credential" => {
            "the device names no credential, and the account has none (or several) of its kind"
        }
        _ => "",
    }
}
