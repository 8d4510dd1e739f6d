//! FCM HTTP v1 (CONTRACT §6.3): an OAuth access token from the service account's `token_uri`
//! (the JWT-bearer grant, an RS256 assertion), kept until shortly before it expires, then
//! `POST /v1/projects/{project}/messages:send` as a stream of a kept HTTP/2 connection, its
//! answer read into what [`verdict`](super::verdict) judges.

use std::sync::Arc;

use bytes::Bytes;
use ring::signature::RsaKeyPair;
use tokio::sync::Mutex;

use super::http2::Connection;
use super::jwt::{fcm_assertion, CachedToken};
use super::verdict::ProviderAnswer;
use super::DeliveryError;

/// How long before an access token's expiry a new one is asked for, so that none expires on
/// the way.
const RENEW_BEFORE_SECONDS: u64 = 60;

/// Where a service account gets its access tokens, and the one it holds.
pub struct TokenSource {
    connection: Connection,
    path: String,
    token_uri: String,
    client_email: String,
    key: Arc<RsaKeyPair>,
    cached: Mutex<CachedToken>,
}

impl TokenSource {
    pub fn new(
        token_uri: &str,
        client_email: &str,
        key: Arc<RsaKeyPair>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Result<TokenSource, String> {
        let url = url::Url::parse(token_uri).map_err(|_| "token_uri is not a URL")?;
        let origin = format!("{}://{}", url.scheme(), url.authority());
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        Ok(TokenSource {
            connection: Connection::new(&origin, tls)?,
            path,
            token_uri: token_uri.to_owned(),
            client_email: client_email.to_owned(),
            key,
            cached: Mutex::new(CachedToken::default()),
        })
    }

    /// The access token to push with at `now` (Unix seconds): the kept one, or a new one.
    pub async fn token(&self, now: u64) -> Result<Arc<str>, DeliveryError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.get(now) {
            return Ok(token);
        }
        let assertion = fcm_assertion(&self.key, &self.client_email, &self.token_uri, now);
        let form = format!(
            "grant_type={}&assertion={assertion}",
            "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
        );
        let reply = self
            .connection
            .send(
                hyper::Method::POST,
                &self.path,
                &[("content-type", "application/x-www-form-urlencoded")],
                Bytes::from(form),
            )
            .await?;
        #[derive(serde::Deserialize)]
        struct Granted {
            access_token: String,
            expires_in: u64,
        }
        let granted: Granted = match serde_json::from_slice(&reply.body) {
            Ok(granted) if reply.status == 200 => granted,
            // The token endpoint's own refusal (a revoked key, a wrong clock) is the
            // credential's fault; its body may echo the assertion, so it is not passed on.
            _ => return Err(DeliveryError::TokenRefused(reply.status)),
        };
        let until = now + granted.expires_in.saturating_sub(RENEW_BEFORE_SECONDS);
        Ok(cached.keep(&granted.access_token, until))
    }

    /// Forgets `token` after FCM refused it, so that the next push asks for a new one.
    pub async fn renew(&self, token: &str) {
        self.cached.lock().await.renew(token);
    }

    pub fn connections_opened(&self) -> u64 {
        self.connection.opened()
    }
}

/// Sends `message` (`{"message": …}`, see [`payload::fcm`](super::payload::fcm)) for
/// `project_id` over `connection`, signed in with `access_token`.
pub async fn send(
    connection: &Connection,
    project_id: &str,
    message: &serde_json::Value,
    access_token: &str,
) -> Result<ProviderAnswer, DeliveryError> {
    let authorization = format!("Bearer {access_token}");
    let reply = connection
        .send(
            hyper::Method::POST,
            &format!("/v1/projects/{project_id}/messages:send"),
            &[
                ("authorization", &authorization),
                ("content-type", "application/json"),
            ],
            Bytes::from(message.to_string()),
        )
        .await?;
    Ok(ProviderAnswer {
        status: reply.status,
        reason: reason(&reply.body),
        retry_after: reply.retry_after(),
    })
}

/// FCM's reason: the `errorCode` of its `FcmError` detail, else Google's `error.status`.
fn reason(body: &[u8]) -> Option<String> {
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = body.get("error")?;
    let code = error
        .get("details")
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
        .find_map(|d| d.get("errorCode").and_then(|c| c.as_str()));
    code.or_else(|| error.get("status").and_then(|s| s.as_str()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::reason;

    #[test]
    fn the_reason_is_the_fcm_error_code_else_the_google_status() {
        let unregistered = br#"{"error":{"code":404,"status":"NOT_FOUND","details":[
            {"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"UNREGISTERED"}]}}"#;
        assert_eq!(reason(unregistered).as_deref(), Some("UNREGISTERED"));
        let plain = br#"{"error":{"code":401,"status":"UNAUTHENTICATED"}}"#;
        assert_eq!(reason(plain).as_deref(), Some("UNAUTHENTICATED"));
        assert_eq!(reason(b"<html>busy</html>"), None);
    }
}
