//! Push credentials: `/v2/Credentials[/{Sid}]`, account-scoped. Their secrets are stored for
//! senders and never returned; the body shows what reading them found ([EXT] `auth`, `topic`,
//! `expires`, CONTRACT §6.2), and the daemon refuses what cannot push.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use bindery_domain::*;
use serde_json::{json, Value};

use crate::api::{found, path_sid, subject, Api};
use crate::error::ApiError;
use crate::form::{query, FormBody, Params};
use crate::paging::{envelope, Paging};

const MAX_PAGE_SIZE: usize = 1000;
const FRIENDLY_NAME_MAX_CHARS: usize = 64;

/// `healthy` is whether it pushes now (CONTRACT §6.4); a credential just created or updated
/// is, as an update clears what was held against it.
pub fn render(credential: &Credential, origin: &str, healthy: bool) -> Value {
    json!({
        "sid": credential.sid,
        "account_sid": credential.account_sid,
        "friendly_name": credential.friendly_name,
        "type": credential.credential_type,
        // Twilio sends this boolean as a string.
        "sandbox": credential.sandbox.map(|s| if s { "True" } else { "False" }),
        "date_created": credential.date_created.to_string(),
        "date_updated": credential.date_updated.to_string(),
        "url": format!("{origin}/v2/Credentials/{}", credential.sid),
        // [EXT] What the credential pushes with; null for one stored before it was read. The
        // key and team ids stay out, like the secrets they go with.
        "auth": credential.profile.auth.map(CredentialAuth::as_str),
        "topic": credential.profile.topic,
        "expires": credential.profile.expires.map(|at| at.to_string()),
        "healthy": healthy,
    })
}

struct CredentialFields {
    friendly_name: Option<String>,
    sandbox: Option<bool>,
    secrets: CredentialSecrets,
    /// [EXT] `KeyId`, `TeamId`, `Topic`.
    profile_fields: ProfileFields,
}

fn credential_fields(form: &Params) -> Result<CredentialFields, ApiError> {
    let friendly_name = form.string("FriendlyName")?;
    if let Some(name) = &friendly_name {
        if name.chars().count() > FRIENDLY_NAME_MAX_CHARS {
            return Err(ApiError::bad_parameter(format!(
                "FriendlyName is longer than {FRIENDLY_NAME_MAX_CHARS} characters"
            )));
        }
    }
    Ok(CredentialFields {
        friendly_name,
        sandbox: form.bool("Sandbox")?,
        secrets: CredentialSecrets {
            certificate: form.string("Certificate")?,
            private_key: form.string("PrivateKey")?,
            api_key: form.string("ApiKey")?,
            secret: form.string("Secret")?,
        },
        // Checked with the secrets, by the daemon, which names the field it refuses.
        profile_fields: ProfileFields {
            key_id: form.string("KeyId")?,
            team_id: form.string("TeamId")?,
            topic: form.string("Topic")?,
        },
    })
}

pub(crate) async fn list(api: Api, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    let paging = Paging::parse(&query(&request)?, MAX_PAGE_SIZE)?;
    let page_request = paging.request.clone();
    let page = api.read(move |view, account| view.credentials(account, &page_request))?;
    let body = envelope(
        &api.url("/v2/Credentials"),
        "credentials",
        &[],
        &paging,
        &page,
        |c| c.sid.to_string(),
        |c| render(c, &api.origin, api.daemon.credential_healthy(&c.sid)),
    );
    Ok(HttpResponse::Ok().json(body))
}

pub(crate) async fn create(api: Api, FormBody(form): FormBody) -> Result<HttpResponse, ApiError> {
    let credential_type = match form.one("Type")? {
        None => return Err(ApiError::bad_parameter("Type is required")),
        Some(value) => BindingType::parse(value).ok_or_else(|| {
            ApiError::bad_parameter(format!(
                "Type {value:?} is not one of {}",
                BindingType::ALLOWED
            ))
        })?,
    };
    let fields = credential_fields(&form)?;
    let command = Command::CreateCredential {
        account: api.account,
        credential_type,
        friendly_name: fields.friendly_name,
        sandbox: fields.sandbox,
        secrets: fields.secrets,
        fields: fields.profile_fields,
        profile: CredentialProfile::default(),
    };
    let origin = api.origin.clone();
    api.commit(command, move |c| {
        Ok((
            StatusCode::CREATED,
            render(&subject::<Credential>(c)?, &origin, true),
        ))
    })
    .await
}

pub(crate) async fn fetch(api: Api, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let sid: CredentialSid = path_sid(&path)?;
    let credential = api.read(move |view, account| view.credential(account, &sid))?;
    let credential = found(credential, DomainError::CredentialNotFound(sid))?;
    let healthy = api.daemon.credential_healthy(&credential.sid);
    Ok(HttpResponse::Ok().json(render(&credential, &api.origin, healthy)))
}

pub(crate) async fn update(
    api: Api,
    path: web::Path<String>,
    FormBody(form): FormBody,
) -> Result<HttpResponse, ApiError> {
    let credential: CredentialSid = path_sid(&path)?;
    let fields = credential_fields(&form)?;
    let command = Command::UpdateCredential {
        account: api.account,
        credential,
        friendly_name: fields.friendly_name,
        sandbox: fields.sandbox,
        secrets: fields.secrets,
        fields: fields.profile_fields,
        profile: None,
    };
    let origin = api.origin.clone();
    api.commit(command, move |c| {
        Ok((
            StatusCode::OK,
            render(&subject::<Credential>(c)?, &origin, true),
        ))
    })
    .await
}

pub(crate) async fn delete(api: Api, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let credential: CredentialSid = path_sid(&path)?;
    api.execute(Command::DeleteCredential {
        account: api.account,
        credential,
    })
    .await?;
    Ok(HttpResponse::NoContent().finish())
}
