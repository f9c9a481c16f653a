//! The element-wise activations: ReLU, LeakyReLU (PyTorch's derivative, the slope at 0),
//! tanh and the sigmoid.

use candle_core::{Result, Tensor, WithDType};

use super::{Ctx, Grads, Layer, Recorded, Saved, TangentGrads};
use crate::export::onnx::Emitter;
use crate::ops::{self, relu_slope, Element};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    LeakyRelu(f64),
    Tanh,
    Sigmoid,
}

/// A (leaky) ReLU's slope at u: 1 right of zero, `slope` elsewhere, as a constant tensor
/// (no gradient flows through it): x·slope_at(x) is LeakyReLU with PyTorch's derivative, the
/// slope, at 0 (candle's `maximum` would give (1 + slope)/2 there).
pub fn slope_at(u: &Tensor, slope: f64) -> Result<Tensor> {
    (u.gt(0.0)?.to_dtype(u.dtype())? * (1.0 - slope))? + slope
}

impl Activation {
    /// f′ from the output y (each of these has one).
    fn derivative(self, y: &Tensor) -> Result<Tensor> {
        match self {
            Activation::LeakyRelu(s) => slope_at(y, s),
            Activation::Tanh => y.sqr()?.affine(-1.0, 1.0),
            Activation::Sigmoid => y.mul(&y.affine(-1.0, 1.0)?),
        }
    }

    fn kernel_derivative<T: Element>(self, y: T) -> T {
        match self {
            Activation::LeakyRelu(s) => relu_slope(y, T::from_f64(s)),
            Activation::Tanh => T::one() - y * y,
            Activation::Sigmoid => y * (T::one() - y),
        }
    }
}

impl Layer for Activation {
    fn apply(&self, xs: &[Tensor], _c: &Ctx) -> Result<Tensor> {
        let x = &xs[0];
        match *self {
            Activation::LeakyRelu(s) => x.mul(&slope_at(x, s)?),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => candle_nn::ops::sigmoid(x),
        }
    }

    fn apply_tangent(&self, xs: &[Tensor], ts: &[Tensor], c: &Ctx) -> Result<Tensor> {
        ts[0].mul(&self.derivative(&self.apply(xs, c)?)?)
    }

    fn forward(&self, xs: &[&Tensor], c: &Ctx) -> Result<Option<(Tensor, Saved)>> {
        if !c.kernels(xs[0]) || *self == Activation::Sigmoid {
            return Ok(None);
        }
        let y = crate::kernel!(xs[0].dims(), [xs[0] => v], T => match *self {
            Activation::LeakyRelu(s) => ops::map(v, &[], |v, _| v * relu_slope(v, T::from_f64(s))),
            _ => ops::map(v, &[], |v, _| v.tanh()),
        })?;
        Ok(Some((y, None)))
    }

    fn backward(&self, r: &Recorded, dy: &Tensor, _want: &[bool], _weights: bool) -> Result<Option<Grads>> {
        if !r.c.kernels(r.xs[0]) {
            return Ok(None);
        }
        Ok(Some(Grads { inputs: vec![Some(self.through(r.y, dy)?)], weights: vec![] }))
    }

    fn tangent(&self, r: &Recorded) -> Result<Option<Tensor>> {
        match r.c.kernels(r.xs[0]) && matches!(self, Activation::LeakyRelu(_)) {
            true => Ok(Some(self.through(r.y, r.ts[0])?)),
            false => Ok(None),
        }
    }

    /// LeakyReLU is piecewise linear: both adjoints go back through its slope, and it has
    /// no second derivative to add.
    fn tangent_backward(&self, r: &Recorded, at: &Tensor, ay: Option<&Tensor>) -> Result<Option<TangentGrads>> {
        if !r.c.kernels(r.xs[0]) || !matches!(self, Activation::LeakyRelu(_)) {
            return Ok(None);
        }
        let ay = ay.map(|a| self.through(r.y, a)).transpose()?;
        Ok(Some(TangentGrads { at: vec![self.through(r.y, at)?], ay: vec![ay], weights: vec![] }))
    }

    fn onnx(&self, e: &mut Emitter, out: &str, xs: &[&str]) -> Result<()> {
        match *self {
            Activation::LeakyRelu(s) => e.node("LeakyRelu", out, xs, vec![Emitter::float("alpha", s as f32)]),
            Activation::Tanh => e.node("Tanh", out, xs, vec![]),
            Activation::Sigmoid => e.node("Sigmoid", out, xs, vec![]),
        }
        Ok(())
    }
}

impl Activation {
    /// d·f′(y), by the kernel.
    fn through(&self, y: &Tensor, d: &Tensor) -> Result<Tensor> {
        crate::kernel!(y.dims(), [d => d, y => y], T => ops::map(d, y, |d, y| d * self.kernel_derivative(y)))
    }
}
