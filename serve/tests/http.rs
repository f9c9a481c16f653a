//! The HTTP surface, in process: status codes, headers, JSON errors, limits,
//! determinism.

mod support;

use actix_web::http::StatusCode;
use actix_web::test;
use canard_serve::app::AppState;
use canard_serve::registry::Registry;
use serde_json::Value;
use support::{header, two_models, CHANNELS, SIZE};

#[actix_web::test]
async fn generate_returns_the_same_png_for_the_same_seed() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(AppState::fixed(two_models(root.path())));
    let mut bodies = Vec::new();
    for uri in ["/generate?seed=42", "/generate?seed=42", "/generate?seed=42&model=demo", "/generate?seed=43"] {
        let res = test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(res.status(), StatusCode::OK, "{uri}");
        assert_eq!(header(&res, "content-type"), "image/png");
        assert_eq!(header(&res, "x-model"), "demo");
        bodies.push((header(&res, "x-seed"), test::read_body(res).await));
    }
    assert_eq!(bodies[0].0, "42");
    assert!(bodies[0].1.starts_with(b"\x89PNG"));
    assert_eq!(bodies[0].1, bodies[1].1);
    assert_eq!(bodies[0].1, bodies[2].1);
    assert_ne!(bodies[0].1, bodies[3].1);

    let res = test::call_service(&app, test::TestRequest::get().uri("/generate?model=other").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "x-model"), "other");
    let seed: u64 = header(&res, "x-seed").parse().unwrap();
    let random = test::read_body(res).await;
    let uri = format!("/generate?model=other&seed={seed}");
    let again = test::call_and_read_body(&app, test::TestRequest::get().uri(&uri).to_request()).await;
    assert_eq!(random, again, "the reported random seed reproduces the picture");
}

/// `/generate?latent=` of `z`, its `+` escaped.
fn latent_of(z: &[f32]) -> String {
    format!("/generate?latent={}", canard_shared::latent::encode_latent(z).replace('+', "%2B"))
}

#[actix_web::test]
async fn a_latent_vector_gives_its_picture_and_starts_a_walk() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(AppState::fixed(two_models(root.path())));
    let body = |uri: String| {
        let app = &app;
        async move {
            let res = test::call_service(app, test::TestRequest::get().uri(&uri).to_request()).await;
            assert_eq!(res.status(), StatusCode::OK, "{uri}");
            test::read_body(res).await
        }
    };
    // Seed 42's own vector is seed 42's picture; an unescaped `+` (read as a space) is taken too.
    let z = canard_shared::latent::latent(42, 8);
    assert_eq!(body(latent_of(&z)).await, body("/generate?seed=42".into()).await);
    let text = canard_shared::latent::encode_latent(&z);
    assert_eq!(body(format!("/generate?latent={text}")).await, body("/generate?seed=42".into()).await);
    let walk = |from: &str| format!("/interpolate?{from}&to=9&steps=4");
    let from_latent = walk(&format!("latent={}", text.replace('+', "%2B")));
    assert_eq!(body(from_latent).await, body(walk("from=42")).await);
}

#[actix_web::test]
async fn errors_and_limits_are_json_with_the_right_status() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(AppState::fixed(two_models(root.path())));
    let long = format!("/generate?model={}", "x".repeat(9000));
    let long_path = format!("/models/{}", "x".repeat(60_000));
    let cases: &[(&str, &str, u16, &str)] = &[
        ("GET", "/generate?seed=abc", 400, r#"got \"abc\""#),
        ("GET", "/generate?seed=-1", 400, "from 0 to 18446744073709551615"),
        ("GET", "/generate?seed=99999999999999999999", 400, "99999999999999999999"),
        ("GET", "/generate?seed=1&seed=2", 400, "at most once"),
        ("GET", "/generate?sizes=3", 400, "allowed: seed, seeds, n, latent, class, model, format, size, truncation"),
        ("GET", "/generate?seed=%zz", 400, "malformed"),
        ("GET", "/generate?seed=%+5", 400, "bad percent-escape"),
        ("GET", "/generate?model=%-1", 400, "bad percent-escape"),
        ("GET", "/generate?n=65", 400, "n must be an integer from 1 to 64"),
        ("GET", "/generate?seeds=1-100", 400, "at most 64 per request"),
        ("GET", "/generate?seeds=0-18446744073709551615", 400, "at most 64 per request"),
        ("GET", "/generate?seed=1&seeds=2", 400, "either seed or seeds"),
        ("GET", "/generate?size=1025", 400, "size must be an integer from 1 to 1024"),
        ("GET", "/generate?n=64&size=1024", 400, "at most 16777216"),
        ("GET", "/generate?truncation=0", 400, "truncation must be"),
        ("GET", "/generate?truncation=1.5", 400, "truncation must be"),
        ("GET", "/generate?format=gif", 400, "png, jpeg, webp"),
        ("GET", &long, 400, "at most 8192"),
        ("GET", &latent_of(&[0.5; 7]), 400, "latent holds 28 bytes; this model's latent vectors are 8 f32 values"),
        ("GET", &latent_of(&[0.5, 0.5, 0.5, f32::NAN, 0.5, 0.5, 0.5, 0.5]), 400, "latent value 3 is NaN"),
        ("GET", "/generate?latent=!!!", 400, "latent is not base64"),
        ("GET", "/generate?latent=AAAA&seed=1", 400, "latent names one picture"),
        ("GET", "/interpolate?latent=AAAA&to=2", 400, "latent holds 3 bytes"),
        ("GET", &format!("/generate?latent={}", "A".repeat(9000)), 400, "at most 8192"),
        ("GET", "/interpolate?to=2", 400, "parameter from is required"),
        ("GET", "/interpolate?from=1&to=2&steps=65", 400, "steps must be an integer from 2 to 64"),
        ("GET", "/interpolate?from=1&to=2&steps=64&size=1024&format=gif", 400, "at most 16777216"),
        ("GET", "/interpolate?from=1&to=2&n=3", 400, r#"unknown parameter \"n\""#),
        ("GET", "/generate?model=nope", 404, r#"loaded: demo, other"#),
        ("GET", "/interpolate?from=1&to=2&model=nope", 404, "nope"),
        ("GET", "/models/nope", 404, "nope"),
        ("GET", "/nothing", 404, "no route"),
        ("POST", "/generate", 405, "use GET"),
        ("DELETE", "/models/demo", 405, "use GET"),
        ("DELETE", &long_path, 405, "use GET"),
        ("GET", &long_path, 404, "unknown model"),
    ];
    for (method, uri, status, needle) in cases {
        let req = test::TestRequest::default().method(method.parse().unwrap()).uri(uri).to_request();
        let res = test::call_service(&app, req).await;
        let shown = &uri[..uri.len().min(80)];
        assert_eq!(res.status().as_u16(), *status, "{shown}");
        assert_eq!(header(&res, "content-type"), "application/json", "{shown}");
        let body = test::read_body(res).await;
        let text = String::from_utf8_lossy(&body);
        let json: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{shown}: {e}: {text}"));
        assert!(json["error"].is_string() && text.contains(needle), "{shown}: {text}");
        assert!(text.len() < 1000, "{shown}: the message stays short: {text}");
    }
}

#[actix_web::test]
async fn healthz_describes_the_default_model() {
    let root = tempfile::tempdir().unwrap();
    let app = app!(AppState::fixed(two_models(root.path())));
    let json: Value = test::call_and_read_body_json(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(
        json,
        serde_json::json!({
            "status": "ok", "model": "demo", "image_size": SIZE, "channels": CHANNELS, "latent_dim": 8,
            "execution_provider": "CPUExecutionProvider", "models": ["demo", "other"],
            "execution_providers": {"demo": "CPUExecutionProvider", "other": "CPUExecutionProvider"},
        })
    );
}

#[actix_web::test]
async fn without_models_liveness_holds_but_readiness_and_pictures_are_503() {
    let app = app!(AppState::fixed(Registry::default()));
    let res = test::call_service(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let json: Value = test::read_body_json(res).await;
    assert_eq!((json["model"].clone(), json["models"].clone()), (Value::Null, serde_json::json!([])));
    assert_eq!(
        (json["execution_provider"].clone(), json["execution_providers"].clone()),
        (Value::Null, serde_json::json!({}))
    );
    for uri in ["/readyz", "/generate?seed=1", "/interpolate?from=1&to=2"] {
        let res = test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        let json: Value = test::read_body_json(res).await;
        assert!(json["error"].as_str().unwrap().contains("no model"), "{uri}: {json}");
    }
}
