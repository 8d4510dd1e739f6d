//! What a console request can end in besides its page: signed out (to the sign-in page), not
//! found, refused as cross-site, bad input, or the database unavailable; each answered as a
//! page in plain words, never as the API's JSON.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use bindery_daemon::{StoreError, WriteError};
use maud::html;

use crate::layout;

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No session, or it ended: every console URL leads to the sign-in page.
    #[error("signed out")]
    SignedOut,
    #[error("{0}")]
    NotFound(String),
    /// A form sent from another origin, or without this session's form token.
    #[error("this form did not come from the console's own page")]
    CrossSite,
    #[error("{0}")]
    BadInput(String),
    /// The database cannot be reached now (PostgreSQL failing over, a full disk).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "a console read failed");
        ConsoleError::Unavailable(
            "The registry's database cannot be read right now. Try again in a moment.".into(),
        )
    }
}

impl From<WriteError> for ConsoleError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Refused(bindery_domain::DomainError::ServiceNotFound(_)) => {
                ConsoleError::NotFound("No such service in this account.".into())
            }
            WriteError::Refused(e) => ConsoleError::BadInput(e.to_string()),
            e => {
                tracing::warn!(error = %e, "a console write failed");
                ConsoleError::Unavailable(
                    "The registry's database cannot be written right now. Try again in a moment."
                        .into(),
                )
            }
        }
    }
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            ConsoleError::SignedOut => StatusCode::SEE_OTHER,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::CrossSite => StatusCode::FORBIDDEN,
            ConsoleError::BadInput(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ConsoleError::SignedOut = self {
            return HttpResponse::SeeOther()
                .insert_header((header::LOCATION, "/console/sign-in"))
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish();
        }
        let title = match self {
            ConsoleError::NotFound(_) => "Not found",
            ConsoleError::CrossSite => "Refused",
            ConsoleError::BadInput(_) => "That did not work",
            ConsoleError::Unavailable(_) => "Unavailable",
            _ => "Something went wrong",
        };
        let body = html! {
            h1 { (title) }
            p.problem { (self.to_string()) }
            p { a href="/console" { "Back to the console" } }
        };
        let mut response = layout::respond(self.status_code(), &layout::page(title, None, body));
        if let ConsoleError::Unavailable(_) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}
