//! `GET /healthz` (liveness: the process answers) and `GET /readyz` (readiness: a
//! model is loaded, passed its test inference and its inference thread runs; a hot
//! reload stuck loading a model is reported there too).

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::live::STUCK_AFTER;

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    status: &'static str,
    /// The default model (`null` while none is loaded).
    model: Option<String>,
    image_size: Option<u32>,
    channels: Option<u32>,
    latent_dim: Option<usize>,
    /// The ONNX Runtime execution provider the default model runs on
    /// (`CUDAExecutionProvider` or `CPUExecutionProvider`; `null` while none is loaded).
    execution_provider: Option<&'static str>,
    /// Every loaded model, in name order.
    models: Vec<String>,
    /// The execution provider of every loaded model, by name.
    execution_providers: BTreeMap<String, &'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// Always `ready`.
    status: &'static str,
    /// The models able to serve.
    models: Vec<String>,
    /// Set while hot reload has been loading a model for over a minute: new and changed
    /// models wait until it finishes (the loaded ones keep serving, so the server stays ready).
    #[serde(skip_serializing_if = "Option::is_none")]
    reload: Option<String>,
}

/// Liveness: always 200 while the process serves HTTP; describes the default model.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let registry = state.live.snapshot();
    let default = registry.default_model();
    let m = default.map(|e| e.manifest());
    HttpResponse::Ok().json(Health {
        status: "ok",
        model: default.map(|e| e.name().to_string()),
        image_size: m.map(|m| m.image_size),
        channels: m.map(|m| m.channels),
        latent_dim: m.map(|m| m.latent.dim),
        execution_provider: default.map(|e| e.execution_provider()),
        models: registry.names().into_iter().map(String::from).collect(),
        execution_providers: registry.models().map(|e| (e.name().to_string(), e.execution_provider())).collect(),
    })
}

/// Readiness: 200 when at least one model is loaded (every model passes a test
/// inference before it is served) and its inference thread is running; else 503. A hot
/// reload stuck loading a model for [`STUCK_AFTER`] is reported in the answer's `reload`.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve pictures.", body = Ready),
        (status = 503, description = "No model can serve.", body = ErrorBody),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let reload = state.live.stuck(STUCK_AFTER).map(|(name, took)| {
        format!("stuck: loading model {name} has taken {}s; new and changed models wait for it", took.as_secs())
    });
    let registry = state.live.snapshot();
    match ready(registry.models().map(|e| (e.name(), e.is_alive()))) {
        Ok(models) => HttpResponse::Ok().json(Ready { status: "ready", models, reload }),
        Err(why) => ApiError::NotReady(why.into()).error_response(),
    }
}

/// The models whose inference thread runs, from (name, running) of each loaded
/// model; or why none can serve. Apart from the handler so the case of a stopped
/// thread, which a working model never reaches, is tested too.
fn ready<'a>(models: impl Iterator<Item = (&'a str, bool)>) -> Result<Vec<String>, &'static str> {
    let mut loaded = false;
    let mut running = Vec::new();
    for (name, alive) in models {
        loaded = true;
        if alive {
            running.push(name.to_string());
        }
    }
    match (loaded, running.is_empty()) {
        (false, _) => Err("no model is loaded"),
        (true, true) => Err("no model's inference thread is running"),
        (true, false) => Ok(running),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_while_an_inference_thread_runs() {
        assert_eq!(ready([].into_iter()), Err("no model is loaded"));
        assert_eq!(ready([("demo", false)].into_iter()), Err("no model's inference thread is running"));
        assert_eq!(ready([("a", false), ("b", true)].into_iter()), Ok(vec!["b".to_string()]));
        let err = ApiError::NotReady("no model's inference thread is running".into()).error_response();
        assert_eq!(err.status().as_u16(), 503);
    }
}
