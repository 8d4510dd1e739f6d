//! The console: web pages under `/console` for the people who run a registry, to answer "why
//! didn't my phone get the push?" (CONTRACT §8).
//!
//! Server-rendered HTML (maud), one stylesheet and one small script that only turns dates
//! into the viewer's local time, all embedded in the binary; nothing is fetched from
//! elsewhere, and a strict Content-Security-Policy says so to the browser. Sign-in is the
//! API's own check (`bindery_http::auth::sign_in`, with its throttle); a session is a row the
//! daemon keeps (`store::console_sessions`), so that every node knows it, a sign-out or a
//! revoked key ends it everywhere, and a cookie holds only its random token. Every page reads
//! through the same daemon calls as the API, and the test push is the API's notify narrowed
//! to one device.
//!
//! - `session.rs`: the session cookie, the signed-in extractor and the cross-site checks.
//! - `pages.rs`: the handlers, one per page or form.
//! - `layout.rs`: the page shell, dates, paging links.
//! - `words.rs`: events and outcomes in plain words.

mod error;
mod layout;
mod pages;
mod session;
mod words;

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpResponse};

pub use error::ConsoleError;

/// What the console needs to know of the server's settings.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// How long a sign-in lasts.
    pub session_lifetime: Duration,
    /// `public_url`: when it is `https://…`, the session cookie is `Secure`, and a form's
    /// `Origin` must be this one.
    pub public_url: Option<String>,
    /// `bindings.stale_after`, to say why a binding expired.
    pub stale_after: Duration,
}

/// The stylesheet and the script, served from the binary.
const STYLESHEET: &str = include_str!("../assets/console.css");
const SCRIPT: &str = include_str!("../assets/console.js");

/// What every console answer tells the browser: load nothing from elsewhere, run no inline
/// script, submit forms only here, be framed by no one, keep nothing in caches.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
     img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Registers the console's routes under `/console`.
pub fn mount(settings: ConsoleSettings) -> impl Fn(&mut web::ServiceConfig) + Clone + Send {
    move |config: &mut web::ServiceConfig| {
        use web::{get, post};
        config.service(
            web::scope("/console")
                .app_data(web::Data::new(settings.clone()))
                .app_data(
                    web::FormConfig::default()
                        .limit(16 * 1024)
                        .error_handler(|e, _| {
                            ConsoleError::BadInput(format!("The form could not be read: {e}."))
                                .into()
                        }),
                )
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    ConsoleError::BadInput(format!("The address could not be read: {e}.")).into()
                }))
                .wrap(
                    actix_web::middleware::DefaultHeaders::new()
                        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
                        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                        .add((header::REFERRER_POLICY, "same-origin"))
                        .add((header::X_FRAME_OPTIONS, "DENY")),
                )
                .route("", get().to(pages::home))
                .route("/", get().to(pages::home))
                .route("/assets/console.css", get().to(stylesheet))
                .route("/assets/console.js", get().to(script))
                .route("/sign-in", get().to(pages::sign_in_page))
                .route("/sign-in", post().to(pages::sign_in))
                .route("/sign-out", post().to(pages::sign_out))
                .route("/services", get().to(pages::services))
                .route("/credentials", get().to(pages::credentials))
                .route("/services/{service}", get().to(pages::service))
                .route("/services/{service}/users", get().to(pages::find_user))
                .route("/services/{service}/failures", get().to(pages::failures))
                .route("/services/{service}/users/{user}", get().to(pages::user))
                .route(
                    "/services/{service}/users/{user}/bindings/{binding}/test-push",
                    post().to(pages::test_push),
                )
                .default_service(web::to(pages::not_found)),
        );
    }
}

async fn stylesheet() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLESHEET)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(body)
}
