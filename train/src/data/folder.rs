//! A folder of the user's pictures, read recursively.
//!
//! Any of JPEG, PNG, WebP, GIF (first frame) and BMP, whatever the case of the extension;
//! any colour mode (grey stays grey, alpha is composited on white, CMYK and palettes
//! become RGB); any size (centre square crop, then a Lanczos resize). Files that cannot
//! be used are skipped and counted, never fatal, unless nothing at all is usable.

use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, GenericImageView, ImageReader, Rgba};
use walkdir::WalkDir;

use super::{DataError, Dataset};

pub const EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "webp", "gif", "bmp"];

/// Files that were not used, and why (the first few are kept for the warning).
#[derive(Debug, Default)]
pub struct Skipped {
    pub count: usize,
    pub examples: Vec<(PathBuf, String)>,
}

impl Skipped {
    const EXAMPLES: usize = 5;

    fn add(&mut self, path: PathBuf, reason: String) {
        self.count += 1;
        if self.examples.len() < Self::EXAMPLES {
            self.examples.push((path, reason));
        }
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

pub fn load(root: &Path, size: usize, channels: Option<usize>) -> Result<(Dataset, Skipped), DataError> {
    let meta = std::fs::metadata(root)
        .map_err(|e| DataError::Unreadable { path: root.display().to_string(), reason: e.to_string() })?;
    if !meta.is_dir() {
        return Err(DataError::Unreadable { path: root.display().to_string(), reason: "not a folder".into() });
    }
    let mut skipped = Skipped::default();
    let mut images = Vec::new();
    for path in list_files(root, &mut skipped) {
        match decode(&path) {
            Ok(img) => images.push(img),
            Err(reason) => skipped.add(path, reason),
        }
    }
    if images.is_empty() {
        let detail = skipped.warning().map(|w| format!("\n{w}")).unwrap_or_default();
        return Err(DataError::Empty { path: root.display().to_string(), skipped: skipped.count, detail });
    }
    // Channels follow the data: grey only when every picture is grey.
    let channels = channels.unwrap_or(if images.iter().all(is_grey) { 1 } else { 3 });
    let mut pixels = Vec::with_capacity(images.len() * channels * size * size);
    for img in &images {
        pixels.extend(to_chw(&square(img, size), channels));
    }
    let len = images.len();
    Ok((Dataset { source: root.display().to_string(), pixels, len, channels, size }, skipped))
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
    let resized = if side as usize == size {
        cropped
    } else {
        cropped.resize_exact(size as u32, size as u32, FilterType::Lanczos3)
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

/// Planar [C, S, S] values in [-1, 1].
pub(crate) fn to_chw(img: &DynamicImage, channels: usize) -> Vec<f32> {
    use canard_shared::image::from_u8;
    if channels == 1 {
        img.to_luma8().into_raw().into_iter().map(from_u8).collect()
    } else {
        let rgb = img.to_rgb8();
        (0..3).flat_map(|c| rgb.pixels().map(move |p| from_u8(p[c])).collect::<Vec<_>>()).collect()
    }
}
