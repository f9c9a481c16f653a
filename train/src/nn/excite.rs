//! Skip-layer excitation (FastGAN): channel gates for a big map from a small one,
//! big · σ(excite(LeakyReLU₀.₁(squeeze(pool₄(small))))), with `squeeze` a 4×4 and
//! `excite` a 1×1 convolution and pool₄ an average pooling to 4×4. The gates come from
//! small maps, so they are computed (and differentiated) in candle's ops on every device;
//! on the CPU the big map is scaled, and its gradients taken, by a kernel.

use candle_core::{Result, Tensor};
use rayon::prelude::*;

use super::activation::slope_at;
use super::{vjp, Ctx, Grads, Init, Layer, Recorded, Saved};
use crate::export::onnx::Emitter;
use crate::ops::{Element, Geometry};

/// The LeakyReLU slope between its convolutions (the paper's).
pub const EXCITE_SLOPE: f64 = 0.1;

pub struct Excite {
    pub name: String,
    /// The small map's side.
    pub side: usize,
    pub squeeze: Tensor,
    pub excite: Tensor,
}

impl Excite {
    /// Gates `c_big` channels from a map of `c_small` channels and side `side`.
    pub fn new(init: &mut Init, c_small: usize, c_big: usize, side: usize) -> Result<Self> {
        let squeeze = init.pp("squeeze").normal("weight", &[c_big, c_small, 4, 4], 0.0, 0.02)?;
        let excite = init.pp("excite").normal("weight", &[c_big, c_big, 1, 1], 0.0, 0.02)?;
        Ok(Self { name: init.name(), side, squeeze, excite })
    }

    /// The gates [N, C, 1, 1] from the small map, with the weights `w`.
    fn gates(small: &Tensor, w: &[Tensor]) -> Result<Tensor> {
        let side = small.dim(2)?;
        let pooled = if side == 4 { small.clone() } else { small.avg_pool2d(side / 4)? };
        let s = pooled.conv2d(&w[0], 0, 1, 1, 1)?;
        let s = s.mul(&slope_at(&s, EXCITE_SLOPE)?)?;
        candle_nn::ops::sigmoid(&s.conv2d(&w[1], 0, 1, 1, 1)?)
    }
}

/// Each plane of `x` times its gate (one value per sample and channel).
fn scale<T: Element>(x: &[T], gates: &[T]) -> Vec<T> {
    let plane = x.len() / gates.len().max(1);
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(plane).zip(x.par_chunks(plane)).zip(gates.par_iter()).for_each(|((y, x), &g)| {
        y.iter_mut().zip(x).for_each(|(y, &x)| *y = x * g);
    });
    y
}

/// Σ over each plane of a·b: the gates' gradient.
fn plane_dots<T: Element>(a: &[T], b: &[T], planes: usize) -> Vec<T> {
    let plane = a.len() / planes.max(1);
    a.par_chunks(plane)
        .zip(b.par_chunks(plane))
        .map(|(a, b)| a.iter().zip(b).fold(T::zero(), |s, (&a, &b)| s + a * b))
        .collect()
}

impl Layer for Excite {
    fn params(&self) -> Vec<&Tensor> {
        vec![&self.squeeze, &self.excite]
    }

    /// Inputs: the small map, then the big one.
    fn apply(&self, xs: &[Tensor], c: &Ctx) -> Result<Tensor> {
        xs[1].broadcast_mul(&Self::gates(&xs[0], c.weights)?)
    }

    fn forward(&self, xs: &[&Tensor], c: &Ctx) -> Result<Option<(Tensor, Saved)>> {
        if !c.kernels(xs[1]) {
            return Ok(None);
        }
        let gates = Self::gates(xs[0], c.weights)?.contiguous()?;
        let y = crate::kernel!(xs[1].dims(), [xs[1] => b, &gates => g], T => scale(b, g))?;
        Ok(Some((y, Some(Box::new(gates)))))
    }

    fn backward(&self, r: &Recorded, dy: &Tensor, want: &[bool], weights: bool) -> Result<Option<Grads>> {
        let Some(gates) = r.saved.as_ref().and_then(|s| s.downcast_ref::<Tensor>()) else { return Ok(None) };
        let (xs, c, big) = (&r.xs, &r.c, r.xs[1]);
        let dbig = crate::kernel!(big.dims(), [dy => d, gates => g], T => scale(d, g))?;
        let dgates = crate::kernel!(gates.dims(), [dy => d, big => b], T => plane_dots(d, b, gates.elem_count()))?;
        // The gates' own gradient, back through their small network by candle's backprop.
        let args: Vec<&Tensor> = std::iter::once(xs[0]).chain(c.weights).collect();
        let mut g = vjp(&args, &[Some(&dgates)], |a| Ok(vec![Self::gates(&a[0], &a[1..])?]))?.into_iter();
        let dsmall = g.next().flatten().filter(|_| want[0]);
        let dws = match weights {
            true => g.zip(c.weights).map(|(d, w)| d.map_or_else(|| w.zeros_like(), Ok)).collect::<Result<_>>()?,
            false => Vec::new(),
        };
        Ok(Some(Grads { inputs: vec![dsmall, want[1].then_some(dbig)], weights: dws }))
    }

    fn onnx(&self, e: &mut Emitter, out: &str, xs: &[&str]) -> Result<()> {
        let name = &self.name;
        let pooled = match self.side / 4 {
            0 | 1 => xs[0].to_string(),
            f => {
                let pool = format!("{name}.pool");
                let f = f as i64;
                let attrs = vec![Emitter::ints("kernel_shape", vec![f, f]), Emitter::ints("strides", vec![f, f])];
                e.node("AveragePool", &pool, &[xs[0]], attrs);
                pool
            }
        };
        let w = e.initializer(&format!("{name}.squeeze.weight"), &self.squeeze)?;
        e.conv(&format!("{name}.squeeze"), &pooled, &w, Geometry::new(4, 1, 0)?, false);
        let act = format!("{name}.act");
        e.node("LeakyRelu", &act, &[&format!("{name}.squeeze")], vec![Emitter::float("alpha", EXCITE_SLOPE as f32)]);
        let w = e.initializer(&format!("{name}.excite.weight"), &self.excite)?;
        e.conv(&format!("{name}.excite"), &act, &w, Geometry::new(1, 1, 0)?, false);
        let gate = format!("{name}.gate");
        e.node("Sigmoid", &gate, &[&format!("{name}.excite")], vec![]);
        e.node("Mul", out, &[xs[1], &gate], vec![]);
        Ok(())
    }
}
