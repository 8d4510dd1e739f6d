//! Decisions: a command and the registry's current state in, events (or a domain error) out.
//! Pure functions: the state is read through [`State`], new SIDs come from [`NewSids`].

use crate::commands::*;
use crate::entities::*;
use crate::events::*;
use crate::ids::*;
use crate::values::*;

/// Read access to the registry's current state, as the projections hold it.
pub trait State {
    type Error;
    fn account(&self, sid: &AccountSid) -> Result<Option<Account>, Self::Error>;
    /// Whether any account exists.
    fn has_accounts(&self) -> Result<bool, Self::Error>;
    fn api_key(&self, sid: &ApiKeySid) -> Result<Option<ApiKey>, Self::Error>;
    fn service(&self, sid: &ServiceSid) -> Result<Option<Service>, Self::Error>;
    fn credential(&self, sid: &CredentialSid) -> Result<Option<Credential>, Self::Error>;
    fn user(&self, sid: &UserSid) -> Result<Option<User>, Self::Error>;
    fn user_by_identity(
        &self,
        service: &ServiceSid,
        identity: &Identity,
    ) -> Result<Option<User>, Self::Error>;
    fn binding(&self, sid: &BindingSid) -> Result<Option<Binding>, Self::Error>;
    /// The binding registered for this device of this user, if any.
    fn binding_at_endpoint(
        &self,
        user: &UserSid,
        endpoint: &Endpoint,
        binding_type: BindingType,
    ) -> Result<Option<Binding>, Self::Error>;
    /// The binding of this service and type that holds this push address, if any.
    fn binding_holding(
        &self,
        service: &ServiceSid,
        binding_type: BindingType,
        address: &PushAddress,
    ) -> Result<Option<Binding>, Self::Error>;
    fn count_bindings_of_user(&self, user: &UserSid) -> Result<u64, Self::Error>;
    fn bindings_of_user(&self, user: &UserSid) -> Result<Vec<BindingSid>, Self::Error>;
    fn bindings_of_service(&self, service: &ServiceSid) -> Result<Vec<BindingSid>, Self::Error>;
    fn users_of_service(&self, service: &ServiceSid) -> Result<Vec<UserSid>, Self::Error>;
    /// Up to `limit` bindings last refreshed before `older_than`, oldest first.
    fn stale_bindings(
        &self,
        older_than: Timestamp,
        limit: u32,
    ) -> Result<Vec<Binding>, Self::Error>;
}

/// A source of fresh SIDs. The daemon's is monotonic, so that SID order is creation order.
pub trait NewSids {
    fn new_sid<K: SidKind>(&mut self) -> Sid<K>;
}

/// Why a command was refused. Each maps to one Twilio error in the HTTP adapter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("Account {0} not found")]
    AccountNotFound(AccountSid),
    #[error("API key {0} not found")]
    ApiKeyNotFound(ApiKeySid),
    #[error("Service {0} not found")]
    ServiceNotFound(ServiceSid),
    #[error("Credential {0} not found")]
    CredentialNotFound(CredentialSid),
    #[error("User {0} not found")]
    UserNotFound(String),
    #[error("Binding {0} not found")]
    BindingNotFound(BindingSid),
    #[error("User with identity {0:?} already exists in this service")]
    IdentityTaken(String),
    #[error("User already has {limit} bindings, the most one user may hold")]
    BindingLimit { limit: u32 },
    #[error("Invalid service settings: {0}")]
    InvalidSettings(String),
    #[error("MessageTypes must name at least one message type")]
    NoMessageTypes,
}

/// A command's outcome before it is appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub events: Vec<PendingEvent>,
    /// The SID of the entity the command is about (created, changed or removed).
    pub subject: String,
    /// Whether the command created its subject (201 rather than 200 on the wire).
    pub created: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal<E> {
    Domain(DomainError),
    State(E),
}

impl<E> From<DomainError> for Refusal<E> {
    fn from(error: DomainError) -> Self {
        Refusal::Domain(error)
    }
}

pub type Decided<E> = Result<Decision, Refusal<E>>;

/// Decides `command` against `state`: each command has its decision below.
pub fn decide<S: State>(state: &S, ids: &mut impl NewSids, command: &Command) -> Decided<S::Error> {
    let mut d = Decider { state, ids };
    match command {
        Command::CreateAccount {
            friendly_name,
            auth_token_hash,
        } => d.create_account(friendly_name, auth_token_hash),
        Command::CreateFirstAccount {
            friendly_name,
            auth_token_hash,
        } => {
            if d.state.has_accounts().map_err(Refusal::State)? {
                return Ok(Decision {
                    events: Vec::new(),
                    subject: String::new(),
                    created: false,
                });
            }
            d.create_account(friendly_name, auth_token_hash)
        }
        Command::CreateApiKey {
            account,
            friendly_name,
            secret_hash,
        } => d.create_api_key(account, friendly_name, secret_hash),
        Command::RevokeApiKey { key } => d.revoke_api_key(key),
        Command::CreateService {
            account,
            friendly_name,
        } => d.create_service(account, friendly_name),
        Command::UpdateService {
            account,
            service,
            friendly_name,
            settings,
        } => d.update_service(account, service, friendly_name, settings),
        Command::DeleteService { account, service } => d.delete_service(account, service),
        Command::CreateCredential {
            account,
            credential_type,
            friendly_name,
            sandbox,
            secrets,
            fields: _,
            profile,
        } => d.create_credential(
            account,
            *credential_type,
            friendly_name,
            *sandbox,
            secrets,
            profile,
        ),
        Command::UpdateCredential {
            account,
            credential,
            friendly_name,
            sandbox,
            secrets,
            fields: _,
            profile,
        } => d.update_credential(
            account,
            credential,
            friendly_name,
            *sandbox,
            secrets,
            profile.as_ref(),
        ),
        Command::DeleteCredential {
            account,
            credential,
        } => d.delete_credential(account, credential),
        Command::CreateUser {
            account,
            service,
            identity,
            friendly_name,
            attributes,
            role_sid,
        } => d.create_user(
            account,
            service,
            identity,
            friendly_name,
            attributes,
            role_sid,
        ),
        Command::UpdateUser {
            account,
            service,
            user,
            friendly_name,
            attributes,
            role_sid,
        } => d.update_user(account, service, user, friendly_name, attributes, role_sid),
        Command::DeleteUser {
            account,
            service,
            user,
        } => d.delete_user(account, service, user),
        Command::RegisterBinding(register) => d.register_binding(register),
        Command::ReportInvalidAddress {
            account,
            service,
            binding_type,
            address,
            provider_reason,
        } => d.report_invalid_address(account, service, *binding_type, address, provider_reason),
        Command::ExpireStale { older_than, limit } => d.expire_stale(*older_than, *limit),
        Command::DeleteBinding {
            account,
            service,
            user,
            binding,
            reason,
        } => d.delete_binding(account, service, user, binding, *reason),
    }
}

struct Decider<'a, S, I> {
    state: &'a S,
    ids: &'a mut I,
}

/// What the decisions look up, each refused as missing when it is not there (or not the
/// caller's).
impl<S: State, I: NewSids> Decider<'_, S, I> {
    fn account(&self, sid: &AccountSid) -> Result<Account, Refusal<S::Error>> {
        let found = self.state.account(sid).map_err(Refusal::State)?;
        Ok(found.ok_or(DomainError::AccountNotFound(*sid))?)
    }

    /// A service of this account; another account's service is answered as missing.
    fn service(
        &self,
        account: &AccountSid,
        sid: &ServiceSid,
    ) -> Result<Service, Refusal<S::Error>> {
        let found = self.state.service(sid).map_err(Refusal::State)?;
        Ok(found
            .filter(|s| s.account_sid == *account)
            .ok_or(DomainError::ServiceNotFound(*sid))?)
    }

    fn credential(
        &self,
        account: &AccountSid,
        sid: &CredentialSid,
    ) -> Result<Credential, Refusal<S::Error>> {
        let found = self.state.credential(sid).map_err(Refusal::State)?;
        Ok(found
            .filter(|c| c.account_sid == *account)
            .ok_or(DomainError::CredentialNotFound(*sid))?)
    }

    /// A user of this service (the service's account was checked by the caller).
    fn user(&self, service: &ServiceSid, user: &UserRef) -> Result<User, Refusal<S::Error>> {
        let found = match user {
            UserRef::Sid(sid) => self.state.user(sid),
            UserRef::Identity(identity) => self.state.user_by_identity(service, identity),
        }
        .map_err(Refusal::State)?;
        Ok(found
            .filter(|u| u.service_sid == *service)
            .ok_or_else(|| DomainError::UserNotFound(user.to_string()))?)
    }
}

/// Accounts and their API keys.
impl<S: State, I: NewSids> Decider<'_, S, I> {
    fn create_account(
        &mut self,
        friendly_name: &str,
        auth_token_hash: &SecretHash,
    ) -> Decided<S::Error> {
        let sid: AccountSid = self.ids.new_sid();
        Ok(single(
            pending(
                sid,
                sid,
                None,
                Event::AccountCreated {
                    friendly_name: friendly_name.to_owned(),
                    auth_token_hash: *auth_token_hash,
                },
            ),
            true,
        ))
    }

    fn create_api_key(
        &mut self,
        account: &AccountSid,
        friendly_name: &str,
        secret_hash: &SecretHash,
    ) -> Decided<S::Error> {
        self.account(account)?;
        let sid: ApiKeySid = self.ids.new_sid();
        Ok(single(
            pending(
                sid,
                *account,
                None,
                Event::ApiKeyCreated {
                    friendly_name: friendly_name.to_owned(),
                    secret_hash: *secret_hash,
                },
            ),
            true,
        ))
    }

    fn revoke_api_key(&self, key: &ApiKeySid) -> Decided<S::Error> {
        let found = self.state.api_key(key).map_err(Refusal::State)?;
        let found = found.ok_or(DomainError::ApiKeyNotFound(*key))?;
        Ok(single(
            pending(*key, found.account_sid, None, Event::ApiKeyRevoked {}),
            false,
        ))
    }
}

/// Services.
impl<S: State, I: NewSids> Decider<'_, S, I> {
    fn create_service(&mut self, account: &AccountSid, friendly_name: &str) -> Decided<S::Error> {
        self.account(account)?;
        let sid: ServiceSid = self.ids.new_sid();
        Ok(single(
            pending(
                sid,
                *account,
                Some(sid),
                Event::ServiceCreated {
                    friendly_name: friendly_name.to_owned(),
                    settings: ServiceSettings::default(),
                },
            ),
            true,
        ))
    }

    fn update_service(
        &self,
        account: &AccountSid,
        service: &ServiceSid,
        friendly_name: &Option<String>,
        settings: &SettingsPatch,
    ) -> Decided<S::Error> {
        let current = self.service(account, service)?;
        let settings = current
            .settings
            .merged(settings)
            .map_err(DomainError::InvalidSettings)?;
        Ok(single(
            pending(
                *service,
                *account,
                Some(*service),
                Event::ServiceUpdated {
                    friendly_name: friendly_name.clone().unwrap_or(current.friendly_name),
                    settings,
                },
            ),
            false,
        ))
    }

    /// Removes the service with every binding and user in it, bindings first.
    fn delete_service(&self, account: &AccountSid, service: &ServiceSid) -> Decided<S::Error> {
        self.service(account, service)?;
        let bindings = self
            .state
            .bindings_of_service(service)
            .map_err(Refusal::State)?;
        let mut events =
            remove_bindings(account, service, bindings, BindingRemoval::ServiceDeleted);
        for user in self
            .state
            .users_of_service(service)
            .map_err(Refusal::State)?
        {
            events.push(pending(
                user,
                *account,
                Some(*service),
                Event::UserDeleted {
                    reason: UserRemoval::ServiceDeleted,
                },
            ));
        }
        events.push(pending(
            *service,
            *account,
            Some(*service),
            Event::ServiceDeleted {},
        ));
        Ok(Decision {
            events,
            subject: service.to_string(),
            created: false,
        })
    }
}

/// Push credentials.
impl<S: State, I: NewSids> Decider<'_, S, I> {
    fn create_credential(
        &mut self,
        account: &AccountSid,
        credential_type: BindingType,
        friendly_name: &Option<String>,
        sandbox: Option<bool>,
        secrets: &CredentialSecrets,
        profile: &CredentialProfile,
    ) -> Decided<S::Error> {
        self.account(account)?;
        let sid: CredentialSid = self.ids.new_sid();
        Ok(single(
            pending(
                sid,
                *account,
                None,
                Event::CredentialCreated {
                    credential_type,
                    friendly_name: friendly_name.clone(),
                    sandbox,
                    secrets: secrets.clone(),
                    profile: profile.clone(),
                },
            ),
            true,
        ))
    }

    /// Fields given replace the stored ones; the others are kept. With a `profile`, the
    /// secrets are the credential's whole new set (see [`Command::UpdateCredential`]).
    fn update_credential(
        &self,
        account: &AccountSid,
        credential: &CredentialSid,
        friendly_name: &Option<String>,
        sandbox: Option<bool>,
        secrets: &CredentialSecrets,
        profile: Option<&CredentialProfile>,
    ) -> Decided<S::Error> {
        let current = self.credential(account, credential)?;
        let keep = |new: &Option<String>, old: &Option<String>| new.clone().or(old.clone());
        let (secrets, profile) = match profile {
            Some(profile) => (secrets.clone(), profile.clone()),
            None => (
                CredentialSecrets {
                    certificate: keep(&secrets.certificate, &current.secrets.certificate),
                    private_key: keep(&secrets.private_key, &current.secrets.private_key),
                    api_key: keep(&secrets.api_key, &current.secrets.api_key),
                    secret: keep(&secrets.secret, &current.secrets.secret),
                },
                current.profile,
            ),
        };
        Ok(single(
            pending(
                *credential,
                *account,
                None,
                Event::CredentialUpdated {
                    friendly_name: keep(friendly_name, &current.friendly_name),
                    sandbox: sandbox.or(current.sandbox),
                    secrets,
                    profile,
                },
            ),
            false,
        ))
    }

    fn delete_credential(
        &self,
        account: &AccountSid,
        credential: &CredentialSid,
    ) -> Decided<S::Error> {
        self.credential(account, credential)?;
        Ok(single(
            pending(*credential, *account, None, Event::CredentialDeleted {}),
            false,
        ))
    }
}

/// Users.
impl<S: State, I: NewSids> Decider<'_, S, I> {
    fn create_user(
        &mut self,
        account: &AccountSid,
        service: &ServiceSid,
        identity: &Identity,
        friendly_name: &Option<String>,
        attributes: &Option<Attributes>,
        role_sid: &Option<String>,
    ) -> Decided<S::Error> {
        self.service(account, service)?;
        if self
            .state
            .user_by_identity(service, identity)
            .map_err(Refusal::State)?
            .is_some()
        {
            return Err(DomainError::IdentityTaken(identity.as_str().to_owned()).into());
        }
        let sid: UserSid = self.ids.new_sid();
        Ok(single(
            pending(
                sid,
                *account,
                Some(*service),
                Event::UserCreated {
                    identity: identity.clone(),
                    friendly_name: friendly_name.clone(),
                    attributes: attributes.clone(),
                    role_sid: role_sid.clone(),
                },
            ),
            true,
        ))
    }

    /// Fields given replace the stored ones; the others are kept.
    fn update_user(
        &self,
        account: &AccountSid,
        service: &ServiceSid,
        user: &UserRef,
        friendly_name: &Option<String>,
        attributes: &Option<Attributes>,
        role_sid: &Option<String>,
    ) -> Decided<S::Error> {
        self.service(account, service)?;
        let current = self.user(service, user)?;
        Ok(single(
            pending(
                current.sid,
                *account,
                Some(*service),
                Event::UserUpdated {
                    friendly_name: friendly_name.clone().or(current.friendly_name),
                    attributes: attributes.clone().or(current.attributes),
                    role_sid: role_sid.clone().or(current.role_sid),
                },
            ),
            false,
        ))
    }

    /// Removes the user and, first, every binding it holds.
    fn delete_user(
        &self,
        account: &AccountSid,
        service: &ServiceSid,
        user: &UserRef,
    ) -> Decided<S::Error> {
        self.service(account, service)?;
        let user = self.user(service, user)?;
        let mut events = remove_bindings(
            account,
            service,
            self.state
                .bindings_of_user(&user.sid)
                .map_err(Refusal::State)?,
            BindingRemoval::UserDeleted,
        );
        events.push(pending(
            user.sid,
            *account,
            Some(*service),
            Event::UserDeleted {
                reason: UserRemoval::Api,
            },
        ));
        Ok(Decision {
            events,
            subject: user.sid.to_string(),
            created: false,
        })
    }
}

/// Bindings.
impl<S: State, I: NewSids> Decider<'_, S, I> {
    /// Registers a device: an upsert on (user, endpoint, binding type). A user named by a new
    /// identity is created, and the address leaves any other binding of the service holding it.
    fn register_binding(&mut self, cmd: &RegisterBinding) -> Decided<S::Error> {
        let (account, service) = (&cmd.account, &cmd.service);
        self.service(account, service)?;
        if let Some(credential) = &cmd.credential {
            self.credential(account, credential)?;
        }
        let message_types = cmd.message_types.unwrap_or_else(MessageTypes::all);
        if message_types.is_empty() {
            return Err(DomainError::NoMessageTypes.into());
        }
        let mut events = Vec::new();
        let user = match (&cmd.user, self.user(service, &cmd.user)) {
            (_, Ok(user)) => (user.sid, user.identity),
            // Chat creates a user the first time a client connects with a new identity.
            (UserRef::Identity(identity), Err(Refusal::Domain(DomainError::UserNotFound(_)))) => {
                let sid: UserSid = self.ids.new_sid();
                events.push(pending(
                    sid,
                    *account,
                    Some(*service),
                    Event::UserCreated {
                        identity: identity.clone(),
                        friendly_name: None,
                        attributes: None,
                        role_sid: None,
                    },
                ));
                (sid, identity.clone())
            }
            (_, Err(refusal)) => return Err(refusal),
        };
        let (user_sid, identity) = user;
        let endpoint = cmd
            .endpoint
            .clone()
            .unwrap_or_else(|| Endpoint::derived(&identity, cmd.binding_type, &cmd.address));
        let state = self.state;
        let existing = state
            .binding_at_endpoint(&user_sid, &endpoint, cmd.binding_type)
            .map_err(Refusal::State)?;
        let holder = state
            .binding_holding(service, cmd.binding_type, &cmd.address)
            .map_err(Refusal::State)?
            .filter(|h| Some(h.sid) != existing.as_ref().map(|e| e.sid));

        let (sid, created) = match &existing {
            Some(binding) => (binding.sid, false),
            None => {
                let held = state
                    .count_bindings_of_user(&user_sid)
                    .map_err(Refusal::State)?;
                let freed = u64::from(holder.as_ref().is_some_and(|h| h.user_sid == user_sid));
                if held - freed >= u64::from(cmd.per_user_limit) {
                    return Err(DomainError::BindingLimit {
                        limit: cmd.per_user_limit,
                    }
                    .into());
                }
                (self.ids.new_sid(), true)
            }
        };
        // The older holder goes first, so that one address has one binding at every step.
        if let Some(holder) = holder {
            events.push(pending(
                holder.sid,
                *account,
                Some(*service),
                Event::BindingSuperseded {
                    by: sid,
                    by_user_sid: user_sid,
                },
            ));
        }
        let event = if created {
            Event::BindingRegistered {
                user_sid,
                identity,
                endpoint,
                binding_type: cmd.binding_type,
                address: cmd.address.clone(),
                credential_sid: cmd.credential,
                message_types,
            }
        } else {
            Event::BindingUpdated {
                address: cmd.address.clone(),
                credential_sid: cmd.credential,
                message_types,
            }
        };
        events.push(pending(sid, *account, Some(*service), event));
        Ok(Decision {
            events,
            subject: sid.to_string(),
            created,
        })
    }

    /// A provider's verdict that an address is invalid: removes the binding of this service
    /// and type holding it, if any (none is not a refusal: the verdict may arrive twice).
    fn report_invalid_address(
        &self,
        account: &AccountSid,
        service: &ServiceSid,
        binding_type: BindingType,
        address: &PushAddress,
        provider_reason: &Option<String>,
    ) -> Decided<S::Error> {
        self.service(account, service)?;
        let holder = self
            .state
            .binding_holding(service, binding_type, address)
            .map_err(Refusal::State)?;
        let events = holder
            .iter()
            .map(|b| {
                pending(
                    b.sid,
                    *account,
                    Some(*service),
                    Event::BindingDeleted {
                        reason: BindingRemoval::TokenInvalid,
                        provider_reason: provider_reason.clone(),
                    },
                )
            })
            .collect();
        let subject = holder
            .map(|b| b.sid.to_string())
            .unwrap_or_else(|| service.to_string());
        Ok(Decision {
            events,
            subject,
            created: false,
        })
    }

    /// Removes up to `limit` bindings, of any account, not refreshed since `older_than`.
    fn expire_stale(&self, older_than: Timestamp, limit: u32) -> Decided<S::Error> {
        let stale = self
            .state
            .stale_bindings(older_than, limit)
            .map_err(Refusal::State)?;
        let events = stale
            .iter()
            .map(|b| {
                pending(
                    b.sid,
                    b.account_sid,
                    Some(b.service_sid),
                    Event::BindingDeleted {
                        reason: BindingRemoval::Expired,
                        provider_reason: None,
                    },
                )
            })
            .collect();
        Ok(Decision {
            events,
            subject: String::new(),
            created: false,
        })
    }

    /// Removes one binding of the service; through a user's path, only that user's.
    fn delete_binding(
        &self,
        account: &AccountSid,
        service: &ServiceSid,
        user: &Option<UserRef>,
        binding: &BindingSid,
        reason: BindingRemoval,
    ) -> Decided<S::Error> {
        self.service(account, service)?;
        // A missing user is reported before a missing binding, as the path reads.
        let owner = user
            .as_ref()
            .map(|user| self.user(service, user))
            .transpose()?;
        let found = self.state.binding(binding).map_err(Refusal::State)?;
        found
            .filter(|b| b.service_sid == *service)
            .filter(|b| owner.as_ref().is_none_or(|o| o.sid == b.user_sid))
            .ok_or(DomainError::BindingNotFound(*binding))?;
        Ok(single(
            pending(
                *binding,
                *account,
                Some(*service),
                Event::BindingDeleted {
                    reason,
                    provider_reason: None,
                },
            ),
            false,
        ))
    }
}

/// One `BindingDeleted` for each of `bindings`, for `reason`.
fn remove_bindings(
    account: &AccountSid,
    service: &ServiceSid,
    bindings: Vec<BindingSid>,
    reason: BindingRemoval,
) -> Vec<PendingEvent> {
    bindings
        .into_iter()
        .map(|sid| {
            pending(
                sid,
                *account,
                Some(*service),
                Event::BindingDeleted {
                    reason,
                    provider_reason: None,
                },
            )
        })
        .collect()
}

fn pending<K: SidKind>(
    stream: Sid<K>,
    account: AccountSid,
    service: Option<ServiceSid>,
    event: Event,
) -> PendingEvent {
    PendingEvent {
        stream: stream.to_string(),
        account_sid: account,
        service_sid: service,
        event,
    }
}

fn single(event: PendingEvent, created: bool) -> Decision {
    let subject = event.stream.clone();
    Decision {
        events: vec![event],
        subject,
        created,
    }
}
