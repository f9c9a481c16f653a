//! `canard-train interpolate --model models/NAME --from 1 --to 2`: a walk through latent
//! space between two seeds, as a strip (`interpolate_A_B.png`) and a looping GIF.
//!
//! The path is spherical (slerp): Gaussian latents live near a sphere, and a straight
//! line between two of them dips through the middle, where the pictures wash out.

use std::path::PathBuf;

use canard_shared::image::{encode_gif, grid};
use canard_shared::latent::{latent, slerp, truncate};
use image::imageops::FilterType;
use image::{Delay, DynamicImage, Frame};

use crate::atomic::write_atomic;

/// GIF frames are enlarged (nearest neighbour, by a whole factor) to at least this many pixels:
/// a 32-pixel animation is too small to watch.
const GIF_MIN_SIDE: u32 = 128;
/// The end points are held this long in the GIF, so the loop shows where it turns.
const HOLD_MS: u32 = 600;

#[derive(clap::Args, Debug)]
pub struct InterpolateArgs {
    /// The exported model's folder (models/NAME)
    #[arg(long)]
    pub model: PathBuf,
    /// The seed to start from
    #[arg(long)]
    pub from: u64,
    /// The seed to end at
    #[arg(long)]
    pub to: u64,
    /// Pictures along the way, both ends included (2 to 256)
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(2..=256))]
    pub steps: u16,
    /// Output folder (default samples/NAME)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Truncation ψ in (0, 1], applied to both ends
    #[arg(long, default_value_t = 1.0, value_parser = super::parse_psi)]
    pub truncation: f32,
    /// Milliseconds per GIF frame
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(10..=10_000))]
    pub frame_ms: u32,
    /// A conditional model's class for the whole walk, by name or index [default: the --from seed's own]
    #[arg(long)]
    pub class: Option<String>,
}

pub fn run(args: InterpolateArgs) -> anyhow::Result<()> {
    let (manifest, g, class) = super::load(&args.model, args.class.as_deref())?;
    let out = super::out_dir(args.out.as_deref(), &manifest)?;
    let (mut a, mut b) = (latent(args.from, g.shape.nz), latent(args.to, g.shape.nz));
    truncate(&mut a, args.truncation);
    truncate(&mut b, args.truncation);
    let steps = usize::from(args.steps.max(2));
    // t = 0 and t = 1 give exactly `a` and `b`, so the ends are the seeds' own pictures.
    let z: Vec<f32> = (0..steps).flat_map(|i| slerp(&a, &b, i as f32 / (steps - 1) as f32)).collect();
    let classes = g.classes_of(&vec![args.from; steps], class); // the --from seed's class throughout
    let pictures = super::pictures(&g, &z, &classes)?;

    let stem = format!("interpolate_{}_{}", args.from, args.to);
    super::write_png(&grid(&pictures, steps, 2), &out.join(format!("{stem}.png")))?;
    write_atomic(&out.join(format!("{stem}.gif")), &there_and_back_gif(&pictures, args.frame_ms)?)?;
    println!("wrote {stem}.png and {stem}.gif ({steps} steps) to {}", out.display());
    Ok(())
}

/// Frames 0, 1, …, n-1, n-2, …, 1, looping forever; the ends held for [`HOLD_MS`].
pub fn there_and_back_gif(pictures: &[DynamicImage], frame_ms: u32) -> anyhow::Result<Vec<u8>> {
    let n = pictures.len();
    let order = (0..n).chain((1..n.saturating_sub(1)).rev());
    let side = pictures.first().map_or(1, |p| p.width().max(1));
    let scale = GIF_MIN_SIDE.div_ceil(side).max(1);
    Ok(encode_gif(order.map(|i| {
        let p = &pictures[i];
        let rgba = p.resize(p.width() * scale, p.height() * scale, FilterType::Nearest).to_rgba8();
        let ms = if i == 0 || i + 1 == n { HOLD_MS.max(frame_ms) } else { frame_ms };
        Frame::from_parts(rgba, 0, 0, Delay::from_numer_denom_ms(ms, 1))
    }))?)
}
