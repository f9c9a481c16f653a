//! Under load: concurrent requests share ONNX Runtime runs, a full queue answers
//! 503 with Retry-After at once, and every client still gets its own picture.

mod support;

use std::sync::Arc;
use std::time::Duration;

use actix_web::test;
use canard_serve::app::AppState;
use canard_serve::engine::EngineOptions;
use canard_serve::live::Live;
use canard_serve::metrics::Metrics;
use canard_serve::registry::Loader;
use futures_util::future::join_all;
use serde_json::Value;
use support::{header, options, runtime, write_model};

fn state(root: &std::path::Path, opts: EngineOptions) -> actix_web::web::Data<AppState> {
    write_model(root, "demo", 8, |_| {});
    let metrics = Arc::new(Metrics::new());
    let (reg, _) = Loader::new(&runtime().env, opts, metrics.clone()).load_all(root, None).unwrap();
    AppState::new(Arc::new(Live::new(reg)), metrics)
}

#[actix_web::test]
async fn concurrent_requests_are_batched_and_each_gets_its_own_picture() {
    let root = tempfile::tempdir().unwrap();
    // A generous wait so the gathering does not depend on this machine's speed.
    let opts = EngineOptions { max_batch: 64, max_wait: Duration::from_millis(200), ..options() };
    let state = state(root.path(), opts);
    let app = app!(state.clone());
    // A grid of 64 first keeps the model's thread busy while the 16 arrive, so they queue
    // whatever this machine's speed or load (one at a time, each would run alone: a lone
    // client never waits).
    let busy = "/generate?seed=100&n=64".to_string();
    let uris: Vec<String> = (0..16).map(|s| format!("/generate?seed={s}")).collect();
    let all = std::iter::once(&busy).chain(&uris);
    let responses = join_all(all.map(|u| test::call_service(&app, test::TestRequest::get().uri(u).to_request()))).await;
    let mut together = Vec::new();
    for res in responses {
        assert_eq!(res.status().as_u16(), 200);
        together.push(test::read_body(res).await.to_vec());
    }
    together.remove(0);
    let batches = state.metrics.batch_size.with_label_values(&["demo"]);
    assert_eq!(batches.get_sample_sum(), 80.0, "64 + 16 images in all");
    assert!(batches.get_sample_count() < 17, "{} runs for 17 concurrent requests", batches.get_sample_count());
    for (uri, body) in uris.iter().zip(together) {
        assert_eq!(get!(&app, uri).1, body, "{uri}: batched or alone, the same picture");
    }
}

#[actix_web::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let root = tempfile::tempdir().unwrap();
    let opts = EngineOptions { queue: 1, max_batch: 1, max_wait: Duration::ZERO, ..options() };
    let app = app!(state(root.path(), opts));
    // Grids of 64 at 8 px keep the thread busy while the others arrive.
    let uris: Vec<String> = (0..100).map(|s| format!("/generate?seed={s}&n=64")).collect();
    let responses =
        join_all(uris.iter().map(|u| test::call_service(&app, test::TestRequest::get().uri(u).to_request()))).await;
    let (mut ok, mut busy) = (0, 0);
    for res in responses {
        match res.status().as_u16() {
            200 => ok += 1,
            503 => {
                busy += 1;
                assert_eq!(header(&res, "retry-after"), "1");
                let json: Value = test::read_body_json(res).await;
                assert!(json["error"].as_str().unwrap().contains("try again"), "{json}");
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 1, "the queue still serves");
    assert!(busy > 0, "no request was refused ({ok} served)");
}
