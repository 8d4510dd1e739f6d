//! The FCM stand-in, driven by real HTTP/2 and HTTP/1.1 TLS clients.

use std::time::Duration;

use bindery_standin::fcm::Answer;
use bindery_standin::{Fcm, RsaTestKey, TestCa};
use serde_json::{json, Value};

use crate::support::{assertion, foreign_key_pem, form, now, rs256, H1, H2};

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

struct Setup {
    _dir: tempfile::TempDir,
    ca: TestCa,
    fcm: Fcm,
    account: Value,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path()).unwrap();
    let fcm = Fcm::start(&ca).unwrap();
    let account = fcm.service_account().json();
    Setup {
        _dir: dir,
        ca,
        fcm,
        account,
    }
}

fn grant(assertion: &str) -> String {
    form(&[
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", assertion),
    ])
}

fn message(token: &str) -> String {
    json!({"message": {
        "token": token,
        "notification": {"title": "T", "body": "B"},
        "data": {"n": "3", "ok": "true", "s": "text"},
        "android": {"priority": "HIGH", "ttl": "60s"},
    }})
    .to_string()
}

impl Setup {
    async fn client(&self) -> H2 {
        H2::connect(self.fcm.addr(), self.ca.ca_pem(), None)
            .await
            .unwrap()
    }

    /// An access token, got as §6.3 says: the JWT-bearer grant at the account's token_uri.
    async fn access_token(&self, client: &H2) -> String {
        let got = client
            .post("/token", &[FORM], grant(&assertion(&self.account)))
            .await
            .unwrap();
        assert_eq!(got.status, 200, "{}", got.json);
        got.json["access_token"].as_str().unwrap().to_owned()
    }

    fn send_path(&self) -> String {
        format!(
            "/v1/projects/{}/messages:send",
            self.account["project_id"].as_str().unwrap()
        )
    }
}

#[tokio::test]
async fn the_service_account_points_at_the_stand_in() {
    let s = setup();
    let a = &s.account;
    assert_eq!(a["type"], "service_account");
    assert_eq!(a["project_id"], "bindery-test");
    assert_eq!(a["token_uri"], format!("{}/token", s.fcm.url()));
    assert!(a["client_email"]
        .as_str()
        .unwrap()
        .ends_with("@bindery-test.iam.gserviceaccount.com"));
    assert_eq!(a["private_key_id"].as_str().unwrap().len(), 40);
    assert!(a["private_key"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PRIVATE KEY-----\n"));
}

#[tokio::test]
async fn a_grant_then_a_send_is_accepted_and_recorded() {
    let s = setup();
    let client = s.client().await;
    let got = client
        .post("/token", &[FORM], grant(&assertion(&s.account)))
        .await
        .unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.json["token_type"], "Bearer");
    assert_eq!(got.json["expires_in"], 3599);
    let token = got.json["access_token"].as_str().unwrap();
    let bearer = format!("Bearer {token}");
    let sent = client
        .post(
            &s.send_path(),
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            message("reg-1"),
        )
        .await
        .unwrap();
    assert_eq!(sent.status, 200, "{}", sent.json);
    assert!(sent.json["name"]
        .as_str()
        .unwrap()
        .starts_with("projects/bindery-test/messages/"));

    let grants = s.fcm.token_requests();
    assert_eq!(grants.len(), 1);
    let jwt = grants[0].jwt.as_ref().unwrap();
    assert_eq!(jwt.header["alg"], "RS256");
    assert_eq!(jwt.claims["iss"], s.account["client_email"]);
    assert_eq!(
        grants[0].json.as_ref().unwrap()["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    let sends = s.fcm.sends_to("reg-1");
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].header("authorization"), Some(bearer.as_str()));
    assert_eq!(sends[0].json.as_ref().unwrap()["message"]["data"]["n"], "3");
    assert_eq!(sends[0].protocol, "h2");
    let stats = s.fcm.stats();
    assert_eq!(
        (stats.connections, stats.requests, stats.tokens_issued),
        (1, 2, 1)
    );
}

#[tokio::test]
async fn http_1_1_is_spoken_too() {
    let s = setup();
    let mut client = H1::connect(s.fcm.addr(), s.ca.ca_pem()).await.unwrap();
    let got = client
        .post("/token", &[FORM], grant(&assertion(&s.account)))
        .await
        .unwrap();
    let bearer = format!("Bearer {}", got.json["access_token"].as_str().unwrap());
    let sent = client
        .post(
            &s.send_path(),
            &[("authorization", &bearer)],
            message("reg-1"),
        )
        .await
        .unwrap();
    assert_eq!(sent.status, 200);
    assert_eq!(s.fcm.sends_to("reg-1")[0].protocol, "http/1.1");
    assert_eq!(s.fcm.stats().connections, 1);
}

#[tokio::test]
async fn bad_assertions_are_refused() {
    let s = setup();
    let a = &s.account;
    let key = a["private_key"].as_str().unwrap();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": a["private_key_id"]});
    let claims = |f: &dyn Fn(&mut Value)| {
        let mut c = json!({
            "iss": a["client_email"],
            "scope": "https://www.googleapis.com/auth/firebase.messaging",
            "aud": a["token_uri"],
            "iat": now(),
            "exp": now() + 3600,
        });
        f(&mut c);
        c
    };
    let cases = [
        (
            "another key",
            rs256(foreign_key_pem(), header.clone(), claims(&|_| {})),
            "invalid_grant",
        ),
        (
            "another kid",
            rs256(key, json!({"alg": "RS256", "kid": "0000"}), claims(&|_| {})),
            "invalid_grant",
        ),
        (
            "unknown account",
            rs256(
                key,
                header.clone(),
                claims(&|c| c["iss"] = json!("x@y.iam.gserviceaccount.com")),
            ),
            "invalid_grant",
        ),
        (
            "Google's audience",
            rs256(
                key,
                header.clone(),
                claims(&|c| c["aud"] = json!("https://oauth2.googleapis.com/token")),
            ),
            "invalid_grant",
        ),
        (
            "no scope",
            rs256(
                key,
                header.clone(),
                claims(&|c| c["scope"] = json!("https://www.googleapis.com/auth/userinfo.email")),
            ),
            "invalid_scope",
        ),
        (
            "expired",
            rs256(
                key,
                header.clone(),
                claims(&|c| {
                    c["iat"] = json!(now() - 7200);
                    c["exp"] = json!(now() - 3600)
                }),
            ),
            "invalid_grant",
        ),
        (
            "too long",
            rs256(
                key,
                header.clone(),
                claims(&|c| c["exp"] = json!(now() + 7200)),
            ),
            "invalid_grant",
        ),
        (
            "from the future",
            rs256(
                key,
                header.clone(),
                claims(&|c| {
                    c["iat"] = json!(now() + 600);
                    c["exp"] = json!(now() + 1200)
                }),
            ),
            "invalid_grant",
        ),
        (
            "no exp",
            rs256(
                key,
                header.clone(),
                claims(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
            "invalid_grant",
        ),
        (
            "wrong alg",
            rs256(key, json!({"alg": "HS256"}), claims(&|_| {})),
            "invalid_grant",
        ),
        ("garbage", "a.b.c".to_owned(), "invalid_grant"),
    ];
    let client = s.client().await;
    for (what, jwt, error) in cases {
        let got = client.post("/token", &[FORM], grant(&jwt)).await.unwrap();
        assert_eq!(
            (got.status.as_u16(), got.json["error"].as_str().unwrap()),
            (400, error),
            "{what}"
        );
        assert!(got.json["error_description"].is_string());
    }
    let good = assertion(&s.account);
    let wrong_grant = form(&[("grant_type", "client_credentials"), ("assertion", &good)]);
    let got = client.post("/token", &[FORM], wrong_grant).await.unwrap();
    assert_eq!(got.json["error"], "unsupported_grant_type");
    let as_json =
        json!({"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": good})
            .to_string();
    let got = client
        .post("/token", &[("content-type", "application/json")], as_json)
        .await
        .unwrap();
    assert_eq!(
        (got.status.as_u16(), got.json["error"].as_str().unwrap()),
        (400, "invalid_request")
    );
    assert_eq!(s.fcm.stats().tokens_issued, 0);
    let records = s.fcm.token_requests();
    assert_eq!(records[0].reason.as_deref(), Some("invalid_grant"));
}

#[tokio::test]
async fn a_send_needs_a_live_token_of_its_project() {
    let s = setup();
    let client = s.client().await;
    let path = s.send_path();
    let cases = [
        ("none", None),
        ("unknown", Some("Bearer ya29.made-up".to_owned())),
        ("basic", Some("Basic Zm9vOmJhcg==".to_owned())),
    ];
    for (what, header) in cases {
        let headers: Vec<(&str, &str)> = header
            .iter()
            .map(|h| ("authorization", h.as_str()))
            .collect();
        let got = client.post(&path, &headers, message("reg")).await.unwrap();
        assert_eq!(
            (got.status.as_u16(), &got.json["error"]["status"]),
            (401, &json!("UNAUTHENTICATED")),
            "{what}"
        );
    }
    let token = s.access_token(&client).await;
    let bearer = format!("Bearer {token}");
    let other = client
        .post(
            "/v1/projects/another/messages:send",
            &[("authorization", &bearer)],
            message("reg"),
        )
        .await
        .unwrap();
    assert_eq!(other.status, 403);
    assert_eq!(
        other.json["error"]["details"][0]["errorCode"],
        "SENDER_ID_MISMATCH"
    );
    s.fcm.expire_tokens();
    let expired = client
        .post(&path, &[("authorization", &bearer)], message("reg"))
        .await
        .unwrap();
    assert_eq!(expired.status, 401);
}

#[tokio::test]
async fn the_token_lifetime_is_configurable_and_enforced() {
    let s = setup();
    s.fcm.set_token_lifetime(Duration::from_secs(1));
    let client = s.client().await;
    let got = client
        .post("/token", &[FORM], grant(&assertion(&s.account)))
        .await
        .unwrap();
    assert_eq!(got.json["expires_in"], 1);
    let bearer = format!("Bearer {}", got.json["access_token"].as_str().unwrap());
    let ok = client
        .post(
            &s.send_path(),
            &[("authorization", &bearer)],
            message("reg"),
        )
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let late = client
        .post(
            &s.send_path(),
            &[("authorization", &bearer)],
            message("reg"),
        )
        .await
        .unwrap();
    assert_eq!(late.status, 401);
}

#[tokio::test]
async fn a_second_account_gets_its_own_project() {
    let s = setup();
    let second = s
        .fcm
        .add_service_account("second-project", RsaTestKey::B)
        .json();
    let client = s.client().await;
    let got = client
        .post("/token", &[FORM], grant(&assertion(&second)))
        .await
        .unwrap();
    let bearer = format!("Bearer {}", got.json["access_token"].as_str().unwrap());
    let ok = client
        .post(
            "/v1/projects/second-project/messages:send",
            &[("authorization", &bearer)],
            message("reg"),
        )
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    let wrong = client
        .post(
            &s.send_path(),
            &[("authorization", &bearer)],
            message("reg"),
        )
        .await
        .unwrap();
    assert_eq!(wrong.status, 403);
}

#[tokio::test]
async fn the_message_shape_is_checked() {
    let s = setup();
    let client = s.client().await;
    let bearer = format!("Bearer {}", s.access_token(&client).await);
    let cases = [
        (
            json!({"message": {"token": "t", "data": {"n": 3}}}),
            "message.data.n",
        ),
        (
            json!({"message": {"token": "t", "data": {"ok": true}}}),
            "message.data.ok",
        ),
        (
            json!({"message": {"token": "t", "android": {"priority": "high"}}}),
            "message.android.priority",
        ),
        (
            json!({"message": {"token": "t", "android": {"ttl": "60"}}}),
            "message.android.ttl",
        ),
        (
            json!({"message": {"token": "t", "notification": {"title": ["T"]}}}),
            "message.notification.title",
        ),
        (
            json!({"message": {"notification": {"title": "T"}}}),
            "message",
        ),
        (json!({"message": {"token": "t", "aps": {}}}), "message"),
    ];
    for (body, field) in cases {
        let got = client
            .post(
                &s.send_path(),
                &[("authorization", &bearer)],
                body.to_string(),
            )
            .await
            .unwrap();
        assert_eq!(got.status, 400, "{body}");
        let error = &got.json["error"];
        assert_eq!(error["status"], "INVALID_ARGUMENT");
        assert_eq!(error["details"][0]["errorCode"], "INVALID_ARGUMENT");
        assert_eq!(
            error["details"][1]["fieldViolations"][0]["field"], field,
            "{body}"
        );
    }
    let not_json = client
        .post(&s.send_path(), &[("authorization", &bearer)], "{")
        .await
        .unwrap();
    assert_eq!(not_json.status, 400);
    let normal =
        json!({"message": {"token": "t", "android": {"priority": "NORMAL", "ttl": "2419200s"}}});
    let got = client
        .post(
            &s.send_path(),
            &[("authorization", &bearer)],
            normal.to_string(),
        )
        .await
        .unwrap();
    assert_eq!(got.status, 200);
}

#[tokio::test]
async fn each_scripted_answer_is_given() {
    let s = setup();
    let client = s.client().await;
    let bearer = format!("Bearer {}", s.access_token(&client).await);
    s.fcm.script("gone", Answer::Unregistered);
    let gone = client
        .post(
            &s.send_path(),
            &[("authorization", &bearer)],
            message("gone"),
        )
        .await
        .unwrap();
    assert_eq!(gone.status, 404);
    // FCM's error JSON, exactly.
    assert_eq!(
        gone.json,
        json!({"error": {
            "code": 404,
            "message": "Requested entity was not found.",
            "status": "NOT_FOUND",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}],
        }})
    );
    let cases: Vec<(Answer, u16, &str, Option<&str>)> = vec![
        (Answer::InvalidArgument, 400, "INVALID_ARGUMENT", None),
        (Answer::SenderIdMismatch, 403, "SENDER_ID_MISMATCH", None),
        (
            Answer::QuotaExceeded {
                retry_after: Some(30),
            },
            429,
            "QUOTA_EXCEEDED",
            Some("30"),
        ),
        (
            Answer::Internal { retry_after: None },
            500,
            "INTERNAL",
            None,
        ),
        (
            Answer::Unavailable {
                retry_after: Some(2),
            },
            503,
            "UNAVAILABLE",
            Some("2"),
        ),
        (
            Answer::Other {
                code: 502,
                status: "UNAVAILABLE".into(),
                error_code: None,
            },
            502,
            "UNAVAILABLE",
            None,
        ),
    ];
    for (i, (answer, status, reason, retry_after)) in cases.into_iter().enumerate() {
        let token = format!("reg-{i}");
        s.fcm.script(&token, answer);
        let got = client
            .post(
                &s.send_path(),
                &[("authorization", &bearer)],
                message(&token),
            )
            .await
            .unwrap();
        assert_eq!(got.status, status, "{token}");
        assert_eq!(got.header("retry-after"), retry_after, "{token}");
        assert_eq!(s.fcm.sends_to(&token)[0].reason.as_deref(), Some(reason));
    }
    s.fcm
        .script("flaky", Answer::Unavailable { retry_after: None }.times(2));
    let mut got = Vec::new();
    for _ in 0..3 {
        let answer = client
            .post(
                &s.send_path(),
                &[("authorization", &bearer)],
                message("flaky"),
            )
            .await
            .unwrap();
        got.push(answer.status.as_u16());
    }
    assert_eq!(got, [503, 503, 200]);
}

#[tokio::test]
async fn a_401_once_revokes_the_token_and_a_new_one_gets_through() {
    let s = setup();
    s.fcm.script("reg", Answer::Unauthenticated.once());
    let client = s.client().await;
    let first = format!("Bearer {}", s.access_token(&client).await);
    let refused = client
        .post(&s.send_path(), &[("authorization", &first)], message("reg"))
        .await
        .unwrap();
    assert_eq!(refused.status, 401);
    let still = client
        .post(
            &s.send_path(),
            &[("authorization", &first)],
            message("other"),
        )
        .await
        .unwrap();
    assert_eq!(still.status, 401, "a revoked token was taken again");
    let second = format!("Bearer {}", s.access_token(&client).await);
    let ok = client
        .post(
            &s.send_path(),
            &[("authorization", &second)],
            message("reg"),
        )
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(s.fcm.stats().tokens_issued, 2);
}

#[tokio::test]
async fn hang_and_close_mid_stream() {
    let s = setup();
    s.fcm.script("hang", Answer::Hang);
    s.fcm.script("cut", Answer::CloseConnection);
    let client = s.client().await;
    let bearer = format!("Bearer {}", s.access_token(&client).await);
    let hung = tokio::time::timeout(
        Duration::from_millis(300),
        client.post(
            &s.send_path(),
            &[("authorization", &bearer)],
            message("hang"),
        ),
    )
    .await;
    assert!(hung.is_err());
    let cut = tokio::time::timeout(
        Duration::from_secs(5),
        client.post(
            &s.send_path(),
            &[("authorization", &bearer)],
            message("cut"),
        ),
    )
    .await
    .expect("a cut send ends");
    assert!(cut.is_err());
    let fresh = s.client().await;
    let ok = fresh
        .post(&s.send_path(), &[("authorization", &bearer)], message("ok"))
        .await
        .unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(s.fcm.stats().connections, 2);
}

#[tokio::test]
async fn many_sends_share_one_connection() {
    let s = setup();
    s.fcm
        .script("slow", Answer::Accept.after(Duration::from_secs(1)));
    let client = s.client().await;
    let bearer = format!("Bearer {}", s.access_token(&client).await);
    let path = s.send_path();
    let sends = (0..100).map(|_| {
        let (client, bearer, path) = (client.clone(), bearer.clone(), path.clone());
        async move {
            client
                .post(&path, &[("authorization", &bearer)], message("slow"))
                .await
                .unwrap()
                .status
        }
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 200));
    let stats = s.fcm.stats();
    assert_eq!(
        (
            stats.connections,
            stats.requests,
            stats.max_concurrent_streams
        ),
        (1, 101, 100)
    );
}
