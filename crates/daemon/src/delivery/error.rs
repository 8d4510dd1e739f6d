//! Why a push was not delivered, in words safe to show to any account and to write to the log.
//!
//! A transport's own errors carry what it was configured with: ureq prints the webhook's URL
//! (which may hold a token or a password), a D-Bus error the bus's address. So a transport
//! never passes one on; it says what kind of thing went wrong, from this closed list, and the
//! text of each is fixed here.

use bindery_domain::CredentialSid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// No answer: the connection failed, timed out, or broke (which of them, from ureq's kind).
    #[error("the sender could not be reached ({0})")]
    Unreachable(&'static str),
    /// The sender answered with a status that is neither success nor a verdict.
    #[error("the sender answered {0}")]
    Status(u16),
    /// The sender answered 410 Gone: the token is dead.
    #[error("the sender answered 410 Gone")]
    Gone,
    /// The sender's answer (with this status) carried `{"verdict": "unregistered"}`.
    #[error("the sender answered {0}: unregistered")]
    SaidUnregistered(u16),
    /// A transient failure that went on through every attempt.
    #[error("{last} (after {attempts} attempts)")]
    GaveUp {
        last: Box<DeliveryError>,
        attempts: u32,
    },
    /// The OAuth token endpoint refused the service account's grant (with this status).
    #[error("the token endpoint refused the credential ({0})")]
    TokenRefused(u16),
    #[error("no desktop notification server answered on the session bus")]
    Desktop,
    #[error("credential {0} missing")]
    CredentialMissing(CredentialSid),
    /// The binding names no credential, and its account has none or several of its kind.
    #[error("no credential")]
    NoCredential,
    /// The credential's secrets no longer make a sender (a certificate expired since), naming
    /// the field.
    #[error("the credential cannot push: {0}")]
    CredentialInvalid(&'static str),
    /// The provider's reason for refusing a push (`BadDeviceToken`, `UNREGISTERED`,
    /// `TooManyRequests`), or `HTTP <status>` when it gave none.
    #[error("{0}")]
    Rejected(String),
    /// The dead-token guard held this removal back (CONTRACT §6.4).
    #[error("unregistered_guard")]
    UnregisteredGuard,
    #[error("the dispatcher is not running")]
    DispatcherStopped,
}

impl DeliveryError {
    /// A provider's reason, kept only when it looks like one (a word of letters, digits and
    /// `_ .-`, as Apple's and Google's are), so that an answer cannot put a URL or a token
    /// into `results[].error` or the log.
    pub fn rejected(reason: &str) -> DeliveryError {
        let plausible = !reason.is_empty()
            && reason.len() <= 64
            && reason
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" _.-()".contains(&b));
        DeliveryError::Rejected(if plausible {
            reason.to_owned()
        } else {
            "the provider refused the push".to_owned()
        })
    }

    /// What kind of network failure ureq saw, without its message (which names the URL).
    pub(crate) fn unreachable(error: &ureq::Transport) -> DeliveryError {
        use ureq::ErrorKind::*;
        DeliveryError::Unreachable(match error.kind() {
            Dns => "the host name did not resolve",
            ConnectionFailed => "the connection failed",
            Io => "the connection broke or timed out",
            TooManyRedirects => "too many redirects",
            BadStatus | BadHeader => "its answer was not HTTP",
            InvalidUrl | UnknownScheme | InvalidProxyUrl | ProxyConnect | ProxyUnauthorized => {
                "the URL or proxy cannot be used"
            }
            _ => "a network error",
        })
    }
}
