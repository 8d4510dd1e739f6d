//! [EXT] Delivery records (`GET /v2/Services/{ServiceSid}/Bindings/{Sid}/Deliveries`): what
//! became of a binding's latest pushes, one record per notify, newest first. Records go with
//! their binding: once it is gone this answers 404, as for a binding never there.

use actix_web::{web, HttpRequest, HttpResponse};
use bindery_daemon::records::DeliveryRecord;
use bindery_domain::*;
use serde_json::{json, Value};

use crate::api::{path_sid, Api};
use crate::error::ApiError;
use crate::form::query;
use crate::paging::{envelope, Paging};

/// As for the binding lists; a binding keeps at most 20 records anyway.
const MAX_PAGE_SIZE: usize = 50;

pub fn render(record: &DeliveryRecord) -> Value {
    json!({
        "notification_sid": record.notification_sid,
        "date_created": record.date_created.to_string(),
        "status": record.status.as_str(),
        "error": record.error,
        "provider_status": record.provider_status,
        "attempts": record.attempts,
        "latency_ms": record.latency_ms,
    })
}

pub(crate) async fn binding_deliveries(
    api: Api,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let service: ServiceSid = path_sid(&path.0)?;
    let binding: BindingSid = path_sid(&path.1)?;
    let paging = Paging::parse(&query(&request)?, MAX_PAGE_SIZE)?;
    let page_request = paging.request.clone();
    let page = api.read(move |view, account| {
        Ok(
            match view.deliveries(account, &service, &binding, &page_request)? {
                Some(page) => Ok(page),
                None if !view.service_exists(account, &service)? => {
                    Err(DomainError::ServiceNotFound(service))
                }
                None => Err(DomainError::BindingNotFound(binding)),
            },
        )
    })??;
    Ok(HttpResponse::Ok().json(envelope(
        &api.url(&format!(
            "/v2/Services/{service}/Bindings/{binding}/Deliveries"
        )),
        "deliveries",
        &[],
        &paging,
        &page,
        |r| r.notification_sid.to_string(),
        render,
    )))
}
