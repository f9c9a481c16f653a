//! Export: the trained generator → `models/NAME/generator.onnx` + `model.json`.

pub mod onnx;
pub mod reader;

/// ONNX's protobuf messages, generated from `proto/onnx.proto` by `build.rs`.
#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/onnx.rs"));
}

use std::path::{Path, PathBuf};

use canard_shared::manifest::{
    Class, LatentSpec, Manifest, OnnxSpec, TrainingSummary, CONDITIONAL_FORMAT_VERSION, FORMAT_VERSION, MANIFEST_FILE,
};
use canard_shared::{latent, manifest::sha256_hex};

use crate::atomic::write_atomic;
use crate::nn::{Net, Shape};

pub const ONNX_FILE: &str = "generator.onnx";

/// Writes the ONNX file, then the manifest (each atomically; the manifest last, so a
/// manifest always describes a complete ONNX file). A conditional generator's `classes`
/// (one per class of its shape) make a format-2 manifest. Returns the model folder.
pub fn export(
    g: &Net,
    shape: &Shape,
    classes: &[Class],
    models_dir: &Path,
    name: &str,
    arch: &str,
    training: TrainingSummary,
) -> anyhow::Result<(PathBuf, Manifest)> {
    let dir = models_dir.join(name);
    let doc = format!("canard {arch} generator '{name}', trained on {}", training.dataset);
    if classes.len() != shape.classes {
        anyhow::bail!("internal error: {} class names for a generator of {} classes", classes.len(), shape.classes);
    }
    let bytes = onnx::generator_to_onnx(g, shape, &doc)?;
    let manifest = Manifest {
        format_version: if classes.is_empty() { FORMAT_VERSION } else { CONDITIONAL_FORMAT_VERSION },
        name: name.to_string(),
        arch: arch.to_string(),
        image_size: shape.image_size as u32,
        channels: shape.channels as u32,
        latent: LatentSpec {
            dim: shape.nz,
            distribution: latent::DISTRIBUTION.into(),
            algorithm: latent::ALGORITHM.into(),
        },
        onnx: OnnxSpec {
            file: ONNX_FILE.into(),
            sha256: sha256_hex(&bytes),
            opset: onnx::OPSET,
            input: onnx::INPUT.into(),
            output: onnx::OUTPUT.into(),
            class_input: (!classes.is_empty()).then(|| onnx::CLASS_INPUT.into()),
        },
        output_range: [-1.0, 1.0],
        training,
        classes: classes.to_vec(),
    };
    // Checked before anything is written: an export completes or leaves nothing.
    manifest.validate().map_err(|e| anyhow::anyhow!("internal error: exported manifest is invalid: {e}"))?;
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    write_atomic(&dir.join(ONNX_FILE), &bytes)?;
    write_atomic(&dir.join(MANIFEST_FILE), manifest.to_json().as_bytes())?;
    Ok((dir, manifest))
}
