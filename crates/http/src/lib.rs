//! Bindery's HTTP adapter on actix-web.
//!
//! **Architecture invariant**: only this crate knows Twilio's wire format: PascalCase forms,
//! snake_case JSON bodies, error codes, page tokens. It knows nothing of SQL; it reaches the
//! store only through the daemon's actors.

pub mod api;
pub mod auth;
pub mod bindings;
pub mod credentials;
pub mod error;
pub mod form;
pub mod paging;
pub mod services;
pub mod users;

use std::net::TcpListener;

use actix_web::{dev::Server, web, App, HttpRequest, HttpResponse, HttpServer};
use bindery_daemon::Daemon;

use error::ApiError;

#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The origin that `url` and `links` use; the request's own scheme and Host when unset.
    pub public_url: Option<String>,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// The most bindings one user may hold.
    pub per_user_limit: u32,
    pub workers: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            public_url: None,
            body_limit: 64 * 1024,
            per_user_limit: 20,
            workers: 2,
        }
    }
}

/// Every route Bindery serves.
pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/healthz", web::get().to(healthz));
    services::routes(config);
    credentials::routes(config);
    users::routes(config);
    bindings::routes(config);
}

/// The request's id for the log: the caller's `X-Request-Id`, when it sent a usable one.
pub fn request_id(request: &HttpRequest) -> Option<String> {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
}

async fn not_found(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(format!(
        "The requested resource {} was not found",
        request.path()
    )))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Starts serving on `listener`; the returned server runs until stopped.
pub fn serve(
    daemon: Daemon,
    settings: HttpSettings,
    listener: TcpListener,
) -> std::io::Result<Server> {
    let daemon = web::Data::new(daemon);
    let app_settings = web::Data::new(settings.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(daemon.clone())
            .app_data(app_settings.clone())
            .app_data(web::PayloadConfig::new(settings.body_limit))
            .configure(routes)
            .default_service(web::to(not_found))
    })
    .workers(settings.workers)
    // The binary owns signal handling, so that it is in place before it says it listens.
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    Ok(server)
}
