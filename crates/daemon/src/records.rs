//! Delivery records [EXT]: what became of a notify's push to one binding (its status, error,
//! the provider's last HTTP status, the tries, the time it took), one record per notify and
//! binding, the newest [`KEPT_PER_BINDING`] kept per binding. A record, not an event: not in
//! the log, not replayed, not verified, not exported (see `store/deliveries.rs`). Written
//! through the writer with [`crate::Daemon::record_deliveries`]; read with
//! [`crate::queries::ReadView::deliveries`].

use bindery_domain::*;

use crate::delivery::{DeliveryError, Outcome};
use crate::notifications::Delivery;

/// The most records kept per binding; older ones are dropped as newer ones are written.
pub const KEPT_PER_BINDING: usize = 20;

/// What a record says became of the push: an [`Outcome`]'s label, or `pending` while the
/// push is still being retried (its record is then updated in place when it ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Delivered,
    Unregistered,
    Failed,
    Pending,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Unregistered => "unregistered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Pending => "pending",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Delivered,
            DeliveryStatus::Unregistered,
            DeliveryStatus::Failed,
            DeliveryStatus::Pending,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl From<&Outcome> for DeliveryStatus {
    /// The same word as [`Outcome::label`], which notify's answer shows.
    fn from(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Delivered => DeliveryStatus::Delivered,
            Outcome::Failed(_) => DeliveryStatus::Failed,
            Outcome::Unregistered(_) => DeliveryStatus::Unregistered,
            Outcome::Pending => DeliveryStatus::Pending,
        }
    }
}

/// One notify's push to one binding, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// The notify's SID, as its answer shows it.
    pub notification_sid: NotificationSid,
    pub binding_sid: BindingSid,
    pub service_sid: ServiceSid,
    pub account_sid: AccountSid,
    /// When the notify was made; an update of a pending record keeps the first one.
    pub date_created: Timestamp,
    pub status: DeliveryStatus,
    /// What went wrong, in [`DeliveryError`]'s words (never a URL, key or token).
    pub error: Option<String>,
    /// The HTTP status of the provider's (or sender's) last answer; `None` when none came.
    pub provider_status: Option<u16>,
    /// How many times the push was tried (0 when it was not: a credential missing).
    pub attempts: u32,
    /// From notify handing the push out to its outcome.
    pub latency_ms: u64,
}

impl DeliveryRecord {
    /// The record of `delivery`, one push of the notify `notification` made at `date_created`.
    pub fn of(
        notification: NotificationSid,
        account: AccountSid,
        service: ServiceSid,
        date_created: Timestamp,
        delivery: &Delivery,
    ) -> DeliveryRecord {
        let error = delivery.outcome.error().map(error_text);
        DeliveryRecord {
            notification_sid: notification,
            binding_sid: delivery.binding_sid,
            service_sid: service,
            account_sid: account,
            date_created,
            status: DeliveryStatus::from(&delivery.outcome),
            error,
            provider_status: delivery.provider_status,
            attempts: delivery.attempts,
            latency_ms: u64::try_from(delivery.latency.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// A delivery error's text: its `Display`, which names no URL, key or secret.
fn error_text(error: &DeliveryError) -> String {
    error.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_says_what_the_outcome_label_says() {
        for outcome in [
            Outcome::Delivered,
            Outcome::Failed(DeliveryError::Status(500)),
            Outcome::Unregistered(DeliveryError::Gone),
        ] {
            let status = DeliveryStatus::from(&outcome);
            assert_eq!(status.as_str(), outcome.label());
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(
            DeliveryStatus::parse("pending"),
            Some(DeliveryStatus::Pending)
        );
        assert_eq!(DeliveryStatus::parse("lost"), None);
    }
}
