//! An on-disk cache of a folder's decoded, resized pictures, so the second run on the
//! same data starts at once instead of decoding thousands of JPEGs again.
//!
//! An entry is two files in the cache folder, named by the key:
//! - `KEY.u8`: the pixels as raw bytes, exactly [`Dataset::pixels`];
//! - `KEY.json`: a small [`Header`] (shape, a checksum of the bytes, the files that
//!   failed to decode). It is written last, so it is what makes an entry valid.
//!
//! The key is a SHA-256 of everything the pixels depend on: the folder, every file's
//! relative path, size and modification time, the image size, the channels asked for,
//! whether it is read by class, and [`FORMAT`]. A changed, added or removed picture gives a new key. Anything wrong
//! with an entry (missing, cut short, a different shape, a bad checksum) only means a
//! rebuild. An entry replaces older entries of the same folder, so the cache holds one
//! dataset per folder, not one per experiment.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::folder::Skipped;
use super::Dataset;
use crate::atomic::write_atomic;

/// Bump when decoding, cropping, resizing or the layout changes: old entries then miss.
/// (2: the checksum is a CRC-32.)
pub const FORMAT: u32 = 2;

#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub format: u32,
    pub key: String,
    /// The folder, as the user wrote it: entries of the same folder replace each other.
    pub source: String,
    pub len: usize,
    pub channels: usize,
    pub size: usize,
    /// [`checksum`] of the `.u8` file, in hex.
    pub checksum: String,
    /// Files that failed to decode (their count, and the first few with the reason).
    pub skipped: usize,
    pub skipped_examples: Vec<(String, String)>,
    /// Read by class (`--classes`): the class names and each picture's class.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<u32>,
}

/// The key of `files` (sorted, under `root`) read at `size` with `channels`, by class or not.
pub fn key(root: &Path, files: &[PathBuf], size: usize, channels: Option<usize>, by_class: bool) -> String {
    let mut h = Sha256::new();
    let root_abs = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    h.update(format!("canard data cache {FORMAT}\nroot {}\nsize {size}\nchannels {channels:?}\n", root_abs.display()));
    if by_class {
        h.update("by class\n"); // absent otherwise, so older entries keep their keys
    }
    for f in files {
        let rel = f.strip_prefix(root).unwrap_or(f);
        // Unreadable metadata hashes as zeros: that file will fail to decode anyway.
        let (len, mtime) = std::fs::metadata(f)
            .map(|m| {
                let t = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
                (m.len(), t.map_or(0, |d| d.as_nanos()))
            })
            .unwrap_or((0, 0));
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(format!("\0{len}\0{mtime}\n"));
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn paths(dir: &Path, key: &str) -> (PathBuf, PathBuf) {
    let stem = &key[..key.len().min(32)];
    (dir.join(format!("{stem}.json")), dir.join(format!("{stem}.u8")))
}

/// The cached dataset for `key` and the decode failures recorded with it, or why there is none.
/// `Ok(None)` is a plain miss; `Err` is an entry that exists but cannot be used.
pub fn load(dir: &Path, key: &str, source: &str) -> Result<Option<(Dataset, Skipped)>, String> {
    let (header_path, data_path) = paths(dir, key);
    let header = match std::fs::read(&header_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let h: Header = serde_json::from_slice(&header).map_err(|e| format!("bad header: {e}"))?;
    if h.format != FORMAT || h.key != key {
        return Err("written for other files or by another version".into());
    }
    // A damaged header may hold any numbers: every product is checked, so it can only
    // mean a rebuild, never an overflow panic or an allocation it did not pay for on disk.
    let expected = [h.channels, h.size, h.size]
        .into_iter()
        .try_fold(h.len, usize::checked_mul)
        .filter(|_| h.len > 0 && matches!(h.channels, 1 | 3))
        .ok_or_else(|| format!("impossible shape {} x {} x {}x{}", h.len, h.channels, h.size, h.size))?;
    let on_disk = std::fs::metadata(&data_path).map_err(|e| e.to_string())?.len();
    if on_disk != expected as u64 {
        return Err(format!("{on_disk} bytes where {expected} were expected"));
    }
    let pixels = std::fs::read(&data_path).map_err(|e| e.to_string())?;
    if checksum(&pixels) != h.checksum {
        return Err("checksum mismatch".into());
    }
    let labels_fit = h.labels.is_empty()
        || (h.labels.len() == h.len && h.labels.iter().all(|&l| (l as usize) < h.class_names.len()));
    if !labels_fit {
        return Err("labels that do not fit its pictures".into());
    }
    let examples = h.skipped_examples.into_iter().map(|(p, why)| (PathBuf::from(p), why)).collect();
    let skipped = Skipped { count: h.skipped, examples };
    let classes = super::Classes { names: h.class_names, labels: h.labels };
    let data = Dataset { source: source.to_string(), pixels, len: h.len, channels: h.channels, size: h.size, classes };
    Ok(Some((data, skipped)))
}

/// Stores `data` under `key` with its decode failures, then removes older entries of
/// the same folder. Returns the bytes written.
pub fn store(dir: &Path, key: &str, data: &Dataset, failed: &Skipped) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let (header_path, data_path) = paths(dir, key);
    write_atomic(&data_path, &data.pixels)?;
    let header = Header {
        format: FORMAT,
        key: key.to_string(),
        source: data.source.clone(),
        len: data.len,
        channels: data.channels,
        size: data.size,
        checksum: checksum(&data.pixels),
        skipped: failed.count,
        skipped_examples: failed.examples.iter().map(|(p, w)| (p.display().to_string(), w.clone())).collect(),
        class_names: data.classes.names.clone(),
        labels: data.classes.labels.clone(),
    };
    let json = serde_json::to_vec_pretty(&header).map_err(std::io::Error::other)?;
    write_atomic(&header_path, &json)?;
    prune(dir, &header_path, &data.source);
    Ok(data.pixels.len() as u64)
}

/// Removes the other entries of `source` (best effort: a failure leaves a stale file, no harm).
fn prune(dir: &Path, keep: &Path, source: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for p in entries.flatten().map(|e| e.path()) {
        if p == keep || p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let same = std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Header>(&b).ok())
            .is_some_and(|h| h.source == source);
        if same {
            let _ = std::fs::remove_file(&p);
            let _ = std::fs::remove_file(p.with_extension("u8"));
        }
    }
}

/// The bytes' CRC-32 in hex: catches a cut or scribbled file at several GB/s; not
/// cryptographic, nothing here is adversarial.
pub fn checksum(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Dataset {
        Dataset {
            source: "/pics".into(),
            pixels: (0..2 * 3 * 16).map(|v| v as u8).collect(),
            len: 2,
            channels: 3,
            size: 4,
            classes: crate::data::Classes { names: vec!["a".into(), "b".into()], labels: vec![1, 0] },
        }
    }

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let d = data();
        let failed = Skipped { count: 1, examples: vec![("/pics/bad.jpg".into(), "truncated".into())] };
        store(dir.path(), "ab12", &d, &failed).unwrap();
        let (got, skipped) = load(dir.path(), "ab12", "/pics").unwrap().unwrap();
        assert_eq!((got.pixels, got.len, got.channels, got.size), (d.pixels.clone(), 2, 3, 4));
        assert_eq!(got.classes, d.classes, "the classes come back with the pictures");
        assert_eq!(skipped.count, 1);
        assert_eq!(skipped.examples[0].0, PathBuf::from("/pics/bad.jpg"));
        assert!(load(dir.path(), "cd34", "/pics").unwrap().is_none(), "another key misses");

        // A flipped byte, a cut file, a garbled header: each is an error, so a rebuild.
        let (h, u) = paths(dir.path(), "ab12");
        let mut bytes = d.pixels.clone();
        bytes[5] ^= 1;
        std::fs::write(&u, &bytes).unwrap();
        assert!(load(dir.path(), "ab12", "/pics").unwrap_err().contains("checksum"));
        std::fs::write(&u, &d.pixels[..10]).unwrap();
        assert!(load(dir.path(), "ab12", "/pics").is_err());
        std::fs::write(&h, b"{not json").unwrap();
        assert!(load(dir.path(), "ab12", "/pics").is_err());
    }

    #[test]
    fn a_damaged_header_is_a_rebuild_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), "ab12", &data(), &Skipped::default()).unwrap();
        let (h, _) = paths(dir.path(), "ab12");
        let good: Header = serde_json::from_slice(&std::fs::read(&h).unwrap()).unwrap();
        let huge = usize::MAX / 2 + 1;
        // (len, channels, size): products that overflow, no images, two channels.
        for (len, channels, size) in [(2, huge, huge), (2, 3, usize::MAX), (huge, 3, 4), (0, 3, 4), (2, 2, 4)] {
            let bad = Header { len, channels, size, ..serde_json::from_slice(&std::fs::read(&h).unwrap()).unwrap() };
            std::fs::write(&h, serde_json::to_vec(&bad).unwrap()).unwrap();
            let err = load(dir.path(), "ab12", "/pics").unwrap_err();
            assert!(err.contains("shape") || err.contains("expected"), "{len} {channels} {size}: {err}");
        }
        std::fs::write(&h, serde_json::to_vec(&good).unwrap()).unwrap();
        assert!(load(dir.path(), "ab12", "/pics").unwrap().is_some());
    }

    #[test]
    fn a_new_entry_replaces_the_old_one_of_the_same_folder() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), "old0", &data(), &Skipped::default()).unwrap();
        let other = Dataset { source: "/other".into(), ..data() };
        store(dir.path(), "oth0", &other, &Skipped::default()).unwrap();
        store(dir.path(), "new0", &data(), &Skipped::default()).unwrap();
        let mut names: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["new0.json", "new0.u8", "oth0.json", "oth0.u8"]);
    }

    #[test]
    fn the_key_follows_files_size_and_channels() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.png");
        std::fs::write(&a, b"1234").unwrap();
        let files = vec![a.clone()];
        let k = key(dir.path(), &files, 64, None, false);
        assert_eq!(k, key(dir.path(), &files, 64, None, false));
        assert_ne!(k, key(dir.path(), &files, 32, None, false));
        assert_ne!(k, key(dir.path(), &files, 64, Some(3), false));
        assert_ne!(k, key(dir.path(), &files, 64, None, true), "read by class is another entry");
        std::fs::write(&a, b"12345").unwrap();
        assert_ne!(k, key(dir.path(), &files, 64, None, false), "a changed file changes the key");
        assert_ne!(checksum(b"abcdefgh1"), checksum(b"abcdefgh2"));
    }
}
