//! The models folder → the loaded models by name, and which one is the default.
//!
//! A server with three good models and one half-copied folder should still start,
//! so a broken folder is reported and skipped, except the one asked for by name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use canard_shared::manifest::{is_plain_name, MANIFEST_FILE};
use ort::environment::Environment;

use crate::engine::{Engine, EngineOptions, LoadError};

/// The model used when a request names none and `--model` is not given.
pub const PREFERRED_DEFAULT: &str = "demo";

pub struct Registry {
    models: BTreeMap<String, Engine>,
    default: String,
}

/// A model folder that could not be loaded, and why.
#[derive(Debug)]
pub struct Skipped {
    pub dir: PathBuf,
    pub error: LoadError,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read the models folder {}: {source}", .dir.display())]
    Folder { dir: PathBuf, source: std::io::Error },
    #[error("model {name:?} was asked for, but {} has no {name}/{MANIFEST_FILE}; models there: {}", .dir.display(), list(.found))]
    WantedMissing { name: String, dir: PathBuf, found: Vec<String> },
    #[error("model {name:?} was asked for, but it cannot be loaded: {error}")]
    WantedBroken { name: String, error: LoadError },
    #[error("no loadable model in {}{}; a model is a folder holding {MANIFEST_FILE} and the ONNX file it names, as exported by canard-train", .dir.display(), broken(*.skipped))]
    Empty { dir: PathBuf, skipped: usize },
}

/// `models` has no model of that name.
#[derive(Debug, thiserror::Error)]
#[error("unknown model {name:?}; loaded: {loaded}")]
pub struct UnknownModel {
    pub name: String,
    pub loaded: String,
}

impl Registry {
    /// Loads every model folder in `dir`. `wanted` (from `--model`) must load and
    /// becomes the default; otherwise the default is `demo` if loaded, else the
    /// first name in order. Folders that fail are returned to be reported.
    pub fn load(
        env: &Environment,
        dir: &Path,
        wanted: Option<&str>,
        opts: EngineOptions,
    ) -> Result<(Registry, Vec<Skipped>), RegistryError> {
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
            match Engine::load(env, &name, &path, opts) {
                Ok(engine) => {
                    models.insert(name, engine);
                }
                Err(error) if wanted == Some(name.as_str()) => return Err(RegistryError::WantedBroken { name, error }),
                Err(error) => skipped.push(Skipped { dir: path, error }),
            }
        }
        let default = match wanted {
            Some(name) => name.to_string(),
            None if models.contains_key(PREFERRED_DEFAULT) => PREFERRED_DEFAULT.to_string(),
            None => match models.keys().next() {
                Some(first) => first.clone(),
                None => return Err(RegistryError::Empty { dir: dir.to_path_buf(), skipped: skipped.len() }),
            },
        };
        Ok((Registry { models, default }, skipped))
    }

    /// The model called `name`, or the default one.
    pub fn get(&self, name: Option<&str>) -> Result<&Engine, UnknownModel> {
        let name = name.unwrap_or(&self.default);
        self.models.get(name).ok_or_else(|| UnknownModel { name: name.to_string(), loaded: self.names().join(", ") })
    }

    pub fn default_model(&self) -> &Engine {
        // `load` only builds a registry whose default is among its models.
        &self.models[&self.default]
    }

    pub fn names(&self) -> Vec<&str> {
        self.models.keys().map(String::as_str).collect()
    }

    pub fn models(&self) -> impl Iterator<Item = &Engine> {
        self.models.values()
    }
}

/// Sub-folders holding a manifest, sorted by name. Hidden folders are ignored, and
/// so are names a URL cannot carry plainly: the folder name is the model's name.
fn model_folders(dir: &Path) -> Result<Vec<(String, PathBuf)>, RegistryError> {
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
