//! `models/NAME/model.json`: everything the server needs to know about an exported
//! generator, written by the trainer next to `generator.onnx`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::files::read_regular;
use crate::latent;

/// The manifest's file name inside a model folder.
pub const MANIFEST_FILE: &str = "model.json";
/// The format of an unconditional model's manifest (what every canard-serve reads).
pub const FORMAT_VERSION: u32 = 1;
/// The format of a conditional model's (with [`Manifest::classes`]): a canard-serve that
/// reads only version 1 refuses it by its version rather than serving it without classes.
pub const CONDITIONAL_FORMAT_VERSION: u32 = 2;
/// The most classes a conditional model may have (`--classes`): a picker and a grid row
/// per class stay usable, and each class needs pictures of its own to learn from.
pub const MAX_CLASSES: usize = 1000;
/// The longest class name, in bytes of UTF-8.
pub const MAX_CLASS_NAME: usize = 64;
/// What `class=` takes for every class (so no class may have this name).
pub const ALL_CLASSES: &str = "all";
/// The longest latent vector a manifest may name (the trainer's `--nz` bound too).
pub const MAX_LATENT_DIM: usize = 65536;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// The model's name: its folder's name under `models/`.
    pub name: String,
    /// The architecture that produced the generator, e.g. `dcgan`.
    pub arch: String,
    /// Output images are `image_size` × `image_size` pixels.
    pub image_size: u32,
    /// 1 (grey) or 3 (RGB).
    pub channels: u32,
    pub latent: LatentSpec,
    pub onnx: OnnxSpec,
    /// The generator's output range, mapped to 0..=255 by [`crate::image::to_u8`].
    pub output_range: [f32; 2],
    pub training: TrainingSummary,
    /// A conditional model's classes, in the order of their indices; empty for an
    /// unconditional one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<Class>,
}

/// One kind of picture a conditional model makes: its name (the training folder's
/// subfolder) and how many training pictures it had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Class {
    pub name: String,
    pub images: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatentSpec {
    pub dim: usize,
    /// Always [`latent::DISTRIBUTION`].
    pub distribution: String,
    /// Always [`latent::ALGORITHM`]: how a seed becomes `z`.
    pub algorithm: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnnxSpec {
    /// File name inside the model folder (never a path).
    pub file: String,
    /// Hex SHA-256 of that file; a model whose file does not match is refused.
    pub sha256: String,
    pub opset: i64,
    /// Input name; shape `[N, latent.dim, 1, 1]`.
    pub input: String,
    /// Output name; shape `[N, channels, image_size, image_size]`.
    pub output: String,
    /// A conditional model's second input: each picture's class index, int64 `[N]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_input: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// Where the pictures came from: a folder or `builtin:NAME`.
    pub dataset: String,
    pub dataset_images: usize,
    pub epochs: usize,
    pub steps: usize,
    pub batch_size: usize,
    pub images_seen: u64,
    pub seconds: f64,
    pub seed: u64,
    /// Seconds since the Unix epoch when the model was exported.
    pub exported_at: u64,
    /// Whether the exported weights are the exponential moving average of the generator's.
    #[serde(default)]
    pub ema: bool,
    /// How close generated images are to the data, measured at export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// What training started from instead of random weights (canard-train's `--init-from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_from: Option<StartedFrom>,
}

/// The checkpoint or model file a fine-tuned run started from, and its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartedFrom {
    pub file: String,
    pub sha256: String,
}

/// ProGAN's multi-scale sliced Wasserstein distance between generated images and the
/// training data (×10³, lower is better; Karras et al. 2018, appendix D).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// The mean over pyramid levels.
    pub swd: f64,
    /// (resolution, distance) per Laplacian-pyramid level, finest first.
    pub swd_levels: Vec<(usize, f64)>,
    /// Generated images compared (seeds 0..n) and real images they were compared with.
    pub images: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid manifest: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl Manifest {
    /// Reads and validates `dir/model.json`.
    pub fn load(dir: &Path) -> Result<Manifest, ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let bytes = read_regular(&path).map_err(|source| ManifestError::Io { path: path.clone(), source })?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| ManifestError::Parse { path: path.clone(), source })?;
        manifest.validate().map_err(|reason| ManifestError::Invalid { path, reason })?;
        Ok(manifest)
    }

    /// Reads the ONNX file the manifest names and checks its SHA-256: the bytes are
    /// returned only when they are the file that was exported.
    pub fn read_onnx(&self, dir: &Path) -> Result<Vec<u8>, ManifestError> {
        let path = dir.join(&self.onnx.file);
        let bytes = read_regular(&path).map_err(|source| ManifestError::Io { path: path.clone(), source })?;
        let actual = sha256_hex(&bytes);
        // Hex digits in either case are the same hash (validate takes both).
        if !actual.eq_ignore_ascii_case(&self.onnx.sha256) {
            return Err(ManifestError::Invalid {
                path,
                reason: format!(
                    "SHA-256 is {actual}, but {MANIFEST_FILE} says {}: the file was changed or truncated after export",
                    self.onnx.sha256
                ),
            });
        }
        Ok(bytes)
    }

    /// Checks everything a reader relies on; the error says which field is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let expected = if self.classes.is_empty() { FORMAT_VERSION } else { CONDITIONAL_FORMAT_VERSION };
        if self.format_version != expected {
            return Err(format!(
                "format_version {} is not supported here (this build reads {FORMAT_VERSION} for a model \
                 without classes, {CONDITIONAL_FORMAT_VERSION} for one with classes; this one has {})",
                self.format_version,
                self.classes.len()
            ));
        }
        if !self.classes.is_empty() {
            check_classes(self.classes.iter().map(|c| c.name.as_str()))?;
            if self.classes.len() < 2 {
                return Err("classes: a conditional model has at least 2".into());
            }
            if self.onnx.class_input.as_deref().is_none_or(str::is_empty) {
                return Err("onnx.class_input must be named for a model with classes".into());
            }
        } else if self.onnx.class_input.is_some() {
            return Err("onnx.class_input is set, but the model has no classes".into());
        }
        if !is_plain_name(&self.name) {
            return Err(format!("name {:?} must be letters, digits, '-', '_' or '.'", self.name));
        }
        if !(4..=4096).contains(&self.image_size) {
            return Err(format!("image_size {} is out of range 4..=4096", self.image_size));
        }
        if self.channels != 1 && self.channels != 3 {
            return Err(format!("channels must be 1 or 3, not {}", self.channels));
        }
        if self.latent.dim == 0 || self.latent.dim > MAX_LATENT_DIM {
            return Err(format!("latent.dim {} is out of range 1..={MAX_LATENT_DIM}", self.latent.dim));
        }
        if self.latent.algorithm != latent::ALGORITHM || self.latent.distribution != latent::DISTRIBUTION {
            return Err(format!(
                "latent {} / {} is unknown (this build knows {} / {})",
                self.latent.distribution,
                self.latent.algorithm,
                latent::DISTRIBUTION,
                latent::ALGORITHM
            ));
        }
        if !is_plain_name(&self.onnx.file) {
            return Err(format!("onnx.file {:?} must be a file name inside the model folder", self.onnx.file));
        }
        if self.onnx.sha256.len() != 64 || !self.onnx.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("onnx.sha256 must be 64 hex digits (either case)".into());
        }
        if self.onnx.input.is_empty() || self.onnx.output.is_empty() {
            return Err("onnx.input and onnx.output must be named".into());
        }
        let [lo, hi] = self.output_range;
        if !lo.is_finite() || !hi.is_finite() || lo >= hi {
            return Err(format!("output_range {:?} must be increasing", self.output_range));
        }
        Ok(())
    }

    /// The index of the class `text` names: a class's name, or its index. The error lists
    /// the model's classes (or says it has none).
    pub fn class_index(&self, text: &str) -> Result<usize, String> {
        if self.classes.is_empty() {
            return Err(format!("model {} has no classes: it makes one kind of picture", self.name));
        }
        if let Some(i) = self.classes.iter().position(|c| c.name == text) {
            return Ok(i);
        }
        match text.parse::<usize>() {
            Ok(i) if i < self.classes.len() => Ok(i),
            _ => Err(format!(
                "model {} has no class {text:?}; its classes are {} (by name, or by index 0 to {})",
                self.name,
                self.class_names().join(", "),
                self.classes.len() - 1
            )),
        }
    }

    /// The classes' names, in index order.
    pub fn class_names(&self) -> Vec<&str> {
        self.classes.iter().map(|c| c.name.as_str()).collect()
    }

    /// Writes the manifest as pretty JSON (the caller makes the write atomic).
    pub fn to_json(&self) -> String {
        // Serialising plain data to a String cannot fail.
        serde_json::to_string_pretty(self).expect("manifest serialises") + "\n"
    }
}

impl TrainingSummary {
    /// [`TrainingSummary::dataset`] without where it was on the trainer's machine: a
    /// folder's last name (`/home/someone/private/photos` → `photos`), `builtin:NAME`
    /// as it is. What a server shows anyone who asks.
    pub fn dataset_name(&self) -> &str {
        if self.dataset.starts_with("builtin:") {
            return &self.dataset;
        }
        // Either separator: the trainer may have run on Windows.
        let trimmed = self.dataset.trim_end_matches(['/', '\\']);
        trimmed.rsplit(['/', '\\']).next().unwrap_or(trimmed)
    }
}

/// Checks a list of class names: at most [`MAX_CLASSES`], each 1 to [`MAX_CLASS_NAME`]
/// bytes without control characters, none twice. The error names the first bad one.
pub fn check_classes<'a>(names: impl ExactSizeIterator<Item = &'a str>) -> Result<(), String> {
    if names.len() > MAX_CLASSES {
        return Err(format!("{} classes is too many: at most {MAX_CLASSES}", names.len()));
    }
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if name.is_empty() || name.len() > MAX_CLASS_NAME || name.chars().any(char::is_control) {
            return Err(format!(
                "class name {name:?} must be 1 to {MAX_CLASS_NAME} bytes of UTF-8 without control characters"
            ));
        }
        if name == ALL_CLASSES {
            return Err(format!("class name {name:?} is reserved: class=all asks a server for every class"));
        }
        if !seen.insert(name) {
            return Err(format!("class name {name:?} appears twice"));
        }
    }
    Ok(())
}

/// A name that is safe as a single path component: no separators, no `..`, no hidden files.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn example(onnx: &[u8]) -> Manifest {
        Manifest {
            format_version: FORMAT_VERSION,
            name: "demo".into(),
            arch: "dcgan".into(),
            image_size: 32,
            channels: 3,
            latent: LatentSpec {
                dim: 100,
                distribution: latent::DISTRIBUTION.into(),
                algorithm: latent::ALGORITHM.into(),
            },
            onnx: OnnxSpec {
                file: "generator.onnx".into(),
                sha256: sha256_hex(onnx),
                opset: 17,
                input: "z".into(),
                output: "image".into(),
                class_input: None,
            },
            output_range: [-1.0, 1.0],
            training: TrainingSummary::default(),
            classes: Vec::new(),
        }
    }

    #[test]
    fn a_model_with_classes_is_version_2_and_names_its_class_input() {
        let classes = |names: &[&str]| names.iter().map(|n| Class { name: n.to_string(), images: 3 }).collect();
        let mut m = example(b"x");
        m.classes = classes(&["duck", "goose"]);
        let err = m.validate().unwrap_err();
        assert!(err.contains("format_version 1") && err.contains("2 for one with classes"), "{err}");
        m.format_version = CONDITIONAL_FORMAT_VERSION;
        assert!(m.validate().unwrap_err().contains("onnx.class_input"));
        m.onnx.class_input = Some("class".into());
        m.validate().unwrap();
        let json = m.to_json();
        assert!(json.contains("\"classes\"") && json.contains("\"class_input\""), "{json}");
        assert_eq!(serde_json::from_str::<Manifest>(&json).unwrap(), m);

        m.classes = classes(&["duck", "duck"]);
        assert!(m.validate().unwrap_err().contains("twice"));
        m.classes = classes(&["duck", &"x".repeat(65)]);
        assert!(m.validate().unwrap_err().contains("64 bytes"));
        m.classes = classes(&["duck", "a\nb"]);
        assert!(m.validate().unwrap_err().contains("control"));
        m.classes = classes(&["duck", "all"]);
        assert!(m.validate().unwrap_err().contains("reserved"));
        m.classes = (0..=MAX_CLASSES).map(|i| Class { name: i.to_string(), images: 1 }).collect();
        assert!(m.validate().unwrap_err().contains("at most 1000"));

        // Version 2 without classes, or a class input without classes, is refused.
        let mut m = example(b"x");
        m.format_version = CONDITIONAL_FORMAT_VERSION;
        assert!(m.validate().unwrap_err().contains("format_version 2"));
        let mut m = example(b"x");
        m.onnx.class_input = Some("class".into());
        assert!(m.validate().unwrap_err().contains("no classes"));
        // An unconditional manifest's JSON is as before: no new keys.
        assert!(!example(b"x").to_json().contains("class"));
    }

    #[test]
    fn round_trips_through_a_folder_and_checks_the_onnx_hash() {
        let dir = tempfile::tempdir().unwrap();
        let onnx = b"not really onnx".to_vec();
        let m = example(&onnx);
        std::fs::write(dir.path().join(MANIFEST_FILE), m.to_json()).unwrap();
        std::fs::write(dir.path().join("generator.onnx"), &onnx).unwrap();
        let loaded = Manifest::load(dir.path()).unwrap();
        assert_eq!(loaded, m);
        assert_eq!(loaded.read_onnx(dir.path()).unwrap(), onnx);

        std::fs::write(dir.path().join("generator.onnx"), b"changed").unwrap();
        let err = loaded.read_onnx(dir.path()).unwrap_err().to_string();
        assert!(err.contains("generator.onnx") && err.contains("SHA-256"), "{err}");
    }

    #[test]
    fn rejects_bad_fields_with_the_path_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = example(b"x");
        m.onnx.file = "../../etc/passwd".into();
        std::fs::write(dir.path().join(MANIFEST_FILE), m.to_json()).unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("model.json") && err.contains("onnx.file"), "{err}");

        let mut m = example(b"x");
        m.channels = 2;
        assert!(m.validate().unwrap_err().contains("channels"));
        let mut m = example(b"x");
        m.latent.algorithm = "mersenne".into();
        assert!(m.validate().unwrap_err().contains("latent"));
    }

    #[test]
    fn unreadable_or_garbage_manifests_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("model.json"), "{err}");
        std::fs::write(dir.path().join(MANIFEST_FILE), b"{ not json").unwrap();
        let err = Manifest::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a valid manifest"), "{err}");
    }

    #[test]
    fn upper_case_hashes_are_the_same_hash() {
        let dir = tempfile::tempdir().unwrap();
        let onnx = b"not really onnx".to_vec();
        let mut m = example(&onnx);
        m.onnx.sha256.make_ascii_uppercase();
        std::fs::write(dir.path().join(MANIFEST_FILE), m.to_json()).unwrap();
        std::fs::write(dir.path().join("generator.onnx"), &onnx).unwrap();
        let loaded = Manifest::load(dir.path()).unwrap();
        assert_eq!(loaded, m, "read as written");
        assert_eq!(loaded.read_onnx(dir.path()).unwrap(), onnx);
    }

    #[test]
    fn the_dataset_name_is_the_folders_last_name() {
        let name = |dataset: &str| {
            TrainingSummary { dataset: dataset.into(), ..Default::default() }.dataset_name().to_string()
        };
        assert_eq!(name("/home/someone/private/photos"), "photos");
        assert_eq!(name("/home/someone/private/photos/"), "photos");
        assert_eq!(name("C:\\Users\\someone\\photos"), "photos");
        assert_eq!(name("pictures/bikes"), "bikes");
        assert_eq!(name("bikes"), "bikes");
        assert_eq!(name("builtin:shapes"), "builtin:shapes");
        assert_eq!(name(""), "");
        assert_eq!(name("/"), "");
    }

    #[test]
    fn plain_names_exclude_paths() {
        assert!(is_plain_name("demo") && is_plain_name("bikes-64_v2.onnx"));
        for bad in ["", "..", "../x", "a/b", ".hidden", "a\\b", "x y"] {
            assert!(!is_plain_name(bad), "{bad}");
        }
    }
}
