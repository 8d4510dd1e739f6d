//! The console's pages and forms. Each reads through `Daemon::read` with the same queries the
//! API's handlers use, always for the signed-in account: another account's services, users
//! and credentials are not found, as in the API.

use std::collections::HashMap;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bindery_daemon::notifications::NotifyRequest;
use bindery_daemon::queries::{Cursor, EventFilter, Page, PageRequest, ReadView};
use bindery_daemon::records::{DeliveryRecord, DeliveryStatus};
use bindery_daemon::{Daemon, StoreError};
use bindery_domain::notify::{Priority, Variables};
use bindery_domain::*;
use bindery_http::throttle::AuthThrottle;
use maud::{html, Markup};
use serde::Deserialize;

use crate::layout::{self, page, respond, when, Nav};
use crate::session::{self, SignedIn};
use crate::words::{self, BindingFacts, MovedTo};
use crate::{ConsoleError, ConsoleSettings};

/// Rows on one page of a list.
const PAGE_SIZE: usize = 50;
/// Events on one page of a user's timeline.
const TIMELINE_PAGE: usize = 50;

type Answer = Result<HttpResponse, ConsoleError>;

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

impl SignedIn {
    fn nav(&self) -> Nav<'_> {
        Nav {
            account: self.session.account.as_str(),
            principal: &self.session.principal,
            csrf_token: &self.session.csrf_token,
        }
    }

    fn page(&self, status: StatusCode, title: &str, body: Markup) -> HttpResponse {
        respond(status, &page(title, Some(&self.nav()), body))
    }

    fn read<R>(
        &self,
        query: impl FnOnce(&ReadView) -> Result<R, StoreError>,
    ) -> Result<R, ConsoleError> {
        Ok(self.daemon.read(query)?)
    }

    fn now(&self) -> Timestamp {
        self.daemon.clock().now()
    }
}

fn page_request(after: &Option<String>) -> PageRequest {
    PageRequest {
        cursor: match after {
            Some(sid) if !sid.is_empty() => Cursor::After(sid.clone()),
            _ => Cursor::Start,
        },
        size: PAGE_SIZE,
    }
}

fn service_sid(text: &str) -> Result<ServiceSid, ConsoleError> {
    ServiceSid::parse(text)
        .map_err(|_| ConsoleError::NotFound("No such service in this account.".into()))
}

/// The account's service, or not found (also when it is another account's).
fn find_service(signed: &SignedIn, text: &str) -> Result<Service, ConsoleError> {
    let sid = service_sid(text)?;
    let account = signed.session.account;
    signed
        .read(|view| view.service(&account, &sid))?
        .ok_or_else(|| ConsoleError::NotFound("No such service in this account.".into()))
}

#[derive(Deserialize)]
pub struct After {
    after: Option<String>,
}

/// How a binding was first registered (its log's first event), found even after it is gone.
fn first_registration(
    view: &ReadView,
    account: &AccountSid,
    service: ServiceSid,
    stream: &str,
) -> Result<Option<RecordedEvent>, StoreError> {
    let Ok(binding) = BindingSid::parse(stream) else {
        return Ok(None);
    };
    let first = view.events(
        account,
        &EventFilter::Binding(service, binding),
        &PageRequest {
            cursor: Cursor::Start,
            size: 1,
        },
    )?;
    Ok(first
        .items
        .into_iter()
        .next()
        .filter(|e| matches!(e.event, Event::BindingRegistered { .. })))
}

/// The cursor of the page after `page`, when one follows: its last item's key.
fn next_after<T>(page: &Page<T>, key: impl Fn(&T) -> String) -> Option<String> {
    page.more.then(|| page.items.last().map(key)).flatten()
}

// ---- Signing in and out ----

#[derive(Deserialize)]
pub struct SignInForm {
    username: String,
    password: String,
}

#[derive(Deserialize)]
pub struct SignInQuery {
    signed_out: Option<String>,
}

fn sign_in_form(message: Option<&str>) -> Markup {
    html! {
        h1 { "Sign in" }
        p { "Sign in with an account SID and its auth token, or an API key SID and its secret." }
        @if let Some(message) = message {
            p.problem role="alert" { (message) }
        }
        form.sign-in method="post" action="/console/sign-in" {
            label for="username" { "Account SID or API key SID" }
            input #username name="username" type="text" autocomplete="username" required
                spellcheck="false" autocapitalize="off" placeholder="AC… or SK…";
            label for="password" { "Auth token or API key secret" }
            input #password name="password" type="password" autocomplete="current-password" required;
            button type="submit" { "Sign in" }
        }
    }
}

pub async fn sign_in_page(query: web::Query<SignInQuery>) -> HttpResponse {
    let message = query.signed_out.as_ref().map(|_| "You are signed out.");
    let body = html! {
        @if let Some(message) = message { p.notice role="status" { (message) } }
        (sign_in_form(None))
    };
    respond(StatusCode::OK, &page("Sign in", None, body))
}

pub async fn sign_in(
    request: HttpRequest,
    form: web::Form<SignInForm>,
    daemon: web::Data<Daemon>,
    settings: web::Data<ConsoleSettings>,
    throttle: Option<web::Data<AuthThrottle>>,
) -> Answer {
    session::from_this_origin(&request, &settings)?;
    let username = form.username.trim();
    let address = request.peer_addr().map(|a| a.ip());
    let signed = bindery_http::auth::sign_in(
        &daemon,
        throttle.as_deref().map(|t| t.as_ref()),
        address,
        username,
        &form.password,
    );
    let account = match signed {
        Ok(account) => account,
        Err(e) => {
            let (status, message) = match e.kind().retry_after() {
                Some(seconds) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many failed sign-ins from your address. Try again in {seconds} seconds."
                    ),
                ),
                None if e.status() == StatusCode::UNAUTHORIZED => (
                    StatusCode::UNAUTHORIZED,
                    "Those credentials do not sign in: check the SID and its token or secret."
                        .to_owned(),
                ),
                None => (e.status(), e.message.clone()),
            };
            return Ok(respond(
                status,
                &page("Sign in", None, sign_in_form(Some(&message))),
            ));
        }
    };
    let (token, _) = daemon
        .open_console_session(account, username, settings.session_lifetime)
        .await?;
    let mut response = see_other("/console/services");
    response
        .add_cookie(&session::session_cookie(&token, &settings))
        .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    Ok(response)
}

#[derive(Deserialize)]
pub struct FormToken {
    csrf: String,
}

pub async fn sign_out(
    request: HttpRequest,
    signed: SignedIn,
    form: web::Form<FormToken>,
) -> Answer {
    session::from_this_origin(&request, &signed.settings)?;
    signed.check_form_token(&form.csrf)?;
    signed.daemon.close_console_session(&signed.token).await?;
    let mut response = see_other("/console/sign-in?signed_out=1");
    response
        .add_cookie(&session::removal_cookie(&signed.settings))
        .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    Ok(response)
}

pub async fn home(_: SignedIn) -> HttpResponse {
    see_other("/console/services")
}

pub async fn not_found(_: SignedIn) -> Answer {
    Err(ConsoleError::NotFound(
        "There is no console page here.".into(),
    ))
}

// ---- Services ----

pub async fn services(signed: SignedIn, query: web::Query<After>) -> Answer {
    let account = signed.session.account;
    let request = page_request(&query.after);
    let found = signed.read(|view| view.services(&account, &request))?;
    let now = signed.now();
    let next = next_after(&found, |s| s.sid.to_string());
    let body = html! {
        h1 { "Services" }
        @if found.items.is_empty() {
            (layout::none("This account has no services yet."))
        } @else {
            table {
                thead { tr { th scope="col" { "Service" } th scope="col" { "SID" } th scope="col" { "Created" } } }
                tbody {
                    @for service in &found.items {
                        tr {
                            td { a href=(format!("/console/services/{}", service.sid)) { (service.friendly_name) } }
                            td { (layout::sid(service.sid.as_str())) }
                            td { (when(service.date_created, now)) }
                        }
                    }
                }
            }
        }
        (layout::paging("/console/services", query.after.is_none(), next))
    };
    Ok(signed.page(StatusCode::OK, "Services", body))
}

fn find_user_form(service: &ServiceSid, identity: &str) -> Markup {
    html! {
        form.find method="get" action=(format!("/console/services/{service}/users")) role="search" {
            label for="identity" { "Find a user by identity" }
            div.inline {
                input #identity name="identity" type="search" value=(identity) required
                    autocomplete="off" spellcheck="false" autocapitalize="off";
                button type="submit" { "Find" }
            }
        }
    }
}

pub async fn service(
    signed: SignedIn,
    path: web::Path<String>,
    query: web::Query<After>,
) -> Answer {
    let service = find_service(&signed, &path)?;
    let account = signed.session.account;
    let request = page_request(&query.after);
    let users = signed.read(|view| view.users(&account, &service.sid, &request))?;
    let now = signed.now();
    let base = format!("/console/services/{}", service.sid);
    let next = next_after(&users, |u| u.sid.to_string());
    let enabled: Vec<&str> = MessageType::ALL
        .into_iter()
        .filter(|t| service.settings.notifications.enabled(*t))
        .map(|t| t.as_str())
        .collect();
    let body = html! {
        p.crumbs { a href="/console/services" { "Services" } " › " }
        h1 { (service.friendly_name) }
        p { (layout::sid(service.sid.as_str())) " · created " (when(service.date_created, now)) }
        p {
            "Sends pushes for: "
            @if enabled.is_empty() {
                strong { "no message type" } " (notify sends nothing until one is enabled)"
            } @else {
                (enabled.join(", "))
            }
        }
        p { a href=(format!("{base}/failures")) { "Recent failed deliveries and rejected devices" } }
        (find_user_form(&service.sid, ""))
        h2 { "Users" }
        @if users.items.is_empty() {
            (layout::none("No users yet."))
        } @else {
            table {
                thead { tr { th scope="col" { "Identity" } th scope="col" { "Name" } th scope="col" { "Created" } } }
                tbody {
                    @for user in &users.items {
                        tr {
                            td { a href=(format!("{base}/users/{}", user.sid)) { (user.identity.as_str()) } }
                            td { (user.friendly_name.as_deref().unwrap_or("")) }
                            td { (when(user.date_created, now)) }
                        }
                    }
                }
            }
        }
        (layout::paging(&base, query.after.is_none(), next))
    };
    Ok(signed.page(StatusCode::OK, &service.friendly_name, body))
}

#[derive(Deserialize)]
pub struct FindQuery {
    identity: Option<String>,
}

pub async fn find_user(
    signed: SignedIn,
    path: web::Path<String>,
    query: web::Query<FindQuery>,
) -> Answer {
    let service = find_service(&signed, &path)?;
    let wanted = query.identity.as_deref().unwrap_or("").trim().to_owned();
    if wanted.is_empty() {
        return Ok(see_other(&format!("/console/services/{}", service.sid)));
    }
    let account = signed.session.account;
    let found = match Identity::parse(&wanted) {
        Ok(identity) => signed.read(|view| {
            if let Some(user) =
                view.user(&account, &service.sid, &UserRef::Identity(identity.clone()))?
            {
                return Ok(Some(user.sid));
            }
            view.user_ever(&account, &service.sid, &identity)
        })?,
        Err(_) => None,
    };
    if let Some(user) = found {
        return Ok(see_other(&format!(
            "/console/services/{}/users/{user}",
            service.sid
        )));
    }
    let body = html! {
        p.crumbs { a href="/console/services" { "Services" } " › " a href=(format!("/console/services/{}", service.sid)) { (service.friendly_name) } " › " }
        h1 { "No such user" }
        p.problem { "No user with identity “" (wanted) "” was ever in this service." }
        (find_user_form(&service.sid, &wanted))
    };
    Ok(signed.page(StatusCode::NOT_FOUND, "No such user", body))
}

// ---- A user's page ----

/// A device as its row shows it.
struct Device {
    binding: Binding,
    credential: Option<Credential>,
    latest: Option<DeliveryRecord>,
}

/// What a user's page shows, read at once.
struct UserPage {
    service: Service,
    user_sid: UserSid,
    identity: String,
    /// `None` when the user was deleted.
    user: Option<User>,
    devices: Vec<Device>,
    /// Newest first.
    timeline: Vec<RecordedEvent>,
    older: Option<i64>,
    /// Whether the timeline starts at the newest event.
    newest: bool,
    facts: HashMap<String, BindingFacts>,
    moved_to: HashMap<i64, MovedTo>,
    /// Positions of updates that changed the device's token.
    new_tokens: Vec<i64>,
}

#[derive(Deserialize)]
pub struct TimelineQuery {
    before: Option<i64>,
}

/// Reads the user's page: the user (by SID or identity, deleted ones too), its devices with
/// their latest delivery, and a page of its timeline, newest first.
fn read_user_page(
    signed: &SignedIn,
    service_text: &str,
    user_text: &str,
    before: Option<i64>,
) -> Result<UserPage, ConsoleError> {
    let service_sid = service_sid(service_text)?;
    let account = signed.session.account;
    let not_found = || ConsoleError::NotFound("No such user in this service.".into());
    let page = signed.read(|view| {
        let Some(service) = view.service(&account, &service_sid)? else {
            return Ok(None);
        };
        let reference = UserRef::parse(user_text).ok();
        let user = match &reference {
            Some(r) => view.user(&account, &service_sid, r)?,
            None => None,
        };
        let user_sid = match (&user, &reference) {
            (Some(user), _) => user.sid,
            (None, Some(UserRef::Sid(sid))) => *sid,
            (None, Some(UserRef::Identity(identity))) => {
                match view.user_ever(&account, &service_sid, identity)? {
                    Some(sid) => sid,
                    None => return Ok(None),
                }
            }
            (None, None) => return Ok(None),
        };
        let cursor = Cursor::Before(before.unwrap_or(i64::MAX).to_string());
        let events = view.events(
            &account,
            &EventFilter::User(service_sid, user_sid),
            &PageRequest {
                cursor,
                size: TIMELINE_PAGE,
            },
        )?;
        if user.is_none() && events.items.is_empty() && before.is_none() {
            return Ok(None);
        }
        let identity = match &user {
            Some(user) => user.identity.as_str().to_owned(),
            None => events
                .items
                .iter()
                .find_map(|e| match &e.event {
                    Event::UserCreated { identity, .. } if e.stream == user_sid.as_str() => {
                        Some(identity.as_str().to_owned())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| user_sid.to_string()),
        };
        let mut devices = Vec::new();
        if user.is_some() {
            for binding in view.bindings_of_user(&user_sid)? {
                let credential = match &binding.credential_sid {
                    Some(sid) => view.credential(&account, sid)?,
                    None => None,
                };
                let latest = view
                    .deliveries(
                        &account,
                        &service_sid,
                        &binding.sid,
                        &PageRequest {
                            cursor: Cursor::Start,
                            size: 1,
                        },
                    )?
                    .and_then(|page| page.items.into_iter().next());
                devices.push(Device {
                    binding,
                    credential,
                    latest,
                });
            }
        }
        // What the events need besides themselves, oldest first as they happened.
        let mut facts: HashMap<String, BindingFacts> = HashMap::new();
        let mut addresses: HashMap<String, PushAddress> = HashMap::new();
        let mut new_tokens = Vec::new();
        let mut moved_to = HashMap::new();
        for device in &devices {
            facts.insert(
                device.binding.sid.to_string(),
                BindingFacts {
                    binding_type: Some(device.binding.binding_type),
                    endpoint: Some(device.binding.endpoint.as_str().to_owned()),
                },
            );
        }
        for recorded in &events.items {
            match &recorded.event {
                Event::BindingRegistered {
                    binding_type,
                    endpoint,
                    address,
                    ..
                } => {
                    facts.insert(
                        recorded.stream.clone(),
                        BindingFacts {
                            binding_type: Some(*binding_type),
                            endpoint: Some(endpoint.as_str().to_owned()),
                        },
                    );
                    addresses.insert(recorded.stream.clone(), address.clone());
                }
                Event::BindingUpdated { address, .. } => {
                    let before = addresses.insert(recorded.stream.clone(), address.clone());
                    if before.is_some_and(|b| b != *address) {
                        new_tokens.push(recorded.position);
                    }
                }
                Event::BindingSuperseded { by, by_user_sid } => {
                    let other = view.user(&account, &service_sid, &UserRef::Sid(*by_user_sid))?;
                    let device = view.binding(&account, &service_sid, by)?;
                    moved_to.insert(
                        recorded.position,
                        MovedTo {
                            identity: other.map(|u| u.identity.as_str().to_owned()),
                            endpoint: device.map(|b| b.endpoint.as_str().to_owned()),
                            same_user: *by_user_sid == user_sid,
                        },
                    );
                }
                _ => {}
            }
        }
        // Bindings this page shows only the end of: their type from their first event.
        let unknown: Vec<String> = events
            .items
            .iter()
            .filter(|e| e.stream.starts_with("BS") && !facts.contains_key(&e.stream))
            .map(|e| e.stream.clone())
            .collect();
        for stream in unknown {
            if let Some(Event::BindingRegistered {
                binding_type,
                endpoint,
                ..
            }) = first_registration(view, &account, service_sid, &stream)?.map(|e| e.event)
            {
                facts.insert(
                    stream,
                    BindingFacts {
                        binding_type: Some(binding_type),
                        endpoint: Some(endpoint.as_str().to_owned()),
                    },
                );
            }
        }
        let older = (events.items.len() == TIMELINE_PAGE)
            .then(|| events.items.first().map(|e| e.position))
            .flatten();
        let mut timeline = events.items;
        timeline.reverse();
        Ok(Some(UserPage {
            service,
            user_sid,
            identity,
            user,
            devices,
            timeline,
            older,
            newest: before.is_none(),
            facts,
            moved_to,
            new_tokens,
        }))
    })?;
    page.ok_or_else(not_found)
}

/// A test push's outcome, shown above the user's devices.
struct Tested {
    binding: BindingSid,
    status: Option<DeliveryStatus>,
    error: Option<String>,
    /// Why nothing was sent, when nothing was.
    not_sent: Option<String>,
}

fn render_user_page(signed: &SignedIn, page: &UserPage, tested: Option<&Tested>) -> Markup {
    let now = signed.now();
    let service = &page.service;
    let base = format!("/console/services/{}/users/{}", service.sid, page.user_sid);
    let stale_after = signed.settings.stale_after;
    html! {
        p.crumbs {
            a href="/console/services" { "Services" } " › "
            a href=(format!("/console/services/{}", service.sid)) { (service.friendly_name) } " › "
        }
        h1 { (page.identity) }
        @match &page.user {
            Some(user) => {
                p {
                    (layout::sid(user.sid.as_str()))
                    @if let Some(name) = &user.friendly_name { " · " (name) }
                    " · created " (when(user.date_created, now))
                }
            }
            None => { p.problem { "This user was deleted; its history is kept." } }
        }
        @if let Some(tested) = tested {
            section.notice role="status" aria-live="polite" {
                h2 { "Test push to " (layout::sid(tested.binding.as_str())) }
                @if let Some(why) = &tested.not_sent {
                    p { strong { "Not sent. " } (why) }
                } @else if let Some(status) = tested.status {
                    @let (word, meaning) = words::outcome(status);
                    p { "Outcome: " strong.outcome data-status=(word) { (word) } ". " (meaning) }
                    @if let Some(error) = &tested.error { p { "Error: " (words::delivery_error(error)) } }
                }
            }
        }
        h2 { "Devices" }
        @if page.devices.is_empty() {
            (layout::none("No devices: pushes to this user reach nothing. The history below says where they went."))
        } @else {
            div.devices {
                @for device in &page.devices {
                    (device_card(signed, &base, device, now))
                }
            }
        }
        h2 #history { "History" }
        p.hint { "Newest first: the user's events and every event of each device ever registered to it." }
        @if page.timeline.is_empty() {
            (layout::none("No events."))
        } @else {
            ol.timeline {
                @for recorded in &page.timeline {
                    @let facts = page.facts.get(&recorded.stream).cloned().unwrap_or_default();
                    li data-type=(recorded.event.type_name()) {
                        div.when { (when(recorded.recorded_at, now)) }
                        div.what {
                            @if recorded.stream.starts_with("BS") {
                                span.device-name {
                                    (facts.endpoint.clone().unwrap_or_else(|| "device".into()))
                                    " " (layout::sid(&recorded.stream))
                                }
                                " "
                            }
                            (words::event(
                                &recorded.event,
                                &facts,
                                page.moved_to.get(&recorded.position),
                                page.new_tokens.contains(&recorded.position),
                                stale_after,
                            ))
                        }
                    }
                }
            }
            @if let Some(older) = page.older {
                nav.paging aria-label="History pages" {
                    @if !page.newest { a href=(format!("{base}#history")) { "Newest events" } }
                    a href=(format!("{base}?before={older}#history")) rel="next" { "Older events" }
                }
            } @else if !page.newest {
                nav.paging aria-label="History pages" {
                    a href=(format!("{base}#history")) { "Newest events" }
                }
            }
        }
    }
}

fn device_card(signed: &SignedIn, base: &str, device: &Device, now: Timestamp) -> Markup {
    let binding = &device.binding;
    html! {
        article.device aria-label=(format!("Device {}", binding.endpoint.as_str())) {
            h3 { (binding.endpoint.as_str()) }
            dl {
                dt { "Binding" } dd { code { (binding.sid.as_str()) } }
                dt { "Type" } dd { (words::kind(binding.binding_type)) }
                dt { "Token" } dd { code.token title=(binding.address.as_str()) { (layout::short_sid(binding.address.as_str())) } }
                dt { "Credential" }
                dd {
                    @match (&binding.credential_sid, &device.credential) {
                        (Some(_), Some(credential)) => {
                            (credential.friendly_name.as_deref().unwrap_or("unnamed")) " " (layout::sid(credential.sid.as_str()))
                        }
                        (Some(sid), None) => { span.problem { "deleted (" (sid.as_str()) ")" } }
                        (None, _) => { "the account's only one of its kind" }
                    }
                }
                dt { "Registered" } dd { (when(binding.date_created, now)) }
                dt { "Last refreshed" } dd { (when(binding.date_updated, now)) }
                dt { "Latest push" }
                dd {
                    @match &device.latest {
                        Some(record) => {
                            @let (word, _) = words::outcome(record.status);
                            strong.outcome data-status=(word) { (word) } " " (when(record.date_created, now))
                            @if let Some(error) = &record.error { br; span.error { (words::delivery_error(error)) } }
                        }
                        None => { "none yet" }
                    }
                }
            }
            form method="post" action=(format!("{base}/bindings/{}/test-push", binding.sid)) {
                input type="hidden" name="csrf" value=(signed.session.csrf_token);
                button type="submit" { "Send a test push" }
            }
        }
    }
}

pub async fn user(
    signed: SignedIn,
    path: web::Path<(String, String)>,
    query: web::Query<TimelineQuery>,
) -> Answer {
    let (service, user) = path.into_inner();
    let page = read_user_page(&signed, &service, &user, query.before)?;
    let title = page.identity.clone();
    Ok(signed.page(
        StatusCode::OK,
        &title,
        render_user_page(&signed, &page, None),
    ))
}

pub async fn test_push(
    request: HttpRequest,
    signed: SignedIn,
    path: web::Path<(String, String, String)>,
    form: web::Form<FormToken>,
) -> Answer {
    session::from_this_origin(&request, &signed.settings)?;
    signed.check_form_token(&form.csrf)?;
    let (service, user, binding) = path.into_inner();
    let service_row = find_service(&signed, &service)?;
    let account = signed.session.account;
    let no_device = || ConsoleError::NotFound("This user has no such device (any more).".into());
    let (reference, sid) = match (UserRef::parse(&user), BindingSid::parse(&binding)) {
        (Ok(reference), Ok(sid)) => (reference, sid),
        _ => return Err(no_device()),
    };
    // The user's device as it is now: only what the push needs, read once.
    let binding = signed
        .read(|view| {
            let Some(user) = view.user(&account, &service_row.sid, &reference)? else {
                return Ok(None);
            };
            Ok(view
                .binding(&account, &service_row.sid, &sid)?
                .filter(|b| b.user_sid == user.sid))
        })?
        .ok_or_else(no_device)?;
    let notifications = &service_row.settings.notifications;
    let message_type = MessageType::ALL
        .into_iter()
        .find(|t| binding.message_types.contains(*t) && notifications.enabled(*t));
    let tested = match message_type {
        None => Tested {
            binding: binding.sid,
            status: None,
            error: None,
            not_sent: Some(
                "The service sends no push of any message type this device takes. Enable one \
                 in the service's notification settings (for example \
                 Notifications.NewMessage.Enabled)."
                    .into(),
            ),
        },
        Some(message_type) => {
            let notify = NotifyRequest {
                sid: signed.daemon.new_notification_sid(),
                account: signed.session.account,
                service: service_row.sid,
                identities: vec![binding.identity.clone()],
                only_binding: Some(binding.sid),
                message_type,
                body: Some("A test push from the Bindery console.".into()),
                title: Some("Bindery test".into()),
                sound: None,
                data: None,
                priority: Priority::default(),
                ttl: None,
                variables: Variables::default(),
                request_id: bindery_http::request_id(&request),
            };
            let report = signed.daemon.notify(notify).await?;
            match report.deliveries.first() {
                Some(delivery) => Tested {
                    binding: binding.sid,
                    status: Some(DeliveryStatus::from(&delivery.outcome)),
                    error: delivery.outcome.error().map(|e| e.to_string()),
                    not_sent: None,
                },
                None => Tested {
                    binding: binding.sid,
                    status: None,
                    error: None,
                    not_sent: Some("The device was gone by the time the push was made.".into()),
                },
            }
        }
    };
    // Read again: an unregistered device is gone now, and the others show this push.
    let page = read_user_page(&signed, &service, &user, None)?;
    let title = page.identity.clone();
    Ok(signed.page(
        StatusCode::OK,
        &title,
        render_user_page(&signed, &page, Some(&tested)),
    ))
}

// ---- Credentials ----

fn credential_kind(credential: &Credential) -> String {
    let auth = match credential.profile.auth {
        Some(CredentialAuth::Token) => " token key (.p8)",
        Some(CredentialAuth::Certificate) => " certificate",
        Some(CredentialAuth::ServiceAccount) => " service account",
        None => "",
    };
    format!("{}{auth}", words::kind(credential.credential_type))
}

pub async fn credentials(signed: SignedIn, query: web::Query<After>) -> Answer {
    let account = signed.session.account;
    let request = page_request(&query.after);
    let found = signed.read(|view| view.credentials(&account, &request))?;
    let now = signed.now();
    let next = next_after(&found, |c| c.sid.to_string());
    let body = html! {
        h1 { "Credentials" }
        @if found.items.is_empty() {
            (layout::none("This account has no push credentials."))
        } @else {
            table {
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Topic or project" }
                    th scope="col" { "Expires" } th scope="col" { "Health" }
                } }
                tbody {
                    @for credential in &found.items {
                        @let healthy = signed.daemon.credential_healthy(&credential.sid);
                        tr {
                            td { (credential.friendly_name.as_deref().unwrap_or("unnamed")) br; (layout::sid(credential.sid.as_str())) }
                            td {
                                (credential_kind(credential))
                                @if credential.sandbox == Some(true) { br; "sandbox (development)" }
                            }
                            td { (credential.profile.topic.as_deref().unwrap_or("—")) }
                            td {
                                @match credential.profile.expires {
                                    Some(expires) => {
                                        @if expires <= now { strong.problem { "expired" } " " }
                                        (when(expires, now))
                                    }
                                    None => { "does not expire" }
                                }
                            }
                            td {
                                @if healthy { "healthy" } @else {
                                    @match signed.daemon.credential_fault(&credential.sid) {
                                        Some(reason) => {
                                            strong.problem { "refused" } " by "
                                            (words::provider(Some(credential.credential_type)))
                                            ": " (words::delivery_error(&reason))
                                            " (until a push through it is delivered)"
                                        }
                                        None => {
                                            strong.problem { "held back" }
                                            ": too many devices were rejected through it within the last minute"
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (layout::paging("/console/credentials", query.after.is_none(), next))
    };
    Ok(signed.page(StatusCode::OK, "Credentials", body))
}

// ---- A service's failures ----

pub async fn failures(
    signed: SignedIn,
    path: web::Path<String>,
    query: web::Query<After>,
) -> Answer {
    let service = find_service(&signed, &path)?;
    let account = signed.session.account;
    let after = query.after.clone().filter(|a| !a.is_empty());
    let (failed, rejected) = signed.read(|view| {
        let failed = view.failed_deliveries(&account, &service.sid, after.as_deref(), PAGE_SIZE)?;
        let mut rows = Vec::new();
        for record in failed.items {
            let binding = view.binding(&account, &service.sid, &record.binding_sid)?;
            rows.push((record, binding));
        }
        let rejected = view.rejected_bindings(&account, &service.sid, None, 20)?;
        let mut removed = Vec::new();
        for event in rejected.items {
            let first = first_registration(view, &account, service.sid, &event.stream)?;
            let registered = first.and_then(|e| match e.event {
                Event::BindingRegistered {
                    user_sid,
                    identity,
                    endpoint,
                    binding_type,
                    ..
                } => Some((user_sid, identity, endpoint, binding_type)),
                _ => None,
            });
            removed.push((event, registered));
        }
        Ok(((rows, failed.more), removed))
    })?;
    let now = signed.now();
    let base = format!("/console/services/{}", service.sid);
    let ((rows, more), removed) = (failed, rejected);
    let next = more
        .then(|| rows.last().map(|(r, _)| r.notification_sid.to_string()))
        .flatten();
    let body = html! {
        p.crumbs { a href="/console/services" { "Services" } " › " a href=(base.clone()) { (service.friendly_name) } " › " }
        h1 { "Failures" }
        h2 { "Failed deliveries" }
        p.hint { "Pushes that did not go through; their devices are kept. Newest first." }
        @if rows.is_empty() {
            (layout::none("No failed deliveries."))
        } @else {
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "User and device" } th scope="col" { "Why" } th scope="col" { "Tries" } } }
                tbody {
                    @for (record, binding) in &rows {
                        tr {
                            td { (when(record.date_created, now)) }
                            td {
                                @match binding {
                                    Some(b) => { a href=(format!("{base}/users/{}", b.user_sid)) { (b.identity.as_str()) } " · " (b.endpoint.as_str()) }
                                    None => { (layout::sid(record.binding_sid.as_str())) }
                                }
                            }
                            td {
                                (record.error.as_deref().map(words::delivery_error).unwrap_or_else(|| "no reason given".into()))
                                @if let Some(status) = record.provider_status { " (HTTP " (status) ")" }
                            }
                            td { (record.attempts) }
                        }
                    }
                }
            }
        }
        (layout::paging(&format!("{base}/failures"), after.is_none(), next))
        h2 { "Devices a provider rejected" }
        p.hint { "Removed because the push provider said their token is no longer valid. Newest first." }
        @if removed.is_empty() {
            (layout::none("None."))
        } @else {
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "User and device" } th scope="col" { "What the provider said" } } }
                tbody {
                    @for (event, registered) in &removed {
                        @let facts = BindingFacts {
                            binding_type: registered.as_ref().map(|r| r.3),
                            endpoint: registered.as_ref().map(|r| r.2.as_str().to_owned()),
                        };
                        tr {
                            td { (when(event.recorded_at, now)) }
                            td {
                                @match registered {
                                    Some((user_sid, identity, endpoint, _)) => {
                                        a href=(format!("{base}/users/{user_sid}")) { (identity.as_str()) } " · " (endpoint.as_str())
                                    }
                                    None => { (layout::sid(&event.stream)) }
                                }
                            }
                            td { (words::event(&event.event, &facts, None, false, signed.settings.stale_after)) }
                        }
                    }
                }
            }
        }
    };
    Ok(signed.page(StatusCode::OK, "Failures", body))
}
