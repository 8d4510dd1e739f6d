//! The `bindery-standin` binary, as `make bench` would run it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::support::{es256, now, H2};

#[tokio::test]
async fn the_binary_says_where_everything_is_and_counts_at_exit() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bindery-standin"))
        .args(["--dir", dir.path().to_str().unwrap(), "--latency-ms", "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let described: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    for file in ["ca_file", "apns_key_file", "fcm_service_account_file"] {
        assert!(
            std::path::Path::new(described[file].as_str().unwrap()).exists(),
            "{file}"
        );
    }
    let account: Value = serde_json::from_str(
        &std::fs::read_to_string(described["fcm_service_account_file"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        account["token_uri"],
        format!("{}/token", described["fcm_url"].as_str().unwrap())
    );

    // The CA the binary wrote is the one its servers present: a client trusting only it gets in.
    let ca_pem = std::fs::read_to_string(described["ca_file"].as_str().unwrap()).unwrap();
    let addr = described["apns_url"]
        .as_str()
        .unwrap()
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let client = H2::connect(addr, &ca_pem, None).await.unwrap();
    let p8 = std::fs::read_to_string(described["apns_key_file"].as_str().unwrap()).unwrap();
    let jwt = es256(
        &p8,
        json!({"alg": "ES256", "kid": described["apns_key_id"]}),
        json!({"iss": described["apns_team_id"], "iat": now()}),
    );
    let bearer = format!("bearer {jwt}");
    let headers = [
        ("authorization", bearer.as_str()),
        ("apns-topic", "com.example.app"),
        ("apns-push-type", "alert"),
        ("apns-priority", "10"),
    ];
    let got = client
        .post("/3/device/t", &headers, r#"{"aps":{}}"#)
        .await
        .unwrap();
    assert_eq!(got.status, 200);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let counts: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(counts["apns"]["requests"], 1);
    assert_eq!(counts["apns"]["connections"], 1);
    assert!(child.wait().unwrap().success());
}
