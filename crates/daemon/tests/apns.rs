//! Bindery's APNs client against the stand-in (crates/standin), which checks what Apple
//! checks: HTTP/2 over TLS, the ES256 provider token or the client certificate, the headers
//! and the body of CONTRACT §6.3. Through real sockets; nothing is mocked.

use std::sync::Arc;

use bindery_daemon::delivery::credential::{read, CredentialInput, ProviderCredential};
use bindery_daemon::delivery::http2::{tls_config, Connection};
use bindery_daemon::delivery::verdict::{Provider, Verdict};
use bindery_daemon::delivery::{apns, jwt, payload, Push};
use bindery_domain::notify::Priority;
use bindery_domain::*;
use bindery_standin::apns::Answer;
use bindery_standin::{Apns, ApnsAuth, ApnsKey, ClientCertSpec, TestCa};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

const TOPIC: &str = "com.example.chat";

mod common;
use common::{now, runtime};

fn push(address: &str) -> Push {
    common::push(BindingType::Apn, address, Priority::Low, 60)
}

#[test]
fn a_push_with_token_auth_reaches_apns_with_its_token_headers_and_body() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path()).unwrap();
    let key = ApnsKey::generate("ABC123DEFG", "TEAM123456").unwrap();
    let standin = Apns::start(&ca, ApnsAuth::token(&key)).unwrap();
    standin.script("dead-token", Answer::Unregistered);
    standin.script(
        "busy-token",
        Answer::TooManyRequests {
            retry_after: Some(9),
        },
    );

    // The .p8 key is read as a credential would be, then signs the provider token.
    let p8 = key.p8_pem();
    let input = CredentialInput {
        private_key: Some(&p8),
        key_id: Some("ABC123DEFG"),
        team_id: Some("TEAM123456"),
        topic: Some(TOPIC),
        ..CredentialInput::default()
    };
    let Ok(ProviderCredential::ApnsToken {
        key: signing,
        key_id,
        team_id,
        topic,
    }) = read(BindingType::Apn, &input, Timestamp::from_unix(now() as i64))
    else {
        panic!("the stand-in's key is a token-auth credential");
    };
    let connection = Connection::new(
        &standin.url(),
        tls_config(Some(ca.ca_file()), None).unwrap(),
    )
    .unwrap();
    let token = jwt::apns_token(&signing, &key_id, &team_id, now());

    runtime().block_on(async {
        let sent_at = now();
        let answer = apns::send(
            &connection,
            &payload::apns(&push("live-token"), &topic, sent_at),
            Some(&token),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.verdict(Provider::Apns), Verdict::Delivered);

        let received = standin.pushes_to("live-token");
        assert_eq!(received.len(), 1);
        let request = &received[0];
        assert_eq!(request.protocol, "h2");
        assert_eq!(request.header("apns-topic"), Some(TOPIC));
        assert_eq!(request.header("apns-push-type"), Some("alert"));
        assert_eq!(request.header("apns-priority"), Some("5"));
        let expiration: u64 = request.header("apns-expiration").unwrap().parse().unwrap();
        assert!(
            (sent_at + 60..=now() + 60).contains(&expiration),
            "{expiration}"
        );
        let jwt = request.jwt.as_ref().expect("a provider token");
        assert_eq!(jwt.header["kid"], "ABC123DEFG");
        assert_eq!(jwt.claims["iss"], "TEAM123456");
        assert_eq!(
            request.json,
            Some(serde_json::json!({
                "aps": {"alert": {"title": "Team Chat", "body": "bob: lunch?"}},
                "channel": "general", "unread": 3,
            }))
        );

        let dead = apns::send(
            &connection,
            &payload::apns(&push("dead-token"), &topic, now()),
            Some(&token),
        )
        .await
        .unwrap();
        assert_eq!(
            dead.verdict(Provider::Apns),
            Verdict::Unregistered {
                reason: "Unregistered".into()
            }
        );
        let busy = apns::send(
            &connection,
            &payload::apns(&push("busy-token"), &topic, now()),
            Some(&token),
        )
        .await
        .unwrap();
        assert_eq!(
            busy.verdict(Provider::Apns),
            Verdict::Transient {
                reason: "TooManyRequests".into(),
                retry_after: Some(std::time::Duration::from_secs(9)),
            }
        );

        // A token signed by another key is refused as Apple would.
        let stranger = EcdsaKeyPair::generate_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let stranger = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            stranger.as_ref(),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let forged = jwt::apns_token(&stranger, &key_id, &team_id, now());
        let refused = apns::send(
            &connection,
            &payload::apns(&push("live-token"), &topic, now()),
            Some(&forged),
        )
        .await
        .unwrap();
        assert_eq!(
            refused.verdict(Provider::Apns),
            Verdict::RenewToken {
                reason: "InvalidProviderToken".into()
            }
        );
    });
    assert_eq!(
        standin.stats().connections,
        1,
        "every push shared one connection"
    );
    assert_eq!(connection.opened(), 1);
}

#[test]
fn many_pushes_at_once_are_streams_of_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path()).unwrap();
    let key = ApnsKey::generate("ABC123DEFG", "TEAM123456").unwrap();
    let standin = Apns::start(&ca, ApnsAuth::token(&key)).unwrap();
    // Each answer waits a little, so that streams sent together are open together.
    standin.script_all(Answer::Accept.after(std::time::Duration::from_millis(100)));
    let signing = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        key.pkcs8_der(),
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let token = jwt::apns_token(&signing, "ABC123DEFG", "TEAM123456", now());
    let connection = Arc::new(
        Connection::new(
            &standin.url(),
            tls_config(Some(ca.ca_file()), None).unwrap(),
        )
        .unwrap(),
    );
    let statuses = runtime().block_on(async {
        // One push first, so the provider's SETTINGS (its stream limit) are known.
        let first = payload::apns(&push("token-first"), TOPIC, now());
        apns::send(&connection, &first, Some(&token)).await.unwrap();
        let sends = (0..50).map(|i| {
            let (connection, token) = (connection.clone(), token.clone());
            async move {
                let request = payload::apns(&push(&format!("token-{i}")), TOPIC, now());
                apns::send(&connection, &request, Some(&token))
                    .await
                    .unwrap()
                    .status
            }
        });
        futures_util::future::join_all(sends).await
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let stats = standin.stats();
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.requests, 51);
    assert!(stats.max_concurrent_streams > 1, "{stats:?}");
}

#[test]
fn certificate_auth_presents_the_credentials_certificate_and_a_closed_connection_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path()).unwrap();
    let standin = Apns::start(&ca, ApnsAuth::Certificate).unwrap();
    standin.script("goodbye-token", Answer::CloseConnection.once());
    let client = ca.client_cert(&ClientCertSpec::new(TOPIC)).unwrap();
    let input = CredentialInput {
        certificate: Some(&client.cert_pem),
        private_key: Some(&client.key_traditional_pem),
        ..CredentialInput::default()
    };
    let Ok(ProviderCredential::ApnsCertificate {
        chain, key, topic, ..
    }) = read(BindingType::Apn, &input, Timestamp::from_unix(now() as i64))
    else {
        panic!("a certificate-auth credential");
    };
    assert_eq!(topic, TOPIC, "the topic is the certificate's UID");
    let tls = tls_config(Some(ca.ca_file()), Some((chain, key.clone_key()))).unwrap();
    let connection = Connection::new(&standin.url(), tls).unwrap();
    let without = Connection::new(
        &standin.url(),
        tls_config(Some(ca.ca_file()), None).unwrap(),
    )
    .unwrap();
    runtime().block_on(async {
        let request = payload::apns(&push("cert-token"), &topic, now());
        let answer = apns::send(&connection, &request, None).await.unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(
            standin.pushes_to("cert-token")[0].client_subject.as_deref(),
            Some(client.subject.as_str())
        );
        assert!(
            apns::send(&without, &request, None).await.is_err(),
            "no client certificate, no push"
        );

        // The provider closes the connection under a push: that push fails (to be retried),
        // and the next one opens a new connection.
        let goodbye = payload::apns(&push("goodbye-token"), &topic, now());
        assert!(apns::send(&connection, &goodbye, None).await.is_err());
        let again = apns::send(&connection, &goodbye, None).await.unwrap();
        assert_eq!(again.status, 200);
    });
    assert_eq!(connection.opened(), 2);
}
