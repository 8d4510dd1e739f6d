//! Commands: what a caller asks the registry to do. Values in a command are already validated
//! (their types cannot hold bad input); what depends on the registry's state is decided in
//! [`crate::decide`].

use crate::entities::{CredentialProfile, CredentialSecrets, SettingsPatch};
use crate::events::BindingRemoval;
use crate::ids::*;
use crate::values::*;

/// A user named in a path: a User SID when it has that shape, else an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Sid(UserSid),
    Identity(Identity),
}

impl UserRef {
    pub fn parse(value: &str) -> Result<Self, IdentityError> {
        match UserSid::parse(value) {
            Ok(sid) => Ok(UserRef::Sid(sid)),
            Err(_) => Identity::parse(value).map(UserRef::Identity),
        }
    }
}

impl std::fmt::Display for UserRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserRef::Sid(sid) => f.write_str(sid.as_str()),
            UserRef::Identity(identity) => f.write_str(identity.as_str()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    CreateAccount {
        friendly_name: String,
        auth_token_hash: SecretHash,
    },
    /// An account, only if there is none yet: what a server starting on an empty registry
    /// creates. Of several nodes starting together, one creates it; the others' decide
    /// nothing.
    CreateFirstAccount {
        friendly_name: String,
        auth_token_hash: SecretHash,
    },
    CreateApiKey {
        account: AccountSid,
        friendly_name: String,
        secret_hash: SecretHash,
    },
    RevokeApiKey {
        key: ApiKeySid,
    },
    CreateService {
        account: AccountSid,
        friendly_name: String,
    },
    UpdateService {
        account: AccountSid,
        service: ServiceSid,
        friendly_name: Option<String>,
        settings: SettingsPatch,
    },
    DeleteService {
        account: AccountSid,
        service: ServiceSid,
    },
    /// The daemon reads `secrets` and `fields` (CONTRACT §6.2) and sets `profile` to what it
    /// found before the command is decided.
    CreateCredential {
        account: AccountSid,
        credential_type: BindingType,
        friendly_name: Option<String>,
        sandbox: Option<bool>,
        secrets: CredentialSecrets,
        fields: ProfileFields,
        profile: CredentialProfile,
    },
    /// Fields given as `Some` replace the stored ones; the type never changes.
    ///
    /// An update that names a secret or one of `fields` changes what the credential pushes
    /// with: the daemon reads the credential it makes as a whole, then sets `secrets` to all of
    /// its private fields and `profile` to what it found, and both replace the stored ones (so
    /// a switch of auth drops what the old one used). Without a `profile`, the secrets given
    /// replace the stored ones field by field and the stored profile is kept.
    UpdateCredential {
        account: AccountSid,
        credential: CredentialSid,
        friendly_name: Option<String>,
        sandbox: Option<bool>,
        secrets: CredentialSecrets,
        fields: ProfileFields,
        profile: Option<CredentialProfile>,
    },
    DeleteCredential {
        account: AccountSid,
        credential: CredentialSid,
    },
    CreateUser {
        account: AccountSid,
        service: ServiceSid,
        identity: Identity,
        friendly_name: Option<String>,
        attributes: Option<Attributes>,
        role_sid: Option<String>,
    },
    /// Fields given as `Some` replace the stored ones.
    UpdateUser {
        account: AccountSid,
        service: ServiceSid,
        user: UserRef,
        friendly_name: Option<String>,
        attributes: Option<Attributes>,
        role_sid: Option<String>,
    },
    DeleteUser {
        account: AccountSid,
        service: ServiceSid,
        user: UserRef,
    },
    RegisterBinding(RegisterBinding),
    /// `user`, when given, must own the binding (the user-binding routes); the service-binding
    /// routes name none.
    DeleteBinding {
        account: AccountSid,
        service: ServiceSid,
        user: Option<UserRef>,
        binding: BindingSid,
        reason: BindingRemoval,
    },
    /// A push provider (through a sender, or a transport's verdict) says this address is no
    /// longer valid: the binding of this service and type holding it, if any, is removed.
    ReportInvalidAddress {
        account: AccountSid,
        service: ServiceSid,
        binding_type: BindingType,
        address: PushAddress,
        /// The provider's reason, when its answer to a push (not feedback) is the report.
        provider_reason: Option<String>,
    },
    /// Removes up to `limit` bindings, of any account, not refreshed since `older_than`.
    ExpireStale {
        older_than: Timestamp,
        limit: u32,
    },
}

/// The [EXT] fields a credential's form gives beside its secrets (CONTRACT §6.2), as given;
/// read with the secrets into a [`CredentialProfile`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileFields {
    /// APNs token auth: the signing key's id.
    pub key_id: Option<String>,
    /// APNs token auth: the team's id.
    pub team_id: Option<String>,
    /// The app's bundle id (APNs).
    pub topic: Option<String>,
}

impl ProfileFields {
    pub fn is_empty(&self) -> bool {
        *self == ProfileFields::default()
    }
}

/// Registers a device for a user: an upsert on (user, endpoint, binding type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterBinding {
    pub account: AccountSid,
    pub service: ServiceSid,
    /// A user named by identity is created if the service has none yet.
    pub user: UserRef,
    pub binding_type: BindingType,
    pub address: PushAddress,
    /// Defaults to [`Endpoint::derived`].
    pub endpoint: Option<Endpoint>,
    pub credential: Option<CredentialSid>,
    /// Defaults to every message type.
    pub message_types: Option<MessageTypes>,
    /// The most bindings one user may hold (configuration).
    pub per_user_limit: u32,
}
