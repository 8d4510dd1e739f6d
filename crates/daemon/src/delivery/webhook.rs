//! `webhook`: POSTs each push as JSON to a sender (gorush, or the chat backend itself) that
//! talks to APNs or FCM. A 2xx delivers; a 410, or a JSON answer `{"verdict": "unregistered"}`,
//! says the token is dead; 5xx and network errors are retried a bounded number of times.

use std::time::Duration;

use super::{Outcome, Push, Transport};

pub struct Webhook {
    url: String,
    agent: ureq::Agent,
    retries: u32,
}

impl Webhook {
    pub fn new(url: &str, timeout: Duration, retries: u32) -> Result<Webhook, String> {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "delivery.webhook.url must be an http:// or https:// URL, not {url:?}"
            ));
        }
        let agent = ureq::AgentBuilder::new().timeout(timeout).build();
        Ok(Webhook {
            url: url.to_owned(),
            agent,
            retries,
        })
    }

    fn attempt(&self, push: &Push) -> Result<Outcome, String> {
        let unregistered = |response: ureq::Response| {
            let body = response.into_json::<serde_json::Value>().ok();
            body.is_some_and(|b| b.get("verdict").and_then(|v| v.as_str()) == Some("unregistered"))
        };
        match self.agent.post(&self.url).send_json(push) {
            Ok(response) => Ok(if unregistered(response) {
                Outcome::Unregistered("the sender said unregistered".into())
            } else {
                Outcome::Delivered
            }),
            Err(ureq::Error::Status(410, _)) => {
                Ok(Outcome::Unregistered("the sender answered 410 Gone".into()))
            }
            Err(ureq::Error::Status(status, response)) if status < 500 => {
                Ok(if unregistered(response) {
                    Outcome::Unregistered(format!("the sender answered {status}: unregistered"))
                } else {
                    Outcome::Failed(format!("the sender answered {status}"))
                })
            }
            Err(ureq::Error::Status(status, _)) => Err(format!("the sender answered {status}")),
            Err(e) => Err(format!("the sender could not be reached: {e}")),
        }
    }
}

impl Transport for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn deliver(&self, push: &Push) -> Outcome {
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(100 << attempt.min(5)));
            }
            match self.attempt(push) {
                Ok(outcome) => return outcome,
                Err(error) => last = error,
            }
        }
        Outcome::Failed(format!("{last} (after {} attempts)", self.retries + 1))
    }
}
