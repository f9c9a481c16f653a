//! `progress.gif`: the preview grids of every epoch as one looping animation.
//!
//! Rewritten after every epoch, so it must stay cheap: at most [`MAX_FRAMES`] frames
//! (evenly chosen, always the newest), at most [`MAX_WIDTH`] pixels wide, and each
//! frame's palette quantised on its own thread (the slow part, and independent per frame).

use std::path::{Path, PathBuf};

use anyhow::Context;
use image::imageops::FilterType;
use image::RgbImage;
use rayon::prelude::*;

use crate::atomic::write_atomic;

pub const MAX_FRAMES: usize = 120;
pub const MAX_WIDTH: u32 = 512;
/// Hundredths of a second per frame: ≈ 8 frames per second.
const FRAME_DELAY: u16 = 12;
/// The newest grid stays up for two seconds before the loop starts again.
const LAST_DELAY: u16 = 200;
/// NeuQuant's sampling factor (1 best … 30 fastest); 10 is the gif crate's own default
/// trade-off and keeps 100 frames well under a second on two cores.
const QUANTISE_SPEED: i32 = 10;

/// Writes the GIF of `samples_dir/epoch_*.png` (in epoch order) to `path`, atomically.
pub fn write_progress_gif(samples_dir: &Path, path: &Path) -> anyhow::Result<()> {
    let all = epoch_frames(samples_dir)?;
    if all.is_empty() {
        anyhow::bail!("no epoch_*.png in {} to animate", samples_dir.display());
    }
    let chosen = subsample(all.len(), MAX_FRAMES);
    let images: Vec<RgbImage> = chosen
        .par_iter()
        .map(|&i| {
            let p = &all[i];
            Ok(image::open(p).with_context(|| format!("cannot read {}", p.display()))?.to_rgb8())
        })
        .collect::<anyhow::Result<_>>()?;
    write_atomic(path, &encode(images)?)?;
    Ok(())
}

/// The GIF bytes of `frames`: sized like the first one (at most [`MAX_WIDTH`] wide), looping forever.
pub fn encode(frames: Vec<RgbImage>) -> anyhow::Result<Vec<u8>> {
    let first = frames.first().context("a GIF needs at least one frame")?;
    let (w, h) = fit(first.width(), first.height());
    let (gw, gh) = (u16::try_from(w)?, u16::try_from(h)?);
    let last = frames.len() - 1;
    let frames: Vec<gif::Frame<'static>> = frames
        .into_par_iter()
        .enumerate()
        .map(|(i, img)| {
            let img = if img.dimensions() == (w, h) {
                img
            } else {
                image::imageops::resize(&img, w, h, FilterType::Triangle)
            };
            let mut frame = gif::Frame::from_rgb_speed(gw, gh, img.as_raw(), QUANTISE_SPEED);
            frame.delay = if i == last { LAST_DELAY } else { FRAME_DELAY };
            frame
        })
        .collect();
    let mut out = Vec::new();
    {
        let mut enc = gif::Encoder::new(&mut out, gw, gh, &[])?;
        enc.set_repeat(gif::Repeat::Infinite)?;
        for f in &frames {
            enc.write_frame(f)?;
        }
    }
    Ok(out)
}

/// `dir/epoch_N.png` files in order of N (numerically: epoch_1000 comes after epoch_999).
fn epoch_frames(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found: Vec<(u64, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let number = name.strip_prefix("epoch_").and_then(|r| r.strip_suffix(".png")).and_then(|n| n.parse().ok());
        if let Some(n) = number {
            found.push((n, path));
        }
    }
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// `k` indices evenly spread over `0..n`, first and last included (all of them when n ≤ k).
fn subsample(n: usize, k: usize) -> Vec<usize> {
    if n <= k || k < 2 {
        return (0..n).collect();
    }
    (0..k).map(|i| i * (n - 1) / (k - 1)).collect()
}

/// The frame size: the grid's own, scaled down to [`MAX_WIDTH`] wide if larger.
fn fit(w: u32, h: u32) -> (u32, u32) {
    if w <= MAX_WIDTH {
        return (w, h);
    }
    (MAX_WIDTH, ((h as u64 * MAX_WIDTH as u64 + w as u64 / 2) / w as u64).max(1) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    fn grid(i: u32, w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| Rgb([(x * 7 + i * 13) as u8, (y * 5 + i * 3) as u8, ((x ^ y) + i) as u8]))
    }

    #[test]
    fn frames_in_numeric_order_subsampled_downsized_and_looping() {
        let dir = tempfile::tempdir().unwrap();
        let samples = dir.path().join("samples");
        std::fs::create_dir(&samples).unwrap();
        // 130 epochs, 600 px wide: more frames and wider than the GIF keeps.
        for e in 1..=130 {
            grid(e, 600, 300).save(samples.join(format!("epoch_{e:03}.png"))).unwrap();
        }
        std::fs::write(samples.join("notes.txt"), b"ignored").unwrap();
        std::fs::write(samples.join("epoch_x.png"), b"ignored too").unwrap();
        let out = dir.path().join("progress.gif");
        let t = std::time::Instant::now();
        write_progress_gif(&samples, &out).unwrap();
        eprintln!("130 frames of 600×300 → GIF in {:.2}s", t.elapsed().as_secs_f64());

        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::RGBA);
        let mut dec = opts.read_info(std::fs::File::open(&out).unwrap()).unwrap();
        assert_eq!((dec.width(), dec.height()), (512, 256));
        let mut delays = Vec::new();
        while let Some(f) = dec.read_next_frame().unwrap() {
            delays.push(f.delay);
        }
        assert_eq!(delays.len(), MAX_FRAMES);
        assert!(delays[..MAX_FRAMES - 1].iter().all(|&d| d == FRAME_DELAY));
        assert_eq!(delays[MAX_FRAMES - 1], LAST_DELAY);
        let bytes = std::fs::read(&out).unwrap();
        assert!(bytes.windows(11).any(|w| w == b"NETSCAPE2.0"), "loops forever");
    }

    #[test]
    fn numbering_subsampling_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["epoch_1000.png", "epoch_999.png", "epoch_002.png"] {
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        let names: Vec<String> = epoch_frames(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["epoch_002.png", "epoch_999.png", "epoch_1000.png"]);
        assert_eq!(subsample(5, 120), [0, 1, 2, 3, 4]);
        let s = subsample(1000, 120);
        assert_eq!((s.len(), s[0], s[119]), (120, 0, 999));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(fit(274, 274), (274, 274));
        assert_eq!(fit(1042, 1042), (512, 512));
        let empty = tempfile::tempdir().unwrap();
        assert!(write_progress_gif(empty.path(), &empty.path().join("a.gif")).is_err());
    }
}
