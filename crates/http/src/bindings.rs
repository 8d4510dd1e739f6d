//! Bindings, under two paths: the service's (`/v2/Services/{ServiceSid}/Bindings[/{Sid}]`) and
//! the user's (`…/Users/{UserSid}/Bindings[/{Sid}]`), the same binding under both. POST on the
//! user's list registers a device [EXT]. The push address never appears in these bodies.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bindery_daemon::queries::BindingFilter;
use bindery_domain::*;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::Serialize;

use crate::api::{path_sid, subject, Api};
use crate::error::{ApiError, ErrorKind};
use crate::form::{query, FormBody, Params};
use crate::paging::{envelope, Paging};
use crate::users::user_path;

const MAX_PAGE_SIZE: usize = 50;

/// What may stand unescaped in a path segment (RFC 3986 pchar), so `alice@example.com` and
/// `user+1` stay readable while spaces and slashes are escaped.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b']')
    .add(b'\\')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// A binding's body, under either path: the fields both share, then where it lives.
#[derive(Serialize)]
pub struct BindingBody<'a> {
    sid: &'a BindingSid,
    account_sid: &'a AccountSid,
    service_sid: &'a ServiceSid,
    #[serde(serialize_with = "as_text")]
    date_created: &'a Timestamp,
    #[serde(serialize_with = "as_text")]
    date_updated: &'a Timestamp,
    endpoint: &'a Endpoint,
    identity: &'a Identity,
    credential_sid: &'a Option<CredentialSid>,
    binding_type: BindingType,
    message_types: &'a MessageTypes,
    /// Only under the user's path, which names the user by SID.
    #[serde(skip_serializing_if = "Option::is_none")]
    user_sid: Option<&'a UserSid>,
    url: String,
    /// Only under the service's path, which links to the user by identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    links: Option<UserLink>,
}

#[derive(Serialize)]
struct UserLink {
    user: String,
}

fn as_text<S: serde::Serializer>(time: &&Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(time)
}

fn body(binding: &Binding, url: String) -> BindingBody<'_> {
    BindingBody {
        sid: &binding.sid,
        account_sid: &binding.account_sid,
        service_sid: &binding.service_sid,
        date_created: &binding.date_created,
        date_updated: &binding.date_updated,
        endpoint: &binding.endpoint,
        identity: &binding.identity,
        credential_sid: &binding.credential_sid,
        binding_type: binding.binding_type,
        message_types: &binding.message_types,
        user_sid: None,
        url,
        links: None,
    }
}

/// A User Binding body: its URL names the user by SID.
pub fn render_user_binding<'a>(binding: &'a Binding, origin: &str) -> BindingBody<'a> {
    let url = format!(
        "{origin}/v2/Services/{}/Users/{}/Bindings/{}",
        binding.service_sid, binding.user_sid, binding.sid
    );
    BindingBody {
        user_sid: Some(&binding.user_sid),
        ..body(binding, url)
    }
}

/// A Service Binding body: it links to its user by identity.
pub fn render_service_binding<'a>(binding: &'a Binding, origin: &str) -> BindingBody<'a> {
    let service_url = format!("{origin}/v2/Services/{}", binding.service_sid);
    let identity = utf8_percent_encode(binding.identity.as_str(), SEGMENT);
    BindingBody {
        links: Some(UserLink {
            user: format!("{service_url}/Users/{identity}"),
        }),
        ..body(binding, format!("{service_url}/Bindings/{}", binding.sid))
    }
}

fn binding_types(values: Vec<&str>) -> Result<Vec<BindingType>, ApiError> {
    values
        .into_iter()
        .map(|v| BindingType::parse(v).ok_or_else(|| invalid_binding_type(v)))
        .collect()
}

pub fn invalid_binding_type(value: &str) -> ApiError {
    ApiError::new(
        ErrorKind::InvalidBindingType,
        format!(
            "BindingType {value:?} is not one of {}",
            BindingType::ALLOWED
        ),
    )
}

/// The filters every page URL keeps, as given.
fn kept<'a>(params: &'a Params, names: &[&'a str]) -> Vec<(&'a str, String)> {
    names
        .iter()
        .flat_map(|name| {
            params
                .all(name)
                .into_iter()
                .map(move |v| (*name, v.to_owned()))
        })
        .collect()
}

pub(crate) async fn list_service_bindings(
    api: Api,
    request: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let service: ServiceSid = path_sid(&path)?;
    let params = query(&request)?;
    let paging = Paging::parse(&params, MAX_PAGE_SIZE)?;
    let filter = BindingFilter {
        user: None,
        types: binding_types(params.all("BindingType"))?,
        identities: params
            .all("Identity")
            .into_iter()
            .map(Identity::parse)
            .collect::<Result<_, _>>()?,
    };
    let page_request = paging.request.clone();
    let page = api.read(move |view, account| {
        if !view.service_exists(account, &service)? {
            return Ok(Err(DomainError::ServiceNotFound(service)));
        }
        Ok(Ok(view.bindings(
            account,
            &service,
            &filter,
            &page_request,
        )?))
    })??;
    let body = envelope(
        &api.url(&format!("/v2/Services/{service}/Bindings")),
        "bindings",
        &kept(&params, &["BindingType", "Identity"]),
        &paging,
        &page,
        |b| b.sid.to_string(),
        |b| render_service_binding(b, &api.origin),
    );
    Ok(HttpResponse::Ok().json(body))
}

pub(crate) async fn fetch_service_binding(
    api: Api,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let service: ServiceSid = path_sid(&path.0)?;
    let sid: BindingSid = path_sid(&path.1)?;
    let binding = api.read(move |view, account| {
        Ok(match view.binding(account, &service, &sid)? {
            Some(binding) => Ok(binding),
            None if !view.service_exists(account, &service)? => {
                Err(DomainError::ServiceNotFound(service))
            }
            None => Err(DomainError::BindingNotFound(sid)),
        })
    })??;
    Ok(HttpResponse::Ok().json(render_service_binding(&binding, &api.origin)))
}

pub(crate) async fn delete_service_binding(
    api: Api,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let service: ServiceSid = path_sid(&path.0)?;
    let binding: BindingSid = path_sid(&path.1)?;
    let command = Command::DeleteBinding {
        account: api.account,
        service,
        user: None,
        binding,
        reason: BindingRemoval::Api,
    };
    api.execute(command).await?;
    Ok(HttpResponse::NoContent().finish())
}

pub(crate) async fn list_user_bindings(
    api: Api,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (service, user) = user_path(&path.0, &path.1)?;
    let params = query(&request)?;
    let paging = Paging::parse(&params, MAX_PAGE_SIZE)?;
    let types = binding_types(params.all("BindingType"))?;
    let page_request = paging.request.clone();
    let (user, page) = api.read(move |view, account| {
        let user = match view.find_user(account, &service, &user)? {
            Ok(user) => user,
            Err(missing) => return Ok(Err(missing)),
        };
        let filter = BindingFilter {
            user: Some(user.sid),
            types,
            identities: Vec::new(),
        };
        let page = view.bindings(account, &service, &filter, &page_request)?;
        Ok(Ok((user, page)))
    })??;
    let body = envelope(
        &api.url(&format!(
            "/v2/Services/{service}/Users/{}/Bindings",
            user.sid
        )),
        "bindings",
        &kept(&params, &["BindingType"]),
        &paging,
        &page,
        |b| b.sid.to_string(),
        |b| render_user_binding(b, &api.origin),
    );
    Ok(HttpResponse::Ok().json(body))
}

pub(crate) async fn fetch_user_binding(
    api: Api,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (service, user) = user_path(&path.0, &path.1)?;
    let sid: BindingSid = path_sid(&path.2)?;
    // The binding first: found under this user, it is the whole answer (a binding's user
    // and service exist while it does). Else find out what is missing.
    let binding = api.read(move |view, account| {
        let binding = view
            .binding(account, &service, &sid)?
            .filter(|b| match &user {
                UserRef::Sid(sid) => b.user_sid == *sid,
                UserRef::Identity(identity) => b.identity == *identity,
            });
        Ok(match binding {
            Some(binding) => Ok(binding),
            None => view
                .find_user(account, &service, &user)?
                .and(Err(DomainError::BindingNotFound(sid))),
        })
    })??;
    Ok(HttpResponse::Ok().json(render_user_binding(&binding, &api.origin)))
}

pub(crate) async fn delete_user_binding(
    api: Api,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (service, user) = user_path(&path.0, &path.1)?;
    let binding: BindingSid = path_sid(&path.2)?;
    let command = Command::DeleteBinding {
        account: api.account,
        service,
        user: Some(user),
        binding,
        reason: BindingRemoval::Api,
    };
    api.execute(command).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Registers a device [EXT]: an upsert on (user, endpoint, binding type); 201 when it made a
/// binding, 200 when it refreshed one.
pub(crate) async fn register(
    api: Api,
    path: web::Path<(String, String)>,
    FormBody(form): FormBody,
) -> Result<HttpResponse, ApiError> {
    let (service, user) = user_path(&path.0, &path.1)?;
    let binding_type = match form.one("BindingType")? {
        None => return Err(ApiError::bad_parameter("BindingType is required")),
        Some(value) => BindingType::parse(value).ok_or_else(|| invalid_binding_type(value))?,
    };
    let address = match form.one("Address")? {
        None => return Err(ApiError::bad_parameter("Address is required")),
        Some(value) => PushAddress::parse(value)?,
    };
    let endpoint = form.one("Endpoint")?.map(Endpoint::parse).transpose()?;
    let credential = form
        .one("CredentialSid")?
        .map(|v| CredentialSid::parse(v).map_err(|e| ApiError::bad_parameter(e.to_string())))
        .transpose()?;
    let message_types = form.all("MessageTypes");
    let message_types = if message_types.is_empty() {
        None
    } else {
        Some(
            message_types
                .into_iter()
                .map(|v| {
                    MessageType::parse(v).ok_or_else(|| {
                        ApiError::bad_parameter(format!(
                            "MessageTypes {v:?} is not one of {}",
                            MessageType::ALLOWED
                        ))
                    })
                })
                .collect::<Result<MessageTypes, _>>()?,
        )
    };
    let command = Command::RegisterBinding(RegisterBinding {
        account: api.account,
        service,
        user,
        binding_type,
        address,
        endpoint,
        credential,
        message_types,
        per_user_limit: api.settings.per_user_limit,
    });
    let origin = api.origin.clone();
    api.commit(command, move |committed| {
        let binding: Binding = subject(committed)?;
        let status = if committed.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        let body = serde_json::to_value(render_user_binding(&binding, &origin))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok((status, body))
    })
    .await
}
