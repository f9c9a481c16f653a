//! The engine against real ONNX Runtime: batching must not change pictures, and a
//! graph that does not match its manifest is refused at load.

mod support;

use canard_serve::engine::{Engine, LoadError};
use support::{options, runtime, tiny_onnx, write_model};

const IMAGE: usize = tiny_onnx::CHANNELS * tiny_onnx::SIZE * tiny_onnx::SIZE;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[tokio::test]
async fn a_seeds_image_does_not_depend_on_its_batch() {
    let Some(rt) = runtime() else { return };
    let root = tempfile::tempdir().unwrap();
    let dir = write_model(root.path(), "m", 8, |_| {});
    let engine = Engine::load(&rt.env, "m", &dir, options()).unwrap();

    let alone = engine.generate(vec![7]).await.unwrap();
    assert_eq!(alone.len(), IMAGE);
    let batch = engine.generate(vec![3, 7, 9]).await.unwrap();
    assert_eq!(batch.len(), 3 * IMAGE);
    assert_eq!(bits(&alone), bits(&batch[IMAGE..2 * IMAGE]), "seed 7 alone and in [3, 7, 9]");

    // Concurrent single requests are batched by the inference thread; each must
    // still get exactly its own picture.
    let seeds: Vec<u64> = (0..40).collect();
    let together = futures_join(&engine, &seeds).await;
    for (s, image) in seeds.iter().zip(together) {
        let single = engine.generate(vec![*s]).await.unwrap();
        assert_eq!(bits(&image), bits(&single), "seed {s}");
    }
    assert_ne!(bits(&batch[..IMAGE]), bits(&alone), "different seeds give different pictures");
}

/// All requests queued before any answer is awaited, as concurrent clients would.
async fn futures_join(engine: &Engine, seeds: &[u64]) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    let futs: Vec<_> = seeds.iter().map(|&s| Box::pin(engine.generate(vec![s]))).collect();
    // The first poll of each future sends its job; awaiting in order then collects.
    let mut futs = futs;
    for f in futs.iter_mut() {
        let waker = std::task::Waker::noop();
        let _ = f.as_mut().poll(&mut std::task::Context::from_waker(waker));
    }
    for f in futs {
        out.push(f.await.unwrap());
    }
    out
}

#[tokio::test]
async fn graphs_that_contradict_the_manifest_are_refused() {
    let Some(rt) = runtime() else { return };
    let root = tempfile::tempdir().unwrap();

    let dir = write_model(root.path(), "dim", 8, |m| m.latent.dim = 9);
    let err = Engine::load(&rt.env, "dim", &dir, options()).err().unwrap();
    assert!(matches!(err, LoadError::Graph { .. }), "{err}");
    assert!(err.to_string().contains("\"z\" has shape"), "{err}");

    let dir = write_model(root.path(), "size", 8, |m| m.image_size = 16);
    let err = Engine::load(&rt.env, "size", &dir, options()).err().unwrap();
    assert!(err.to_string().contains("\"image\" has shape"), "{err}");

    let dir = write_model(root.path(), "name", 8, |m| m.onnx.input = "latent".into());
    let err = Engine::load(&rt.env, "name", &dir, options()).err().unwrap().to_string();
    assert!(err.contains("\"latent\"") && err.contains("\"z\"") && err.contains("generator.onnx"), "{err}");

    let dir = write_model(root.path(), "garbage", 8, |_| {});
    let junk = b"not onnx at all";
    std::fs::write(dir.join("generator.onnx"), junk).unwrap();
    let m = support::manifest("garbage", 8, junk);
    std::fs::write(dir.join("model.json"), m.to_json()).unwrap();
    let err = Engine::load(&rt.env, "garbage", &dir, options()).err().unwrap();
    assert!(matches!(err, LoadError::Session { .. }), "{err}");
}
