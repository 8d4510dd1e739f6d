//! `webhook`: POSTs each push as JSON to a sender (gorush, or the chat backend itself) that
//! talks to APNs or FCM. A 2xx delivers; a 410, or a JSON answer `{"verdict": "unregistered"}`,
//! says the token is dead; 5xx and network errors are retried a bounded number of times.
//!
//! With `delivery.webhook.secret` set, each POST carries `X-Bindery-Signature: t=<unix
//! seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, so a sender can check that a push came from
//! this Bindery and is recent (the scheme Stripe's webhooks use).
//!
//! The URL may carry a token or a password, so it never appears in an outcome or a log line
//! (ureq's errors print it: they are reduced to a [`DeliveryError`]), and the sender's answer is
//! read only up to [`ANSWER_LIMIT`] bytes.

use std::io::Read;
use std::time::Duration;

use super::{Attempted, DeliveryError, Outcome, Push, Transport, ANSWER_LIMIT};

pub struct Webhook {
    url: String,
    agent: ureq::Agent,
    retries: u32,
    signing: Option<ring::hmac::Key>,
}

impl Webhook {
    pub fn new(
        url: &str,
        timeout: Duration,
        retries: u32,
        secret: Option<&str>,
    ) -> Result<Webhook, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            // Not echoed: the value may hold a secret.
            return Err("delivery.webhook.url must be an http:// or https:// URL".into());
        }
        let agent = ureq::AgentBuilder::new().timeout(timeout).build();
        if secret.is_some_and(str::is_empty) {
            return Err("delivery.webhook.secret, when set, must not be empty".into());
        }
        Ok(Webhook {
            url: url.to_owned(),
            agent,
            retries,
            signing: secret.map(|s| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.as_bytes())),
        })
    }

    /// The `X-Bindery-Signature` of `body` sent at `unix_seconds`.
    fn signature(key: &ring::hmac::Key, unix_seconds: u64, body: &[u8]) -> String {
        let mut context = ring::hmac::Context::with_key(key);
        context.update(format!("{unix_seconds}.").as_bytes());
        context.update(body);
        format!(
            "t={unix_seconds},v1={}",
            hex::encode(context.sign().as_ref())
        )
    }

    /// One POST: the status of the answer, if one came, and what it means; `Err` is a
    /// failure worth retrying (5xx, no answer).
    fn attempt(&self, push: &Push) -> (Option<u16>, Result<Outcome, DeliveryError>) {
        let body = serde_json::to_vec(push).expect("a push serializes");
        let mut request = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json");
        if let Some(key) = &self.signing {
            // Signed anew on each attempt, so a retry carries a fresh time.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            request = request.set("X-Bindery-Signature", &Self::signature(key, now, &body));
        }
        match request.send_bytes(&body) {
            Ok(response) => {
                let status = response.status();
                let outcome = if says_unregistered(response) {
                    Outcome::Unregistered(DeliveryError::SaidUnregistered(200))
                } else {
                    Outcome::Delivered
                };
                (Some(status), Ok(outcome))
            }
            Err(ureq::Error::Status(410, _)) => {
                (Some(410), Ok(Outcome::Unregistered(DeliveryError::Gone)))
            }
            Err(ureq::Error::Status(status, response)) if status < 500 => {
                let outcome = if says_unregistered(response) {
                    Outcome::Unregistered(DeliveryError::SaidUnregistered(status))
                } else {
                    Outcome::Failed(DeliveryError::Status(status))
                };
                (Some(status), Ok(outcome))
            }
            Err(ureq::Error::Status(status, _)) => {
                (Some(status), Err(DeliveryError::Status(status)))
            }
            Err(ureq::Error::Transport(e)) => (None, Err(DeliveryError::unreachable(&e))),
        }
    }
}

/// Whether the answer's JSON body says `{"verdict": "unregistered"}`, reading at most
/// [`ANSWER_LIMIT`] bytes of it (a longer answer is no verdict).
fn says_unregistered(response: ureq::Response) -> bool {
    let mut body = Vec::new();
    let read = response
        .into_reader()
        .take(ANSWER_LIMIT as u64 + 1)
        .read_to_end(&mut body);
    if read.is_err() || body.len() > ANSWER_LIMIT {
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
        self.deliver_attempted(push).outcome
    }

    fn deliver_attempted(&self, push: &Push) -> Attempted {
        let mut last = DeliveryError::Unreachable("no attempt made");
        // The last answer's status: a try that got none (a timeout) keeps the one before.
        let mut provider_status = None;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(100 << attempt.min(5)));
            }
            let (status, result) = self.attempt(push);
            provider_status = status.or(provider_status);
            match result {
                Ok(outcome) => {
                    return Attempted {
                        outcome,
                        attempts: attempt + 1,
                        provider_status,
                    }
                }
                Err(error) => last = error,
            }
        }
        Attempted {
            outcome: Outcome::Failed(DeliveryError::GaveUp {
                last: Box::new(last),
                attempts: self.retries + 1,
            }),
            attempts: self.retries + 1,
            provider_status,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_the_time_and_the_body() {
        // RFC 4231 test case 2's key and message, split as "<t>." and the body.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"Jefe");
        let signed = Webhook::signature(&key, 1, b"what do ya want for nothing?");
        let expected = ring::hmac::sign(&key, b"1.what do ya want for nothing?");
        assert_eq!(signed, format!("t=1,v1={}", hex::encode(expected.as_ref())));
        assert_ne!(
            signed,
            Webhook::signature(&key, 2, b"what do ya want for nothing?")
        );
    }
}
