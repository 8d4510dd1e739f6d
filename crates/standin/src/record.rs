//! What the stand-ins keep of each request, for a test's assertions.

use serde_json::Value;

use crate::jwt::DecodedJwt;

/// One request as a stand-in received it, and what it answered.
#[derive(Clone, Debug)]
pub struct Received {
    /// Which TLS connection it came on, numbered from 1 in the order they were opened.
    pub connection: u64,
    /// `h2` or `http/1.1`.
    pub protocol: &'static str,
    pub method: String,
    pub path: String,
    /// Names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body as JSON, when it is; for the OAuth token endpoint, the form's fields.
    pub json: Option<Value>,
    /// The provider token (APNs) or the OAuth assertion (FCM), decoded whether or not it was
    /// accepted.
    pub jwt: Option<DecodedJwt>,
    /// The subject of the connection's client certificate, when one was presented.
    pub client_subject: Option<String>,
    /// The status answered; `None` for a request held open or cut off by its script.
    pub status: Option<u16>,
    /// The provider's reason (`BadDeviceToken`, `UNREGISTERED`, `invalid_grant`…), for an error.
    pub reason: Option<String>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Counts over the stand-in's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// TCP connections accepted.
    pub accepted: u64,
    /// TLS connections that completed their handshake.
    pub connections: u64,
    /// TLS handshakes that failed (no client certificate, an untrusted one, no `h2`…).
    pub handshake_failures: u64,
    pub requests: u64,
    /// The most requests in flight at once on any one connection (HTTP/2 streams).
    pub max_concurrent_streams: u64,
    /// OAuth access tokens issued (FCM only).
    pub tokens_issued: u64,
}
