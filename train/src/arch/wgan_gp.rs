//! WGAN-GP (Gulrajani et al. 2017): WGAN's step with a gradient penalty (λ `--gp-lambda`)
//! instead of clipping, at pictures between the real and the generated ones; a LayerNorm
//! critic, since the penalty is defined per sample; Adam.

use candle_core::{Result, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::Architecture;
use crate::nn::dcgan::CriticNorm;
use crate::nn::{self, Init, Net, Shape};
use crate::step::{StepCtx, StepLosses, Steps};

pub struct WganGp;

impl Architecture for WganGp {
    fn reads(&self) -> &'static [&'static str] {
        &["critic-steps", "gp-lambda", "beta1", "beta2"]
    }

    fn critic(&self, init: &mut Init, shape: Shape) -> Result<Net> {
        nn::dcgan::critic(init, shape, CriticNorm::Layer)
    }

    fn divergence_hint(&self) -> &'static str {
        ", or more --critic-steps"
    }

    fn step(&self, c: &StepCtx, s: Steps, step: usize) -> anyhow::Result<(StepLosses, usize)> {
        super::wgan::critic_steps_then_generator(self, c, s, step, true)
    }
}

/// x̂ = ε·real + (1 − ε)·fake, one ε ~ U(0, 1) per sample: where the penalty is taken.
pub fn interpolate(real: &Tensor, fake: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor> {
    let b = real.dim(0)?;
    let eps: Vec<f32> = (0..b).map(|_| rng.random::<f32>()).collect();
    let eps = Tensor::from_vec(eps, (b, 1, 1, 1), real.device())?.to_dtype(real.dtype())?;
    real.broadcast_mul(&eps)? + fake.broadcast_mul(&eps.affine(-1.0, 1.0)?)?
}
