//! canard's CPU kernels: the convolutions as im2col / col2im + GEMM, BatchNorm and
//! LayerNorm fused with their activations, the gated linear unit, upsampling fused into
//! the convolution after it; each on plain values, with its backward pass (and, for the
//! critics' layers, the tangent passes the penalties need). `crate::nn`'s layers call them
//! on CPU tensors; everywhere else the layers use candle's ops.
//!
//! Why: candle 0.11's CPU `conv_transpose2d` is a direct loop over dot products and its
//! convolution backward passes are 5–12× slower than PyTorch's (see BENCHMARKS.md). Here
//! every convolution, in either direction, is matrix products (the `gemm` crate candle
//! already uses, with its AVX-512 kernels enabled) over a few images at a time, each
//! group's unfolded columns sized to stay in a core's cache, one group per thread.
//! Upstream, this amounts to replacing candle-core's `cpu_backend` `ConvTranspose2D` and
//! the convolution backward rules in `backprop.rs` with these three products. [`profile`]
//! counts where the time goes.

mod conv;
mod gemm;
pub mod glu;
mod im2col;
pub mod norm;
pub mod profile;
pub mod up_conv;

pub use conv::{conv2d, conv_transpose2d, conv_weight_grad, Geometry};
pub use gemm::Element;
pub use norm::{Norm, Over};

use candle_core::{bail, Device, Result, Storage, Tensor, WithDType};

/// Runs `$body` with `$T` the element type of `$dtype`: how a tensor's dtype picks a
/// kernel's instance.
#[macro_export]
macro_rules! by_element {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            candle_core::DType::F32 => {
                type $T = f32;
                $body
            }
            candle_core::DType::F64 => {
                type $T = f64;
                $body
            }
            d => return Err(candle_core::Error::Msg(format!("canard's CPU kernels take f32 or f64, not {d:?}")).into()),
        }
    };
}

/// Runs a kernel: `$body` on the values of CPU tensors of one dtype (each `$t => $v` binds
/// `$v: &[$T]`), its `Vec<$T>` made a CPU tensor of dimensions `$dims`.
#[macro_export]
macro_rules! kernel {
    ($dims:expr, [$($t:expr => $v:ident),+], $T:ident => $body:expr) => {{
        let ts = [$($t),+];
        $crate::by_element!(ts[0].dtype(), $T => {
            let out = $crate::ops::with_slices(ts, |[$($v),+]| {
                $(let $v: &[$T] = $v;)+
                $body
            })?;
            $crate::ops::tensor(out, $dims)
        })
    }};
}

/// A CPU tensor of a kernel's result.
pub fn tensor<T: Element>(data: Vec<T>, dims: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(data, dims, &Device::Cpu)
}

/// Values per parallel task in the element-wise loops: a task much smaller costs more to
/// hand to a thread than to compute.
pub(crate) const TASK_VALUES: usize = 1 << 14;

/// f(x[i], other[i]) for every value, in parallel blocks (`other` may be empty: then f
/// sees zeros).
pub fn map<T: Element>(x: &[T], other: &[T], f: impl Fn(T, T) -> T + Sync + Send) -> Vec<T> {
    made_in_chunks(
        x.len(),
        TASK_VALUES,
        || (),
        |_, b, chunk| {
            let x = &x[b * TASK_VALUES..];
            match other.is_empty() {
                true => chunk.iter_mut().zip(x).for_each(|(v, &x)| *v = f(x, T::zero())),
                false => chunk.iter_mut().zip(x).zip(&other[b * TASK_VALUES..]).for_each(|((v, &x), &o)| *v = f(x, o)),
            }
        },
    )
}

/// a + b, in parallel on the CPU (candle's addition is one thread there).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !a.device().is_cpu() || a.dims() != b.dims() || a.dtype() != b.dtype() {
        return a + b;
    }
    kernel!(a.dims(), [a => x, b => y], T => map(x, y, |x, y| x + y))
}

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

/// Runs `f` on the values of CPU tensors of one dtype (each made contiguous first).
pub fn with_slices<T: WithDType, R, const K: usize>(ts: [&Tensor; K], f: impl FnOnce([&[T]; K]) -> R) -> Result<R> {
    let ts = ts.iter().map(|t| t.contiguous()).collect::<Result<Vec<_>>>()?;
    let held: Vec<_> = ts.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices = Vec::with_capacity(K);
    for ((storage, layout), t) in held.iter().zip(&ts) {
        let Storage::Cpu(s) = &**storage else {
            bail!("canard CPU ops: a tensor on {:?} where the CPU was expected", t.device())
        };
        match layout.contiguous_offsets() {
            Some((start, end)) => slices.push(&s.as_slice::<T>()?[start..end]),
            None => bail!("internal error: an operand of a canard CPU kernel is not contiguous"),
        }
    }
    Ok(f(std::array::from_fn(|i| slices[i])))
}
