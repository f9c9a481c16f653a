//! GAN losses: DCGAN's cross-entropy, the hinge loss, the Wasserstein critic loss and its
//! gradient penalty.

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor};

use crate::nn::Record;

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

/// WGAN-GP's penalty (Gulrajani et al.) E[(‖∇ₓ D(x̂)‖₂ − 1)²] at the interpolated pictures
/// `at` recorded; its value, and λ times its gradient with respect to the critic's
/// parameters added to `grads`. The penalty P depends on them only through g = ∇ₓ Σ D, so
/// with v = λ·∂P/∂g = λ·(2/B)·(‖g_b‖ − 1)·g_b/‖g_b‖, λ∇_θ P = ∇_θ ⟨v, g⟩
/// ([`Record::add_tangent_gradient`]).
pub fn gradient_penalty(at: &Record, lambda: f64, grads: &mut GradStore) -> Result<f64> {
    let g = input_gradient(at)?;
    let b = g.dim(0)?;
    // A tiny epsilon keeps the norm's gradient finite where the input gradient is zero.
    let norm = (g.sqr()?.flatten_from(1)?.sum(1)?.to_dtype(DType::F64)? + 1e-12)?.sqrt()?;
    let penalty = (&norm - 1.0)?.sqr()?.mean_all()?.to_scalar::<f64>()?;
    let scale = ((&norm - 1.0)? / &norm)?.affine(lambda * 2.0 / b as f64, 0.0)?;
    let v = g.broadcast_mul(&scale.to_dtype(g.dtype())?.reshape((b, 1, 1, 1))?)?;
    at.add_tangent_gradient(v, 0, grads)?;
    Ok(penalty)
}

/// R1 (Mescheder et al. 2018) at the real pictures recorded: R = γ/2 · mean_b ‖∇ₓ D(x_b)‖²;
/// its value, and its gradient with respect to the critic's parameters added to `grads`
/// (v = ∂R/∂g = γ/B·g, as for [`gradient_penalty`]), BatchNorm's second derivative included.
pub fn r1(at: &Record, gamma: f64, grads: &mut GradStore) -> Result<f64> {
    let g = input_gradient(at)?;
    let b = g.dim(0)? as f64;
    let penalty = gamma / 2.0 * g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()? / b;
    at.add_tangent_gradient(g.affine(gamma / b, 0.0)?, 0, grads)?;
    Ok(penalty)
}

/// ∇ₓ Σ D(x) for the pass recorded.
fn input_gradient(at: &Record) -> Result<Tensor> {
    let scores = at.output(0)?;
    at.backward(vec![(0, scores.ones_like()?)], None, true)?
        .ok_or_else(|| candle_core::Error::Msg("internal error: the critic gave no input gradient".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
