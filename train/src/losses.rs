//! GAN losses: DCGAN's cross-entropy, the hinge loss, the Wasserstein critic loss and its
//! gradient penalty.

use candle_core::{Device, Result, Tensor, Var};

use crate::model::Discriminator;

/// Mean binary cross-entropy of `logits` against a constant `target` (1 real, 0 fake),
/// in the stable form `max(x, 0) - x·y + ln(1 + e^(-|x|))`: candle's own version takes
/// the sigmoid first and overflows to inf/NaN once a discriminator is confident.
pub fn bce_with_logits(logits: &Tensor, target: f64) -> Result<Tensor> {
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    (logits.relu()? - (logits * target)?)?.add(&softplus_neg_abs)?.mean_all()
}

/// The critic's hinge loss on logits (Lim & Ye 2017; SAGAN, FastGAN): mean(max(0, 1 − x))
/// for real pictures (`real` true), mean(max(0, 1 + x)) for generated ones. The generator's
/// side is −mean(x).
pub fn hinge(logits: &Tensor, real: bool) -> Result<Tensor> {
    let sign = if real { -1.0 } else { 1.0 };
    ((logits * sign)? + 1.0)?.relu()?.mean_all()
}

/// The environment variable that makes candle keep the graph of gradients, which the
/// gradient penalty differentiates through. candle reads it once per thread, at the
/// first backward pass, and without it silently drops the second-order terms.
pub const SECOND_ORDER_ENV: &str = "CANDLE_GRAD_DO_NOT_DETACH";

/// Whether second-order gradients flow on this thread: d/dw of (d/dx (x·w)²)² at
/// x = 1.5, w = 2 is 16·w³·x² = 288. Checked before WGAN-GP training starts, so the
/// penalty can never quietly reach only part of the critic.
pub fn second_order_gradients_work() -> Result<bool> {
    let x = Var::new(&[1.5f32], &Device::Cpu)?;
    let w = Var::new(&[2.0f32], &Device::Cpu)?;
    let y = (x.as_tensor() * w.as_tensor())?.sqr()?.sum_all()?;
    let dy_dx =
        y.backward()?.remove(x.as_tensor()).ok_or_else(|| candle_core::Error::Msg("no gradient for x".into()))?;
    let penalty = dy_dx.sqr()?.sum_all()?;
    Ok(match penalty.backward()?.get(w.as_tensor()) {
        Some(g) => (g.to_vec1::<f32>()?[0] - 288.0).abs() < 1e-2,
        None => false,
    })
}

/// Gulrajani et al.'s penalty E[(‖∇ D(x̂)‖₂ − 1)²] at x̂ = ε·real + (1−ε)·fake, one ε ~ U(0,1)
/// per sample (`eps`: [B]). Differentiable with respect to the critic's weights when
/// [`SECOND_ORDER_ENV`] is set (see [`second_order_gradients_work`]).
pub fn gradient_penalty(d: &Discriminator, real: &Tensor, fake: &Tensor, eps: &Tensor) -> Result<Tensor> {
    let e = eps.reshape((eps.dim(0)?, 1, 1, 1))?;
    let x_hat = (real.broadcast_mul(&e)? + fake.broadcast_mul(&(1.0 - &e)?)?)?.detach();
    let x_hat = Var::from_tensor(&x_hat)?;
    let scores = d.forward(x_hat.as_tensor(), true)?;
    let grad = scores
        .sum_all()?
        .backward()?
        .remove(x_hat.as_tensor())
        .ok_or_else(|| candle_core::Error::Msg("the critic's score does not depend on its input".into()))?;
    // A tiny epsilon keeps the norm's gradient finite where the input gradient is zero.
    let norm = (grad.sqr()?.flatten_from(1)?.sum(1)? + 1e-12)?.sqrt()?;
    (norm - 1.0)?.sqr()?.mean_all()
}

/// Critic updates before generator update `gen_step` (0-based). WGAN follows Arjovsky
/// et al.'s reference code: a burst of updates for the first 25 generator updates and
/// every 500th, so the critic is near-optimal when it matters; otherwise `n`.
pub fn critic_updates(arch: crate::config::Arch, gen_step: usize, n: usize, burst: usize) -> usize {
    match arch {
        crate::config::Arch::Wgan if gen_step < 25 || gen_step.is_multiple_of(500) => burst,
        _ => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Arch;

    #[test]
    fn the_wgan_critic_schedule_matches_the_reference_code() {
        let schedule: Vec<usize> = (0..1002).map(|g| critic_updates(Arch::Wgan, g, 5, 100)).collect();
        assert!(schedule[..25].iter().all(|&n| n == 100));
        assert_eq!(&schedule[25..30], &[5; 5]);
        assert_eq!((schedule[499], schedule[500], schedule[501], schedule[1000]), (5, 100, 5, 100));
        assert_eq!(schedule.iter().filter(|&&n| n == 100).count(), 25 + 2);
        assert!((0..600).all(|g| critic_updates(Arch::WganGp, g, 5, 100) == 5));
        assert!((0..600).all(|g| critic_updates(Arch::Dcgan, g, 1, 100) == 1));
    }

    #[test]
    fn the_hinge_is_zero_past_the_margin_and_linear_inside_it() {
        let t = Tensor::new(&[-2.0f32, -0.5, 0.0, 0.5, 2.0], &Device::Cpu).unwrap();
        let real = hinge(&t, true).unwrap().to_scalar::<f32>().unwrap();
        assert!((real - (3.0 + 1.5 + 1.0 + 0.5 + 0.0) / 5.0).abs() < 1e-6, "{real}");
        let fake = hinge(&t, false).unwrap().to_scalar::<f32>().unwrap();
        assert!((fake - (0.0 + 0.5 + 1.0 + 1.5 + 3.0) / 5.0).abs() < 1e-6, "{fake}");
    }

    fn naive(x: f64, y: f64) -> f64 {
        let s = 1.0 / (1.0 + (-x).exp());
        -(y * s.ln() + (1.0 - y) * (1.0 - s).ln())
    }

    #[test]
    fn matches_the_textbook_form_and_stays_finite_for_huge_logits() {
        let xs = [-3.0f32, -0.5, 0.0, 0.7, 4.0];
        let t = Tensor::new(&xs, &Device::Cpu).unwrap();
        for y in [0.0, 1.0] {
            let got = bce_with_logits(&t, y).unwrap().to_scalar::<f32>().unwrap() as f64;
            let want = xs.iter().map(|&x| naive(x as f64, y)).sum::<f64>() / xs.len() as f64;
            assert!((got - want).abs() < 1e-5, "y={y}: {got} vs {want}");
        }
        let big = Tensor::new(&[1000.0f32, -1000.0], &Device::Cpu).unwrap();
        let real = bce_with_logits(&big, 1.0).unwrap().to_scalar::<f32>().unwrap();
        assert!((real - 500.0).abs() < 1e-3, "{real}");
        let var = candle_core::Var::from_tensor(&big).unwrap();
        let g = bce_with_logits(var.as_tensor(), 0.0).unwrap().backward().unwrap();
        let grad = g.get(var.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        assert!(grad.iter().all(|v| v.is_finite()), "{grad:?}");
        assert!((grad[0] - 0.5).abs() < 1e-6 && grad[1].abs() < 1e-6, "{grad:?}");
    }
}
