//! Spectral normalisation (Miyato et al. 2018): a weight divided by its largest singular
//! value σ, estimated by one power iteration per training pass from the kept `u`, as
//! PyTorch's `spectral_norm`: σ = uᵀWv with u, v held constant, so the gradient reaches W
//! through σ too.

use candle_core::{Result, Tensor, Var, WithDType};

use super::{Init, Weights};

/// The left singular vector's estimate [out], kept in checkpoints (not trained).
pub struct SpectralNorm {
    pub u: Var,
}

/// One pass's normalisation: the power iteration's u [out, 1] and v [in·k·k, 1], and σ.
pub struct Normalised {
    u: Tensor,
    v: Tensor,
    sigma: Tensor,
}

impl SpectralNorm {
    pub fn new(init: &mut Init, out: usize) -> Result<Self> {
        // The parameter's own Var (a tensor made by `Init` is one), so checkpoints see updates.
        let u = Var::from_tensor(&init.buffer_normal("u", &[out])?)?;
        u.set(&unit(u.as_tensor())?)?;
        Ok(Self { u })
    }

    /// A one-weight layer's weights for one pass: `w`, normalised by `spectral` when it has
    /// spectral normalisation.
    pub fn weights(spectral: Option<&SpectralNorm>, w: &Tensor, train: bool) -> Result<Weights> {
        match spectral {
            Some(s) => s.normalise(w, train),
            None => Ok(Weights::plain(vec![w])),
        }
    }

    /// W/σ(W) for one pass; `train` advances the power iteration (and keeps the new u).
    pub fn normalise(&self, w: &Tensor, train: bool) -> Result<Weights> {
        let mat = w.detach().flatten_from(1)?; // [out, in·k·k]
        let u = self.u.as_tensor().unsqueeze(1)?;
        let v = unit(&mat.t()?.matmul(&u)?)?;
        let u = match train {
            true => {
                let u = unit(&mat.matmul(&v)?)?;
                self.u.set(&u.squeeze(1)?)?;
                u
            }
            false => u,
        };
        let sigma = u.t()?.matmul(&mat.matmul(&v)?)?.reshape(())?;
        let used = w.detach().broadcast_div(&sigma)?;
        Ok(Weights { used: vec![used], spectral: Some(Normalised { u, v, sigma }) })
    }
}

impl Normalised {
    /// W's gradient from W̄'s: (dW̄ − ⟨dW̄, W̄⟩·u vᵀ)/σ; by a kernel in one pass when
    /// `kernel` (the engine's choice: its tests compare both ways on the CPU).
    pub fn grad(&self, w_bar: &Tensor, dw_bar: &Tensor, kernel: bool) -> Result<Tensor> {
        if kernel {
            let sigma = self.sigma.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
            return crate::kernel!(w_bar.dims(), [w_bar => w, dw_bar => d, &self.u => u, &self.v => v], T => {
                let (dot, sigma) = (d.iter().zip(w).fold(T::from_f64(0.0), |s, (&d, &w)| s + d * w), T::from_f64(sigma));
                let mut dw = d.to_vec();
                for (row, &u) in dw.chunks_mut(v.len()).zip(u) {
                    row.iter_mut().zip(v).for_each(|(d, &v)| *d = (*d - dot * u * v) / sigma);
                }
                dw
            });
        }
        let dot = (dw_bar * w_bar)?.sum_all()?;
        let uv = self.u.matmul(&self.v.t()?)?.reshape(w_bar.shape())?;
        (dw_bar - uv.broadcast_mul(&dot)?)?.broadcast_div(&self.sigma)
    }
}

/// v/‖v‖ (PyTorch's eps of 1e-12).
fn unit(v: &Tensor) -> Result<Tensor> {
    v.broadcast_div(&(v.sqr()?.sum_all()?.sqrt()? + 1e-12)?)
}
