//! Everything around the pictures: caching (ETag, 304, Cache-Control), CORS,
//! /models, /readyz, /metrics, the gallery page and the OpenAPI document.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use actix_web::http::{header as h, StatusCode};
use actix_web::test;
use canard_serve::app::{self, AppState, CorsOrigins};
use canard_serve::caching;
use canard_serve::live::Live;
use canard_serve::metrics::Metrics;
use canard_serve::query::{GENERATE_PARAMS, INTERPOLATE_PARAMS};
use canard_serve::registry::Loader;
use canard_serve::routes::ROUTES;
use serde_json::Value;
use support::{header, hv, options, runtime, two_models, write_model};

/// Two models whose engines report to the state's own metrics.
fn observed(root: &std::path::Path) -> actix_web::web::Data<AppState> {
    write_model(root, "demo", 8, |_| {});
    write_model(root, "other", 4, |_| {});
    let metrics = Arc::new(Metrics::new());
    let (reg, _) = Loader::new(&runtime().env, options(), metrics.clone()).load_all(root, None).unwrap();
    AppState::new(Arc::new(Live::new(reg)), metrics)
}

/// The value of a sample in the metrics text, e.g. `canard_images_generated_total{model="demo"}`.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[actix_web::test]
async fn explicit_seeds_are_cacheable_and_if_none_match_costs_no_inference() {
    let root = tempfile::tempdir().unwrap();
    let state = observed(root.path());
    let app = app!(state.clone());
    let images = |s: &AppState| s.metrics.images.with_label_values(&["demo"]).get();

    let (headers, body) = get!(&app, "/generate?seed=9");
    let etag = hv(&headers, "etag");
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
    // The tag also names how the picture was computed (provider, ONNX Runtime, CPU).
    let engine = state.live.snapshot().get(Some("demo")).unwrap().clone();
    assert!(engine.compute().runtime.contains("ORT Build Info"), "{:?}", engine.compute());
    let key = "generate seeds=9 truncation=1 format=png size=8";
    assert_eq!(etag, caching::entity_tag(engine.manifest(), engine.compute(), key).to_string());
    assert_eq!(hv(&headers, "cache-control"), "public, max-age=31536000, immutable");
    let generated = images(&state);

    for tag in [etag.clone(), format!("\"other\", W/{etag}"), "*".into()] {
        let req = test::TestRequest::get().uri("/generate?seed=9").insert_header((h::IF_NONE_MATCH, tag)).to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&res, "etag"), etag);
        assert_eq!(header(&res, "cache-control"), "public, max-age=31536000, immutable");
        assert!(test::read_body(res).await.is_empty());
    }
    assert_eq!(images(&state), generated, "a 304 runs no inference");

    let req =
        test::TestRequest::get().uri("/generate?seed=9").insert_header((h::IF_NONE_MATCH, "\"stale\"")).to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(test::read_body(res).await.to_vec(), body);

    // Tags follow the normalised parameters.
    let tag = |uri: &'static str| {
        let app = &app;
        async move { hv(&get!(app, uri).0, "etag") }
    };
    assert_eq!(tag("/generate?seed=9&size=8&format=png&truncation=1.0").await, etag);
    assert_eq!(tag("/generate?seeds=9&model=demo").await, etag);
    for other in [
        "/generate?seed=10",
        "/generate?seed=9&format=webp",
        "/generate?seed=9&size=16",
        "/generate?seed=9&truncation=0.5",
        "/generate?seed=9&model=other",
        "/generate?seed=9&n=2",
    ] {
        assert_ne!(tag(other).await, etag, "{other}");
    }
    let (h1, _) = get!(&app, "/interpolate?from=1&to=2");
    assert!(!hv(&h1, "etag").is_empty());
    assert_eq!(hv(&h1, "cache-control"), "public, max-age=31536000, immutable");
    assert_ne!(hv(&h1, "etag"), hv(&get!(&app, "/interpolate?from=1&to=2&steps=3").0, "etag"));

    // HEAD answers the same headers, without a body.
    let head = test::TestRequest::default().method(actix_web::http::Method::HEAD).uri("/generate?seed=9").to_request();
    let res = test::call_service(&app, head).await;
    assert_eq!((res.status(), header(&res, "etag")), (StatusCode::OK, etag.clone()));
    assert_eq!(header(&res, "content-type"), "image/png");

    // Random pictures are never cached and carry no tag.
    for uri in ["/generate", "/generate?n=3"] {
        let (headers, _) = get!(&app, uri);
        assert_eq!(hv(&headers, "cache-control"), "no-store", "{uri}");
        assert!(hv(&headers, "etag").is_empty(), "{uri}");
    }
}

#[actix_web::test]
async fn cors_is_open_by_default_and_configurable() {
    let root = tempfile::tempdir().unwrap();
    let state = AppState::fixed(two_models(root.path()));
    let app = app!(state.clone());
    let with_origin = |uri: &str, origin: &str| {
        test::TestRequest::get().uri(uri).insert_header((h::ORIGIN, origin.to_string())).to_request()
    };
    for uri in ["/generate?seed=1", "/models", "/generate?seed=abc"] {
        let res = test::call_service(&app, with_origin(uri, "https://gallery.example")).await;
        assert_eq!(header(&res, "access-control-allow-origin"), "*", "{uri}");
        let exposed = header(&res, "access-control-expose-headers").to_lowercase();
        for name in ["etag", "x-seed", "x-model", "x-class"] {
            assert!(exposed.contains(name), "{uri}: {exposed}");
        }
    }
    let preflight = test::TestRequest::default()
        .method(actix_web::http::Method::OPTIONS)
        .uri("/generate?seed=1")
        .insert_header((h::ORIGIN, "https://gallery.example"))
        .insert_header((h::ACCESS_CONTROL_REQUEST_METHOD, "GET"))
        .insert_header((h::ACCESS_CONTROL_REQUEST_HEADERS, "if-none-match"))
        .to_request();
    let res = test::call_service(&app, preflight).await;
    assert!(res.status().is_success(), "{}", res.status());
    assert_eq!(header(&res, "access-control-allow-origin"), "*");
    assert!(header(&res, "access-control-allow-methods").contains("GET"));

    let only = CorsOrigins::Only(vec!["https://a.example".into()]);
    let app = test::init_service(app::build(state.clone(), &only)).await;
    let res = test::call_service(&app, with_origin("/models", "https://a.example")).await;
    assert_eq!(header(&res, "access-control-allow-origin"), "https://a.example");
    let res = test::call_service(&app, with_origin("/models", "https://b.example")).await;
    assert_eq!(res.status(), StatusCode::OK, "a foreign origin is not blocked server-side (curl works)");
    assert_eq!(header(&res, "access-control-allow-origin"), "");

    let app = test::init_service(app::build(state, &CorsOrigins::Off)).await;
    let res = test::call_service(&app, with_origin("/models", "https://a.example")).await;
    assert_eq!(header(&res, "access-control-allow-origin"), "");
}

#[actix_web::test]
async fn models_list_manifests_and_readyz_is_ready() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(AppState::fixed(two_models(root.path())));
    let list: Value = serde_json::from_slice(&get!(&app, "/models").1).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.iter().map(|m| m["name"].as_str().unwrap()).collect::<Vec<_>>(), ["demo", "other"]);
    assert_eq!(list[1]["latent"]["dim"], 4);
    assert_eq!(list[0]["onnx"]["sha256"].as_str().unwrap().len(), 64);
    let one: Value = serde_json::from_slice(&get!(&app, "/models/other").1).unwrap();
    assert_eq!(one, list[1]);
    let manifest: canard_shared::Manifest = serde_json::from_value(one).unwrap();
    assert_eq!(manifest.image_size, support::SIZE as u32);

    let (headers, body) = get!(&app, "/readyz");
    assert_eq!(hv(&headers, "content-type"), "application/json");
    let ready: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ready, serde_json::json!({"status": "ready", "models": ["demo", "other"]}));
}

/// The trainer records where the pictures were (`/home/...`); the server shows only
/// the folder's name. An upper-case SHA-256 in model.json is the same hash.
#[actix_web::test]
async fn manifests_hide_the_dataset_path_and_take_upper_case_hashes() {
    let root = tempfile::tempdir().unwrap();
    write_model(root.path(), "demo", 8, |m| {
        m.training.dataset = "/home/someone/private/photos".into();
        m.onnx.sha256.make_ascii_uppercase();
    });
    write_model(root.path(), "other", 4, |m| m.training.dataset = "builtin:shapes".into());
    let (reg, skipped) =
        Loader::new(&runtime().env, options(), Arc::new(Metrics::new())).load_all(root.path(), None).unwrap();
    assert!(skipped.is_empty(), "{:?}", skipped.iter().map(|s| s.error.to_string()).collect::<Vec<_>>());
    let app = app!(AppState::fixed(reg));
    let list: Value = serde_json::from_slice(&get!(&app, "/models").1).unwrap();
    let one: Value = serde_json::from_slice(&get!(&app, "/models/demo").1).unwrap();
    for demo in [&list[0], &one] {
        assert_eq!(demo["training"]["dataset"], "photos", "{demo}");
    }
    assert_eq!(list[1]["training"]["dataset"], "builtin:shapes");
    assert!(!String::from_utf8(get!(&app, "/models").1).unwrap().contains("someone"));
    get!(&app, "/generate?seed=1&model=demo");
}

#[actix_web::test]
async fn metrics_count_requests_batches_images_and_show_queues_and_provider() {
    let root = tempfile::tempdir().unwrap();
    let state = observed(root.path());
    let app = app!(state);
    for uri in ["/generate?seed=1", "/generate?seeds=1-3", "/interpolate?from=1&to=2&steps=4"] {
        get!(&app, uri);
    }
    for uri in ["/generate?seed=x", "/nowhere"] {
        test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
    }
    let (headers, text) = get!(&app, "/metrics");
    assert!(hv(&headers, "content-type").starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(text).unwrap();
    let s = |name: &str| sample(&text, name);
    assert_eq!(s(r#"canard_http_requests_total{route="/generate",status="200"}"#), 2.0, "{text}");
    assert_eq!(s(r#"canard_http_requests_total{route="/generate",status="400"}"#), 1.0);
    assert_eq!(s(r#"canard_http_requests_total{route="/interpolate",status="200"}"#), 1.0);
    assert_eq!(s(r#"canard_http_requests_total{route="unmatched",status="404"}"#), 1.0);
    assert_eq!(s(r#"canard_http_request_duration_seconds_count{route="/generate"}"#), 3.0);
    assert!(text.contains(r#"canard_http_request_duration_seconds_bucket{route="/generate",le="+Inf"} 3"#));
    assert_eq!(s(r#"canard_images_generated_total{model="demo"}"#), 1.0 + 3.0 + 4.0);
    assert_eq!(s(r#"canard_batch_size_sum{model="demo"}"#), 8.0);
    assert_eq!(s(r#"canard_batch_size_count{model="demo"}"#), 3.0);
    assert_eq!(s(r#"canard_queue_depth{model="demo"}"#), 0.0);
    assert!(text.contains(r#"canard_queue_depth{model="other"} 0"#));
    assert_eq!(s(r#"canard_execution_provider{model="demo",provider="CPUExecutionProvider"}"#), 1.0);
    assert_eq!(s("canard_models_loaded"), 2.0);
    // The scrape itself is counted on the next one.
    let text = String::from_utf8(get!(&app, "/metrics").1).unwrap();
    assert_eq!(sample(&text, r#"canard_http_requests_total{route="/metrics",status="200"}"#), 1.0);
}

#[actix_web::test]
async fn the_gallery_page_is_served_at_the_root() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(AppState::fixed(two_models(root.path())));
    let (headers, body) = get!(&app, "/");
    assert_eq!(hv(&headers, "content-type"), "text/html; charset=utf-8");
    let html = String::from_utf8(body).unwrap();
    assert!(html.to_lowercase().starts_with("<!doctype html>") && html.contains("canard"), "{}", &html[..80]);
    // The page's own query string (?start=&model=) is the page's business.
    get!(&app, "/?start=5&model=demo");
}

#[actix_web::test]
async fn the_openapi_document_matches_the_router() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(AppState::fixed(two_models(root.path())));
    let doc: Value = serde_json::from_slice(&get!(&app, "/openapi.json").1).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let routed: BTreeSet<&str> = ROUTES.iter().map(|(p, _)| *p).collect();
    assert_eq!(documented, routed, "every route is documented and every documented path is routed");
    for (path, item) in paths {
        let ops: Vec<&String> = item.as_object().unwrap().keys().filter(|k| *k != "parameters").collect();
        assert_eq!(ops, ["get"], "{path}: GET only, as routed");
        // Each documented path answers over HTTP (a real model name in the template).
        let uri = path.replace("{name}", "demo");
        let uri = match path.as_str() {
            "/interpolate" => "/interpolate?from=1&to=2".to_string(),
            _ => uri,
        };
        let res = test::call_service(&app, test::TestRequest::get().uri(&uri).to_request()).await;
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
    }
    // The documented query parameters are exactly what the parsers accept.
    let names = |path: &str| -> BTreeSet<String> {
        paths[path]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect()
    };
    let set = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(names("/generate"), set(GENERATE_PARAMS));
    assert_eq!(names("/interpolate"), set(INTERPOLATE_PARAMS));
    // And nothing undocumented is routed: a path outside the table is a JSON 404.
    let res = test::call_service(&app, test::TestRequest::get().uri("/openapi.yaml").to_request()).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}
