//! `progress.gif`: the preview grids through training as one looping animation.
//!
//! Each preview is quantised and compressed once, when it is added ([`ProgressGif::push`]),
//! and kept in memory; writing the file only strings the kept frames together. At most
//! [`MAX_FRAMES`] frames and [`MAX_BYTES`] bytes are kept, whatever the run's length: past
//! either, every other older frame is dropped (the newest always stays). Frames are at most
//! [`MAX_WIDTH`] pixels wide. A resumed run rebuilds the frames from the preview PNGs.

use std::path::{Path, PathBuf};

use anyhow::Context;
use image::imageops::FilterType;
use image::RgbImage;
use rayon::prelude::*;

pub const MAX_FRAMES: usize = 120;
/// progress.gif stays under 10 MB at any run length.
pub const MAX_BYTES: usize = 9 << 20;
pub const MAX_WIDTH: u32 = 512;
/// Hundredths of a second per frame: ≈ 8 frames per second.
const FRAME_DELAY: u16 = 12;
/// The newest grid stays up for two seconds before the loop starts again.
const LAST_DELAY: u16 = 200;
/// NeuQuant's sampling factor (1 best … 30 fastest); 10 is the gif crate's own default.
const QUANTISE_SPEED: i32 = 10;

/// The kept frames, compressed.
#[derive(Default)]
pub struct ProgressGif {
    frames: Vec<gif::Frame<'static>>,
    /// The frame size: the first grid's (at most [`MAX_WIDTH`] wide); later grids are scaled to it.
    size: Option<(u16, u16)>,
}

impl ProgressGif {
    /// The frames of the preview PNGs already in `dir` (`step_N.png`, in order of N), for a
    /// resumed run; none for a new one.
    pub fn from_previews(dir: &Path) -> anyhow::Result<Self> {
        let all = preview_files(dir)?;
        let mut gif = Self::default();
        let chosen: Vec<&PathBuf> = subsample(all.len(), MAX_FRAMES).into_iter().map(|i| &all[i]).collect();
        let Some((first, rest)) = chosen.split_first() else { return Ok(gif) };
        let first = open_rgb(first)?;
        gif.size = Some(frame_size(&first)?);
        let mut frames = vec![gif.encode(first)?];
        frames.extend(rest.par_iter().map(|p| gif.encode(open_rgb(p)?)).collect::<anyhow::Result<Vec<_>>>()?);
        gif.frames = frames;
        gif.thin();
        Ok(gif)
    }

    /// Adds a grid as the newest frame.
    pub fn push(&mut self, grid: RgbImage) -> anyhow::Result<()> {
        if self.size.is_none() {
            self.size = Some(frame_size(&grid)?);
        }
        let frame = self.encode(grid)?;
        self.frames.push(frame);
        self.thin();
        Ok(())
    }

    /// The GIF's bytes: every kept frame, looping forever, the newest held longest.
    pub fn bytes(&mut self) -> anyhow::Result<Vec<u8>> {
        let (w, h) = self.size.context("a GIF needs at least one frame")?;
        let mut out = Vec::with_capacity(self.kept_bytes() + 1024);
        {
            let mut enc = gif::Encoder::new(&mut out, w, h, &[])?;
            enc.set_repeat(gif::Repeat::Infinite)?;
            let last = self.frames.len().saturating_sub(1);
            for (i, f) in self.frames.iter_mut().enumerate() {
                f.delay = if i == last { LAST_DELAY } else { FRAME_DELAY };
                enc.write_lzw_pre_encoded_frame(f)?;
            }
        }
        Ok(out)
    }

    /// One grid as a compressed frame of the GIF's size.
    fn encode(&self, img: RgbImage) -> anyhow::Result<gif::Frame<'static>> {
        let (w, h) = self.size.context("the GIF's size is set by its first frame")?;
        let img = if img.dimensions() == (w as u32, h as u32) {
            img
        } else {
            image::imageops::resize(&img, w as u32, h as u32, FilterType::Triangle)
        };
        let mut frame = gif::Frame::from_rgb_speed(w, h, img.as_raw(), QUANTISE_SPEED);
        frame.make_lzw_pre_encoded();
        Ok(frame)
    }

    fn kept_bytes(&self) -> usize {
        self.frames.iter().map(|f| f.buffer.len() + f.palette.as_ref().map_or(0, Vec::len)).sum()
    }

    /// Halves the older frames while too many are kept (the newest stays).
    fn thin(&mut self) {
        while self.frames.len() > 2 && (self.frames.len() > MAX_FRAMES || self.kept_bytes() > MAX_BYTES) {
            let Some(newest) = self.frames.pop() else { return };
            let older = std::mem::take(&mut self.frames);
            self.frames = older.into_iter().step_by(2).collect();
            self.frames.push(newest);
        }
    }
}

/// The preview grid's file name at `step`; [`preview_files`] finds them again.
pub fn preview_name(step: usize) -> String {
    format!("step_{step:06}.png")
}

/// `dir/step_N.png` files in order of N (numerically: step_1000000 comes after step_999999).
fn preview_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut found = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| {
            let path = match entry {
                Ok(entry) => entry.path(),
                Err(e) => return Some(Err(e)),
            };
            let number: u64 = path.file_name()?.to_str()?.strip_prefix("step_")?.strip_suffix(".png")?.parse().ok()?;
            Some(Ok((number, path)))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// A preview grid as RGB.
fn open_rgb(path: &Path) -> anyhow::Result<RgbImage> {
    Ok(image::open(path).with_context(|| format!("cannot read {}", path.display()))?.to_rgb8())
}

/// `k` indices evenly spread over `0..n`, first and last included (all of them when n ≤ k).
pub(super) fn subsample(n: usize, k: usize) -> Vec<usize> {
    if n <= k || k < 2 {
        return (0..n).collect();
    }
    (0..k).map(|i| i * (n - 1) / (k - 1)).collect()
}

/// The frame size for a grid: its own, scaled down to [`MAX_WIDTH`] wide if larger.
fn frame_size(img: &RgbImage) -> anyhow::Result<(u16, u16)> {
    let (w, h) = fit(img.width(), img.height());
    Ok((u16::try_from(w)?, u16::try_from(h)?))
}

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

    /// Noise: the worst case for the GIF's compression.
    fn noisy(i: u32, w: u32, h: u32) -> RgbImage {
        let mut state = 0x9E37_79B9u32.wrapping_mul(i + 1);
        RgbImage::from_fn(w, h, |_, _| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
        })
    }

    fn frame_delays(bytes: &[u8]) -> ((u16, u16), Vec<u16>) {
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::RGBA);
        let mut dec = opts.read_info(bytes).unwrap();
        let size = (dec.width(), dec.height());
        let mut delays = Vec::new();
        while let Some(f) = dec.read_next_frame().unwrap() {
            delays.push(f.delay);
        }
        (size, delays)
    }

    #[test]
    fn frames_are_appended_thinned_downsized_and_looping() {
        let mut gif = ProgressGif::default();
        // 130 previews, 600 px wide: more frames and wider than the GIF keeps.
        for i in 1..=130 {
            gif.push(grid(i, 600, 300)).unwrap();
            assert!(gif.frames.len() <= MAX_FRAMES);
        }
        let bytes = gif.bytes().unwrap();
        let ((w, h), delays) = frame_delays(&bytes);
        assert_eq!((w, h), (512, 256));
        assert_eq!(delays.len(), gif.frames.len());
        assert!(delays.len() > MAX_FRAMES / 2, "{} frames", delays.len());
        assert!(delays[..delays.len() - 1].iter().all(|&d| d == FRAME_DELAY));
        assert_eq!(delays[delays.len() - 1], LAST_DELAY);
        assert!(bytes.windows(11).any(|w| w == b"NETSCAPE2.0"), "loops forever");
    }

    #[test]
    fn a_long_run_of_noisy_grids_stays_under_the_byte_bound() {
        let mut gif = ProgressGif::default();
        for i in 0..200 {
            gif.push(noisy(i, 530, 530)).unwrap();
        }
        let bytes = gif.bytes().unwrap();
        assert!(bytes.len() < 10 << 20, "{} bytes", bytes.len());
        assert!(gif.frames.len() >= 8, "{} frames kept", gif.frames.len());
    }

    #[test]
    fn a_resumed_run_rebuilds_its_frames_from_the_previews_in_step_order() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ProgressGif::from_previews(&dir.path().join("missing")).unwrap().frames.is_empty());
        // Steps 5, 40, 1000000 (numeric order), each grid a different colour.
        for (k, step) in [(0u8, 1_000_000usize), (1, 5), (2, 40)] {
            RgbImage::from_pixel(40, 40, Rgb([k * 100, 0, 0])).save(dir.path().join(preview_name(step))).unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        std::fs::write(dir.path().join("step_x.png"), b"ignored too").unwrap();
        let mut gif = ProgressGif::from_previews(dir.path()).unwrap();
        assert_eq!(gif.frames.len(), 3);
        let bytes = gif.bytes().unwrap();
        let mut opts = gif::DecodeOptions::new();
        opts.set_color_output(gif::ColorOutput::RGBA);
        let mut dec = opts.read_info(&bytes[..]).unwrap();
        let mut reds = Vec::new();
        while let Some(f) = dec.read_next_frame().unwrap() {
            reds.push(f.buffer[0]);
        }
        assert_eq!(reds.len(), 3);
        // Step 5 (red 100), step 40 (red 200), step 1000000 (red 0).
        assert!((90..110).contains(&reds[0]) && reds[1] > 190 && reds[2] < 10, "{reds:?}");
    }

    #[test]
    fn subsampling_and_sizes() {
        assert_eq!(subsample(5, 120), [0, 1, 2, 3, 4]);
        let s = subsample(1000, 120);
        assert_eq!((s.len(), s[0], s[119]), (120, 0, 999));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(fit(274, 274), (274, 274));
        assert_eq!(fit(1042, 1042), (512, 512));
        assert!(ProgressGif::default().bytes().is_err());
    }
}
