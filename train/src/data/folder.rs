//! A folder of the user's pictures, read recursively.
//!
//! Any of JPEG, PNG, WebP, GIF (first frame) and BMP, whatever the case of the extension;
//! any colour mode (grey stays grey, alpha is composited on white, CMYK and palettes
//! become RGB); any size (centre square crop, then a Lanczos resize). Files that cannot
//! be used are skipped and counted, never fatal, unless nothing at all is usable.
//!
//! Pictures are decoded on every core (rayon; the result keeps the sorted path order, so
//! runs stay reproducible), with a progress bar for large folders, and the result is
//! cached on disk ([`super::cache`]) when the caller gives a cache folder.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, GenericImageView, ImageReader, Rgba};
use rayon::prelude::*;
use walkdir::WalkDir;

use super::{cache, DataError, Dataset};
use crate::report::progress::TaskBar;

pub const EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "gif", "bmp"];

/// Files that were not used, and why (the first few are kept for the warning).
#[derive(Debug, Default)]
pub struct Skipped {
    pub count: usize,
    pub examples: Vec<(PathBuf, String)>,
}

impl Skipped {
    const EXAMPLES: usize = 5;

    pub(crate) fn add(&mut self, path: PathBuf, reason: String) {
        self.count += 1;
        if self.examples.len() < Self::EXAMPLES {
            self.examples.push((path, reason));
        }
    }

    /// Adds `other`'s files after these (examples stay capped).
    pub(crate) fn merge(&mut self, other: Skipped) {
        let extra = other.count - other.examples.len();
        for (p, why) in other.examples {
            self.add(p, why);
        }
        self.count += extra;
    }

    /// One warning for all skipped files, or `None` when nothing was skipped.
    pub fn warning(&self) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let mut s = format!("warning: skipped {} file(s) that are not usable images:", self.count);
        for (p, why) in &self.examples {
            s.push_str(&format!("\n  {}: {why}", p.display()));
        }
        if self.count > self.examples.len() {
            s.push_str(&format!("\n  … and {} more", self.count - self.examples.len()));
        }
        Some(s)
    }
}

/// Above this many files, decoding shows a progress bar (or lines).
const PROGRESS_ABOVE: usize = 100;

pub fn load(
    root: &Path,
    size: usize,
    channels: Option<usize>,
    cache_dir: Option<&Path>,
) -> Result<(Dataset, Skipped), DataError> {
    let meta = std::fs::metadata(root)
        .map_err(|e| DataError::Unreadable { path: root.display().to_string(), reason: e.to_string() })?;
    if !meta.is_dir() {
        return Err(DataError::Unreadable { path: root.display().to_string(), reason: "not a folder".into() });
    }
    let source = root.display().to_string();
    let mut skipped = Skipped::default();
    let files = list_files(root, &mut skipped);
    let cache = cache_dir.filter(|_| !files.is_empty()).map(|dir| (dir, cache::key(root, &files, size, channels)));
    if let Some((dir, key)) = &cache {
        match cache::load(dir, key, &source) {
            Ok(Some((data, failed))) => {
                skipped.merge(failed);
                return Ok((data, skipped));
            }
            Ok(None) => {}
            Err(why) => eprintln!("canard-train: ignoring the data cache in {} ({why}); decoding again", dir.display()),
        }
    }

    let (data, failed) = decode_all(&files, &source, size, channels);
    if data.len == 0 {
        skipped.merge(failed);
        let detail = skipped.warning().map(|w| format!("\n{w}")).unwrap_or_default();
        return Err(DataError::Empty { path: source, skipped: skipped.count, detail });
    }
    if let Some((dir, key)) = &cache {
        // A cache that cannot be written (read-only disk, full disk) costs time next run, nothing more.
        match cache::store(dir, key, &data, &failed) {
            Ok(bytes) => eprintln!(
                "canard-train: cached the decoded pictures in {} ({:.1} MB)",
                dir.display(),
                bytes as f64 / 1e6
            ),
            Err(e) => eprintln!("canard-train: warning: cannot cache the decoded pictures: {e}"),
        }
    }
    skipped.merge(failed);
    Ok((data, skipped))
}

/// Decodes, crops and resizes `files` on every core (output in `files` order whatever
/// the threads do), then lays them out as bytes. Returns the files that failed too.
fn decode_all(files: &[PathBuf], source: &str, size: usize, channels: Option<usize>) -> (Dataset, Skipped) {
    let bar = (files.len() > PROGRESS_ABOVE).then(|| TaskBar::new("canard-train: decoding pictures", files.len()));
    let decoded: Vec<Result<(DynamicImage, bool), String>> = files
        .par_iter()
        .map(|path| {
            // Only the small square is kept: a full-size photo is freed as soon as it is resized.
            let r = decode(path).map(|img| (small(square(&img, size)), is_grey(&img)));
            if let Some(b) = &bar {
                b.inc();
            }
            r
        })
        .collect();
    if let Some(b) = &bar {
        b.finish();
    }
    let mut failed = Skipped::default();
    let mut images = Vec::with_capacity(decoded.len());
    for (path, r) in files.iter().zip(decoded) {
        match r {
            Ok(img) => images.push(img),
            Err(reason) => failed.add(path.clone(), reason),
        }
    }
    if images.is_empty() {
        let data = Dataset { source: source.to_string(), pixels: Vec::new(), len: 0, channels: 3, size };
        return (data, failed);
    }
    // Channels follow the data: grey only when every picture is grey.
    let channels = channels.unwrap_or(if images.iter().all(|(_, grey)| *grey) { 1 } else { 3 });
    let len = images.len();
    let mut pixels = Vec::with_capacity(len * channels * size * size);
    for (img, _) in images {
        pixels.extend(to_chw(&img, channels));
    }
    (Dataset { source: source.to_string(), pixels, len, channels, size }, failed)
}

/// Every regular file under `root` (following symlinks), sorted so runs are reproducible.
/// Files without an image extension and broken entries are counted as skipped.
fn list_files(root: &Path, skipped: &mut Skipped) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in WalkDir::new(root).follow_links(true) {
        match entry {
            Err(e) => {
                let path = e.path().map(Path::to_path_buf).unwrap_or_else(|| root.to_path_buf());
                skipped.add(path, e.io_error().map(|io| io.to_string()).unwrap_or_else(|| e.to_string()));
            }
            Ok(e) if e.file_type().is_dir() => {}
            Ok(e) => {
                let ext = e.path().extension().and_then(|x| x.to_str()).map(str::to_ascii_lowercase);
                if ext.is_some_and(|x| EXTENSIONS.contains(&x.as_str())) {
                    files.push(e.into_path());
                } else {
                    skipped.add(e.into_path(), "not an image file extension".into());
                }
            }
        }
    }
    files.sort();
    files
}

fn decode(path: &Path) -> Result<DynamicImage, String> {
    let reader = ImageReader::open(path).map_err(|e| e.to_string())?;
    let reader = reader.with_guessed_format().map_err(|e| e.to_string())?;
    let img = reader.decode().map_err(|e| e.to_string())?;
    if img.width() == 0 || img.height() == 0 {
        return Err("image has no pixels".into());
    }
    Ok(img)
}

fn is_grey(img: &DynamicImage) -> bool {
    !img.color().has_color()
}

/// Centre square crop, resized to `size`×`size`, alpha composited on white.
fn square(img: &DynamicImage, size: usize) -> DynamicImage {
    let (w, h) = img.dimensions();
    let side = w.min(h);
    let cropped = img.crop_imm((w - side) / 2, (h - side) / 2, side, side);
    let s = size as u32;
    let resized = if side == s {
        cropped
    } else if side >= 4 * s {
        // Lanczos' kernel widens with the ratio: from a 4000-px photo to 64 px it is most
        // of the load time. An area average down to twice the size first (cheap, and an
        // anti-aliasing filter in itself), then Lanczos for the last halving, looks the
        // same and is several times faster.
        cropped.thumbnail_exact(2 * s, 2 * s).resize_exact(s, s, FilterType::Lanczos3)
    } else {
        cropped.resize_exact(s, s, FilterType::Lanczos3)
    };
    if !resized.color().has_alpha() {
        return resized;
    }
    let mut rgba = resized.to_rgba8();
    for p in rgba.pixels_mut() {
        let a = p[3] as f32 / 255.0;
        let over_white = |c: u8| (c as f32 * a + 255.0 * (1.0 - a)).round() as u8;
        *p = Rgba([over_white(p[0]), over_white(p[1]), over_white(p[2]), 255]);
    }
    let composited = DynamicImage::ImageRgba8(rgba);
    if is_grey(&resized) {
        DynamicImage::ImageLuma8(composited.to_luma8())
    } else {
        DynamicImage::ImageRgb8(composited.to_rgb8())
    }
}

/// 8-bit grey or RGB: a 16-bit or float picture's square is kept at the precision training uses.
fn small(img: DynamicImage) -> DynamicImage {
    match img {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => img,
        _ if is_grey(&img) => DynamicImage::ImageLuma8(img.to_luma8()),
        _ => DynamicImage::ImageRgb8(img.to_rgb8()),
    }
}

/// One picture as training reads it: its centre square at `size`², as `channels` planes of
/// bytes (a grey picture for a colour model made colour, and the other way round).
pub(crate) fn read_picture(path: &Path, size: usize, channels: usize) -> Result<Vec<u8>, String> {
    Ok(to_chw(&small(square(&decode(path)?, size)), channels))
}

/// Planar [C, S, S] bytes.
pub(crate) fn to_chw(img: &DynamicImage, channels: usize) -> Vec<u8> {
    if channels == 1 {
        img.to_luma8().into_raw()
    } else {
        let rgb = img.to_rgb8();
        (0..3).flat_map(|c| rgb.pixels().map(move |p| p[c])).collect()
    }
}
