//! Services: `/v2/Services[/{Sid}]`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bindery_domain::{Command, DomainError, Service, ServiceSid, SettingsPatch};
use serde_json::{json, Value};

use crate::api::{found, path_sid, subject, Api};
use crate::error::ApiError;
use crate::form::{query, FormBody, Params};
use crate::paging::{envelope, Paging};

const MAX_PAGE_SIZE: usize = 100;

pub fn render(service: &Service, origin: &str) -> Value {
    let url = format!("{origin}/v2/Services/{}", service.sid);
    let s = &service.settings;
    json!({
        "sid": service.sid,
        "account_sid": service.account_sid,
        "friendly_name": service.friendly_name,
        "date_created": service.date_created.to_string(),
        "date_updated": service.date_updated.to_string(),
        "default_service_role_sid": s.default_service_role_sid,
        "default_channel_role_sid": s.default_channel_role_sid,
        "default_channel_creator_role_sid": s.default_channel_creator_role_sid,
        "read_status_enabled": s.read_status_enabled,
        "reachability_enabled": s.reachability_enabled,
        "typing_indicator_timeout": s.typing_indicator_timeout,
        "consumption_report_interval": s.consumption_report_interval,
        "limits": s.limits,
        "pre_webhook_url": s.pre_webhook_url,
        "post_webhook_url": s.post_webhook_url,
        "webhook_method": s.webhook_method,
        "webhook_filters": s.webhook_filters,
        "pre_webhook_retry_count": s.pre_webhook_retry_count,
        "post_webhook_retry_count": s.post_webhook_retry_count,
        "notifications": s.notifications,
        "media": s.media,
        "url": url,
        "links": {
            "channels": format!("{url}/Channels"),
            "roles": format!("{url}/Roles"),
            "users": format!("{url}/Users"),
            "bindings": format!("{url}/Bindings"),
        },
    })
}

pub(crate) async fn list(api: Api, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let paging = Paging::parse(&query(&request)?, MAX_PAGE_SIZE)?;
    let page_request = paging.request.clone();
    let page = api.read(move |view, account| view.services(account, &page_request))?;
    let body = envelope(
        &api.url("/v2/Services"),
        "services",
        &[],
        &paging,
        &page,
        |s| s.sid.to_string(),
        |s| render(s, &api.origin),
    );
    Ok(HttpResponse::Ok().json(body))
}

pub(crate) async fn create(api: Api, FormBody(form): FormBody) -> Result<HttpResponse, ApiError> {
    let friendly_name = form
        .string("FriendlyName")?
        .ok_or_else(|| ApiError::bad_parameter("FriendlyName is required"))?;
    let origin = api.origin.clone();
    let command = Command::CreateService {
        account: api.account,
        friendly_name,
    };
    api.commit(command, move |c| {
        Ok((
            StatusCode::CREATED,
            render(&subject::<Service>(c)?, &origin),
        ))
    })
    .await
}

pub(crate) async fn fetch(api: Api, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let sid: ServiceSid = path_sid(&path)?;
    let service = api.read(move |view, account| view.service(account, &sid))?;
    let service = found(service, DomainError::ServiceNotFound(sid))?;
    Ok(HttpResponse::Ok().json(render(&service, &api.origin)))
}

pub(crate) async fn update(
    api: Api,
    path: web::Path<String>,
    FormBody(form): FormBody,
) -> Result<HttpResponse, ApiError> {
    let service: ServiceSid = path_sid(&path)?;
    let command = Command::UpdateService {
        account: api.account,
        service,
        friendly_name: form.string("FriendlyName")?,
        settings: settings_patch(&form)?,
    };
    let origin = api.origin.clone();
    api.commit(command, move |c| {
        Ok((StatusCode::OK, render(&subject::<Service>(c)?, &origin)))
    })
    .await
}

pub(crate) async fn delete(api: Api, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let service: ServiceSid = path_sid(&path)?;
    api.execute(Command::DeleteService {
        account: api.account,
        service,
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Count,
    Text,
    /// `format: uri` in the spec.
    Uri,
    /// An `enum` in the spec: one of these values.
    OneOf(&'static [&'static str]),
    RoleSid,
    TextList,
}

/// The service settings Twilio's update takes, as form names; the JSON path of each is its
/// dotted name in snake_case. Each is checked as the spec's request body types it (`enum`
/// and `format` included).
const SETTINGS: &[(&str, Kind)] = &[
    ("DefaultServiceRoleSid", Kind::RoleSid),
    ("DefaultChannelRoleSid", Kind::RoleSid),
    ("DefaultChannelCreatorRoleSid", Kind::RoleSid),
    ("ReadStatusEnabled", Kind::Bool),
    ("ReachabilityEnabled", Kind::Bool),
    ("TypingIndicatorTimeout", Kind::Count),
    ("ConsumptionReportInterval", Kind::Count),
    ("Notifications.LogEnabled", Kind::Bool),
    ("Notifications.NewMessage.Enabled", Kind::Bool),
    ("Notifications.NewMessage.Template", Kind::Text),
    ("Notifications.NewMessage.Sound", Kind::Text),
    ("Notifications.NewMessage.BadgeCountEnabled", Kind::Bool),
    ("Notifications.AddedToChannel.Enabled", Kind::Bool),
    ("Notifications.AddedToChannel.Template", Kind::Text),
    ("Notifications.AddedToChannel.Sound", Kind::Text),
    ("Notifications.RemovedFromChannel.Enabled", Kind::Bool),
    ("Notifications.RemovedFromChannel.Template", Kind::Text),
    ("Notifications.RemovedFromChannel.Sound", Kind::Text),
    ("Notifications.InvitedToChannel.Enabled", Kind::Bool),
    ("Notifications.InvitedToChannel.Template", Kind::Text),
    ("Notifications.InvitedToChannel.Sound", Kind::Text),
    ("PreWebhookUrl", Kind::Uri),
    ("PostWebhookUrl", Kind::Uri),
    ("WebhookMethod", Kind::OneOf(&["GET", "POST"])),
    ("WebhookFilters", Kind::TextList),
    ("Limits.ChannelMembers", Kind::Count),
    ("Limits.UserChannels", Kind::Count),
    ("Media.CompatibilityMessage", Kind::Text),
    ("PreWebhookRetryCount", Kind::Count),
    ("PostWebhookRetryCount", Kind::Count),
];

fn snake_case(pascal: &str) -> String {
    let mut out = String::with_capacity(pascal.len() + 4);
    for (i, c) in pascal.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The settings an update form sets, as a patch shaped like the service's settings.
fn settings_patch(form: &Params) -> Result<SettingsPatch, ApiError> {
    let mut patch = SettingsPatch::new();
    for &(name, kind) in SETTINGS {
        if !form.contains(name) {
            continue;
        }
        let value = match kind {
            Kind::Bool => json!(form.bool(name)?),
            Kind::Count => json!(form.u32(name)?),
            Kind::Text => json!(form.string(name)?),
            Kind::Uri => json!(form.uri(name)?),
            Kind::OneOf(allowed) => json!(form.one_of(name, allowed)?),
            Kind::TextList => json!(form.all(name)),
            Kind::RoleSid => {
                let sid = form.string(name)?.unwrap_or_default();
                if !is_role_sid(&sid) {
                    return Err(ApiError::bad_parameter(format!(
                        "{name} {sid:?} is not a Role SID"
                    )));
                }
                json!(sid)
            }
        };
        let path: Vec<String> = name.split('.').map(snake_case).collect();
        let (leaf, parents) = path.split_last().expect("a name has a segment");
        let mut object = &mut patch;
        for parent in parents {
            object = object
                .entry(parent.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("parents are objects");
        }
        object.insert(leaf.clone(), value);
    }
    Ok(patch)
}

pub fn is_role_sid(value: &str) -> bool {
    value.len() == 34
        && value.starts_with("RL")
        && value[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_forms_become_nested_patches() {
        let form = Params::parse(
            "Notifications.NewMessage.Enabled=true&NotificationsAddedToChannelTemplate=hi&\
             Limits.UserChannels=9&WebhookFilters=a&WebhookFilters=b",
        )
        .unwrap();
        let patch = serde_json::Value::Object(settings_patch(&form).unwrap());
        assert_eq!(
            patch,
            json!({"notifications": {"new_message": {"enabled": true},
                                      "added_to_channel": {"template": "hi"}},
                   "limits": {"user_channels": 9},
                   "webhook_filters": ["a", "b"]})
        );
    }
}
