//! The actix `App`: state, routes, CORS and the metrics middleware, built in one
//! place so the binary and the tests serve exactly the same thing.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::http::Uri;
use actix_web::middleware::Condition;
use actix_web::{web, App};

use crate::conn::Watched;
use crate::error::ApiError;
use crate::limits::MAX_HEADER_BYTES;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::routes;

/// What every handler shares.
pub struct AppState {
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(live: Arc<Live>, metrics: Arc<Metrics>) -> web::Data<AppState> {
        web::Data::new(AppState { live, metrics })
    }

    /// A fixed registry (no hot reload) and its own metrics.
    pub fn fixed(registry: Registry) -> web::Data<AppState> {
        AppState::new(Arc::new(Live::new(registry)), Arc::new(Metrics::new()))
    }
}

/// `--cors-origins`: which web pages may read the answers from JavaScript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `*`: any page (the answer says `Access-Control-Allow-Origin: *`).
    Any,
    /// A comma-separated list of origins such as `https://example.org`.
    Only(Vec<String>),
    /// `none`: no CORS headers at all.
    Off,
}

impl FromStr for CorsOrigins {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "*" => return Ok(CorsOrigins::Any),
            "none" => return Ok(CorsOrigins::Off),
            _ => {}
        }
        let origins: Vec<String> = s.split(',').map(|o| o.trim().to_string()).collect();
        for o in &origins {
            if !is_origin(o) {
                return Err(format!(
                    "{o:?} is not an origin; give '*', 'none' or a comma-separated list like https://example.org,http://localhost:3000"
                ));
            }
        }
        Ok(CorsOrigins::Only(origins))
    }
}

impl fmt::Display for CorsOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorsOrigins::Any => f.write_str("*"),
            CorsOrigins::Only(list) => f.write_str(&list.join(",")),
            CorsOrigins::Off => f.write_str("none"),
        }
    }
}

/// `scheme://host[:port]`, nothing more (what browsers send in `Origin`).
fn is_origin(s: &str) -> bool {
    let Ok(uri) = s.parse::<Uri>() else { return false };
    matches!(uri.scheme_str(), Some("http" | "https"))
        && uri.authority().is_some_and(|a| !a.host().is_empty())
        && uri.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
        && !s.ends_with('/')
}

/// GET and HEAD only; the headers a gallery's scripts need are exposed. With `*` no
/// `Vary: Origin` is sent, so one cached copy serves every site.
fn cors(origins: &CorsOrigins) -> Cors {
    let base = Cors::default()
        .allowed_methods(["GET", "HEAD"])
        .allowed_headers(["if-none-match", "accept"])
        .expose_headers(["etag", "x-seed", "x-seeds", "x-model", "x-class", "retry-after"])
        .max_age(86_400);
    match origins {
        CorsOrigins::Any => base.allow_any_origin().send_wildcard().disable_vary_header(),
        CorsOrigins::Only(list) => list.iter().fold(base, |c, o| c.allowed_origin(o)),
        CorsOrigins::Off => base,
    }
}

/// More than [`MAX_HEADER_BYTES`] of headers, counted as sent (`name: value\r\n`).
fn oversized_headers(headers: &HeaderMap) -> Option<ApiError> {
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    (bytes > MAX_HEADER_BYTES).then(|| {
        ApiError::HeadersTooLarge(format!(
            "the request headers are {bytes} bytes long; at most {MAX_HEADER_BYTES} are accepted"
        ))
    })
}

/// The application: routes from [`routes::ROUTES`], JSON 404s elsewhere, CORS,
/// requests with oversized headers refused (431), the connection watchdog told
/// while a request is handled, and every answer counted and timed by route pattern.
pub fn build(
    state: web::Data<AppState>,
    origins: &CorsOrigins,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let metrics = state.metrics.clone();
    App::new()
        .app_data(state)
        .configure(routes::configure)
        .default_service(web::to(routes::not_found))
        .wrap(Condition::new(*origins != CorsOrigins::Off, cors(origins)))
        .wrap_fn(move |req, srv| {
            let started = Instant::now();
            let metrics = metrics.clone();
            let busy = req.conn_data::<Watched>().map(Watched::busy);
            let call = match oversized_headers(req.headers()) {
                None => Ok(srv.call(req)),
                Some(refused) => Err(refused),
            };
            async move {
                let _busy = busy;
                let res = match call {
                    Ok(call) => call.await,
                    Err(refused) => Err(refused.into()),
                };
                let (route, status) = match &res {
                    Ok(r) => (r.request().match_pattern(), r.status()),
                    Err(e) => (None, e.as_response_error().status_code()),
                };
                let route = route.unwrap_or_else(|| "unmatched".to_string());
                metrics.record_request(&route, status.as_u16(), started.elapsed());
                tracing::debug!(route = %route, status = status.as_u16(), "answered");
                res
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cors_origins() {
        assert_eq!("*".parse(), Ok(CorsOrigins::Any));
        assert_eq!("none".parse(), Ok(CorsOrigins::Off));
        assert_eq!(
            "https://a.example, http://localhost:3000".parse(),
            Ok(CorsOrigins::Only(vec!["https://a.example".into(), "http://localhost:3000".into()]))
        );
        for bad in ["", "a.example", "https://a.example/", "https://a.example/x", "ftp://a", "https://a,*"] {
            assert!(bad.parse::<CorsOrigins>().is_err(), "{bad}");
        }
    }
}
