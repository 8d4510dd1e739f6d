//! A real client for the self-tests: hyper over tokio-rustls, trusting the test CA, and JWTs
//! signed with ring here, independently of the stand-ins' own checking code.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bindery_standin::{ApnsKey, ClientCert, RsaTestKey};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{json, Value};
use tokio_rustls::TlsConnector;

/// What came back.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

impl Answer {
    pub fn reason(&self) -> &str {
        self.json["reason"].as_str().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// A client identity: a certificate chain and its key.
pub type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

pub fn identity(cert: &ClientCert, traditional_key: bool) -> Identity {
    let chain = vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()];
    let pem = if traditional_key {
        &cert.key_traditional_pem
    } else {
        &cert.key_pkcs8_pem
    };
    (
        chain,
        PrivateKeyDer::from_pem_slice(pem.as_bytes()).unwrap(),
    )
}

fn tls(ca_pem: &str, identity: Option<Identity>, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// One HTTP/2 connection to a server whose certificate `ca_pem` signed (cloneable: clones share it, one stream per request).
#[derive(Clone)]
pub struct H2 {
    send: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    authority: String,
}

impl H2 {
    pub async fn connect(
        addr: SocketAddr,
        ca_pem: &str,
        identity: Option<Identity>,
    ) -> anyhow::Result<H2> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let stream = tls(ca_pem, identity, &[b"h2"])
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .context("TLS handshake")?;
        let (send, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .context("HTTP/2 handshake")?;
        tokio::spawn(connection);
        Ok(H2 {
            send,
            authority: format!("localhost:{}", addr.port()),
        })
    }

    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Answer> {
        let mut request = Request::post(format!("https://{}{path}", self.authority));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.into()))?;
        let mut send = self.send.clone();
        send.ready().await?;
        let response = send.send_request(request).await?;
        read(response).await
    }
}

/// One HTTP/1.1 connection.
pub struct H1 {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
}

impl H1 {
    pub async fn connect(addr: SocketAddr, ca_pem: &str) -> anyhow::Result<H1> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let stream = tls(ca_pem, None, &[b"http/1.1"])
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let (send, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(H1 {
            send,
            authority: format!("localhost:{}", addr.port()),
        })
    }

    pub async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> anyhow::Result<Answer> {
        let mut request = Request::post(path).header("host", &self.authority);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send.ready().await?;
        let response = self
            .send
            .send_request(request.body(Full::new(body.into()))?)
            .await?;
        read(response).await
    }
}

async fn read(response: hyper::Response<hyper::body::Incoming>) -> anyhow::Result<Answer> {
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await?.to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    })
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// An ES256 JWT with any header and claims, signed with the `.p8` key as a provider would
/// load it (from its PEM text).
pub fn es256(p8_pem: &str, header: Value, claims: Value) -> String {
    let der = PrivatePkcs8KeyDer::from_pem_slice(p8_pem.as_bytes()).unwrap();
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        der.secret_pkcs8_der(),
        &rng,
    )
    .unwrap();
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let signature = key.sign(&rng, input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// A provider token as §6.3 says Bindery makes it.
pub fn provider_token(key: &ApnsKey, iat: i64) -> String {
    es256(
        &key.p8_pem(),
        json!({"alg": "ES256", "kid": key.key_id}),
        json!({"iss": key.team_id, "iat": iat}),
    )
}

/// An RS256 JWT signed with the service account's `private_key` PEM.
pub fn rs256(private_key_pem: &str, header: Value, claims: Value) -> String {
    let der = PrivatePkcs8KeyDer::from_pem_slice(private_key_pem.as_bytes()).unwrap();
    let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The OAuth assertion for a service account's JSON, as §6.3 says Bindery makes it.
pub fn assertion(account: &Value) -> String {
    let now = now();
    rs256(
        account["private_key"].as_str().unwrap(),
        json!({"alg": "RS256", "typ": "JWT", "kid": account["private_key_id"]}),
        json!({
            "iss": account["client_email"],
            "scope": "https://www.googleapis.com/auth/firebase.messaging",
            "aud": account["token_uri"],
            "iat": now,
            "exp": now + 3600,
        }),
    )
}

/// An assertion from the other committed key, which no account here is registered with.
pub fn foreign_key_pem() -> &'static str {
    RsaTestKey::B.pkcs8_pem()
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Polls `done` for up to five seconds.
pub async fn wait_until(done: impl Fn() -> bool) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !done() {
        if std::time::Instant::now() > until {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    true
}
