//! ONNX Runtime's output for the exported generator equals candle's eval-mode forward.

use canard_e2e::ort_environment;
use canard_shared::latent::latent_batch;
use canard_train::config::Arch;
use canard_train::{report, train_with, Settings, Start};
use ort::session::Session;
use ort::value::TensorRef;

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn check(image_size: usize, channels: usize, arch: Arch) {
    check_with(image_size, channels, arch, false);
}

/// `by_class`: a model of builtin:shapes' five kinds, its class input fed beside z.
fn check_with(image_size: usize, channels: usize, arch: Arch, by_class: bool) {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        data: Some("builtin:shapes".into()),
        name: Some(format!("parity{image_size}")),
        arch: Some(arch),
        image_size: Some(image_size),
        channels: Some(channels),
        steps: Some(3),
        batch_size: Some(8),
        ngf: Some(8),
        ndf: Some(8),
        nz: Some(20),
        eval_images: Some(0),
        runs_dir: Some(dir.path().join("runs")),
        models_dir: Some(dir.path().join("models")),
        classes: by_class.then_some(canard_train::config::ClassSource::Subfolders),
        ..Settings::default()
    };
    let out = train_with(&settings, None, Start::Auto).unwrap();
    let nz = out.config.nz;
    // A few steps leave BatchNorm near its initial state; give every BN layer distinct,
    // non-trivial statistics and affine terms so the folding is really exercised.
    let norms = out.generator_params.iter().filter(|p| p.name.contains(".bn.") || p.name.starts_with("first_bn."));
    // Four tensors a layer (γ, β, running mean and variance); `i` counts layers.
    for (k, p) in norms.enumerate() {
        let (i, c) = (k / 4, p.var.dim(0).unwrap());
        let (a, b) = match p.name.rsplit('.').next() {
            Some("gamma") => (1.5, 0.8),
            Some("beta") => (0.1, 0.5),
            Some("running_mean") => (0.0, 0.05),
            _ => (0.02, 0.015),
        };
        let wave: Vec<f32> = (0..c).map(|k| a + b * ((k * 7 + i * 3) as f32).sin()).collect();
        p.var.set(&candle_core::Tensor::new(wave, p.var.device()).unwrap()).unwrap();
    }
    let onnx_dir = dir.path().join("reexport");
    let classes = canard_shared::Manifest::load(&out.model_dir).unwrap().classes;
    canard_train::export::export(
        &out.generator,
        &out.shape,
        &classes,
        &onnx_dir,
        "parity",
        &arch.name(),
        out.summary.clone(),
    )
    .unwrap();
    let out_dir = onnx_dir.join("parity");
    let manifest = canard_shared::Manifest::load(&out_dir).unwrap();
    let onnx = manifest.read_onnx(&out_dir).unwrap();

    let seeds: Vec<u64> = vec![0, 1, 7, 42, 1 << 40, u64::MAX];
    let of_seeds: Vec<u32> = match by_class {
        true => (0..seeds.len() as u32).map(|i| i % 5).collect(),
        false => Vec::new(),
    };
    let want = report::generate(&out.generator, nz, &seeds, &of_seeds, &candle_core::Device::Cpu).unwrap();
    let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();

    let mut session = Session::builder(&ort_environment()).unwrap().commit_from_memory(&onnx).unwrap();
    let z = ndarray::Array4::from_shape_vec((seeds.len(), nz, 1, 1), latent_batch(&seeds, nz)).unwrap();
    let z = TensorRef::from_array_view(&z).unwrap();
    let outputs = match by_class {
        true => {
            let c = ndarray::Array1::from_vec(of_seeds.iter().map(|&c| i64::from(c)).collect());
            session.run(ort::inputs!["z" => z, "class" => TensorRef::from_array_view(&c).unwrap()]).unwrap()
        }
        false => session.run(ort::inputs!["z" => z]).unwrap(),
    };
    let got = outputs["image"].try_extract_array::<f32>().unwrap();
    assert_eq!(got.shape(), &[seeds.len(), channels, image_size, image_size]);
    let got: Vec<f32> = got.iter().copied().collect();
    let diff = max_abs_diff(&got, &want);
    assert!(diff <= 1e-4, "{arch:?} {image_size}px/{channels}ch: ONNX Runtime and candle differ by {diff}");
    // The images are far from constant, so a 1e-4 agreement means something.
    let spread = got.iter().fold(f32::MIN, |m, &v| m.max(v)) - got.iter().fold(f32::MAX, |m, &v| m.min(v));
    assert!(spread > 0.1, "output spread {spread}");
}

#[test]
fn onnx_matches_candle_at_32_px_rgb() {
    check(32, 3, Arch::Dcgan);
}

#[test]
fn onnx_matches_candle_at_64_px_grey() {
    check(64, 1, Arch::Dcgan);
}

#[test]
fn onnx_matches_candle_at_128_px() {
    check(128, 3, Arch::Dcgan);
}

/// fastgan's graph: Resize, GLU as Split/Sigmoid/Mul, the excitation (pooled from 8×8 at
/// 64 px, not at 32 px) and 3×3 convolutions.
#[test]
fn fastgan_onnx_matches_candle_at_32_and_64_px() {
    check(32, 3, Arch::Fastgan);
    check(64, 1, Arch::Fastgan);
}

/// A model of classes: the embedding's Gather, Unsqueeze and Concat (DCGAN's and fastgan's
/// generators), fed int64 classes, as candle's forward with the same classes.
#[test]
fn conditional_onnx_matches_candle() {
    check_with(32, 3, Arch::Dcgan, true);
    check_with(32, 3, Arch::Fastgan, true);
}
