//! What every `/v2` handler needs, extracted once: the signed-in account, the daemon, the
//! origin for absolute URLs and the request id.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use bindery_daemon::{Committed, Daemon, Envelope, StoreError};
use bindery_domain::{AccountSid, Command, DomainError, Row, Sid, SidKind};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::paging::origin;
use crate::{request_id, HttpSettings};

pub struct Api {
    pub account: AccountSid,
    pub daemon: web::Data<Daemon>,
    pub settings: web::Data<HttpSettings>,
    /// `public_url`, else the request's scheme and Host.
    pub origin: String,
    pub request_id: Option<String>,
}

impl FromRequest for Api {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Api, ApiError>>>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::from_request(request, payload);
        let daemon = request.app_data::<web::Data<Daemon>>().cloned();
        let settings = request.app_data::<web::Data<HttpSettings>>().cloned();
        let request_id = request_id(request);
        let public_url = settings.as_ref().and_then(|s| s.public_url.clone());
        let origin = origin(request, public_url.as_deref());
        Box::pin(async move {
            let Caller(account) = caller.await?;
            Ok(Api {
                account,
                daemon: daemon.ok_or_else(|| ApiError::internal("no daemon configured"))?,
                settings: settings.ok_or_else(|| ApiError::internal("no settings"))?,
                origin,
                request_id,
            })
        })
    }
}

impl Api {
    /// Commits a command and answers its subject's row.
    pub async fn execute(&self, command: Command) -> Result<Committed, ApiError> {
        let envelope = Envelope {
            command,
            request_id: self.request_id.clone(),
        };
        Ok(self.daemon.execute(envelope).await?)
    }

    /// Runs a query on a reader for this account.
    pub async fn read<F, R>(&self, query: F) -> Result<R, ApiError>
    where
        F: FnOnce(&bindery_daemon::queries::ReadView, &AccountSid) -> Result<R, StoreError>
            + Send
            + 'static,
        R: Send + 'static,
    {
        let account = self.account;
        Ok(self.daemon.read(move |view| query(view, &account)).await?)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }
}

/// The subject row of a command that cannot have removed it.
pub fn row_of(committed: Committed) -> Result<Row, ApiError> {
    committed
        .row
        .ok_or_else(|| ApiError::internal("the command left no row"))
}

/// A SID from a path segment; one of the wrong shape names nothing, so it is not found.
pub fn path_sid<K: SidKind>(segment: &str) -> Result<Sid<K>, ApiError> {
    Sid::parse(segment)
        .map_err(|_| ApiError::not_found(format!("The requested resource {segment} was not found")))
}

/// Turns "not there" into the domain's not-found error.
pub fn found<T>(value: Option<T>, missing: DomainError) -> Result<T, ApiError> {
    value.ok_or_else(|| missing.into())
}
