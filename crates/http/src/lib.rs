//! Bindery's HTTP adapter on actix-web.
//!
//! **Architecture invariant**: only this crate knows Twilio's wire format: PascalCase forms,
//! snake_case JSON bodies, error codes, page tokens. It knows nothing of SQL; it reaches the
//! store only through the daemon's actors.

pub mod api;
pub mod auth;
pub mod bindings;
pub mod credentials;
pub mod error;
pub mod form;
pub mod history;
pub mod notifications;
pub mod observe;
pub mod openapi;
pub mod operations;
pub mod paging;
pub mod services;
pub mod throttle;
pub mod users;

use std::net::TcpListener;

use actix_web::http::Method;
use actix_web::{dev::Server, web, App, HttpMessage, HttpRequest, HttpResponse, HttpServer};
use bindery_daemon::Daemon;

use error::ApiError;

#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The origin that `url` and `links` use; the request's own scheme and Host when unset.
    pub public_url: Option<String>,
    /// The largest request body accepted, in bytes.
    pub body_limit: usize,
    /// The most bindings one user may hold.
    pub per_user_limit: u32,
    pub workers: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            public_url: None,
            body_limit: 64 * 1024,
            per_user_limit: 20,
            workers: 2,
        }
    }
}

/// The table of routes: registered with actix, or listed for the OpenAPI document, from the
/// same calls so that the two cannot disagree.
pub enum Routes<'a> {
    Register(&'a mut web::ServiceConfig),
    List(&'a mut Vec<(String, String)>),
}

impl Routes<'_> {
    pub fn add<F, Args>(&mut self, method: Method, path: &'static str, handler: F) -> &mut Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        match self {
            Routes::Register(config) => {
                config.route(path, web::method(method).to(handler));
            }
            Routes::List(list) => list.push((method.to_string(), path.to_owned())),
        }
        self
    }
}

fn all_routes(routes: &mut Routes) {
    operations::routes(routes);
    api_routes(routes);
}

/// Everything but the operators' routes.
fn api_routes(routes: &mut Routes) {
    routes.add(Method::GET, "/openapi.json", openapi_document);
    services::routes(routes);
    credentials::routes(routes);
    users::routes(routes);
    // Before the bindings, whose `/Bindings/{Sid}` would otherwise take `/Bindings/Feedback`.
    notifications::routes(routes);
    history::routes(routes);
    bindings::routes(routes);
}

/// Every route Bindery serves.
pub fn routes(config: &mut web::ServiceConfig) {
    all_routes(&mut Routes::Register(config));
}

/// The (method, path template) of every route Bindery serves.
pub fn served_routes() -> Vec<(String, String)> {
    let mut list = Vec::new();
    all_routes(&mut Routes::List(&mut list));
    list
}

async fn openapi_document() -> Result<HttpResponse, ApiError> {
    static DOCUMENT: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    let document = DOCUMENT
        .get_or_init(|| openapi::document(&served_routes()).map(|d| d.to_string()))
        .as_ref()
        .map_err(|e| ApiError::internal(e.clone()))?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(document.clone()))
}

/// The request's id, as the `observe` middleware recorded it.
pub fn request_id(request: &HttpRequest) -> Option<String> {
    request
        .extensions()
        .get::<observe::RequestId>()
        .map(|id| id.0.clone())
}

/// The (method, path template) pairs one server registered, for its 404/405 answers.
struct RouteTable(Vec<(String, actix_web::dev::ResourceDef)>);

impl RouteTable {
    fn of(register: fn(&mut Routes)) -> RouteTable {
        let mut list = Vec::new();
        register(&mut Routes::List(&mut list));
        RouteTable(
            list.into_iter()
                .map(|(method, path)| (method, actix_web::dev::ResourceDef::new(path)))
                .collect(),
        )
    }
}

/// No route matched: 405 when this server serves the path under other methods, else 404.
async fn not_found(
    request: HttpRequest,
    table: web::Data<RouteTable>,
) -> Result<HttpResponse, ApiError> {
    let path = request.path();
    let allowed: Vec<String> = table
        .0
        .iter()
        .filter(|(_, template)| template.is_match(path))
        .map(|(method, _)| method.clone())
        .collect();
    if allowed.is_empty() {
        Err(ApiError::not_found(format!(
            "The requested resource {path} was not found"
        )))
    } else {
        Err(ApiError::method_not_allowed(
            request.method().as_str(),
            path,
            allowed,
        ))
    }
}

/// Starts serving the API on `listener`, and the operators' routes on `operations` when
/// given (else on `listener` too). The returned servers run until stopped.
pub fn serve(
    daemon: Daemon,
    settings: HttpSettings,
    listener: TcpListener,
    operations: Option<TcpListener>,
) -> std::io::Result<Vec<Server>> {
    let daemon = web::Data::new(daemon);
    let app_settings = web::Data::new(settings.clone());
    let register: fn(&mut Routes) = if operations.is_some() {
        api_routes
    } else {
        all_routes
    };
    let api_table = web::Data::new(RouteTable::of(register));
    // One throttle for all workers, so that an address's failures add up across them.
    let throttle = web::Data::new(throttle::AuthThrottle::default());
    let (api_daemon, api_settings) = (daemon.clone(), app_settings.clone());
    let api = HttpServer::new(move || {
        App::new()
            .app_data(api_daemon.clone())
            .app_data(api_settings.clone())
            .app_data(web::PayloadConfig::new(api_settings.body_limit))
            .app_data(api_table.clone())
            .app_data(throttle.clone())
            .wrap(actix_web::middleware::from_fn(observe::observe))
            .configure(|config| register(&mut Routes::Register(config)))
            .default_service(web::to(not_found))
    });
    // The binary owns signal handling, so that it is in place before it says it listens.
    let mut servers = vec![api
        .workers(settings.workers)
        .disable_signals()
        .shutdown_timeout(10)
        .listen(listener)?
        .run()];
    if let Some(listener) = operations {
        let table = web::Data::new(RouteTable::of(operations::routes));
        let operators = HttpServer::new(move || {
            App::new()
                .app_data(daemon.clone())
                .app_data(app_settings.clone())
                .app_data(table.clone())
                .wrap(actix_web::middleware::from_fn(observe::observe))
                .configure(|config| operations::routes(&mut Routes::Register(config)))
                .default_service(web::to(not_found))
        });
        servers.push(
            operators
                .workers(1)
                .disable_signals()
                .shutdown_timeout(10)
                .listen(listener)?
                .run(),
        );
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_route_is_described_and_nothing_else_is() {
        let served = served_routes();
        let document = openapi::document(&served).expect("every route is described");
        let mut described: Vec<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(|m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        let mut served = served;
        described.sort();
        served.sort();
        assert_eq!(described, served);
        let register =
            &document["paths"]["/v2/Services/{ServiceSid}/Users/{UserSid}/Bindings"]["post"];
        assert_eq!(register["operationId"], "RegisterUserBinding");
    }

    #[test]
    fn a_route_without_a_description_is_reported() {
        let error = openapi::document(&[("GET".into(), "/v2/Nowhere".into())]).unwrap_err();
        assert!(
            error.contains("GET /v2/Nowhere is served but not described"),
            "{error}"
        );
    }
}
