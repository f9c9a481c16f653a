//! The `canard-serve` cargo built for these tests, started as a real process with the
//! tests' ONNX Runtime library (the process and HTTP helpers are `canard_e2e::server`).

use std::path::{Path, PathBuf};
use std::process::Command;

// Each test binary uses some of these.
#[allow(unused_imports)]
pub use canard_e2e::server::{cut, parse, request, request_on, Refused, Response, Server};

/// The ONNX Runtime library the tests use (loaded once in the test process to prove it loads).
pub fn ort_path() -> PathBuf {
    super::runtime().path.clone()
}

/// `canard-serve --models MODELS --ort-lib ORT --bind 127.0.0.1:0 ARGS` (`canard_e2e::server::command`).
pub fn command(models: &Path, args: &[&str]) -> Command {
    canard_e2e::server::command(Path::new(env!("CARGO_BIN_EXE_canard-serve")), &ort_path(), models, args)
}
