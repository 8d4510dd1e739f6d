//! One middleware for what every request leaves behind: a request id (the caller's
//! `X-Request-Id`, else a new one, echoed in the response), one log line, and the request
//! metrics by route template, never by raw path.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};
use bindery_daemon::Daemon;

/// The id of the request being served, recorded with every event it appends.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const MAX_REQUEST_ID: usize = 128;

fn new_request_id() -> String {
    format!("RQ{}", bindery_daemon::secrets::new_secret())
}

pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let started = Instant::now();
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.bytes().all(|b| b.is_ascii_graphic())
        })
        .map(str::to_owned)
        .unwrap_or_else(new_request_id);
    request.extensions_mut().insert(RequestId(id.clone()));
    let daemon = request.app_data::<web::Data<Daemon>>().cloned();
    let method = request.method().to_string();

    let mut response = next.call(request).await?;

    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let status = response.status().as_u16();
    let took = started.elapsed();
    if let Some(daemon) = daemon {
        let metrics = daemon.metrics();
        metrics
            .http_requests
            .with_label_values(&[&method, &route, &status.to_string()])
            .inc();
        metrics
            .http_request_duration
            .with_label_values(&[&method, &route])
            .observe(took.as_secs_f64());
    }
    tracing::info!(
        request_id = %id,
        method = %method,
        route = %route,
        status,
        duration_ms = took.as_secs_f64() * 1000.0,
        "request"
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}
