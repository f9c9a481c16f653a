//! The DCGAN training loop, as pytorch/examples `dcgan`: per batch one discriminator
//! step on real and fake images, then one generator step against the updated
//! discriminator (with the non-saturating loss), both with Adam.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use canard_shared::manifest::TrainingSummary;
use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointState};
use crate::data::Dataset;
use crate::losses::bce_with_logits;
use crate::model::{params::randn, DcganShape, Discriminator, Generator, Init, Params};
use crate::report::{self, LossRecord, PREVIEW_SEEDS};
use crate::{device, export};

/// Everything a run depends on. Defaults are Radford et al.'s.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub data: String,
    pub name: String,
    pub image_size: usize,
    /// 1 or 3; `None` follows the data.
    pub channels: Option<usize>,
    pub epochs: Option<usize>,
    pub steps: Option<usize>,
    pub batch_size: usize,
    pub seed: u64,
    pub nz: usize,
    pub ngf: usize,
    pub ndf: usize,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub runs_dir: PathBuf,
    pub models_dir: PathBuf,
    /// Print a progress line every this many steps.
    pub log_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            data: "builtin:shapes".into(),
            name: "demo".into(),
            image_size: 64,
            channels: None,
            epochs: None,
            steps: None,
            batch_size: 64,
            seed: 0,
            nz: 100,
            ngf: 64,
            ndf: 64,
            lr: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
            runs_dir: "runs".into(),
            models_dir: "models".into(),
            log_every: 10,
        }
    }
}

pub const DEFAULT_EPOCHS: usize = 25;

/// What a finished run produced.
pub struct TrainOutcome {
    pub model_dir: PathBuf,
    pub run_dir: PathBuf,
    pub generator: Generator,
    pub summary: TrainingSummary,
}

/// The two networks and their optimisers.
pub struct Gan {
    pub g: Generator,
    pub d: Discriminator,
    pub g_params: Params,
    pub d_params: Params,
}

impl Gan {
    /// Both networks, initialised from `rng` (generator first), in f32.
    pub fn new(shape: DcganShape, rng: &mut ChaCha8Rng, device: &Device) -> candle_core::Result<Self> {
        Self::with_dtype(shape, rng, device, DType::F32)
    }

    pub fn with_dtype(
        shape: DcganShape,
        rng: &mut ChaCha8Rng,
        device: &Device,
        dtype: DType,
    ) -> candle_core::Result<Self> {
        let mut g_params = Params::default();
        let g = Generator::new(&mut Init::new(&mut g_params, rng, device, dtype), shape)?;
        let mut d_params = Params::default();
        let d = Discriminator::new(&mut Init::new(&mut d_params, rng, device, dtype), shape)?;
        Ok(Self { g, d, g_params, d_params })
    }
}

pub fn train(cfg: &TrainConfig) -> anyhow::Result<TrainOutcome> {
    if !canard_shared::manifest::is_plain_name(&cfg.name) {
        anyhow::bail!("--name {:?} must be letters, digits, '-', '_' or '.' (it becomes a folder name)", cfg.name);
    }
    if cfg.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let device = device::select()?;
    eprintln!("canard-train: device {}", device::describe(&device));

    let t0 = Instant::now();
    let (data, skipped) = Dataset::open(&cfg.data, cfg.image_size, cfg.channels, cfg.seed)?;
    if let Some(w) = skipped.warning() {
        eprintln!("{w}");
    }
    eprintln!(
        "canard-train: {} images from {} ({}×{}, {} channel{}) in {:.1}s",
        data.len,
        data.source,
        data.size,
        data.size,
        data.channels,
        if data.channels == 1 { "" } else { "s" },
        t0.elapsed().as_secs_f64()
    );

    let shape =
        DcganShape { image_size: cfg.image_size, channels: data.channels, nz: cfg.nz, ngf: cfg.ngf, ndf: cfg.ndf };
    shape.validate().map_err(anyhow::Error::msg)?;
    let batch = cfg.batch_size.min(data.len);
    if batch < cfg.batch_size {
        eprintln!("canard-train: only {} images: batch size reduced from {} to {batch}", data.len, cfg.batch_size);
    }
    let steps_per_epoch = data.len / batch;
    let total_steps = match (cfg.steps, cfg.epochs) {
        (Some(_), Some(_)) => anyhow::bail!("give --epochs or --steps, not both"),
        (Some(s), None) => s,
        (None, e) => e.unwrap_or(DEFAULT_EPOCHS) * steps_per_epoch,
    };
    if total_steps == 0 {
        anyhow::bail!("nothing to train: --epochs and --steps must be at least 1");
    }
    let total_epochs = total_steps.div_ceil(steps_per_epoch);

    let run_dir = cfg.runs_dir.join(&cfg.name);
    let samples_dir = run_dir.join("samples");
    std::fs::create_dir_all(&samples_dir).with_context(|| format!("cannot create {}", samples_dir.display()))?;
    crate::atomic::write_atomic(&run_dir.join("config.json"), serde_json::to_string_pretty(cfg)?.as_bytes())?;

    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let gan = Gan::new(shape, &mut rng, &device)?;
    let adam = ParamsAdamW { lr: cfg.lr, beta1: cfg.beta1, beta2: cfg.beta2, eps: 1e-8, weight_decay: 0.0 };
    let mut opt_g = AdamW::new(gan.g_params.trainable(), adam.clone())?;
    let mut opt_d = AdamW::new(gan.d_params.trainable(), adam)?;

    let first: Vec<usize> = (0..data.len.min(64)).collect();
    report::save_grid(&data.batch(&first, &device)?, &run_dir.join("real_samples.png"))?;
    eprintln!(
        "canard-train: {total_steps} steps ({total_epochs} epochs of {steps_per_epoch}), batch {batch}; writing {}",
        run_dir.display()
    );

    let preview_seeds: Vec<u64> = PREVIEW_SEEDS.collect();
    let mut losses: Vec<LossRecord> = Vec::with_capacity(total_steps);
    let mut order: Vec<usize> = (0..data.len).collect();
    let start = Instant::now();
    let mut step = 0;
    for epoch in 1..=total_epochs {
        order.shuffle(&mut rng);
        for (i, idx) in order.chunks_exact(batch).enumerate() {
            if step == total_steps {
                break;
            }
            let real = data.batch(idx, &device)?;
            let rec = train_step(&gan, &mut opt_g, &mut opt_d, &real, &mut rng, step + 1, epoch)?;
            step += 1;
            if !(rec.loss_d.is_finite() && rec.loss_g.is_finite()) {
                anyhow::bail!(
                    "training diverged at step {step} (loss_d {}, loss_g {}); try a lower --lr",
                    rec.loss_d,
                    rec.loss_g
                );
            }
            losses.push(rec);
            if step % cfg.log_every.max(1) == 0 || i + 1 == steps_per_epoch || step == total_steps {
                let rate = (step * batch) as f64 / start.elapsed().as_secs_f64();
                let eta = (total_steps - step) as f64 * batch as f64 / rate;
                eprintln!(
                    "[{epoch}/{total_epochs}][{}/{steps_per_epoch}] step {step}/{total_steps}  Loss_D {:.4}  Loss_G {:.4}  D(x) {:.3}  D(G(z)) {:.3}  {rate:.1} img/s  ETA {eta:.0}s",
                    i + 1,
                    rec.loss_d,
                    rec.loss_g,
                    rec.d_real,
                    rec.d_fake
                );
            }
        }
        report::save_grid(
            &report::generate(&gan.g, &preview_seeds, &device)?,
            &samples_dir.join(format!("epoch_{epoch:03}.png")),
        )?;
        report::write_losses_csv(&losses, &run_dir.join("losses.csv"))?;
        checkpoint::save(&run_dir, &gan.g_params, &gan.d_params, &CheckpointState { step, epoch, seed: cfg.seed })?;
    }

    let seconds = start.elapsed().as_secs_f64();
    let summary = TrainingSummary {
        dataset: data.source.clone(),
        dataset_images: data.len,
        epochs: total_epochs,
        steps: total_steps,
        batch_size: batch,
        images_seen: (total_steps * batch) as u64,
        seconds,
        seed: cfg.seed,
        exported_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let (model_dir, _) = export::export(&gan.g, &cfg.models_dir, &cfg.name, "dcgan", summary.clone())?;
    eprintln!("canard-train: {total_steps} steps in {seconds:.1}s; exported {}", model_dir.display());
    Ok(TrainOutcome { model_dir, run_dir, generator: gan.g, summary })
}

/// One discriminator step, then one generator step, on the same fake batch.
fn train_step(
    gan: &Gan,
    opt_g: &mut AdamW,
    opt_d: &mut AdamW,
    real: &Tensor,
    rng: &mut ChaCha8Rng,
    step: usize,
    epoch: usize,
) -> candle_core::Result<LossRecord> {
    let b = real.dim(0)?;
    let z = randn(rng, &[b, gan.g.shape.nz, 1, 1], real.device())?;
    let fake = gan.g.forward(&z, true)?;

    let d_real = gan.d.forward(real, true)?;
    let d_fake = gan.d.forward(&fake.detach(), true)?;
    let loss_d = (bce_with_logits(&d_real, 1.0)? + bce_with_logits(&d_fake, 0.0)?)?;
    opt_d.backward_step(&loss_d)?;

    let loss_g = bce_with_logits(&gan.d.forward(&fake, true)?, 1.0)?;
    opt_g.backward_step(&loss_g)?;

    let prob = |t: &Tensor| -> candle_core::Result<f32> { candle_nn::ops::sigmoid(t)?.mean_all()?.to_scalar::<f32>() };
    Ok(LossRecord {
        step,
        epoch,
        loss_d: loss_d.to_scalar()?,
        loss_g: loss_g.to_scalar()?,
        d_real: prob(&d_real)?,
        d_fake: prob(&d_fake)?,
    })
}
