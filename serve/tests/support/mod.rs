//! Shared by the serve crate's integration tests: the ONNX Runtime environment
//! (one per process) and model folders exported on the fly by canard-train's real
//! exporter, so the tests load exactly the kind of file `canard-train` writes.
//!
//! The ONNX Runtime library is required: without it these tests fail (a test that
//! passes without the library could not fail). `make test` installs it first.

#![allow(dead_code)]

pub mod server;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use canard_serve::engine::EngineOptions;
use canard_serve::ort_lib::{self, OrtRuntime};
use canard_serve::registry::Registry;
use canard_shared::manifest::{Class, MANIFEST_FILE};
use canard_shared::Manifest;
use canard_train::config::Arch;
use canard_train::nn::Shape;
use canard_train::trainer::Gan;
use candle_core::{DType, Device};
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
    EngineOptions { intra_threads: 2, max_batch: 64, queue: 256, ..EngineOptions::default() }
}

/// The server's app over `state`, CORS open to all, as `canard-serve` runs it by default.
#[macro_export]
macro_rules! app {
    ($state:expr) => {
        actix_web::test::init_service(canard_serve::app::build($state, &canard_serve::app::CorsOrigins::Any)).await
    };
}

/// `demo` (latent 8) and `other` (latent 4) in `root`, loaded with no hot reload.
pub fn two_models(root: &Path) -> Registry {
    write_model(root, "demo", 8, |_| {});
    write_model(root, "other", 4, |_| {});
    Registry::load(&runtime().env, root, None, options()).expect("load the test models").0
}

/// `GET uri` on an app that must answer 200: its headers and body.
#[macro_export]
macro_rules! get {
    ($app:expr, $uri:expr) => {{
        let uri: &str = &$uri;
        let res = actix_web::test::call_service($app, actix_web::test::TestRequest::get().uri(uri).to_request()).await;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = actix_web::test::read_body(res).await.to_vec();
        assert_eq!(status, 200, "{uri}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
        (headers, body)
    }};
}

pub fn hv(headers: &actix_web::http::header::HeaderMap, name: &str) -> String {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

pub fn header<B>(res: &actix_web::dev::ServiceResponse<B>, name: &str) -> String {
    res.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// Exports a freshly initialised DCGAN generator (latent size `dim`, [`SIZE`]²
/// pictures of [`CHANNELS`] channels) to `root/name/`, then lets `edit` change its
/// manifest to test refusals; the manifest is rewritten only when `edit` changed it.
/// Fresh BatchNorm statistics (mean 0, variance 1) leave the output varied.
pub fn write_model(root: &Path, name: &str, dim: usize, edit: impl FnOnce(&mut Manifest)) -> PathBuf {
    let shape = Shape { image_size: SIZE, channels: CHANNELS, nz: dim, ngf: 4, ndf: 4, classes: 0 };
    let mut rng = ChaCha8Rng::seed_from_u64(dim as u64);
    let gan = Gan::new(Arch::Dcgan, shape, &mut rng, &Device::Cpu, DType::F32).expect("initialise the test GAN");
    let (dir, manifest) = canard_train::export::export(&gan.g, &shape, &[], root, name, "dcgan", Default::default())
        .expect("export the test model");
    let mut edited = manifest.clone();
    edit(&mut edited);
    if edited != manifest {
        write_manifest(&dir, &edited);
    }
    dir
}

/// Exports a freshly initialised conditional DCGAN generator of `classes` (latent 8,
/// [`SIZE`]² pictures) to `root/name/`.
pub fn write_conditional_model(root: &Path, name: &str, classes: &[&str]) -> PathBuf {
    let shape = Shape { image_size: SIZE, channels: CHANNELS, nz: 8, ngf: 4, ndf: 4, classes: classes.len() };
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let gan = Gan::new(Arch::Dcgan, shape, &mut rng, &Device::Cpu, DType::F32).expect("initialise the test GAN");
    let classes: Vec<Class> = classes.iter().map(|c| Class { name: c.to_string(), images: 10 }).collect();
    canard_train::export::export(&gan.g, &shape, &classes, root, name, "dcgan", Default::default())
        .expect("export the conditional test model")
        .0
}

/// The manifest in `dir`, as exported (it must still be valid).
pub fn read_manifest(dir: &Path) -> Manifest {
    Manifest::load(dir).expect("read the exported manifest")
}

/// Overwrites `dir/model.json`, valid or not.
pub fn write_manifest(dir: &Path, m: &Manifest) {
    std::fs::write(dir.join(MANIFEST_FILE), m.to_json()).expect("write manifest");
}
