//! Pictures → one in-memory array of 8-bit NCHW images, served as f32 batches in [-1, 1].
//!
//! `--data DIR` reads a folder of the user's pictures ([`folder`], decoded in parallel and
//! cached on disk by [`cache`]); `--data builtin:NAME` draws a dataset in code
//! ([`builtin`]), so the project works with no download.
//!
//! Pixels stay 8-bit in memory (the files are 8-bit anyway): 5,000 photos at 256² RGB
//! are 983 MB as bytes but 3.9 GB as f32. Batches are converted when they are assembled.

pub mod builtin;
pub mod cache;
pub mod folder;

use std::path::Path;

use canard_shared::image::from_u8;
use candle_core::{DType, Device, Tensor};

/// Every training image, decoded, resized and quantised to bytes once.
#[derive(Debug, Default)]
pub struct Dataset {
    /// Where it came from, as the user wrote it.
    pub source: String,
    /// N × C × S × S bytes (0 ↔ -1.0, 255 ↔ 1.0), image after image, planar.
    pub pixels: Vec<u8>,
    pub len: usize,
    pub channels: usize,
    pub size: usize,
    /// Its kinds of picture, when read by class (`--classes`); empty otherwise.
    pub classes: Classes,
}

/// Where pictures' classes come from (`--classes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ClassSource {
    /// One kind of picture: subfolders are only where pictures are kept.
    #[default]
    None,
    /// Each picture's class is its first-level subfolder under the data folder.
    Subfolders,
}

/// A dataset's kinds of picture (`--classes subfolders`): their names in index order
/// (sorted, as the subfolders are) and each picture's class index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Classes {
    pub names: Vec<String>,
    pub labels: Vec<u32>,
}

impl Classes {
    /// The classes of the pictures at `indices` as a [B] u32 tensor; None when the data
    /// has no classes.
    pub fn batch(&self, indices: &[usize], device: &Device) -> candle_core::Result<Option<Tensor>> {
        if self.names.is_empty() {
            return Ok(None);
        }
        let labels: Vec<u32> = indices.iter().map(|&i| self.labels[i]).collect();
        Ok(Some(Tensor::from_vec(labels, indices.len(), device)?))
    }
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
    #[error("--classes subfolders: {0}")]
    Classes(String),
}

impl Dataset {
    /// Opens `spec`: `builtin:NAME` or a folder path. A folder's decoded pictures are
    /// cached in `cache_dir` (when given), so the next run with the same files, size and
    /// channels starts at once; built-in datasets are drawn quickly and never cached.
    /// `by_class`: each picture's class is its first-level subfolder (a built-in set's kind).
    pub fn open(
        spec: &str,
        size: usize,
        channels: Option<usize>,
        seed: u64,
        cache_dir: Option<&Path>,
        by_class: bool,
    ) -> Result<(Dataset, folder::Skipped), DataError> {
        if let Some(c) = channels.filter(|&c| c != 1 && c != 3) {
            return Err(DataError::Channels(c));
        }
        match spec.strip_prefix("builtin:") {
            Some(name) => {
                let mut data = builtin::generate(name, size, channels.unwrap_or(3), seed)?;
                if !by_class {
                    data.classes = Classes::default();
                }
                Ok((data, folder::Skipped::default()))
            }
            None => folder::load(Path::new(spec), size, channels, cache_dir, by_class),
        }
    }

    /// Its pictures of the class named `name` alone (None when it has no such class).
    pub fn of_class(&self, name: &str) -> Option<Dataset> {
        let c = self.classes.names.iter().position(|n| n == name)? as u32;
        let keep: Vec<usize> = (0..self.len).filter(|&i| self.classes.labels[i] == c).collect();
        let pixels = keep.iter().flat_map(|&i| self.image_u8(i).iter().copied()).collect();
        let classes = Classes { names: self.classes.names.clone(), labels: vec![c; keep.len()] };
        Some(Dataset { source: format!("{} ({name})", self.source), pixels, len: keep.len(), classes, ..*self })
    }

    /// Its classes with their pictures, in index order (empty when it has none).
    pub fn class_list(&self) -> Vec<canard_shared::manifest::Class> {
        let mut counts = vec![0; self.classes.names.len()];
        for &l in &self.classes.labels {
            counts[l as usize] += 1;
        }
        self.classes
            .names
            .iter()
            .zip(counts)
            .map(|(n, images)| canard_shared::manifest::Class { name: n.clone(), images })
            .collect()
    }

    pub fn image_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// Image `i`'s bytes, planar [C, S, S].
    pub fn image_u8(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The images at `indices` as f32 in [-1, 1], one after another (for metrics that
    /// want plain slices rather than tensors).
    pub fn to_f32(&self, indices: &[usize]) -> Vec<f32> {
        indices.iter().flat_map(|&i| self.image_u8(i).iter().map(|&v| from_u8(v))).collect()
    }

    /// The pixels as one [N, C, S, S] u8 tensor on `device`, for [`batch_from`]: uploaded
    /// once, so that each batch is picked and converted there, not sent from the host.
    pub fn upload(&self, device: &Device) -> candle_core::Result<Tensor> {
        Tensor::from_slice(&self.pixels, (self.len, self.channels, self.size, self.size), device)
    }

    /// The images at `indices`, as one [B, C, S, S] f32 tensor in [-1, 1]; image k mirrored
    /// left–right where `flip[k]`.
    pub fn batch(&self, indices: &[usize], flip: Option<&[bool]>, device: &Device) -> candle_core::Result<Tensor> {
        check_batch(self.len, indices, flip)?;
        let s = self.size;
        let mut data = Vec::with_capacity(indices.len() * self.image_len());
        for (k, &i) in indices.iter().enumerate() {
            let img = self.image_u8(i);
            if flip.is_some_and(|f| f[k]) {
                for row in img.chunks_exact(s) {
                    data.extend(row.iter().rev().map(|&v| from_u8(v)));
                }
            } else {
                data.extend(img.iter().map(|&v| from_u8(v)));
            }
        }
        Tensor::from_vec(data, (indices.len(), self.channels, s, s), device)
    }
}

/// [`Dataset::batch`] from pixels that
/// [`Dataset::upload`] put on a device: the same numbers, computed on that device.
pub fn batch_from(pixels: &Tensor, indices: &[usize], flip: Option<&[bool]>) -> candle_core::Result<Tensor> {
    let (len, _, _, s) = pixels.dims4()?;
    let device = pixels.device();
    check_batch(len, indices, flip)?;
    let n = indices.len();
    let index = Tensor::from_vec(indices.iter().map(|&i| i as u32).collect::<Vec<u32>>(), n, device)?;
    let mut x = pixels.index_select(&index, 0)?;
    if let Some(flip) = flip.filter(|f| f.iter().any(|&b| b)) {
        let reversed = Tensor::from_vec((0..s as u32).rev().collect::<Vec<u32>>(), s, device)?;
        let mask = Tensor::from_vec(flip.iter().map(|&b| b as u8).collect::<Vec<u8>>(), (n, 1, 1, 1), device)?;
        x = mask.broadcast_as(x.shape())?.where_cond(&x.index_select(&reversed, 3)?, &x)?;
    }
    // As `from_u8`: v / 127.5 − 1, in f32 (division, not a multiplication by 1/127.5, for the same bits).
    x.to_dtype(DType::F32)?.broadcast_div(&Tensor::new(127.5f32, device)?)?.affine(1.0, -1.0)
}

/// A batch of a dataset of `len` images: every index in range, one flip flag per image.
fn check_batch(len: usize, indices: &[usize], flip: Option<&[bool]>) -> candle_core::Result<()> {
    if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
        candle_core::bail!("image {bad} asked of a dataset of {len}");
    }
    if let Some(f) = flip.filter(|f| f.len() != indices.len()) {
        candle_core::bail!("{} flip flags for a batch of {}", f.len(), indices.len());
    }
    Ok(())
}

#[cfg(test)]
impl Dataset {
    /// The first `n` images, as a data set of their own (tests that need a small one).
    pub fn first(&self, n: usize) -> Dataset {
        let pixels = self.pixels[..n * self.image_len()].to_vec();
        let labels = self.classes.labels.iter().take(n).copied().collect();
        let classes = Classes { names: self.classes.names.clone(), labels };
        Dataset { source: self.source.clone(), pixels, len: n, channels: self.channels, size: self.size, classes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two grey 2×2 images, bytes 0, 30, …, 210.
    fn tiny() -> Dataset {
        Dataset {
            source: "t".into(),
            pixels: (0..8).map(|v| v * 30).collect(),
            len: 2,
            channels: 1,
            size: 2,
            ..Default::default()
        }
    }

    #[test]
    fn batches_convert_bytes_and_mirror_rows() {
        let d = tiny();
        let b = d.batch(&[1, 0], None, &Device::Cpu).unwrap();
        assert_eq!(b.dims(), [2, 1, 2, 2]);
        let v = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want: Vec<f32> = [120u8, 150, 180, 210, 0, 30, 60, 90].iter().map(|&x| from_u8(x)).collect();
        assert_eq!(v, want);
        let m = d.batch(&[1, 0], Some(&[true, false]), &Device::Cpu).unwrap();
        let v = m.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let want: Vec<f32> = [150u8, 120, 210, 180, 0, 30, 60, 90].iter().map(|&x| from_u8(x)).collect();
        assert_eq!(v, want);
        assert_eq!(d.to_f32(&[0]), want[4..]);
    }

    #[test]
    fn batches_from_uploaded_pixels_are_the_same_bits() {
        let len = 5;
        let pixels: Vec<u8> = (0..len * 3 * 4 * 4).map(|i| (i * 37 % 256) as u8).collect();
        let d = Dataset { source: "t".into(), pixels, len, channels: 3, size: 4, ..Default::default() };
        let up = d.upload(&Device::Cpu).unwrap();
        let bits = |t: &Tensor| -> Vec<u32> {
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
        };
        let idx = [4, 0, 2, 2];
        assert_eq!(bits(&batch_from(&up, &idx, None).unwrap()), bits(&d.batch(&idx, None, &Device::Cpu).unwrap()));
        let flip = [true, false, true, false];
        assert_eq!(
            bits(&batch_from(&up, &idx, Some(&flip)).unwrap()),
            bits(&d.batch(&idx, Some(&flip), &Device::Cpu).unwrap())
        );
        // Every byte value converts as from_u8 does.
        let all = Dataset {
            source: "t".into(),
            pixels: (0..=255).collect(),
            len: 1,
            channels: 1,
            size: 16,
            ..Default::default()
        };
        let got = bits(&batch_from(&all.upload(&Device::Cpu).unwrap(), &[0], None).unwrap());
        let want: Vec<u32> = (0..=255u8).map(|v| from_u8(v).to_bits()).collect();
        assert_eq!(got, want);
        assert!(batch_from(&up, &[5], None).is_err());
        assert!(batch_from(&up, &[0, 1], Some(&[true])).is_err());
    }

    #[test]
    fn bad_indices_and_flags_are_errors_not_panics() {
        let d = tiny();
        assert!(d.batch(&[2], None, &Device::Cpu).is_err());
        assert!(d.batch(&[0, 1], Some(&[true]), &Device::Cpu).is_err());
    }
}
