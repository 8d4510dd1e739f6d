//! The one place where every failure becomes a Twilio error body:
//! `{"code", "message", "more_info", "status"}` with the matching HTTP status.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use bindery_daemon::{StoreError, WriteError};
use bindery_domain::DomainError;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
    /// Seconds a client should wait before retrying (503 only).
    pub retry_after: Option<u64>,
    /// The methods a path does serve (405 only).
    pub allow: Option<String>,
}

#[derive(Serialize)]
struct Body<'a> {
    code: u32,
    message: &'a str,
    more_info: String,
    status: u16,
}

impl ApiError {
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            20003,
            "Authentication Error - invalid username",
        )
    }
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, 20404, what)
    }
    pub fn bad_parameter(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 20001, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, 503, message)
        }
    }
    pub fn method_not_allowed(method: &str, path: &str, allowed: Vec<String>) -> Self {
        ApiError {
            allow: Some(allowed.join(", ")),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                20004,
                format!(
                    "Method {method} not allowed on {path}; allowed: {}",
                    allowed.join(", ")
                ),
            )
        }
    }
    pub fn too_many_failures(retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                20429,
                "Too many failed sign-ins from this address; retry later",
            )
        }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, 500, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"Bindery\""));
        }
        if let Some(allow) = &self.allow {
            response.insert_header((header::ALLOW, allow.as_str()));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        response.json(Body {
            code: self.code,
            message: &self.message,
            more_info: format!("https://www.twilio.com/docs/errors/{}", self.code),
            status: self.status.as_u16(),
        })
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        let message = error.to_string();
        match error {
            DomainError::ServiceNotFound(_) => Self::new(StatusCode::NOT_FOUND, 50050, message),
            DomainError::UserNotFound(_) => Self::new(StatusCode::NOT_FOUND, 50200, message),
            DomainError::AccountNotFound(_)
            | DomainError::ApiKeyNotFound(_)
            | DomainError::CredentialNotFound(_)
            | DomainError::BindingNotFound(_) => Self::not_found(message),
            DomainError::IdentityTaken(_) => Self::new(StatusCode::CONFLICT, 50201, message),
            DomainError::BindingLimit { .. } => Self::new(StatusCode::CONFLICT, 20001, message),
            DomainError::InvalidSettings(_) | DomainError::NoMessageTypes => {
                Self::bad_parameter(message)
            }
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(error: WriteError) -> Self {
        match error.clone() {
            WriteError::Refused(e) => e.into(),
            WriteError::KeyReused(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, 20001, error.to_string())
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
        let code = match error {
            Missing => 50204,
            LooksLikeUserSid(_) => 50206,
            TooLong(_) => 50207,
        };
        Self::new(StatusCode::BAD_REQUEST, code, error.to_string())
    }
}

impl From<bindery_daemon::feed::WaitRefused> for ApiError {
    fn from(error: bindery_daemon::feed::WaitRefused) -> Self {
        ApiError {
            retry_after: Some(1),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, 20429, error.to_string())
        }
    }
}

impl From<bindery_domain::ValueError> for ApiError {
    fn from(error: bindery_domain::ValueError) -> Self {
        Self::bad_parameter(error.to_string())
    }
}
