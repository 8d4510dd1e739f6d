//! One kept HTTP/2 connection over TLS to a provider (CONTRACT §6.3: pushes through one
//! credential share one connection, many streams, instead of a connection per push). It is
//! opened on first use and again when the provider closed it (GOAWAY, a reset, an idle
//! timeout); every request is a stream of it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::sync::Mutex;

use super::{DeliveryError, ANSWER_LIMIT};

/// TLS sessions a configuration keeps for resumption, one per server name. A configuration
/// talks to a handful of hosts (a certificate credential's to one APNs host; the shared one
/// to FCM, the OAuth endpoint and APNs); rustls's default cache, sized for 256, cost 9.4 kB
/// in every certificate credential's configuration (make bench, 10,000 credentials).
const SESSIONS_KEPT: usize = 8;

/// A TLS client configuration for a provider: the usual web roots, plus the PEM file of extra
/// roots `delivery.tls.ca_file` names (a stand-in's, a proxy's), and a client certificate for
/// APNs certificate auth. ring is the one crypto provider.
pub fn tls_config(
    ca_file: Option<&Path>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    tls_config_with(roots(ca_file)?, client)
}

/// The roots a provider's certificate is checked against: the web's, plus the PEM file
/// `delivery.tls.ca_file` names. Read once and shared by every configuration made with
/// [`tls_config_with`]: a copy in each certificate credential's configuration cost 15 kB
/// (make bench, 10,000 credentials).
pub fn roots(ca_file: Option<&Path>) -> Result<Arc<rustls::RootCertStore>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(file) = ca_file {
        let certificates = CertificateDer::pem_file_iter(file)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("delivery.tls.ca_file {}: {e}", file.display()))?;
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|e| format!("delivery.tls.ca_file {}: {e}", file.display()))?;
        }
    }
    Ok(Arc::new(roots))
}

/// [`tls_config`] over roots already read.
pub fn tls_config_with(
    roots: Arc<rustls::RootCertStore>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots);
    let mut config = match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the client certificate cannot be used: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    config.resumption = rustls::client::Resumption::in_memory_sessions(SESSIONS_KEPT);
    Ok(Arc::new(config))
}

/// `host:port` for a URI: an IPv6 address goes in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A provider's answer: its status, headers and (bounded) body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// `Retry-After` in seconds, when the answer has one.
    pub fn retry_after(&self) -> Option<u64> {
        self.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    }
}

pub struct Connection {
    /// The host as a name or address (an IPv6 address without its brackets).
    host: String,
    port: u16,
    /// `host:port` as a URI writes it (brackets around an IPv6 address).
    authority: String,
    tls: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
    sender: Mutex<Option<SendRequest<Full<Bytes>>>>,
    /// Connections opened so far.
    opened: std::sync::atomic::AtomicU64,
    /// `bindery_push_connections_opened_total` for this connection's provider.
    counter: Option<prometheus::IntCounter>,
}

impl Connection {
    /// A connection to `endpoint` (`https://host[:port]`), opened when first used.
    pub fn new(endpoint: &str, tls: Arc<rustls::ClientConfig>) -> Result<Connection, String> {
        let url = url::Url::parse(endpoint)
            .ok()
            .filter(|u| u.scheme() == "https" && u.host_str().is_some())
            .ok_or("a provider endpoint must be an https:// URL")?;
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_matches(['[', ']'])
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(443);
        Ok(Connection {
            authority: authority(&host, port),
            host,
            port,
            tls,
            connect_timeout: Duration::from_secs(10),
            sender: Mutex::new(None),
            opened: 0.into(),
            counter: None,
        })
    }

    /// Counts each connection opened on `counter` too.
    pub fn counting(mut self, counter: prometheus::IntCounter) -> Connection {
        self.counter = Some(counter);
        self
    }

    pub fn opened(&self) -> u64 {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn open(&self) -> Result<SendRequest<Full<Bytes>>, DeliveryError> {
        let unreachable = |what| DeliveryError::Unreachable(what);
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| unreachable("the connection timed out"))?
        .map_err(|_| unreachable("the connection failed"))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(self.host.clone())
            .map_err(|_| unreachable("the URL or proxy cannot be used"))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|_| unreachable("the TLS handshake failed"))?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|_| unreachable("the HTTP/2 handshake failed"))?;
        // The connection is driven by its own task until the provider or we close it.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a provider connection ended");
            }
        });
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(counter) = &self.counter {
            counter.inc();
        }
        Ok(sender)
    }

    /// The kept connection's sender, opening a connection when there is none or it closed.
    async fn sender(&self) -> Result<SendRequest<Full<Bytes>>, DeliveryError> {
        let mut kept = self.sender.lock().await;
        if let Some(sender) = kept.as_ref() {
            if !sender.is_closed() {
                return Ok(sender.clone());
            }
        }
        let sender = self.open().await?;
        *kept = Some(sender.clone());
        Ok(sender)
    }

    /// Sends one request as a stream of the kept connection and reads its answer.
    pub async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, DeliveryError> {
        let mut sender = self.sender().await?;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.authority));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|_| DeliveryError::Unreachable("the request could not be built"))?;
        sender
            .ready()
            .await
            .map_err(|_| DeliveryError::Unreachable("the connection broke or timed out"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| DeliveryError::Unreachable("the connection broke or timed out"))?;
        let (parts, body) = response.into_parts();
        let body = Limited::new(body, ANSWER_LIMIT)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_ipv6_endpoint_keeps_its_brackets_in_the_uri_only() {
        let tls = super::tls_config(None, None).unwrap();
        let v6 = super::Connection::new("https://[::1]:8443", tls.clone()).unwrap();
        assert_eq!(
            (v6.host.as_str(), v6.authority.as_str()),
            ("::1", "[::1]:8443")
        );
        let named = super::Connection::new("https://api.push.apple.com", tls).unwrap();
        assert_eq!(named.authority, "api.push.apple.com:443");
        assert!(super::Connection::new(
            "http://api.push.apple.com",
            super::tls_config(None, None).unwrap()
        )
        .is_err());
    }
}
