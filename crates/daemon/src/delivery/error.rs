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
    #[error("the dispatcher is not running")]
    DispatcherStopped,
}

impl DeliveryError {
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
