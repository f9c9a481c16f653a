//! The route table. [`ROUTES`] is the single list the router is built from and the
//! OpenAPI document is checked against (see `tests/api.rs`), so the two cannot
//! drift apart. Handlers parse, hand CPU work to a model's thread or the blocking
//! pool, and shape the answer; nothing CPU-heavy runs on an actix worker.

pub(crate) mod health;
pub(crate) mod images;
pub(crate) mod models;
pub(crate) mod site;

use actix_web::{guard, web, FromRequest, Handler, HttpRequest, HttpResponse, Responder, ResponseError, Route};

use crate::error::ApiError;
use crate::query::echo;

/// Builds the route (method and handler) of one path.
pub type RouteFactory = fn() -> Route;

/// Every path served, with its handler for GET (and HEAD, which answers the same
/// headers without the body). Other methods get 405 and other paths 404, as JSON.
pub const ROUTES: &[(&str, RouteFactory)] = &[
    ("/", || read(site::gallery)),
    ("/generate", || read(images::generate)),
    ("/interpolate", || read(images::interpolate)),
    ("/models", || read(models::list)),
    ("/models/{name}", || read(models::one)),
    ("/healthz", || read(health::healthz)),
    ("/readyz", || read(health::readyz)),
    ("/metrics", || read(site::metrics)),
    ("/openapi.json", || read(site::openapi)),
];

/// GET or HEAD to `handler`.
fn read<F, Args>(handler: F) -> Route
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::route().guard(guard::Any(guard::Get()).or(guard::Head())).to(handler)
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    for (path, route) in ROUTES {
        cfg.service(web::resource(*path).route(route()).default_service(web::to(method_not_allowed)));
    }
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound(format!("no route {}; see GET /openapi.json for the routes", echo(req.path()))).error_response()
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}; use GET or HEAD",
        echo(req.method().as_str()),
        echo(req.path())
    ))
    .error_response()
}
