//! HTTP handlers: parse, hand the work to the model's thread or the blocking pool,
//! and shape the answer. Nothing CPU-heavy runs on an actix worker.

use actix_web::http::header::{self, CacheDirective};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use serde_json::json;

use crate::engine::EngineError;
use crate::error::ApiError;
use crate::query::parse_generate;
use crate::registry::Registry;
use crate::render;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/generate").route(web::get().to(generate)).default_service(web::to(method_not_allowed)))
        .service(web::resource("/healthz").route(web::get().to(healthz)).default_service(web::to(method_not_allowed)));
}

/// `GET /generate?seed=S&model=NAME`: one PNG. The same seed and model always give
/// the same bytes; without a seed a random one is drawn and reported in `X-Seed`.
async fn generate(req: HttpRequest, registry: web::Data<Registry>) -> Result<HttpResponse, ApiError> {
    let query = parse_generate(req.query_string())?;
    let engine = registry.get(query.model.as_deref()).map_err(|e| ApiError::NotFound(e.to_string()))?;
    let seed = query.seed.unwrap_or_else(rand::random);
    let chw = engine.generate(vec![seed]).await.inspect_err(|e| {
        if !matches!(e, EngineError::Busy { .. }) {
            log_failure(engine.name(), seed, e)
        }
    })?;
    let spec = engine.image_spec();
    let png = web::block(move || render::png(&spec, &chw))
        .await
        .map_err(|e| ApiError::Internal(format!("image encoding was interrupted: {e}")))?
        .map_err(|e| ApiError::Internal(format!("cannot encode the image: {e}")))
        .inspect_err(|e| log_failure(engine.name(), seed, e))?;
    let mut res = HttpResponse::Ok();
    res.content_type("image/png").insert_header(("X-Seed", seed.to_string())).insert_header(("X-Model", engine.name()));
    if query.seed.is_none() {
        // A random picture must not be served again from a cache.
        res.insert_header(header::CacheControl(vec![CacheDirective::NoStore]));
    }
    Ok(res.body(png))
}

/// `GET /healthz`: the default model and everything loaded.
async fn healthz(registry: web::Data<Registry>) -> HttpResponse {
    let engine = registry.default_model();
    let m = engine.manifest();
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "model": engine.name(),
        "image_size": m.image_size,
        "channels": m.channels,
        "latent_dim": m.latent.dim,
        "execution_provider": engine.execution_provider(),
        "models": registry.names(),
    }))
}

pub async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound(format!("no route {}; try GET /generate?seed=42 or GET /healthz", req.path())).error_response()
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    ApiError::MethodNotAllowed(format!("{} is not allowed on {}; use GET", req.method(), req.path())).error_response()
}

fn log_failure(model: &str, seed: u64, e: &impl std::fmt::Display) {
    eprintln!("canard-serve: model {model}, seed {seed}: {e}");
}
