//! Times canard-train's training step (the trainer's own, the architecture's
//! `Architecture::step`) on random data, for `scripts/bench-train.sh`, which runs it beside
//! the same step in PyTorch. Prints one JSON line: images/s (generated images per second:
//! batch × generator steps), seconds per step, peak RSS.
//!
//! ```sh
//! cargo run --release -p canard-train --example bench_step -- --image-size 64 --batch 64 --width 64
//! ```
//!
//! Options: `--image-size S`, `--batch B`, `--width W` (ngf = ndf; or
//! `--ngf`, `--ndf` apart), `--warmup N`,
//! `--steps N`, `--export DIR` (also export the generator to DIR/bench for the ONNX
//! Runtime column), `--candle` (candle's ops instead of canard's CPU kernels, for comparison),
//! `--arch dcgan|wgan|wgan-gp|fastgan`, `--augment` (DiffAugment on every image the critic
//! sees, with the policy the trainer starts with; fastgan always has it), `--r1 GAMMA` (fastgan's R1 penalty).

use anyhow::Context;
use canard_shared::manifest::TrainingSummary;
use canard_train::config::{Arch, Settings};
use canard_train::cursor::Cursor;
use canard_train::data::Dataset;
use canard_train::export;
use canard_train::nn::{Engine, Shape};
use canard_train::optim::Optimizer;
use canard_train::step::{StepCtx, Steps};
use canard_train::trainer::Gan;
use candle_core::{DType, Device};
use clap::Parser;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 64)]
    image_size: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// The generator's base width, if not `--width`.
    #[arg(long)]
    ngf: Option<usize>,
    /// The critic's base width, if not `--width`.
    #[arg(long)]
    ndf: Option<usize>,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    steps: usize,
    #[arg(long)]
    export: Option<PathBuf>,
    /// candle's ops instead of canard's CPU kernels (what other devices run), for comparison.
    #[arg(long)]
    candle: bool,
    #[arg(long, value_enum, default_value = "dcgan")]
    arch: Arch,
    #[arg(long)]
    augment: bool,
    /// fastgan: R1's γ (0: off).
    #[arg(long, default_value_t = 0.0)]
    r1: f64,
}

fn main() -> anyhow::Result<()> {
    canard_train::alloc::keep_freed_memory();
    let a = Args::parse();
    let settings = Settings {
        data: Some("random".into()),
        name: Some("bench".into()),
        image_size: Some(a.image_size),
        batch_size: Some(a.batch),
        ngf: Some(a.ngf.unwrap_or(a.width)),
        ndf: Some(a.ndf.unwrap_or(a.width)),
        arch: Some(a.arch),
        r1: Some(a.r1),
        ..Settings::default()
    };
    let cfg = settings.resolve()?;
    let device = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    // Random pixels: the step's cost does not depend on them.
    let len = a.batch * 4;
    let pixels: Vec<u8> = (0..len * 3 * a.image_size * a.image_size).map(|_| rng.random()).collect();
    let data = Dataset { source: "random".into(), pixels, len, channels: 3, size: a.image_size, ..Default::default() };
    let shape = Shape { image_size: a.image_size, channels: 3, nz: cfg.nz, ngf: cfg.ngf, ndf: cfg.ndf, classes: 0 };
    a.arch.validate_shape(&shape).map_err(anyhow::Error::msg)?;
    let gan = Gan::new(a.arch, shape, &mut rng, &device, DType::F32)?;
    let rule = a.arch.get().rule(&cfg);
    let mut opt_g = Optimizer::new(gan.g_params.trainable(), rule, cfg.lr_g)?;
    let mut opt_d = Optimizer::new(gan.d_params.trainable(), rule, cfg.lr_d)?;
    // The policy the trainer starts with: fastgan's (colour, translation), or all three.
    // (fastgan's second half drops colour, `--color-until`: its steps cost a little less.)
    let augmented = a.augment || a.arch == Arch::Fastgan;
    let mut ctx = StepCtx::new(&cfg, &gan, &data, &device, augmented.then_some(&cfg.augment_policy))?;
    if a.candle {
        ctx.engine = Engine::Candle;
    }
    let mut cursor = Cursor::new(data.len, a.batch, 0, 0, 0);

    let mut secs = 0.0;
    for step in 1..=a.warmup + a.steps {
        let t = Instant::now();
        // Past WGAN's burst of critic updates (steps 1–25): the steady state.
        let step = if matches!(a.arch, Arch::Wgan) { step + 100 } else { step };
        let steps = Steps { opt_g: &mut opt_g, opt_d: &mut opt_d, cursor: &mut cursor, rng: &mut rng, ada: None };
        a.arch.get().step(&ctx, steps, step)?;
        if step > a.warmup {
            secs += t.elapsed().as_secs_f64();
        }
    }
    if let Some(dir) = &a.export {
        let summary = TrainingSummary {
            dataset: "random".into(),
            dataset_images: data.len,
            epochs: 0,
            steps: a.warmup + a.steps,
            batch_size: a.batch,
            seconds: secs,
            ..Default::default()
        };
        export::export(&gan.g, &shape, &[], dir, "bench", &a.arch.name(), summary)
            .context("exporting the generator")?;
    }
    println!(
        "{{\"images_per_s\": {:.2}, \"step_s\": {:.4}, \"peak_rss_mib\": {:.1}, \"threads\": {}, \"kernels\": {}}}",
        (a.batch * a.steps) as f64 / secs,
        secs / a.steps as f64,
        peak_rss_mib()?,
        rayon::current_num_threads(),
        ctx.engine == Engine::Kernels,
    );
    Ok(())
}

/// The process's peak resident set (VmHWM), as PyTorch's side reports ru_maxrss.
fn peak_rss_mib() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kib / 1024.0)
}
