//! Support for canard's end-to-end tests: the workspace's binaries, the ONNX Runtime
//! library, and a real server that stops with the test ([`server`], also the serve
//! crate's tests' helper).

pub mod server;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use server::Server;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// Builds `bin` of `package` (same profile as the tests) and returns its path. Cargo
/// releases its lock while tests run, so this works from inside `cargo test`.
pub fn cargo_bin(package: &str, bin: &str) -> PathBuf {
    let target = std::env::current_exe()
        .expect("test executable path")
        .parent() // deps/
        .and_then(Path::parent) // debug/ or release/
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    let release = target.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args(["build", "--quiet", "-p", package, "--bin", bin]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "cargo build -p {package} --bin {bin} failed");
    let path = target.join(bin);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Trains a tiny model (4 steps on the built-in shapes, 32 px) with the `canard-train`
/// binary into `dir/runs` and `dir/models`, and returns the model folder.
pub fn train_tiny(dir: &Path, name: &str) -> PathBuf {
    train_tiny_with(dir, name, &[])
}

/// [`train_tiny`] with more flags (`--classes subfolders`, say).
pub fn train_tiny_with(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = Command::new(cargo_bin("canard-train", "canard-train"))
        .args(["--data", "builtin:shapes", "--name", name, "--image-size", "32", "--steps", "4", "--batch-size", "16"])
        .args(["--ngf", "8", "--ndf", "8", "--seed", "3", "--eval-images", "64"])
        .args(extra)
        .arg("--runs-dir")
        .arg(dir.join("runs"))
        .arg("--models-dir")
        .arg(dir.join("models"))
        .output()
        .expect("canard-train runs");
    assert!(out.status.success(), "canard-train failed:\n{}", String::from_utf8_lossy(&out.stderr));
    dir.join("models").join(name)
}

/// The ONNX Runtime library: `ORT_DYLIB_PATH`, or the one `scripts/setup-ort.sh` installs.
pub fn ort_dylib() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let p = workspace_root().join(".deps/onnxruntime/libonnxruntime.so");
    assert!(p.exists(), "ONNX Runtime is not installed: run scripts/setup-ort.sh (or `make setup`) first");
    p
}

/// Initialises ONNX Runtime in this process once, from [`ort_dylib`].
pub fn ort_environment() -> ort::environment::Environment {
    static ENV: std::sync::OnceLock<ort::environment::Environment> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        ort::init_from(ort_dylib())
            .expect("ONNX Runtime loads")
            .with_name("canard-tests")
            .build()
            .expect("environment builds")
    })
    .clone()
}

/// `canard-serve --models MODELS ARGS` on port 0 with [`ort_dylib`], started and listening
/// (built first, in the tests' profile); killed when the result is dropped.
pub fn serve(models: &Path, args: &[&str]) -> Server {
    Server::start(server::command(&cargo_bin("canard-serve", "canard-serve"), &ort_dylib(), models, args))
}
