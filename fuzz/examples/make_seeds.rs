//! Writes the generated part of the seed corpora, with canard-train's real exporter:
//! a tiny DCGAN generator (latent 4, 8×8 grey, ngf 2: about 2 KB of ONNX, where the
//! demo model is 1.4 MB) as `seeds/onnx_reader/tiny.onnx`, `seeds/onnx_serve/tiny.onnx`
//! and its manifest as `seeds/manifest/tiny.json`. Deterministic (seed 0, fixed
//! `exported_at`), so re-running it rewrites the same bytes.
//!
//! `cd fuzz && heavy cargo +nightly run --example make_seeds`

use std::path::Path;

use canard_shared::manifest::TrainingSummary;
use canard_train::export::{export, ONNX_FILE};
use canard_train::config::Arch;
use canard_train::nn::Shape;
use canard_train::trainer::Gan;
use candle_core::{DType, Device};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn main() -> anyhow::Result<()> {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let shape = Shape { image_size: 8, channels: 1, nz: 4, ngf: 2, ndf: 2, classes: 0 };
    let gan = Gan::new(Arch::Dcgan, shape, &mut ChaCha8Rng::seed_from_u64(0), &Device::Cpu, DType::F32)?;
    let tmp = tempfile::tempdir()?;
    let training = TrainingSummary { dataset: "builtin:shapes".into(), exported_at: 1, ..Default::default() };
    let (dir, _) = export(&gan.g, &shape, &[], tmp.path(), "tiny", "dcgan", training)?;
    let onnx = std::fs::read(dir.join(ONNX_FILE))?;
    for target in ["onnx_reader", "onnx_serve"] {
        std::fs::create_dir_all(seeds.join(target))?;
        std::fs::write(seeds.join(target).join("tiny.onnx"), &onnx)?;
    }
    std::fs::create_dir_all(seeds.join("manifest"))?;
    std::fs::copy(dir.join("model.json"), seeds.join("manifest/tiny.json"))?;
    println!("{} bytes of ONNX written to {}", onnx.len(), seeds.display());
    Ok(())
}
