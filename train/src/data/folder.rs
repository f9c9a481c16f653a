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

use super::{cache, Classes, DataError, Dataset};
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

/// The pictures under `root` at `size`², `channels` (None: grey when every picture is);
/// `by_class`: each picture's class is its first-level subfolder (a picture directly in
/// `root` is refused by name).
pub fn load(
    root: &Path,
    size: usize,
    channels: Option<usize>,
    cache_dir: Option<&Path>,
    by_class: bool,
) -> Result<(Dataset, Skipped), DataError> {
    let meta = std::fs::metadata(root)
        .map_err(|e| DataError::Unreadable { path: root.display().to_string(), reason: e.to_string() })?;
    if !meta.is_dir() {
        return Err(DataError::Unreadable { path: root.display().to_string(), reason: "not a folder".into() });
    }
    let source = root.display().to_string();
    let mut skipped = Skipped::default();
    let mut files = list_files(root, &mut skipped);
    if by_class {
        // Pictures in hidden folders (`.thumbnails/`) belong to no class.
        let (hidden, kept): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(|f| in_hidden_folder(root, f));
        for f in hidden {
            skipped.add(f, "in a hidden folder, which is no class".into());
        }
        files = kept;
    }
    let kinds = by_class.then(|| files.iter().map(|f| kind_of(root, f)).collect::<Result<Vec<_>, _>>()).transpose()?;
    let cache =
        cache_dir.filter(|_| !files.is_empty()).map(|dir| (dir, cache::key(root, &files, size, channels, by_class)));
    if let Some((dir, key)) = &cache {
        match cache::load(dir, key, &source) {
            Ok(Some((data, failed))) => {
                skipped.merge(failed);
                check_classes(root, &data.classes, by_class)?;
                return Ok((data, skipped));
            }
            Ok(None) => {}
            Err(why) => eprintln!("canard-train: ignoring the data cache in {} ({why}); decoding again", dir.display()),
        }
    }

    let (data, failed) = decode_all(&files, kinds.as_deref(), &source, size, channels);
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
    check_classes(root, &data.classes, by_class)?;
    Ok((data, skipped))
}

/// The first-level folder under `root` that `file` lies in (None: `file` is directly in `root`).
fn first_folder<'f>(root: &Path, file: &'f Path) -> Option<&'f std::ffi::OsStr> {
    let mut parts = file.strip_prefix(root).unwrap_or(file).components();
    match (parts.next(), parts.next()) {
        (Some(first), Some(_)) => Some(first.as_os_str()),
        _ => None,
    }
}

/// Whether `file` lies under a hidden first-level folder of `root` (`.thumbnails/x.jpg`).
fn in_hidden_folder(root: &Path, file: &Path) -> bool {
    first_folder(root, file).is_some_and(|f| f.to_string_lossy().starts_with('.'))
}

/// A picture's class: the first folder of its path under `root`, as UTF-8 of at most
/// 64 bytes.
fn kind_of(root: &Path, file: &Path) -> Result<String, DataError> {
    let Some(name) = first_folder(root, file) else {
        return Err(DataError::Classes(format!(
            "{} is directly in {}: with --classes subfolders every picture goes in a subfolder named after its class",
            file.display(),
            root.display()
        )));
    };
    let Some(name) = name.to_str() else {
        return Err(DataError::Classes(format!(
            "the subfolder {} is not named in UTF-8: rename it (its name becomes the class's name)",
            root.join(name).display()
        )));
    };
    canard_shared::manifest::check_classes([name].into_iter())
        .map_err(|e| DataError::Classes(format!("{e} (the subfolder {})", root.join(name).display())))?;
    Ok(name.to_string())
}

/// The classes of a folder read by class: two to [`MAX_CLASSES`](canard_shared::manifest::MAX_CLASSES);
/// a subfolder with no usable picture is no class (warned about).
fn check_classes(root: &Path, classes: &Classes, by_class: bool) -> Result<(), DataError> {
    if !by_class {
        return Ok(());
    }
    let subfolders = std::fs::read_dir(root).into_iter().flatten().flatten().filter(|e| e.path().is_dir());
    for dir in subfolders {
        let name = dir.file_name();
        if name.to_str().is_none_or(|n| !n.starts_with('.') && !classes.names.iter().any(|c| c == n)) {
            eprintln!(
                "warning: --classes subfolders: {} has no usable picture, so it is not a class",
                dir.path().display()
            );
        }
    }
    canard_shared::manifest::check_classes(classes.names.iter().map(String::as_str))
        .map_err(|e| DataError::Classes(format!("{e} (in {})", root.display())))?;
    if classes.names.len() < 2 {
        return Err(DataError::Classes(format!(
            "{} has pictures of {} class ({}); a model of classes needs two or more subfolders of pictures",
            root.display(),
            classes.names.len(),
            classes.names.join(", ")
        )));
    }
    Ok(())
}

/// Decodes, crops and resizes `files` on every core (output in `files` order whatever
/// the threads do), then lays them out as bytes, with the classes of those kept when
/// `kinds` names each file's. Returns the files that failed too.
fn decode_all(
    files: &[PathBuf],
    kinds: Option<&[String]>,
    source: &str,
    size: usize,
    channels: Option<usize>,
) -> (Dataset, Skipped) {
    let bar = TaskBar::new("canard-train: decoding pictures", files.len(), PROGRESS_ABOVE);
    let decoded: Vec<Result<(DynamicImage, bool), String>> = files
        .par_iter()
        .map(|path| {
            // Only the small square is kept: a full-size photo is freed as soon as it is resized.
            let r = decode(path).map(|img| (small(square(&img, size)), is_grey(&img)));
            bar.inc();
            r
        })
        .collect();
    bar.finish();
    let mut failed = Skipped::default();
    let mut images = Vec::with_capacity(decoded.len());
    let mut kept_kinds = Vec::new();
    for (i, (path, r)) in files.iter().zip(decoded).enumerate() {
        match r {
            Ok(img) => {
                images.push(img);
                kept_kinds.extend(kinds.map(|k| k[i].as_str()));
            }
            Err(reason) => failed.add(path.clone(), reason),
        }
    }
    let mut names: Vec<String> = kept_kinds.iter().map(|k| k.to_string()).collect();
    names.dedup(); // files are sorted, so each class's pictures are together, classes in order
    let labels = kept_kinds.iter().map(|k| names.partition_point(|n| n.as_str() < *k) as u32).collect();
    let classes = Classes { names, labels };
    // Channels follow the data: grey only when every picture is grey.
    let channels = channels.unwrap_or(if images.iter().all(|(_, grey)| *grey) { 1 } else { 3 });
    let len = images.len();
    let mut pixels = Vec::with_capacity(len * channels * size * size);
    for (img, _) in images {
        pixels.extend(to_chw(&img, channels));
    }
    (Dataset { source: source.to_string(), pixels, len, channels, size, classes }, failed)
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
