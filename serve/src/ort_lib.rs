//! Finding and loading the ONNX Runtime shared library.
//!
//! ort is built with `load-dynamic`, so nothing is linked at build time and the
//! library is looked up at start. `ort::init_from` is used rather than ort's own
//! `ORT_DYLIB_PATH` lookup because that one panics when the file is missing; here a
//! missing library is an ordinary error that lists what was tried and how to fix it.

use std::fmt;
use std::path::{Path, PathBuf};

use ort::environment::Environment;

const LIB_FILE: &str = "libonnxruntime.so";
/// Where `scripts/setup-ort.sh` (run by `make setup`) installs the library,
/// relative to the repository.
const DEPS_DIR: &str = ".deps/onnxruntime";
/// Where `scripts/setup-ort.sh --gpu` (`make setup-gpu`) installs the GPU build.
const GPU_DEPS_DIR: &str = ".deps/onnxruntime-gpu";
const SETUP_SCRIPT: &str = "scripts/setup-ort.sh";
const SETUP_MAKE: &str = "make setup";

/// A loaded library and the process-wide environment created from it.
pub struct OrtRuntime {
    pub path: PathBuf,
    pub env: Environment,
}

/// One place looked at, and why it was not used.
#[derive(Debug)]
pub struct Attempt {
    pub path: PathBuf,
    /// `None`: no such file.
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OrtLibError {
    #[error("{}", describe(.0, .1))]
    NotLoaded(Vec<Attempt>, String),
    #[error("ONNX Runtime loaded from {}, but creating its environment failed: {source}", .path.display())]
    Environment { path: PathBuf, source: ort::Error },
}

/// Loads the library from `explicit` (`--ort-lib` / `ORT_DYLIB_PATH`) if given, and
/// otherwise from the first of [`candidates`] that loads.
pub fn load(explicit: Option<&Path>) -> Result<OrtRuntime, OrtLibError> {
    load_with(explicit, false)
}

/// [`load`]; with `gpu` (a build with the cuda feature that may use CUDA) the
/// search tries the GPU build first ([`gpu_candidates`]).
pub fn load_with(explicit: Option<&Path>, gpu: bool) -> Result<OrtRuntime, OrtLibError> {
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf));
    let cwd = std::env::current_dir().ok();
    let paths = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None if gpu => gpu_candidates(exe_dir.as_deref(), cwd.as_deref()),
        None => candidates(exe_dir.as_deref(), cwd.as_deref()),
    };
    let mut attempts = Vec::new();
    for path in paths {
        if !path.is_file() {
            let error = path.exists().then(|| "not a file".to_string());
            attempts.push(Attempt { path, error });
            continue;
        }
        // ort panics, rather than failing, on a library that exports `OrtGetApiBase` but
        // hands out no API base, or not the API version it needs: refused all the same.
        let init =
            quiet_catch_unwind(|| ort::init_from(&path).map(|builder| builder.with_name("canard-serve").build()));
        match init {
            Ok(Ok(Ok(env))) => return Ok(OrtRuntime { path, env }),
            Ok(Ok(Err(source))) => return Err(OrtLibError::Environment { path, source }),
            Ok(Err(e)) => attempts.push(Attempt { path, error: Some(load_error(&e)) }),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                let error = format!("not a usable ONNX Runtime library (ort: {what})");
                attempts.push(Attempt { path, error: Some(error) });
            }
        }
    }
    Err(OrtLibError::NotLoaded(attempts, install_hint(exe_dir.as_deref(), cwd.as_deref())))
}

/// `catch_unwind` without the panic message on stderr (the caller reports the panic
/// as an error); panics on other threads meanwhile are shown as usual.
fn quiet_catch_unwind<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> std::thread::Result<T> {
    type Hook = dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync;
    let previous: std::sync::Arc<Box<Hook>> = std::sync::Arc::new(std::panic::take_hook());
    let (others, me) = (previous.clone(), std::thread::current().id());
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != me {
            others(info);
        }
    }));
    let result = std::panic::catch_unwind(f);
    drop(std::panic::take_hook());
    std::panic::set_hook(Box::new(move |info| previous(info)));
    result
}

/// ort's error and, for a library the loader refused, the loader's reason (ort's
/// message stops at "dlopen failed", which says neither "file too short" nor which
/// dependency is missing).
fn load_error(e: &ort::LoadDynamicError) -> String {
    let mut msg = e.to_string();
    if let ort::LoadDynamicError::Dlopen { error, .. } = e {
        let mut cause = std::error::Error::source(error);
        while let Some(c) = cause {
            msg = format!("{msg}: {c}");
            cause = c.source();
        }
    }
    msg
}

/// The places searched without an explicit path, in order: beside the executable
/// (a deployed binary carries its library), then `.deps/onnxruntime/` under the
/// current directory and under every ancestor of the executable's directory (so
/// `target/debug/canard-serve` finds the repository's copy from anywhere).
pub fn candidates(exe_dir: Option<&Path>, cwd: Option<&Path>) -> Vec<PathBuf> {
    search(exe_dir, cwd, &[DEPS_DIR])
}

/// [`candidates`] with `.deps/onnxruntime-gpu/` (current directory, then the
/// executable's ancestors) searched before `.deps/onnxruntime/`.
pub fn gpu_candidates(exe_dir: Option<&Path>, cwd: Option<&Path>) -> Vec<PathBuf> {
    search(exe_dir, cwd, &[GPU_DEPS_DIR, DEPS_DIR])
}

fn search(exe_dir: Option<&Path>, cwd: Option<&Path>, deps_dirs: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut add = |p: PathBuf| {
        if !out.contains(&p) {
            out.push(p);
        }
    };
    if let Some(dir) = exe_dir {
        add(dir.join(LIB_FILE));
    }
    for deps in deps_dirs {
        if let Some(dir) = cwd {
            add(dir.join(deps).join(LIB_FILE));
        }
        for dir in exe_dir.into_iter().flat_map(Path::ancestors) {
            add(dir.join(deps).join(LIB_FILE));
        }
    }
    out
}

/// The install command, as a path the user can paste when the script can be found.
fn install_hint(exe_dir: Option<&Path>, cwd: Option<&Path>) -> String {
    cwd.into_iter()
        .flat_map(Path::ancestors)
        .chain(exe_dir.into_iter().flat_map(Path::ancestors))
        .map(|dir| dir.join(SETUP_SCRIPT))
        .find(|script| script.is_file())
        .map_or_else(|| SETUP_SCRIPT.to_string(), |p| p.display().to_string())
}

fn describe(attempts: &[Attempt], hint: &str) -> String {
    let mut msg =
        String::from("cannot load the ONNX Runtime library (libonnxruntime.so, version 1.31 or newer); tried:");
    for a in attempts {
        msg.push_str(&format!("\n  {}: {}", a.path.display(), a.error.as_deref().unwrap_or("not found")));
    }
    msg.push_str(&format!(
        "\ninstall it: run `{SETUP_MAKE}` in the canard repository (or {hint})\n\
         or point --ort-lib (or ORT_DYLIB_PATH) at an existing libonnxruntime.so"
    ));
    msg
}

impl fmt::Display for OrtRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The versioned file name behind the symlink says which release is in use.
        let real = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        write!(f, "{}", real.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn searches_beside_the_exe_then_deps_folders_without_duplicates() {
        let found = candidates(Some(Path::new("/repo/target/debug")), Some(Path::new("/repo")));
        let expected: Vec<PathBuf> = [
            "/repo/target/debug/libonnxruntime.so",
            "/repo/.deps/onnxruntime/libonnxruntime.so",
            "/repo/target/debug/.deps/onnxruntime/libonnxruntime.so",
            "/repo/target/.deps/onnxruntime/libonnxruntime.so",
            "/.deps/onnxruntime/libonnxruntime.so",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(found, expected);
        assert!(candidates(None, None).is_empty());
    }

    #[test]
    fn the_gpu_search_tries_the_gpu_build_first() {
        let found = gpu_candidates(Some(Path::new("/repo/target/debug")), Some(Path::new("/repo")));
        let strs: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(strs[0], "/repo/target/debug/libonnxruntime.so");
        assert_eq!(strs[1], "/repo/.deps/onnxruntime-gpu/libonnxruntime.so");
        let (gpu, cpu) = (
            strs.iter().rposition(|s| s.contains("onnxruntime-gpu/")).unwrap(),
            strs.iter().position(|s| s.contains("onnxruntime/")).unwrap(),
        );
        assert!(gpu < cpu, "{strs:?}");
        assert_eq!(strs.len(), 1 + 2 * 4);
    }

    #[test]
    fn a_missing_library_names_every_path_and_the_install_command() {
        let dir = std::env::temp_dir().join(format!("canard-ort-missing-{}", std::process::id()));
        let err = match load(Some(&dir.join("libonnxruntime.so"))) {
            Ok(_) => panic!("a missing file cannot load"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&dir.join("libonnxruntime.so").display().to_string()), "{err}");
        assert!(err.contains("not found") && err.contains("setup-ort.sh") && err.contains("make setup"), "{err}");
    }
}
