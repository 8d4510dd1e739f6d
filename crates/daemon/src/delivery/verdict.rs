//! What a provider's answer means for a push, its binding and its credential (CONTRACT §6.4):
//! a pure function of the answer, table-tested, so the senders only carry answers here and act
//! on the verdict.
//!
//! Apple's reasons are in "Handling notification responses from APNs"; Google's in the FCM v1
//! `ErrorCode` reference. Where the two say the token is dead, the binding goes; where they
//! blame the credential (wrong key, wrong topic, wrong environment), the binding stays and the
//! credential is marked; where they blame the message, only this push fails; where they ask
//! to wait, it is tried again.

use std::time::Duration;

/// The most tries of one push, the first included.
pub const MAX_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Apns,
    Fcm,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Apns => "apns",
            Provider::Fcm => "fcm",
        }
    }
}

/// A provider's answer to one push, as far as its meaning goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer<'a> {
    pub status: u16,
    /// APNs's `reason`, or FCM's `errorCode` (else its `error.status`).
    pub reason: Option<&'a str>,
    /// The answer's `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
}

/// A provider's answer as a sender read it off the wire, owning its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAnswer {
    pub status: u16,
    pub reason: Option<String>,
    pub retry_after: Option<u64>,
}

impl ProviderAnswer {
    pub fn verdict(&self, provider: Provider) -> Verdict {
        classify(
            provider,
            &Answer {
                status: self.status,
                reason: self.reason.as_deref(),
                retry_after: self.retry_after,
            },
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// The token is dead: remove the binding (reason `token_invalid`, with the provider's).
    Unregistered {
        reason: String,
    },
    /// The provider refused our sign-in token: get a new one and try once more.
    RenewToken {
        reason: String,
    },
    /// The credential is at fault (key, certificate, topic, environment): keep the binding,
    /// mark the credential unhealthy.
    CredentialFault {
        reason: String,
    },
    /// This message is at fault (payload, priority, expiry): it fails alone.
    MessageFault {
        reason: String,
    },
    /// Try again later: at `retry_after` when the provider said, else after a backoff.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl Verdict {
    /// The reason shown in `results[].error` and the history: the provider's word, or the
    /// status when it gave none.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Verdict::Delivered => None,
            Verdict::Unregistered { reason }
            | Verdict::RenewToken { reason }
            | Verdict::CredentialFault { reason }
            | Verdict::MessageFault { reason }
            | Verdict::Transient { reason, .. } => Some(reason),
        }
    }
}

/// What an answer means.
pub fn classify(provider: Provider, answer: &Answer<'_>) -> Verdict {
    let reason = answer
        .reason
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {}", answer.status));
    if (200..300).contains(&answer.status) {
        return Verdict::Delivered;
    }
    if answer.status == 429 || answer.status >= 500 {
        return Verdict::Transient {
            reason,
            retry_after: answer.retry_after.map(Duration::from_secs),
        };
    }
    match provider {
        Provider::Apns => classify_apns(answer.status, reason),
        Provider::Fcm => classify_fcm(answer.status, reason),
    }
}

fn classify_apns(status: u16, reason: String) -> Verdict {
    match (status, reason.as_str()) {
        (410, _) | (400, "BadDeviceToken") => Verdict::Unregistered { reason },
        (403, "ExpiredProviderToken" | "InvalidProviderToken") => Verdict::RenewToken { reason },
        // The key, the certificate, or the app the credential is for.
        (403, _)
        | (400, "BadTopic" | "TopicDisallowed" | "DeviceTokenNotForTopic" | "MissingTopic") => {
            Verdict::CredentialFault { reason }
        }
        _ => Verdict::MessageFault { reason },
    }
}

fn classify_fcm(status: u16, reason: String) -> Verdict {
    match (status, reason.as_str()) {
        (404, _) | (_, "UNREGISTERED") => Verdict::Unregistered { reason },
        (401, _) => Verdict::RenewToken { reason },
        (403, _) | (_, "SENDER_ID_MISMATCH" | "THIRD_PARTY_AUTH_ERROR") => {
            Verdict::CredentialFault { reason }
        }
        _ => Verdict::MessageFault { reason },
    }
}

/// How long to wait before try `attempt` (2 for the first retry): the provider's
/// `Retry-After` when it gave one, else 1 s·2ⁿ⁻² with `jitter` (0 to 1) spreading it over
/// half to the whole of that, so that pushes failed together do not retry together.
pub fn backoff(attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    if let Some(wait) = retry_after {
        return wait;
    }
    let base = Duration::from_secs(1) * 2u32.saturating_pow(attempt.saturating_sub(2).min(10));
    base.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Provider::*;

    fn answer(status: u16, reason: Option<&str>) -> Answer<'_> {
        Answer {
            status,
            reason,
            retry_after: None,
        }
    }

    /// Every row of CONTRACT §6.4, and the faults the issue tells apart.
    #[test]
    fn each_answer_has_its_verdict() {
        let unregistered = |r: &str| Verdict::Unregistered { reason: r.into() };
        let renew = |r: &str| Verdict::RenewToken { reason: r.into() };
        let credential = |r: &str| Verdict::CredentialFault { reason: r.into() };
        let message = |r: &str| Verdict::MessageFault { reason: r.into() };
        let transient = |r: &str| Verdict::Transient {
            reason: r.into(),
            retry_after: None,
        };
        let table = [
            (Apns, 200, None, Verdict::Delivered),
            (Fcm, 200, None, Verdict::Delivered),
            (
                Apns,
                410,
                Some("Unregistered"),
                unregistered("Unregistered"),
            ),
            (
                Apns,
                410,
                Some("ExpiredToken"),
                unregistered("ExpiredToken"),
            ),
            (
                Apns,
                400,
                Some("BadDeviceToken"),
                unregistered("BadDeviceToken"),
            ),
            (Fcm, 404, Some("UNREGISTERED"), unregistered("UNREGISTERED")),
            (Fcm, 400, Some("UNREGISTERED"), unregistered("UNREGISTERED")),
            (
                Apns,
                429,
                Some("TooManyRequests"),
                transient("TooManyRequests"),
            ),
            (
                Fcm,
                429,
                Some("QUOTA_EXCEEDED"),
                transient("QUOTA_EXCEEDED"),
            ),
            (
                Apns,
                500,
                Some("InternalServerError"),
                transient("InternalServerError"),
            ),
            (
                Apns,
                503,
                Some("ServiceUnavailable"),
                transient("ServiceUnavailable"),
            ),
            (Fcm, 503, Some("UNAVAILABLE"), transient("UNAVAILABLE")),
            (Fcm, 502, None, transient("HTTP 502")),
            (
                Apns,
                403,
                Some("ExpiredProviderToken"),
                renew("ExpiredProviderToken"),
            ),
            (
                Apns,
                403,
                Some("InvalidProviderToken"),
                renew("InvalidProviderToken"),
            ),
            (Fcm, 401, Some("UNAUTHENTICATED"), renew("UNAUTHENTICATED")),
            (
                Apns,
                403,
                Some("BadCertificate"),
                credential("BadCertificate"),
            ),
            (
                Apns,
                403,
                Some("BadCertificateEnvironment"),
                credential("BadCertificateEnvironment"),
            ),
            (
                Apns,
                400,
                Some("DeviceTokenNotForTopic"),
                credential("DeviceTokenNotForTopic"),
            ),
            (
                Apns,
                400,
                Some("TopicDisallowed"),
                credential("TopicDisallowed"),
            ),
            (
                Fcm,
                403,
                Some("SENDER_ID_MISMATCH"),
                credential("SENDER_ID_MISMATCH"),
            ),
            (
                Fcm,
                401,
                Some("THIRD_PARTY_AUTH_ERROR"),
                renew("THIRD_PARTY_AUTH_ERROR"),
            ),
            (
                Fcm,
                400,
                Some("THIRD_PARTY_AUTH_ERROR"),
                credential("THIRD_PARTY_AUTH_ERROR"),
            ),
            (
                Apns,
                413,
                Some("PayloadTooLarge"),
                message("PayloadTooLarge"),
            ),
            (Apns, 400, Some("BadPriority"), message("BadPriority")),
            (
                Apns,
                400,
                Some("BadExpirationDate"),
                message("BadExpirationDate"),
            ),
            (
                Fcm,
                400,
                Some("INVALID_ARGUMENT"),
                message("INVALID_ARGUMENT"),
            ),
            (Apns, 405, None, message("HTTP 405")),
        ];
        for (provider, status, reason, expected) in table {
            assert_eq!(
                classify(provider, &answer(status, reason)),
                expected,
                "{provider:?} {status} {reason:?}"
            );
        }
    }

    #[test]
    fn a_retry_after_is_honoured_and_kept() {
        let busy = Answer {
            status: 429,
            reason: Some("TooManyRequests"),
            retry_after: Some(7),
        };
        let verdict = classify(Apns, &busy);
        let Verdict::Transient { retry_after, .. } = verdict else {
            panic!("{verdict:?}");
        };
        assert_eq!(retry_after, Some(Duration::from_secs(7)));
        assert_eq!(backoff(2, retry_after, 0.9), Duration::from_secs(7));
    }

    #[test]
    fn the_backoff_doubles_and_is_spread_by_its_jitter() {
        assert_eq!(backoff(2, None, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(3, None, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(3, None, 0.0), Duration::from_secs(1));
        assert_eq!(backoff(4, None, 0.5), Duration::from_secs(3));
        // Out-of-range jitter is clamped; a huge attempt number stays bounded.
        assert_eq!(backoff(2, None, 7.0), Duration::from_secs(1));
        assert!(backoff(u32::MAX, None, 1.0) <= Duration::from_secs(1024));
    }
}
