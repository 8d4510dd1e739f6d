//! Reading a push credential (CONTRACT §6.2): what pushes is accepted, and each fault names
//! the field to mend, never quoting a secret.

use bindery_daemon::delivery::credential::{
    certificate_uid, read, CredentialInput, InvalidCredential,
};
use bindery_domain::{BindingType, CredentialAuth, CredentialProfile, Timestamp};
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384};

const NOW: i64 = 1_800_000_000;

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn now() -> Timestamp {
    Timestamp::from_unix(NOW)
}

/// A certificate for `key`, with the bundle id as its subject's UID, valid until `not_after`
/// (Unix seconds).
fn certificate(key: &KeyPair, uid: Option<&str>, not_after: i64) -> String {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "Apple Push Services: test");
    if let Some(uid) = uid {
        params.distinguished_name.push(
            DnType::CustomDnType(vec![0, 9, 2342, 19200300, 100, 1, 1]),
            uid,
        );
    }
    params.not_before = time::OffsetDateTime::from_unix_timestamp(NOW - 86_400).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
    params.self_signed(key).unwrap().pem()
}

#[track_caller]
fn refused(credential_type: BindingType, input: CredentialInput<'_>, field: &str, says: &str) {
    match read(credential_type, &input, now()) {
        Ok(credential) => panic!("accepted {credential:?}; expected {field} to be refused"),
        Err(InvalidCredential { field: named, why }) => {
            assert_eq!(named, field, "{why}");
            assert!(why.contains(says), "{field}: {why:?} should say {says:?}");
        }
    }
}

#[test]
fn an_apns_token_key_needs_a_p256_pkcs8_key_ten_character_ids_and_a_topic() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let good = CredentialInput {
        private_key: Some(&key),
        key_id: Some("ABC123DEFG"),
        team_id: Some("TEAM123456"),
        topic: Some("com.example.chat"),
        ..CredentialInput::default()
    };
    let credential = read(BindingType::Apn, &good, now()).unwrap();
    assert_eq!(credential.auth(), CredentialAuth::Token);
    assert_eq!(credential.topic(), "com.example.chat");
    assert_eq!(credential.expires(), None);
    assert_eq!(
        credential.profile(),
        CredentialProfile {
            auth: Some(CredentialAuth::Token),
            key_id: Some("ABC123DEFG".into()),
            team_id: Some("TEAM123456".into()),
            topic: Some("com.example.chat".into()),
            expires: None,
        }
    );
    assert!(
        !format!("{credential:?}").contains("PRIVATE"),
        "{credential:?}"
    );

    let p384 = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384)
        .unwrap()
        .serialize_pem();
    let rsa = fixture("test-only-rsa-key.pem");
    let sec1 = fixture("test-only-ec-key.sec1.pem");
    let apn = BindingType::Apn;
    refused(
        apn,
        CredentialInput {
            private_key: None,
            ..good
        },
        "PrivateKey",
        "required",
    );
    refused(
        apn,
        CredentialInput {
            private_key: Some("junk"),
            ..good
        },
        "PrivateKey",
        "PKCS#8",
    );
    refused(
        apn,
        CredentialInput {
            private_key: Some(&sec1),
            ..good
        },
        "PrivateKey",
        "PKCS#8",
    );
    refused(
        apn,
        CredentialInput {
            private_key: Some(&p384),
            ..good
        },
        "PrivateKey",
        "P-256",
    );
    refused(
        apn,
        CredentialInput {
            private_key: Some(&rsa),
            ..good
        },
        "PrivateKey",
        "P-256",
    );
    refused(
        apn,
        CredentialInput {
            key_id: None,
            ..good
        },
        "KeyId",
        "required",
    );
    refused(
        apn,
        CredentialInput {
            key_id: Some("ABC123DEF"),
            ..good
        },
        "KeyId",
        "10",
    );
    refused(
        apn,
        CredentialInput {
            key_id: Some("ABC123DEF!"),
            ..good
        },
        "KeyId",
        "10",
    );
    refused(
        apn,
        CredentialInput {
            team_id: None,
            ..good
        },
        "TeamId",
        "required",
    );
    refused(
        apn,
        CredentialInput {
            team_id: Some("TEAM1234567"),
            ..good
        },
        "TeamId",
        "10",
    );
    refused(
        apn,
        CredentialInput {
            topic: None,
            ..good
        },
        "Topic",
        "required",
    );
    refused(
        apn,
        CredentialInput {
            topic: Some(""),
            ..good
        },
        "Topic",
        "bundle id",
    );
    refused(
        apn,
        CredentialInput {
            topic: Some("com.ex ample"),
            ..good
        },
        "Topic",
        "bundle id",
    );
}

#[test]
fn an_apns_certificate_must_match_its_key_be_unexpired_and_name_a_topic() {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let key_pem = key.serialize_pem();
    let in_a_year = NOW + 365 * 86_400;
    let cert = certificate(&key, Some("com.example.chat"), in_a_year);
    let good = CredentialInput {
        certificate: Some(&cert),
        private_key: Some(&key_pem),
        ..CredentialInput::default()
    };
    let credential = read(BindingType::Apn, &good, now()).unwrap();
    assert_eq!(credential.auth(), CredentialAuth::Certificate);
    assert_eq!(credential.topic(), "com.example.chat", "the subject's UID");
    assert_eq!(credential.expires(), Some(Timestamp::from_unix(in_a_year)));
    assert_eq!(
        credential.profile(),
        CredentialProfile {
            auth: Some(CredentialAuth::Certificate),
            key_id: None,
            team_id: None,
            topic: Some("com.example.chat".into()),
            expires: Some(Timestamp::from_unix(in_a_year)),
        }
    );
    assert_eq!(certificate_uid(&cert).as_deref(), Some("com.example.chat"));
    let no_uid = certificate(&key, None, in_a_year);
    assert_eq!(certificate_uid(&no_uid), None);
    assert_eq!(certificate_uid("not a certificate"), None);
    let named = CredentialInput {
        topic: Some("com.example.other"),
        ..good
    };
    assert_eq!(
        read(BindingType::Apn, &named, now()).unwrap().topic(),
        "com.example.other",
        "a Topic given wins over the UID"
    );

    // The key in the older formats: SEC1 for EC, PKCS#1 for RSA.
    for (pkcs8, older) in [
        ("test-only-ec-key.pkcs8.pem", "test-only-ec-key.sec1.pem"),
        ("test-only-rsa-key.pem", "test-only-rsa-key.pkcs1.pem"),
    ] {
        let key = KeyPair::from_pem(&fixture(pkcs8)).unwrap();
        let cert = certificate(&key, Some("com.example.chat"), in_a_year);
        let older = fixture(older);
        let input = CredentialInput {
            certificate: Some(&cert),
            private_key: Some(&older),
            ..CredentialInput::default()
        };
        let read = read(BindingType::Apn, &input, now());
        assert!(read.is_ok(), "{pkcs8}: {read:?}");
    }

    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let expired = certificate(&key, Some("com.example.chat"), NOW - 1);
    let no_uid = certificate(&key, None, in_a_year);
    let apn = BindingType::Apn;
    refused(
        apn,
        CredentialInput {
            private_key: Some(&other),
            ..good
        },
        "PrivateKey",
        "does not match",
    );
    refused(
        apn,
        CredentialInput {
            private_key: None,
            ..good
        },
        "PrivateKey",
        "required",
    );
    refused(
        apn,
        CredentialInput {
            certificate: Some("junk"),
            ..good
        },
        "Certificate",
        "PEM",
    );
    refused(
        apn,
        CredentialInput {
            certificate: Some(&expired),
            ..good
        },
        "Certificate",
        "expired",
    );
    refused(
        apn,
        CredentialInput {
            certificate: Some(&no_uid),
            ..good
        },
        "Topic",
        "UID",
    );
    refused(
        apn,
        CredentialInput {
            key_id: Some("ABC123DEFG"),
            ..good
        },
        "KeyId",
        "token auth",
    );
    refused(
        apn,
        CredentialInput {
            team_id: Some("TEAM123456"),
            ..good
        },
        "TeamId",
        "token auth",
    );
}

#[test]
fn an_fcm_or_gcm_credential_is_a_service_account_with_an_rsa_key() {
    let account = |key: &str, token_uri: &str| {
        serde_json::json!({
            "type": "service_account",
            "project_id": "chat-test",
            "private_key_id": "0123",
            "private_key": key,
            "client_email": "push@chat-test.iam.gserviceaccount.com",
            "token_uri": token_uri,
        })
        .to_string()
    };
    let rsa = fixture("test-only-rsa-key.pem");
    let good = account(&rsa, "https://oauth2.googleapis.com/token");
    for credential_type in [BindingType::Fcm, BindingType::Gcm] {
        let input = CredentialInput {
            service_account: Some(&good),
            ..CredentialInput::default()
        };
        let credential = read(credential_type, &input, now()).unwrap();
        assert_eq!(credential.auth(), CredentialAuth::ServiceAccount);
        assert_eq!(credential.topic(), "chat-test");
    }
    let ec = fixture("test-only-ec-key.pkcs8.pem");
    let pkcs1 = fixture("test-only-rsa-key.pkcs1.pem");
    let fcm = BindingType::Fcm;
    fn with(json: &str) -> CredentialInput<'_> {
        CredentialInput {
            service_account: Some(json),
            ..CredentialInput::default()
        }
    }
    refused(fcm, CredentialInput::default(), "Secret", "required");
    // GCM's form holds the same JSON in ApiKey, and its faults name that field.
    refused(
        BindingType::Gcm,
        with("AAAA-legacy"),
        "ApiKey",
        "legacy server keys",
    );
    refused(
        fcm,
        with("AAAA-legacy-server-key"),
        "Secret",
        "legacy server keys",
    );
    refused(
        fcm,
        with(r#"{"project_id":"x"}"#),
        "Secret",
        "service-account JSON",
    );
    refused(fcm, with(&account(&ec, "https://x/token")), "Secret", "RSA");
    refused(
        fcm,
        with(&account(&pkcs1, "https://x/token")),
        "Secret",
        "PKCS#8",
    );
    refused(
        fcm,
        with(&account(&rsa, "http://x/token")),
        "Secret",
        "https",
    );
    refused(fcm, with(&account(&rsa, "not a url")), "Secret", "https");
}

#[test]
fn no_refusal_quotes_the_secret_it_refuses() {
    let secret = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END PRIVATE KEY-----";
    let input = CredentialInput {
        private_key: Some(secret),
        key_id: Some("ABC123DEFG"),
        team_id: Some("TEAM123456"),
        topic: Some("com.example.chat"),
        ..CredentialInput::default()
    };
    let error = read(BindingType::Apn, &input, now())
        .unwrap_err()
        .to_string();
    assert!(!error.contains("c2VjcmV0"), "{error}");
    let json = format!(r#"{{"private_key": "{}"}}"#, "c2VjcmV0");
    let input = CredentialInput {
        service_account: Some(&json),
        ..CredentialInput::default()
    };
    let error = read(BindingType::Fcm, &input, now())
        .unwrap_err()
        .to_string();
    assert!(!error.contains("c2VjcmV0"), "{error}");
}
