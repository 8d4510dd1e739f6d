//! The registry's entities as its projections hold them: the current state that the log folds to.

use serde::{Deserialize, Serialize};

use crate::ids::*;
use crate::values::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub sid: AccountSid,
    pub friendly_name: String,
    pub auth_token_hash: SecretHash,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub sid: ApiKeySid,
    pub account_sid: AccountSid,
    pub friendly_name: String,
    pub secret_hash: SecretHash,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub sid: ServiceSid,
    pub account_sid: AccountSid,
    pub friendly_name: String,
    pub settings: ServiceSettings,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

/// Everything about a service that Twilio lets a client set, with Twilio's defaults. Stored as
/// one JSON document; updated by merging a patch into it (see [`ServiceSettings::merged`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceSettings {
    pub default_service_role_sid: Option<String>,
    pub default_channel_role_sid: Option<String>,
    pub default_channel_creator_role_sid: Option<String>,
    pub read_status_enabled: bool,
    pub reachability_enabled: bool,
    pub typing_indicator_timeout: u32,
    pub consumption_report_interval: u32,
    pub limits: ServiceLimits,
    pub pre_webhook_url: Option<String>,
    pub post_webhook_url: Option<String>,
    pub webhook_method: Option<String>,
    pub webhook_filters: Vec<String>,
    pub pre_webhook_retry_count: u32,
    pub post_webhook_retry_count: u32,
    pub notifications: Notifications,
    pub media: Media,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            default_service_role_sid: None,
            default_channel_role_sid: None,
            default_channel_creator_role_sid: None,
            read_status_enabled: true,
            reachability_enabled: false,
            typing_indicator_timeout: 5,
            consumption_report_interval: 10,
            limits: ServiceLimits::default(),
            pre_webhook_url: None,
            post_webhook_url: None,
            webhook_method: None,
            webhook_filters: Vec::new(),
            pre_webhook_retry_count: 0,
            post_webhook_retry_count: 0,
            notifications: Notifications::default(),
            media: Media::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceLimits {
    pub channel_members: u32,
    pub user_channels: u32,
}

impl Default for ServiceLimits {
    fn default() -> Self {
        ServiceLimits {
            channel_members: 100,
            user_channels: 250,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Notifications {
    pub log_enabled: bool,
    pub new_message: NewMessageNotification,
    pub added_to_channel: ChannelNotification,
    pub invited_to_channel: ChannelNotification,
    pub removed_from_channel: ChannelNotification,
}

impl Notifications {
    /// Whether the service sends pushes for this message type at all.
    pub fn enabled(&self, message_type: MessageType) -> bool {
        match message_type {
            MessageType::NewMessage => self.new_message.enabled,
            MessageType::AddedToChannel => self.added_to_channel.enabled,
            MessageType::InvitedToChannel => self.invited_to_channel.enabled,
            MessageType::RemovedFromChannel => self.removed_from_channel.enabled,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewMessageNotification {
    pub enabled: bool,
    pub template: Option<String>,
    pub sound: Option<String>,
    pub badge_count_enabled: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelNotification {
    pub enabled: bool,
    pub template: Option<String>,
    pub sound: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Media {
    pub size_limit_mb: u32,
    pub compatibility_message: Option<String>,
}

impl Default for Media {
    fn default() -> Self {
        Media {
            size_limit_mb: 150,
            compatibility_message: None,
        }
    }
}

/// A JSON object of settings to change, shaped like [`ServiceSettings`] but with only the keys
/// being set (RFC 7386 merge patch, without deletion: `null` sets a field to null).
pub type SettingsPatch = serde_json::Map<String, serde_json::Value>;

impl ServiceSettings {
    /// The settings with `patch` merged in, or the reason the result is not valid settings.
    pub fn merged(&self, patch: &SettingsPatch) -> Result<ServiceSettings, String> {
        fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
            match (target, patch) {
                (serde_json::Value::Object(target), serde_json::Value::Object(patch)) => {
                    for (key, value) in patch {
                        merge(
                            target.entry(key.clone()).or_insert(serde_json::Value::Null),
                            value,
                        );
                    }
                }
                (target, patch) => *target = patch.clone(),
            }
        }
        let mut document = serde_json::to_value(self).map_err(|e| e.to_string())?;
        merge(&mut document, &serde_json::Value::Object(patch.clone()));
        serde_json::from_value(document).map_err(|e| e.to_string())
    }
}

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialSecrets {
    pub certificate: Option<String>,
    pub private_key: Option<String>,
    pub api_key: Option<String>,
    pub secret: Option<String>,
}

impl std::fmt::Debug for CredentialSecrets {
    /// Which fields are set, never what they hold: a command or a row printed in a log or a
    /// panic message must not carry a key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |value: &Option<String>| value.as_ref().map(|_| "<secret>");
        f.debug_struct("CredentialSecrets")
            .field("certificate", &shown(&self.certificate))
            .field("private_key", &shown(&self.private_key))
            .field("api_key", &shown(&self.api_key))
            .field("secret", &shown(&self.secret))
            .finish()
    }
}

#[cfg(test)]
mod secrets_tests {
    use super::CredentialSecrets;

    #[test]
    fn debug_names_the_fields_set_and_hides_their_values() {
        let secrets = CredentialSecrets {
            private_key: Some("-----BEGIN PRIVATE KEY----- hunter2".into()),
            ..CredentialSecrets::default()
        };
        let shown = format!("{secrets:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("private_key: Some(\"<secret>\")"), "{shown}");
        assert!(shown.contains("certificate: None"), "{shown}");
    }
}

/// How a credential signs in to its provider (CONTRACT §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialAuth {
    /// APNs token auth: JWTs signed with the team's `.p8` key.
    Token,
    /// APNs certificate auth: a client certificate.
    Certificate,
    /// FCM HTTP v1: a Firebase service account.
    ServiceAccount,
}

impl CredentialAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialAuth::Token => "token",
            CredentialAuth::Certificate => "certificate",
            CredentialAuth::ServiceAccount => "service_account",
        }
    }
}

/// What reading a credential's secrets found (CONTRACT §6.2): how it signs in and what for.
/// Nothing here is secret (APNs sends the key id in clear), so it is kept unsealed, shown in
/// history and the change feed, and partly in the body. Every field is unset for a credential
/// stored before credentials were read on the way in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialProfile {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<CredentialAuth>,
    /// APNs token auth: the signing key's id (the JWT's `kid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// APNs token auth: the team the key belongs to (the JWT's `iss`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    /// The app the pushes are for: the APNs topic (the given `Topic`, else the certificate's
    /// subject UID), or the Firebase project id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// When a certificate stops working (its notAfter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
}

impl CredentialProfile {
    /// Whether nothing is known (a credential stored before profiles existed).
    pub fn is_unknown(&self) -> bool {
        *self == CredentialProfile::default()
    }
}

/// A push credential. Its secrets are kept so that a sender can use them; they are never
/// returned by the API nor logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub sid: CredentialSid,
    pub account_sid: AccountSid,
    pub friendly_name: Option<String>,
    pub credential_type: BindingType,
    pub sandbox: Option<bool>,
    pub secrets: CredentialSecrets,
    pub profile: CredentialProfile,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub sid: UserSid,
    pub account_sid: AccountSid,
    pub service_sid: ServiceSid,
    pub identity: Identity,
    pub friendly_name: Option<String>,
    pub attributes: Option<Attributes>,
    pub role_sid: Option<String>,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

/// One device of one user, reachable through one push provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub sid: BindingSid,
    pub account_sid: AccountSid,
    pub service_sid: ServiceSid,
    pub user_sid: UserSid,
    pub identity: Identity,
    pub endpoint: Endpoint,
    pub binding_type: BindingType,
    pub address: PushAddress,
    pub credential_sid: Option<CredentialSid>,
    pub message_types: MessageTypes,
    pub date_created: Timestamp,
    pub date_updated: Timestamp,
}

/// The kinds of entity, one projection table each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    Account,
    ApiKey,
    Service,
    Credential,
    User,
    Binding,
}

/// One projection row: the current state of one entity.
// Rows are handled one at a time on the write path, so the size of the largest variant (a
// service's settings) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Row {
    Account(Account),
    ApiKey(ApiKey),
    Service(Service),
    Credential(Credential),
    User(User),
    Binding(Binding),
}

/// `Service::try_from(row)` and the like: the row as one kind of entity, or the row back.
macro_rules! row_variants {
    ($($variant:ident),*) => {$(
        impl TryFrom<Row> for $variant {
            type Error = Row;
            fn try_from(row: Row) -> Result<Self, Row> {
                match row {
                    Row::$variant(entity) => Ok(entity),
                    other => Err(other),
                }
            }
        }
    )*};
}
row_variants!(Account, ApiKey, Service, Credential, User, Binding);

impl Row {
    pub fn kind(&self) -> EntityKind {
        match self {
            Row::Account(_) => EntityKind::Account,
            Row::ApiKey(_) => EntityKind::ApiKey,
            Row::Service(_) => EntityKind::Service,
            Row::Credential(_) => EntityKind::Credential,
            Row::User(_) => EntityKind::User,
            Row::Binding(_) => EntityKind::Binding,
        }
    }

    pub fn sid(&self) -> &str {
        match self {
            Row::Account(r) => r.sid.as_str(),
            Row::ApiKey(r) => r.sid.as_str(),
            Row::Service(r) => r.sid.as_str(),
            Row::Credential(r) => r.sid.as_str(),
            Row::User(r) => r.sid.as_str(),
            Row::Binding(r) => r.sid.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_merge_changes_only_named_keys() {
        let patch: SettingsPatch = serde_json::from_str(
            r#"{"notifications": {"new_message": {"enabled": true, "template": "${MESSAGE}"}},
                "typing_indicator_timeout": 9}"#,
        )
        .unwrap();
        let merged = ServiceSettings::default().merged(&patch).unwrap();
        assert!(merged.notifications.new_message.enabled);
        assert_eq!(
            merged.notifications.new_message.template.as_deref(),
            Some("${MESSAGE}")
        );
        assert_eq!(merged.typing_indicator_timeout, 9);
        assert_eq!(merged.consumption_report_interval, 10);
        assert!(!merged.notifications.added_to_channel.enabled);
    }

    #[test]
    fn an_unknown_profile_is_an_empty_object_and_auth_is_snake_case() {
        assert_eq!(
            serde_json::to_string(&CredentialProfile::default()).unwrap(),
            "{}"
        );
        let profile: CredentialProfile =
            serde_json::from_str(r#"{"auth": "service_account", "topic": "chat"}"#).unwrap();
        assert_eq!(profile.auth, Some(CredentialAuth::ServiceAccount));
        assert_eq!(CredentialAuth::ServiceAccount.as_str(), "service_account");
        assert!(serde_json::from_str::<CredentialProfile>(r#"{"colour": "red"}"#).is_err());
    }

    #[test]
    fn settings_merge_rejects_unknown_keys_and_wrong_types() {
        let unknown: SettingsPatch = serde_json::from_str(r#"{"colour": "red"}"#).unwrap();
        assert!(ServiceSettings::default().merged(&unknown).is_err());
        let wrong: SettingsPatch = serde_json::from_str(r#"{"read_status_enabled": 3}"#).unwrap();
        assert!(ServiceSettings::default().merged(&wrong).is_err());
    }
}
