//! Normalisation over NCHW with the activation after it, by groups of values sharing
//! statistics ([`Over`]), then a per-channel scale and shift:
//! - BatchNorm, as PyTorch's `BatchNorm2d` (eps 1e-5, momentum 0.1): the batch's statistics
//!   in training (the running statistics updated with the unbiased variance when the pass
//!   is committed), the running statistics in evaluation and in the exported graph.
//! - LayerNorm over each sample's (C, H, W): the WGAN-GP critic's, since BatchNorm couples
//!   the samples of a batch and the gradient penalty is defined per sample (Gulrajani et
//!   al. §4).

use candle_core::{bail, Result, Tensor, Var};

use super::activation::slope_at;
use super::{Ctx, Grads, Init, Layer, Recorded, Saved, TangentGrads};
use crate::export::onnx::Emitter;
use crate::ops::{self, with_slices, Over};

pub const EPS: f64 = 1e-5;
/// The running statistics' momentum (PyTorch's).
pub const BN_MOMENTUM: f64 = 0.1;
/// The fused activation's slope left of zero for none (a GLU follows, in fastgan); 0 is ReLU.
pub const LINEAR: f64 = 1.0;

pub struct Norm {
    pub name: String,
    pub gamma: Tensor,
    pub beta: Tensor,
    /// BatchNorm's running mean and variance (LayerNorm has none).
    pub running: Option<(Var, Var)>,
    pub over: Over,
    /// The activation's slope left of zero: LeakyReLU's, 0 for ReLU, [`LINEAR`] for none.
    pub slope: f64,
}

/// What a training pass measured: by the kernel (which keeps the batch's statistics with
/// what its backward pass reads), or BatchNorm's statistics by candle's ops.
enum Measured {
    Kernel(ops::Norm),
    Candle { mean: Tensor, var: Tensor, count: usize },
}

impl Norm {
    /// BatchNorm, then LeakyReLU of `slope`: γ ~ N(1, 0.02), as pytorch/examples' DCGAN
    /// initialises it.
    pub fn batch(init: &mut Init, channels: usize, slope: f64) -> Result<Self> {
        let gamma = init.normal("gamma", &[channels], 1.0, 0.02)?;
        let beta = init.constant("beta", &[channels], 0.0, true)?;
        let running_mean = Var::from_tensor(&init.constant("running_mean", &[channels], 0.0, false)?)?;
        let running_var = Var::from_tensor(&init.constant("running_var", &[channels], 1.0, false)?)?;
        let running = Some((running_mean, running_var));
        Ok(Self { name: init.name(), gamma, beta, running, over: Over::Batch, slope })
    }

    /// LayerNorm, then LeakyReLU of `slope`: γ = 1.
    pub fn layer(init: &mut Init, channels: usize, slope: f64) -> Result<Self> {
        let gamma = init.constant("gamma", &[channels], 1.0, true)?;
        let beta = init.constant("beta", &[channels], 0.0, true)?;
        Ok(Self { name: init.name(), gamma, beta, running: None, over: Over::Sample, slope })
    }

    /// Whether a pass normalises by its own values' statistics (BatchNorm in evaluation
    /// uses its running ones).
    fn own_statistics(&self, train: bool) -> bool {
        train || self.running.is_none()
    }

    /// v's mean over each group, broadcastable to v.
    fn group_mean(&self, v: &Tensor) -> Result<Tensor> {
        match self.over {
            Over::Batch => v.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3),
            Over::Sample => v.mean_keepdim(1)?.mean_keepdim(2)?.mean_keepdim(3),
        }
    }

    /// (mean, biased variance), broadcastable to x: its own, or the running ones.
    fn statistics(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        match &self.running {
            Some((mean, var)) if !train => {
                let shape = (1, self.gamma.dim(0)?, 1, 1);
                Ok((mean.as_tensor().reshape(shape)?, var.as_tensor().reshape(shape)?))
            }
            _ => {
                let mean = self.group_mean(x)?;
                Ok((mean.clone(), self.group_mean(&x.broadcast_sub(&mean)?.sqr()?)?))
            }
        }
    }

    /// (x̂, σ, γ, u = γ·x̂ + β) in candle's ops.
    fn normalised(&self, x: &Tensor, c: &Ctx) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
        let (mean, var) = self.statistics(x, c.train)?;
        let ch = (1, self.gamma.dim(0)?, 1, 1);
        let (gamma, beta) = (c.weights[0].reshape(ch)?, c.weights[1].reshape(ch)?);
        let sd = (var + EPS)?.sqrt()?;
        let xhat = x.broadcast_sub(&mean)?.broadcast_div(&sd)?;
        let u = xhat.broadcast_mul(&gamma)?.broadcast_add(&beta)?;
        Ok((xhat, sd, gamma, u))
    }

    /// The activation's slope at the pre-activation u, times v.
    fn through_act(&self, v: Tensor, u: &Tensor) -> Result<Tensor> {
        match self.slope == LINEAR {
            true => Ok(v),
            false => v.mul(&slope_at(u, self.slope)?),
        }
    }

    /// Folds one batch's statistics (over `count` values per channel) into the running averages.
    fn update_running(&self, mean: &Tensor, biased_var: &Tensor, count: usize) -> Result<()> {
        let Some((m, v)) = &self.running else { return Ok(()) };
        let unbiased = (biased_var.flatten_all()? * (count as f64 / (count.max(2) - 1) as f64))?;
        m.set(&((m.as_tensor() * (1.0 - BN_MOMENTUM))? + (mean.flatten_all()? * BN_MOMENTUM)?)?)?;
        v.set(&((v.as_tensor() * (1.0 - BN_MOMENTUM))? + (unbiased * BN_MOMENTUM)?)?)
    }

    fn frame(x: &Tensor) -> Result<(usize, usize, usize)> {
        let (n, c, h, w) = x.dims4()?;
        Ok((n, c, h * w))
    }
}

fn measured(saved: &Saved) -> Option<&ops::Norm> {
    match saved.as_ref().and_then(|s| s.downcast_ref::<Measured>()) {
        Some(Measured::Kernel(op)) => Some(op),
        _ => None,
    }
}

impl Layer for Norm {
    fn params(&self) -> Vec<&Tensor> {
        vec![&self.gamma, &self.beta]
    }

    fn apply(&self, xs: &[Tensor], c: &Ctx) -> Result<Tensor> {
        let (_, _, _, u) = self.normalised(&xs[0], c)?;
        self.through_act(u.clone(), &u)
    }

    /// act′·γ·(t − mean t − x̂·mean(t·x̂))/σ with the group's means where the statistics
    /// move with x, act′·γ·t/σ with BatchNorm's running ones.
    fn apply_tangent(&self, xs: &[Tensor], ts: &[Tensor], c: &Ctx) -> Result<Tensor> {
        let t = &ts[0];
        let (xhat, sd, gamma, u) = self.normalised(&xs[0], c)?;
        let tx = match self.own_statistics(c.train) {
            true => {
                t.broadcast_sub(&self.group_mean(t)?)?.sub(&xhat.broadcast_mul(&self.group_mean(&(t * &xhat)?)?)?)?
            }
            false => t.clone(),
        };
        self.through_act(tx.broadcast_div(&sd)?.broadcast_mul(&gamma)?, &u)
    }

    fn forward(&self, xs: &[&Tensor], c: &Ctx) -> Result<Option<(Tensor, Saved)>> {
        let x = xs[0];
        if !self.own_statistics(c.train) {
            return Ok(None);
        }
        if !c.kernels(x) {
            if self.running.is_none() {
                return Ok(None);
            }
            let (mean, var) = self.statistics(x, true)?;
            let y = self.apply(std::slice::from_ref(x), c)?;
            let (n, _, p) = Self::frame(x)?;
            return Ok(Some((y, Some(Box::new(Measured::Candle { mean, var, count: n * p })))));
        }
        let x = x.contiguous()?;
        let frame = Self::frame(&x)?;
        crate::by_element!(x.dtype(), T => {
            let (op, y) = with_slices([&x, &c.weights[0], &c.weights[1]], |[v, g, b]: [&[T]; 3]| {
                let op = ops::Norm::of(v, frame, self.over, EPS, self.slope);
                let y = op.forward(v, g, b);
                (op, y)
            })?;
            Ok(Some((ops::tensor(y, x.dims())?, Some(Box::new(Measured::Kernel(op)) as Box<_>))))
        })
    }

    fn backward(&self, r: &Recorded, dy: &Tensor, _want: &[bool], _weights: bool) -> Result<Option<Grads>> {
        let Some(op) = measured(r.saved) else { return Ok(None) };
        let x = r.xs[0];
        let g = &r.c.weights[0];
        crate::by_element!(x.dtype(), T => {
            let (dx, dg, db) = with_slices([x, g, r.y, dy], |[x, g, y, d]: [&[T]; 4]| op.backward(x, g, y, d))?;
            let ch = g.dims();
            Ok(Some(Grads { inputs: vec![Some(ops::tensor(dx, x.dims())?)], weights: vec![ops::tensor(dg, ch)?, ops::tensor(db, ch)?] }))
        })
    }

    fn tangent(&self, r: &Recorded) -> Result<Option<Tensor>> {
        let Some(op) = measured(r.saved) else { return Ok(None) };
        let x = r.xs[0];
        crate::kernel!(x.dims(), [x => x, &r.c.weights[0] => g, r.y => y, r.ts[0] => t], T => op.tangent(x, g, y, t))
            .map(Some)
    }

    fn tangent_backward(&self, r: &Recorded, at: &Tensor, ay: Option<&Tensor>) -> Result<Option<TangentGrads>> {
        let Some(op) = measured(r.saved) else { return Ok(None) };
        let x = r.xs[0];
        let g = &r.c.weights[0];
        crate::by_element!(x.dtype(), T => {
            let operands = [x, g, r.y, r.ts[0], at, ay.unwrap_or(at)];
            let (a_t, a_x, dg, db) = with_slices(operands, |[x, g, y, t, a, a_y]: [&[T]; 6]| {
                op.tangent_backward(x, g, y, t, a, ay.is_some().then_some(a_y))
            })?;
            let ch = g.dims();
            Ok(Some(TangentGrads {
                at: vec![ops::tensor(a_t, x.dims())?],
                ay: vec![Some(ops::tensor(a_x, x.dims())?)],
                weights: vec![ops::tensor(dg, ch)?, ops::tensor(db, ch)?],
            }))
        })
    }

    fn commit(&self, saved: &Saved) -> Result<()> {
        let dtype = self.gamma.dtype();
        match saved.as_ref().and_then(|s| s.downcast_ref::<Measured>()) {
            Some(Measured::Kernel(op)) if self.running.is_some() => {
                let ((n, _, p), c, dev) = (op.frame, op.mean.len(), self.gamma.device());
                let mean = Tensor::from_vec(op.mean.clone(), c, dev)?.to_dtype(dtype)?;
                let var = Tensor::from_vec(op.var.clone(), c, dev)?.to_dtype(dtype)?;
                self.update_running(&mean, &var, n * p)
            }
            Some(Measured::Candle { mean, var, count }) => self.update_running(mean, var, *count),
            _ => Ok(()),
        }
    }

    fn onnx(&self, e: &mut Emitter, out: &str, xs: &[&str]) -> Result<()> {
        let Some((mean, var)) = &self.running else { bail!("internal error: LayerNorm has no ONNX form here") };
        let names = ["gamma", "beta", "running_mean", "running_var"];
        let mut inputs = vec![xs[0].to_string()];
        for (n, t) in names.iter().zip([&self.gamma, &self.beta, mean.as_tensor(), var.as_tensor()]) {
            inputs.push(e.initializer(&format!("{}.{n}", self.name), t)?);
        }
        let norm = if self.slope == LINEAR { out.to_string() } else { self.name.clone() };
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        e.node("BatchNormalization", &norm, &inputs, vec![Emitter::float("epsilon", EPS as f32)]);
        match self.slope {
            LINEAR => {}
            0.0 => e.node("Relu", out, &[&norm], vec![]),
            s => e.node("LeakyRelu", out, &[&norm], vec![Emitter::float("alpha", s as f32)]),
        }
        Ok(())
    }
}
