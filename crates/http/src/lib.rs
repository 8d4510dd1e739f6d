//! Bindery's HTTP adapter on actix-web.
//!
//! **Architecture invariant**: only this crate knows Twilio's wire format: PascalCase forms,
//! snake_case JSON bodies, error codes, page tokens. It knows nothing of SQL; it reaches the
//! store only through the daemon's actors.

pub mod api;
pub mod auth;
pub mod bindings;
pub mod credentials;
pub mod deliveries;
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

/// The table of routes: registered with actix, or listed (method, full path template) for the
/// OpenAPI document and the 404/405 answers, from the same calls so that they cannot disagree.
///
/// actix matches a request against its resources in order, each dynamic template by a regex,
/// so the table is a tree: routes of one path share a resource, and a scope's routes are only
/// tried once its prefix matched. Within a level, the first template that matches wins.
pub struct Routes<'a> {
    target: Target<'a>,
    prefix: String,
}

enum Target<'a> {
    Register {
        config: &'a mut web::ServiceConfig,
        /// In registration order; a route joins the resource of its path if there is one.
        pending: Vec<Pending>,
    },
    List(&'a mut Vec<(String, String)>),
}

enum Pending {
    Resource(&'static str, Vec<actix_web::Route>),
    Scope(actix_web::Scope),
}

impl<'a> Routes<'a> {
    /// Registers the routes added with actix, when finished.
    pub fn register(config: &'a mut web::ServiceConfig) -> Self {
        Routes {
            target: Target::Register {
                config,
                pending: Vec::new(),
            },
            prefix: String::new(),
        }
    }

    /// Lists the routes added, with their full path templates.
    pub fn list(list: &'a mut Vec<(String, String)>) -> Self {
        Routes {
            target: Target::List(list),
            prefix: String::new(),
        }
    }

    pub fn add<F, Args>(&mut self, method: Method, path: &'static str, handler: F) -> &mut Self
    where
        F: actix_web::Handler<Args>,
        Args: actix_web::FromRequest + 'static,
        F::Output: actix_web::Responder + 'static,
    {
        match &mut self.target {
            Target::Register { pending, .. } => {
                let route = web::method(method).to(handler);
                let same_path = pending.iter_mut().find_map(|p| match p {
                    Pending::Resource(p, routes) if *p == path => Some(routes),
                    _ => None,
                });
                match same_path {
                    Some(routes) => routes.push(route),
                    None => pending.push(Pending::Resource(path, vec![route])),
                }
            }
            Target::List(list) => list.push((method.to_string(), format!("{}{path}", self.prefix))),
        }
        self
    }

    /// Routes under `prefix`, which may hold a `{Name}` segment.
    pub fn scope(&mut self, prefix: &'static str, routes: impl FnOnce(&mut Routes)) -> &mut Self {
        match &mut self.target {
            Target::Register { pending, .. } => {
                let scope = web::scope(prefix).configure(|config| {
                    let mut inner = Routes::register(config);
                    routes(&mut inner);
                    inner.finish();
                });
                pending.push(Pending::Scope(scope));
            }
            Target::List(list) => {
                let mut inner = Routes {
                    target: Target::List(list),
                    prefix: format!("{}{prefix}", self.prefix),
                };
                routes(&mut inner);
            }
        }
        self
    }

    /// Hands what was added to actix. A method a path does not serve is answered by
    /// [`not_found`] (405 with `Allow`), as is a path no route serves (404).
    pub fn finish(self) {
        let Target::Register { config, pending } = self.target else {
            return;
        };
        for item in pending {
            match item {
                Pending::Resource(path, routes) => {
                    let resource = routes.into_iter().fold(
                        web::resource(path).default_service(web::to(not_found)),
                        |resource, route| resource.route(route),
                    );
                    config.service(resource);
                }
                Pending::Scope(scope) => {
                    config.service(scope);
                }
            }
        }
    }
}

fn all_routes(routes: &mut Routes) {
    operations::routes(routes);
    api_routes(routes);
}

/// Everything but the operators' routes: the whole API, as a tree.
fn api_routes(routes: &mut Routes) {
    use Method as M;
    routes.add(M::GET, "/openapi.json", openapi_document);
    routes.scope("/v2/Services", |routes| {
        routes
            .add(M::GET, "", services::list)
            .add(M::POST, "", services::create)
            .add(M::GET, "/{Sid}", services::fetch)
            .add(M::POST, "/{Sid}", services::update)
            .add(M::DELETE, "/{Sid}", services::delete)
            .scope("/{ServiceSid}", |routes| {
                routes
                    // Before `/Bindings/{Sid}`, which would take it.
                    .add(M::POST, "/Bindings/Feedback", notifications::feedback)
                    .add(M::GET, "/Bindings", bindings::list_service_bindings)
                    .add(M::GET, "/Bindings/{Sid}", bindings::fetch_service_binding)
                    .add(
                        M::DELETE,
                        "/Bindings/{Sid}",
                        bindings::delete_service_binding,
                    )
                    .add(M::GET, "/Bindings/{Sid}/History", history::binding_history)
                    .add(
                        M::GET,
                        "/Bindings/{Sid}/Deliveries",
                        deliveries::binding_deliveries,
                    )
                    .add(M::POST, "/Notifications", notifications::notify)
                    .add(M::GET, "/Users", users::list)
                    .add(M::POST, "/Users", users::create)
                    .add(M::GET, "/Users/{Sid}", users::fetch)
                    .add(M::POST, "/Users/{Sid}", users::update)
                    .add(M::DELETE, "/Users/{Sid}", users::delete)
                    .scope("/Users/{UserSid}", |routes| {
                        routes
                            .add(M::GET, "/Bindings", bindings::list_user_bindings)
                            .add(M::POST, "/Bindings", bindings::register)
                            .add(M::GET, "/Bindings/{Sid}", bindings::fetch_user_binding)
                            .add(M::DELETE, "/Bindings/{Sid}", bindings::delete_user_binding)
                            .add(M::GET, "/History", history::user_history);
                    });
            });
    });
    routes.scope("/v2/Credentials", |routes| {
        routes
            .add(M::GET, "", credentials::list)
            .add(M::POST, "", credentials::create)
            .add(M::GET, "/{Sid}", credentials::fetch)
            .add(M::POST, "/{Sid}", credentials::update)
            .add(M::DELETE, "/{Sid}", credentials::delete);
    });
    routes.add(M::GET, "/v2/Events", history::feed);
}

/// Every route Bindery serves.
pub fn routes(config: &mut web::ServiceConfig) {
    let mut routes = Routes::register(config);
    all_routes(&mut routes);
    routes.finish();
}

/// The (method, path template) of every route Bindery serves.
pub fn served_routes() -> Vec<(String, String)> {
    let mut list = Vec::new();
    all_routes(&mut Routes::list(&mut list));
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
        register(&mut Routes::list(&mut list));
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

/// How long an idle keep-alive connection stays open. Longer than the idle timeout of the
/// load balancers in front of a node (60 s is common), so that the balancer, not Bindery,
/// closes an idle connection: a server that closes first races the balancer's next request
/// on it, which then fails with a reset. Also longer than an HTTP worker may be held by
/// reads that wait for an unreachable PostgreSQL (`storage.busy_timeout` each): actix's
/// default of 5 s could expire while a worker was held, and close a connection with a
/// request already in it unread (a reset, not a 503): the likeliest cause of the one reset a
/// failover test saw.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(75);

/// Starts serving the API on `listener`, and the operators' routes on `operations` when
/// given (else on `listener` too); `mount` adds routes outside the API beside it (the
/// console), which share its sign-in throttle. The returned servers run until stopped.
pub fn serve<M>(
    daemon: Daemon,
    settings: HttpSettings,
    listener: TcpListener,
    operations: Option<TcpListener>,
    mount: M,
) -> std::io::Result<Vec<Server>>
where
    M: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
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
            .configure(mount.clone())
            .configure(|config| {
                let mut routes = Routes::register(config);
                register(&mut routes);
                routes.finish();
            })
            .default_service(web::to(not_found))
    });
    // The binary owns signal handling, so that it is in place before it says it listens.
    let mut servers = vec![api
        .workers(settings.workers)
        .keep_alive(KEEP_ALIVE)
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
                .configure(|config| {
                    let mut routes = Routes::register(config);
                    operations::routes(&mut routes);
                    routes.finish();
                })
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
