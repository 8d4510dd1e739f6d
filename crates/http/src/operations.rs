//! For operators, not clients: `/healthz`, `/readyz` and `/metrics`, without authentication.
//! `metrics.listen` can move them to an address of their own.

use actix_web::http::Method;
use actix_web::{web, HttpResponse};
use bindery_daemon::{Daemon, Metrics};
use serde_json::json;

use crate::Routes;

pub fn routes(routes: &mut Routes) {
    routes
        .add(Method::GET, "/healthz", healthz)
        .add(Method::GET, "/readyz", readyz)
        .add(Method::GET, "/metrics", metrics);
}

/// The process answers.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The database takes writes and the projections have caught up with the log.
async fn readyz(daemon: web::Data<Daemon>) -> HttpResponse {
    match daemon.readiness().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err(reason) => HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "1"))
            .json(json!({"status": "not ready", "reason": reason})),
    }
}

async fn metrics(daemon: web::Data<Daemon>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(Metrics::CONTENT_TYPE)
        .body(daemon.metrics().render())
}
