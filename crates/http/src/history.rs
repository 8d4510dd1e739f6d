//! [EXT] History and the change feed: the events that shaped a binding or a user (still
//! answered after they are gone), and an account's events after a position, long-polled.
//! Event data is shown without secrets (see `Event::public_data`).

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use bindery_daemon::queries::{Cursor, EventFilter, Page, PageRequest};
use bindery_domain::*;
use serde_json::{json, Value};

use crate::api::{found, path_sid, Api};
use crate::error::ApiError;
use crate::form::query;
use crate::paging::{envelope, Paging};

const MAX_PAGE_SIZE: usize = 1000;
/// The longest a change-feed request waits for new events, in seconds.
const MAX_WAIT: u64 = 30;

pub fn render(event: &RecordedEvent) -> Value {
    json!({
        "position": event.position,
        "sid": event.stream,
        "type": event.event.type_name(),
        "date_created": event.recorded_at.to_string(),
        "service_sid": event.service_sid,
        "data": event.event.public_data(),
        "request_id": event.request_id,
    })
}

/// A page of history; a binding or user with no event in this account's service (never
/// there, or another account's) is not found, as a missing one is.
async fn history_page(
    api: &Api,
    request: &HttpRequest,
    base: String,
    filter: EventFilter,
    missing: DomainError,
) -> Result<HttpResponse, ApiError> {
    let paging = Paging::parse_positions(&query(request)?, MAX_PAGE_SIZE)?;
    let page_request = paging.request.clone();
    let first = PageRequest {
        cursor: Cursor::Start,
        size: 1,
    };
    let page = api.read(move |view, account| {
        let seen = !view.events(account, &filter, &first)?.items.is_empty();
        seen.then(|| view.events(account, &filter, &page_request))
            .transpose()
    })?;
    let page = found(page, missing)?;
    Ok(HttpResponse::Ok().json(envelope(
        &api.url(&base),
        "events",
        &[],
        &paging,
        &page,
        |e| e.position.to_string(),
        render,
    )))
}

fn service_exists(api: &Api, service: ServiceSid) -> Result<(), ApiError> {
    let row = api.read(move |view, account| view.service(account, &service))?;
    found(row, DomainError::ServiceNotFound(service)).map(|_| ())
}

pub(crate) async fn binding_history(
    api: Api,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let service: ServiceSid = path_sid(&path.0)?;
    let binding: BindingSid = path_sid(&path.1)?;
    service_exists(&api, service)?;
    let base = format!("/v2/Services/{service}/Bindings/{binding}/History");
    let missing = DomainError::BindingNotFound(binding);
    history_page(
        &api,
        &request,
        base,
        EventFilter::Binding(service, binding),
        missing,
    )
    .await
}

/// A user by SID, or the newest user ever created with that identity.
pub(crate) async fn user_history(
    api: Api,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let service: ServiceSid = path_sid(&path.0)?;
    service_exists(&api, service)?;
    let user = match UserRef::parse(&path.1)? {
        UserRef::Sid(sid) => sid,
        UserRef::Identity(identity) => {
            let name = identity.as_str().to_owned();
            let sid =
                api.read(move |view, account| view.user_ever(account, &service, &identity))?;
            found(sid, DomainError::UserNotFound(name))?
        }
    };
    let base = format!("/v2/Services/{service}/Users/{user}/History");
    let missing = DomainError::UserNotFound(user.to_string());
    history_page(
        &api,
        &request,
        base,
        EventFilter::User(service, user),
        missing,
    )
    .await
}

/// `After` (a position, default 0), `Wait` (seconds to wait for an event when there is none
/// yet, at most 30) and `PageSize`. `meta.next_after` is where the next request starts.
pub(crate) async fn feed(api: Api, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let params = query(&request)?;
    let number = |name: &str| -> Result<u64, ApiError> {
        params
            .one(name)?
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::bad_parameter(format!(
                        "{name} must be a non-negative integer, not {v:?}"
                    ))
                })
            })
            .transpose()
            .map(|v| v.unwrap_or(0))
    };
    let after = i64::try_from(number("After")?)
        .map_err(|_| ApiError::bad_parameter("After is too large"))?;
    let wait = Duration::from_secs(number("Wait")?.min(MAX_WAIT));
    let paging = Paging::parse(&params, MAX_PAGE_SIZE)?;
    let size = paging.request.size;
    let page_request = PageRequest {
        cursor: Cursor::After(after.to_string()),
        size,
    };
    let read = || {
        let page_request = page_request.clone();
        api.read(move |view, account| view.events(account, &EventFilter::Account, &page_request))
    };
    let mut page: Page<RecordedEvent> = read()?;
    // Nothing yet: wait for this account's log to grow. Subscribe first, then read again, so
    // that an event committed between the first read and the subscription is not missed.
    if page.items.is_empty() && !wait.is_zero() {
        let deadline = std::time::Instant::now() + wait;
        let mut waiting = api.daemon.subscribe_feed(api.account)?;
        page = read()?;
        let mut seen = after;
        while page.items.is_empty() {
            let remaining = deadline.saturating_duration_since(std::time::Instant::now());
            match waiting.wait_past(seen, remaining).await {
                Some(newest) => {
                    seen = newest;
                    page = read()?;
                }
                None => break,
            }
        }
    }
    let next_after = page.items.last().map_or(after, |e| e.position);
    let url = |after: i64| api.url(&format!("/v2/Events?After={after}&PageSize={size}"));
    Ok(HttpResponse::Ok().json(json!({
        "meta": {
            "page": 0,
            "page_size": size,
            "first_page_url": url(0),
            "previous_page_url": null,
            "url": url(after),
            "next_page_url": if page.more { Value::String(url(next_after)) } else { Value::Null },
            "next_after": next_after,
            "key": "events",
        },
        "events": page.items.iter().map(render).collect::<Vec<_>>(),
    })))
}
