//! WGAN (Arjovsky et al. 2017): a critic clipped to ±`--clamp`, RMSprop, `--critic-steps`
//! critic updates a generator update, and a burst of them for the first 25 updates and
//! every 500th (the reference code's), so the critic is near-optimal when it matters.
//! Its step, with a penalty in place of the clipping, is WGAN-GP's too.

use candle_core::{Result, Tensor};

use super::Architecture;
use crate::config::TrainConfig;
use crate::optim::Rule;
use crate::step::{critic_update, generator_update, StepCtx, StepLosses, Steps};
use crate::trainer::Gan;

pub struct Wgan;

impl Architecture for Wgan {
    fn reads(&self) -> &'static [&'static str] {
        &["critic-steps", "critic-steps-burst", "clamp", "rms-alpha"]
    }

    fn rule(&self, cfg: &TrainConfig) -> Rule {
        Rule::RmsProp { alpha: cfg.rms_alpha, eps: 1e-8 }
    }

    fn constrain_critic(&self, gan: &Gan, cfg: &TrainConfig) -> Result<()> {
        gan.d_params.clamp(cfg.clamp)
    }

    fn critic_updates(&self, gen_step: usize, cfg: &TrainConfig) -> usize {
        match gen_step < 25 || gen_step.is_multiple_of(500) {
            true => cfg.critic_steps_burst,
            false => cfg.critic_steps,
        }
    }

    fn batches_for_steps(&self, cfg: &TrainConfig, steps: u128) -> u128 {
        // Updates 0..25, then 500, 1000, … below `steps`.
        let bursts = steps.min(25) + steps.saturating_sub(1) / 500;
        cfg.critic_steps as u128 * (steps - bursts) + cfg.critic_steps_burst as u128 * bursts
    }

    fn divergence_hint(&self) -> &'static str {
        ", or a smaller --clamp"
    }

    fn step(&self, c: &StepCtx, s: Steps, step: usize) -> anyhow::Result<(StepLosses, usize)> {
        critic_steps_then_generator(self, c, s, step, false)
    }
}

/// Critic updates (each on a new batch; with `penalised`, WGAN-GP's penalty at pictures
/// between the real and the generated ones), then one generator update. Reports the last
/// critic update's loss, mean scores and penalty.
pub fn critic_steps_then_generator(
    arch: &dyn Architecture,
    c: &StepCtx,
    s: Steps,
    step: usize,
    penalised: bool,
) -> anyhow::Result<(StepLosses, usize)> {
    let Steps { opt_g, opt_d, cursor, rng, .. } = s;
    let cfg = c.cfg;
    let mut images = 0;
    let mut last: Option<[Tensor; 4]> = None;
    for _ in 0..arch.critic_updates(step - 1, cfg) {
        let (real, classes) = c.real_batch(cursor, rng)?;
        let (real, _) = c.view(real, 1.0, rng)?;
        let b = real.dim(0)?;
        images += b;
        // Generated pictures of the real batch's classes.
        let g_pass = c.pass(&c.gan.g, &[0], classes.clone())?;
        let fake = c.generate(&g_pass, b, rng)?.output(0)?.clone();
        let (fake, _) = c.view(fake, 1.0, rng)?;
        let x_hat = penalised.then(|| super::wgan_gp::interpolate(&real, &fake, rng)).transpose()?;
        let wasserstein = |[r, f]: [&Tensor; 2]| f.mean_all()? - r.mean_all()?;
        let (loss, r, f, gp) = critic_update(c, opt_d, [real, fake], classes, x_hat, wasserstein)?;
        arch.constrain_critic(c.gan, cfg)?;
        let gp = Tensor::new(gp as f32, c.device)?;
        last = Some([loss, r.mean_all()?, f.mean_all()?, gp]);
    }
    let b = cfg.batch_size.min(c.data.len);
    let g_pass = c.pass(&c.gan.g, &[0], c.draw_classes(b, rng)?)?;
    let made = c.generate(&g_pass, b, rng)?;
    let loss_g = generator_update(c, &made, opt_g, rng, 1.0, |[f]| f.mean_all()?.neg())?;
    let [loss_d, s_real, s_fake, gp] =
        last.ok_or_else(|| anyhow::anyhow!("a WGAN step makes at least one critic update"))?;
    Ok((StepLosses::new(step, cursor.epoch + 1, [&loss_d, &loss_g, &s_real, &s_fake, &gp])?, images))
}
