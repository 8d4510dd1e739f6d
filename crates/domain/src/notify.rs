//! Notification text: a service's template for a message type, with Twilio's variables.

use crate::entities::Notifications;
use crate::values::MessageType;

/// The values a template may name: `${USER}`, `${USER_FRIENDLY_NAME}`, `${CHANNEL}`,
/// `${MESSAGE}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    pub user: String,
    pub user_friendly_name: String,
    pub channel: String,
    pub message: String,
}

/// How urgently a push should be shown: `high` (the default) wakes the device now; `low`
/// lets the provider save its battery. APNs maps them to `apns-priority` 10 and 5, FCM to
/// `android.priority` HIGH and NORMAL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    #[default]
    High,
    Low,
}

impl Priority {
    pub const ALLOWED: &'static str = "high, low";

    pub fn parse(value: &str) -> Option<Priority> {
        match value {
            "high" => Some(Priority::High),
            "low" => Some(Priority::Low),
            _ => None,
        }
    }
}

/// The longest a provider may hold an undelivered push, in seconds (28 days), as Twilio
/// Notify and FCM allow.
pub const MAX_TTL_SECONDS: u32 = 2_419_200;

/// Twilio's default template of each message type, used when the service sets none.
pub fn default_template(message_type: MessageType) -> &'static str {
    match message_type {
        MessageType::NewMessage => "${CHANNEL};${USER}: ${MESSAGE}",
        MessageType::AddedToChannel => "You have been added to channel ${CHANNEL} by ${USER}",
        MessageType::InvitedToChannel => "${USER} has invited you to join the channel ${CHANNEL}",
        MessageType::RemovedFromChannel => "${USER} has removed you from the channel ${CHANNEL}",
    }
}

/// The template and sound a service configured for a message type.
pub fn configured(
    notifications: &Notifications,
    message_type: MessageType,
) -> (Option<&str>, Option<&str>) {
    let (template, sound) = match message_type {
        MessageType::NewMessage => (
            &notifications.new_message.template,
            &notifications.new_message.sound,
        ),
        MessageType::AddedToChannel => (
            &notifications.added_to_channel.template,
            &notifications.added_to_channel.sound,
        ),
        MessageType::InvitedToChannel => (
            &notifications.invited_to_channel.template,
            &notifications.invited_to_channel.sound,
        ),
        MessageType::RemovedFromChannel => (
            &notifications.removed_from_channel.template,
            &notifications.removed_from_channel.sound,
        ),
    };
    (template.as_deref(), sound.as_deref())
}

/// Replaces each variable in one pass, so a value that itself contains `${…}` stays as given.
pub fn render(template: &str, variables: &Variables) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        let value = [
            ("${USER_FRIENDLY_NAME}", &variables.user_friendly_name),
            ("${USER}", &variables.user),
            ("${CHANNEL}", &variables.channel),
            ("${MESSAGE}", &variables.message),
        ]
        .into_iter()
        .find(|(name, _)| after.starts_with(name));
        match value {
            Some((name, value)) => {
                out.push_str(value);
                rest = &after[name.len()..];
            }
            None => {
                out.push_str("${");
                rest = &after[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_replaced_once_and_unknown_ones_kept() {
        let variables = Variables {
            user: "alice".into(),
            user_friendly_name: "Alice A.".into(),
            channel: "general".into(),
            message: "hi ${USER}".into(),
        };
        assert_eq!(
            render(
                "${CHANNEL};${USER} (${USER_FRIENDLY_NAME}): ${MESSAGE} ${NOPE} $",
                &variables
            ),
            "general;alice (Alice A.): hi ${USER} ${NOPE} $"
        );
        assert_eq!(
            render(default_template(MessageType::NewMessage), &variables),
            "general;alice: hi ${USER}"
        );
    }
}
