//! What the trainer shows its user: sample grids, the loss log and plot, the progress
//! GIF ([`gif`]), and the live progress bar or lines ([`progress`]).

pub mod cadence;
pub mod gif;
pub mod plot;
pub mod progress;

use std::path::Path;

use canard_shared::image::{batch_to_images, encode_png, grid};
use canard_shared::latent::latent_batch;
use candle_core::{Device, Tensor};
use image::DynamicImage;

use crate::atomic::write_atomic;
use crate::nn::Net;

/// The seeds every preview grid shows: the server's `/generate?seed=S` is the same picture.
pub const PREVIEW_SEEDS: std::ops::Range<u64> = 0..64;

/// Runs the generator in evaluation mode (as exported) on the latent vectors of `seeds`,
/// a conditional one's pictures of `classes` (one per seed; empty when unconditional).
pub fn generate(g: &Net, nz: usize, seeds: &[u64], classes: &[u32], device: &Device) -> candle_core::Result<Tensor> {
    let z = Tensor::from_vec(latent_batch(seeds, nz), (seeds.len(), nz, 1, 1), device)?;
    let classes = (!classes.is_empty()).then(|| Tensor::from_slice(classes, classes.len(), device)).transpose()?;
    g.run(&z, classes.as_ref())?.to_dtype(candle_core::DType::F32)
}

/// The classes of the preview grid's pictures: a row (of 8) per class, the classes in
/// turn; none for an unconditional generator (`classes` 0).
pub fn preview_classes(classes: usize) -> Vec<u32> {
    match classes {
        0 => Vec::new(),
        k => PREVIEW_SEEDS.map(|i| (i / 8) as u32 % k as u32).collect(),
    }
}

/// Writes an NCHW batch in [-1, 1] as a PNG grid, 8 to a row; the grid.
pub fn save_grid(images: &Tensor, path: &Path) -> anyhow::Result<DynamicImage> {
    let shape = images.dims4()?;
    write_grid(&images.flatten_all()?.to_vec1::<f32>()?, shape, 8, path)
}

/// Writes NCHW values in [-1, 1] of shape (n, c, h, w) as a PNG grid, `cols` to a row; the grid.
pub fn write_grid(
    values: &[f32],
    (n, c, h, w): (usize, usize, usize, usize),
    cols: usize,
    path: &Path,
) -> anyhow::Result<DynamicImage> {
    let grid = grid(&batch_to_images(values, n, c, h, w)?, cols, 2);
    write_atomic(path, &encode_png(&grid)?)?;
    Ok(grid)
}

/// One row of `losses.csv`: one generator step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossRecord {
    pub step: usize,
    pub epoch: usize,
    pub loss_d: f32,
    pub loss_g: f32,
    /// DCGAN: mean D(x) on real images and D(G(z)) on fakes, as probabilities.
    /// WGAN: the mean raw critic scores, and `loss_d` = D(fake) − D(real) (+ λ·gp).
    pub d_real: f32,
    pub d_fake: f32,
    /// The gradient penalty (WGAN-GP) or the reconstruction loss (fastgan), 0 otherwise;
    /// the `gp` column of `losses.csv`, named before fastgan, kept so older files still read.
    pub gp: f32,
    /// Seconds of training when the step finished (counted across resumes; set by the trainer).
    pub seconds: f64,
}

const CSV_HEADER: &str = "step,epoch,loss_d,loss_g,d_real,d_fake,gp,seconds";

pub fn write_losses_csv(records: &[LossRecord], path: &Path) -> std::io::Result<()> {
    let mut s = String::with_capacity(64 * (records.len() + 1));
    s.push_str(CSV_HEADER);
    s.push('\n');
    for r in records {
        s.push_str(&format!(
            "{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.3}\n",
            r.step, r.epoch, r.loss_d, r.loss_g, r.d_real, r.d_fake, r.gp, r.seconds
        ));
    }
    write_atomic(path, s.as_bytes())
}

/// Reads `losses.csv` back (to continue it on resume). Accepts the older 6- and
/// 7-column files (no `gp`, no `seconds`: read as 0). Lines that do not parse (the header, a hand edit, a line
/// cut short) are skipped, not fatal: the log is a record for people, and losing a
/// line of it must not stop a resume.
pub fn read_losses_csv(path: &Path) -> std::io::Result<Vec<LossRecord>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().filter_map(parse_line).collect())
}

fn parse_line(line: &str) -> Option<LossRecord> {
    let f: Vec<&str> = line.trim().split(',').map(str::trim).collect();
    if !(6..=8).contains(&f.len()) {
        return None;
    }
    let float = |s: &str| s.parse::<f32>().ok();
    Some(LossRecord {
        step: f[0].parse().ok()?,
        epoch: f[1].parse().ok()?,
        loss_d: float(f[2])?,
        loss_g: float(f[3])?,
        d_real: float(f[4])?,
        d_fake: float(f[5])?,
        gp: if f.len() >= 7 { float(f[6])? } else { 0.0 },
        seconds: if f.len() == 8 { f[7].parse().ok()? } else { 0.0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: usize) -> LossRecord {
        LossRecord {
            step,
            epoch: 1 + step / 10,
            loss_d: 1.25,
            loss_g: -0.5,
            d_real: 0.75,
            d_fake: 0.125,
            gp: 0.0625,
            seconds: step as f64 * 0.5,
        }
    }

    #[test]
    fn losses_csv_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("losses.csv");
        let recs: Vec<LossRecord> = (1..=25).map(rec).collect();
        write_losses_csv(&recs, &p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("step,epoch,loss_d,loss_g,d_real,d_fake,gp,seconds\n"), "{text}");
        assert_eq!(read_losses_csv(&p).unwrap(), recs);
    }

    #[test]
    fn reads_the_old_header_and_skips_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("losses.csv");
        let old = "step,epoch,loss_d,loss_g,d_real,d_fake\n1,1,1.0,2.0,0.5,0.25\n\
                   2,1,oops,2.0,0.5,0.25\n3,1,1.0\n\n-4,1,1,1,1,1\n5,1,1.5,2.5,0.5,0.25\n";
        std::fs::write(&p, old).unwrap();
        let got = read_losses_csv(&p).unwrap();
        assert_eq!(got.iter().map(|r| r.step).collect::<Vec<_>>(), [1, 5]);
        assert_eq!((got[1].loss_d, got[1].gp), (1.5, 0.0));
        assert!(read_losses_csv(&dir.path().join("missing.csv")).is_err());
    }
}
