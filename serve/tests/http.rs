//! The HTTP surface, in process: status codes, headers, JSON errors, determinism.

mod support;

use actix_web::http::StatusCode;
use actix_web::{test, web, App};
use canard_serve::registry::Registry;
use canard_serve::routes;
use serde_json::Value;
use support::{options, runtime, write_model, CHANNELS, SIZE};

macro_rules! app {
    ($reg:expr) => {
        test::init_service(
            App::new()
                .app_data(web::Data::new($reg))
                .configure(routes::configure)
                .default_service(web::to(routes::not_found)),
        )
        .await
    };
}

fn header(res: &actix_web::dev::ServiceResponse, name: &str) -> String {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

fn registry(root: &std::path::Path) -> Registry {
    let rt = runtime();
    write_model(root, "demo", 8, |_| {});
    write_model(root, "other", 4, |_| {});
    Registry::load(&rt.env, root, None, options()).unwrap().0
}

#[actix_web::test]
async fn generate_returns_the_same_png_for_the_same_seed() {
    let root = tempfile::tempdir().unwrap();
    let reg = registry(root.path());
    let app = app!(reg);
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

#[actix_web::test]
async fn errors_are_json_with_the_right_status() {
    let root = tempfile::tempdir().unwrap();
    let reg = registry(root.path());
    let app = app!(reg);
    for (method, uri, status, needle) in [
        ("GET", "/generate?seed=abc", 400, r#"got \"abc\""#),
        ("GET", "/generate?seed=-1", 400, "from 0 to 18446744073709551615"),
        ("GET", "/generate?seed=99999999999999999999", 400, "99999999999999999999"),
        ("GET", "/generate?seed=1&seed=2", 400, "at most once"),
        ("GET", "/generate?size=3", 400, "allowed: seed, model"),
        ("GET", "/generate?seed=%zz", 400, "malformed"),
        ("GET", "/generate?model=nope", 404, r#"loaded: demo, other"#),
        ("GET", "/nothing", 404, "no route"),
        ("POST", "/generate", 405, "use GET"),
    ] {
        let req = test::TestRequest::default().method(method.parse().unwrap()).uri(uri).to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(res.status().as_u16(), status, "{uri}");
        assert_eq!(header(&res, "content-type"), "application/json", "{uri}");
        let body = test::read_body(res).await;
        let text = String::from_utf8_lossy(&body);
        let json: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{uri}: {e}: {text}"));
        assert!(json["error"].is_string() && text.contains(needle), "{uri}: {text}");
    }
}

#[actix_web::test]
async fn healthz_describes_the_default_model() {
    let root = tempfile::tempdir().unwrap();
    let reg = registry(root.path());
    let app = app!(reg);
    let json: Value = test::call_and_read_body_json(&app, test::TestRequest::get().uri("/healthz").to_request()).await;
    assert_eq!(
        json,
        serde_json::json!({
            "status": "ok", "model": "demo", "image_size": SIZE, "channels": CHANNELS, "latent_dim": 8,
            "execution_provider": "CPUExecutionProvider", "models": ["demo", "other"],
        })
    );
}
