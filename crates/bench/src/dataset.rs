//! Generated logs in `bindery export`'s format (one JSON event per line), for `bindery import`:
//! one account, one service, `users` users each with `per_user` bindings. Writing a million
//! bindings through the API would take minutes; importing them takes seconds, and the log is
//! the same one the API would have written (`bindery verify` checks it).
//!
//! Naming is shared with the registration load so that the same requests work on both: user
//! `u{k}`, its `j`-th device at endpoint `e{j}` with type `TYPES[j % 3]`.

use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::load::mix;

pub const TYPES: [&str; 3] = ["apn", "fcm", "gcm"];

pub const MESSAGE_TYPES: &str =
    r#"["new_message","added_to_channel","invited_to_channel","removed_from_channel"]"#;

/// The settings a service is created with, exactly as `POST /v2/Services` records them.
const SERVICE_SETTINGS: &str = r#"{"consumption_report_interval":10,"default_channel_creator_role_sid":null,"default_channel_role_sid":null,"default_service_role_sid":null,"limits":{"channel_members":100,"user_channels":250},"media":{"compatibility_message":null,"size_limit_mb":150},"notifications":{"added_to_channel":{"enabled":false,"sound":null,"template":null},"invited_to_channel":{"enabled":false,"sound":null,"template":null},"log_enabled":false,"new_message":{"badge_count_enabled":false,"enabled":false,"sound":null,"template":null},"removed_from_channel":{"enabled":false,"sound":null,"template":null}},"post_webhook_retry_count":0,"post_webhook_url":null,"pre_webhook_retry_count":0,"pre_webhook_url":null,"reachability_enabled":false,"read_status_enabled":true,"typing_indicator_timeout":5,"webhook_filters":[],"webhook_method":null}"#;

/// A device token: 64 hex digits like an APNs token, unique per binding number `n`.
pub fn address(n: u64) -> String {
    format!(
        "{:048x}{n:016x}",
        u128::from(mix(n)) << 64 | u128::from(mix(!n))
    )
}

pub fn identity(user: u64) -> String {
    format!("u{user}")
}

pub fn binding_type(j: u64) -> &'static str {
    TYPES[(j % 3) as usize]
}

pub struct Dataset {
    pub users: u64,
    pub per_user: u64,
    /// SIDs are `base + i` in creation order, with `base` an hour in the past, so that the
    /// server's own new SIDs (current milliseconds) sort after every generated one.
    base: u128,
    pub account: String,
    pub token: String,
    pub service: String,
}

impl Dataset {
    pub fn new(users: u64, per_user: u64) -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let millis = (now - Duration::from_secs(3600)).as_millis() & 0xffff_ffff_ffff;
        // 56 random bits above 24 free ones: adding up to 2^24 never reaches the milliseconds.
        let base = (millis << 80) | (u128::from(mix(now.as_nanos() as u64) >> 8) << 24);
        let token = format!("{:016x}{:016x}", mix(base as u64), mix(!(base as u64)));
        Dataset {
            users,
            per_user,
            base,
            account: format!("AC{base:032x}"),
            token,
            service: format!("IS{:032x}", base + 1),
        }
    }

    pub fn events(&self) -> u64 {
        2 + self.users * (1 + self.per_user)
    }

    pub fn bindings(&self) -> u64 {
        self.users * self.per_user
    }

    fn offset(&self, user: u64) -> u128 {
        2 + u128::from(user) * u128::from(1 + self.per_user)
    }

    pub fn user_sid(&self, user: u64) -> String {
        format!("US{:032x}", self.base + self.offset(user))
    }

    pub fn binding_sid(&self, user: u64, j: u64) -> String {
        format!(
            "BS{:032x}",
            self.base + self.offset(user) + 1 + u128::from(j)
        )
    }

    /// Writes the log; returns the number of events written.
    pub fn write(&self, out: &mut dyn Write) -> io::Result<u64> {
        let at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let (account, service) = (&self.account, &self.service);
        let hash = hex::encode(Sha256::digest(self.token.as_bytes()));
        let mut position = 0u64;
        let mut line = |out: &mut dyn Write,
                        stream: &str,
                        kind: &str,
                        schema: u32,
                        data: &str,
                        service: Option<&str>|
         -> io::Result<()> {
            position += 1;
            let service = service.map_or("null".to_owned(), |s| format!("\"{s}\""));
            writeln!(
                out,
                r#"{{"position":{position},"stream":"{stream}","stream_version":1,"type":"{kind}","schema_version":{schema},"data":{data},"recorded_at":"{at}","account_sid":"{account}","service_sid":{service},"request_id":null}}"#
            )
        };
        line(
            out,
            account,
            "AccountCreated",
            1,
            &format!(r#"{{"auth_token_hash":"{hash}","friendly_name":"Bindery bench"}}"#),
            None,
        )?;
        line(
            out,
            service,
            "ServiceCreated",
            1,
            &format!(r#"{{"friendly_name":"bench","settings":{SERVICE_SETTINGS}}}"#),
            Some(service),
        )?;
        for user in 0..self.users {
            let user_sid = self.user_sid(user);
            let identity = identity(user);
            line(
                out,
                &user_sid,
                "UserCreated",
                1,
                &format!(
                    r#"{{"attributes":null,"friendly_name":null,"identity":"{identity}","role_sid":null}}"#
                ),
                Some(service),
            )?;
            for j in 0..self.per_user {
                let address = address(user * self.per_user + j);
                let kind = binding_type(j);
                line(
                    out,
                    &self.binding_sid(user, j),
                    "BindingRegistered",
                    2,
                    &format!(
                        r#"{{"address":"{address}","binding_type":"{kind}","credential_sid":null,"endpoint":"e{j}","identity":"{identity}","message_types":{MESSAGE_TYPES},"user_sid":"{user_sid}"}}"#
                    ),
                    Some(service),
                )?;
            }
        }
        Ok(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_json_with_consecutive_positions() {
        let dataset = Dataset::new(3, 5);
        let mut out = Vec::new();
        assert_eq!(dataset.write(&mut out).unwrap(), dataset.events());
        let text = String::from_utf8(out).unwrap();
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len() as u64, dataset.events());
        for (i, event) in events.iter().enumerate() {
            assert_eq!(event["position"], i as u64 + 1);
        }
        assert_eq!(events[3]["stream"], dataset.binding_sid(0, 0).as_str());
        assert_eq!(events[3]["data"]["user_sid"], dataset.user_sid(0).as_str());
        let sids: Vec<&str> = events
            .iter()
            .map(|e| e["stream"].as_str().unwrap())
            .collect();
        assert!(
            sids.windows(2).all(|w| w[0][2..] < w[1][2..]),
            "SIDs sort in creation order"
        );
    }

    #[test]
    fn addresses_are_distinct_device_tokens() {
        let (a, b) = (address(0), address(1));
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
