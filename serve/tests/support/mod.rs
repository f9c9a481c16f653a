//! Shared by the serve crate's integration tests: the ONNX Runtime environment
//! (one per process) and model folders written on the fly.
//!
//! Without the ONNX Runtime library these tests skip with a message, so the
//! workspace still tests on a machine where `scripts/setup-ort.sh` was not run;
//! `CANARD_REQUIRE_ORT=1` turns the skip into a failure (for CI).

#![allow(dead_code)]

pub mod tiny_onnx;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use canard_serve::engine::EngineOptions;
use canard_serve::ort_lib::{self, OrtRuntime};
use canard_shared::manifest::{sha256_hex, LatentSpec, OnnxSpec, TrainingSummary, FORMAT_VERSION};
use canard_shared::{latent, Manifest};

pub fn runtime() -> Option<&'static OrtRuntime> {
    static RUNTIME: OnceLock<Option<OrtRuntime>> = OnceLock::new();
    let loaded = RUNTIME.get_or_init(|| match ort_lib::load(None) {
        Ok(rt) => Some(rt),
        Err(e) if std::env::var_os("CANARD_REQUIRE_ORT").is_some() => panic!("{e}"),
        Err(e) => {
            eprintln!("SKIPPED: ONNX Runtime is not available ({e})");
            None
        }
    });
    loaded.as_ref()
}

pub fn options() -> EngineOptions {
    EngineOptions { intra_threads: 2, max_batch: 64, queue: 256 }
}

pub fn manifest(name: &str, dim: usize, onnx: &[u8]) -> Manifest {
    Manifest {
        format_version: FORMAT_VERSION,
        name: name.into(),
        arch: "test".into(),
        image_size: tiny_onnx::SIZE as u32,
        channels: tiny_onnx::CHANNELS as u32,
        latent: LatentSpec { dim, distribution: latent::DISTRIBUTION.into(), algorithm: latent::ALGORITHM.into() },
        onnx: OnnxSpec {
            file: "generator.onnx".into(),
            sha256: sha256_hex(onnx),
            opset: 17,
            input: "z".into(),
            output: "image".into(),
        },
        output_range: [-1.0, 1.0],
        training: TrainingSummary::default(),
    }
}

/// `root/name/` with a generator of latent size `dim` and its manifest; `edit`
/// may spoil the manifest to test refusals.
pub fn write_model(root: &Path, name: &str, dim: usize, edit: impl FnOnce(&mut Manifest)) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("create model folder");
    let onnx = tiny_onnx::generator(dim, 1);
    let mut m = manifest(name, dim, &onnx);
    edit(&mut m);
    std::fs::write(dir.join("generator.onnx"), &onnx).expect("write onnx");
    std::fs::write(dir.join("model.json"), m.to_json()).expect("write manifest");
    dir
}
