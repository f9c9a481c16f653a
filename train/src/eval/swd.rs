//! Multi-scale sliced Wasserstein distance (SWD), as ProGAN measures it (Karras et al.
//! 2018, "Progressive Growing of GANs", appendix D; `metrics/sliced_wasserstein.py` in
//! github.com/tkarras/progressive_growing_of_gans).
//!
//! Each image becomes a Laplacian pyramid (5×5 binomial filter, mirrored borders, as
//! `cv2.pyrDown`/`pyrUp`) down to 16×16; from each level 128 random 7×7 patches per image
//! are taken as descriptors. Per level and per set, the descriptors are normalised per
//! colour channel (mean 0, std 1 over that set's patches: the reference's
//! `finalize_descriptors`, applied to real and fake sets separately), then the two sets'
//! distributions are compared by the 1-D Wasserstein distance along 4 × 128 random unit
//! directions (sort both projections, average the absolute differences). Values are
//! printed ×1e3, as the paper's tables. Lower is better; the coarsest level measures
//! overall colour and layout, the finest level texture and detail.
//!
//! Differences from the reference, and why:
//! - the same patch positions are used for image i of both sets (the reference draws
//!   them independently): as unbiased, and a set compared with itself gives exactly 0;
//! - a level whose channel has zero spread is only centred (the reference divides by 0);
//! - images smaller than 16 px get one level at their own size, with patches shrunk to
//!   fit below 7 px;
//! - grey images have 1 channel (the reference asserts RGB).
//!
//! The inputs are NCHW bytes, as the reference's uint8 images; generator output is rounded
//! to them first (`canard_shared::image::to_u8`, as canard's PNGs are).

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// The reference's parameters.
pub const NHOOD_SIZE: usize = 7;
pub const NHOODS_PER_IMAGE: usize = 128;
pub const DIR_REPEATS: usize = 4;
pub const DIRS_PER_REPEAT: usize = 128;
/// The pyramid stops at the first level smaller than this.
pub const MIN_RESOLUTION: usize = 16;

/// A borrowed batch of `len` square NCHW 8-bit images.
#[derive(Debug, Clone, Copy)]
pub struct ImageSet<'a> {
    pub pixels: &'a [u8],
    pub len: usize,
    pub channels: usize,
    pub size: usize,
}

impl<'a> ImageSet<'a> {
    pub fn new(pixels: &'a [u8], len: usize, channels: usize, size: usize) -> Self {
        ImageSet { pixels, len, channels, size }
    }

    fn check(&self, which: &str) -> Result<(), SwdError> {
        // Checked: the sizes may come from anywhere, and a product that overflows is just wrong.
        let expected = [self.channels, self.size, self.size].iter().try_fold(self.len, |acc, &d| acc.checked_mul(d));
        if self.len == 0 || self.channels == 0 || self.size == 0 || expected != Some(self.pixels.len()) {
            return Err(SwdError::Shape(format!(
                "{which} set: {} values do not make {} images of {}×{}×{}",
                self.pixels.len(),
                self.len,
                self.channels,
                self.size,
                self.size
            )));
        }
        Ok(())
    }
}

/// SWD ×1e3 per pyramid level (finest first) and their mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwdReport {
    /// (resolution in pixels, SWD ×1e3)
    pub levels: Vec<(usize, f64)>,
    pub mean: f64,
}

impl std::fmt::Display for SwdReport {
    /// A small table, one line per level, then the mean.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:>10}  {:>10}", "resolution", "SWD ×1e3")?;
        for (res, v) in &self.levels {
            writeln!(f, "{:>10}  {v:>10.3}", format!("{res}×{res}"))?;
        }
        write!(f, "{:>10}  {:>10.3}", "mean", self.mean)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SwdError {
    #[error("cannot compute SWD: {0}")]
    Shape(String),
    #[error("SWD projection failed: {0}")]
    Compute(#[from] candle_core::Error),
}

/// The multi-scale SWD between two sets of equally many images of the same shape.
/// Deterministic for a given `seed` (patch positions and directions).
pub fn sliced_wasserstein(a: &ImageSet, b: &ImageSet, seed: u64) -> Result<SwdReport, SwdError> {
    a.check("first")?;
    b.check("second")?;
    if (a.len, a.channels, a.size) != (b.len, b.channels, b.size) {
        return Err(SwdError::Shape(format!(
            "the sets differ: {} images of {}×{}×{} against {} of {}×{}×{} (the distance compares equally many)",
            a.len, a.channels, a.size, a.size, b.len, b.channels, b.size, b.size
        )));
    }
    let sizes = level_sizes(a.size);
    let pyr_a = pyramids(a, sizes.len());
    let pyr_b = pyramids(b, sizes.len());
    let mut levels = Vec::with_capacity(sizes.len());
    for (l, &s) in sizes.iter().enumerate() {
        let positions = patch_positions(a.len, s, seed, l as u64);
        let da = descriptors(&pyr_a[l], a.channels, s, &positions);
        let db = descriptors(&pyr_b[l], a.channels, s, &positions);
        let mut dirs_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5357_445f_4449_5253); // "SWD_DIRS"
        dirs_rng.set_stream(l as u64);
        levels.push((s, 1e3 * swd(da, db, &mut dirs_rng)?));
    }
    let mean = levels.iter().map(|(_, v)| v).sum::<f64>() / levels.len() as f64;
    Ok(SwdReport { levels, mean })
}

/// Level sizes, finest first: halving while at least [`MIN_RESOLUTION`]; one level for small images.
fn level_sizes(size: usize) -> Vec<usize> {
    std::iter::successors(Some(size), |&s| (s / 2 >= MIN_RESOLUTION).then(|| s.div_ceil(2))).collect()
}

// ---------------------------------------------------------------------------------------
// Laplacian pyramids, as the reference's pyr_down / pyr_up (which match OpenCV's).

/// The 1-D binomial filter [1, 4, 6, 4, 1] / 16; its outer product is the 5×5 Gaussian.
const BINOMIAL: [f32; 5] = [1.0 / 16.0, 4.0 / 16.0, 6.0 / 16.0, 4.0 / 16.0, 1.0 / 16.0];

/// scipy.ndimage's `mode='mirror'`: reflect about the edge pixels' centres (d c b | a b c d | c b a).
fn mirror(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let i = i.rem_euclid(period);
    (if i >= n as isize { period - i } else { i }) as usize
}

/// Separable filtering of an `h`×`w` plane with `k` (mirrored borders), keeping every
/// `step`-th row and column of the result: out is ceil(h/step) × ceil(w/step).
fn filter(plane: &[f32], h: usize, w: usize, k: &[f32; 5], step: usize) -> Vec<f32> {
    let (oh, ow) = (h.div_ceil(step), w.div_ceil(step));
    let mut rows = vec![0.0f32; h * ow];
    for y in 0..h {
        for j in 0..ow {
            let x = (j * step) as isize;
            rows[y * ow + j] = (0..5).map(|t| k[t] * plane[y * w + mirror(x + t as isize - 2, w)]).sum();
        }
    }
    let mut out = vec![0.0f32; oh * ow];
    for i in 0..oh {
        let y = (i * step) as isize;
        for j in 0..ow {
            out[i * ow + j] = (0..5).map(|t| k[t] * rows[mirror(y + t as isize - 2, h) * ow + j]).sum();
        }
    }
    out
}

/// Blur and keep even rows and columns.
fn pyr_down(plane: &[f32], n: usize) -> Vec<f32> {
    filter(plane, n, n, &BINOMIAL, 2)
}

/// Zero-insert `low` (m×m) into an n×n plane and blur with 4× the kernel (2× per axis).
fn pyr_up(low: &[f32], m: usize, n: usize) -> Vec<f32> {
    let mut z = vec![0.0f32; n * n];
    for i in 0..m.min(n.div_ceil(2)) {
        for j in 0..m.min(n.div_ceil(2)) {
            z[2 * i * n + 2 * j] = low[i * m + j];
        }
    }
    filter(&z, n, n, &BINOMIAL.map(|v| 2.0 * v), 1)
}

/// Per level, the whole set at that level's size ([N, C, s, s], flat). The last level
/// is the low-pass residue, the others band-pass (Laplacian) detail.
fn pyramids(set: &ImageSet, levels: usize) -> Vec<Vec<f32>> {
    let (c, s) = (set.channels, set.size);
    let per_image: Vec<Vec<Vec<f32>>> = (0..set.len)
        .into_par_iter()
        .map(|i| {
            let mut out = vec![Vec::new(); levels];
            for ch in 0..c {
                let start = (i * c + ch) * s * s;
                let mut cur: Vec<f32> = set.pixels[start..start + s * s].iter().map(|&v| f32::from(v)).collect();
                let mut n = s;
                for level in out.iter_mut().take(levels - 1) {
                    let low = pyr_down(&cur, n);
                    let m = n.div_ceil(2);
                    for (v, u) in cur.iter_mut().zip(pyr_up(&low, m, n)) {
                        *v -= u;
                    }
                    level.extend_from_slice(&cur);
                    (cur, n) = (low, m);
                }
                out[levels - 1].extend_from_slice(&cur);
            }
            out
        })
        .collect();
    // One flat buffer per level, so patch extraction indexes it directly.
    (0..levels).map(|l| per_image.iter().flat_map(|img| img[l].iter().copied()).collect()).collect()
}

// ---------------------------------------------------------------------------------------
// Patches → normalised descriptors.

/// The side of the patches at a level of size `s`: 7, or the largest odd size that fits.
fn patch_size(s: usize) -> usize {
    NHOOD_SIZE.min(if s % 2 == 1 { s } else { s - 1 })
}

/// Patch centres (y, x), [`NHOODS_PER_IMAGE`] per image, uniform over the positions where
/// the patch fits (numpy's `randint(H, S - H)`).
fn patch_positions(images: usize, s: usize, seed: u64, level: u64) -> Vec<(usize, usize)> {
    let h = patch_size(s) / 2;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(level);
    (0..images * NHOODS_PER_IMAGE).map(|_| (rng.random_range(h..s - h), rng.random_range(h..s - h))).collect()
}

/// The descriptors of a set, one per patch, normalised per channel over the whole set.
/// Stored transposed, `dim` rows (channel, dy, dx) of `patches` values: the projection
/// is then one plain [K, D] × [D, N] product, giving a row of N values per direction.
struct Descriptors {
    values: Vec<f32>,
    patches: usize,
    dim: usize,
}

/// The patches at `positions` (centres, [`NHOODS_PER_IMAGE`] per image) of one pyramid level.
fn descriptors(level: &[f32], c: usize, s: usize, positions: &[(usize, usize)]) -> Descriptors {
    let p = patch_size(s);
    let (h, area, n) = (p / 2, p * p, positions.len());
    let mut values = vec![0.0f32; c * area * n];
    values.par_chunks_mut(n).enumerate().for_each(|(row, out)| {
        let (ch, dy, dx) = (row / area, row % area / p, row % p);
        for (j, (o, &(cy, cx))) in out.iter_mut().zip(positions).enumerate() {
            let plane = (j / NHOODS_PER_IMAGE * c + ch) * s * s;
            *o = level[plane + (cy + dy - h) * s + cx + dx - h];
        }
    });
    // Each channel to mean 0 and (population) std 1 over all its rows, as the reference.
    values.par_chunks_mut(area * n).for_each(|channel| {
        let (sum, sq) =
            channel.iter().fold((0.0f64, 0.0f64), |(a, b), &v| (a + f64::from(v), b + f64::from(v).powi(2)));
        let count = channel.len() as f64;
        let mean = sum / count;
        let std = (sq / count - mean * mean).max(0.0).sqrt();
        // A constant channel has nothing to scale; the reference would divide by zero.
        let inv = if std > 1e-9 { 1.0 / std } else { 1.0 };
        let (mean, inv) = (mean as f32, inv as f32);
        for v in channel {
            *v = (*v - mean) * inv;
        }
    });
    Descriptors { values, patches: n, dim: c * area }
}

// ---------------------------------------------------------------------------------------
// Sliced Wasserstein distance between two descriptor sets.

/// Mean over [`DIR_REPEATS`] × [`DIRS_PER_REPEAT`] random unit directions of the 1-D
/// Wasserstein-1 distance between the projected sets.
fn swd(a: Descriptors, b: Descriptors, rng: &mut ChaCha8Rng) -> Result<f64, SwdError> {
    let (n, dim) = (a.patches, a.dim);
    // candle's CPU matmul (the gemm crate: SIMD, multi-threaded) does the projections:
    // 2 × 4 × (N × D × 128) multiply-adds per level is most of the work.
    let ta = Tensor::from_vec(a.values, (dim, n), &Device::Cpu)?;
    let tb = Tensor::from_vec(b.values, (dim, n), &Device::Cpu)?;
    let mut total = 0.0;
    for _ in 0..DIR_REPEATS {
        let mut dirs: Vec<f32> = Vec::with_capacity(DIRS_PER_REPEAT * dim);
        for _ in 0..DIRS_PER_REPEAT {
            let d: Vec<f64> = (0..dim).map(|_| rng.sample(StandardNormal)).collect();
            let norm = d.iter().map(|v| v * v).sum::<f64>().sqrt();
            dirs.extend(d.iter().map(|v| (v / norm) as f32));
        }
        let dirs = Tensor::from_vec(dirs, (DIRS_PER_REPEAT, dim), &Device::Cpu)?;
        // [K, D] × [D, N] → [K, N]: one contiguous row of N projections per direction.
        let project = |t: &Tensor| -> candle_core::Result<Vec<f32>> { dirs.matmul(t)?.flatten_all()?.to_vec1() };
        let (mut pa, mut pb) = (project(&ta)?, project(&tb)?);
        let sum: f64 = pa
            .par_chunks_mut(n)
            .zip(pb.par_chunks_mut(n))
            .map(|(ra, rb)| {
                // A radix sort: several times faster than a comparison sort on the
                // 100k–1M values of each direction.
                radsort::sort(ra);
                radsort::sort(rb);
                ra.iter().zip(rb.iter()).map(|(x, y)| f64::from((x - y).abs())).sum::<f64>()
            })
            .sum();
        total += sum / (n * DIRS_PER_REPEAT) as f64;
    }
    Ok(total / DIR_REPEATS as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Dataset;
    use canard_shared::image::{from_u8, to_u8};

    fn shapes(size: usize) -> Dataset {
        Dataset::open("builtin:shapes", size, None, 3, None, false).unwrap().0
    }

    fn set(pixels: &[u8], len: usize, channels: usize, size: usize) -> ImageSet<'_> {
        ImageSet::new(pixels, len, channels, size)
    }

    fn noise(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0f32..=1.0)).collect()
    }

    /// Values in [-1, 1] as the SWD is given them: rounded to bytes, as `tools::eval` does.
    fn bytes(values: &[f32]) -> Vec<u8> {
        values.iter().map(|&v| to_u8(v)).collect()
    }

    /// A 3×3 box blur of every plane (borders clamped), as f32 in [-1, 1].
    fn blur(pixels: &[u8], s: usize) -> Vec<f32> {
        let pixels: Vec<f32> = pixels.iter().map(|&v| from_u8(v)).collect();
        let mut out = pixels.clone();
        for (o, p) in out.chunks_exact_mut(s * s).zip(pixels.chunks_exact(s * s)) {
            for y in 0..s {
                for x in 0..s {
                    let mut sum = 0.0;
                    for (dy, dx) in (0..9).map(|k| (k / 3, k % 3)) {
                        let (yy, xx) = ((y + dy).clamp(1, s) - 1, (x + dx).clamp(1, s) - 1);
                        sum += p[yy * s + xx];
                    }
                    o[y * s + x] = sum / 9.0;
                }
            }
        }
        out
    }

    #[test]
    fn levels_halve_down_to_16_or_one_level_for_small_images() {
        assert_eq!(level_sizes(64), [64, 32, 16]);
        assert_eq!(level_sizes(32), [32, 16]);
        assert_eq!(level_sizes(16), [16]);
        assert_eq!(level_sizes(8), [8]);
        assert_eq!(level_sizes(48), [48, 24]);
        assert_eq!((patch_size(16), patch_size(6), patch_size(1)), (7, 5, 1));
    }

    #[test]
    fn a_constant_picture_has_no_detail_and_keeps_its_value() {
        let s = 32;
        let img = vec![to_u8(0.2); 3 * s * s];
        let pyr = pyramids(&set(&img[..], 1, 3, s), 2);
        let v = f32::from(to_u8(0.2));
        assert!(pyr[0].iter().all(|&x| x.abs() < 1e-4), "band-pass level of a constant is 0");
        assert!(pyr[1].iter().all(|&x| (x - v).abs() < 1e-4));
        assert_eq!(pyr[1].len(), 3 * 16 * 16);
    }

    #[test]
    fn the_radix_sort_orders_floats_as_a_comparison_sort() {
        let mut v: Vec<f32> = noise(10_000, 1).iter().map(|x| x * 1e3).collect();
        v.extend([0.0, -0.0, f32::MIN, f32::MAX, 1e-30, -1e-30]);
        let mut want = v.clone();
        want.sort_by(f32::total_cmp);
        radsort::sort(&mut v);
        assert_eq!(v, want);
    }

    #[test]
    fn the_same_set_is_exactly_zero_and_the_result_is_deterministic() {
        let d = shapes(32);
        let a = set(&d.pixels[..64 * 3 * 32 * 32], 64, 3, 32);
        assert_eq!(sliced_wasserstein(&a, &a, 5).unwrap().mean, 0.0);
        // The same pictures as generator output (f32 in [-1, 1]), rounded back, are the same set.
        let values: Vec<f32> = d.pixels[..64 * 3 * 32 * 32].iter().map(|&v| from_u8(v)).collect();
        let copy = bytes(&values);
        let r = sliced_wasserstein(&a, &set(&copy[..], 64, 3, 32), 5).unwrap();
        assert_eq!(r.levels, vec![(32, 0.0), (16, 0.0)]);
        assert_eq!(r.mean, 0.0);
        let n = bytes(&noise(copy.len(), 2));
        let b = set(&n[..], 64, 3, 32);
        assert_eq!(sliced_wasserstein(&a, &b, 5).unwrap(), sliced_wasserstein(&a, &b, 5).unwrap());
        assert_ne!(sliced_wasserstein(&a, &b, 5).unwrap(), sliced_wasserstein(&a, &b, 6).unwrap());
    }

    #[test]
    fn samples_of_the_same_data_are_close_noise_is_far_and_blur_is_between() {
        let (d, s) = (shapes(32), 32);
        let (k, n) = (1024, 3 * 32 * 32);
        let a = set(&d.pixels[..k * n], k, 3, s);
        let b = set(&d.pixels[k * n..2 * k * n], k, 3, s);
        let t = std::time::Instant::now();
        let same = sliced_wasserstein(&a, &b, 0).unwrap();
        eprintln!("SWD of {k} vs {k} 32×32 images: {:.2}s", t.elapsed().as_secs_f64());
        let noisy = bytes(&noise(k * n, 9));
        let far = sliced_wasserstein(&a, &set(&noisy[..], k, 3, s), 0).unwrap();
        let blurred = bytes(&blur(&d.pixels[k * n..2 * k * n], s));
        let soft = sliced_wasserstein(&a, &set(&blurred[..], k, 3, s), 0).unwrap();
        eprintln!("same data:\n{same}\nnoise:\n{far}\nblurred:\n{soft}");
        assert!(same.levels.iter().all(|(_, v)| v.is_finite() && *v > 0.0));
        assert!(far.mean > 10.0 * same.mean, "noise {} vs same data {}", far.mean, same.mean);
        assert!(soft.mean > 2.0 * same.mean, "blurred {} vs same data {}", soft.mean, same.mean);
        assert!(soft.levels[0].1 > soft.levels[1].1, "blur shows most at the finest level: {soft}");
    }

    #[test]
    fn small_grey_images_get_one_level() {
        let (a, b) = (bytes(&noise(50 * 8 * 8, 1)), bytes(&noise(50 * 8 * 8, 2)));
        let r = sliced_wasserstein(&set(&a[..], 50, 1, 8), &set(&b[..], 50, 1, 8), 0).unwrap();
        assert_eq!(r.levels.len(), 1);
        assert_eq!(r.levels[0].0, 8);
        assert!(r.mean.is_finite());
    }

    #[test]
    fn mismatched_or_malformed_sets_are_errors() {
        let p = vec![0u8; 2 * 3 * 16 * 16];
        let e = sliced_wasserstein(&set(&p[..], 2, 3, 16), &set(&p[..3 * 16 * 16], 1, 3, 16), 0).unwrap_err();
        assert!(e.to_string().contains("differ"), "{e}");
        let e = sliced_wasserstein(&set(&p[..], 3, 3, 16), &set(&p[..], 3, 3, 16), 0).unwrap_err();
        assert!(e.to_string().contains("do not make 3 images"), "{e}");
        let empty: &[u8] = &[];
        assert!(sliced_wasserstein(&set(empty, 0, 3, 16), &set(empty, 0, 3, 16), 0).is_err());
    }

    /// `cargo test --release -p canard-train swd_timing -- --ignored --nocapture`
    #[test]
    #[ignore = "a timing, not a check"]
    fn swd_timing_2048_images() {
        // CPU seconds as well as wall time: on a shared machine the wall time says little.
        let cpu = || -> f64 {
            let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
            let f: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
            (11..13).filter_map(|i| f.get(i)?.parse::<f64>().ok()).sum::<f64>() / 100.0
        };
        for size in [32, 64] {
            let d = shapes(size);
            let (k, n) = (2048, 3 * size * size);
            let (a, b) = (set(&d.pixels[..k * n], k, 3, size), set(&d.pixels[k * n..], k, 3, size));
            let (t, c) = (std::time::Instant::now(), cpu());
            let r = sliced_wasserstein(&a, &b, 0).unwrap();
            let (wall, used) = (t.elapsed().as_secs_f64(), cpu() - c);
            eprintln!("SWD of {k} vs {k} {size}×{size} images: {wall:.2}s wall, {used:.2} CPU-s\n{r}");
        }
    }
}
