//! Given/when/then tests of the decisions, against the in-memory model:
//! `given(setup).when(command).then_expect_events(..)` (or `then_expect_error(..)`).

use crate::memory::{CountingSids, MemoryState};
use crate::*;

struct World {
    state: MemoryState,
    ids: CountingSids,
    account: AccountSid,
    service: ServiceSid,
}

/// A world with one account and one service, after running `setup` commands.
fn given(setup: &[fn(&World) -> Command]) -> World {
    let mut state = MemoryState::default();
    let mut ids = CountingSids::default();
    let at = Timestamp::from_unix(1_000);
    let account = AccountSid::parse(
        &state
            .execute(
                &mut ids,
                &Command::CreateAccount {
                    friendly_name: "test".into(),
                    auth_token_hash: SecretHash::of("token"),
                },
                at,
            )
            .unwrap()
            .subject,
    )
    .unwrap();
    let service = ServiceSid::parse(
        &state
            .execute(
                &mut ids,
                &Command::CreateService {
                    account,
                    friendly_name: "chat".into(),
                },
                at,
            )
            .unwrap()
            .subject,
    )
    .unwrap();
    let mut world = World {
        state,
        ids,
        account,
        service,
    };
    for step in setup {
        let command = step(&world);
        world
            .state
            .execute(&mut world.ids, &command, at)
            .expect("setup command accepted");
    }
    world
}

impl World {
    /// Decides `command` (at 2000, after the setup's 1000) and, when accepted, applies it.
    fn when(&mut self, command: Command) -> Then {
        let before = self.state.clone();
        let outcome = self
            .state
            .execute(&mut self.ids, &command, Timestamp::from_unix(2_000))
            .map_err(|refusal| match refusal {
                Refusal::Domain(e) => e,
                Refusal::State(never) => match never {},
            });
        Then {
            outcome,
            unchanged: self.state == before,
        }
    }
}

/// What a command decided, for the `then_expect_*` assertions.
#[must_use = "a decision is asserted with then_expect_*"]
struct Then {
    outcome: Result<Decision, DomainError>,
    /// Whether the registry is as it was before the command.
    unchanged: bool,
}

impl Then {
    /// The command was accepted with exactly these events, in order; its decision, for more.
    #[track_caller]
    fn then_expect_events(self, expected: &[Event]) -> Decision {
        let decision = self.accepted();
        let events: Vec<&Event> = decision.events.iter().map(|e| &e.event).collect();
        assert_eq!(events, expected.iter().collect::<Vec<_>>());
        decision
    }

    /// As [`Then::then_expect_events`], by type only: for events that carry SIDs the command
    /// has just made.
    #[track_caller]
    fn then_expect_event_types(self, expected: &[&str]) -> Decision {
        let decision = self.accepted();
        let types: Vec<&str> = decision
            .events
            .iter()
            .map(|e| e.event.type_name())
            .collect();
        assert_eq!(types, expected);
        decision
    }

    /// The command was refused with `expected`, and changed nothing.
    #[track_caller]
    fn then_expect_error(self, expected: DomainError) {
        match self.outcome {
            Ok(decision) => panic!("expected {expected:?}, the command was accepted: {decision:?}"),
            Err(error) => assert_eq!(error, expected),
        }
        assert!(self.unchanged, "a refused command changed the registry");
    }

    #[track_caller]
    fn accepted(self) -> Decision {
        self.outcome.unwrap_or_else(|e| {
            panic!("expected the command to be accepted, it was refused: {e:?}")
        })
    }
}

fn register(w: &World, identity: &str, endpoint: &str, address: &str) -> Command {
    Command::RegisterBinding(RegisterBinding {
        account: w.account,
        service: w.service,
        user: UserRef::parse(identity).unwrap(),
        binding_type: BindingType::Apn,
        address: PushAddress::parse(address).unwrap(),
        endpoint: Some(Endpoint::parse(endpoint).unwrap()),
        credential: None,
        message_types: None,
        per_user_limit: 2,
    })
}

fn binding_deleted(reason: BindingRemoval) -> Event {
    Event::BindingDeleted {
        reason,
        provider_reason: None,
    }
}

#[test]
fn first_registration_creates_the_user_and_the_binding() {
    let mut w = given(&[]);
    let decision = w
        .when(register(&w, "alice", "phone", "tok-1"))
        .then_expect_event_types(&["UserCreated", "BindingRegistered"]);
    assert!(decision.created);
    let binding = w.state.bindings().next().unwrap();
    assert_eq!(binding.identity.as_str(), "alice");
    assert_eq!(binding.message_types, MessageTypes::all());
}

#[test]
fn re_registration_updates_in_place_and_keeps_the_sid() {
    let mut w = given(&[|w| register(w, "alice", "phone", "tok-1")]);
    let sid = w.state.bindings().next().unwrap().sid;
    let decision = w
        .when(register(&w, "alice", "phone", "tok-2"))
        .then_expect_events(&[Event::BindingUpdated {
            address: PushAddress::parse("tok-2").unwrap(),
            credential_sid: None,
            message_types: MessageTypes::all(),
        }]);
    assert!(!decision.created);
    assert_eq!(decision.subject, sid.to_string());
    let binding = w.state.bindings().next().unwrap();
    assert_eq!(
        (binding.address.as_str(), binding.date_updated.unix()),
        ("tok-2", 2_000)
    );
}

#[test]
fn an_address_moves_to_its_newest_registration() {
    let mut w = given(&[|w| register(w, "alice", "phone", "tok-1")]);
    let old = w.state.bindings().next().unwrap().sid;
    let decision = w
        .when(register(&w, "bob", "phone", "tok-1"))
        .then_expect_event_types(&["UserCreated", "BindingSuperseded", "BindingRegistered"]);
    assert_eq!(decision.events[1].stream, old.to_string());
    let left: Vec<_> = w
        .state
        .bindings()
        .map(|b| b.identity.as_str().to_owned())
        .collect();
    assert_eq!(left, ["bob"]);
}

#[test]
fn the_binding_limit_counts_a_device_being_superseded_as_freed() {
    let mut w = given(&[
        |w| register(w, "alice", "phone", "tok-1"),
        |w| register(w, "alice", "tablet", "tok-2"),
    ]);
    w.when(register(&w, "alice", "laptop", "tok-3"))
        .then_expect_error(DomainError::BindingLimit { limit: 2 });
    // Moving tok-2 to a new endpoint of the same user frees the old one first.
    w.when(register(&w, "alice", "laptop", "tok-2"))
        .then_expect_event_types(&["BindingSuperseded", "BindingRegistered"]);
}

#[test]
fn deleting_a_user_removes_their_bindings_with_a_reason() {
    let mut w = given(&[
        |w| register(w, "alice", "phone", "tok-1"),
        |w| register(w, "alice", "tablet", "tok-2"),
        |w| register(w, "bob", "phone", "tok-3"),
    ]);
    w.when(Command::DeleteUser {
        account: w.account,
        service: w.service,
        user: UserRef::parse("alice").unwrap(),
    })
    .then_expect_events(&[
        binding_deleted(BindingRemoval::UserDeleted),
        binding_deleted(BindingRemoval::UserDeleted),
        Event::UserDeleted {
            reason: UserRemoval::Api,
        },
    ]);
    assert!(w.state.bindings().all(|b| b.identity.as_str() == "bob"));
    assert!(w.state.users().all(|u| u.identity.as_str() == "bob"));
}

#[test]
fn deleting_a_service_removes_everything_in_it() {
    let mut w = given(&[|w| register(w, "alice", "phone", "tok-1")]);
    w.when(Command::DeleteService {
        account: w.account,
        service: w.service,
    })
    .then_expect_events(&[
        binding_deleted(BindingRemoval::ServiceDeleted),
        Event::UserDeleted {
            reason: UserRemoval::ServiceDeleted,
        },
        Event::ServiceDeleted {},
    ]);
    assert_eq!(w.state.bindings().count() + w.state.users().count(), 0);
}

#[test]
fn another_accounts_service_is_not_found() {
    let mut w = given(&[]);
    let other = AccountSid::from_bytes([9; 16]);
    let mut command = register(&w, "alice", "phone", "tok-1");
    if let Command::RegisterBinding(r) = &mut command {
        r.account = other;
    }
    let service = w.service;
    w.when(command)
        .then_expect_error(DomainError::ServiceNotFound(service));
}

#[test]
fn an_identity_is_taken_once_per_service() {
    let create = |w: &World| Command::CreateUser {
        account: w.account,
        service: w.service,
        identity: Identity::parse("alice").unwrap(),
        friendly_name: None,
        attributes: None,
        role_sid: None,
    };
    let mut w = given(&[create]);
    w.when(create(&w))
        .then_expect_error(DomainError::IdentityTaken("alice".into()));
}

#[test]
fn a_binding_is_deleted_only_through_its_own_user() {
    let mut w = given(&[
        |w| register(w, "alice", "phone", "tok-1"),
        |w| register(w, "bob", "phone", "tok-2"),
    ]);
    let alices = w
        .state
        .bindings()
        .find(|b| b.identity.as_str() == "alice")
        .unwrap()
        .sid;
    let delete = |w: &World, user: &str| Command::DeleteBinding {
        account: w.account,
        service: w.service,
        user: Some(UserRef::parse(user).unwrap()),
        binding: alices,
        reason: BindingRemoval::Api,
    };
    w.when(delete(&w, "bob"))
        .then_expect_error(DomainError::BindingNotFound(alices));
    w.when(delete(&w, "alice"))
        .then_expect_events(&[binding_deleted(BindingRemoval::Api)]);
}

#[test]
fn a_registration_naming_an_unknown_credential_is_refused() {
    let mut w = given(&[]);
    let mut command = register(&w, "alice", "phone", "tok-1");
    let missing = CredentialSid::from_bytes([7; 16]);
    if let Command::RegisterBinding(r) = &mut command {
        r.credential = Some(missing);
    }
    // Nothing of it is kept, not even the user it would have created.
    w.when(command)
        .then_expect_error(DomainError::CredentialNotFound(missing));
}

#[test]
fn revoking_an_unknown_api_key_is_refused() {
    let mut w = given(&[]);
    let missing = ApiKeySid::from_bytes([5; 16]);
    w.when(Command::RevokeApiKey { key: missing })
        .then_expect_error(DomainError::ApiKeyNotFound(missing));
}

#[test]
fn a_credential_update_keeps_the_fields_it_does_not_name() {
    let mut w = given(&[|w| Command::CreateCredential {
        account: w.account,
        credential_type: BindingType::Fcm,
        friendly_name: Some("android".into()),
        sandbox: Some(true),
        secrets: CredentialSecrets {
            secret: Some("server key".into()),
            ..CredentialSecrets::default()
        },
        fields: ProfileFields::default(),
        profile: CredentialProfile {
            auth: Some(CredentialAuth::ServiceAccount),
            topic: Some("chat-project".into()),
            ..CredentialProfile::default()
        },
    }]);
    let credential = w
        .state
        .rows
        .values()
        .find_map(|row| match row {
            Row::Credential(c) => Some(c.sid),
            _ => None,
        })
        .unwrap();
    w.when(Command::UpdateCredential {
        account: w.account,
        credential,
        friendly_name: None,
        sandbox: None,
        secrets: CredentialSecrets {
            api_key: Some("new key".into()),
            ..CredentialSecrets::default()
        },
        fields: ProfileFields::default(),
        profile: None,
    })
    .then_expect_events(&[Event::CredentialUpdated {
        friendly_name: Some("android".into()),
        sandbox: Some(true),
        secrets: CredentialSecrets {
            api_key: Some("new key".into()),
            secret: Some("server key".into()),
            ..CredentialSecrets::default()
        },
        profile: CredentialProfile {
            auth: Some(CredentialAuth::ServiceAccount),
            topic: Some("chat-project".into()),
            ..CredentialProfile::default()
        },
    }]);
}

#[test]
fn a_credential_update_with_a_profile_replaces_the_secrets_and_the_profile_whole() {
    let mut w = given(&[|w| Command::CreateCredential {
        account: w.account,
        credential_type: BindingType::Apn,
        friendly_name: Some("ios".into()),
        sandbox: None,
        secrets: CredentialSecrets {
            certificate: Some("certificate".into()),
            private_key: Some("certificate's key".into()),
            ..CredentialSecrets::default()
        },
        fields: ProfileFields::default(),
        profile: CredentialProfile {
            auth: Some(CredentialAuth::Certificate),
            topic: Some("com.example.chat".into()),
            expires: Some(Timestamp::from_unix(1_900_000_000)),
            ..CredentialProfile::default()
        },
    }]);
    let credential = w
        .state
        .rows
        .values()
        .find_map(|row| match row {
            Row::Credential(c) => Some(c.sid),
            _ => None,
        })
        .unwrap();
    // A switch to token auth: the certificate is gone.
    let token = CredentialProfile {
        auth: Some(CredentialAuth::Token),
        key_id: Some("ABC123DEFG".into()),
        team_id: Some("TEAM123456".into()),
        topic: Some("com.example.chat".into()),
        expires: None,
    };
    let p8 = CredentialSecrets {
        private_key: Some(".p8 key".into()),
        ..CredentialSecrets::default()
    };
    w.when(Command::UpdateCredential {
        account: w.account,
        credential,
        friendly_name: None,
        sandbox: Some(true),
        secrets: p8.clone(),
        fields: ProfileFields {
            key_id: Some("ABC123DEFG".into()),
            team_id: Some("TEAM123456".into()),
            topic: None,
        },
        profile: Some(token.clone()),
    })
    .then_expect_events(&[Event::CredentialUpdated {
        friendly_name: Some("ios".into()),
        sandbox: Some(true),
        secrets: p8,
        profile: token,
    }]);
}

#[test]
fn a_v1_registration_is_upcast_with_a_derived_endpoint_and_every_message_type() {
    let v1 = r#"{"user_sid":"US00000000000000000000000000000003","identity":"alice",
                 "binding_type":"fcm","address":"tok-1","credential_sid":null}"#;
    let event = Event::decode("BindingRegistered", 1, v1).unwrap();
    let Event::BindingRegistered {
        endpoint,
        message_types,
        ..
    } = event
    else {
        panic!("not a registration: {event:?}")
    };
    let expected = Endpoint::derived(
        &Identity::parse("alice").unwrap(),
        BindingType::Fcm,
        &PushAddress::parse("tok-1").unwrap(),
    );
    assert_eq!(endpoint, expected);
    assert_eq!(message_types, MessageTypes::all());
}

#[test]
fn an_invalid_address_report_removes_the_binding_holding_it_and_nothing_else() {
    let mut w = given(&[
        |w| register(w, "alice", "phone", "tok-1"),
        |w| register(w, "alice", "tablet", "tok-2"),
    ]);
    let report = |w: &World, address: &str, binding_type| Command::ReportInvalidAddress {
        account: w.account,
        service: w.service,
        binding_type,
        address: PushAddress::parse(address).unwrap(),
        provider_reason: Some("BadDeviceToken".into()),
    };
    w.when(report(&w, "tok-1", BindingType::Apn))
        .then_expect_events(&[Event::BindingDeleted {
            reason: BindingRemoval::TokenInvalid,
            provider_reason: Some("BadDeviceToken".into()),
        }]);
    // Reported again, the address is held by no binding: nothing to remove.
    w.when(report(&w, "tok-1", BindingType::Apn))
        .then_expect_events(&[]);
    // The type counts: tok-2 is held by an APN binding, not an FCM one.
    w.when(report(&w, "tok-2", BindingType::Fcm))
        .then_expect_events(&[]);
    let left: Vec<_> = w
        .state
        .bindings()
        .map(|b| b.address.as_str().to_owned())
        .collect();
    assert_eq!(left, ["tok-2"]);
}

#[test]
fn expiry_removes_only_bindings_not_refreshed_since_the_cutoff() {
    // Both registered at 1000; the tablet is refreshed at 2000.
    let mut w = given(&[
        |w| register(w, "alice", "phone", "tok-1"),
        |w| register(w, "alice", "tablet", "tok-2"),
    ]);
    w.when(register(&w, "alice", "tablet", "tok-2"))
        .then_expect_event_types(&["BindingUpdated"]);
    w.when(Command::ExpireStale {
        older_than: Timestamp::from_unix(1_500),
        limit: 10,
    })
    .then_expect_events(&[binding_deleted(BindingRemoval::Expired)]);
    let left: Vec<_> = w
        .state
        .bindings()
        .map(|b| b.endpoint.as_str().to_owned())
        .collect();
    assert_eq!(left, ["tablet"]);
}

#[test]
fn a_first_account_is_created_only_into_an_empty_registry() {
    let first = |name: &str| Command::CreateFirstAccount {
        friendly_name: name.into(),
        auth_token_hash: SecretHash::of("token"),
    };
    let mut empty = MemoryState::default();
    let mut ids = CountingSids::default();
    let at = Timestamp::from_unix(1_000);
    let created = empty.execute(&mut ids, &first("one"), at).unwrap();
    assert!(created.created);
    assert_eq!(created.events.len(), 1);
    // Another node starting at the same moment finds it there and decides nothing.
    let second = empty.execute(&mut ids, &first("two"), at).unwrap();
    assert!(!second.created && second.events.is_empty());
    // A registry with accounts (the `given` world has one) takes no first account either.
    let mut w = given(&[]);
    w.when(first("three")).then_expect_event_types(&[]);
}
