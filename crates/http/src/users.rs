//! Users: `/v2/Services/{ServiceSid}/Users[/{Sid}]`, where `{Sid}` is a User SID or an identity.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bindery_domain::*;
use serde_json::{json, Value};

use crate::api::{found, path_sid, subject, Api};
use crate::error::ApiError;
use crate::form::{query, FormBody, Params};
use crate::paging::{envelope, Paging};
use crate::services::is_role_sid;

const MAX_PAGE_SIZE: usize = 100;

/// `is_notifiable`: whether the user has a binding; `None` where it is not computed (lists).
pub fn render(user: &User, is_notifiable: Option<bool>, origin: &str) -> Value {
    let url = format!(
        "{origin}/v2/Services/{}/Users/{}",
        user.service_sid, user.sid
    );
    json!({
        "sid": user.sid,
        "account_sid": user.account_sid,
        "service_sid": user.service_sid,
        "attributes": user.attributes,
        "friendly_name": user.friendly_name,
        "role_sid": user.role_sid,
        "identity": user.identity,
        "is_online": null,
        "is_notifiable": is_notifiable,
        "date_created": user.date_created.to_string(),
        "date_updated": user.date_updated.to_string(),
        "joined_channels_count": 0,
        "links": {
            "user_channels": format!("{url}/Channels"),
            "user_bindings": format!("{url}/Bindings"),
        },
        "url": url,
    })
}

/// A service SID and a user (SID or identity) from the path.
pub fn user_path(service: &str, user: &str) -> Result<(ServiceSid, UserRef), ApiError> {
    Ok((path_sid(service)?, UserRef::parse(user)?))
}

/// The user named in a path, or the Twilio error for a missing service or user.
pub fn find_user(api: &Api, service: ServiceSid, user: UserRef) -> Result<User, ApiError> {
    Ok(api.read(move |view, account| view.find_user(account, &service, &user))??)
}

struct UserFields {
    friendly_name: Option<String>,
    attributes: Option<Attributes>,
    role_sid: Option<String>,
}

fn user_fields(form: &Params) -> Result<UserFields, ApiError> {
    let role_sid = form.string("RoleSid")?;
    if let Some(role) = &role_sid {
        if !is_role_sid(role) {
            return Err(ApiError::bad_parameter(format!(
                "RoleSid {role:?} is not a Role SID"
            )));
        }
    }
    Ok(UserFields {
        friendly_name: form.string("FriendlyName")?,
        attributes: form.one("Attributes")?.map(Attributes::parse).transpose()?,
        role_sid,
    })
}

pub(crate) async fn list(
    api: Api,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let service: ServiceSid = path_sid(&path)?;
    let paging = Paging::parse(&query(&request)?, MAX_PAGE_SIZE)?;
    let page_request = paging.request.clone();
    let (service_row, page) = api.read(move |view, account| {
        Ok((
            view.service(account, &service)?,
            view.users(account, &service, &page_request)?,
        ))
    })?;
    found(service_row, DomainError::ServiceNotFound(service))?;
    let body = envelope(
        &api.url(&format!("/v2/Services/{service}/Users")),
        "users",
        &[],
        &paging,
        &page,
        |u| u.sid.to_string(),
        |u| render(u, None, &api.origin),
    );
    Ok(HttpResponse::Ok().json(body))
}

pub(crate) async fn create(
    api: Api,
    path: web::Path<String>,
    FormBody(form): FormBody,
) -> Result<HttpResponse, ApiError> {
    let service: ServiceSid = path_sid(&path)?;
    let identity = Identity::parse(form.one("Identity")?.unwrap_or(""))?;
    let fields = user_fields(&form)?;
    let command = Command::CreateUser {
        account: api.account,
        service,
        identity,
        friendly_name: fields.friendly_name,
        attributes: fields.attributes,
        role_sid: fields.role_sid,
    };
    let origin = api.origin.clone();
    api.commit(command, move |c| {
        Ok((
            StatusCode::CREATED,
            render(&subject::<User>(c)?, Some(false), &origin),
        ))
    })
    .await
}

pub(crate) async fn fetch(
    api: Api,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (service, user) = user_path(&path.0, &path.1)?;
    let user = find_user(&api, service, user)?;
    let sid = user.sid;
    let notifiable = api.read(move |view, _| view.has_bindings(&sid))?;
    Ok(HttpResponse::Ok().json(render(&user, Some(notifiable), &api.origin)))
}

pub(crate) async fn update(
    api: Api,
    path: web::Path<(String, String)>,
    FormBody(form): FormBody,
) -> Result<HttpResponse, ApiError> {
    let (service, user) = user_path(&path.0, &path.1)?;
    let fields = user_fields(&form)?;
    // An update does not touch bindings, so whether the user has any is read beforehand.
    let current = find_user(&api, service, user.clone())?;
    let sid = current.sid;
    let notifiable = api.read(move |view, _| view.has_bindings(&sid))?;
    let command = Command::UpdateUser {
        account: api.account,
        service,
        user,
        friendly_name: fields.friendly_name,
        attributes: fields.attributes,
        role_sid: fields.role_sid,
    };
    let origin = api.origin.clone();
    api.commit(command, move |c| {
        Ok((
            StatusCode::OK,
            render(&subject::<User>(c)?, Some(notifiable), &origin),
        ))
    })
    .await
}

pub(crate) async fn delete(
    api: Api,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (service, user) = user_path(&path.0, &path.1)?;
    api.execute(Command::DeleteUser {
        account: api.account,
        service,
        user,
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
