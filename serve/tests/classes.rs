//! A model of several classes: `class=` by name or index, each seed's own class without
//! it, unknown classes refused with the model's list, `class=all` grids, walks within and
//! between classes, the class in the ETag, and the classes in /models/NAME.

mod support;

use std::sync::Arc;

use actix_web::test;
use canard_serve::app::AppState;
use canard_serve::live::Live;
use canard_serve::metrics::Metrics;
use canard_serve::registry::Loader;
use canard_shared::latent::{class_of_seed, encode_latent, latent};
use serde_json::Value;
use support::{hv, options, runtime, write_conditional_model, write_model, SIZE};

const CLASSES: [&str; 3] = ["duck", "goose", "swan"];

fn state(root: &std::path::Path) -> actix_web::web::Data<AppState> {
    write_conditional_model(root, "birds", &CLASSES);
    write_model(root, "plain", 8, |_| {});
    let metrics = Arc::new(Metrics::new());
    let (reg, _) = Loader::new(&runtime().env, options(), metrics.clone()).load_all(root, None).unwrap();
    AppState::new(Arc::new(Live::new(reg)), metrics)
}

/// `uri`'s status and JSON body (a refusal).
macro_rules! refused {
    ($app:expr, $uri:expr) => {{
        let res = test::call_service($app, test::TestRequest::get().uri($uri).to_request()).await;
        let status = res.status().as_u16();
        let body: Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
        (status, body)
    }};
}

fn size_of(png: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(png).unwrap();
    (img.width(), img.height())
}

#[actix_web::test]
async fn a_class_by_name_or_index_or_the_seeds_own() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(state(root.path()));
    let (h, duck) = get!(&app, "/generate?model=birds&seed=42&class=duck");
    assert_eq!(hv(&h, "x-class"), "duck");
    let (_, by_index) = get!(&app, "/generate?model=birds&seed=42&class=0");
    assert_eq!(duck, by_index, "class=0 is duck");
    let (_, goose) = get!(&app, "/generate?model=birds&seed=42&class=goose");
    assert_ne!(duck, goose, "the class changes the picture");
    // Without class=: the seed's own, documented and the same in every request.
    let own = CLASSES[class_of_seed(42, 3)];
    let (h, drawn) = get!(&app, "/generate?model=birds&seed=42");
    assert_eq!(hv(&h, "x-class"), own);
    assert_eq!(drawn, get!(&app, &format!("/generate?model=birds&seed=42&class={own}")).1);
    // The class is in the ETag.
    let tag = |c: &str| format!("/generate?model=birds&seed=42&class={c}");
    assert_ne!(hv(&get!(&app, &tag("duck")).0, "etag"), hv(&get!(&app, &tag("goose")).0, "etag"));
    assert_eq!(hv(&get!(&app, &tag("duck")).0, "etag"), hv(&get!(&app, &tag("0")).0, "etag"));
}

#[actix_web::test]
async fn unknown_classes_are_refused_with_the_models_list() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(state(root.path()));
    for uri in ["/generate?model=birds&seed=1&class=heron", "/generate?model=birds&seed=1&class=3"] {
        let (status, body) = refused!(&app, uri);
        assert_eq!(status, 400, "{uri}");
        assert_eq!(body["classes"], serde_json::json!(CLASSES), "{uri}: {body}");
        assert!(body["error"].as_str().unwrap().contains("duck, goose, swan"), "{body}");
    }
    let (status, body) = refused!(&app, "/generate?model=plain&seed=1&class=duck");
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("has no classes"), "{body}");
    let (status, body) = refused!(&app, "/generate?model=plain&n=2&class=all");
    assert_eq!(status, 400, "{body}");
    // latent= names no seed to draw a class from.
    let z = encode_latent(&latent(5, 8)).replace('+', "%2B");
    let (status, body) = refused!(&app, &format!("/generate?model=birds&latent={z}"));
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("needs class="), "{body}");
    let (_, by_latent) = get!(&app, &format!("/generate?model=birds&latent={z}&class=swan"));
    assert_eq!(by_latent, get!(&app, "/generate?model=birds&seed=5&class=swan").1);
}

#[actix_web::test]
async fn class_all_is_a_row_per_class() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(state(root.path()));
    let (h, grid) = get!(&app, "/generate?model=birds&seed=10&n=4&class=all");
    let rows = ["duck", "goose", "swan"].map(|c| [c; 4].join(",")).join(",");
    assert_eq!(hv(&h, "x-class"), rows, "each picture's class, row by row");
    let (h, _) = get!(&app, "/generate?model=birds&seeds=1,2,3");
    let own: Vec<&str> = [1, 2, 3].iter().map(|&s| CLASSES[class_of_seed(s, 3)]).collect();
    assert_eq!(hv(&h, "x-class"), own.join(","), "each seed's own");
    let cell = SIZE as u32 + 2;
    assert_eq!(size_of(&grid), (4 * cell + 2, 3 * cell + 2), "4 columns, 3 rows");
    let rows = image::load_from_memory(&grid).unwrap().to_rgb8();
    // Row 2 (swan), column 1 (seed 11) is seed 11's swan.
    let (_, swan) = get!(&app, "/generate?model=birds&seed=11&class=swan");
    let swan = image::load_from_memory(&swan).unwrap().to_rgb8();
    let at = |x: u32, y: u32| rows.get_pixel(2 + cell + x, 2 + 2 * cell + y).0;
    assert!((0..SIZE as u32).all(|y| (0..SIZE as u32).all(|x| at(x, y) == swan.get_pixel(x, y).0)));
    let (status, body) = refused!(&app, "/generate?model=birds&seed=1&class=all");
    assert_eq!(status, 400, "{body}");
}

#[actix_web::test]
async fn walks_within_a_class_and_from_one_to_another() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(state(root.path()));
    let (_, within) = get!(&app, "/interpolate?model=birds&from=1&to=2&steps=4&class=goose");
    let (_, between) = get!(&app, "/interpolate?model=birds&from=1&to=2&steps=4&from_class=goose&to_class=duck");
    assert_ne!(within, between);
    let strip = |png: &[u8]| image::load_from_memory(png).unwrap().to_rgb8();
    let (within, between) = (strip(&within), strip(&between));
    let cell = SIZE as u32 + 2;
    let picture = |img: &image::RgbImage, k: u32| -> Vec<[u8; 3]> {
        (0..SIZE as u32)
            .flat_map(|y| (0..SIZE as u32).map(move |x| (x, y)))
            .map(|(x, y)| img.get_pixel(2 + k * cell + x, 2 + y).0)
            .collect()
    };
    assert_eq!(picture(&within, 0), picture(&between, 0), "both start as goose");
    assert_ne!(picture(&within, 3), picture(&between, 3), "one ends as duck");
    let (_, duck_end) = get!(&app, "/generate?model=birds&seed=2&class=duck");
    let duck_end = image::load_from_memory(&duck_end).unwrap().to_rgb8();
    let want: Vec<[u8; 3]> = duck_end.pixels().map(|p| p.0).collect();
    assert_eq!(picture(&between, 3), want, "the walk ends at seed 2's duck");
    let (status, body) = refused!(&app, "/interpolate?model=birds&from=1&to=2&to_class=heron");
    assert_eq!((status, body["classes"].as_array().map(Vec::len)), (400, Some(3)));
}

#[actix_web::test]
async fn the_models_classes_are_listed() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(state(root.path()));
    let (_, body) = get!(&app, "/models/birds");
    let m: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(m["format_version"], 2);
    let names: Vec<&str> = m["classes"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, CLASSES);
    assert_eq!(m["onnx"]["class_input"], "class");
    let (_, body) = get!(&app, "/openapi.json");
    let doc: Value = serde_json::from_slice(&body).unwrap();
    let params = doc["paths"]["/generate"]["get"]["parameters"].as_array().unwrap();
    let class = params.iter().find(|p| p["name"] == "class").unwrap();
    assert!(class["description"].as_str().unwrap().contains("birds: duck, goose, swan"), "{class}");
    let (_, body) = get!(&app, "/models/plain");
    let m: Value = serde_json::from_slice(&body).unwrap();
    assert!(m.get("classes").is_none() && m["format_version"] == 1, "{m}");
}
