//! `bindery-standin`: runs an APNs and an FCM stand-in until interrupted, for a person trying
//! direct delivery by hand or for `make bench`. It writes the CA and the credentials into a
//! directory, prints one JSON line saying where everything is, and at exit one JSON line of
//! counts.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use bindery_standin::{
    apns, fcm, Apns, ApnsAuth, ApnsKey, ClientCertSpec, Fcm, ServerSettings, TestCa,
};
use clap::{Parser, ValueEnum};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Stand-ins for APNs and FCM, over TLS on 127.0.0.1, with a test CA")]
struct Args {
    /// Where to write ca.pem, the APNs key or client certificate, and service-account.json.
    #[arg(long)]
    dir: PathBuf,
    /// How the APNs stand-in authenticates pushes.
    #[arg(long, value_enum, default_value = "token")]
    apns_auth: Auth,
    /// The app's bundle id: the APNs topic, and the UID of the client certificate.
    #[arg(long, default_value = "com.example.app")]
    bundle_id: String,
    /// The HTTP/2 stream limit both stand-ins advertise.
    #[arg(long, default_value_t = 1000)]
    max_concurrent_streams: u32,
    /// How long each push waits before its answer, in milliseconds (a provider's latency).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// An APNs device token to answer `TOKEN=ANSWER` for, every time: `unregistered` (410),
    /// `bad-device-token` (400), `not-for-topic` (400) or `server-error` (500). Repeatable.
    #[arg(long = "apns-answer", value_name = "TOKEN=ANSWER")]
    apns_answers: Vec<String>,
}

/// The APNs answer a `--apns-answer` names.
fn apns_answer(word: &str) -> anyhow::Result<apns::Answer> {
    Ok(match word {
        "unregistered" => apns::Answer::Unregistered,
        "bad-device-token" => apns::Answer::BadDeviceToken,
        "not-for-topic" => apns::Answer::DeviceTokenNotForTopic,
        "server-error" => apns::Answer::InternalServerError { retry_after: None },
        other => anyhow::bail!(
            "--apns-answer: {other:?} is not one of unregistered, bad-device-token, \
             not-for-topic, server-error"
        ),
    })
}

#[derive(Clone, Copy, ValueEnum)]
enum Auth {
    Token,
    Certificate,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = &args.dir;
    let ca = TestCa::new(dir)?;
    let settings = ServerSettings {
        max_concurrent_streams: args.max_concurrent_streams,
    };
    let mut described = json!({
        "ca_file": ca.ca_file(),
        "topic": args.bundle_id,
    });
    let apns = match args.apns_auth {
        Auth::Token => {
            let key = ApnsKey::generate("KEYID12345", "TEAMID1234")?;
            described["apns_key_file"] = json!(key.write_p8(dir)?);
            described["apns_key_id"] = json!(key.key_id);
            described["apns_team_id"] = json!(key.team_id);
            Apns::start_with(&ca, ApnsAuth::token(&key), settings)?
        }
        Auth::Certificate => {
            let cert = ca.client_cert(&ClientCertSpec::new(&args.bundle_id))?;
            let cert_file = dir.join("apns-client.pem");
            let key_file = dir.join("apns-client-key.pem");
            std::fs::write(&cert_file, &cert.cert_pem).context("writing the client certificate")?;
            std::fs::write(&key_file, &cert.key_pkcs8_pem).context("writing the client key")?;
            described["apns_cert_file"] = json!(cert_file);
            described["apns_cert_key_file"] = json!(key_file);
            Apns::start_with(&ca, ApnsAuth::Certificate, settings)?
        }
    };
    for scripted in &args.apns_answers {
        let (token, word) = scripted
            .split_once('=')
            .with_context(|| format!("--apns-answer {scripted:?}: expected TOKEN=ANSWER"))?;
        apns.script(token, apns_answer(word)?);
    }
    let fcm = Fcm::start_with(&ca, settings)?;
    let account = fcm.service_account();
    let account_file = dir.join("service-account.json");
    account.write(&account_file)?;
    if args.latency_ms > 0 {
        let latency = Duration::from_millis(args.latency_ms);
        apns.script_all(apns::Answer::Accept.after(latency));
        fcm.script_all(fcm::Answer::Accept.after(latency));
    }
    described["apns_url"] = json!(apns.url());
    described["fcm_url"] = json!(fcm.url());
    described["fcm_service_account_file"] = json!(account_file);
    described["fcm_project_id"] = json!(account.project_id);
    println!("{described}");

    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            anyhow::Ok(())
        })?;
    let counts = |s: bindery_standin::Stats| {
        json!({
            "connections": s.connections,
            "handshake_failures": s.handshake_failures,
            "requests": s.requests,
            "max_concurrent_streams": s.max_concurrent_streams,
            "tokens_issued": s.tokens_issued,
        })
    };
    println!(
        "{}",
        json!({ "apns": counts(apns.stats()), "fcm": counts(fcm.stats()) })
    );
    Ok(())
}
