//! `--device auto|cuda|cpu` without a GPU, with the CPU-only ONNX Runtime library
//! (always the one `make setup` installs, passed explicitly, so the result does not
//! depend on the machine): `cpu` and `auto` serve on the CPU (`auto` says loudly
//! that it fell back when this build has CUDA), `cuda` refuses to start and names
//! what is missing. Run in both builds: `cargo test -p canard-serve` and
//! `cargo test -p canard-serve --features cuda`.

mod support;

use std::path::Path;

use canard_serve::device::{Device, CUDA_BUILT, CUDA_PROVIDER_LIB};
use canard_serve::engine::{Engine, EngineOptions, LoadError};
use canard_serve::registry::{Loader, RegistryError};
use serde_json::Value;
use support::server::{command, Refused, Server};
use support::{options, runtime, write_model};

const CPU: &str = "CPUExecutionProvider";
const NOT_BUILT: &str = "this canard-serve was built without the cuda feature; rebuild with --features cuda";

// ---- in process: the engine and the registry ----

#[test]
fn the_engine_reports_the_provider_it_got() {
    let root = tempfile::tempdir().unwrap();
    let dir = write_model(root.path(), "m", 8, |_| {});
    for device in [Device::Cpu, Device::Auto] {
        let engine = Engine::load(&runtime().env, "m", &dir, EngineOptions { device, ..options() }).unwrap();
        assert_eq!(engine.execution_provider(), CPU, "{device}: CUDA cannot work with the CPU-only library");
    }
}

#[test]
fn a_model_that_loads_on_the_cpu_but_not_on_cuda_fails_the_start_under_device_cuda() {
    let root = tempfile::tempdir().unwrap();
    let dir = write_model(root.path(), "m", 8, |_| {});
    let opts = EngineOptions { device: Device::Cuda, ..options() };
    let err = match Engine::load(&runtime().env, "m", &dir, opts) {
        Ok(_) => panic!("CUDA cannot work with the CPU-only library"),
        Err(e) => e,
    };
    assert!(matches!(err, LoadError::Cuda { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("cannot run on CUDA (--device cuda)"), "{msg}");
    if !CUDA_BUILT {
        assert!(msg.contains(NOT_BUILT), "{msg}");
    }

    // Not a broken model to skip: the whole load fails.
    write_model(root.path(), "other", 4, |_| {});
    let loader = Loader::new(&runtime().env, opts, Default::default());
    match loader.load_all(root.path(), None) {
        Err(RegistryError::Cuda { name, .. }) => assert_eq!(name, "m"),
        Err(e) => panic!("expected a CUDA error, got: {e}"),
        Ok(_) => panic!("expected a CUDA error"),
    }
}

// ---- the binary ----

/// `canard-serve` on `models` with `args` and the extra environment `env` (logging at info
/// level as text, as `command` sets), without hot reload: the server once it listens, or how it ended.
fn spawn(models: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Server, Refused> {
    let mut cmd = command(models, &[&["--reload-interval", "0"], args].concat());
    cmd.envs(env.iter().copied());
    Server::spawn(cmd)
}

/// Serves one model with `args`/`env` and checks that it runs on the CPU in
/// `/healthz` and `/metrics`; returns the log.
fn serves_on_the_cpu(args: &[&str], env: &[(&str, &str)]) -> String {
    let root = tempfile::tempdir().unwrap();
    write_model(root.path(), "demo", 8, |_| {});
    let server = spawn(root.path(), args, env)
        .unwrap_or_else(|r| panic!("canard-serve {args:?} {env:?} exited ({}):\n{}", r.status, r.log));
    let health: Value = serde_json::from_slice(&server.ok("/healthz")).unwrap();
    assert_eq!(health["execution_provider"], CPU, "{health}");
    assert_eq!(health["execution_providers"], serde_json::json!({"demo": CPU}), "{health}");
    let metrics = String::from_utf8(server.ok("/metrics")).unwrap();
    let sample = format!(r#"canard_execution_provider{{model="demo",provider="{CPU}"}} 1"#);
    assert!(metrics.lines().any(|l| l == sample), "{sample} not in:\n{metrics}");
    assert!(!metrics.contains(r#"provider="CUDAExecutionProvider""#), "{metrics}");
    server.log()
}

#[test]
fn device_cpu_serves_on_the_cpu_without_trying_cuda() {
    // By environment variable this time.
    let log = serves_on_the_cpu(&[], &[("CANARD_DEVICE", "cpu")]);
    assert!(log.contains("--device cpu: models run on the CPU"), "{log}");
    assert!(!log.contains("WARN") && !log.contains("falling back"), "{log}");
}

#[test]
fn device_auto_falls_back_to_the_cpu_and_says_so() {
    let log = serves_on_the_cpu(&["--device", "auto"], &[]);
    if CUDA_BUILT {
        let warning = log
            .lines()
            .find(|l| l.contains("falling back to the CPU"))
            .unwrap_or_else(|| panic!("no fall-back warning in:\n{log}"));
        assert!(warning.contains("WARN"), "{warning}");
        // With the reason: ONNX Runtime's error and what is missing.
        assert!(warning.contains(CUDA_PROVIDER_LIB) && warning.contains("make setup-gpu"), "{warning}");
    } else {
        assert!(log.contains("built without the cuda feature: models run on the CPU"), "{log}");
        assert!(!log.contains("WARN"), "{log}");
    }
}

#[test]
fn auto_is_the_default() {
    let log = serves_on_the_cpu(&[], &[]);
    assert!(log.contains("--device auto"), "{log}");
}

#[test]
fn device_cuda_refuses_to_start_and_names_what_is_missing() {
    let root = tempfile::tempdir().unwrap();
    write_model(root.path(), "demo", 8, |_| {});
    let Refused { status, log } = match spawn(root.path(), &["--device", "cuda"], &[]) {
        Ok(server) => panic!("canard-serve --device cuda listened on {} with the CPU-only library", server.addr),
        Err(refused) => refused,
    };
    assert!(!status.success(), "{status}\n{log}");
    let error = log.lines().find(|l| l.contains("ERROR")).unwrap_or_else(|| panic!("no error in:\n{log}"));
    if CUDA_BUILT {
        // ONNX Runtime's own reason, then the missing provider files beside the library.
        assert!(error.contains("CUDA execution provider cannot be used"), "{error}");
        assert!(error.contains("CUDA execution provider is not enabled in this build"), "{error}");
        let beside = runtime().path.canonicalize().unwrap().with_file_name(CUDA_PROVIDER_LIB);
        assert!(error.contains(&beside.display().to_string()), "{error}");
        assert!(error.contains("make setup-gpu") && error.contains("libcudart.so.13"), "{error}");
    } else {
        assert!(error.contains(NOT_BUILT), "{error}");
        assert!(!log.contains("ONNX Runtime loaded"), "refused before loading anything:\n{log}");
    }
}
