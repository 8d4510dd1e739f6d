//! `webhook`: POSTs each push as JSON to a sender (gorush, or the chat backend itself) that
//! talks to APNs or FCM. A 2xx delivers; a 410, or a JSON answer `{"verdict": "unregistered"}`,
//! says the token is dead; 5xx and network errors are retried a bounded number of times.
//!
//! The URL may carry a token or a password, so it never appears in an outcome or a log line
//! (ureq's errors print it: they are reduced to a [`DeliveryError`]), and the sender's answer is
//! read only up to [`ANSWER_LIMIT`] bytes.

use std::io::Read;
use std::time::Duration;

use super::{DeliveryError, Outcome, Push, Transport};

/// The most of a sender's answer read, to look for a verdict; a verdict is a few bytes.
pub const ANSWER_LIMIT: u64 = 64 * 1024;

pub struct Webhook {
    url: String,
    agent: ureq::Agent,
    retries: u32,
}

impl Webhook {
    pub fn new(url: &str, timeout: Duration, retries: u32) -> Result<Webhook, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            // Not echoed: the value may hold a secret.
            return Err("delivery.webhook.url must be an http:// or https:// URL".into());
        }
        let agent = ureq::AgentBuilder::new().timeout(timeout).build();
        Ok(Webhook {
            url: url.to_owned(),
            agent,
            retries,
        })
    }

    /// One POST. `Err` is a failure worth retrying (5xx, no answer).
    fn attempt(&self, push: &Push) -> Result<Outcome, DeliveryError> {
        match self.agent.post(&self.url).send_json(push) {
            Ok(response) => Ok(if says_unregistered(response) {
                Outcome::Unregistered(DeliveryError::SaidUnregistered(200))
            } else {
                Outcome::Delivered
            }),
            Err(ureq::Error::Status(410, _)) => Ok(Outcome::Unregistered(DeliveryError::Gone)),
            Err(ureq::Error::Status(status, response)) if status < 500 => {
                Ok(if says_unregistered(response) {
                    Outcome::Unregistered(DeliveryError::SaidUnregistered(status))
                } else {
                    Outcome::Failed(DeliveryError::Status(status))
                })
            }
            Err(ureq::Error::Status(status, _)) => Err(DeliveryError::Status(status)),
            Err(ureq::Error::Transport(e)) => Err(DeliveryError::unreachable(&e)),
        }
    }
}

/// Whether the answer's JSON body says `{"verdict": "unregistered"}`, reading at most
/// [`ANSWER_LIMIT`] bytes of it (a longer answer is no verdict).
fn says_unregistered(response: ureq::Response) -> bool {
    let mut body = Vec::new();
    let read = response
        .into_reader()
        .take(ANSWER_LIMIT + 1)
        .read_to_end(&mut body);
    if read.is_err() || body.len() as u64 > ANSWER_LIMIT {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(&body)
        .is_ok_and(|b| b.get("verdict").and_then(|v| v.as_str()) == Some("unregistered"))
}

impl Transport for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn deliver(&self, push: &Push) -> Outcome {
        let mut last = DeliveryError::Unreachable("no attempt made");
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(100 << attempt.min(5)));
            }
            match self.attempt(push) {
                Ok(outcome) => return outcome,
                Err(error) => last = error,
            }
        }
        Outcome::Failed(DeliveryError::GaveUp {
            last: Box::new(last),
            attempts: self.retries + 1,
        })
    }
}
