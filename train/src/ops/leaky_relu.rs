//! LeakyReLU as one pass forward and one pass backward.
//!
//! Why: candle's `maximum(x, s·x)` costs two passes forward, and its backward (two
//! equality masks, their casts, a product and a quotient per side, each added into a fresh
//! zero tensor) about fifteen, on the discriminator's largest activation. Upstream this
//! would be a `leaky_relu` unary op with a backward rule in candle-core.
//!
//! The backward is itself an operation, `dy · act′(x)`, linear in dy and piecewise
//! constant in x, so second-order gradients (WGAN-GP's penalty) flow through it too.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::{contiguous, relu_slope, TASK_VALUES};

/// max(x, slope·x) for 0 ≤ slope ≤ 1; the derivative is 1 for x > 0 and `slope` elsewhere (as PyTorch's).
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op1(LeakyRelu { slope })
}

struct LeakyRelu {
    slope: f64,
}

/// dy·act′(x): [`LeakyRelu`]'s backward, given (dy, x).
struct LeakyReluGrad {
    slope: f64,
}

impl CustomOp1 for LeakyRelu {
    fn name(&self) -> &'static str {
        "canard-leaky-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: WithDType>(x: &[T], slope: f64) -> Vec<T> {
            let s = T::from_f64(slope);
            map(x.len(), |i| x[i] * relu_slope(x[i], s))
        }
        let out = match s {
            CpuStorage::F32(x) => CpuStorage::F32(run(contiguous(x, l)?, self.slope)),
            CpuStorage::F64(x) => CpuStorage::F64(run(contiguous(x, l)?, self.slope)),
            _ => bail!("leaky_relu: f32 or f64 only, got {:?}", s.dtype()),
        };
        Ok((out, l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        // x only picks the slope, a derivative of zero: detached, so no gradient is owed to it.
        Ok(Some(dy.contiguous()?.apply_op2(&x.detach().contiguous()?, LeakyReluGrad { slope: self.slope })?))
    }
}

impl CustomOp2 for LeakyReluGrad {
    fn name(&self) -> &'static str {
        "canard-leaky-relu-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        fn run<T: WithDType>(dy: &[T], x: &[T], slope: f64) -> Result<Vec<T>> {
            if dy.len() != x.len() {
                bail!("leaky_relu backward: {} gradients for {} inputs", dy.len(), x.len());
            }
            let s = T::from_f64(slope);
            Ok(map(x.len(), |i| dy[i] * relu_slope(x[i], s)))
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(dy), CpuStorage::F32(x)) => {
                CpuStorage::F32(run(contiguous(dy, l1)?, contiguous(x, l2)?, self.slope)?)
            }
            (CpuStorage::F64(dy), CpuStorage::F64(x)) => {
                CpuStorage::F64(run(contiguous(dy, l1)?, contiguous(x, l2)?, self.slope)?)
            }
            _ => bail!("leaky_relu backward: f32 or f64 operands of one type"),
        };
        Ok((out, l1.shape().clone()))
    }

    /// Linear in dy (the same mask again); x comes detached (its derivative is zero almost everywhere).
    fn bwd(&self, _dy: &Tensor, x: &Tensor, _res: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let ddy = g.contiguous()?.apply_op2(&x.contiguous()?, LeakyReluGrad { slope: self.slope })?;
        Ok((Some(ddy), None))
    }
}

/// `len` values of f, in parallel blocks large enough to be worth a thread each.
fn map<T: WithDType>(len: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let mut out = vec![T::zero(); len];
    out.par_chunks_mut(TASK_VALUES).enumerate().for_each(|(b, chunk)| {
        let at = b * TASK_VALUES;
        for (j, o) in chunk.iter_mut().enumerate() {
            *o = f(at + j);
        }
    });
    out
}
