//! What every `/v2` handler needs, extracted once: the signed-in account, the daemon, the
//! origin for absolute URLs and the request id.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use bindery_daemon::{Committed, Daemon, Envelope, Idempotency, StoreError, StoredResponse};
use bindery_domain::{AccountSid, Command, DomainError, Row, Sid, SidKind};
use serde_json::Value;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::form::Fingerprint;
use crate::paging::origin;
use crate::{request_id, HttpSettings};

/// The longest `Idempotency-Key` accepted.
const IDEMPOTENCY_KEY_MAX: usize = 255;

pub struct Api {
    pub account: AccountSid,
    pub daemon: web::Data<Daemon>,
    pub settings: web::Data<HttpSettings>,
    /// `public_url`, else the request's scheme and Host.
    pub origin: String,
    pub request_id: Option<String>,
    request: HttpRequest,
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
        let request = request.clone();
        // Path segments decode lossily too; an escape that is not UTF-8 names nothing.
        let path_utf8 = percent_encoding::percent_decode_str(request.path())
            .decode_utf8()
            .is_ok();
        Box::pin(async move {
            let Caller(account) = caller.await?;
            if !path_utf8 {
                return Err(ApiError::bad_parameter(
                    "The path's percent-escapes do not decode to UTF-8",
                ));
            }
            Ok(Api {
                account,
                daemon: daemon.ok_or_else(|| ApiError::internal("no daemon configured"))?,
                settings: settings.ok_or_else(|| ApiError::internal("no settings"))?,
                origin,
                request_id,
                request,
            })
        })
    }
}

impl Api {
    /// Commits a command that answers no body (a DELETE).
    pub async fn execute(&self, command: Command) -> Result<Committed, ApiError> {
        let envelope = Envelope {
            command,
            request_id: self.request_id.clone(),
            idempotency: None,
        };
        Ok(self.daemon.execute(envelope).await?)
    }

    /// Commits a command and answers with `answer` of the result. With an `Idempotency-Key`,
    /// the answer is rendered and remembered inside the command's transaction, and a repeat of
    /// the same request answers it again without appending anything.
    pub async fn commit<F>(&self, command: Command, answer: F) -> Result<HttpResponse, ApiError>
    where
        F: Fn(&Committed) -> Result<(StatusCode, Value), ApiError> + Clone + Send + 'static,
    {
        let idempotency = match self.idempotency_key()? {
            None => None,
            Some(key) => {
                let fingerprint = self
                    .request
                    .extensions()
                    .get::<Fingerprint>()
                    .map(|f| f.0.clone())
                    .ok_or_else(|| ApiError::internal("a POST without a read body"))?;
                let render = answer.clone();
                Some(Idempotency {
                    scope: self.account.to_string(),
                    key,
                    fingerprint,
                    render: Box::new(move |committed| {
                        let (status, body) = render(committed).ok()?;
                        Some(StoredResponse {
                            status: status.as_u16(),
                            body: body.to_string(),
                        })
                    }),
                })
            }
        };
        let envelope = Envelope {
            command,
            request_id: self.request_id.clone(),
            idempotency,
        };
        let committed = self.daemon.execute(envelope).await?;
        if let Some(stored) = &committed.response {
            let status = StatusCode::from_u16(stored.status)
                .map_err(|_| ApiError::internal("a remembered answer with a bad status"))?;
            if stored.body.is_empty() {
                return Ok(HttpResponse::build(status).finish());
            }
            return Ok(HttpResponse::build(status)
                .content_type("application/json")
                .body(stored.body.clone()));
        }
        let (status, body) = answer(&committed)?;
        Ok(if status == StatusCode::NO_CONTENT {
            HttpResponse::NoContent().finish()
        } else {
            HttpResponse::build(status).json(body)
        })
    }

    fn idempotency_key(&self) -> Result<Option<String>, ApiError> {
        let Some(value) = self.request.headers().get("idempotency-key") else {
            return Ok(None);
        };
        match value.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= IDEMPOTENCY_KEY_MAX => {
                Ok(Some(key.to_owned()))
            }
            _ => Err(ApiError::bad_parameter(format!(
                "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters"
            ))),
        }
    }

    /// Runs a query for this account (now, on this thread: see `bindery_daemon::Readers`).
    pub fn read<F, R>(&self, query: F) -> Result<R, ApiError>
    where
        F: FnOnce(&bindery_daemon::queries::ReadView, &AccountSid) -> Result<R, StoreError>,
    {
        Ok(self.daemon.read(|view| query(view, &self.account))?)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }
}

/// The subject of a command that cannot have removed it, as the entity it must be.
pub fn subject<E: TryFrom<Row, Error = Row>>(committed: &Committed) -> Result<E, ApiError> {
    let row = committed
        .row
        .clone()
        .ok_or_else(|| ApiError::internal("the command left no row"))?;
    E::try_from(row).map_err(|other| {
        ApiError::internal(format!(
            "expected a {}, got {:?}",
            std::any::type_name::<E>()
                .rsplit("::")
                .next()
                .unwrap_or("row"),
            other.kind()
        ))
    })
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
