//! Nearest-neighbour upsampling ×2 as one pass forward, and its backward (the sum of each
//! 2×2 block) as one pass.
//!
//! Why: candle's `upsample_nearest2d` backward overwrites, rather than adds to, the
//! gradient of an input used elsewhere too (fastgan's maps also feed the excitation), and
//! the broadcast that replaces it sums its gradient over strided axes. First-order only.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::contiguous;

/// x [N, C, H, W] → [N, C, 2H, 2W], each value repeated over a 2×2 block.
pub fn upsample2(x: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Upsample2)
}

struct Upsample2;

/// The adjoint: [N, C, 2H, 2W] → [N, C, H, W], each 2×2 block summed.
struct Upsample2Grad;

fn dims(shape: &Shape) -> Result<(usize, usize, usize, usize)> {
    match shape.dims() {
        &[n, c, h, w] => Ok((n, c, h, w)),
        d => bail!("upsample: an NCHW tensor, not {d:?}"),
    }
}

/// Upsampling on plain values: rows of `w` values, each made two rows of 2·`w`.
pub fn upsample2_values<T: WithDType>(x: &[T], w: usize) -> Vec<T> {
    let mut y = vec![T::zero(); x.len() * 4];
    // One output row pair per task: row 2i and 2i+1 both repeat input row i.
    y.par_chunks_mut(4 * w).zip(x.par_chunks(w)).for_each(|(rows, x)| {
        let (top, bottom) = rows.split_at_mut(2 * w);
        for (j, &v) in x.iter().enumerate() {
            top[2 * j] = v;
            top[2 * j + 1] = v;
        }
        bottom.copy_from_slice(top);
    });
    y
}

/// [`upsample2_values`]' adjoint: each 2×2 block of the gradient summed (`w`: the input's width).
pub fn upsample2_grad_values<T: WithDType>(dy: &[T], w: usize) -> Vec<T> {
    let mut dx = vec![T::zero(); dy.len() / 4];
    dx.par_chunks_mut(w).zip(dy.par_chunks(4 * w)).for_each(|(dx, rows)| {
        let (top, bottom) = rows.split_at(2 * w);
        for (j, d) in dx.iter_mut().enumerate() {
            *d = top[2 * j] + top[2 * j + 1] + bottom[2 * j] + bottom[2 * j + 1];
        }
    });
    dx
}

impl CustomOp1 for Upsample2 {
    fn name(&self) -> &'static str {
        "canard-upsample2"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = dims(l.shape())?;
        let out = match s {
            CpuStorage::F32(x) => CpuStorage::F32(upsample2_values(contiguous(x, l)?, w)),
            CpuStorage::F64(x) => CpuStorage::F64(upsample2_values(contiguous(x, l)?, w)),
            _ => bail!("upsample: f32 or f64 only, got {:?}", s.dtype()),
        };
        Ok((out, Shape::from((n, c, 2 * h, 2 * w))))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(dy.contiguous()?.apply_op1(Upsample2Grad)?))
    }
}

impl CustomOp1 for Upsample2Grad {
    fn name(&self) -> &'static str {
        "canard-upsample2-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h2, w2) = dims(l.shape())?;
        if !h2.is_multiple_of(2) || !w2.is_multiple_of(2) {
            bail!("upsample backward: an even-sided gradient, not {h2}×{w2}");
        }
        let w = w2 / 2;
        let out = match s {
            CpuStorage::F32(dy) => CpuStorage::F32(upsample2_grad_values(contiguous(dy, l)?, w)),
            CpuStorage::F64(dy) => CpuStorage::F64(upsample2_grad_values(contiguous(dy, l)?, w)),
            _ => bail!("upsample backward: f32 or f64 only, got {:?}", s.dtype()),
        };
        Ok((out, Shape::from((n, c, h2 / 2, w))))
    }
}
