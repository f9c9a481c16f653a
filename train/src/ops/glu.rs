//! The gated linear unit over channels, y = a·σ(b) for x = [a, b], as one pass forward and
//! one pass backward (fastgan's generator and decoders, after every BatchNorm).
//!
//! Why: as candle ops it is two strided views, a sigmoid, a product, and backward two
//! products, the sigmoid's own backward and two zero-padded copies back into x's shape,
//! each a pass over the largest activations. First-order only (fastgan has no penalty
//! that differentiates a gradient).

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::{contiguous, Element};

/// x [N, 2C, H, W] → x[:, :C]·σ(x[:, C:]) [N, C, H, W].
pub fn glu(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Glu)
}

struct Glu;

/// dx from (x, dy).
struct GluGrad;

/// Values per (sample, half): C·H·W, from x's layout.
fn half(shape: &Shape) -> Result<(usize, usize)> {
    let d = shape.dims();
    if d.len() != 4 || !d[1].is_multiple_of(2) {
        bail!("glu: an NCHW input with an even number of channels, not {d:?}");
    }
    Ok((d[0], d[1] / 2 * d[2] * d[3]))
}

/// In T's own precision: an f64 exp per value was a tenth of fastgan's 64×64 step.
fn sigmoid<T: Element>(v: T) -> T {
    T::one() / (T::one() + (T::zero() - v).exp())
}

/// The GLU on plain values: `n` samples of 2·`per` values (a, then b) → `n` of `per`.
pub fn glu_values<T: Element>(x: &[T], n: usize, per: usize) -> Vec<T> {
    let mut y = vec![T::zero(); n * per];
    y.par_chunks_mut(per).zip(x.par_chunks(2 * per)).for_each(|(y, x)| {
        let (a, b) = x.split_at(per);
        for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
            *y = a * sigmoid(b);
        }
    });
    y
}

/// [`glu_values`]' input gradient from its input and its output's gradient:
/// da = dy·σ(b), db = dy·a·σ(b)·(1 − σ(b)).
pub fn glu_grad_values<T: Element>(x: &[T], dy: &[T], n: usize, per: usize) -> Result<Vec<T>> {
    if dy.len() != n * per || x.len() != 2 * n * per {
        bail!("glu backward: {} gradients and {} inputs for {} outputs", dy.len(), x.len(), n * per);
    }
    let mut dx = vec![T::zero(); 2 * n * per];
    dx.par_chunks_mut(2 * per).zip(x.par_chunks(2 * per)).zip(dy.par_chunks(per)).for_each(|((dx, x), dy)| {
        let (da, db) = dx.split_at_mut(per);
        let (a, b) = x.split_at(per);
        for i in 0..per {
            let s = sigmoid(b[i]);
            da[i] = dy[i] * s;
            db[i] = dy[i] * a[i] * s * (T::one() - s);
        }
    });
    Ok(dx)
}

impl CustomOp1 for Glu {
    fn name(&self) -> &'static str {
        "canard-glu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, per) = half(l.shape())?;
        let out = match s {
            CpuStorage::F32(x) => CpuStorage::F32(glu_values(contiguous(x, l)?, n, per)),
            CpuStorage::F64(x) => CpuStorage::F64(glu_values(contiguous(x, l)?, n, per)),
            _ => bail!("glu: f32 or f64 only, got {:?}", s.dtype()),
        };
        let d = l.shape().dims();
        Ok((out, Shape::from((d[0], d[1] / 2, d[2], d[3]))))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.detach().contiguous()?.apply_op2(&dy.contiguous()?, GluGrad)?))
    }
}

impl CustomOp2 for GluGrad {
    fn name(&self) -> &'static str {
        "canard-glu-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, per) = half(l1.shape())?;
        let out = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(dy)) => {
                CpuStorage::F32(glu_grad_values(contiguous(x, l1)?, contiguous(dy, l2)?, n, per)?)
            }
            (CpuStorage::F64(x), CpuStorage::F64(dy)) => {
                CpuStorage::F64(glu_grad_values(contiguous(x, l1)?, contiguous(dy, l2)?, n, per)?)
            }
            _ => bail!("glu backward: f32 or f64 operands of one type"),
        };
        Ok((out, l1.shape().clone()))
    }
}
