//! HTTP Basic authentication: `AccountSid:AuthToken` or `ApiKeySid:ApiKeySecret`. Checked
//! against the store on every request, so new and revoked keys take effect at once.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{http::header, web, FromRequest, HttpRequest};
use base64::Engine;
use bindery_daemon::Daemon;
use bindery_domain::AccountSid;

use crate::error::ApiError;
use crate::throttle::AuthThrottle;

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
        let throttle = request.app_data::<web::Data<AuthThrottle>>().cloned();
        let address = request.peer_addr().map(|a| a.ip());
        let credentials = credentials(request);
        Box::pin(async move {
            let daemon = daemon.ok_or_else(|| ApiError::internal("no daemon configured"))?;
            let (user, password) = credentials.unwrap_or_default();
            sign_in(
                &daemon,
                throttle.as_deref().map(|t| t.as_ref()),
                address,
                &user,
                &password,
            )
            .map(Caller)
        })
    }
}

/// Checks `user:password` as every request is checked, for the API and the console alike:
/// an address with too many recent failures is refused (429) before the check, a failure
/// counts against its address (and in `bindery_auth_failures_total`), a success clears it.
/// An empty `user` is a request that sent no credentials.
pub fn sign_in(
    daemon: &Daemon,
    throttle: Option<&AuthThrottle>,
    address: Option<IpAddr>,
    user: &str,
    password: &str,
) -> Result<AccountSid, ApiError> {
    if let (Some(throttle), Some(address)) = (throttle, address) {
        if let Some(seconds) = throttle.check(address) {
            return Err(ApiError::too_many_failures(seconds));
        }
    }
    let refuse = || {
        daemon.metrics().auth_failures.inc();
        if let (Some(throttle), Some(address)) = (throttle, address) {
            throttle.failed(address);
        }
        ApiError::unauthorized()
    };
    if user.is_empty() {
        return Err(refuse());
    }
    let account = daemon.authenticate(user, password)?.ok_or_else(refuse)?;
    if let (Some(throttle), Some(address)) = (throttle, address) {
        throttle.succeeded(address);
    }
    Ok(account)
}
