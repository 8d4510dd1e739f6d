//! Bindery's HTTP adapter on actix-web.
//!
//! **Architecture invariant**: only this crate knows Twilio's wire format: PascalCase forms,
//! snake_case JSON bodies, error codes, page tokens. It knows nothing of SQL; it reaches the
//! store only through the daemon's actors.

pub mod auth;
pub mod error;

use std::net::TcpListener;

use actix_web::{dev::Server, web, App, HttpResponse, HttpServer};
use bindery_daemon::Daemon;

#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The origin that `url` and `links` use; the request's own scheme and Host when unset.
    pub public_url: Option<String>,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    pub workers: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            public_url: None,
            body_limit: 64 * 1024,
            workers: 2,
        }
    }
}

/// Every route Bindery serves.
pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/healthz", web::get().to(healthz));
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
            .configure(routes)
    })
    .workers(settings.workers)
    .listen(listener)?
    .run();
    Ok(server)
}
