//! Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

use std::path::Path;

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk and renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name =
        path.file_name().ok_or_else(|| std::io::Error::other(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(".{}.{}.tmp", file_name.to_string_lossy(), std::process::id()));
    let result = (|| {
        std::fs::write(&tmp, bytes)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e: std::io::Error| std::io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))
}

/// Removes the temporaries (`.NAME.PID.tmp`, files or checkpoint folders) that a killed
/// writer left in `dir`, when that process is gone; returns how many. A live process's
/// are left alone (on systems without /proc, none are touched).
pub fn remove_stale_temporaries(dir: &Path) -> usize {
    let proc_fs = Path::new("/proc/self").exists();
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = temporary_owner(&name) else { continue };
        if !proc_fs || pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let path = e.path();
        let gone = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed += gone.is_ok() as usize;
    }
    removed
}

/// The writer's process id in a temporary's name `.NAME.PID.tmp`.
fn temporary_owner(name: &str) -> Option<u32> {
    let stem = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    stem.rsplit_once('.')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let err = write_atomic(&dir.path().join("missing/a.json"), b"x").unwrap_err();
        assert!(err.to_string().contains("missing/a.json"), "{err}");
    }

    #[test]
    fn stale_temporaries_of_dead_writers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        // No process has pid 4194305 (above Linux's pid_max); this one is alive.
        let dead = dir.path().join(".generator.onnx.4194305.tmp");
        let dead_dir = dir.path().join(".step_00000007.4194305.tmp");
        let live = dir.path().join(format!(".model.json.{}.tmp", std::process::id()));
        let other = dir.path().join("model.json");
        std::fs::write(&dead, b"half").unwrap();
        std::fs::create_dir(&dead_dir).unwrap();
        std::fs::write(dead_dir.join("state.json"), b"{").unwrap();
        std::fs::write(&live, b"writing").unwrap();
        std::fs::write(&other, b"{}").unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()), 2);
        assert!(!dead.exists() && !dead_dir.exists() && live.exists() && other.exists());
        assert_eq!(temporary_owner(".a.b.12.tmp"), Some(12));
        assert_eq!(temporary_owner("a.12.tmp"), None);
    }
}
