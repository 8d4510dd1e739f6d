//! The projection rules: how one recorded event changes the row of the entity it is about.
//! The store applies exactly these rules, incrementally and on replay, so both give the same
//! tables by construction; tests hold that to be true of the SQL as well.

use crate::entities::*;
use crate::events::{Event, RecordedEvent};
use crate::ids::*;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event at position {position} ({type_name} on {stream}): {problem}")]
pub struct ProjectionError {
    pub position: i64,
    pub type_name: &'static str,
    pub stream: String,
    pub problem: String,
}

/// The new row of the event's stream given its current row (`None`: no such row). Returns
/// `None` when the event removes the entity.
pub fn project(
    current: Option<Row>,
    recorded: &RecordedEvent,
) -> Result<Option<Row>, ProjectionError> {
    let fail = |problem: String| ProjectionError {
        position: recorded.position,
        type_name: recorded.event.type_name(),
        stream: recorded.stream.clone(),
        problem,
    };
    let service_sid = || {
        recorded
            .service_sid
            .ok_or_else(|| fail("no service_sid".into()))
    };
    let at = recorded.recorded_at;
    let account_sid = recorded.account_sid;

    if recorded.event.is_creation() && current.is_some() {
        return Err(fail("the entity already exists".into()));
    }
    let missing = || fail("the entity does not exist".into());

    Ok(match (&recorded.event, current) {
        (
            Event::AccountCreated {
                friendly_name,
                auth_token_hash,
            },
            None,
        ) => {
            let sid = AccountSid::parse(&recorded.stream).map_err(|e| fail(e.to_string()))?;
            if sid != account_sid {
                return Err(fail("an account's events carry its own account_sid".into()));
            }
            Some(Row::Account(Account {
                sid,
                friendly_name: friendly_name.clone(),
                auth_token_hash: *auth_token_hash,
                date_created: at,
                date_updated: at,
            }))
        }
        (
            Event::ApiKeyCreated {
                friendly_name,
                secret_hash,
            },
            None,
        ) => Some(Row::ApiKey(ApiKey {
            sid: ApiKeySid::parse(&recorded.stream).map_err(|e| fail(e.to_string()))?,
            account_sid,
            friendly_name: friendly_name.clone(),
            secret_hash: *secret_hash,
            date_created: at,
            date_updated: at,
        })),
        (Event::ApiKeyRevoked {}, Some(Row::ApiKey(_))) => None,
        (
            Event::ServiceCreated {
                friendly_name,
                settings,
            },
            None,
        ) => Some(Row::Service(Service {
            sid: ServiceSid::parse(&recorded.stream).map_err(|e| fail(e.to_string()))?,
            account_sid,
            friendly_name: friendly_name.clone(),
            settings: settings.clone(),
            date_created: at,
            date_updated: at,
        })),
        (
            Event::ServiceUpdated {
                friendly_name,
                settings,
            },
            Some(Row::Service(service)),
        ) => Some(Row::Service(Service {
            friendly_name: friendly_name.clone(),
            settings: settings.clone(),
            date_updated: at,
            ..service
        })),
        (Event::ServiceDeleted {}, Some(Row::Service(_))) => None,
        (
            Event::CredentialCreated {
                credential_type,
                friendly_name,
                sandbox,
                secrets,
                profile,
            },
            None,
        ) => Some(Row::Credential(Credential {
            sid: CredentialSid::parse(&recorded.stream).map_err(|e| fail(e.to_string()))?,
            account_sid,
            friendly_name: friendly_name.clone(),
            credential_type: *credential_type,
            sandbox: *sandbox,
            secrets: secrets.clone(),
            profile: profile.clone(),
            date_created: at,
            date_updated: at,
        })),
        (
            Event::CredentialUpdated {
                friendly_name,
                sandbox,
                secrets,
                profile,
            },
            Some(Row::Credential(credential)),
        ) => Some(Row::Credential(Credential {
            friendly_name: friendly_name.clone(),
            sandbox: *sandbox,
            secrets: secrets.clone(),
            profile: profile.clone(),
            date_updated: at,
            ..credential
        })),
        (Event::CredentialDeleted {}, Some(Row::Credential(_))) => None,
        (
            Event::UserCreated {
                identity,
                friendly_name,
                attributes,
                role_sid,
            },
            None,
        ) => Some(Row::User(User {
            sid: UserSid::parse(&recorded.stream).map_err(|e| fail(e.to_string()))?,
            account_sid,
            service_sid: service_sid()?,
            identity: identity.clone(),
            friendly_name: friendly_name.clone(),
            attributes: attributes.clone(),
            role_sid: role_sid.clone(),
            date_created: at,
            date_updated: at,
        })),
        (
            Event::UserUpdated {
                friendly_name,
                attributes,
                role_sid,
            },
            Some(Row::User(user)),
        ) => Some(Row::User(User {
            friendly_name: friendly_name.clone(),
            attributes: attributes.clone(),
            role_sid: role_sid.clone(),
            date_updated: at,
            ..user
        })),
        (Event::UserDeleted { .. }, Some(Row::User(_))) => None,
        (
            Event::BindingRegistered {
                user_sid,
                identity,
                endpoint,
                binding_type,
                address,
                credential_sid,
                message_types,
            },
            None,
        ) => Some(Row::Binding(Binding {
            sid: BindingSid::parse(&recorded.stream).map_err(|e| fail(e.to_string()))?,
            account_sid,
            service_sid: service_sid()?,
            user_sid: *user_sid,
            identity: identity.clone(),
            endpoint: endpoint.clone(),
            binding_type: *binding_type,
            address: address.clone(),
            credential_sid: *credential_sid,
            message_types: *message_types,
            date_created: at,
            date_updated: at,
        })),
        (
            Event::BindingUpdated {
                address,
                credential_sid,
                message_types,
            },
            Some(Row::Binding(binding)),
        ) => Some(Row::Binding(Binding {
            address: address.clone(),
            credential_sid: *credential_sid,
            message_types: *message_types,
            date_updated: at,
            ..binding
        })),
        (Event::BindingSuperseded { .. } | Event::BindingDeleted { .. }, Some(Row::Binding(_))) => {
            None
        }
        (_, None) => return Err(missing()),
        (_, Some(row)) => {
            return Err(fail(format!(
                "the stream holds a {:?}, not this event's entity",
                row.kind()
            )))
        }
    })
}
