//! The one place where every failure becomes a Twilio error body:
//! `{"code", "message", "more_info", "status"}` with the matching HTTP status.
//!
//! Call sites say what went wrong, as an [`ErrorKind`]; only this file knows which HTTP
//! status, Twilio code and `Retry-After` each kind answers with.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use bindery_daemon::{StoreError, WriteError};
use bindery_domain::DomainError;
use serde::Serialize;

/// What went wrong, in the registry's words. Each kind answers one HTTP status and one
/// Twilio code (see `status` and `code` below, and the table in CONTRACT.md §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A parameter is malformed or not one the spec allows.
    BadParameter,
    /// Missing or wrong credentials.
    Unauthorized,
    /// No such resource (also another account's).
    NotFound,
    /// The path is served, but not under this method.
    MethodNotAllowed,
    /// A limit the request would pass, e.g. the bindings one user may hold.
    LimitReached,
    /// The body is larger than `http.body_limit`.
    BodyTooLarge,
    /// The body is not a form.
    UnsupportedMediaType,
    /// An `Idempotency-Key` used before with another request.
    IdempotencyKeyReused,
    /// Too many failed sign-ins from one address; retry after this many seconds.
    TooManyFailures {
        retry_after: u64,
    },
    /// Too many long-polls of the change feed are waiting (for this account, or in all).
    TooManyWaiting,
    ServiceNotFound,
    UserNotFound,
    /// A user with that identity already exists in the service.
    IdentityTaken,
    IdentityMissing,
    IdentityLooksLikeUserSid,
    IdentityTooLong,
    InvalidBindingType,
    /// Storage is unavailable for now (disk full, database locked).
    Unavailable,
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        use ErrorKind::*;
        match self {
            BadParameter
            | IdentityMissing
            | IdentityLooksLikeUserSid
            | IdentityTooLong
            | InvalidBindingType => StatusCode::BAD_REQUEST,
            Unauthorized => StatusCode::UNAUTHORIZED,
            NotFound | ServiceNotFound | UserNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            LimitReached | IdentityTaken => StatusCode::CONFLICT,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            TooManyFailures { .. } | TooManyWaiting => StatusCode::TOO_MANY_REQUESTS,
            Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Twilio's error code (`more_info` links to its page).
    pub fn code(self) -> u32 {
        use ErrorKind::*;
        match self {
            BadParameter | LimitReached | BodyTooLarge | UnsupportedMediaType
            | IdempotencyKeyReused => 20001,
            Unauthorized => 20003,
            MethodNotAllowed => 20004,
            NotFound => 20404,
            TooManyFailures { .. } | TooManyWaiting => 20429,
            ServiceNotFound => 50050,
            UserNotFound => 50200,
            IdentityTaken => 50201,
            IdentityMissing => 50204,
            IdentityLooksLikeUserSid => 50206,
            IdentityTooLong => 50207,
            InvalidBindingType => 50209,
            Unavailable => 503,
            Internal => 500,
        }
    }

    /// Seconds a client should wait before retrying, where waiting helps.
    pub fn retry_after(self) -> Option<u64> {
        match self {
            ErrorKind::Unavailable | ErrorKind::TooManyWaiting => Some(1),
            ErrorKind::TooManyFailures { retry_after } => Some(retry_after),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    kind: ErrorKind,
    pub message: String,
    /// The methods a path does serve (405 only).
    allow: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: u32,
    message: &'a str,
    more_info: String,
    status: u16,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            allow: None,
        }
    }
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }
    pub fn code(&self) -> u32 {
        self.kind.code()
    }
    pub fn unauthorized() -> Self {
        Self::new(
            ErrorKind::Unauthorized,
            "Authentication Error - invalid username",
        )
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, what)
    }
    pub fn bad_parameter(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadParameter, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    pub fn method_not_allowed(method: &str, path: &str, allowed: Vec<String>) -> Self {
        ApiError {
            allow: Some(allowed.join(", ")),
            ..Self::new(
                ErrorKind::MethodNotAllowed,
                format!(
                    "Method {method} not allowed on {path}; allowed: {}",
                    allowed.join(", ")
                ),
            )
        }
    }
    pub fn too_many_failures(retry_after: u64) -> Self {
        Self::new(
            ErrorKind::TooManyFailures { retry_after },
            "Too many failed sign-ins from this address; retry later",
        )
    }
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::BodyTooLarge,
            format!("The request body is larger than the limit of {limit} bytes"),
        )
    }
    /// actix could not read the body: too large for its limit, or cut short.
    pub fn unreadable_body(error: &actix_web::Error) -> Self {
        let kind = if error.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorKind::BodyTooLarge
        } else {
            ErrorKind::BadParameter
        };
        Self::new(kind, format!("Cannot read the request body: {error}"))
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status().as_u16(),
            self.code(),
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status();
        let mut response = HttpResponse::build(status);
        if self.kind == ErrorKind::Unauthorized {
            response.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"Bindery\""));
        }
        if let Some(allow) = &self.allow {
            response.insert_header((header::ALLOW, allow.as_str()));
        }
        if let Some(seconds) = self.kind.retry_after() {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(Body {
            code: self.code(),
            message: &self.message,
            more_info: format!("https://www.twilio.com/docs/errors/{}", self.code()),
            status: status.as_u16(),
        })
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let message = error.to_string();
        let kind = match error {
            DomainError::ServiceNotFound(_) => ErrorKind::ServiceNotFound,
            DomainError::UserNotFound(_) => ErrorKind::UserNotFound,
            DomainError::AccountNotFound(_)
            | DomainError::ApiKeyNotFound(_)
            | DomainError::CredentialNotFound(_)
            | DomainError::BindingNotFound(_) => ErrorKind::NotFound,
            DomainError::IdentityTaken(_) => ErrorKind::IdentityTaken,
            DomainError::BindingLimit { .. } => ErrorKind::LimitReached,
            DomainError::InvalidSettings(_) | DomainError::NoMessageTypes => {
                ErrorKind::BadParameter
            }
        };
        Self::new(kind, message)
    }
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        match error.clone() {
            WriteError::Refused(e) => e.into(),
            // Names the form field and why; never its value.
            WriteError::InvalidCredential(e) => Self::bad_parameter(e.to_string()),
            WriteError::KeyReused(_) => {
                Self::new(ErrorKind::IdempotencyKeyReused, error.to_string())
            }
            WriteError::Unavailable(message) => {
                tracing::warn!(%message, "storage unavailable");
                Self::unavailable("Storage is unavailable; retry later")
            }
            WriteError::Failed(message) => {
                tracing::error!(%message, "write failed");
                Self::internal("Internal error")
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        WriteError::from(error).into()
    }
}

impl From<bindery_domain::IdentityError> for ApiError {
    fn from(error: bindery_domain::IdentityError) -> Self {
        use bindery_domain::IdentityError::*;
        let kind = match error {
            Missing => ErrorKind::IdentityMissing,
            LooksLikeUserSid(_) => ErrorKind::IdentityLooksLikeUserSid,
            TooLong(_) => ErrorKind::IdentityTooLong,
        };
        Self::new(kind, error.to_string())
    }
}

impl From<bindery_daemon::feed::WaitRefused> for ApiError {
    fn from(error: bindery_daemon::feed::WaitRefused) -> Self {
        Self::new(ErrorKind::TooManyWaiting, error.to_string())
    }
}

impl From<bindery_domain::ValueError> for ApiError {
    fn from(error: bindery_domain::ValueError) -> Self {
        Self::bad_parameter(error.to_string())
    }
}
