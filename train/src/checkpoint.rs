//! Checkpoints: `runs/NAME/checkpoints/step_NNNNNNNN/` holding `tensors.safetensors`
//! (both networks, the EMA generator, both optimisers' moments) and `state.json`
//! (counters, data position, RNG state). A checkpoint is written into a temporary
//! folder and renamed into place, so one either exists whole or not at all; the last
//! K are kept. Resuming from one continues the run bit for bit on the CPU.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub const DIR: &str = "checkpoints";
pub const TENSORS: &str = "tensors.safetensors";
const STATE: &str = "state.json";
const FORMAT: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    /// Generator updates done.
    pub step: usize,
    /// Epochs finished (sample grids written).
    pub epochs_done: usize,
    /// The data cursor: current epoch (0-based) and batches consumed in it.
    pub cursor_epoch: usize,
    pub cursor_pos: usize,
    pub rng: RngState,
    pub opt_g_t: u64,
    pub opt_d_t: u64,
    pub ema_updates: u64,
    pub guard_streak: usize,
    pub images_seen: u64,
    /// Training time before this checkpoint, for the manifest's summary.
    pub seconds: f64,
    /// ADA's probability and counters (`--ada-target`); absent in older checkpoints.
    #[serde(default)]
    pub ada: Option<crate::augment::Ada>,
    /// What the run's first weights came from (`--init-from`), for the manifest.
    #[serde(default)]
    pub started_from: Option<canard_shared::manifest::StartedFrom>,
    /// A conditional run's classes (names in index order, pictures of each); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<canard_shared::manifest::Class>,
}

/// ChaCha8's full state: seed, stream and position (u128 as text: JSON numbers are f64).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: String,
    pub stream: u64,
    pub word_pos: String,
}

impl RngState {
    pub fn of(rng: &ChaCha8Rng) -> Self {
        Self {
            seed: rng.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    pub fn restore(&self) -> anyhow::Result<ChaCha8Rng> {
        let bytes: Vec<u8> = (0..self.seed.len())
            .step_by(2)
            .map(|i| self.seed.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<_>>()
            .context("RNG seed is not hex")?;
        let seed: [u8; 32] = bytes.try_into().map_err(|_| anyhow::anyhow!("RNG seed is not 32 bytes"))?;
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos.parse().context("RNG position is not a number")?);
        Ok(rng)
    }
}

/// Writes checkpoint `state.step` and prunes all but the newest `keep`.
pub fn save(run_dir: &Path, tensors: &HashMap<String, Tensor>, state: &State, keep: usize) -> anyhow::Result<PathBuf> {
    let root = run_dir.join(DIR);
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let name = format!("step_{:08}", state.step);
    let final_dir = root.join(&name);
    let tmp = root.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    candle_core::safetensors::save(tensors, tmp.join(TENSORS))
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::write(tmp.join(STATE), serde_json::to_vec_pretty(state)?)?;
    for f in [TENSORS, STATE] {
        std::fs::File::open(tmp.join(f))?.sync_all()?;
    }
    if final_dir.exists() {
        discard(&final_dir).with_context(|| format!("cannot replace {}", final_dir.display()))?;
    }
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("cannot move checkpoint into {}", final_dir.display()))?;
    if let Ok(d) = std::fs::File::open(&root) {
        let _ = d.sync_all();
    }
    for old in list(run_dir).into_iter().rev().skip(keep) {
        let _ = discard(&old);
    }
    Ok(final_dir)
}

/// Deletes a checkpoint folder so that it is never seen half-deleted: it is renamed to a
/// temporary name first (one atomic step), then removed; a kill in between leaves a
/// temporary that the next run clears (`atomic::remove_stale_temporaries`). The name is
/// not the one [`save`] writes into, which may be in use for the same step.
fn discard(dir: &Path) -> std::io::Result<()> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let aside = dir.with_file_name(format!(".{name}.old.{}.tmp", std::process::id()));
    std::fs::rename(dir, &aside)?;
    std::fs::remove_dir_all(&aside)
}

/// Moves a checkpoint that does not read back out of the way, as `damaged-step_NNNNNNNN`
/// (numbered if that is taken), so the run goes on from the one before and can save that
/// step again; the files are kept for a look. Returns where it went.
fn set_aside(dir: &Path) -> std::io::Result<PathBuf> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let free = (1..).map(|i| match i {
        1 => dir.with_file_name(format!("damaged-{name}")),
        i => dir.with_file_name(format!("damaged-{name}-{i}")),
    });
    let aside = free.take(1000).find(|p| !p.exists()).ok_or_else(|| std::io::Error::other("no free name"))?;
    std::fs::rename(dir, &aside)?;
    Ok(aside)
}

/// Checkpoint folders (`step_` and eight digits), oldest first (the zero-padded step sorts them).
pub fn list(run_dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(run_dir.join(DIR))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    let is_step =
        |n: &str| n.strip_prefix("step_").is_some_and(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()));
    dirs.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_step) && p.is_dir());
    dirs.sort();
    dirs
}

/// The newest checkpoint that reads back completely, with its tensors. A damaged one is
/// reported and set aside ([`set_aside`]); one unreadable for another reason (permissions,
/// another format, the device) is reported and left where it is.
pub fn latest(run_dir: &Path, device: &Device) -> Option<(PathBuf, State, HashMap<String, Tensor>)> {
    for dir in list(run_dir).into_iter().rev() {
        match read_checked(&dir, device) {
            Ok((state, tensors)) => return Some((dir, state, tensors)),
            Err(Unusable::Damaged(e)) => match set_aside(&dir) {
                Ok(aside) => eprintln!(
                    "warning: checkpoint {} is damaged ({e:#}); moved it to {} (kept for a look: delete it when \
                     done) and going on from the one before",
                    dir.display(),
                    aside.display()
                ),
                Err(m) => {
                    eprintln!("warning: ignoring damaged checkpoint {} ({e:#}); cannot move it: {m}", dir.display())
                }
            },
            Err(Unusable::Other(e)) => eprintln!("warning: cannot read checkpoint {}: {e:#}", dir.display()),
        }
    }
    None
}

/// Why a checkpoint folder cannot be used.
enum Unusable {
    /// Its files are missing, cut short or garbage: nothing will make it readable.
    Damaged(anyhow::Error),
    /// Not the checkpoint's fault: a permission, a disk error, a newer format, the device.
    Other(anyhow::Error),
}

/// Reads one checkpoint folder (both files, checked).
pub fn read(dir: &Path, device: &Device) -> anyhow::Result<(State, HashMap<String, Tensor>)> {
    read_checked(dir, device).map_err(|(Unusable::Damaged(e) | Unusable::Other(e))| e)
}

fn read_checked(dir: &Path, device: &Device) -> Result<(State, HashMap<String, Tensor>), Unusable> {
    let file = |name: &str| match std::fs::read(dir.join(name)) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Unusable::Damaged(anyhow::anyhow!("{name} is missing")))
        }
        Err(e) => Err(Unusable::Other(anyhow::anyhow!("cannot read {name}: {e}"))),
    };
    let state: State = serde_json::from_slice(&file(STATE)?)
        .map_err(|e| Unusable::Damaged(anyhow::Error::new(e).context("state.json is corrupt")))?;
    if state.format != FORMAT {
        let why =
            anyhow::anyhow!("checkpoint format {} is not {FORMAT} (another version of canard wrote it)", state.format);
        return Err(Unusable::Other(why));
    }
    // Parsed on the CPU first, so a device that cannot take the tensors is not mistaken for damage.
    let cpu = candle_core::safetensors::load_buffer(&file(TENSORS)?, &Device::Cpu)
        .map_err(|e| Unusable::Damaged(anyhow::Error::new(e).context("tensors.safetensors is unreadable")))?;
    let tensors = cpu
        .into_iter()
        .map(|(k, t)| Ok((k, t.to_device(device)?)))
        .collect::<candle_core::Result<_>>()
        .map_err(|e| Unusable::Other(anyhow::Error::new(e).context("cannot move the checkpoint to the device")))?;
    Ok((state, tensors))
}

/// A run's state before its first step.
pub fn new_state() -> State {
    State { format: FORMAT, rng: RngState::of(&ChaCha8Rng::seed_from_u64(0)), ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn rng_state_round_trips_mid_stream() {
        let mut rng = ChaCha8Rng::seed_from_u64(99);
        for _ in 0..37 {
            rng.random::<u32>();
        }
        let mut back = RngState::of(&rng).restore().unwrap();
        for _ in 0..100 {
            assert_eq!(rng.random::<u64>(), back.random::<u64>());
        }
    }

    #[test]
    fn keeps_the_newest_and_skips_broken_ones() {
        let dir = tempfile::tempdir().unwrap();
        let t: HashMap<String, Tensor> = [("a".to_string(), Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap())].into();
        for step in [5, 10, 15, 20] {
            save(dir.path(), &t, &State { step, ..new_state() }, 2).unwrap();
        }
        let names: Vec<String> =
            list(dir.path()).iter().map(|p| p.file_name().unwrap().to_string_lossy().into()).collect();
        assert_eq!(names, ["step_00000015", "step_00000020"]);
        std::fs::write(dir.path().join(DIR).join("step_00000020").join(STATE), b"{ half").unwrap();
        let (_, state, tensors) = latest(dir.path(), &Device::Cpu).unwrap();
        assert_eq!(state.step, 15);
        assert_eq!(tensors["a"].to_vec1::<f32>().unwrap(), [1.0, 2.0]);
    }

    /// A truncated newest checkpoint is moved aside, and the run saves that step again
    /// (the move once reused save's temporary name: "Directory not empty", every re-run).
    #[test]
    fn a_damaged_newest_checkpoint_is_moved_aside_and_its_step_saved_again() {
        let dir = tempfile::tempdir().unwrap();
        let t: HashMap<String, Tensor> = [("a".to_string(), Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap())].into();
        for step in [29, 30] {
            save(dir.path(), &t, &State { step, ..new_state() }, 3).unwrap();
        }
        let newest = dir.path().join(DIR).join("step_00000030");
        let file = std::fs::OpenOptions::new().write(true).open(newest.join(TENSORS)).unwrap();
        file.set_len(10).unwrap();
        for round in 1..=2 {
            let (_, state, _) = latest(dir.path(), &Device::Cpu).unwrap();
            assert_eq!(state.step, 29);
            let aside = match round {
                1 => dir.path().join(DIR).join("damaged-step_00000030"),
                _ => dir.path().join(DIR).join("damaged-step_00000030-2"),
            };
            assert!(aside.join(TENSORS).is_file(), "round {round}: the damaged files are kept");
            save(dir.path(), &t, &State { step: 30, ..new_state() }, 3).unwrap();
            assert_eq!(latest(dir.path(), &Device::Cpu).unwrap().1.step, 30);
            // Damaged again, to see the second one gets a name of its own.
            std::fs::OpenOptions::new().write(true).open(newest.join(TENSORS)).unwrap().set_len(10).unwrap();
        }
        let names: Vec<String> =
            list(dir.path()).iter().map(|p| p.file_name().unwrap().to_string_lossy().into()).collect();
        assert_eq!(names, ["step_00000029", "step_00000030"], "damaged folders are not checkpoints");

        // A checkpoint of another format is not damaged: passed over, left where it is.
        save(dir.path(), &t, &State { step: 31, format: FORMAT + 1, ..new_state() }, 3).unwrap();
        assert_eq!(latest(dir.path(), &Device::Cpu).unwrap().1.step, 29);
        assert!(dir.path().join(DIR).join("step_00000031").is_dir());
    }
}
