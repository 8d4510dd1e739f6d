//! Bindery's FCM client against the stand-in (crates/standin), which checks the OAuth
//! JWT-bearer grant (an RS256 assertion for the service account), the bearer token it issued,
//! and the message of CONTRACT §6.3. Through real sockets; nothing is mocked.

use std::time::Duration;

use bindery_daemon::delivery::credential::{read, CredentialInput, ProviderCredential};
use bindery_daemon::delivery::fcm::{self, TokenSource};
use bindery_daemon::delivery::http2::{tls_config, Connection};
use bindery_daemon::delivery::verdict::{Provider, Verdict};
use bindery_daemon::delivery::{payload, DeliveryError, Push};
use bindery_domain::notify::Priority;
use bindery_domain::*;
use bindery_standin::fcm::Answer;
use bindery_standin::{Fcm, TestCa};

mod common;
use common::{now, runtime};

fn push(address: &str) -> Push {
    common::push(BindingType::Fcm, address, Priority::High, 3600)
}

#[test]
fn a_push_gets_an_access_token_once_and_reaches_fcm_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path()).unwrap();
    let standin = Fcm::start(&ca).unwrap();
    standin.script("dead-token", Answer::Unregistered);
    standin.script("stale-token", Answer::Unauthenticated.once());
    standin.script(
        "busy-token",
        Answer::QuotaExceeded {
            retry_after: Some(4),
        },
    );

    let json = standin.service_account().json_string();
    let input = CredentialInput {
        service_account: Some(&json),
        ..CredentialInput::default()
    };
    let Ok(ProviderCredential::ServiceAccount {
        key,
        project_id,
        client_email,
        token_uri,
    }) = read(BindingType::Fcm, &input, Timestamp::from_unix(now() as i64))
    else {
        panic!("the stand-in's service account is an FCM credential");
    };
    let tls = tls_config(Some(ca.ca_file()), None).unwrap();
    let tokens = TokenSource::new(&token_uri, &client_email, key, tls.clone()).unwrap();
    let connection = Connection::new(&standin.url(), tls).unwrap();

    runtime().block_on(async {
        let send = |address: &'static str| {
            let (tokens, connection, project_id) = (&tokens, &connection, &project_id);
            async move {
                let token = tokens.token(now()).await.unwrap();
                let answer = fcm::send(
                    connection,
                    project_id,
                    &payload::fcm(&push(address)),
                    &token,
                )
                .await
                .unwrap();
                (token, answer)
            }
        };
        let (first, answer) = send("live-token").await;
        assert_eq!(
            answer.verdict(Provider::Fcm),
            Verdict::Delivered,
            "{answer:?}"
        );
        let sent = &standin.sends_to("live-token")[0];
        assert_eq!(
            sent.path,
            format!("/v1/projects/{project_id}/messages:send")
        );
        assert_eq!(
            sent.json.as_ref().unwrap()["message"],
            serde_json::json!({
                "token": "live-token",
                "notification": {"title": "Team Chat", "body": "bob: lunch?"},
                "data": {"channel": "general", "unread": "3"},
                "android": {"priority": "HIGH", "ttl": "3600s"},
            })
        );
        let grant = &standin.token_requests()[0];
        let assertion = grant.jwt.as_ref().expect("an assertion");
        assert_eq!(assertion.header["alg"], "RS256");
        assert_eq!(assertion.claims["iss"], client_email.as_str());
        assert_eq!(assertion.claims["aud"], token_uri.as_str());

        let (again, dead) = send("dead-token").await;
        assert_eq!(again, first, "the access token is reused");
        assert_eq!(
            dead.verdict(Provider::Fcm),
            Verdict::Unregistered {
                reason: "UNREGISTERED".into()
            }
        );
        let (_, busy) = send("busy-token").await;
        assert_eq!(
            busy.verdict(Provider::Fcm),
            Verdict::Transient {
                reason: "QUOTA_EXCEEDED".into(),
                retry_after: Some(Duration::from_secs(4)),
            }
        );

        // FCM revokes the token: renewed once, the push goes through with a new one.
        let (stale, refused) = send("stale-token").await;
        assert!(matches!(
            refused.verdict(Provider::Fcm),
            Verdict::RenewToken { .. }
        ));
        tokens.renew(&stale).await;
        let (renewed, retried) = send("stale-token").await;
        assert_ne!(renewed, stale);
        assert_eq!(retried.verdict(Provider::Fcm), Verdict::Delivered);
    });
    assert_eq!(
        standin.stats().tokens_issued,
        2,
        "one grant, and one renewal"
    );
    assert_eq!(connection.opened(), 1);
}

#[test]
fn a_refused_grant_is_the_credentials_fault_and_quotes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path()).unwrap();
    let standin = Fcm::start(&ca).unwrap();
    // A service account the token endpoint does not know: its grant is refused.
    let mut unknown = standin.service_account();
    unknown.client_email = "stranger@elsewhere.iam.gserviceaccount.com".into();
    let json = unknown.json_string();
    let input = CredentialInput {
        service_account: Some(&json),
        ..CredentialInput::default()
    };
    let Ok(ProviderCredential::ServiceAccount {
        key,
        client_email,
        token_uri,
        ..
    }) = read(BindingType::Fcm, &input, Timestamp::from_unix(now() as i64))
    else {
        panic!("a service account");
    };
    let tls = tls_config(Some(ca.ca_file()), None).unwrap();
    let tokens = TokenSource::new(&token_uri, &client_email, key, tls).unwrap();
    let refused = runtime().block_on(tokens.token(now())).unwrap_err();
    assert!(
        matches!(refused, DeliveryError::TokenRefused(_)),
        "{refused}"
    );
    assert!(!refused.to_string().contains("stranger"), "{refused}");
}
