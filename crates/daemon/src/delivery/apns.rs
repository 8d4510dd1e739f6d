//! APNs: one push as a stream of a kept HTTP/2 connection (CONTRACT §6.3), its answer read
//! into what [`verdict`](super::verdict) judges. Token auth adds `authorization: bearer`;
//! certificate auth presents the certificate in the connection's TLS handshake.

use bytes::Bytes;

use super::http2::Connection;
use super::payload::ApnsRequest;
use super::verdict::ProviderAnswer;
use super::DeliveryError;

/// Sends `request` to APNs over `connection`, with `bearer` for token auth.
pub async fn send(
    connection: &Connection,
    request: &ApnsRequest,
    bearer: Option<&str>,
) -> Result<ProviderAnswer, DeliveryError> {
    let authorization = bearer.map(|token| format!("bearer {token}"));
    let mut headers: Vec<(&str, &str)> = request
        .headers
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    if let Some(authorization) = &authorization {
        headers.push(("authorization", authorization));
    }
    headers.push(("content-type", "application/json"));
    let body = Bytes::from(request.body.to_string());
    let reply = connection
        .send(hyper::Method::POST, &request.path, &headers, body)
        .await?;
    // APNs's error answers are `{"reason": "…"}` (and `timestamp` for a 410).
    let reason = serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|b| b.get("reason").and_then(|r| r.as_str()).map(str::to_owned));
    Ok(ProviderAnswer {
        status: reply.status,
        reason,
        retry_after: reply.retry_after(),
    })
}
