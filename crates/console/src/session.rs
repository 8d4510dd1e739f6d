//! The console's session: a cookie holding a random token (`HttpOnly`, `SameSite=Strict`,
//! `Path=/console`, `Secure` behind an `https://` public URL, ending with the session), the
//! row the daemon keeps under its hash, and the checks every form that changes something
//! passes: sent from this origin (`Sec-Fetch-Site` and `Origin`, which `SameSite` alone does
//! not give: another port on the same host is the same site) and carrying the session's form
//! token.

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::{http::header, web, FromRequest, HttpRequest};
use bindery_daemon::store::console_sessions::ConsoleSession;
use bindery_daemon::Daemon;
use subtle::ConstantTimeEq;

use crate::{ConsoleError, ConsoleSettings};

pub const COOKIE: &str = "bindery_console";

/// A request signed in to the console.
pub struct SignedIn {
    pub session: ConsoleSession,
    pub token: String,
    pub daemon: web::Data<Daemon>,
    pub settings: web::Data<ConsoleSettings>,
}

impl FromRequest for SignedIn {
    type Error = ConsoleError;
    type Future = Pin<Box<dyn Future<Output = Result<SignedIn, ConsoleError>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let daemon = request.app_data::<web::Data<Daemon>>().cloned();
        let settings = request.app_data::<web::Data<ConsoleSettings>>().cloned();
        let token = request.cookie(COOKIE).map(|c| c.value().to_owned());
        Box::pin(async move {
            let (Some(daemon), Some(settings)) = (daemon, settings) else {
                return Err(ConsoleError::Internal(
                    "the console is not configured".into(),
                ));
            };
            let token = token
                .filter(|t| !t.is_empty())
                .ok_or(ConsoleError::SignedOut)?;
            let session = daemon
                .console_session(&token)?
                .ok_or(ConsoleError::SignedOut)?;
            Ok(SignedIn {
                session,
                token,
                daemon,
                settings,
            })
        })
    }
}

impl SignedIn {
    /// Whether a form's token is this session's (compared in constant time).
    pub fn check_form_token(&self, sent: &str) -> Result<(), ConsoleError> {
        let expected = self.session.csrf_token.as_bytes();
        if bool::from(expected.ct_eq(sent.as_bytes())) {
            Ok(())
        } else {
            Err(ConsoleError::CrossSite)
        }
    }
}

/// The cookie that holds a new session's token.
pub fn session_cookie(token: &str, settings: &ConsoleSettings) -> Cookie<'static> {
    Cookie::build(COOKIE, token.to_owned())
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure(settings))
        .max_age(actix_web::cookie::time::Duration::seconds(
            i64::try_from(settings.session_lifetime.as_secs()).unwrap_or(i64::MAX),
        ))
        .finish()
}

/// The cookie that makes the browser forget the session's.
pub fn removal_cookie(settings: &ConsoleSettings) -> Cookie<'static> {
    let mut cookie = Cookie::build(COOKIE, "")
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure(settings))
        .finish();
    cookie.make_removal();
    cookie
}

fn secure(settings: &ConsoleSettings) -> bool {
    settings
        .public_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"))
}

/// The origin (`scheme://host[:port]`) this console is served at: `public_url`'s, else the
/// request's own scheme and `Host`.
fn own_origin(request: &HttpRequest, settings: &ConsoleSettings) -> String {
    match settings.public_url.as_deref() {
        Some(url) => {
            let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
            let host = rest.split('/').next().unwrap_or(rest);
            let scheme = url.split_once("://").map_or("http", |(scheme, _)| scheme);
            format!("{scheme}://{host}").to_ascii_lowercase()
        }
        None => bindery_http::paging::origin(request, None).to_ascii_lowercase(),
    }
}

/// Refuses a form sent from another origin: the browser says so in `Sec-Fetch-Site` (any
/// value but `same-origin`, or `none` for one the user typed) or in `Origin`. A client that
/// sends neither (not a browser) is left to the form token.
pub fn from_this_origin(
    request: &HttpRequest,
    settings: &ConsoleSettings,
) -> Result<(), ConsoleError> {
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if site != "same-origin" && site != "none" {
            return Err(ConsoleError::CrossSite);
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("").to_ascii_lowercase();
        if origin != own_origin(request, settings) {
            return Err(ConsoleError::CrossSite);
        }
    }
    Ok(())
}
