//! `generator.onnx` as arbitrary bytes through the server's model loading: a model
//! folder (the bytes, and a `model.json` that describes the seed model and carries
//! the bytes' SHA-256) loaded by `canard_serve::engine::Engine::load`, which builds
//! an ONNX Runtime session, checks the graph against the manifest and runs the test
//! inference, exactly as the server does at start and on hot reload.
//!
//! ONNX Runtime is C++ loaded at run time (`ORT_DYLIB_PATH`, else the repository's
//! `.deps/onnxruntime/libonnxruntime.so`): it is not instrumented, so libFuzzer is
//! guided by canard's side only, but any crash, abort or runaway allocation inside
//! it still ends this process and is reported.
//!
//! Asserts, beyond "never crashes" (a panic is a crash unless the loader itself
//! catches it and refuses the model):
//! - a refusal is a [`LoadError`] whose message names the model folder;
//! - an accepted model answers a batch of two seeds with exactly two images of the
//!   manifest's size (the inference thread runs after a load).
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use canard_serve::device::Device;
use canard_serve::engine::{Engine, EngineOptions};
use canard_serve::ort_lib::{self, OrtRuntime};
use canard_shared::latent;
use canard_shared::manifest::{sha256_hex, LatentSpec, Manifest, OnnxSpec, FORMAT_VERSION, MANIFEST_FILE};
use libfuzzer_sys::fuzz_target;

/// The seed model (`examples/make_seeds.rs`): latent 4, 8×8 grey.
const NZ: usize = 4;
const SIZE: u32 = 8;
const CHANNELS: u32 = 1;
const ONNX_FILE: &str = "generator.onnx";

fn runtime() -> &'static OrtRuntime {
    static RUNTIME: OnceLock<OrtRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        // libfuzzer-sys's panic hook aborts on every panic, even one the loader
        // catches (`Engine::load` turns ort's panics on malformed graphs into
        // errors). This one only reports it: a panic that escapes the target still
        // aborts, in libfuzzer-sys's own catch_unwind, and is reported as a crash.
        std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
        let path = std::env::var_os("ORT_DYLIB_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.deps/onnxruntime/libonnxruntime.so"));
        ort_lib::load(Some(&path)).unwrap_or_else(|e| panic!("{e}\n(run scripts/setup-ort.sh or set ORT_DYLIB_PATH)"))
    })
}

fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temporary folder")).path()
}

fn manifest(onnx: &[u8]) -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        name: "fuzz".into(),
        arch: "dcgan".into(),
        image_size: SIZE,
        channels: CHANNELS,
        latent: LatentSpec { dim: NZ, distribution: latent::DISTRIBUTION.into(), algorithm: latent::ALGORITHM.into() },
        onnx: OnnxSpec {
            file: ONNX_FILE.into(),
            sha256: sha256_hex(onnx),
            opset: 17,
            input: "z".into(),
            output: "image".into(),
            class_input: None,
        },
        output_range: [-1.0, 1.0],
        training: Default::default(),
        classes: Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    let env = &runtime().env;
    let dir = dir();
    std::fs::write(dir.join(ONNX_FILE), data).expect("write generator.onnx");
    std::fs::write(dir.join(MANIFEST_FILE), manifest(data).to_json()).expect("write model.json");
    let opts =
        EngineOptions { intra_threads: 1, max_batch: 4, max_wait: Duration::ZERO, queue: 4, device: Device::Cpu };
    let engine = match Engine::load(env, "fuzz", dir, opts) {
        Ok(engine) => engine,
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(&*dir.to_string_lossy()), "{message}");
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("tokio runtime");
    let values = rt
        .block_on(engine.generate(vec![1, 2]))
        .unwrap_or_else(|e| panic!("a model that passed its test inference fails on two seeds: {e}"));
    assert_eq!(values.len(), 2 * engine.image_spec().len());
});
