//! canard's small-data GAN (`crate::nn::fastgan`'s networks): the critic's hinge loss on
//! real and generated pictures, DiffAugment always on (ADA's probabilities when on), plus
//! its reconstruction of the real ones, and R1 (`--r1`) when asked; then the generator's
//! −mean(D(G(z))). Adam.

use anyhow::Context;
use candle_core::{DType, Result};
use rand::Rng;

use super::Architecture;
use crate::losses::{hinge, r1};
use crate::nn::fastgan::{rebuild_loss, rebuild_targets};
use crate::nn::{self, backward_both, Init, Net, Shape};
use crate::step::{generator_update, logit_loss, StepCtx, StepLosses, Steps};

pub struct Fastgan;

impl Architecture for Fastgan {
    fn reads(&self) -> &'static [&'static str] {
        &["beta1", "beta2", "ada-target", "r1"]
    }

    fn generator(&self, init: &mut Init, shape: Shape) -> Result<Net> {
        nn::fastgan::generator(init, shape)
    }

    fn critic(&self, init: &mut Init, shape: Shape) -> Result<Net> {
        nn::fastgan::critic(init, shape)
    }

    fn critic_blocks(&self, shape: &Shape) -> Vec<String> {
        nn::fastgan::critic_blocks(shape)
    }

    fn validate(&self, shape: &Shape) -> std::result::Result<(), String> {
        nn::fastgan::validate(shape)
    }

    fn always_augments(&self) -> bool {
        true
    }

    fn labels(&self) -> [&'static str; 3] {
        ["D(x)", "D(G(z))", "Rebuilt"]
    }

    /// Reports the mean logits, and the reconstruction error in the fifth column.
    fn step(&self, c: &StepCtx, s: Steps, step: usize) -> anyhow::Result<(StepLosses, usize)> {
        let Steps { opt_g, opt_d, cursor, rng, ada } = s;
        let p = ada.as_ref().map_or(1.0, |a| a.p);
        let d = &c.gan.d;
        let (real, classes) = c.real_batch(cursor, rng)?;
        let b = real.dim(0)?;
        // Generated pictures of the real batch's classes.
        let g_pass = c.pass(&c.gan.g, &[0], classes.clone())?;
        let made = c.generate(&g_pass, b, rng)?;

        let part = rng.random_range(0..4usize);
        let (real, _) = c.view(real, p, rng)?;
        let targets = rebuild_targets(&real, part)?;
        let (fake, _) = c.view(made.output(0)?.clone(), p, rng)?;
        let real_pass = c.pass(d, &[0, 1, 2], classes.clone())?;
        let fake_pass = c.pass(d, &[0], classes)?;
        let (on_real, on_fake) = rayon::join(|| real_pass.forward(real, part), || fake_pass.forward(fake, part));
        let (on_real, on_fake) = (on_real?, on_fake?);
        on_real.commit()?;
        on_fake.commit()?;
        let outputs = [on_real.output(0)?, on_fake.output(0)?, on_real.output(1)?, on_real.output(2)?];
        let mut rebuilt = None;
        let (loss_d, [(d_real, dl_real), (d_fake, dl_fake), (_, dl_all), (_, dl_quarter)]) =
            logit_loss(outputs, |[r, f, a, q]| {
                let loss = rebuild_loss(a, q, &(targets.0.flatten_all()?, targets.1.flatten_all()?))?;
                rebuilt = Some(loss.clone());
                (hinge(r, true)? + hinge(f, false)?)? + loss
            })?;
        if let Some(ada) = ada {
            ada.observe(&d_real.to_dtype(DType::F32)?.to_vec1::<f32>()?);
        }
        let real_grads = vec![(0, dl_real), (1, dl_all), (2, dl_quarter)];
        let mut grads = backward_both(d, (&on_real, real_grads), (&on_fake, vec![(0, dl_fake)]))?;
        let loss_d = match c.cfg.r1 > 0.0 {
            true => (loss_d + r1(&on_real, c.cfg.r1, &mut grads)?)?,
            false => loss_d,
        };
        drop((on_real, on_fake));
        opt_d.step(&grads)?;

        let loss_g = generator_update(c, &made, opt_g, rng, p, |[f]| f.mean_all()?.neg())?;
        let rebuilt = rebuilt.context("internal error: no reconstruction loss")?.to_dtype(DType::F32)?;
        let (r, f) = (d_real.mean_all()?, d_fake.mean_all()?);
        Ok((StepLosses::new(step, cursor.epoch + 1, [&loss_d, &loss_g, &r, &f, &rebuilt])?, b))
    }
}
