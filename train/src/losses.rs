//! GAN losses.

use candle_core::{Result, Tensor};

/// Mean binary cross-entropy of `logits` against a constant `target` (1 real, 0 fake),
/// in the stable form `max(x, 0) - x·y + ln(1 + e^(-|x|))`: candle's own version takes
/// the sigmoid first and overflows to inf/NaN once a discriminator is confident.
pub fn bce_with_logits(logits: &Tensor, target: f64) -> Result<Tensor> {
    let softplus_neg_abs = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    (logits.relu()? - (logits * target)?)?.add(&softplus_neg_abs)?.mean_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
