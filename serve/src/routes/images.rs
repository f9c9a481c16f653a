//! `GET /generate` and `GET /interpolate`: parameters → latent points → one batch
//! on the model's thread → picture on the blocking pool → response with caching
//! headers.

use std::sync::Arc;

use actix_web::http::header::ETag;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::caching;
use crate::encode::Format;
use crate::engine::{Engine, EngineError};
use crate::error::{ApiError, ErrorBody};
use crate::latents::{End, Point};
use crate::limits::{MAX_IMAGES, MAX_PIXELS};
use crate::query::{parse_generate, parse_interpolate, ClassChoice, Seeds, Start};
use crate::registry::Registry;
use crate::render::{self, Layout, Output};

/// One picture or a grid. The same parameters and model always give the same
/// bytes; without `seed`/`seeds` a random start is drawn and reported in `X-Seed`.
#[utoipa::path(
    get,
    path = "/generate",
    tag = "images",
    params(
        ("seed" = Option<u64>, Query, description = "The seed (0 to 2^64-1). Without seed or seeds, a random one, reported in X-Seed."),
        ("seeds" = Option<String>, Query, description = "A grid of these seeds: a list (1,2,3), a range (100-163) or a mix; at most 64."),
        ("n" = Option<u32>, Query, description = "A grid of n (1 to 64) consecutive seeds from seed (or from a random seed)."),
        ("latent" = Option<String>, Query, description = "Instead of seeds: one latent vector, base64 of the model's latent length of little-endian f32 (canard-train project writes one); escape + as %2B."),
        ("class" = Option<String>, Query, description = "A model with classes (see /models/{name}): the class's name or index. Without it, each seed's own class (canard_shared::latent::class_of_seed); latent= needs it. With n: all makes one row of n per class."),
        ("model" = Option<String>, Query, description = "A loaded model's name (see /models); default: the server's default model."),
        ("format" = Option<String>, Query, description = "png (default), jpeg (quality 90) or webp (lossless)."),
        ("size" = Option<u32>, Query, description = "Side of each picture in pixels, 1 to 1024, resampled with Lanczos3; default: the model's size."),
        ("truncation" = Option<f32>, Query, description = "ψ in (0, 1]: scales z toward the mean (1, the default, changes nothing)."),
    ),
    responses(
        (status = 200, description = "The picture, or a grid of ceil(sqrt(n)) per row with 2 px black borders. Headers: X-Seed (first seed), X-Seeds (grids), X-Model, ETag and Cache-Control.",
            content(([u8] = "image/png"), ([u8] = "image/jpeg"), ([u8] = "image/webp"))),
        (status = 304, description = "If-None-Match named this picture's ETag: nothing was generated."),
        (status = 400, description = "A bad, unknown or repeated parameter, or a limit exceeded.", body = ErrorBody),
        (status = 404, description = "No such model.", body = ErrorBody),
        (status = 503, description = "The model's queue is full (Retry-After: 1), or no model is loaded.", body = ErrorBody),
    )
)]
pub async fn generate(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = parse_generate(req.query_string())?;
    let engine = model(&state.live.snapshot(), q.model.as_deref())?;
    let classes = engine.manifest().classes.len();
    let named = match &q.class {
        Some(ClassChoice::Named(text)) => Some(class_index(&engine, "class", text)?),
        Some(ClassChoice::All) if classes == 0 => {
            class_index(&engine, "class", "all")?; // refused: the model has no classes
            None
        }
        Some(ClassChoice::All) | None => None,
    };
    let (seeds, explicit) = match q.seeds {
        Seeds::Given(seeds) => (seeds, true),
        Seeds::Random { n } => (random_run(n), false),
        Seeds::Latent(text) => {
            if classes > 0 && named.is_none() {
                return Err(ApiError::BadRequest(format!(
                    "latent= on model {}, which has classes, needs class= (one of {})",
                    engine.name(),
                    engine.manifest().class_names().join(", ")
                )));
            }
            let class = named.map(|c| c as u32);
            let points = vec![Point::at(latent(&text, &engine)?).truncated(q.truncation).of_class(class)];
            let job = Picture {
                layout: Layout::Single,
                headers: class_header(&engine, &points).into_iter().collect(),
                points,
                format: q.format,
                size: q.size,
                key: Some(format!("generate latent={text} truncation={}{}", q.truncation, class_key(class))),
            };
            return serve(&req, engine, job).await;
        }
    };
    let list = seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let mut headers = vec![("X-Seed", seeds.first().map_or_else(String::new, u64::to_string))];
    if seeds.len() > 1 {
        headers.push(("X-Seeds", list.clone()));
    }
    // One picture per seed (of its class, or the named one), or with class=all a row of
    // every seed per class.
    let (points, layout, key_class): (Vec<Point>, Layout, String) = if q.class == Some(ClassChoice::All) {
        if classes > MAX_CLASS_GRID {
            return Err(ApiError::BadRequest(format!(
                "class=all: model {} has {classes} classes, more than a grid holds ({MAX_CLASS_GRID} pictures); ask for one class at a time",
                engine.name()
            )));
        }
        if seeds.len() * classes > MAX_CLASS_GRID {
            return Err(ApiError::BadRequest(format!(
                "class=all with n={} makes {} pictures for {classes} classes; at most {MAX_CLASS_GRID}: ask for a smaller n",
                seeds.len(),
                seeds.len() * classes
            )));
        }
        let points = (0..classes as u32)
            .flat_map(|c| seeds.iter().map(move |&s| Point::seed(s).truncated(q.truncation).of_class(Some(c))))
            .collect();
        (points, Layout::Rows(seeds.len()), " class=all".into())
    } else {
        let points = seeds
            .iter()
            .map(|&s| Point::seed(s).truncated(q.truncation).of_class(class_of(&engine, named, s)))
            .collect();
        let layout = if seeds.len() == 1 { Layout::Single } else { Layout::Grid };
        (points, layout, class_key(named.map(|c| c as u32)))
    };
    headers.extend(class_header(&engine, &points));
    let job = Picture {
        layout,
        points,
        format: q.format,
        size: q.size,
        key: explicit.then(|| format!("generate seeds={list} truncation={}{key_class}", q.truncation)),
        headers,
    };
    serve(&req, engine, job).await
}

/// The most pictures a `class=all` grid holds (a row of `n` per class).
const MAX_CLASS_GRID: usize = 4 * MAX_IMAGES;

/// The index of the class `text` names on `engine`'s model: 400 listing its classes
/// when it has no such class (or none at all).
fn class_index(engine: &Engine, param: &str, text: &str) -> Result<usize, ApiError> {
    let m = engine.manifest();
    m.class_index(text).map_err(|message| ApiError::UnknownClass {
        message: format!("{param}: {message}"),
        classes: m.class_names().into_iter().map(String::from).collect(),
    })
}

/// A picture's class on `engine`'s model: the one named, else the seed's own (none for a
/// model without classes).
fn class_of(engine: &Engine, named: Option<usize>, seed: u64) -> Option<u32> {
    match engine.manifest().classes.len() {
        0 => None,
        k => Some(named.unwrap_or_else(|| canard_shared::latent::class_of_seed(seed, k)) as u32),
    }
}

/// `X-Class`: on a model of classes, each picture's class in order, comma-separated (names
/// may hold commas; `/models/NAME` lists them).
fn class_header(engine: &Engine, points: &[Point]) -> Option<(&'static str, String)> {
    let names = engine.manifest().class_names();
    let classes: Vec<&str> =
        points.iter().filter_map(|p| p.class).filter_map(|c| names.get(c as usize).copied()).collect();
    (!classes.is_empty()).then(|| ("X-Class", classes.join(",")))
}

/// The class's part of a cache key: every picture's class follows from it and the seeds.
fn class_key(class: Option<u32>) -> String {
    class.map_or_else(String::new, |c| format!(" class={c}"))
}

/// `steps` pictures on the great circle from `from`'s latent vector to `to`'s
/// (spherical interpolation); the first and last are exactly those seeds' pictures.
#[utoipa::path(
    get,
    path = "/interpolate",
    tag = "images",
    params(
        ("from" = Option<u64>, Query, description = "The seed at the start (or latent)."),
        ("latent" = Option<String>, Query, description = "Instead of from: the latent vector at the start, as /generate takes it."),
        ("to" = u64, Query, description = "The seed at the end."),
        ("class" = Option<String>, Query, description = "A model with classes: the class of the whole walk (name or index); default: the from seed's own."),
        ("from_class" = Option<String>, Query, description = "Instead of class: the class at the start; the walk changes to to_class halfway (classes are not blended)."),
        ("to_class" = Option<String>, Query, description = "The class at the end; default: from_class."),
        ("steps" = Option<u32>, Query, description = "Pictures from start to end, both included: 2 to 64 (default 8)."),
        ("model" = Option<String>, Query, description = "A loaded model's name; default: the server's default model."),
        ("format" = Option<String>, Query, description = "png (default), jpeg or webp: one strip; gif: an animation there and back (2*steps-2 frames, looping forever)."),
        ("size" = Option<u32>, Query, description = "Side of each picture in pixels, 1 to 1024; default: the model's size."),
        ("truncation" = Option<f32>, Query, description = "ψ in (0, 1]: scales z toward the mean."),
    ),
    responses(
        (status = 200, description = "A strip of the pictures (2 px black borders), or an animated GIF. Headers: X-Model, ETag, Cache-Control.",
            content(([u8] = "image/png"), ([u8] = "image/jpeg"), ([u8] = "image/webp"), ([u8] = "image/gif"))),
        (status = 304, description = "If-None-Match named this picture's ETag: nothing was generated."),
        (status = 400, description = "A bad, missing, unknown or repeated parameter, or a limit exceeded.", body = ErrorBody),
        (status = 404, description = "No such model.", body = ErrorBody),
        (status = 503, description = "The model's queue is full (Retry-After: 1), or no model is loaded.", body = ErrorBody),
    )
)]
pub async fn interpolate(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let q = parse_interpolate(req.query_string())?;
    let engine = model(&state.live.snapshot(), q.model.as_deref())?;
    let (from, named) = match &q.from {
        Start::Seed(seed) => (End::Seed(*seed), format!("from={seed}")),
        Start::Latent(text) => (latent(text, &engine)?, format!("latent={text}")),
    };
    let resolve = |param, c: &Option<String>| c.as_deref().map(|c| class_index(&engine, param, c)).transpose();
    // `class=` sets both ends: named as such when it is the one given.
    let (from_param, to_param) =
        if q.from_class == q.to_class { ("class", "class") } else { ("from_class", "to_class") };
    let (from_named, to_named) = (resolve(from_param, &q.from_class)?, resolve(to_param, &q.to_class)?);
    let start_class = match (&q.from, from_named) {
        (_, Some(c)) => Some(c as u32),
        (Start::Seed(seed), None) => class_of(&engine, None, *seed),
        (Start::Latent(_), None) if engine.manifest().classes.is_empty() => None,
        (Start::Latent(_), None) => {
            return Err(ApiError::BadRequest(format!(
                "latent= on model {}, which has classes, needs class= or from_class= (one of {})",
                engine.name(),
                engine.manifest().class_names().join(", ")
            )))
        }
    };
    let end_class = to_named.map(|c| c as u32).or(start_class);
    // i / (steps - 1) is exactly 0 and exactly 1 at the ends; between two classes the
    // second half is of the end's.
    let last = (q.steps - 1) as f32;
    let point = |i: usize| {
        let t = i as f32 / last;
        let class = if 2 * i >= q.steps { end_class } else { start_class };
        Point::between(from.clone(), End::Seed(q.to), t).truncated(q.truncation).of_class(class)
    };
    let classes = match (start_class, end_class) {
        (Some(a), Some(b)) => format!(" from_class={a} to_class={b}"),
        _ => String::new(),
    };
    let job = Picture {
        layout: if q.format == Format::Gif { Layout::PingPong } else { Layout::Strip },
        points: (0..q.steps).map(point).collect(),
        format: q.format,
        size: q.size,
        key: Some(format!("interpolate {named} to={} steps={} truncation={}{classes}", q.to, q.steps, q.truncation)),
        headers: Vec::new(),
    };
    serve(&req, engine, job).await
}

/// What a picture request has resolved to.
struct Picture {
    points: Vec<Point>,
    layout: Layout,
    format: Format,
    size: Option<u32>,
    /// The normalised parameters apart from format and size, for the ETag; `None`
    /// for random requests, which are never cached.
    key: Option<String>,
    headers: Vec<(&'static str, String)>,
}

async fn serve(req: &HttpRequest, engine: Arc<Engine>, job: Picture) -> Result<HttpResponse, ApiError> {
    let spec = engine.image_spec();
    // Bounded by the manifest's image_size limit (4096).
    let out = Output { layout: job.layout, format: job.format, size: job.size.unwrap_or(spec.size as u32) };
    check_budget(job.points.len(), spec.size, &out)?;
    // The effective size, so `size=` equal to the model's size shares the ETag.
    let tag = job.key.map(|key| {
        let key = format!("{key} format={} size={}", out.format.name(), out.size);
        caching::entity_tag(engine.manifest(), engine.compute(), &key)
    });
    if let Some(tag) = &tag {
        if caching::not_modified(req, tag) {
            return Ok(HttpResponse::NotModified()
                .insert_header(ETag(tag.clone()))
                .insert_header(caching::immutable())
                .insert_header(("X-Model", engine.name()))
                .finish());
        }
    }

    let values = engine.generate_points(job.points).await.inspect_err(|e| {
        if !matches!(e, EngineError::Busy { .. }) {
            tracing::error!(model = engine.name(), error = %e, "inference failed");
        }
    })?;
    let body = web::block(move || render::render(&spec, &values, &out))
        .await
        .map_err(|e| ApiError::Internal(format!("image encoding was interrupted: {e}")))?
        .map_err(|e| ApiError::Internal(format!("cannot encode the image: {e}")))
        .inspect_err(|e| tracing::error!(model = engine.name(), error = %e, "rendering failed"))?;

    let mut res = HttpResponse::Ok();
    res.content_type(out.format.mime()).insert_header(("X-Model", engine.name()));
    for header in job.headers {
        res.insert_header(header);
    }
    match tag {
        Some(tag) => res.insert_header(ETag(tag)).insert_header(caching::immutable()),
        None => res.insert_header(caching::no_store()),
    };
    Ok(res.body(body))
}

/// `latent=`'s vector for this model: 400, saying why, unless it is base64 of the model's
/// latent length of finite little-endian f32 (a `+` the query decoded as a space read back).
fn latent(text: &str, engine: &Engine) -> Result<End, ApiError> {
    let dim = engine.manifest().latent.dim;
    canard_shared::latent::decode_latent(&text.replace(' ', "+"), dim)
        .map(|z| End::Latent(z.into()))
        .map_err(|why| ApiError::BadRequest(format!("latent {why}")))
}

/// The named model, or the default; 503 while none is loaded at all.
fn model(registry: &Registry, name: Option<&str>) -> Result<Arc<Engine>, ApiError> {
    if registry.is_empty() {
        return Err(ApiError::NotReady("no model is loaded yet; see /readyz".into()));
    }
    Ok(registry.get(name)?.clone())
}

/// Both what the model generates and what is sent stay within [`MAX_PIXELS`].
fn check_budget(n: usize, model_size: usize, out: &Output) -> Result<(), ApiError> {
    let generated = n as u64 * (model_size as u64).pow(2);
    let sent = render::output_pixels(n, out.size, out.layout);
    let worst = generated.max(sent);
    if worst > MAX_PIXELS {
        let what = if sent >= generated { "the response" } else { "the model's output" };
        return Err(ApiError::BadRequest(format!(
            "{what} would hold {worst} pixels; at most {MAX_PIXELS} per request: ask for fewer pictures or a smaller size"
        )));
    }
    Ok(())
}

/// `n` consecutive seeds from a random start that leaves room for all of them.
fn random_run(n: usize) -> Vec<u64> {
    let n = n.clamp(1, MAX_IMAGES) as u64;
    let start = rand::random_range(0..=u64::MAX - (n - 1));
    (start..=start + (n - 1)).collect()
}
