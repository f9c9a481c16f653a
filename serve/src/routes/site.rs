//! `GET /` (the gallery page), `GET /metrics` and `GET /openapi.json`.

use std::sync::OnceLock;

use actix_web::{web, HttpResponse};
use utoipa::OpenApi;

use crate::app::AppState;
use crate::metrics::CONTENT_TYPE;
use crate::openapi::ApiDoc;

/// The gallery page, compiled into the binary so it is always the one that goes
/// with this server's API.
const GALLERY: &str = include_str!("../gallery/index.html");

/// The gallery: an endless grid of seeds, a lightbox and interpolation between two picks.
#[utoipa::path(get, path = "/", tag = "site", responses((status = 200, description = "The gallery page.", content_type = "text/html", body = String)))]
pub async fn gallery() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(GALLERY)
}

/// Prometheus metrics: requests by route and status, latency histograms per route,
/// batch sizes, queue depth per model, images generated, execution provider.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text exposition format 0.0.4.", content_type = "text/plain", body = String)))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let body = state.metrics.render(&state.live.snapshot());
    HttpResponse::Ok().content_type(CONTENT_TYPE).body(body)
}

/// This document: the class parameters' descriptions list the loaded models' classes.
#[utoipa::path(get, path = "/openapi.json", tag = "site", responses((status = 200, description = "The OpenAPI 3 document of this server; the class parameters list the loaded models' classes.", body = Object)))]
pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    let mut doc = DOC.get_or_init(ApiDoc::openapi).clone();
    let registry = state.live.snapshot();
    let listed: Vec<String> = registry
        .models()
        .filter(|e| !e.manifest().classes.is_empty())
        .map(|e| format!("{}: {}", e.name(), e.manifest().class_names().join(", ")))
        .collect();
    if !listed.is_empty() {
        let note = format!(" The loaded models' classes (index order) — {}.", listed.join("; "));
        for item in doc.paths.paths.values_mut() {
            let params = item.get.iter_mut().flat_map(|op| op.parameters.iter_mut().flatten());
            for p in params.filter(|p| p.name.ends_with("class")) {
                p.description = Some(p.description.take().unwrap_or_default() + &note);
            }
        }
    }
    // Serialising the generated document (plain data) cannot fail.
    let json = doc.to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    HttpResponse::Ok().content_type("application/json").body(json)
}
