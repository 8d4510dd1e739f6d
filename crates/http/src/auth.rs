//! HTTP Basic authentication: `AccountSid:AuthToken` or `ApiKeySid:ApiKeySecret`. Checked
//! against the store on every request, so new and revoked keys take effect at once.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{http::header, web, FromRequest, HttpRequest};
use base64::Engine;
use bindery_daemon::Daemon;
use bindery_domain::AccountSid;

use crate::error::ApiError;

/// The account a request is signed in as.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub AccountSid);

fn credentials(request: &HttpRequest) -> Option<(String, String)> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let (user, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let daemon = request.app_data::<web::Data<Daemon>>().cloned();
        let credentials = credentials(request);
        Box::pin(async move {
            let daemon = daemon.ok_or_else(|| ApiError::internal("no daemon configured"))?;
            let refuse = || {
                daemon.metrics().auth_failures.inc();
                ApiError::unauthorized()
            };
            let (user, password) = credentials.ok_or_else(refuse)?;
            let account = daemon
                .read(move |view| view.authenticate(&user, &password))
                .await?;
            account.map(Caller).ok_or_else(refuse)
        })
    }
}
