//! Shared by the serve crate's integration tests: the ONNX Runtime environment
//! (one per process) and model folders exported on the fly by canard-train's real
//! exporter, so the tests load exactly the kind of file `canard-train` writes.
//!
//! The ONNX Runtime library is required: without it these tests fail (a test that
//! passes without the library could not fail). `make test` installs it first.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use canard_serve::engine::EngineOptions;
use canard_serve::ort_lib::{self, OrtRuntime};
use canard_shared::manifest::MANIFEST_FILE;
use canard_shared::Manifest;
use canard_train::model::DcganShape;
use canard_train::trainer::Gan;
use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Side length of every test model's pictures.
pub const SIZE: usize = 8;
/// Colour channels of every test model's pictures.
pub const CHANNELS: usize = 3;

pub fn runtime() -> &'static OrtRuntime {
    static RUNTIME: OnceLock<OrtRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| match ort_lib::load(None) {
        Ok(rt) => rt,
        Err(e) => panic!("{e}\nrun scripts/setup-ort.sh (or make setup)"),
    })
}

pub fn options() -> EngineOptions {
    EngineOptions { intra_threads: 2, max_batch: 64, queue: 256 }
}

/// Exports a freshly initialised DCGAN generator (latent size `dim`, [`SIZE`]²
/// pictures of [`CHANNELS`] channels) to `root/name/`, then lets `edit` change its
/// manifest to test refusals; the manifest is rewritten only when `edit` changed it.
/// Fresh BatchNorm statistics (mean 0, variance 1) leave the output varied.
pub fn write_model(root: &Path, name: &str, dim: usize, edit: impl FnOnce(&mut Manifest)) -> PathBuf {
    let shape = DcganShape { image_size: SIZE, channels: CHANNELS, nz: dim, ngf: 4, ndf: 4 };
    let mut rng = ChaCha8Rng::seed_from_u64(dim as u64);
    let gan = Gan::new(shape, &mut rng, &Device::Cpu).expect("initialise the test GAN");
    let (dir, manifest) =
        canard_train::export::export(&gan.g, root, name, "dcgan", Default::default()).expect("export the test model");
    let mut edited = manifest.clone();
    edit(&mut edited);
    if edited != manifest {
        write_manifest(&dir, &edited);
    }
    dir
}

/// The manifest in `dir`, as exported (it must still be valid).
pub fn read_manifest(dir: &Path) -> Manifest {
    Manifest::load(dir).expect("read the exported manifest")
}

/// Overwrites `dir/model.json`, valid or not.
pub fn write_manifest(dir: &Path, m: &Manifest) {
    std::fs::write(dir.join(MANIFEST_FILE), m.to_json()).expect("write manifest");
}
