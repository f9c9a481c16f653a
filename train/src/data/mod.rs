//! Pictures → one in-memory NCHW f32 tensor in [-1, 1].
//!
//! `--data DIR` reads a folder of the user's pictures ([`folder`]); `--data builtin:NAME`
//! draws a dataset in code ([`builtin`]), so the project works with no download.

pub mod builtin;
pub mod folder;

use candle_core::{Device, Tensor};

/// Every training image, decoded, resized and normalised once.
#[derive(Debug)]
pub struct Dataset {
    /// Where it came from, as the user wrote it.
    pub source: String,
    /// N × C × S × S values, image after image.
    pub pixels: Vec<f32>,
    pub len: usize,
    pub channels: usize,
    pub size: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("{path} has no usable image ({skipped} files skipped); canard reads JPEG, PNG, WebP, GIF and BMP{detail}")]
    Empty { path: String, skipped: usize, detail: String },
    #[error("unknown built-in dataset {0:?}; built-in datasets: {list}", list = builtin::NAMES.join(", "))]
    UnknownBuiltin(String),
    #[error("channels must be 1 or 3, not {0}")]
    Channels(usize),
}

impl Dataset {
    /// Opens `spec`: `builtin:NAME` or a folder path.
    pub fn open(
        spec: &str,
        size: usize,
        channels: Option<usize>,
        seed: u64,
    ) -> Result<(Dataset, folder::Skipped), DataError> {
        if let Some(c) = channels {
            if c != 1 && c != 3 {
                return Err(DataError::Channels(c));
            }
        }
        match spec.strip_prefix("builtin:") {
            Some(name) => Ok((builtin::generate(name, size, channels.unwrap_or(3), seed)?, folder::Skipped::default())),
            None => folder::load(std::path::Path::new(spec), size, channels),
        }
    }

    pub fn image_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// The images at `indices`, as one [B, C, S, S] tensor.
    pub fn batch(&self, indices: &[usize], device: &Device) -> candle_core::Result<Tensor> {
        let n = self.image_len();
        let mut data = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            data.extend_from_slice(&self.pixels[i * n..(i + 1) * n]);
        }
        Tensor::from_vec(data, (indices.len(), self.channels, self.size, self.size), device)
    }
}
