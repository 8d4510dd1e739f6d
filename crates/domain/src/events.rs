//! Events: the facts the log records. Each type has a schema version; older versions are upcast
//! to the current shape when read, so the log never needs rewriting.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::entities::{CredentialProfile, CredentialSecrets, EntityKind, ServiceSettings};
use crate::ids::*;
use crate::values::*;

/// Why a binding left the registry. A superseded binding has its own event
/// ([`Event::BindingSuperseded`]) since it names the binding that took its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingRemoval {
    /// Deleted through the API.
    Api,
    /// Its user was deleted.
    UserDeleted,
    /// Its service was deleted.
    ServiceDeleted,
    /// A push provider said the token is no longer valid.
    TokenInvalid,
    /// Not refreshed within `bindings.stale_after`.
    Expired,
}

impl BindingRemoval {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingRemoval::Api => "api",
            BindingRemoval::UserDeleted => "user_deleted",
            BindingRemoval::ServiceDeleted => "service_deleted",
            BindingRemoval::TokenInvalid => "token_invalid",
            BindingRemoval::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserRemoval {
    Api,
    ServiceDeleted,
}

/// Every fact Bindery records. The sid of the entity an event is about is its stream, kept in
/// the envelope ([`RecordedEvent`]) rather than repeated in the data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    AccountCreated {
        friendly_name: String,
        auth_token_hash: SecretHash,
    },
    ApiKeyCreated {
        friendly_name: String,
        secret_hash: SecretHash,
    },
    ApiKeyRevoked {},
    ServiceCreated {
        friendly_name: String,
        settings: ServiceSettings,
    },
    /// The whole new state, not a diff: replay needs no merge logic and upcasting stays local.
    ServiceUpdated {
        friendly_name: String,
        settings: ServiceSettings,
    },
    ServiceDeleted {},
    CredentialCreated {
        credential_type: BindingType,
        friendly_name: Option<String>,
        sandbox: Option<bool>,
        secrets: CredentialSecrets,
        /// Left out while unknown, as version 1 (written before credentials were read) has it.
        #[serde(default, skip_serializing_if = "CredentialProfile::is_unknown")]
        profile: CredentialProfile,
    },
    /// The whole new state, not a diff, as for a service.
    CredentialUpdated {
        friendly_name: Option<String>,
        sandbox: Option<bool>,
        secrets: CredentialSecrets,
        #[serde(default, skip_serializing_if = "CredentialProfile::is_unknown")]
        profile: CredentialProfile,
    },
    CredentialDeleted {},
    UserCreated {
        identity: Identity,
        friendly_name: Option<String>,
        attributes: Option<Attributes>,
        role_sid: Option<String>,
    },
    UserUpdated {
        friendly_name: Option<String>,
        attributes: Option<Attributes>,
        role_sid: Option<String>,
    },
    UserDeleted {
        reason: UserRemoval,
    },
    BindingRegistered {
        user_sid: UserSid,
        identity: Identity,
        endpoint: Endpoint,
        binding_type: BindingType,
        address: PushAddress,
        credential_sid: Option<CredentialSid>,
        message_types: MessageTypes,
    },
    /// A re-registration of the same device: refreshes it, possibly with a new address.
    BindingUpdated {
        address: PushAddress,
        credential_sid: Option<CredentialSid>,
        message_types: MessageTypes,
    },
    /// Another binding of the same service and type registered this binding's address.
    BindingSuperseded {
        by: BindingSid,
        by_user_sid: UserSid,
    },
    BindingDeleted {
        reason: BindingRemoval,
        /// What the push provider said (e.g. `BadDeviceToken`), for `token_invalid` removals
        /// a provider's answer caused; absent for feedback and for events written before it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider_reason: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("{type_name} schema version {version} is newer than this Bindery knows ({current})")]
    FromTheFuture {
        type_name: String,
        version: u32,
        current: u32,
    },
    #[error("{type_name} v{version} has no upcaster")]
    NoUpcaster { type_name: String, version: u32 },
    #[error("{type_name} v{version}: {reason}")]
    BadData {
        type_name: String,
        version: u32,
        reason: String,
    },
}

impl Event {
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::AccountCreated { .. } => "AccountCreated",
            Event::ApiKeyCreated { .. } => "ApiKeyCreated",
            Event::ApiKeyRevoked { .. } => "ApiKeyRevoked",
            Event::ServiceCreated { .. } => "ServiceCreated",
            Event::ServiceUpdated { .. } => "ServiceUpdated",
            Event::ServiceDeleted { .. } => "ServiceDeleted",
            Event::CredentialCreated { .. } => "CredentialCreated",
            Event::CredentialUpdated { .. } => "CredentialUpdated",
            Event::CredentialDeleted { .. } => "CredentialDeleted",
            Event::UserCreated { .. } => "UserCreated",
            Event::UserUpdated { .. } => "UserUpdated",
            Event::UserDeleted { .. } => "UserDeleted",
            Event::BindingRegistered { .. } => "BindingRegistered",
            Event::BindingUpdated { .. } => "BindingUpdated",
            Event::BindingSuperseded { .. } => "BindingSuperseded",
            Event::BindingDeleted { .. } => "BindingDeleted",
        }
    }

    /// The schema version new events of this type are written with.
    pub fn schema_version(&self) -> u32 {
        current_version(self.type_name()).expect("every event type has a version")
    }

    /// Which projection table this event changes (the table of its stream's entity).
    pub fn entity(&self) -> EntityKind {
        match self {
            Event::AccountCreated { .. } => EntityKind::Account,
            Event::ApiKeyCreated { .. } | Event::ApiKeyRevoked { .. } => EntityKind::ApiKey,
            Event::ServiceCreated { .. }
            | Event::ServiceUpdated { .. }
            | Event::ServiceDeleted { .. } => EntityKind::Service,
            Event::CredentialCreated { .. }
            | Event::CredentialUpdated { .. }
            | Event::CredentialDeleted { .. } => EntityKind::Credential,
            Event::UserCreated { .. } | Event::UserUpdated { .. } | Event::UserDeleted { .. } => {
                EntityKind::User
            }
            Event::BindingRegistered { .. }
            | Event::BindingUpdated { .. }
            | Event::BindingSuperseded { .. }
            | Event::BindingDeleted { .. } => EntityKind::Binding,
        }
    }

    /// Whether this event starts its stream (so there is no current row to read).
    pub fn is_creation(&self) -> bool {
        matches!(
            self,
            Event::AccountCreated { .. }
                | Event::ApiKeyCreated { .. }
                | Event::ServiceCreated { .. }
                | Event::CredentialCreated { .. }
                | Event::UserCreated { .. }
                | Event::BindingRegistered { .. }
        )
    }

    /// The event's data as stored in the log: a JSON object, without the type.
    pub fn encode_data(&self) -> String {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut tagged)) => tagged
                .remove("data")
                .unwrap_or_else(|| json!({}))
                .to_string(),
            other => unreachable!("an adjacently tagged enum serializes to an object: {other:?}"),
        }
    }

    /// The event's data as clients may see it (history, change feed): without secret hashes
    /// or push credentials' secrets.
    pub fn public_data(&self) -> Value {
        let mut data = match serde_json::to_value(self) {
            Ok(Value::Object(mut tagged)) => tagged.remove("data").unwrap_or_else(|| json!({})),
            _ => json!({}),
        };
        if let Some(object) = data.as_object_mut() {
            for secret in ["auth_token_hash", "secret_hash", "secrets"] {
                object.remove(secret);
            }
        }
        data
    }

    /// Reads an event from the log, upcasting older schema versions to the current shape.
    pub fn decode(type_name: &str, version: u32, data: &str) -> Result<Event, DecodeError> {
        let bad = |reason: String| DecodeError::BadData {
            type_name: type_name.to_owned(),
            version,
            reason,
        };
        let current = current_version(type_name)
            .ok_or_else(|| DecodeError::UnknownType(type_name.to_owned()))?;
        if version > current {
            return Err(DecodeError::FromTheFuture {
                type_name: type_name.to_owned(),
                version,
                current,
            });
        }
        if version == current {
            // The common case, read straight from the text (no `Value` in between); the type
            // name is one of the known ones above, so it needs no escaping.
            return serde_json::from_str(&format!(r#"{{"type":"{type_name}","data":{data}}}"#))
                .map_err(|e| bad(e.to_string()));
        }
        let mut data: Value = serde_json::from_str(data).map_err(|e| bad(e.to_string()))?;
        for from in version..current {
            data = upcast(type_name, from, data)?;
        }
        serde_json::from_value(json!({"type": type_name, "data": data}))
            .map_err(|e| bad(e.to_string()))
    }
}

/// The current schema version of each event type; bump it with an upcaster below.
fn current_version(type_name: &str) -> Option<u32> {
    Some(match type_name {
        "BindingRegistered" | "CredentialCreated" | "CredentialUpdated" => 2,
        "AccountCreated" | "ApiKeyCreated" | "ApiKeyRevoked" | "ServiceCreated"
        | "ServiceUpdated" | "ServiceDeleted" | "CredentialDeleted" | "UserCreated"
        | "UserUpdated" | "UserDeleted" | "BindingUpdated" | "BindingSuperseded"
        | "BindingDeleted" => 1,
        _ => return None,
    })
}

/// Turns version `from` of an event's data into version `from + 1`.
fn upcast(type_name: &str, from: u32, mut data: Value) -> Result<Value, DecodeError> {
    let no_upcaster = || DecodeError::NoUpcaster {
        type_name: type_name.to_owned(),
        version: from,
    };
    let bad = |reason: &str| DecodeError::BadData {
        type_name: type_name.to_owned(),
        version: from,
        reason: reason.to_owned(),
    };
    match (type_name, from) {
        // v1 registrations had no device endpoint and no message-type filter: the endpoint
        // is the one a registration without `Endpoint` derives, and every type is delivered.
        ("BindingRegistered", 1) => {
            let object = data.as_object_mut().ok_or_else(|| bad("not an object"))?;
            let field = |name: &str| object.get(name).and_then(Value::as_str).map(str::to_owned);
            let (identity, binding_type, address) =
                (field("identity"), field("binding_type"), field("address"));
            let derived = match (identity, binding_type, address) {
                (Some(identity), Some(binding_type), Some(address)) => {
                    let identity = Identity::parse(&identity).map_err(|e| bad(&e.to_string()))?;
                    let binding_type =
                        BindingType::parse(&binding_type).ok_or_else(|| bad("bad binding_type"))?;
                    let address = PushAddress::parse(&address).map_err(|e| bad(&e.to_string()))?;
                    Endpoint::derived(&identity, binding_type, &address)
                }
                _ => return Err(bad("identity, binding_type and address are required")),
            };
            object.insert(
                "endpoint".into(),
                Value::String(derived.as_str().to_owned()),
            );
            object.insert(
                "message_types".into(),
                serde_json::to_value(MessageTypes::all()).unwrap(),
            );
            Ok(data)
        }
        // v1 credentials were stored without being read: their profile is unknown (the
        // field's default) until an update reads them. Version 2 exists so that a Bindery
        // that knows no profile refuses these events instead of dropping it.
        ("CredentialCreated" | "CredentialUpdated", 1) => {
            data.as_object().ok_or_else(|| bad("not an object"))?;
            Ok(data)
        }
        _ => Err(no_upcaster()),
    }
}

/// An event the writer is about to append: the stream it belongs to and the ids the log indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEvent {
    pub stream: String,
    pub account_sid: AccountSid,
    pub service_sid: Option<ServiceSid>,
    pub event: Event,
}

/// An event as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: i64,
    pub stream: String,
    pub stream_version: i64,
    pub account_sid: AccountSid,
    pub service_sid: Option<ServiceSid>,
    pub recorded_at: Timestamp,
    pub request_id: Option<String>,
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_round_trips_through_its_encoding() {
        let event = Event::BindingSuperseded {
            by: BindingSid::from_bytes([1; 16]),
            by_user_sid: UserSid::from_bytes([2; 16]),
        };
        let decoded = Event::decode(
            event.type_name(),
            event.schema_version(),
            &event.encode_data(),
        )
        .unwrap();
        assert_eq!(decoded, event);
        assert_eq!(Event::ApiKeyRevoked {}.encode_data(), "{}");
    }

    #[test]
    fn a_v1_credential_reads_with_an_unknown_profile_and_a_known_one_round_trips() {
        let v1 = r#"{"credential_type":"apn","friendly_name":null,"sandbox":true,
                     "secrets":{"certificate":"sealed:v1:AAAA"}}"#;
        let Event::CredentialCreated { profile, .. } =
            Event::decode("CredentialCreated", 1, v1).unwrap()
        else {
            panic!("not a credential")
        };
        assert!(profile.is_unknown());

        let event = Event::CredentialUpdated {
            friendly_name: None,
            sandbox: None,
            secrets: CredentialSecrets::default(),
            profile: CredentialProfile {
                auth: Some(crate::CredentialAuth::Certificate),
                topic: Some("com.example.chat".into()),
                expires: Some(Timestamp::from_unix(1_900_000_000)),
                ..CredentialProfile::default()
            },
        };
        let data = event.encode_data();
        let stored: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(
            stored["profile"],
            json!({"auth": "certificate", "topic": "com.example.chat", "expires": 1_900_000_000}),
            "{data}"
        );
        assert_eq!(Event::decode("CredentialUpdated", 2, &data), Ok(event));
        // Unknown, it is left out: the data is what version 1 wrote.
        let unknown = Event::CredentialUpdated {
            friendly_name: None,
            sandbox: None,
            secrets: CredentialSecrets::default(),
            profile: CredentialProfile::default(),
        };
        assert!(!unknown.encode_data().contains("profile"));
    }

    #[test]
    fn unknown_and_future_events_are_refused() {
        assert!(matches!(
            Event::decode("Nope", 1, "{}"),
            Err(DecodeError::UnknownType(_))
        ));
        assert!(matches!(
            Event::decode("ApiKeyRevoked", 2, "{}"),
            Err(DecodeError::FromTheFuture { .. })
        ));
    }
}
