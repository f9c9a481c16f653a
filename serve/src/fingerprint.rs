//! What a model folder looks like on disk, cheaply: the name, size and modification time
//! of each file a model is loaded from (`model.json` and the `.onnx` files; pictures that
//! `canard-train eval` writes beside them are not the model). Two equal fingerprints mean
//! "nothing was written since", so the models folder can be polled every few seconds
//! without reading the models.

use std::path::Path;
use std::time::SystemTime;

use canard_shared::manifest::MANIFEST_FILE;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(Vec<(String, u64, Option<SystemTime>)>);

/// The fingerprint of `dir`'s model files (links followed), in name order.
pub fn of(dir: &Path) -> std::io::Result<Fingerprint> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let model_file = name == MANIFEST_FILE || Path::new(&name).extension().is_some_and(|e| e == "onnx");
        if !model_file {
            continue;
        }
        // A file removed between listing and stat is simply not there.
        let Ok(meta) = std::fs::metadata(entry.path()) else { continue };
        if meta.is_file() {
            files.push((entry.file_name().to_string_lossy().into_owned(), meta.len(), meta.modified().ok()));
        }
    }
    files.sort();
    Ok(Fingerprint(files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_when_a_model_file_is_written_added_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("model.json"), b"1").unwrap();
        let first = of(dir.path()).unwrap();
        assert_eq!(first, of(dir.path()).unwrap());
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert_eq!(first, of(dir.path()).unwrap(), "folders are not files");
        std::fs::write(dir.path().join("nearest.png"), b"a picture eval wrote").unwrap();
        assert_eq!(first, of(dir.path()).unwrap(), "a picture beside the model is not the model");
        std::fs::write(dir.path().join("model.json"), b"12").unwrap();
        let second = of(dir.path()).unwrap();
        assert_ne!(first, second);
        std::fs::write(dir.path().join("generator.onnx"), b"").unwrap();
        assert_ne!(second, of(dir.path()).unwrap());
        std::fs::remove_file(dir.path().join("generator.onnx")).unwrap();
        assert_eq!(second, of(dir.path()).unwrap());
        assert!(of(&dir.path().join("missing")).is_err());
    }
}
