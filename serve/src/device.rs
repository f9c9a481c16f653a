//! Which ONNX Runtime execution provider the models run on: `--device auto|cuda|cpu`.
//!
//! The CUDA provider is registered explicitly, so a failure is an error with ONNX
//! Runtime's own reason, never ort's silent fall-back to the CPU
//! (`with_execution_providers`). `auto` falls back to the CPU too, but says so at
//! warn level with the reason. The provider a model actually got is reported by
//! [`crate::engine::Engine::execution_provider`] (in `/healthz` and `/metrics`).
//!
//! CUDA needs the `cuda` feature (it only enables `ort/cuda`; with `load-dynamic`
//! nothing is linked at build time) and, at run time, the GPU build of ONNX Runtime
//! with `libonnxruntime_providers_cuda.so` and `libonnxruntime_providers_shared.so`
//! beside `libonnxruntime.so` (`scripts/setup-ort.sh --gpu`), plus CUDA 13, cuDNN 9
//! and the NVIDIA driver.

use std::fmt;
use std::path::Path;

use clap::ValueEnum;
use ort::environment::Environment;
use ort::session::builder::SessionBuilder;
use ort::session::Session;

/// True when this binary was built with the `cuda` feature.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

/// The CUDA provider's library, which the GPU build of ONNX Runtime loads from its own folder.
pub const CUDA_PROVIDER_LIB: &str = "libonnxruntime_providers_cuda.so";
/// Loaded by ONNX Runtime before any provider library; also beside `libonnxruntime.so`.
pub const SHARED_PROVIDER_LIB: &str = "libonnxruntime_providers_shared.so";
/// What the CUDA provider of ONNX Runtime 1.31 needs from the system.
const CUDA_SYSTEM_LIBS: &str = "CUDA 13 (libcudart.so.13, libcublas.so.13, libcublasLt.so.13, libcurand.so.10, \
     libcufft.so.12), cuDNN 9 (libcudnn.so.9 and its sub-libraries) and the NVIDIA driver (libcuda.so.1)";
const NOT_BUILT: &str =
    "--device cuda: this canard-serve was built without the cuda feature; rebuild with --features cuda \
     (cargo build --release -p canard-serve --features cuda)";

/// `--device`: what was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Device {
    /// CUDA when this build has it and it works, else the CPU (with a warning saying why).
    #[default]
    Auto,
    /// CUDA or refuse to start (needs the `cuda` feature and the GPU build of ONNX Runtime).
    Cuda,
    /// The CPU provider only.
    Cpu,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Auto => "auto",
            Device::Cuda => "cuda",
            Device::Cpu => "cpu",
        })
    }
}

/// The execution provider a session runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Cpu,
    Cuda,
}

impl Provider {
    /// ONNX Runtime's name, as in its Python API.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Cpu => "CPUExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("{NOT_BUILT}")]
    NotBuilt,
    #[error("--device cuda: the CUDA execution provider cannot be used: {0}")]
    Unavailable(String),
}

/// Refuses `--device cuda` in a build without the `cuda` feature, before anything is loaded.
pub fn check_built(requested: Device) -> Result<(), DeviceError> {
    match requested {
        Device::Cuda if !CUDA_BUILT => Err(DeviceError::NotBuilt),
        _ => Ok(()),
    }
}

/// What the engines get after [`resolve`]: `Cuda` and `Cpu` are what they say;
/// `Auto` means CUDA registered at start, so each model tries it and falls back to
/// the CPU (with a warning) only if its own session cannot be made on CUDA.
/// The second value is the warning to log when `auto` fell back at start.
pub fn resolve(env: &Environment, lib: &Path, requested: Device) -> Result<(Device, Option<String>), DeviceError> {
    check_built(requested)?;
    match requested {
        Device::Cpu => Ok((Device::Cpu, None)),
        Device::Auto if !CUDA_BUILT => Ok((Device::Cpu, None)),
        Device::Cuda | Device::Auto => match probe_cuda(env) {
            Ok(()) => Ok((requested, None)),
            Err(e) => {
                let reason = explain(&e.to_string(), lib);
                if requested == Device::Cuda {
                    Err(DeviceError::Unavailable(reason))
                } else {
                    Ok((
                        Device::Cpu,
                        Some(format!("--device auto: CUDA is not usable, falling back to the CPU: {reason}")),
                    ))
                }
            }
        },
    }
}

/// Registers the CUDA provider on a throwaway session builder: this loads the
/// provider library and the CUDA libraries it links, so the usual failures (CPU-only
/// ONNX Runtime, missing provider file, missing CUDA) show up at start, with
/// ONNX Runtime's reason.
fn probe_cuda(env: &Environment) -> ort::Result<()> {
    let mut builder = Session::builder(env)?;
    register_cuda(&mut builder)
}

/// Adds the CUDA execution provider (device 0) to `builder`, or ONNX Runtime's
/// reason why it cannot.
#[cfg(feature = "cuda")]
pub fn register_cuda(builder: &mut SessionBuilder) -> ort::Result<()> {
    use ort::ep::ExecutionProvider;
    ort::ep::CUDA::default().with_device_id(0).register(builder)
}

/// Without the `cuda` feature ort has no CUDA provider to register.
#[cfg(not(feature = "cuda"))]
pub fn register_cuda(_builder: &mut SessionBuilder) -> ort::Result<()> {
    Err(ort::Error::new(NOT_BUILT))
}

/// ONNX Runtime's error message, and what is most likely missing: the provider files
/// beside `lib` (the library in use), else the CUDA / cuDNN libraries or the driver.
pub fn explain(error: &str, lib: &Path) -> String {
    let real = std::fs::canonicalize(lib).unwrap_or_else(|_| lib.to_path_buf());
    let dir = real.parent().unwrap_or(Path::new("."));
    let absent: Vec<&str> =
        [CUDA_PROVIDER_LIB, SHARED_PROVIDER_LIB].into_iter().filter(|f| !dir.join(f).is_file()).collect();
    let hint = if absent.is_empty() {
        format!(
            "{CUDA_PROVIDER_LIB} is in {}, so it is most likely its own dependencies that failed to load: \
             {CUDA_SYSTEM_LIBS} must be found through LD_LIBRARY_PATH or the ldconfig cache, and a GPU must be \
             visible; `scripts/setup-ort.sh --gpu --check` lists which of these libraries it finds",
            dir.display()
        )
    } else {
        format!(
            "{} not found beside the ONNX Runtime library in use ({}): that is the CPU-only build. \
             Install the GPU build with `make setup-gpu` (scripts/setup-ort.sh --gpu) and start with \
             --ort-lib .deps/onnxruntime-gpu/libonnxruntime.so; it also needs {CUDA_SYSTEM_LIBS}",
            absent.iter().map(|f| dir.join(f).display().to_string()).collect::<Vec<_>>().join(" and "),
            real.display()
        )
    };
    // ONNX Runtime's messages may end in a newline or a full stop.
    format!("{}. {hint}", error.trim_end().trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_is_refused_without_the_feature_and_cpu_always_passes() {
        assert_eq!(check_built(Device::Cpu), Ok(()));
        assert_eq!(check_built(Device::Auto), Ok(()));
        let cuda = check_built(Device::Cuda);
        if CUDA_BUILT {
            assert_eq!(cuda, Ok(()));
        } else {
            let msg = cuda.unwrap_err().to_string();
            assert!(msg.contains("built without the cuda feature; rebuild with --features cuda"), "{msg}");
        }
    }

    #[test]
    fn the_explanation_names_the_missing_provider_files_or_the_cuda_libraries() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let lib = dir.join("libonnxruntime.so");
        std::fs::write(&lib, b"").unwrap();
        let err = "ort says no.\n";
        let msg = explain(err, &lib);
        assert!(msg.starts_with("ort says no. "), "{msg}");
        assert!(msg.contains(&dir.join(CUDA_PROVIDER_LIB).display().to_string()), "{msg}");
        assert!(msg.contains(SHARED_PROVIDER_LIB) && msg.contains("make setup-gpu"), "{msg}");

        std::fs::write(dir.join(CUDA_PROVIDER_LIB), b"").unwrap();
        std::fs::write(dir.join(SHARED_PROVIDER_LIB), b"").unwrap();
        let msg = explain(err, &lib);
        assert!(msg.contains("libcudart.so.13") && msg.contains("libcudnn.so.9"), "{msg}");
        assert!(!msg.contains("make setup-gpu"), "{msg}");
    }

    #[test]
    fn provider_names_are_onnx_runtimes() {
        assert_eq!(Provider::Cpu.to_string(), "CPUExecutionProvider");
        assert_eq!(Provider::Cuda.name(), "CUDAExecutionProvider");
    }
}
