//! `canard-train eval --model models/NAME --data DIR|builtin:NAME`: the multi-scale SWD
//! between a model's pictures and a dataset (see [`crate::eval::swd`]), then whether the
//! model copies its pictures: nearest training pictures, and `nearest.png`
//! ([`crate::eval::nearest`]). `--generated DIR` measures a folder of pictures another
//! program made instead (the reference in `scripts/bench-quality.sh`), with the same code.

use std::borrow::Cow;

use anyhow::Context;
use std::path::PathBuf;
use std::time::Instant;

use canard_shared::image::{from_u8, to_u8};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::Dataset;
use crate::eval::{nearest, sliced_wasserstein, ImageSet, Nearest, SwdReport};
use crate::export::reader::OnnxGenerator;
use crate::report::write_grid;

/// The number of images compared by default (when the data has that many).
pub const DEFAULT_IMAGES: usize = 2048;
/// The most `--images`: the paper's 16,384. Memory grows with it: roughly 2 GB per
/// 10,000 64×64 RGB images on each side (pyramids, patches and their projections).
pub const MAX_IMAGES: usize = 16_384;
/// Seeds handed to the generator at a time.
const BATCH: usize = 64;
/// Generated pictures matched with their nearest training pictures (seeds 0..64), and
/// training pictures matched with theirs.
pub const NEAREST_IMAGES: usize = 64;
const NEAREST_TRAINING: usize = 128;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The exported model's folder (models/NAME)
    #[arg(long, required_unless_present = "generated", conflicts_with = "generated")]
    pub model: Option<PathBuf>,
    /// Instead of a model: a folder of generated pictures (another program's), taken in name order
    #[arg(long, requires = "image_size")]
    pub generated: Option<PathBuf>,
    /// With --generated: the size to compare at (pictures are resized as training pictures are)
    #[arg(long, requires = "generated")]
    pub image_size: Option<usize>,
    /// With --generated: 1 (grey) or 3 (RGB) [default: 3]
    #[arg(long, requires = "generated")]
    pub channels: Option<usize>,
    /// The pictures to compare with: a folder, or builtin:shapes
    #[arg(long)]
    pub data: String,
    /// Images on each side: generated from seeds 0..N, and N of the data's, a smaller data set
    /// cycled to N (default 2048, at most 16384; with --generated, at most the folder's count)
    #[arg(long)]
    pub images: Option<usize>,
    /// Seeds the built-in data, the choice of real images, and the SWD's patches and directions
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A conditional model's class, by name or index: its pictures of that class against the
    /// data's pictures of that class (--data read by class, as --classes subfolders reads it)
    /// [default: each seed's own class, against all the data]
    #[arg(long, requires = "model")]
    pub class: Option<String>,
    /// Where to write the generated pictures beside their nearest training pictures, a .png
    /// file [default: nearest.png in the model's folder; with --generated, not written unless given]
    #[arg(long)]
    pub nearest: Option<PathBuf>,
}

/// Where `nearest.png` goes: `--nearest` (a PNG file name), else into the model's folder;
/// with `--generated` and no `--nearest`, nowhere. Never the current folder by default,
/// never over a model's own files (which are not PNGs).
fn nearest_path(args: &EvalArgs) -> anyhow::Result<Option<PathBuf>> {
    match (&args.nearest, &args.model) {
        (Some(path), _) => {
            let png = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("png"));
            if !png {
                anyhow::bail!(
                    "--nearest {}: the pairs are written as a PNG; give a file name ending in .png",
                    path.display()
                );
            }
            if path.is_dir() {
                anyhow::bail!("--nearest {} is a folder; give a file name ending in .png", path.display());
            }
            // Checked now, not after the whole measurement.
            let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
            if !folder.is_dir() {
                anyhow::bail!("--nearest {}: the folder {} does not exist", path.display(), folder.display());
            }
            Ok(Some(path.clone()))
        }
        (None, Some(model)) => Ok(Some(model.join("nearest.png"))),
        (None, None) => Ok(None),
    }
}

/// What is measured: an exported model, or a folder of pictures already generated.
enum Source {
    /// A model, and the class its pictures are of (None: each seed's own).
    Model(OnnxGenerator, Option<usize>),
    Folder(Dataset),
}

impl Source {
    /// The pictures of seeds 0..n (the folder's first n), NCHW in [-1, 1].
    fn pictures(&self, seeds: &[u64]) -> anyhow::Result<Vec<f32>> {
        match self {
            Source::Model(g, class) => Ok(g.generate(seeds, *class)?),
            Source::Folder(d) => {
                let idx: Vec<usize> = seeds.iter().map(|&s| s as usize).filter(|&i| i < d.len).collect();
                Ok(d.to_f32(&idx))
            }
        }
    }
}

/// Loads the model (or the generated pictures) and the data (at the model's size and
/// channels), prints the SWD table and the nearest training pictures; the SWD report.
pub fn run(args: EvalArgs) -> anyhow::Result<SwdReport> {
    if args.model.is_some() {
        for (flag, given) in [("--image-size", args.image_size.is_some()), ("--channels", args.channels.is_some())] {
            if given {
                anyhow::bail!("{flag} goes with --generated; a model's pictures are compared at the size and channels its manifest gives");
            }
        }
    }
    let nearest_png = nearest_path(&args)?;
    // The trainer's cache (runs/.cache) when there is one, so evaluating against a training
    // folder decodes nothing; eval never creates it.
    let cache = std::path::Path::new("runs").join(".cache");
    let cache = cache.is_dir().then_some(cache.as_path());
    let mut of_class: Option<String> = None;
    let (name, source, size, channels) = match (&args.model, &args.generated) {
        (Some(model), _) => {
            let (manifest, g, class) = super::load(model, args.class.as_deref())?;
            let (size, channels) = (manifest.image_size as usize, manifest.channels as usize);
            of_class = class.map(|c| manifest.classes[c].name.clone());
            let name = match &of_class {
                Some(c) => format!("{} ({c})", manifest.name),
                None => manifest.name,
            };
            (name, Source::Model(g, class), size, channels)
        }
        (None, Some(dir)) => {
            let size = args.image_size.context("--generated needs --image-size")?;
            let channels = args.channels.unwrap_or(3);
            crate::nn::Shape { image_size: size, channels, nz: 1, ngf: 1, ndf: 1, classes: 0 }
                .validate()
                .map_err(|e| anyhow::anyhow!("--image-size/--channels: {e}"))?;
            let folder = dir.to_str().with_context(|| format!("{} is not UTF-8", dir.display()))?;
            let (pictures, skipped) = Dataset::open(folder, size, Some(channels), args.seed, None, false)?;
            if let Some(w) = skipped.warning() {
                eprintln!("{w}");
            }
            (dir.display().to_string(), Source::Folder(pictures), size, channels)
        }
        (None, None) => anyhow::bail!("give --model or --generated"),
    };
    let (mut data, skipped) = Dataset::open(&args.data, size, Some(channels), args.seed, cache, of_class.is_some())
        .with_context(|| match &of_class {
            Some(c) => format!("--class {c}: --data {} is read by its subfolders", args.data),
            None => format!("--data {}", args.data),
        })?;
    if let Some(w) = skipped.warning() {
        eprintln!("{w}");
    }
    if let Some(class) = &of_class {
        let names = data.classes.names.join(", ");
        data = data.of_class(class).with_context(|| {
            format!("--class {class}: {} has no subfolder {class:?} of pictures (it has {names})", args.data)
        })?;
    }
    let available = match &source {
        Source::Model(..) => MAX_IMAGES,
        Source::Folder(d) => d.len,
    };
    let images = match args.images {
        Some(n) if n == 0 || n > MAX_IMAGES => anyhow::bail!("--images must be from 1 to {MAX_IMAGES}, not {n}"),
        Some(n) if n > available => {
            eprintln!("canard-train eval: comparing {available} images instead of {n} (the folder has {available})");
            available
        }
        Some(n) => n,
        None => DEFAULT_IMAGES.min(available),
    };
    let t0 = Instant::now();
    let report = evaluate_with(|seeds| source.pictures(seeds), &data, images, args.seed)?;
    let reals = if images > data.len {
        format!("its {} images cycled to {images}", data.len)
    } else {
        format!("{images} of its {} images", data.len)
    };
    println!(
        "SWD between {name} (seeds 0..{images}) and {} ({reals}), {size}×{size}, {:.1}s:",
        data.source,
        t0.elapsed().as_secs_f64()
    );
    println!("{report}");

    let t0 = Instant::now();
    let seeds: Vec<u64> = (0..NEAREST_IMAGES.min(images) as u64).collect();
    let found = memorisation(&source.pictures(&seeds)?, &data, nearest_png.as_deref(), args.seed)?;
    let shown = match &nearest_png {
        Some(path) => {
            format!("{} shows each generated picture (left) beside its nearest training picture", path.display())
        }
        None => "add --nearest FILE.png to see each generated picture beside its nearest training picture".into(),
    };
    println!("\nNearest training pictures ({}×{size}, {:.1}s); {shown}:", data.source, t0.elapsed().as_secs_f64());
    println!("{found}");
    Ok(report)
}

/// Generated pictures (`fakes`, NCHW in [-1, 1]) against the data ([`nearest`]); the pairs
/// written to `path` (when given), eight to a row.
pub fn memorisation(
    fakes: &[f32],
    data: &Dataset,
    path: Option<&std::path::Path>,
    seed: u64,
) -> anyhow::Result<Nearest> {
    let found = nearest(fakes, data, NEAREST_TRAINING, seed);
    let Some(path) = path else { return Ok(found) };
    let mut pairs = Vec::with_capacity(2 * fakes.len());
    for (fake, &(i, _)) in fakes.chunks(data.image_len()).zip(&found.generated) {
        pairs.extend_from_slice(fake);
        pairs.extend(data.image_u8(i).iter().map(|&v| from_u8(v)));
    }
    let shape = (2 * found.generated.len(), data.channels, data.size, data.size);
    write_grid(&pairs, shape, 16, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(found)
}

/// The SWD between `images` pictures of a generator (seeds 0..images) and as many of
/// `data`'s: `generate` returns the NCHW values in [-1, 1] of the images for a batch of
/// seeds (at most 64), at the data's size and channels. `canard-train eval` passes the
/// exported model, the trainer its own eval-mode network; the seeds' latent vectors must be
/// `canard_shared::latent`'s, so the numbers match `canard-train eval` on the export.
/// Compares `images` images on each side (`real_pictures` for the data's side).
pub fn evaluate_with(
    mut generate: impl FnMut(&[u64]) -> anyhow::Result<Vec<f32>>,
    data: &Dataset,
    images: usize,
    seed: u64,
) -> anyhow::Result<SwdReport> {
    if images == 0 || data.len == 0 {
        anyhow::bail!("cannot measure SWD: no images to compare ({images} asked, {} has {})", data.source, data.len);
    }
    let n = data.image_len();
    let mut fakes = Vec::with_capacity(images * n);
    let seeds: Vec<u64> = (0..images as u64).collect();
    for batch in seeds.chunks(BATCH) {
        let v = generate(batch)?;
        if v.len() != batch.len() * n {
            anyhow::bail!(
                "the generator gave {} values for {} images of {}×{}×{}",
                v.len(),
                batch.len(),
                data.channels,
                data.size,
                data.size
            );
        }
        // Rounded to 8-bit levels once: the SWD compares bytes, as the reference's uint8 images.
        fakes.extend(v.iter().map(|&x| to_u8(x)));
    }
    let reals = real_pictures(data, images, seed);
    let reals = ImageSet::new(&reals[..], images, data.channels, data.size);
    let fakes = ImageSet::new(&fakes[..], images, data.channels, data.size);
    Ok(sliced_wasserstein(&reals, &fakes, seed)?)
}

/// `k` of the data's images: a random `k` of them (a folder's order may be grouped by
/// subject), or, when the data has fewer, every image `k / len` times and a random `k % len`
/// of them once more. Why cycle instead of comparing fewer: SWD between two samples of
/// the same distribution is not 0, and with 131 pictures on each side that floor is most
/// of a good model's score (131 of the food pictures drawn with replacement score about
/// 25 ×10³ against all 131, where fastgan scores 35–40); 2,048 drawn the same way score
/// about 6 against the 131 cycled to 2,048 (QUALITY.md, "Measuring small folders").
fn real_pictures(data: &Dataset, k: usize, seed: u64) -> Cow<'_, [u8]> {
    if k == data.len {
        return Cow::Borrowed(&data.pixels);
    }
    let mut idx: Vec<usize> = (0..data.len).cycle().take(k / data.len * data.len).collect();
    let rest = rand::seq::index::sample(&mut ChaCha8Rng::seed_from_u64(seed), data.len, k % data.len).into_vec();
    idx.extend(rest);
    idx.sort_unstable();
    Cow::Owned(idx.iter().flat_map(|&i| data.image_u8(i)).copied().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// The first `n` of builtin:shapes at 16 px.
    fn shapes(n: usize) -> Dataset {
        Dataset::open("builtin:shapes", 16, Some(3), 0, None, false).unwrap().0.first(n)
    }

    fn which(data: &Dataset, pixels: &[u8]) -> Vec<usize> {
        pixels.chunks(data.image_len()).map(|p| (0..data.len).find(|&i| data.image_u8(i) == p).unwrap()).collect()
    }

    #[test]
    fn real_pictures_cycle_a_small_set_and_sample_a_large_one() {
        let data = shapes(10);
        assert!(matches!(real_pictures(&data, 10, 3), Cow::Borrowed(_)));
        // Fewer: distinct pictures.
        let mut few = which(&data, &real_pictures(&data, 4, 3));
        few.dedup();
        assert_eq!(few.len(), 4);
        // More: every picture twice, three of them a third time.
        let many = which(&data, &real_pictures(&data, 23, 3));
        assert_eq!(many.len(), 23);
        let counts: Vec<usize> = (0..10).map(|i| many.iter().filter(|&&j| j == i).count()).collect();
        assert!(counts.iter().all(|&c| c == 2 || c == 3), "{counts:?}");
        assert_eq!(counts.iter().filter(|&&c| c == 3).count(), 3);
        assert_ne!(which(&data, &real_pictures(&data, 23, 4)), many, "the extra three follow the seed");
    }

    #[test]
    fn a_copier_scores_near_zero_when_many_pictures_are_compared() {
        // A "model" that returns training pictures drawn at random scores above 0 with as
        // many pictures as the data has: the sampling floor that cycling the data removes.
        let data = shapes(24);
        let copier = |seeds: &[u64]| -> anyhow::Result<Vec<f32>> {
            let idx: Vec<usize> =
                seeds.iter().map(|&s| ChaCha8Rng::seed_from_u64(s).random_range(0..data.len)).collect();
            Ok(data.to_f32(&idx))
        };
        let few = evaluate_with(copier, &data, data.len, 0).unwrap().mean;
        let many = evaluate_with(copier, &data, 40 * data.len, 0).unwrap().mean;
        assert!(few > 0.0 && many < 0.5 * few, "{few} with {} pictures, {many} with {}", data.len, 40 * data.len);
        // A generator that is not the data stays far from it however many are compared.
        let grey = |seeds: &[u64]| -> anyhow::Result<Vec<f32>> { Ok(vec![0.0; seeds.len() * data.image_len()]) };
        assert!(evaluate_with(grey, &data, 40 * data.len, 0).unwrap().mean > 4.0 * few);
    }
}
