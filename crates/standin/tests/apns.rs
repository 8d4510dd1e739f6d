//! The APNs stand-in, driven by a real HTTP/2 TLS client.

use std::time::{Duration, Instant};

use bindery_standin::apns::Answer;
use bindery_standin::{
    Apns, ApnsAuth, ApnsKey, ClientCertSpec, RsaTestKey, Script, ServerSettings, TestCa,
};
use serde_json::json;

use crate::support::{es256, identity, now, provider_token, wait_until, H2};

const TOPIC: &str = "com.example.app";
const BODY: &str = r#"{"aps":{"alert":{"title":"T","body":"B"},"sound":"default"},"n":3}"#;

struct Setup {
    _dir: tempfile::TempDir,
    ca: TestCa,
    key: ApnsKey,
    apns: Apns,
}

fn token_auth() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path()).unwrap();
    let key = ApnsKey::generate("KEYID12345", "TEAMID1234").unwrap();
    let apns = Apns::start(&ca, ApnsAuth::token(&key)).unwrap();
    Setup {
        _dir: dir,
        ca,
        key,
        apns,
    }
}

type Headers<'a> = Vec<(&'a str, &'a str)>;

fn headers(bearer: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("authorization", bearer),
        ("apns-topic", TOPIC),
        ("apns-push-type", "alert"),
        ("apns-priority", "10"),
    ]
}

impl Setup {
    async fn client(&self) -> H2 {
        H2::connect(self.apns.addr(), self.ca.ca_pem(), None)
            .await
            .unwrap()
    }

    fn bearer(&self) -> String {
        format!("bearer {}", provider_token(&self.key, now()))
    }
}

#[tokio::test]
async fn a_valid_push_is_accepted_and_recorded() {
    let s = token_auth();
    let client = s.client().await;
    let bearer = s.bearer();
    let mut h = headers(&bearer);
    h.push(("apns-expiration", "1900000000"));
    let answer = client.post("/3/device/token-ok", &h, BODY).await.unwrap();
    assert_eq!(answer.status, 200);
    let apns_id = answer.header("apns-id").unwrap();
    assert_eq!(apns_id.len(), 36);

    let records = s.apns.requests();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (r.connection, r.protocol, r.method.as_str()),
        (1, "h2", "POST")
    );
    assert_eq!(r.path, "/3/device/token-ok");
    assert_eq!(r.header("apns-topic"), Some(TOPIC));
    assert_eq!(r.header("apns-expiration"), Some("1900000000"));
    assert_eq!(r.json.as_ref().unwrap()["aps"]["alert"]["title"], "T");
    let jwt = r.jwt.as_ref().unwrap();
    assert_eq!(jwt.header, json!({"alg": "ES256", "kid": "KEYID12345"}));
    assert_eq!(jwt.claims["iss"], "TEAMID1234");
    assert_eq!(r.status, Some(200));
    assert_eq!(r.client_subject, None);
    assert_eq!(s.apns.pushes_to("token-ok").len(), 1);

    let stats = s.apns.stats();
    assert_eq!(
        (stats.connections, stats.requests, stats.handshake_failures),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn each_scripted_answer_is_given() {
    let s = token_auth();
    let cases: Vec<(Answer, u16, &str, Option<&str>)> = vec![
        (Answer::Unregistered, 410, "Unregistered", None),
        (Answer::ExpiredToken, 410, "ExpiredToken", None),
        (Answer::BadDeviceToken, 400, "BadDeviceToken", None),
        (
            Answer::DeviceTokenNotForTopic,
            400,
            "DeviceTokenNotForTopic",
            None,
        ),
        (
            Answer::TooManyRequests {
                retry_after: Some(7),
            },
            429,
            "TooManyRequests",
            Some("7"),
        ),
        (
            Answer::TooManyRequests { retry_after: None },
            429,
            "TooManyRequests",
            None,
        ),
        (
            Answer::InternalServerError { retry_after: None },
            500,
            "InternalServerError",
            None,
        ),
        (
            Answer::ServiceUnavailable {
                retry_after: Some(1),
            },
            503,
            "ServiceUnavailable",
            Some("1"),
        ),
        (
            Answer::InvalidProviderToken,
            403,
            "InvalidProviderToken",
            None,
        ),
        (
            Answer::Other {
                status: 500,
                reason: "Shutdown".into(),
            },
            500,
            "Shutdown",
            None,
        ),
    ];
    let client = s.client().await;
    let bearer = s.bearer();
    for (i, (answer, status, reason, retry_after)) in cases.into_iter().enumerate() {
        let token = format!("token-{i}");
        s.apns.script(&token, answer);
        for _ in 0..2 {
            let got = client
                .post(&format!("/3/device/{token}"), &headers(&bearer), BODY)
                .await
                .unwrap();
            assert_eq!(
                (got.status.as_u16(), got.reason()),
                (status, reason),
                "{token}"
            );
            assert_eq!(got.header("retry-after"), retry_after, "{token}");
            assert!(got.header("apns-id").is_some());
            // Apple adds when it learnt the token was gone, in milliseconds.
            let timestamp = got.json["timestamp"].as_u64();
            assert_eq!(timestamp.is_some(), status == 410, "{token}");
            if let Some(ms) = timestamp {
                assert!(ms > 1_700_000_000_000);
            }
        }
        let records = s.apns.pushes_to(&token);
        assert_eq!(records[0].reason.as_deref(), Some(reason));
    }
    // Everything above went over one connection.
    assert_eq!(s.apns.stats().connections, 1);
}

#[tokio::test]
async fn failing_the_first_attempts_then_succeeding() {
    let s = token_auth();
    s.apns.script(
        "flaky",
        Answer::ServiceUnavailable { retry_after: None }.times(2),
    );
    s.apns.script(
        "mixed",
        Script::sequence([
            Answer::TooManyRequests {
                retry_after: Some(1),
            },
            Answer::InternalServerError { retry_after: None },
        ])
        .then(Answer::Unregistered),
    );
    let client = s.client().await;
    let bearer = s.bearer();
    let mut got = Vec::new();
    for token in [
        "flaky", "flaky", "flaky", "flaky", "mixed", "mixed", "mixed", "mixed",
    ] {
        let answer = client
            .post(&format!("/3/device/{token}"), &headers(&bearer), BODY)
            .await
            .unwrap();
        got.push(answer.status.as_u16());
    }
    assert_eq!(got, [503, 503, 200, 200, 429, 500, 410, 410]);
}

#[tokio::test]
async fn an_expired_provider_token_once_then_only_a_new_token_gets_through() {
    let s = token_auth();
    s.apns.script("t", Answer::ExpiredProviderToken.once());
    let client = s.client().await;
    let old = format!("bearer {}", provider_token(&s.key, now() - 60));
    let first = client
        .post("/3/device/t", &headers(&old), BODY)
        .await
        .unwrap();
    assert_eq!(
        (first.status.as_u16(), first.reason()),
        (403, "ExpiredProviderToken")
    );
    // The same token stays refused, as Apple refuses an expired one, script or not.
    let again = client
        .post("/3/device/other", &headers(&old), BODY)
        .await
        .unwrap();
    assert_eq!(
        (again.status.as_u16(), again.reason()),
        (403, "ExpiredProviderToken")
    );
    let fresh = s.bearer();
    let then = client
        .post("/3/device/t", &headers(&fresh), BODY)
        .await
        .unwrap();
    assert_eq!(then.status, 200);
}

#[tokio::test]
async fn bad_and_old_provider_tokens_are_refused() {
    let s = token_auth();
    let other = ApnsKey::generate("KEYID12345", "TEAMID1234").unwrap();
    let p8 = s.key.p8_pem();
    let header = json!({"alg": "ES256", "kid": "KEYID12345"});
    let claims = json!({"iss": "TEAMID1234", "iat": now()});
    let cases = [
        (
            "another key",
            provider_token(&other, now()),
            "InvalidProviderToken",
        ),
        (
            "wrong kid",
            es256(
                &p8,
                json!({"alg": "ES256", "kid": "KEYID99999"}),
                claims.clone(),
            ),
            "InvalidProviderToken",
        ),
        (
            "no kid",
            es256(&p8, json!({"alg": "ES256"}), claims.clone()),
            "InvalidProviderToken",
        ),
        (
            "wrong alg",
            es256(
                &p8,
                json!({"alg": "HS256", "kid": "KEYID12345"}),
                claims.clone(),
            ),
            "InvalidProviderToken",
        ),
        (
            "wrong iss",
            es256(
                &p8,
                header.clone(),
                json!({"iss": "TEAMID9999", "iat": now()}),
            ),
            "InvalidProviderToken",
        ),
        (
            "no iat",
            es256(&p8, header.clone(), json!({"iss": "TEAMID1234"})),
            "InvalidProviderToken",
        ),
        (
            "iat ahead",
            es256(
                &p8,
                header.clone(),
                json!({"iss": "TEAMID1234", "iat": now() + 600}),
            ),
            "InvalidProviderToken",
        ),
        (
            "an hour old",
            provider_token(&s.key, now() - 3601),
            "ExpiredProviderToken",
        ),
        ("not a JWT", "abc.def".to_owned(), "InvalidProviderToken"),
    ];
    let client = s.client().await;
    for (what, jwt, reason) in cases {
        let bearer = format!("bearer {jwt}");
        let got = client
            .post("/3/device/t", &headers(&bearer), BODY)
            .await
            .unwrap();
        assert_eq!((got.status.as_u16(), got.reason()), (403, reason), "{what}");
    }
    // 59 minutes old is still good.
    let bearer = format!("bearer {}", provider_token(&s.key, now() - 59 * 60));
    let got = client
        .post("/3/device/t", &headers(&bearer), BODY)
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    let none = client
        .post(
            "/3/device/t",
            &[
                ("apns-topic", TOPIC),
                ("apns-push-type", "alert"),
                ("apns-priority", "10"),
            ],
            BODY,
        )
        .await
        .unwrap();
    assert_eq!(
        (none.status.as_u16(), none.reason()),
        (403, "MissingProviderToken")
    );
}

#[tokio::test]
async fn the_request_is_checked_as_apple_does() {
    let s = token_auth();
    s.apns.allow_topics([TOPIC, "com.example.app.voip"]);
    let client = s.client().await;
    let bearer = s.bearer();
    let with = |name: &'static str, value: &'static str| {
        let mut h: Vec<(&str, &str)> = headers(&bearer)
            .into_iter()
            .filter(|(n, _)| *n != name)
            .collect();
        if !value.is_empty() {
            h.push((name, value));
        }
        h
    };
    let cases: Vec<(&str, Headers, &str, u16, &str)> = vec![
        (
            "no topic",
            with("apns-topic", ""),
            BODY,
            400,
            "MissingTopic",
        ),
        (
            "other topic",
            with("apns-topic", "com.example.other"),
            BODY,
            400,
            "TopicDisallowed",
        ),
        (
            "no push type",
            with("apns-push-type", ""),
            BODY,
            400,
            "InvalidPushType",
        ),
        (
            "odd push type",
            with("apns-push-type", "shout"),
            BODY,
            400,
            "InvalidPushType",
        ),
        (
            "no priority",
            with("apns-priority", ""),
            BODY,
            400,
            "BadPriority",
        ),
        (
            "priority 7",
            with("apns-priority", "7"),
            BODY,
            400,
            "BadPriority",
        ),
        (
            "bad expiration",
            with("apns-expiration", "tomorrow"),
            BODY,
            400,
            "BadExpirationDate",
        ),
        (
            "bad apns-id",
            with("apns-id", "123"),
            BODY,
            400,
            "BadMessageId",
        ),
        ("empty body", headers(&bearer), "", 400, "PayloadEmpty"),
        ("no aps", headers(&bearer), r#"{"n":1}"#, 400, "BadPayload"),
        ("not JSON", headers(&bearer), "aps", 400, "BadPayload"),
    ];
    for (what, h, body, status, reason) in cases {
        let got = client.post("/3/device/t", &h, body).await.unwrap();
        assert_eq!(
            (got.status.as_u16(), got.reason()),
            (status, reason),
            "{what}"
        );
    }
    let big = format!(r#"{{"aps":{{}},"x":"{}"}}"#, "x".repeat(4100));
    let got = client
        .post("/3/device/t", &headers(&bearer), big)
        .await
        .unwrap();
    assert_eq!(
        (got.status.as_u16(), got.reason()),
        (413, "PayloadTooLarge")
    );
    let got = client
        .post("/3/devices/t", &headers(&bearer), BODY)
        .await
        .unwrap();
    assert_eq!((got.status.as_u16(), got.reason()), (404, "BadPath"));
    // A given apns-id comes back as it was; priority 5 and the allowed .voip topic pass.
    let id = "1D2A3B4C-0000-4000-8000-0123456789AB";
    let mut h = with("apns-priority", "5");
    h.push(("apns-id", id));
    let got = client.post("/3/device/t", &h, BODY).await.unwrap();
    assert_eq!(
        (got.status.as_u16(), got.header("apns-id")),
        (200, Some(id))
    );
    let got = client
        .post(
            "/3/device/t",
            &with("apns-topic", "com.example.app.voip"),
            BODY,
        )
        .await
        .unwrap();
    assert_eq!(got.status, 200);
}

#[tokio::test]
async fn a_hung_push_never_answers_and_a_late_one_answers_late() {
    let s = token_auth();
    s.apns.script("hang", Answer::Hang);
    s.apns
        .script("late", Answer::Accept.after(Duration::from_millis(300)));
    let client = s.client().await;
    let bearer = s.bearer();
    let hung = tokio::time::timeout(
        Duration::from_millis(500),
        client.post("/3/device/hang", &headers(&bearer), BODY),
    )
    .await;
    assert!(hung.is_err(), "a hung push answered");
    let started = Instant::now();
    let late = client
        .post("/3/device/late", &headers(&bearer), BODY)
        .await
        .unwrap();
    assert_eq!(late.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The connection is still good for others.
    let ok = client
        .post("/3/device/ok", &headers(&bearer), BODY)
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let hung = &s.apns.pushes_to("hang")[0];
    assert_eq!(hung.status, None);
}

#[tokio::test]
async fn closing_the_connection_mid_stream_fails_the_push_and_a_new_connection_works() {
    let s = token_auth();
    s.apns.script("cut", Answer::CloseConnection.once());
    let client = s.client().await;
    let bearer = s.bearer();
    let cut = tokio::time::timeout(
        Duration::from_secs(5),
        client.post("/3/device/cut", &headers(&bearer), BODY),
    )
    .await
    .expect("a cut push ends, with an error");
    assert!(
        cut.is_err(),
        "a cut push answered: {:?}",
        cut.map(|a| a.status)
    );
    let after = client.post("/3/device/cut", &headers(&bearer), BODY).await;
    assert!(after.is_err(), "the cut connection still carried a push");
    let fresh = s.client().await;
    let got = fresh
        .post("/3/device/cut", &headers(&bearer), BODY)
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(s.apns.stats().connections, 2);
    let records = s.apns.pushes_to("cut");
    assert_eq!(records.len(), 2);
    assert_eq!((records[0].connection, records[1].connection), (1, 2));
}

#[tokio::test]
async fn many_streams_share_one_connection() {
    let s = token_auth();
    // Held long enough that all are in flight together, even on a loaded machine.
    s.apns
        .script("slow", Answer::Accept.after(Duration::from_secs(1)));
    let client = s.client().await;
    let bearer = s.bearer();
    let pushes = (0..200).map(|_| {
        let client = client.clone();
        let bearer = bearer.clone();
        async move {
            client
                .post("/3/device/slow", &headers(&bearer), BODY)
                .await
                .unwrap()
                .status
        }
    });
    let statuses = futures_util::future::join_all(pushes).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let stats = s.apns.stats();
    assert_eq!((stats.connections, stats.requests), (1, 200));
    assert_eq!(stats.max_concurrent_streams, 200);
}

#[tokio::test]
async fn the_advertised_stream_limit_holds() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path()).unwrap();
    let key = ApnsKey::generate("KEYID12345", "TEAMID1234").unwrap();
    let apns = Apns::start_with(
        &ca,
        ApnsAuth::token(&key),
        ServerSettings {
            max_concurrent_streams: 10,
        },
    )
    .unwrap();
    apns.script("slow", Answer::Accept.after(Duration::from_millis(100)));
    let client = H2::connect(apns.addr(), ca.ca_pem(), None).await.unwrap();
    let bearer = format!("bearer {}", provider_token(&key, now()));
    // A first push, so the client has the server's SETTINGS before it opens the rest: streams
    // opened past the limit before then are refused (REFUSED_STREAM), as h2 allows.
    let first = client
        .post("/3/device/first", &headers(&bearer), BODY)
        .await
        .unwrap();
    assert_eq!(first.status, 200);
    let pushes = (0..40).map(|_| {
        let client = client.clone();
        let bearer = bearer.clone();
        async move {
            client
                .post("/3/device/slow", &headers(&bearer), BODY)
                .await
                .unwrap()
                .status
        }
    });
    let statuses = futures_util::future::join_all(pushes).await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert_eq!(apns.stats().max_concurrent_streams, 10);
}

mod certificate_auth {
    use super::*;

    fn setup() -> (tempfile::TempDir, TestCa, Apns) {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new(dir.path()).unwrap();
        let apns = Apns::start(&ca, ApnsAuth::Certificate).unwrap();
        (dir, ca, apns)
    }

    fn cert_headers(topic: &str) -> Vec<(&str, &str)> {
        vec![
            ("apns-topic", topic),
            ("apns-push-type", "alert"),
            ("apns-priority", "10"),
        ]
    }

    #[tokio::test]
    async fn a_push_with_the_cas_certificate_is_accepted_and_names_its_subject() {
        let (_dir, ca, apns) = setup();
        for (spec, traditional) in [
            (ClientCertSpec::new(TOPIC), false),
            (ClientCertSpec::new(TOPIC), true),
            (ClientCertSpec::new(TOPIC).rsa(RsaTestKey::A), true),
        ] {
            let cert = ca.client_cert(&spec).unwrap();
            // The SEC1 and PKCS#1 keys are the certificate's: the handshake proves it.
            let client = H2::connect(apns.addr(), ca.ca_pem(), Some(identity(&cert, traditional)))
                .await
                .unwrap();
            let got = client
                .post("/3/device/t", &cert_headers(TOPIC), BODY)
                .await
                .unwrap();
            assert_eq!(got.status, 200, "{spec:?}");
            let voip = client
                .post("/3/device/t", &cert_headers("com.example.app.voip"), BODY)
                .await
                .unwrap();
            assert_eq!(voip.status, 200);
            let other = client
                .post("/3/device/t", &cert_headers("com.example.other"), BODY)
                .await
                .unwrap();
            assert_eq!(
                (other.status.as_u16(), other.reason()),
                (400, "TopicDisallowed")
            );
            let last = apns.requests().pop().unwrap();
            assert_eq!(last.client_subject.as_deref(), Some(cert.subject.as_str()));
            assert!(cert.subject.starts_with("UID=com.example.app, "));
            assert_eq!(last.jwt, None);
        }
        assert_eq!(apns.stats().connections, 3);
    }

    #[tokio::test]
    async fn no_certificate_another_cas_or_an_expired_one_is_refused() {
        let (_dir, ca, apns) = setup();
        let other_dir = tempfile::tempdir().unwrap();
        let other_ca = TestCa::new(other_dir.path()).unwrap();
        let foreign = other_ca.client_cert(&ClientCertSpec::new(TOPIC)).unwrap();
        let expired = ca
            .client_cert(&ClientCertSpec::new(TOPIC).expired())
            .unwrap();
        let cases = [
            ("none", None),
            ("another CA's", Some(identity(&foreign, false))),
            ("expired", Some(identity(&expired, false))),
        ];
        for (n, (what, identity)) in cases.into_iter().enumerate() {
            // Under TLS 1.3 the client may finish its side before the server's refusal
            // arrives; then the first request fails instead.
            let refused = match H2::connect(apns.addr(), ca.ca_pem(), identity).await {
                Err(_) => true,
                Ok(client) => client
                    .post("/3/device/t", &cert_headers(TOPIC), BODY)
                    .await
                    .is_err(),
            };
            assert!(refused, "{what} certificate was let through");
            // The server counts the failure once its alert is sent, which the client may
            // have read already.
            let counted = wait_until(|| apns.stats().handshake_failures == n as u64 + 1).await;
            assert!(counted, "{what}: {:?}", apns.stats());
        }
        let stats = apns.stats();
        assert_eq!((stats.connections, stats.requests), (0, 0));
    }
}
