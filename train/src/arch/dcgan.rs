//! DCGAN (Radford et al. 2016, pytorch/examples `dcgan`): BatchNorm in both networks, the
//! non-saturating cross-entropy loss, one critic update a step.

use candle_core::Tensor;

use super::Architecture;
use crate::losses::bce_with_logits;
use crate::report::LossRecord;
use crate::step::{critic_update, generator_update, StepCtx, StepLosses, Steps};

pub struct Dcgan;

/// The discriminator "wins outright" when it is this sure of both real and fake.
const SURE: f32 = 1e-3;

impl Architecture for Dcgan {
    fn reads(&self) -> &'static [&'static str] {
        &["beta1", "beta2", "guard-patience"]
    }

    fn labels(&self) -> [&'static str; 3] {
        ["D(x)", "D(G(z))", "GP"]
    }

    fn divergence_hint(&self) -> &'static str {
        ", or --arch wgan-gp"
    }

    fn critic_wins(&self, r: &LossRecord) -> bool {
        r.d_real > 1.0 - SURE && r.d_fake < SURE
    }

    /// The discriminator on real and generated pictures, then the generator against it.
    fn step(&self, c: &StepCtx, s: Steps, step: usize) -> anyhow::Result<(StepLosses, usize)> {
        let Steps { opt_g, opt_d, cursor, rng, .. } = s;
        let (real, classes) = c.real_batch(cursor, rng)?;
        let b = real.dim(0)?;
        // Generated pictures of the real batch's classes.
        let g_pass = c.pass(&c.gan.g, &[0], classes.clone())?;
        let made = c.generate(&g_pass, b, rng)?;
        let (real, _) = c.view(real, 1.0, rng)?;
        let (fake, _) = c.view(made.output(0)?.clone(), 1.0, rng)?;
        let bce = |[r, f]: [&Tensor; 2]| bce_with_logits(r, 1.0)? + bce_with_logits(f, 0.0)?;
        let (loss_d, d_real, d_fake, _) = critic_update(c, opt_d, [real, fake], classes, None, bce)?;
        let loss_g = generator_update(c, &made, opt_g, rng, 1.0, |[f]| bce_with_logits(f, 1.0))?;
        // How likely the critic finds the real and the fake pictures on average.
        let prob = |t: &Tensor| candle_nn::ops::sigmoid(t)?.mean_all();
        let zero = loss_d.zeros_like()?;
        let values = [&loss_d, &loss_g, &prob(&d_real)?, &prob(&d_fake)?, &zero];
        Ok((StepLosses::new(step, cursor.epoch + 1, values)?, b))
    }
}
