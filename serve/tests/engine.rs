//! The engine against real ONNX Runtime: batching must not change pictures, and a
//! graph that does not match its manifest is refused at load.

mod support;

use std::future::Future;
use std::task::{Context, Poll, Waker};

use canard_serve::engine::{Engine, EngineError, EngineOptions, LoadError};
use canard_shared::manifest::sha256_hex;
use support::{options, read_manifest, runtime, write_manifest, write_model, CHANNELS, SIZE};

const IMAGE: usize = CHANNELS * SIZE * SIZE;

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The exported DCGAN graph is ConvTranspose, Relu and Tanh only: the batch reaches
/// the kernels as independent images (no Gemm with the batch as its M dimension, as
/// the old hand-written test graph had), so this checks ORT's ConvTranspose and the
/// engine's batching, splitting and ordering.
#[tokio::test]
async fn a_seeds_image_does_not_depend_on_its_batch() {
    let rt = runtime();
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
    let mut futs: Vec<_> = seeds.iter().map(|&s| Box::pin(engine.generate(vec![s]))).collect();
    // The first poll of each future sends its job (and may already finish it).
    let mut cx = Context::from_waker(Waker::noop());
    let first: Vec<_> = futs.iter_mut().map(|f| f.as_mut().poll(&mut cx)).collect();
    let mut out = Vec::new();
    for (f, polled) in futs.into_iter().zip(first) {
        let result = match polled {
            Poll::Ready(r) => r,
            Poll::Pending => f.await,
        };
        out.push(result.unwrap());
    }
    out
}

#[tokio::test]
async fn graphs_that_contradict_the_manifest_are_refused() {
    let rt = runtime();
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
    let mut m = read_manifest(&dir);
    m.onnx.sha256 = sha256_hex(junk);
    write_manifest(&dir, &m);
    let err = Engine::load(&rt.env, "garbage", &dir, options()).err().unwrap();
    assert!(matches!(err, LoadError::Session { .. }), "{err}");
}

#[tokio::test]
async fn a_full_queue_answers_busy_at_once() {
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let dir = write_model(root.path(), "m", 8, |_| {});
    let opts = EngineOptions { queue: 1, max_batch: 1, ..options() };
    let engine = Engine::load(&rt.env, "m", &dir, opts).unwrap();
    // Sending a job takes far less time than running one, so most of these find
    // the single queue slot taken.
    let mut futs: Vec<_> = (0..200).map(|s| Box::pin(engine.generate(vec![s]))).collect();
    let mut cx = Context::from_waker(Waker::noop());
    let busy = futs
        .iter_mut()
        .map(|f| f.as_mut().poll(&mut cx))
        .filter(|p| matches!(p, Poll::Ready(Err(EngineError::Busy { .. }))))
        .count();
    assert!(busy > 0, "no request was refused");
    let err = EngineError::Busy { model: "m".into(), capacity: 1 }.to_string();
    assert!(err.contains("try again"), "{err}");
}

/// A one-layer graph whose ConvTranspose pads exceed its kernel (so ONNX Runtime infers
/// a negative output dimension) and whose output declares no shape: ort 2.0.0-rc.15
/// panics on it in `commit_from_memory` ("infallible": "dim_values must be -1 (symbolic
/// dimension) or larger"). Found by fuzz/onnx_serve (fuzz/seeds/onnx_serve/crash-ort-negative-dim).
fn onnx_with_negative_output_dim() -> Vec<u8> {
    use canard_train::export::pb::{
        attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension::Value as Dim,
        tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
        OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
    };
    use prost::Message;
    let float = Some(DataType::Float as i32);
    let tensor = |name: &str, dims: Vec<i64>, n: usize| TensorProto {
        name: Some(name.into()),
        dims,
        data_type: float,
        float_data: vec![0.1; n],
        ..Default::default()
    };
    let ints = |name: &str, ints: Vec<i64>| AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints,
        ..Default::default()
    };
    let node = |op: &str, input: &[&str], output: &str, attribute| NodeProto {
        op_type: Some(op.into()),
        input: input.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute,
        ..Default::default()
    };
    let value = |name: &str, shape: Option<TensorShapeProto>| ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: float, shape })),
            ..Default::default()
        }),
        ..Default::default()
    };
    let z = [Dim::DimParam("N".into()), Dim::DimValue(4), Dim::DimValue(1), Dim::DimValue(1)];
    let z = TensorShapeProto { dim: z.map(|v| Dimension { value: Some(v), ..Default::default() }).into() };
    let pads = vec![ints("kernel_shape", vec![4, 4]), ints("strides", vec![1, 1]), ints("pads", vec![98, 0, 0, 0])];
    let graph = GraphProto {
        initializer: vec![tensor("w", vec![4, 1, 4, 4], 16 * 4), tensor("b", vec![1], 1)],
        node: vec![node("ConvTranspose", &["z", "w", "b"], "y", pads), node("Tanh", &["y"], "image", vec![])],
        input: vec![value("z", Some(z))],
        // A float tensor of unknown shape.
        output: vec![value("image", None)],
        ..Default::default()
    };
    ModelProto {
        ir_version: Some(8),
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { version: Some(17), ..Default::default() }],
        ..Default::default()
    }
    .encode_to_vec()
}

#[tokio::test]
async fn a_graph_that_makes_ort_panic_is_refused_not_a_crash() {
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    write_model(root.path(), "demo", 4, |_| {});
    let dir = write_model(root.path(), "bad", 4, |_| {});
    let onnx = onnx_with_negative_output_dim();
    std::fs::write(dir.join("generator.onnx"), &onnx).unwrap();
    let mut m = read_manifest(&dir);
    m.onnx.sha256 = sha256_hex(&onnx);
    write_manifest(&dir, &m);

    let err = Engine::load(&rt.env, "bad", &dir, options()).err().unwrap();
    assert!(matches!(err, LoadError::Session { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("generator.onnx") && msg.contains("dim_values must be -1"), "{msg}");

    // At start (and on hot reload) the broken folder is skipped; the others load.
    let (registry, skipped) = canard_serve::registry::Registry::load(&rt.env, root.path(), None, options()).unwrap();
    assert_eq!(registry.names(), ["demo"]);
    assert_eq!(skipped.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["bad"]);
}
