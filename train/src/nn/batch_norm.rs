//! BatchNorm over NCHW with the activation after it, as PyTorch's `BatchNorm2d` (eps 1e-5,
//! momentum 0.1): the batch's statistics in training (the running statistics updated
//! with the unbiased variance when the pass is committed), the running statistics in
//! evaluation and in the exported graph.

use candle_core::{Result, Tensor, Var};

use super::activation::slope_at;
use super::{Ctx, Grads, Init, Layer, Recorded, Saved, TangentGrads};
use crate::export::onnx::Emitter;
use crate::ops::{self, with_slice, with_slices, Activation, BatchNormAct};

pub const BN_EPS: f64 = 1e-5;
/// The running statistics' momentum (PyTorch's).
pub const BN_MOMENTUM: f64 = 0.1;

pub struct BatchNorm {
    pub name: String,
    pub gamma: Tensor,
    pub beta: Tensor,
    pub running_mean: Var,
    pub running_var: Var,
    pub act: Activation,
}

/// What a training pass measured: by the kernel (which keeps the batch's statistics with
/// what its backward pass reads), or by candle's ops.
enum Measured {
    Kernel(BatchNormAct),
    Candle { mean: Tensor, var: Tensor, count: usize },
}

impl BatchNorm {
    pub fn new(init: &mut Init, channels: usize, act: Activation) -> Result<Self> {
        let gamma = init.normal("gamma", &[channels], 1.0, 0.02)?;
        let beta = init.constant("beta", &[channels], 0.0, true)?;
        let running_mean = Var::from_tensor(&init.constant("running_mean", &[channels], 0.0, false)?)?;
        let running_var = Var::from_tensor(&init.constant("running_var", &[channels], 1.0, false)?)?;
        Ok(Self { name: init.name(), gamma, beta, running_mean, running_var, act })
    }

    /// (mean, biased variance) [1, C, 1, 1]: the batch's in training, else the running ones.
    fn statistics(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor)> {
        let c = self.gamma.dim(0)?;
        if !train {
            let shape = (1, c, 1, 1);
            return Ok((self.running_mean.as_tensor().reshape(shape)?, self.running_var.as_tensor().reshape(shape)?));
        }
        let mean = x.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
        let var = x.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3)?;
        Ok((mean, var))
    }

    /// act′ at the pre-activation u: 1 right of zero, the slope elsewhere.
    fn slope(&self, u: &Tensor) -> Result<Tensor> {
        slope_at(u, self.act.negative_slope())
    }

    /// Folds one batch's statistics (over `count` values per channel) into the running averages.
    fn update_running(&self, mean: &Tensor, biased_var: &Tensor, count: usize) -> Result<()> {
        let unbiased = (biased_var.flatten_all()? * (count as f64 / (count.max(2) - 1) as f64))?;
        let m = self.running_mean.as_tensor();
        let v = self.running_var.as_tensor();
        self.running_mean.set(&((m * (1.0 - BN_MOMENTUM))? + (mean.flatten_all()? * BN_MOMENTUM)?)?)?;
        self.running_var.set(&((v * (1.0 - BN_MOMENTUM))? + (unbiased * BN_MOMENTUM)?)?)
    }

    fn frame(x: &Tensor) -> Result<(usize, usize, usize)> {
        let (n, c, h, w) = x.dims4()?;
        Ok((n, c, h * w))
    }
}

fn measured(saved: &Saved) -> Option<&Measured> {
    saved.as_ref().and_then(|s| s.downcast_ref::<Measured>())
}

impl Layer for BatchNorm {
    fn params(&self) -> Vec<&Tensor> {
        vec![&self.gamma, &self.beta]
    }

    fn apply(&self, xs: &[Tensor], c: &Ctx) -> Result<Tensor> {
        let x = &xs[0];
        let (mean, var) = self.statistics(x, c.train)?;
        let ch = (1, self.gamma.dim(0)?, 1, 1);
        let (gamma, beta) = (c.weights[0].reshape(ch)?, c.weights[1].reshape(ch)?);
        let u = x
            .broadcast_sub(&mean)?
            .broadcast_div(&(var + BN_EPS)?.sqrt()?)?
            .broadcast_mul(&gamma)?
            .broadcast_add(&beta)?;
        match self.act {
            Activation::Identity => Ok(u),
            _ => u.mul(&self.slope(&u)?),
        }
    }

    /// act′·γ·(t − mean t − x̂·mean(t·x̂))/σ with the batch's means in training (where the
    /// statistics move with x), act′·γ·t/σ with the running ones.
    fn apply_tangent(&self, xs: &[Tensor], ts: &[Tensor], c: &Ctx) -> Result<Tensor> {
        let (x, t) = (&xs[0], &ts[0]);
        let (mean, var) = self.statistics(x, c.train)?;
        let ch = (1, self.gamma.dim(0)?, 1, 1);
        let (gamma, beta) = (c.weights[0].reshape(ch)?, c.weights[1].reshape(ch)?);
        let sd = (var + BN_EPS)?.sqrt()?;
        let xhat = x.broadcast_sub(&mean)?.broadcast_div(&sd)?;
        let u = xhat.broadcast_mul(&gamma)?.broadcast_add(&beta)?;
        let per_channel = |v: &Tensor| v.mean_keepdim(0)?.mean_keepdim(2)?.mean_keepdim(3);
        let tx = match c.train {
            true => t.broadcast_sub(&per_channel(t)?)?.sub(&xhat.broadcast_mul(&per_channel(&(t * &xhat)?)?)?)?,
            false => t.clone(),
        };
        let tu = tx.broadcast_div(&sd)?.broadcast_mul(&gamma)?;
        match self.act {
            Activation::Identity => Ok(tu),
            _ => tu.mul(&self.slope(&u)?),
        }
    }

    fn forward(&self, xs: &[&Tensor], c: &Ctx) -> Result<Option<(Tensor, Saved)>> {
        let x = xs[0];
        if !c.train {
            return Ok(None);
        }
        if !c.kernels(x) {
            let (mean, var) = self.statistics(x, true)?;
            let y = self.apply(std::slice::from_ref(x), c)?;
            let (n, _, p) = Self::frame(x)?;
            return Ok(Some((y, Some(Box::new(Measured::Candle { mean, var, count: n * p })))));
        }
        let x = x.contiguous()?;
        let frame = Self::frame(&x)?;
        crate::by_element!(x.dtype(), T => {
            let op = with_slice(&x, |v: &[T]| BatchNormAct::of(v, frame, BN_EPS, self.act))?;
            let (g, b) = (ops::values::<T>(&c.weights[0])?, ops::values::<T>(&c.weights[1])?);
            let y = with_slice(&x, |v: &[T]| op.forward(v, &g, &b))?;
            Ok(Some((ops::tensor(y, x.dims())?, Some(Box::new(Measured::Kernel(op)) as Box<_>))))
        })
    }

    fn backward(&self, r: &Recorded, dy: &Tensor, _want: &[bool], _weights: bool) -> Result<Option<Grads>> {
        let Some(Measured::Kernel(op)) = measured(r.saved) else { return Ok(None) };
        let x = r.xs[0];
        crate::by_element!(x.dtype(), T => {
            let g = ops::values::<T>(&r.c.weights[0])?;
            let (dx, dg, db) = with_slices([x, r.y, dy], |[x, y, d]: [&[T]; 3]| op.backward(x, &g, y, d))?;
            let ch = [g.len()];
            Ok(Some(Grads { inputs: vec![Some(ops::tensor(dx, x.dims())?)], weights: vec![ops::tensor(dg, &ch)?, ops::tensor(db, &ch)?] }))
        })
    }

    fn tangent(&self, r: &Recorded) -> Result<Option<Tensor>> {
        let Some(Measured::Kernel(op)) = measured(r.saved) else { return Ok(None) };
        let x = r.xs[0];
        crate::by_element!(x.dtype(), T => {
            let g = ops::values::<T>(&r.c.weights[0])?;
            let ty = with_slices([x, r.y, r.ts[0]], |[x, y, t]: [&[T]; 3]| op.tangent(x, &g, y, t))?;
            Ok(Some(ops::tensor(ty, x.dims())?))
        })
    }

    fn tangent_backward(&self, r: &Recorded, at: &Tensor, ay: Option<&Tensor>) -> Result<Option<TangentGrads>> {
        let Some(Measured::Kernel(op)) = measured(r.saved) else { return Ok(None) };
        let x = r.xs[0];
        crate::by_element!(x.dtype(), T => {
            let g = ops::values::<T>(&r.c.weights[0])?;
            let ay = ay.map(ops::values::<T>).transpose()?;
            let (a_t, a_x, dg, db) = with_slices([x, r.y, r.ts[0], at], |[x, y, t, a]: [&[T]; 4]| {
                op.tangent_backward(x, &g, y, t, a, ay.as_deref())
            })?;
            let ch = [g.len()];
            Ok(Some(TangentGrads {
                at: vec![ops::tensor(a_t, x.dims())?],
                ay: vec![Some(ops::tensor(a_x, x.dims())?)],
                weights: vec![ops::tensor(dg, &ch)?, ops::tensor(db, &ch)?],
            }))
        })
    }

    fn commit(&self, saved: &Saved) -> Result<()> {
        let dtype = self.gamma.dtype();
        match measured(saved) {
            Some(Measured::Kernel(op)) => {
                let ((n, _, p), stats) = (op.frame, &op.stats);
                let (c, dev) = (stats.mean.len(), self.gamma.device());
                let mean = Tensor::from_vec(stats.mean.clone(), c, dev)?.to_dtype(dtype)?;
                let var = Tensor::from_vec(stats.var.clone(), c, dev)?.to_dtype(dtype)?;
                self.update_running(&mean, &var, n * p)
            }
            Some(Measured::Candle { mean, var, count }) => self.update_running(mean, var, *count),
            None => Ok(()),
        }
    }

    fn onnx(&self, e: &mut Emitter, out: &str, xs: &[&str]) -> Result<()> {
        let stats = [self.running_mean.as_tensor(), self.running_var.as_tensor()];
        let names = ["gamma", "beta", "running_mean", "running_var"];
        let mut inputs = vec![xs[0].to_string()];
        for (n, t) in names.iter().zip([&self.gamma, &self.beta, stats[0], stats[1]]) {
            inputs.push(e.initializer(&format!("{}.{n}", self.name), t)?);
        }
        let norm = if self.act == Activation::Identity { out.to_string() } else { self.name.clone() };
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        e.node("BatchNormalization", &norm, &inputs, vec![Emitter::float("epsilon", BN_EPS as f32)]);
        match self.act {
            Activation::Identity => {}
            Activation::Relu => e.node("Relu", out, &[&norm], vec![]),
            Activation::LeakyRelu(s) => e.node("LeakyRelu", out, &[&norm], vec![Emitter::float("alpha", s as f32)]),
        }
        Ok(())
    }
}
