//! Train on the built-in dataset → export → serve → HTTP, through the real binaries.

use std::process::Command;

use canard_e2e::{cargo_bin, serve, train_tiny};
use canard_shared::Manifest;

#[test]
fn trains_exports_and_serves_deterministic_images() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = train_tiny(dir.path(), "tiny");

    // What the trainer leaves behind.
    let run = dir.path().join("runs/tiny");
    for f in ["samples/step_000004.png", "real_samples.png", "losses.csv", "losses.png", "progress.gif", "config.toml"]
    {
        assert!(run.join(f).is_file(), "runs/tiny/{f} is missing");
    }
    assert!(run.join("checkpoints/step_00000004/tensors.safetensors").is_file(), "the final checkpoint is missing");
    let csv = std::fs::read_to_string(run.join("losses.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4, "header + one row per step:\n{csv}");
    assert!(csv.starts_with("step,epoch,loss_d,loss_g,d_real,d_fake,gp,seconds"), "{csv}");
    let grid = image::open(run.join("samples/step_000004.png")).unwrap();
    assert_eq!((grid.width(), grid.height()), (8 * 34 + 2, 8 * 34 + 2), "8×8 grid of 32 px tiles, 2 px apart");
    let manifest = Manifest::load(&model_dir).unwrap();
    assert_eq!((manifest.image_size, manifest.channels, manifest.latent.dim), (32, 3, 100));
    assert_eq!(manifest.training.steps, 4);
    assert!(manifest.training.ema, "the EMA generator is exported by default");
    let quality = manifest.training.quality.as_ref().expect("SWD measured at export");
    assert!(quality.swd.is_finite() && quality.swd > 0.0 && quality.images == 64, "{quality:?}");
    manifest.read_onnx(&model_dir).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&model_dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "only generator.onnx and model.json: {leftovers:?}");

    let models = dir.path().join("models");
    let server = serve(&models, &["--model", "tiny"]);

    let health = server.get("/healthz");
    assert_eq!(health.status, 200);
    let h = health.json();
    assert_eq!(h["model"], "tiny");
    assert_eq!(h["image_size"], 32);
    assert!(h["execution_provider"].as_str().unwrap().contains("CPU"), "{h}");

    let a = server.get("/generate?seed=7");
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.header("content-type"), Some("image/png"));
    assert_eq!(a.header("x-seed"), Some("7"));
    let b = server.get("/generate?seed=7");
    assert_eq!(a.body, b.body, "the same seed gives byte-identical PNGs");
    let img = image::load_from_memory(&a.body).unwrap();
    assert_eq!((img.width(), img.height()), (manifest.image_size, manifest.image_size));
    let c = server.get("/generate?seed=8");
    assert_eq!(c.status, 200);
    assert_ne!(a.body, c.body, "another seed gives another image");

    // No seed: a random one, reported, and reproducible through that seed.
    let r = server.get("/generate");
    assert_eq!(r.status, 200);
    let seed = r.header("x-seed").expect("X-Seed header").to_string();
    assert_eq!(server.get(&format!("/generate?seed={seed}")).body, r.body);

    for bad in ["seed=abc", "seed=-1", "seed=18446744073709551616", "seed=", "seed=1&seed=2", "sed=1"] {
        let r = server.get(&format!("/generate?{bad}"));
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"].as_str().is_some_and(|e| !e.is_empty()), "{bad}: JSON error");
    }
    let r = server.get("/generate?seed=1&model=nope");
    assert_eq!(r.status, 404);
    assert!(r.json()["error"].as_str().unwrap().contains("nope"));
}

#[test]
fn the_server_image_is_the_trainers_preview() {
    // The preview grid's first tile is seed 0: the server's seed 0 must be the same picture.
    let dir = tempfile::tempdir().unwrap();
    train_tiny(dir.path(), "preview");
    let grid = image::open(dir.path().join("runs/preview/samples/step_000004.png")).unwrap().to_rgb8();
    let server = serve(&dir.path().join("models"), &[]);
    let served = image::load_from_memory(&server.get("/generate?seed=0&model=preview").body).unwrap().to_rgb8();
    let mut max_diff = 0;
    for (x, y, p) in served.enumerate_pixels() {
        let q = grid.get_pixel(2 + x, 2 + y);
        for c in 0..3 {
            max_diff = max_diff.max((p[c] as i32 - q[c] as i32).abs());
        }
    }
    assert!(max_diff <= 1, "server image and trainer preview differ by up to {max_diff} levels");
}

#[test]
fn a_corrupt_model_is_refused_with_its_path_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    let model_dir = train_tiny(dir.path(), "broken");
    std::fs::write(model_dir.join("generator.onnx"), b"garbage").unwrap();
    let out = Command::new(cargo_bin("canard-serve", "canard-serve"))
        .args(["--models", dir.path().join("models").to_str().unwrap(), "--model", "broken", "--bind", "127.0.0.1:0"])
        .env("ORT_DYLIB_PATH", canard_e2e::ort_dylib())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("generator.onnx") && err.contains("SHA-256"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_missing_onnx_runtime_names_the_install_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(cargo_bin("canard-serve", "canard-serve"))
        .current_dir(dir.path())
        .args(["--models", canard_e2e::workspace_root().join("models").to_str().unwrap()])
        .env("ORT_DYLIB_PATH", dir.path().join("nowhere/libonnxruntime.so"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("setup-ort.sh") || err.contains("make setup"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// `canard-train eval` run from a folder of the user's own writes nothing there: no
/// `nearest.png` (it goes into the model's folder), no `runs/.cache/` for a folder `--data`;
/// and it refuses to write over the model or in another format.
#[test]
fn eval_writes_only_into_the_models_folder() {
    let dir = tempfile::tempdir().unwrap();
    let model = train_tiny(dir.path(), "tiny");
    let pictures = dir.path().join("pictures");
    std::fs::create_dir(&pictures).unwrap();
    for i in 0..8u8 {
        let img = image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([i * 30, (x * 8) as u8, (y * 8) as u8]));
        img.save(pictures.join(format!("p{i}.png"))).unwrap();
    }
    let here = tempfile::tempdir().unwrap();
    let eval = |extra: &[&str]| {
        Command::new(cargo_bin("canard-train", "canard-train"))
            .current_dir(here.path())
            .arg("eval")
            .arg("--model")
            .arg(&model)
            .arg("--data")
            .arg(&pictures)
            .args(["--images", "16"])
            .args(extra)
            .output()
            .expect("canard-train eval runs")
    };
    let before = std::fs::read(model.join("generator.onnx")).unwrap();
    let onnx = model.join("generator.onnx");
    for bad in [onnx.to_str().unwrap(), "x.jpg"] {
        let out = eval(&["--nearest", bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("ending in .png"), "--nearest {bad}: {err}");
    }
    assert_eq!(std::fs::read(&onnx).unwrap(), before, "the model is untouched");
    let out = eval(&[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(model.join("nearest.png").is_file());
    let left: Vec<_> = std::fs::read_dir(here.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "eval wrote into the current folder: {left:?}");
}
