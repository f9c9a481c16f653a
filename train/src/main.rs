//! `canard-train --data PATH --name NAME`: trains a DCGAN and exports it for canard-serve.

use std::path::PathBuf;

use canard_train::{train, trainer::TrainConfig};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "canard-train",
    version,
    about = "Train a DCGAN on a folder of pictures and export it to ONNX for canard-serve"
)]
struct Cli {
    /// A folder of pictures (searched recursively), or builtin:shapes
    #[arg(long)]
    data: String,
    /// Run and model name: writes runs/NAME/ and models/NAME/
    #[arg(long)]
    name: String,
    /// Output image side in pixels (a power of two: 32, 64, 128, …)
    #[arg(long, default_value_t = 64)]
    image_size: usize,
    /// Image channels, 1 (grey) or 3 (RGB); by default grey only when every picture is grey
    #[arg(long)]
    channels: Option<usize>,
    /// Passes over the data (default 25)
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<usize>,
    /// Training steps (one discriminator and one generator update each), instead of --epochs
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Seeds weights, noise and data order: the same seed and data give the same model on CPU
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Latent vector length
    #[arg(long, default_value_t = 100)]
    nz: usize,
    /// Generator width
    #[arg(long, default_value_t = 64)]
    ngf: usize,
    /// Discriminator width
    #[arg(long, default_value_t = 64)]
    ndf: usize,
    /// Adam learning rate (both networks)
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    #[arg(long, default_value_t = 0.5)]
    beta1: f64,
    #[arg(long, default_value_t = 0.999)]
    beta2: f64,
    /// Where runs/NAME/ goes
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// Where models/NAME/ goes
    #[arg(long, default_value = "models")]
    models_dir: PathBuf,
    /// Print a progress line every N steps
    #[arg(long, default_value_t = 10)]
    log_every: usize,
}

fn main() -> anyhow::Result<()> {
    let c = Cli::parse();
    let cfg = TrainConfig {
        data: c.data,
        name: c.name,
        image_size: c.image_size,
        channels: c.channels,
        epochs: c.epochs,
        steps: c.steps,
        batch_size: c.batch_size,
        seed: c.seed,
        nz: c.nz,
        ngf: c.ngf,
        ndf: c.ndf,
        lr: c.lr,
        beta1: c.beta1,
        beta2: c.beta2,
        runs_dir: c.runs_dir,
        models_dir: c.models_dir,
        log_every: c.log_every,
    };
    let out = train(&cfg)?;
    eprintln!(
        "canard-train: done. Samples in {}/samples; serve it with: canard-serve --model {}",
        out.run_dir.display(),
        cfg.name
    );
    Ok(())
}
