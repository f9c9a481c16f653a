//! Convolutions on the CPU as im2col / col2im + GEMM, through candle's `CustomOp2` so
//! autograd (second order included, for WGAN-GP) still works, and on plain values for
//! the CPU tape (`crate::tape`).
//!
//! Why: candle 0.11's CPU `conv_transpose2d` is a direct loop over dot products and its
//! convolution backward passes are 5–12× slower than PyTorch's (see BENCHMARKS.md). Here
//! every convolution, in either direction, is matrix products (the `gemm` crate candle
//! already uses, with its AVX-512 kernels enabled) over a few images at a time, each
//! group's unfolded columns sized to stay in a core's cache, one group per thread.
//! Upstream, this amounts to replacing candle-core's `cpu_backend` `ConvTranspose2D` and
//! the convolution backward rules in `backprop.rs` with these three products.
//!
//! Three operations close under differentiation, so each one's backward pass is made of
//! the other two (and stays differentiable itself):
//! - [`conv2d`]: y = x ⋆ w;
//! - [`conv_transpose2d`]: the adjoint of conv2d in its input;
//! - the weight gradient of conv2d, which is also conv_transpose2d's weight gradient.
//!
//! BatchNorm (training mode) and its activation are one fused operation too
//! ([`batch_norm_act`], [`BatchNormAct`]), and so are LeakyReLU on its own
//! ([`leaky_relu`]), the gated linear unit ([`glu`]) and upsampling ([`upsample2`]). Other devices (CUDA) use candle's own kernels. [`profile`] counts
//! where the time goes.

mod batch_norm;
mod conv;
mod gemm;
pub mod glu;
mod im2col;
pub mod layer_norm;
mod leaky_relu;
pub mod profile;
mod upsample;

pub use batch_norm::{batch_norm_act, Activation, BatchNormAct, Stats};
pub use conv::{conv2d_values, conv_transpose2d_values, weight_grad_values, Geometry};
pub use gemm::Element;

use candle_core::{bail, Layout, Result, Storage, Tensor, WithDType};

/// A 2-D convolution without bias: x [N, Cin, H, W], w [Cout, Cin, k, k] → [N, Cout, H', W'].
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.conv2d(w, padding, stride, 1, 1);
    }
    conv::conv2d(x, w, Geometry::new(w.dim(3)?, stride, padding)?)
}

/// A transposed 2-D convolution without bias: x [N, Cin, H, W], w [Cin, Cout, k, k] →
/// [N, Cout, (H-1)·stride - 2·padding + k, …].
pub fn conv_transpose2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.conv_transpose2d(w, padding, 0, stride, 1);
    }
    let g = Geometry::new(w.dim(3)?, stride, padding)?;
    let (_, _, h, wd) = x.dims4()?;
    conv::conv_transpose2d(x, w, g, (g.big(h)?, g.big(wd)?))
}

/// x[:, :C]·σ(x[:, C:]) for x with 2C channels (Dauphin et al.'s gated linear unit).
pub fn glu(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        let c = x.dim(1)? / 2;
        return x.narrow(1, 0, c)?.mul(&candle_nn::ops::sigmoid(&x.narrow(1, c, c)?)?);
    }
    glu::glu(x)
}

/// Nearest-neighbour upsampling ×2: [N, C, H, W] → [N, C, 2H, 2W].
pub fn upsample2(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() {
        // A broadcast, whose backward pass is a sum (see `upsample`).
        let (n, c, h, w) = x.dims4()?;
        return x.reshape((n, c, h, 1, w, 1))?.broadcast_as((n, c, h, 2, w, 2))?.contiguous()?.reshape((
            n,
            c,
            2 * h,
            2 * w,
        ));
    }
    upsample::upsample2(x)
}

/// max(x, slope·x), with PyTorch's derivative (`slope` at 0).
pub fn leaky_relu(x: &Tensor, slope: f64) -> Result<Tensor> {
    if !x.device().is_cpu() {
        return x.maximum(&(x * slope)?);
    }
    leaky_relu::leaky_relu(x, slope)
}

/// Values per parallel task in the element-wise loops: a task much smaller costs more to
/// hand to a thread than to compute.
pub(crate) const TASK_VALUES: usize = 1 << 14;

/// A vector of `len` values made in parallel, chunk by chunk: `fill(state, i, chunk)`
/// computes chunk `i` (of `chunk` values; the last may be shorter), with a `state` per
/// task from `init` (scratch buffers). Each chunk is zeroed by the task that fills it,
/// while it is in that core's cache, rather than the whole vector at allocation: that was
/// a single-threaded pass over the step's largest arrays, ~5% of a 64×64 step (measured).
pub(crate) fn made_in_chunks<T: Element, S>(
    len: usize,
    chunk: usize,
    init: impl Fn() -> S + Sync + Send,
    fill: impl Fn(&mut S, usize, &mut [T]) + Sync + Send,
) -> Vec<T> {
    use rayon::prelude::*;
    let mut v: Vec<T> = Vec::with_capacity(len);
    v.spare_capacity_mut()[..len].par_chunks_mut(chunk.max(1)).enumerate().for_each_init(init, |state, (i, c)| {
        for x in c.iter_mut() {
            x.write(T::zero());
        }
        // SAFETY: every value of `c` was just initialised, and MaybeUninit<T> has T's layout.
        let c = unsafe { &mut *(c as *mut [std::mem::MaybeUninit<T>] as *mut [T]) };
        fill(state, i, c);
    });
    // SAFETY: the chunks cover 0..len and each was initialised above (a panic in `fill`
    // unwinds through here before this line).
    unsafe { v.set_len(len) };
    v
}

/// A (leaky) ReLU's slope at z: 1 right of zero, `slope` elsewhere. A choice between two
/// constants, so the compiler emits a blend rather than a branch: activations' signs are
/// random, and a mispredicted branch per value made BatchNorm's backward pass 3–4× slower
/// than its arithmetic (measured on the 64×64 step).
#[inline(always)]
pub fn relu_slope<T: WithDType>(z: T, slope: T) -> T {
    if z > T::zero() {
        T::one()
    } else {
        slope
    }
}

/// The values a contiguous layout covers (every custom op here makes its operands contiguous first).
fn contiguous<'a, T>(data: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!("internal error: an operand of a canard CPU op is not contiguous"),
    }
}

/// Runs `f` on a contiguous CPU tensor's values.
pub fn with_slice<T: WithDType, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => Ok(f(contiguous(s.as_slice::<T>()?, layout)?)),
        _ => bail!("canard CPU ops: a tensor on {:?} where the CPU was expected", t.device()),
    }
}
