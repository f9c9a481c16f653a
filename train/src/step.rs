//! One training step of each architecture: what the trainer repeats, and what
//! `examples/bench_step.rs` times.
//!
//! DCGAN (pytorch/examples `dcgan`): one generator forward; one discriminator update on
//! real and (detached) fake; one generator update against it (the non-saturating loss).
//! WGAN / WGAN-GP: `critic_updates` critic updates, each on a new batch (clipping the
//! weights, or adding the gradient penalty), then one generator update.

use candle_core::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::augment::DiffAugment;
use crate::config::{Arch, TrainConfig};
use crate::cursor::Cursor;
use crate::data::Dataset;
use crate::losses::{bce_with_logits, critic_updates, gradient_penalty};
use crate::model::params::randn;
use crate::optim::Optimizer;
use crate::report::LossRecord;
use crate::trainer::Gan;

/// What one step needs to read.
pub struct StepCtx<'a> {
    pub cfg: &'a TrainConfig,
    pub gan: &'a Gan,
    pub data: &'a Dataset,
    pub device: &'a Device,
    pub augment: Option<&'a DiffAugment>,
}

impl StepCtx<'_> {
    fn real_batch(&self, cursor: &mut Cursor, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
        let idx = cursor.next_batch().to_vec();
        if self.cfg.mirror {
            let flips: Vec<bool> = (0..idx.len()).map(|_| rng.random::<bool>()).collect();
            self.data.batch_mirrored(&idx, &flips, self.device)
        } else {
            self.data.batch(&idx, self.device)
        }
    }

    fn noise(&self, b: usize, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
        randn(rng, &[b, self.cfg.nz, 1, 1], self.device)
    }

    /// DiffAugment when on: the discriminator only ever sees augmented images, real and fake alike.
    fn view(&self, x: &Tensor, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
        match self.augment {
            Some(a) => a.apply(x, rng),
            None => Ok(x.clone()),
        }
    }
}

pub fn dcgan_step(
    c: &StepCtx,
    opt_g: &mut Optimizer,
    opt_d: &mut Optimizer,
    cursor: &mut Cursor,
    rng: &mut ChaCha8Rng,
    step: usize,
) -> anyhow::Result<(LossRecord, usize)> {
    let real = c.real_batch(cursor, rng)?;
    let b = real.dim(0)?;
    let fake = c.gan.g.forward(&c.noise(b, rng)?, true)?;

    let d_real = c.gan.d.forward(&c.view(&real, rng)?, true)?;
    let d_fake = c.gan.d.forward(&c.view(&fake.detach(), rng)?, true)?;
    let loss_d = (bce_with_logits(&d_real, 1.0)? + bce_with_logits(&d_fake, 0.0)?)?;
    opt_d.backward_step(&loss_d)?;

    let loss_g = bce_with_logits(&c.gan.d.frozen().forward(&c.view(&fake, rng)?, true)?, 1.0)?;
    opt_g.backward_step(&loss_g)?;

    let prob = |t: &Tensor| -> candle_core::Result<f32> { candle_nn::ops::sigmoid(t)?.mean_all()?.to_scalar::<f32>() };
    let rec = LossRecord {
        step,
        epoch: cursor.epoch + 1,
        loss_d: loss_d.to_scalar()?,
        loss_g: loss_g.to_scalar()?,
        d_real: prob(&d_real)?,
        d_fake: prob(&d_fake)?,
        gp: 0.0,
    };
    Ok((rec, b))
}

/// Critic updates (clipped, or with the gradient penalty), then one generator update.
pub fn wgan_step(
    c: &StepCtx,
    opt_g: &mut Optimizer,
    opt_d: &mut Optimizer,
    cursor: &mut Cursor,
    rng: &mut ChaCha8Rng,
    step: usize,
) -> anyhow::Result<(LossRecord, usize)> {
    let cfg = c.cfg;
    let n = critic_updates(cfg.arch, step - 1, cfg.critic_steps, cfg.critic_steps_burst);
    let mut images = 0;
    let (mut loss_d, mut s_real, mut s_fake, mut gp) = (0f32, 0f32, 0f32, 0f32);
    for _ in 0..n {
        let real = c.view(&c.real_batch(cursor, rng)?, rng)?;
        let b = real.dim(0)?;
        images += b;
        let fake = c.view(&c.gan.g.forward(&c.noise(b, rng)?, true)?.detach(), rng)?;
        let score_real = c.gan.d.forward(&real, true)?.mean_all()?;
        let score_fake = c.gan.d.forward(&fake, true)?.mean_all()?;
        let mut loss = (&score_fake - &score_real)?;
        if cfg.arch == Arch::WganGp {
            let eps: Vec<f32> = (0..b).map(|_| rng.random::<f32>()).collect();
            let penalty = gradient_penalty(&c.gan.d, &real, &fake, &Tensor::new(eps, c.device)?)?;
            gp = penalty.to_scalar()?;
            loss = (loss + (penalty * cfg.gp_lambda)?)?;
        }
        opt_d.backward_step(&loss)?;
        if cfg.arch == Arch::Wgan {
            c.gan.d_params.clamp(cfg.clamp)?;
        }
        (loss_d, s_real, s_fake) = (loss.to_scalar()?, score_real.to_scalar()?, score_fake.to_scalar()?);
    }
    let b = cfg.batch_size.min(c.data.len);
    let fake = c.gan.g.forward(&c.noise(b, rng)?, true)?;
    let loss_g = c.gan.d.frozen().forward(&c.view(&fake, rng)?, true)?.mean_all()?.neg()?;
    opt_g.backward_step(&loss_g)?;
    let rec = LossRecord {
        step,
        epoch: cursor.epoch + 1,
        loss_d,
        loss_g: loss_g.to_scalar()?,
        d_real: s_real,
        d_fake: s_fake,
        gp,
    };
    Ok((rec, images))
}
