//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]`
//! annotations. `tests/api.rs` checks it against [`crate::routes::ROUTES`] and the
//! query parsers' parameter lists, so it cannot silently fall behind the code.

use utoipa::OpenApi;

use crate::error::ErrorBody;
use crate::routes::health::{Health, Ready};
use crate::routes::{health, images, models, site};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "canard-serve",
        description = "Pictures from GAN generators exported by canard-train. Every picture is a pure function of \
            the model file and the parameters: requests that name their seeds carry an ETag and may be cached for a \
            year. Errors are JSON: {\"error\": \"...\"}."
    ),
    paths(
        site::gallery,
        images::generate,
        images::interpolate,
        models::list,
        models::one,
        health::healthz,
        health::readyz,
        site::metrics,
        site::openapi,
    ),
    components(schemas(ErrorBody, Health, Ready))
)]
pub struct ApiDoc;
