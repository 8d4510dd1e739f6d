//! `log`: one structured log line per push, the default. At `info` it says what was sent to
//! whom (binding, type, shortened address, identity); the message itself, a user's chat text,
//! only at `debug`.

use super::{Outcome, Push, Transport};

pub struct LogTransport;

impl Transport for LogTransport {
    fn name(&self) -> &'static str {
        "log"
    }

    fn deliver(&self, push: &Push) -> Outcome {
        tracing::info!(
            binding_sid = %push.binding_sid,
            binding_type = push.binding_type.as_str(),
            address = %push.address.redacted(),
            identity = push.identity.as_str(),
            message_type = push.message_type.as_str(),
            "push"
        );
        tracing::debug!(
            binding_sid = %push.binding_sid,
            title = push.title.as_deref().unwrap_or(""),
            body = %push.body,
            "push body"
        );
        Outcome::Delivered
    }
}
