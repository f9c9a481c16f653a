//! The models folder → the loaded models by name, and which one is the default.
//!
//! A [`Registry`] is an immutable snapshot; hot reload ([`crate::reload`]) builds a
//! new one and swaps it in ([`crate::live`]). A server with three good models and
//! one half-copied folder should still start, so a broken folder is reported and
//! skipped, except the one asked for by name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use canard_shared::manifest::{is_plain_name, MANIFEST_FILE};
use ort::environment::Environment;

use crate::engine::{Engine, EngineOptions, LoadError};
use crate::fingerprint::{self, Fingerprint};
use crate::metrics::Metrics;
use crate::query::echo;

/// The model used when a request names none and `--model` is not given.
pub const PREFERRED_DEFAULT: &str = "demo";

#[derive(Clone, Default)]
pub struct Registry {
    models: BTreeMap<String, Loaded>,
    default: Option<String>,
}

/// An engine and what its folder looked like just before it was read.
#[derive(Clone)]
pub struct Loaded {
    pub engine: Arc<Engine>,
    pub fingerprint: Fingerprint,
}

/// A model folder that could not be loaded, and why.
#[derive(Debug)]
pub struct Skipped {
    pub name: String,
    pub dir: PathBuf,
    pub error: LoadError,
    pub fingerprint: Fingerprint,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read the models folder {}: {source}", .dir.display())]
    Folder { dir: PathBuf, source: std::io::Error },
    #[error("model {name:?} was asked for, but {} has no {name}/{MANIFEST_FILE}; models there: {}", .dir.display(), list(.found))]
    WantedMissing { name: String, dir: PathBuf, found: Vec<String> },
    #[error("model {name:?} was asked for, but it cannot be loaded: {error}")]
    WantedBroken { name: String, error: LoadError },
    /// `--device cuda` and a model loads on the CPU but not on CUDA: a problem of
    /// the machine, not of the model, so the server refuses to start.
    #[error("model {name:?}: {error}")]
    Cuda { name: String, error: LoadError },
    #[error("no loadable model in {}{}; a model is a folder holding {MANIFEST_FILE} and the ONNX file it names, as exported by canard-train", .dir.display(), broken(*.skipped))]
    Empty { dir: PathBuf, skipped: usize },
}

/// `models` has no model of that name.
#[derive(Debug, thiserror::Error)]
#[error("unknown model {}; loaded: {loaded}", echo(.name))]
pub struct UnknownModel {
    pub name: String,
    pub loaded: String,
}

/// How engines are made: the ONNX Runtime environment, the engine options and
/// where batches are reported. Cloned into the hot-reload thread.
#[derive(Clone)]
pub struct Loader {
    pub env: Environment,
    pub opts: EngineOptions,
    pub metrics: Arc<Metrics>,
}

impl Loader {
    pub fn new(env: &Environment, opts: EngineOptions, metrics: Arc<Metrics>) -> Loader {
        Loader { env: env.clone(), opts, metrics }
    }

    /// One model folder, test inference included.
    pub fn engine(&self, name: &str, dir: &Path) -> Result<Loaded, (LoadError, Fingerprint)> {
        // Taken before reading, so a write during the load shows up as a change later.
        let fingerprint = fingerprint::of(dir).unwrap_or_default();
        match Engine::load_observed(&self.env, name, dir, self.opts, self.metrics.observer(name)) {
            Ok(engine) => Ok(Loaded { engine: Arc::new(engine), fingerprint }),
            Err(e) => Err((e, fingerprint)),
        }
    }

    /// Loads every model folder in `dir`. `wanted` (from `--model`) must load and
    /// becomes the default; otherwise the default is `demo` if loaded, else the
    /// first name in order. Folders that fail are returned to be reported.
    /// A model that cannot run on CUDA under `--device cuda` fails the whole load.
    pub fn load_all(&self, dir: &Path, wanted: Option<&str>) -> Result<(Registry, Vec<Skipped>), RegistryError> {
        let folders = model_folders(dir)?;
        if let Some(name) = wanted {
            if !folders.iter().any(|(n, _)| n == name) {
                let found = folders.into_iter().map(|(n, _)| n).collect();
                return Err(RegistryError::WantedMissing { name: name.to_string(), dir: dir.to_path_buf(), found });
            }
        }
        let mut models = BTreeMap::new();
        let mut skipped = Vec::new();
        for (name, path) in folders {
            match self.engine(&name, &path) {
                Ok(loaded) => {
                    models.insert(name, loaded);
                }
                Err((error @ LoadError::Cuda { .. }, _)) => return Err(RegistryError::Cuda { name, error }),
                Err((error, _)) if wanted == Some(name.as_str()) => {
                    return Err(RegistryError::WantedBroken { name, error })
                }
                Err((error, fingerprint)) => skipped.push(Skipped { name, dir: path, error, fingerprint }),
            }
        }
        if models.is_empty() {
            return Err(RegistryError::Empty { dir: dir.to_path_buf(), skipped: skipped.len() });
        }
        Ok((Registry::from_models(models, wanted), skipped))
    }
}

impl Registry {
    /// [`Loader::load_all`] with metrics that go nowhere.
    pub fn load(
        env: &Environment,
        dir: &Path,
        wanted: Option<&str>,
        opts: EngineOptions,
    ) -> Result<(Registry, Vec<Skipped>), RegistryError> {
        Loader::new(env, opts, Arc::new(Metrics::new())).load_all(dir, wanted)
    }

    /// The default is `wanted` if loaded, else `demo` if loaded, else the first name.
    pub fn from_models(models: BTreeMap<String, Loaded>, wanted: Option<&str>) -> Registry {
        let default = match wanted {
            Some(name) if models.contains_key(name) => Some(name.to_string()),
            _ if models.contains_key(PREFERRED_DEFAULT) => Some(PREFERRED_DEFAULT.to_string()),
            _ => models.keys().next().cloned(),
        };
        Registry { models, default }
    }

    /// The model called `name`, or the default one.
    pub fn get(&self, name: Option<&str>) -> Result<&Arc<Engine>, UnknownModel> {
        let unknown = |name: &str| UnknownModel { name: name.to_string(), loaded: list_str(&self.names()) };
        match name.or(self.default.as_deref()) {
            Some(name) => self.models.get(name).map(|l| &l.engine).ok_or_else(|| unknown(name)),
            None => Err(unknown("")),
        }
    }

    /// `None` only for an empty registry.
    pub fn default_model(&self) -> Option<&Arc<Engine>> {
        self.default.as_ref().and_then(|name| self.models.get(name)).map(|l| &l.engine)
    }

    pub fn names(&self) -> Vec<&str> {
        self.models.keys().map(String::as_str).collect()
    }

    pub fn models(&self) -> impl Iterator<Item = &Arc<Engine>> {
        self.models.values().map(|l| &l.engine)
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Every model with the fingerprint it was loaded from.
    pub fn loaded(&self) -> &BTreeMap<String, Loaded> {
        &self.models
    }
}

/// Sub-folders holding a manifest, sorted by name. Hidden folders are ignored, and
/// so are names a URL cannot carry plainly: the folder name is the model's name.
pub fn model_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>, RegistryError> {
    let entries = std::fs::read_dir(dir).map_err(|source| RegistryError::Folder { dir: dir.to_path_buf(), source })?;
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let path = entry.path();
            (is_plain_name(&name) && path.join(MANIFEST_FILE).is_file()).then_some((name, path))
        })
        .collect();
    found.sort();
    Ok(found)
}

fn list(names: &[String]) -> String {
    list_str(&names.iter().map(String::as_str).collect::<Vec<_>>())
}

fn list_str(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn broken(skipped: usize) -> impl fmt::Display {
    match skipped {
        0 => String::new(),
        n => format!(" ({n} model folder(s) failed to load, see above)"),
    }
}
