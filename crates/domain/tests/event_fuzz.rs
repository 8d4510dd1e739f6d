//! Fuzzing the event decoder (`bindery_domain::Event::decode`) with proptest: cargo-fuzz needs a
//! nightly toolchain, which the project does not use.
//!
//! The log is read back by `Event::decode(type, schema_version, data)` at every start-up,
//! rebuild, verify and import, so whatever a damaged or hand-edited log holds must be answered
//! with a `DecodeError`, never a panic; and every event Bindery writes must read back as itself
//! (at its current version, and a BindingRegistered or a credential's event also from its
//! version-1 shape).

use bindery_domain::*;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Value};

/// PROPTEST_CASES=100000 for a long hunt; the default keeps the suite quick in debug builds.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    ProptestConfig {
        cases,
        // Next to this file (proptest's default, a tree parallel to `src`, has no place here).
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

const TYPE_NAMES: [&str; 16] = [
    "AccountCreated",
    "ApiKeyCreated",
    "ApiKeyRevoked",
    "ServiceCreated",
    "ServiceUpdated",
    "ServiceDeleted",
    "CredentialCreated",
    "CredentialUpdated",
    "CredentialDeleted",
    "UserCreated",
    "UserUpdated",
    "UserDeleted",
    "BindingRegistered",
    "BindingUpdated",
    "BindingSuperseded",
    "BindingDeleted",
];

// ---- Valid values -------------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(&[
            "alice", "bob@example.com", "user+1@x.com", "a b", "zoë", "\u{202E}evil", "a\0b",
            "../../etc/passwd", "'; DROP TABLE users; --", "\"quoted\"", "\\", "{}", "null",
        ][..])
        .prop_map(str::to_owned),
        2 => any::<String>(),
    ]
}

fn non_empty_bounded(max: usize) -> impl Strategy<Value = String> {
    text().prop_map(move |t| {
        let mut t = if t.is_empty() { "x".to_owned() } else { t };
        while t.len() > max {
            t.pop();
        }
        t
    })
}

fn identity() -> impl Strategy<Value = Identity> {
    non_empty_bounded(IDENTITY_MAX_BYTES)
        .prop_filter_map("not an identity", |t| Identity::parse(&t).ok())
}

fn address() -> impl Strategy<Value = PushAddress> {
    non_empty_bounded(ADDRESS_MAX_BYTES).prop_map(|t| PushAddress::parse(&t).expect("bounded"))
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    non_empty_bounded(ENDPOINT_MAX_BYTES).prop_map(|t| Endpoint::parse(&t).expect("bounded"))
}

fn binding_type() -> impl Strategy<Value = BindingType> {
    prop::sample::select(&BindingType::ALL[..])
}

fn message_types() -> impl Strategy<Value = MessageTypes> {
    prop::sample::subsequence(&MessageType::ALL[..], 0..=4)
        .prop_map(|types| types.into_iter().collect())
}

fn sid<K: SidKind>() -> impl Strategy<Value = Sid<K>> {
    any::<[u8; 16]>().prop_map(Sid::from_bytes)
}

fn secret_hash() -> impl Strategy<Value = SecretHash> {
    any::<String>().prop_map(|s| SecretHash::of(&s))
}

fn attributes() -> impl Strategy<Value = Attributes> {
    prop_oneof![
        prop::sample::select(
            &[
                "{}",
                "[]",
                "null",
                "1e999",
                "123456789012345678901234567890",
                "  {\"x\" : [1, 2, {\"y\": null}]}  ",
                "\"\\u0000\"",
                "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
            ][..]
        )
        .prop_map(str::to_owned),
        any::<String>().prop_map(|s| Value::String(s).to_string()),
        (any::<String>(), any::<i64>()).prop_map(|(k, v)| json!({ k: v }).to_string()),
    ]
    .prop_map(|t| Attributes::parse(&t).expect("valid JSON"))
}

fn role_sid() -> impl Strategy<Value = Option<String>> {
    prop::option::of(any::<[u8; 16]>().prop_map(|b| {
        format!(
            "RL{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        )
    }))
}

fn channel_notification() -> impl Strategy<Value = ChannelNotification> {
    (
        any::<bool>(),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(|(enabled, template, sound)| ChannelNotification {
            enabled,
            template,
            sound,
        })
}

fn settings() -> impl Strategy<Value = ServiceSettings> {
    (
        (
            role_sid(),
            role_sid(),
            role_sid(),
            any::<bool>(),
            any::<bool>(),
        ),
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()),
        (
            prop::option::of(text()),
            prop::option::of(text()),
            prop::option::of(text()),
            prop::collection::vec(text(), 0..3),
        ),
        (any::<u32>(), any::<u32>()),
        (
            any::<bool>(),
            (
                any::<bool>(),
                prop::option::of(text()),
                prop::option::of(text()),
                any::<bool>(),
            ),
            channel_notification(),
            channel_notification(),
            channel_notification(),
        ),
        (any::<u32>(), prop::option::of(text())),
    )
        .prop_map(
            |(
                (service_role, channel_role, creator_role, read_status, reachability),
                (typing, consumption, members, user_channels),
                (pre_url, post_url, method, filters),
                (pre_retries, post_retries),
                (
                    log_enabled,
                    (nm_enabled, nm_template, nm_sound, nm_badge),
                    added,
                    invited,
                    removed,
                ),
                (size_limit_mb, compatibility_message),
            )| ServiceSettings {
                default_service_role_sid: service_role,
                default_channel_role_sid: channel_role,
                default_channel_creator_role_sid: creator_role,
                read_status_enabled: read_status,
                reachability_enabled: reachability,
                typing_indicator_timeout: typing,
                consumption_report_interval: consumption,
                limits: ServiceLimits {
                    channel_members: members,
                    user_channels,
                },
                pre_webhook_url: pre_url,
                post_webhook_url: post_url,
                webhook_method: method,
                webhook_filters: filters,
                pre_webhook_retry_count: pre_retries,
                post_webhook_retry_count: post_retries,
                notifications: Notifications {
                    log_enabled,
                    new_message: NewMessageNotification {
                        enabled: nm_enabled,
                        template: nm_template,
                        sound: nm_sound,
                        badge_count_enabled: nm_badge,
                    },
                    added_to_channel: added,
                    invited_to_channel: invited,
                    removed_from_channel: removed,
                },
                media: Media {
                    size_limit_mb,
                    compatibility_message,
                },
            },
        )
}

fn secrets() -> impl Strategy<Value = CredentialSecrets> {
    (
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(
            |(certificate, private_key, api_key, secret)| CredentialSecrets {
                certificate,
                private_key,
                api_key,
                secret,
            },
        )
}

fn profile() -> impl Strategy<Value = CredentialProfile> {
    (
        prop::option::of(prop::sample::select(
            &[
                CredentialAuth::Token,
                CredentialAuth::Certificate,
                CredentialAuth::ServiceAccount,
            ][..],
        )),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(any::<i64>().prop_map(Timestamp::from_unix)),
    )
        .prop_map(
            |(auth, key_id, team_id, topic, expires)| CredentialProfile {
                auth,
                key_id,
                team_id,
                topic,
                expires,
            },
        )
}

fn binding_removal() -> impl Strategy<Value = BindingRemoval> {
    prop::sample::select(
        &[
            BindingRemoval::Api,
            BindingRemoval::UserDeleted,
            BindingRemoval::ServiceDeleted,
            BindingRemoval::TokenInvalid,
            BindingRemoval::Expired,
        ][..],
    )
}

/// Every kind of event, from valid values.
fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (text(), secret_hash()).prop_map(|(friendly_name, auth_token_hash)| {
            Event::AccountCreated {
                friendly_name,
                auth_token_hash,
            }
        }),
        (text(), secret_hash()).prop_map(|(friendly_name, secret_hash)| Event::ApiKeyCreated {
            friendly_name,
            secret_hash,
        }),
        Just(Event::ApiKeyRevoked {}),
        (text(), settings()).prop_map(|(friendly_name, settings)| Event::ServiceCreated {
            friendly_name,
            settings,
        }),
        (text(), settings()).prop_map(|(friendly_name, settings)| Event::ServiceUpdated {
            friendly_name,
            settings,
        }),
        Just(Event::ServiceDeleted {}),
        (
            binding_type(),
            prop::option::of(text()),
            prop::option::of(any::<bool>()),
            secrets(),
            profile()
        )
            .prop_map(
                |(credential_type, friendly_name, sandbox, secrets, profile)| {
                    Event::CredentialCreated {
                        credential_type,
                        friendly_name,
                        sandbox,
                        secrets,
                        profile,
                    }
                }
            ),
        (
            prop::option::of(text()),
            prop::option::of(any::<bool>()),
            secrets(),
            profile()
        )
            .prop_map(|(friendly_name, sandbox, secrets, profile)| {
                Event::CredentialUpdated {
                    friendly_name,
                    sandbox,
                    secrets,
                    profile,
                }
            }),
        Just(Event::CredentialDeleted {}),
        (
            identity(),
            prop::option::of(text()),
            prop::option::of(attributes()),
            role_sid()
        )
            .prop_map(|(identity, friendly_name, attributes, role_sid)| {
                Event::UserCreated {
                    identity,
                    friendly_name,
                    attributes,
                    role_sid,
                }
            }),
        (
            prop::option::of(text()),
            prop::option::of(attributes()),
            role_sid()
        )
            .prop_map(|(friendly_name, attributes, role_sid)| Event::UserUpdated {
                friendly_name,
                attributes,
                role_sid,
            }),
        prop::sample::select(&[UserRemoval::Api, UserRemoval::ServiceDeleted][..])
            .prop_map(|reason| Event::UserDeleted { reason }),
        binding_registered(),
        (address(), prop::option::of(sid()), message_types()).prop_map(
            |(address, credential_sid, message_types)| Event::BindingUpdated {
                address,
                credential_sid,
                message_types,
            }
        ),
        (sid(), sid()).prop_map(|(by, by_user_sid)| Event::BindingSuperseded { by, by_user_sid }),
        (binding_removal(), proptest::option::of("[A-Za-z]{1,20}")).prop_map(
            |(reason, provider_reason)| Event::BindingDeleted {
                reason,
                provider_reason
            }
        ),
    ]
}

fn binding_registered() -> impl Strategy<Value = Event> {
    (
        sid(),
        identity(),
        endpoint(),
        binding_type(),
        address(),
        prop::option::of(sid()),
        message_types(),
    )
        .prop_map(
            |(
                user_sid,
                identity,
                endpoint,
                binding_type,
                address,
                credential_sid,
                message_types,
            )| {
                Event::BindingRegistered {
                    user_sid,
                    identity,
                    endpoint,
                    binding_type,
                    address,
                    credential_sid,
                    message_types,
                }
            },
        )
}

// ---- Hostile inputs -----------------------------------------------------------------------

fn type_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&TYPE_NAMES[..]).prop_map(str::to_owned),
        1 => prop::sample::select(&TYPE_NAMES[..]).prop_map(|t| t.to_lowercase()),
        1 => prop::sample::select(&["", " ", "BindingRegistered ", "Binding\0Registered", "type", "data"][..])
            .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn version() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..4, 1 => any::<u32>(), 1 => Just(u32::MAX)]
}

/// JSON of any shape, some of it nearly right for some event.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::String),
        prop::sample::select(
            &[
                "apn",
                "fcm",
                "gcm",
                "api",
                "expired",
                "new_message",
                "IS0123456789abcdef0123456789abcdef",
                "US0123456789abcdef0123456789abcdef",
                "BS0123456789abcdef0123456789abcdef",
                "CR0123456789abcdef0123456789abcdef",
            ][..]
        )
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop::sample::select(
            &[
                "friendly_name",
                "settings",
                "identity",
                "endpoint",
                "binding_type",
                "address",
                "credential_sid",
                "message_types",
                "user_sid",
                "reason",
                "by",
                "by_user_sid",
                "attributes",
                "role_sid",
                "auth_token_hash",
                "secret_hash",
                "secrets",
                "profile",
                "auth",
                "key_id",
                "team_id",
                "topic",
                "expires",
                "sandbox",
                "credential_type",
                "notifications",
                "limits",
                "media",
                "",
            ][..],
        )
        .prop_map(str::to_owned);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(prop_oneof![key, any::<String>()], inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn data() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => json_value().prop_map(|v| v.to_string()),
        1 => any::<String>(),
        1 => prop::sample::select(&[
            "", "{", "}", "{}", "[]", "null", "\"", "{\"a\":1,}", "{\"a\" 1}", "1e999999",
            "-0", "{\"identity\":\"\\ud800\"}", "\u{feff}{}", "{}\0", "{\"a\":1}{\"b\":2}",
        ][..])
        .prop_map(str::to_owned),
    ]
}

/// Asserts what every answer of the decoder must satisfy: an event that re-encodes to data
/// that decodes to itself, or an error that names its type.
fn check_decoded(result: Result<Event, DecodeError>) -> Result<(), TestCaseError> {
    match result {
        Ok(event) => {
            let again = Event::decode(
                event.type_name(),
                event.schema_version(),
                &event.encode_data(),
            );
            prop_assert_eq!(again, Ok(event));
        }
        Err(error) => prop_assert!(!error.to_string().is_empty()),
    }
    Ok(())
}

/// Mutations of a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    /// Cut `len` bytes out at `at` (both scaled to the text, kept on char boundaries).
    Cut { at: usize, len: usize },
    /// Insert text at `at`.
    Insert { at: usize, text: String },
    /// Replace the value of a top-level field (by index) with another JSON value.
    Replace { field: usize, value: Value },
    /// Remove a top-level field.
    Remove { field: usize },
    /// Add an unknown field.
    Add { name: String, value: Value },
    /// Wrap the whole data in an array or a string.
    Wrap { as_string: bool },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0usize..8).prop_map(|(at, len)| Mutation::Cut { at, len }),
        (
            any::<usize>(),
            prop_oneof![
                text(),
                prop::sample::select(&["\"", "{", "}", ",", ":", "\\", "null", "\0"][..])
                    .prop_map(str::to_owned)
            ]
        )
            .prop_map(|(at, text)| Mutation::Insert { at, text }),
        (any::<usize>(), json_value())
            .prop_map(|(field, value)| Mutation::Replace { field, value }),
        any::<usize>().prop_map(|field| Mutation::Remove { field }),
        (any::<String>(), json_value()).prop_map(|(name, value)| Mutation::Add { name, value }),
        any::<bool>().prop_map(|as_string| Mutation::Wrap { as_string }),
    ]
}

fn floor_char_boundary(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn mutate(data: &str, mutation: &Mutation) -> String {
    let object = || serde_json::from_str::<serde_json::Map<String, Value>>(data).ok();
    match mutation {
        Mutation::Cut { at, len } => {
            let start = floor_char_boundary(data, at % (data.len() + 1));
            let end = floor_char_boundary(data, start + len);
            format!("{}{}", &data[..start], &data[end..])
        }
        Mutation::Insert { at, text } => {
            let at = floor_char_boundary(data, at % (data.len() + 1));
            format!("{}{text}{}", &data[..at], &data[at..])
        }
        Mutation::Replace { field, value } => match object() {
            Some(mut map) if !map.is_empty() => {
                let key = map.keys().nth(field % map.len()).cloned().expect("a key");
                map.insert(key, value.clone());
                Value::Object(map).to_string()
            }
            _ => value.to_string(),
        },
        Mutation::Remove { field } => match object() {
            Some(mut map) if !map.is_empty() => {
                let key = map.keys().nth(field % map.len()).cloned().expect("a key");
                map.remove(&key);
                Value::Object(map).to_string()
            }
            _ => String::new(),
        },
        Mutation::Add { name, value } => match object() {
            Some(mut map) => {
                map.insert(name.clone(), value.clone());
                Value::Object(map).to_string()
            }
            None => data.to_owned(),
        },
        Mutation::Wrap { as_string } => {
            if *as_string {
                Value::String(data.to_owned()).to_string()
            } else {
                format!("[{data}]")
            }
        }
    }
}

/// A BindingRegistered's data as version 1 wrote it: no endpoint, no message types.
fn v1_data(event: &Event) -> String {
    let mut data: serde_json::Map<String, Value> =
        serde_json::from_str(&event.encode_data()).expect("an object");
    data.remove("endpoint");
    data.remove("message_types");
    Value::Object(data).to_string()
}

proptest! {
    #![proptest_config(config())]

    /// Every event Bindery can write reads back as itself.
    #[test]
    fn every_event_decodes_to_itself(event in event()) {
        let data = event.encode_data();
        prop_assert!(serde_json::from_str::<serde_json::Map<String, Value>>(&data).is_ok(), "{}", data);
        let decoded = Event::decode(event.type_name(), event.schema_version(), &data);
        prop_assert_eq!(decoded, Ok(event));
    }

    /// A version-1 BindingRegistered reads back with the endpoint a registration without
    /// `Endpoint` derives and every message type; a version-1 encoding that lost a field it
    /// needs is an error, not a panic.
    #[test]
    fn version_one_registrations_upcast(event in binding_registered(), drop in 0usize..4) {
        let Event::BindingRegistered { user_sid, identity, binding_type, address, credential_sid, .. } = &event else {
            unreachable!()
        };
        let decoded = Event::decode("BindingRegistered", 1, &v1_data(&event));
        prop_assert_eq!(decoded, Ok(Event::BindingRegistered {
            user_sid: *user_sid,
            identity: identity.clone(),
            endpoint: Endpoint::derived(identity, *binding_type, address),
            binding_type: *binding_type,
            address: address.clone(),
            credential_sid: *credential_sid,
            message_types: MessageTypes::all(),
        }));
        let mut data: serde_json::Map<String, Value> = serde_json::from_str(&v1_data(&event)).unwrap();
        let field = ["identity", "binding_type", "address", "user_sid"][drop];
        data.remove(field);
        let result = Event::decode("BindingRegistered", 1, &Value::Object(data).to_string());
        prop_assert!(matches!(result, Err(DecodeError::BadData { .. })), "without {}: {:?}", field, result);
    }

    /// A version-1 credential event (no profile) reads back as itself with an unknown profile.
    #[test]
    fn version_one_credentials_upcast(event in event()) {
        let mut unknown = event.clone();
        match &mut unknown {
            Event::CredentialCreated { profile, .. } | Event::CredentialUpdated { profile, .. } => {
                *profile = CredentialProfile::default();
            }
            _ => return Ok(()),
        }
        let mut data: serde_json::Map<String, Value> =
            serde_json::from_str(&event.encode_data()).expect("an object");
        data.remove("profile");
        let decoded = Event::decode(event.type_name(), 1, &Value::Object(data).to_string());
        prop_assert_eq!(decoded, Ok(unknown));
    }

    /// Arbitrary type names, versions and data never make the decoder panic.
    #[test]
    fn arbitrary_input_never_panics(type_name in type_name(), version in version(), data in data()) {
        check_decoded(Event::decode(&type_name, version, &data))?;
    }

    /// Valid encodings of real events, mutated, never make the decoder panic, at the event's
    /// own version, at version 1 and at any other.
    #[test]
    fn mutated_encodings_never_panic(
        event in event(),
        mutations in prop::collection::vec(mutation(), 1..4),
        version in version(),
    ) {
        let mut data = event.encode_data();
        for mutation in &mutations {
            data = mutate(&data, mutation);
        }
        for version in [event.schema_version(), 1, version] {
            check_decoded(Event::decode(event.type_name(), version, &data))?;
        }
        // Another type's data under this type's name.
        for type_name in TYPE_NAMES {
            check_decoded(Event::decode(type_name, 1, &data))?;
        }
    }
}

#[test]
fn deep_and_huge_data_is_refused_cleanly() {
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    let unclosed = "[".repeat(1_000_000);
    let huge_number = format!("{{\"reason\": {}}}", "9".repeat(100_000));
    let long_identity = format!(
        "{{\"identity\": \"{}\", \"friendly_name\": null, \"attributes\": null, \"role_sid\": null}}",
        "x".repeat(1_000_000)
    );
    // A type whose fields the nesting would fill refuses it.
    let result = Event::decode("UserCreated", 1, &deep_array);
    assert!(result.is_err(), "{result:?}");
    for type_name in TYPE_NAMES {
        for version in [0, 1, 2, 3, u32::MAX] {
            // Not JSON: an error for every type.
            let result = Event::decode(type_name, version, &unclosed);
            assert!(result.is_err(), "{type_name} v{version}: {result:?}");
            // Past serde_json's recursion limit: no overflow, no panic. A type reading the
            // nesting refuses it; one that has no such field (an object's unknown key `a`, or
            // any data of ApiKeyRevoked) skips it unread, and decodes to itself.
            for data in [&deep_array, &deep_object] {
                check_decoded(Event::decode(type_name, version, data))
                    .unwrap_or_else(|e| panic!("{type_name} v{version}: {e}"));
            }
            // An event with no fields ignores unknown ones, so these may decode: to an event
            // that decodes to itself, then.
            for data in [&huge_number, &long_identity] {
                check_decoded(Event::decode(type_name, version, data))
                    .unwrap_or_else(|e| panic!("{type_name} v{version}: {e}"));
            }
        }
    }
    // Deep JSON inside an event's attributes is the user's business, but the log holds it as a
    // string: it reads back as long as the JSON parser accepted it when it was written.
    let attributes = format!("{}{}", "[".repeat(100), "]".repeat(100));
    if let Ok(attributes) = Attributes::parse(&attributes) {
        let event = Event::UserUpdated {
            friendly_name: None,
            attributes: Some(attributes),
            role_sid: None,
        };
        assert_eq!(
            Event::decode(event.type_name(), 1, &event.encode_data()),
            Ok(event)
        );
    }
}
