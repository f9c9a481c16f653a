//! `canard-train project --model models/NAME --image photo.png`: the latent vector whose
//! picture is closest to a photo (StyleGAN's `projector.py`, without its downloaded VGG):
//! the best of `--seeds` seeds, then Adam on z through the generator. Writes the photo
//! beside its projection, the projection alone, a GIF of the search, and the latent as JSON, whose `latent`
//! canard-serve's `/generate?latent=` and `/interpolate` take.
//!
//! The distance is the pixels' mean squared error plus that of 2×2, 4×4, … patch means
//! down to 4×4 pixels (the coarse layout counts as much as the fine detail, which a
//! generator often cannot match exactly), plus a pull towards the sphere of radius √nz
//! where the generator's latents live.

use std::path::PathBuf;

use anyhow::Context;
use canard_shared::image::{batch_to_images, from_u8, grid};
use canard_shared::latent::{encode_latent, latent_batch};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::atomic::write_atomic;
use crate::data::folder::read_picture;
use crate::export::reader::OnnxGenerator;
use crate::nn::{accumulate, Engine};
use crate::optim::{Optimizer, Rule};

/// Frames the GIF of the search holds at most.
const GIF_FRAMES: usize = 40;
/// The weight of the pull towards the latents' sphere.
const SPHERE: f64 = 0.01;

#[derive(clap::Args, Debug)]
pub struct ProjectArgs {
    /// The exported model's folder (models/NAME)
    #[arg(long)]
    pub model: PathBuf,
    /// The photo (any size, colour or grey: centre-cropped and resized as training reads pictures)
    #[arg(long)]
    pub image: PathBuf,
    /// Seeds tried before the search, 1 to 100000; the search starts from the best
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub seeds: u32,
    /// Steps of the search (Adam on z), 0 to 100000
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub steps: u32,
    /// Adam's step size on z, in (0, 10]
    #[arg(long, default_value_t = 0.05, value_parser = parse_lr)]
    pub lr: f64,
    /// Output folder (default samples/NAME)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A conditional model's class to search in, by name or index [default: each tried
    /// seed's own; the search keeps the best one's]
    #[arg(long)]
    pub class: Option<String>,
}

fn parse_lr(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(lr) if lr > 0.0 && lr <= 10.0 => Ok(lr),
        _ => Err(format!("'{s}' is not a step size in (0, 10]")),
    }
}

/// What a projection found.
#[derive(Debug, serde::Serialize)]
pub struct Projection {
    pub model: String,
    pub image: String,
    pub nz: usize,
    /// The latent vector: base64 of `nz` little-endian f32 values.
    pub latent: String,
    /// The seed the search started from.
    pub seed: u64,
    /// A conditional model's class the latent goes with (for `/generate?latent=…&class=…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The distance at the start of the search and at its end.
    pub start_loss: f64,
    pub loss: f64,
    /// The mean absolute difference per pixel value, on the 0–255 scale.
    pub pixel_error: f64,
}

pub fn run(args: ProjectArgs) -> anyhow::Result<Projection> {
    let (manifest, g, class) = super::load(&args.model, args.class.as_deref())?;
    let size = g.shape.image_size;
    let photo = read_picture(&args.image, size, g.shape.channels)
        .map_err(|e| anyhow::anyhow!("--image {}: {e}", args.image.display()))?;
    let target: Vec<f32> = photo.iter().map(|&v| from_u8(v)).collect();
    let target = Tensor::from_vec(target, (1, g.shape.channels, size, size), &g.device)?;
    let Found { z, seed, classes, start_loss, frames } =
        search(&g, &target, class, args.seeds as u64, args.steps as usize, args.lr)?;
    let made = g.images(&z, &classes)?;
    let loss = distance(&Tensor::from_slice(&made, target.shape(), &g.device)?, &target)?.sum_all()?;
    let pixel_error =
        made.iter().zip(&photo).map(|(&m, &p)| (f64::from(m) + 1.0) * 127.5 - f64::from(p)).map(f64::abs).sum::<f64>()
            / photo.len() as f64;

    let out = super::out_dir(args.out.as_deref(), &manifest)?;
    let stem = format!("project_{}", args.image.file_stem().map_or("image".into(), |s| s.to_string_lossy()));
    let pictures = |values: &[f32]| batch_to_images(values, values.len() / g.image_len(), g.shape.channels, size, size);
    let side_by_side = pictures(&[target.flatten_all()?.to_vec1::<f32>()?, made.clone()].concat())?;
    super::write_png(&grid(&side_by_side, 2, 2), &out.join(format!("{stem}.png")))?;
    super::write_png(&side_by_side[1], &out.join(format!("{stem}_projection.png")))?;
    let frames = pictures(&frames.concat())?;
    write_atomic(&out.join(format!("{stem}.gif")), &super::interpolate::there_and_back_gif(&frames, 80)?)?;
    let projection = Projection {
        model: manifest.name.clone(),
        image: args.image.display().to_string(),
        nz: g.shape.nz,
        latent: encode_latent(&z),
        seed,
        class: classes.first().map(|&c| manifest.classes[c as usize].name.clone()),
        start_loss,
        loss: loss.to_scalar::<f32>()? as f64,
        pixel_error,
    };
    write_atomic(&out.join(format!("{stem}.json")), &serde_json::to_vec_pretty(&projection)?)?;
    println!(
        "wrote {stem}.png (the photo and its projection), {stem}_projection.png, {stem}.gif and {stem}.json to {}: \
         distance {:.4} from seed \
         {seed}'s {start_loss:.4}, {pixel_error:.1} of 255 per pixel value",
        out.display(),
        projection.loss
    );
    Ok(projection)
}

/// What [`search`] found: z, the seed it started from and that seed's distance, and the
/// pictures along the way.
struct Found {
    z: Vec<f32>,
    seed: u64,
    /// A conditional model's class of z (one; none otherwise).
    classes: Vec<u32>,
    start_loss: f64,
    frames: Vec<Vec<f32>>,
}

/// The best of `seeds` seeds (of `class`, or each of its own), then `steps` of Adam on z.
fn search(
    g: &OnnxGenerator,
    target: &Tensor,
    class: Option<usize>,
    seeds: u64,
    steps: usize,
    lr: f64,
) -> anyhow::Result<Found> {
    let (nz, device) = (g.shape.nz, &g.device);
    let mut best = (0, f64::INFINITY);
    for chunk in (0..seeds).collect::<Vec<_>>().chunks(64) {
        let made = Tensor::from_vec(
            g.images(&latent_batch(chunk, nz), &g.classes_of(chunk, class))?,
            (chunk.len(), target.dim(1)?, target.dim(2)?, target.dim(3)?),
            device,
        )?;
        let losses = distance(&made, target)?.to_vec1::<f32>()?;
        for (&seed, &l) in chunk.iter().zip(&losses) {
            if (l as f64) < best.1 {
                best = (seed, l as f64);
            }
        }
    }
    let (seed, start_loss) = best;
    let z = Var::from_tensor(&Tensor::from_vec(latent_batch(&[seed], nz), (1, nz, 1, 1), device)?)?;
    let mut adam = Optimizer::new(vec![z.clone()], Rule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8 }, lr)?;
    let classes = g.classes_of(&[seed], class);
    let class_tensor = (!classes.is_empty()).then(|| Tensor::new(&classes[..], device)).transpose()?;
    let pass = g.g.pass(Engine::Kernels, false, &[0])?.conditioned(class_tensor);
    let every = steps.div_ceil(GIF_FRAMES).max(1);
    let mut frames = Vec::new();
    for step in 0..=steps {
        let made = pass.forward(z.as_tensor().detach(), 0)?;
        if step % every == 0 || step == steps {
            frames.push(made.output(0)?.flatten_all()?.to_vec1::<f32>()?);
        }
        if step == steps {
            break;
        }
        // The distance's gradient at the picture by candle's backprop, then back through the
        // generator to z; the sphere's pull added on z.
        let picture = Var::from_tensor(&made.output(0)?.detach())?;
        let dpicture = distance(picture.as_tensor(), target)?.sum_all()?.backward()?;
        let dpicture = dpicture.get(picture.as_tensor()).context("the distance has no gradient")?.clone();
        let dz = made.backward(vec![(0, dpicture)], None, true)?.context("the generator gave no gradient for z")?;
        let zt = z.as_tensor();
        let pull = ((zt.sqr()?.mean_all()? - 1.0)? * (4.0 * SPHERE / nz as f64))?.broadcast_mul(zt)?;
        let mut grads = GradStore::default();
        accumulate(&mut grads, zt, (dz + pull)?)?;
        adam.step(&grads)?;
    }
    Ok(Found { z: z.as_tensor().flatten_all()?.to_vec1::<f32>()?, seed, classes, start_loss, frames })
}

/// Each picture's distance to the target, [N]: the mean squared error of the pixels and of
/// their patch means at each scale down to 4×4.
fn distance(made: &Tensor, target: &Tensor) -> candle_core::Result<Tensor> {
    let mse =
        |a: &Tensor, b: &Tensor| -> candle_core::Result<Tensor> { a.broadcast_sub(b)?.sqr()?.flatten_from(1)?.mean(1) };
    let (mut a, mut b) = (made.clone(), target.clone());
    let mut total = mse(&a, &b)?;
    while a.dim(2)? > 4 {
        (a, b) = (a.avg_pool2d(2)?, b.avg_pool2d(2)?);
        total = (total + mse(&a, &b)?)?;
    }
    Ok(total)
}
