//! `GET /models` and `GET /models/{name}`: the manifests of the loaded models.
//!
//! Each manifest's `name` is the name the server knows the model by (its folder's
//! name), which is what `model=` takes; exports always write the same name there.
//! `training.dataset` is cut to the folder's last name: the trainer records the
//! absolute path, which says things about its machine nobody asked to publish.

use actix_web::{web, HttpRequest, HttpResponse};
use canard_shared::manifest::TrainingSummary;
use canard_shared::Manifest;

use crate::app::AppState;
use crate::engine::Engine;
use crate::error::{ApiError, ErrorBody};

/// Every loaded model's manifest, in name order.
#[utoipa::path(
    get,
    path = "/models",
    tag = "models",
    responses((status = 200, description = "The model.json of every loaded model (see shared/src/manifest.rs), in name order; training.dataset is only the folder's name.", body = Vec<Object>))
)]
pub async fn list(state: web::Data<AppState>) -> HttpResponse {
    let registry = state.live.snapshot();
    HttpResponse::Ok().json(registry.models().map(|e| served(e)).collect::<Vec<_>>())
}

/// One model's manifest.
#[utoipa::path(
    get,
    path = "/models/{name}",
    tag = "models",
    params(("name" = String, Path, description = "A loaded model's name.")),
    responses(
        (status = 200, description = "The model's model.json; training.dataset is only the folder's name.", body = Object),
        (status = 404, description = "No model of that name is loaded.", body = ErrorBody),
    )
)]
pub async fn one(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let name = req.match_info().get("name").unwrap_or_default();
    let registry = state.live.snapshot();
    let engine = registry.get(Some(name))?;
    Ok(HttpResponse::Ok().json(served(engine)))
}

fn served(engine: &Engine) -> Manifest {
    let m = engine.manifest();
    let training = TrainingSummary { dataset: m.training.dataset_name().to_string(), ..m.training.clone() };
    Manifest { name: engine.name().to_string(), training, ..m.clone() }
}
