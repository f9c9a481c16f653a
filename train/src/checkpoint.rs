//! `runs/NAME/checkpoint.safetensors` (both networks) + `checkpoint.json` (counters).

use std::path::Path;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::atomic::{write_atomic, write_atomic_with};
use crate::model::Params;

pub const TENSORS_FILE: &str = "checkpoint.safetensors";
pub const STATE_FILE: &str = "checkpoint.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    pub step: usize,
    pub epoch: usize,
    pub seed: u64,
}

/// Saves the tensors, then the state: the state file only ever names a complete tensor file.
pub fn save(dir: &Path, g: &Params, d: &Params, state: &CheckpointState) -> anyhow::Result<()> {
    let mut tensors = g.tensors("g.");
    tensors.extend(d.tensors("d."));
    write_atomic_with(&dir.join(TENSORS_FILE), |tmp| {
        candle_core::safetensors::save(&tensors, tmp).map_err(std::io::Error::other)
    })?;
    write_atomic(&dir.join(STATE_FILE), serde_json::to_string_pretty(state)?.as_bytes())?;
    Ok(())
}

/// Loads both networks' tensors into `g` and `d`, and returns the counters.
pub fn load(dir: &Path, g: &Params, d: &Params, device: &Device) -> anyhow::Result<CheckpointState> {
    let path = dir.join(STATE_FILE);
    let state: CheckpointState = serde_json::from_slice(
        &std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
    )
    .map_err(|e| anyhow::anyhow!("{} is corrupt: {e}", path.display()))?;
    let path = dir.join(TENSORS_FILE);
    let tensors = candle_core::safetensors::load(&path, device)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    g.load(&tensors, "g.")?;
    d.load(&tensors, "d.")?;
    Ok(state)
}
