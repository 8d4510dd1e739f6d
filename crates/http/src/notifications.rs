//! [EXT] Provider feedback (`POST /v2/Services/{ServiceSid}/Bindings/Feedback`) and notify
//! (`POST /v2/Services/{ServiceSid}/Notifications`).

use std::collections::HashSet;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use bindery_daemon::notifications::NotifyRequest;
use bindery_domain::notify::{Priority, Variables, MAX_TTL_SECONDS};
use bindery_domain::*;
use serde_json::{json, Value};

use crate::api::{path_sid, Api};
use crate::error::{ApiError, ErrorKind};
use crate::form::FormBody;

const FEEDBACK_REASONS: [&str; 3] = ["unregistered", "invalid", "expired"];
/// The most distinct identities one notify may name: each costs a lookup and a fan-out.
pub const MAX_IDENTITIES: usize = 1000;

/// The identities a notify names, each once, in the order first named: an identity named
/// twice is still one user, to be pushed once.
fn identities(values: Vec<&str>) -> Result<Vec<Identity>, ApiError> {
    let mut seen = HashSet::new();
    let mut identities = Vec::new();
    for value in values {
        let identity = Identity::parse(value)?;
        if !seen.insert(value) {
            continue;
        }
        if identities.len() == MAX_IDENTITIES {
            return Err(ApiError::bad_parameter(format!(
                "Identity names more than {MAX_IDENTITIES} identities; notify at most \
                 {MAX_IDENTITIES} per request"
            )));
        }
        identities.push(identity);
    }
    Ok(identities)
}

/// A sender reports a token the provider rejected: the binding holding it is removed with
/// reason `token_invalid`. 204 whether or not one held it.
pub(crate) async fn feedback(
    api: Api,
    path: web::Path<String>,
    FormBody(form): FormBody,
) -> Result<HttpResponse, ApiError> {
    let service: ServiceSid = path_sid(&path)?;
    let binding_type = match form.one("BindingType")? {
        None => return Err(ApiError::bad_parameter("BindingType is required")),
        Some(value) => {
            BindingType::parse(value).ok_or_else(|| crate::bindings::invalid_binding_type(value))?
        }
    };
    let address = PushAddress::parse(form.one("Address")?.unwrap_or(""))?;
    if let Some(reason) = form.one("Reason")? {
        if !FEEDBACK_REASONS.contains(&reason) {
            return Err(ApiError::bad_parameter(format!(
                "Reason {reason:?} is not one of {}",
                FEEDBACK_REASONS.join(", ")
            )));
        }
    }
    let command = Command::ReportInvalidAddress {
        account: api.account,
        service,
        binding_type,
        address,
        provider_reason: None,
    };
    api.commit(command, |_| Ok((StatusCode::NO_CONTENT, Value::Null)))
        .await
}

pub(crate) async fn notify(
    api: Api,
    path: web::Path<String>,
    FormBody(form): FormBody,
) -> Result<HttpResponse, ApiError> {
    let service: ServiceSid = path_sid(&path)?;
    let identities = identities(form.all("Identity"))?;
    if identities.is_empty() {
        return Err(ApiError::new(
            ErrorKind::IdentityMissing,
            "Identity is required",
        ));
    }
    let message_type = match form.one("Type")? {
        None => MessageType::NewMessage,
        Some(value) => MessageType::parse(value).ok_or_else(|| {
            ApiError::bad_parameter(format!(
                "Type {value:?} is not one of {}",
                MessageType::ALLOWED
            ))
        })?,
    };
    let data = match form.one("Data")? {
        None => None,
        Some(text) => match serde_json::from_str::<Value>(text) {
            // APNs keeps `aps` for itself: Data's keys go beside it in the payload.
            Ok(Value::Object(map)) if map.contains_key("aps") => {
                return Err(ApiError::bad_parameter(
                    "Data may not have a key named aps: APNs reserves it",
                ))
            }
            Ok(object @ Value::Object(_)) => Some(object),
            _ => return Err(ApiError::bad_parameter("Data must be a JSON object")),
        },
    };
    let priority = match form.one("Priority")? {
        None => Priority::default(),
        Some(value) => Priority::parse(value).ok_or_else(|| {
            ApiError::bad_parameter(format!(
                "Priority {value:?} is not one of {}",
                Priority::ALLOWED
            ))
        })?,
    };
    let ttl = form
        .one("Ttl")?
        .map(|value| {
            value
                .parse::<u32>()
                .ok()
                .filter(|ttl| *ttl <= MAX_TTL_SECONDS)
                .ok_or_else(|| {
                    ApiError::bad_parameter(format!(
                        "Ttl must be a whole number of seconds from 0 to {MAX_TTL_SECONDS}, \
                         not {value:?}"
                    ))
                })
        })
        .transpose()?;
    let variable =
        |name: &str| -> Result<String, ApiError> { Ok(form.string(name)?.unwrap_or_default()) };
    let sid = api.daemon.new_notification_sid();
    let request = NotifyRequest {
        sid,
        account: api.account,
        service,
        identities: identities.clone(),
        only_binding: None,
        message_type,
        body: form.string("Body")?,
        title: form.string("Title")?,
        sound: form.string("Sound")?,
        data,
        priority,
        ttl,
        variables: Variables {
            user: variable("Variables.USER")?,
            user_friendly_name: variable("Variables.USER_FRIENDLY_NAME")?,
            channel: variable("Variables.CHANNEL")?,
            message: variable("Variables.MESSAGE")?,
        },
        request_id: api.request_id.clone(),
    };
    let report = api.daemon.notify(request).await?;
    let count = |label: &str| {
        report
            .deliveries
            .iter()
            .filter(|d| d.outcome.label() == label)
            .count()
    };
    let results: Vec<Value> = report
        .deliveries
        .iter()
        .map(|d| {
            let error = d.outcome.error().map(|e| e.to_string());
            json!({
                "binding_sid": d.binding_sid,
                "binding_type": d.binding_type,
                "status": d.outcome.label(),
                "error": error,
            })
        })
        .collect();
    Ok(HttpResponse::Created().json(json!({
        "sid": sid,
        "account_sid": api.account,
        "service_sid": service,
        "type": message_type,
        "identities": identities,
        "enabled": report.enabled,
        "targeted": report.deliveries.len(),
        "delivered": count("delivered"),
        "failed": count("failed") + count("unregistered"),
        "pending": count("pending"),
        "results": results,
    })))
}
