//! Validated values: each newtype can only hold what the registry accepts.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::ids::UserSid;

/// The longest identity accepted, in UTF-8 bytes.
pub const IDENTITY_MAX_BYTES: usize = 256;
/// The longest push address (device token) accepted, in bytes. APNs tokens are 64 hex digits and
/// FCM registration tokens about 160 characters; this leaves room without inviting abuse.
pub const ADDRESS_MAX_BYTES: usize = 4096;
/// The longest endpoint accepted, in bytes.
pub const ENDPOINT_MAX_BYTES: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("Identity is required")]
    Missing,
    #[error("Identity must not look like a User SID: {0}")]
    LooksLikeUserSid(String),
    #[error("Identity is {0} bytes long; the limit is {IDENTITY_MAX_BYTES} bytes")]
    TooLong(usize),
}

/// A user's identity within a service: case-sensitive, stored verbatim.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Identity(String);

impl Identity {
    pub fn parse(value: &str) -> Result<Self, IdentityError> {
        if value.is_empty() {
            Err(IdentityError::Missing)
        } else if value.len() > IDENTITY_MAX_BYTES {
            Err(IdentityError::TooLong(value.len()))
        } else if UserSid::looks_like(value) {
            Err(IdentityError::LooksLikeUserSid(value.to_owned()))
        } else {
            Ok(Identity(value.to_owned()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("{field} is {len} bytes long; the limit is {max} bytes")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} has an invalid value {value:?}; allowed: {allowed}")]
    NotOneOf {
        field: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error("{field} must be a JSON string: {reason}")]
    NotJson { field: &'static str, reason: String },
}

fn bounded(field: &'static str, value: &str, max: usize) -> Result<String, ValueError> {
    if value.is_empty() {
        Err(ValueError::Missing { field })
    } else if value.len() > max {
        Err(ValueError::TooLong {
            field,
            len: value.len(),
            max,
        })
    } else {
        Ok(value.to_owned())
    }
}

/// A device's push token (APNs device token, FCM/GCM registration token). Never shown in the
/// Twilio-shaped bodies and never logged in full.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PushAddress(String);

impl PushAddress {
    pub fn parse(value: &str) -> Result<Self, ValueError> {
        bounded("Address", value, ADDRESS_MAX_BYTES).map(PushAddress)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// A short, non-reversible form for logs: the first 6 characters and a length.
    pub fn redacted(&self) -> String {
        let head: String = self.0.chars().take(6).collect();
        format!("{head}…({})", self.0.len())
    }
}

impl fmt::Debug for PushAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PushAddress({})", self.redacted())
    }
}

/// The client's stable per-device id; the registration upsert key together with user and type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Endpoint(String);

impl Endpoint {
    pub fn parse(value: &str) -> Result<Self, ValueError> {
        bounded("Endpoint", value, ENDPOINT_MAX_BYTES).map(Endpoint)
    }
    /// The endpoint of a registration that names none: stable for the same identity, type and
    /// address, so registering the same token twice updates one binding.
    pub fn derived(identity: &Identity, binding_type: BindingType, address: &PushAddress) -> Self {
        let digest = Sha256::digest(address.as_str().as_bytes());
        Endpoint(format!(
            "{}:{}:{}",
            identity.as_str(),
            binding_type.as_str(),
            hex::encode(&digest[..8])
        ))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! deserialize_via_parse {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
                <$ty>::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    )*};
}
deserialize_via_parse!(Identity, PushAddress, Endpoint);

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// A push provider; both the type of a binding and of a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindingType {
    Apn,
    Gcm,
    Fcm,
}

impl BindingType {
    pub const ALL: [BindingType; 3] = [BindingType::Apn, BindingType::Gcm, BindingType::Fcm];
    pub const ALLOWED: &'static str = "apn, gcm, fcm";

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            BindingType::Apn => "apn",
            BindingType::Gcm => "gcm",
            BindingType::Fcm => "fcm",
        }
    }
}

/// The kinds of chat event a binding can be notified of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    NewMessage,
    AddedToChannel,
    InvitedToChannel,
    RemovedFromChannel,
}

impl MessageType {
    pub const ALL: [MessageType; 4] = [
        MessageType::NewMessage,
        MessageType::AddedToChannel,
        MessageType::InvitedToChannel,
        MessageType::RemovedFromChannel,
    ];
    pub const ALLOWED: &'static str =
        "new_message, added_to_channel, invited_to_channel, removed_from_channel";

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::NewMessage => "new_message",
            MessageType::AddedToChannel => "added_to_channel",
            MessageType::InvitedToChannel => "invited_to_channel",
            MessageType::RemovedFromChannel => "removed_from_channel",
        }
    }
    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of message types, kept in the canonical order of [`MessageType::ALL`]; serialized as
/// a JSON array of names.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MessageTypes(u8);

impl MessageTypes {
    pub fn all() -> Self {
        MessageType::ALL.into_iter().collect()
    }
    pub fn contains(self, t: MessageType) -> bool {
        self.0 & t.bit() != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = MessageType> {
        MessageType::ALL
            .into_iter()
            .filter(move |t| self.contains(*t))
    }
}

impl FromIterator<MessageType> for MessageTypes {
    fn from_iter<I: IntoIterator<Item = MessageType>>(iter: I) -> Self {
        MessageTypes(iter.into_iter().fold(0, |bits, t| bits | t.bit()))
    }
}

impl fmt::Debug for MessageTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Serialize for MessageTypes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for MessageTypes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<MessageType>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// A user's `attributes`: text that parses as JSON, kept byte for byte as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Attributes(String);

impl Attributes {
    pub fn parse(value: &str) -> Result<Self, ValueError> {
        serde_json::from_str::<serde::de::IgnoredAny>(value)
            .map(|_| Attributes(value.to_owned()))
            .map_err(|e| ValueError::NotJson {
                field: "Attributes",
                reason: e.to_string(),
            })
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
deserialize_via_parse!(Attributes);

/// A point in time with second precision, in UTC: all the precision Twilio's wire format has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn from_unix(seconds: i64) -> Self {
        Timestamp(seconds)
    }
    pub fn unix(self) -> i64 {
        self.0
    }
    /// Reads `YYYY-MM-DDTHH:MM:SSZ` (and any RFC 3339 time, dropping fractions).
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let time = humantime::parse_rfc3339_weak(text).ok()?;
        let seconds = time.duration_since(UNIX_EPOCH).ok()?.as_secs();
        i64::try_from(seconds).ok().map(Timestamp)
    }
    pub fn plus_seconds(self, seconds: i64) -> Self {
        Timestamp(self.0.saturating_add(seconds))
    }
}

/// Formats exactly `YYYY-MM-DDTHH:MM:SSZ`, the only date form Twilio's clients parse.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = UNIX_EPOCH + Duration::from_secs(self.0.max(0) as u64);
        write!(f, "{}", humantime::format_rfc3339_seconds(time))
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let seconds = time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp(i64::try_from(seconds).unwrap_or(i64::MAX))
    }
}

/// The SHA-256 of a high-entropy secret (auth token, API key secret). Secrets are random, so a
/// plain hash is enough; the clear text is never stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        SecretHash(Sha256::digest(secret.as_bytes()).into())
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(SecretHash(bytes))
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(…)")
    }
}

impl Serialize for SecretHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for SecretHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        SecretHash::from_hex(&text).ok_or_else(|| serde::de::Error::custom("bad secret hash"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_rules() {
        assert_eq!(Identity::parse(""), Err(IdentityError::Missing));
        assert!(matches!(
            Identity::parse("US0123456789abcdef0123456789abcdef"),
            Err(IdentityError::LooksLikeUserSid(_))
        ));
        assert_eq!(
            Identity::parse(&"é".repeat(129)),
            Err(IdentityError::TooLong(258))
        );
        assert!(Identity::parse(&"é".repeat(128)).is_ok());
        assert!(Identity::parse("alice@example.com").is_ok());
    }

    #[test]
    fn dates_have_second_precision_and_a_z() {
        let t = Timestamp::from_unix(1_700_000_000);
        assert_eq!(t.to_string(), "2023-11-14T22:13:20Z");
        assert_eq!(Timestamp::parse_rfc3339("2023-11-14T22:13:20Z"), Some(t));
    }

    #[test]
    fn message_types_are_a_canonical_set() {
        let set: MessageTypes = [MessageType::RemovedFromChannel, MessageType::NewMessage]
            .into_iter()
            .collect();
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"["new_message","removed_from_channel"]"#
        );
        assert_eq!(
            serde_json::from_str::<MessageTypes>(
                r#"["removed_from_channel","new_message","new_message"]"#
            )
            .unwrap(),
            set
        );
    }

    #[test]
    fn attributes_must_be_json() {
        assert!(Attributes::parse(r#"{"a": [1, 2]}"#).is_ok());
        assert!(Attributes::parse("{").is_err());
        assert!(Attributes::parse("").is_err());
    }

    #[test]
    fn derived_endpoint_is_stable_per_address() {
        let id = Identity::parse("alice").unwrap();
        let a = PushAddress::parse("token-a").unwrap();
        let b = PushAddress::parse("token-b").unwrap();
        assert_eq!(
            Endpoint::derived(&id, BindingType::Apn, &a),
            Endpoint::derived(&id, BindingType::Apn, &a)
        );
        assert_ne!(
            Endpoint::derived(&id, BindingType::Apn, &a),
            Endpoint::derived(&id, BindingType::Apn, &b)
        );
    }
}
