//! The three convolution products on plain NCHW values: y = x ⋆ w, its adjoint in x
//! (the transposed convolution), and its weight gradient.

use candle_core::{bail, Result, Tensor};
use rayon::prelude::*;

use super::gemm::{gemm_into, Element, Mat};
use super::im2col::{add, col2im, im2col, swap_outer, Frame};
use super::made_in_chunks;

/// A square kernel's size, stride and zero padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Geometry {
    pub fn new(k: usize, stride: usize, padding: usize) -> Result<Self> {
        if k == 0 || stride == 0 {
            bail!("convolution kernel size and stride must be positive, got {k} and {stride}");
        }
        Ok(Self { k, stride, padding })
    }

    /// The number of kernel positions along a side of `big` pixels (a convolution's output side).
    pub fn small(&self, big: usize) -> Result<usize> {
        match (big + 2 * self.padding).checked_sub(self.k) {
            Some(d) => Ok(d / self.stride + 1),
            None => bail!("a {}-pixel kernel does not fit a side of {big} with padding {}", self.k, self.padding),
        }
    }

    /// A transposed convolution's output side for an input side of `small`.
    pub fn big(&self, small: usize) -> Result<usize> {
        match ((small.max(1) - 1) * self.stride + self.k).checked_sub(2 * self.padding) {
            Some(b) if b > 0 && small > 0 => Ok(b),
            _ => bail!("transposed convolution of side {small} with {self:?} has no output"),
        }
    }
}

/// Values of unfolded columns one task keeps at a time: 1 MiB of f32, half a core's L2
/// cache here, so the product reads back from cache what im2col has just written (or
/// col2im what the product has).
const CACHE_VALUES: usize = 1 << 18;
/// Columns (images × kernel positions) a task's products should span, for the GEMM kernels
/// to run near full speed.
const COLS: usize = 512;

/// Images per task for `n` images of `per_image` columns each: about [`COLS`] columns,
/// but never so many that a thread goes without a share.
fn images_per_task(n: usize, per_image: usize) -> usize {
    let share = n.div_ceil(rayon::current_num_threads());
    COLS.div_ceil(per_image.max(1)).min(share).max(1)
}

/// Channels per block when each channel unfolds to `per_channel` values: as many as fit
/// the cache share (at least one).
fn channels_per_block(per_channel: usize, channels: usize) -> usize {
    (CACHE_VALUES / per_channel.max(1)).clamp(1, channels.max(1))
}

/// `0..n` in blocks of `size`.
fn blocks(n: usize, size: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..n).step_by(size.max(1)).map(move |lo| lo..(lo + size).min(n))
}

/// The first `len` values of a task's reusable buffer.
fn scratch<T: Element>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    if buf.len() < len {
        buf.resize(len, T::zero());
    }
    &mut buf[..len]
}

/// `v`, [n, c, P] values, as the [c, n·P] matrix a product takes: `v` itself for one
/// image, else moved into `buf`.
fn channel_major<'a, T: Element>(v: &'a [T], n: usize, c: usize, buf: &'a mut Vec<T>) -> &'a [T] {
    if n == 1 {
        return v;
    }
    let buf = scratch(buf, v.len());
    swap_outer(v, n, c, buf);
    buf
}

/// Chunks per thread that a product's parallel loop splits into: each split makes its
/// own scratch buffers, so few, but more than one, for threads that finish early.
const SPLITS_PER_THREAD: usize = 2;

/// A product's output of `len` values made in chunks of `chunk` by `task`, in few enough
/// parallel splits that the scratch buffers (`S`) are made only a few times.
fn output<T: Element, S: Default>(
    len: usize,
    chunk: usize,
    task: impl Fn(&mut S, usize, &mut [T]) + Sync + Send,
) -> Vec<T> {
    let splits = rayon::current_num_threads() * SPLITS_PER_THREAD;
    let per_split = len.div_ceil(chunk.max(1)).div_ceil(splits).max(1);
    made_in_chunks(len, chunk * per_split, S::default, |state, i, part| {
        for (j, c) in part.chunks_mut(chunk.max(1)).enumerate() {
            task(state, i * per_split + j, c);
        }
    })
}

fn dims4(d: &[usize], what: &str) -> Result<(usize, usize, usize, usize)> {
    match *d {
        [a, b, c, e] => Ok((a, b, c, e)),
        _ => bail!("{what} must have 4 dimensions, got {d:?}"),
    }
}

/// y = conv2d(x, w) (no bias): x [N, Ci, H, W], w [Co, Ci, k, k] → y [N, Co, H', W'].
pub fn conv2d(x: &Tensor, w: &Tensor, g: Geometry) -> Result<Tensor> {
    let (n, ci, h, wd) = dims4(x.dims(), "conv2d input")?;
    let (co, wci, k1, k2) = dims4(w.dims(), "conv2d weight")?;
    if (wci, k1, k2) != (ci, g.k, g.k) {
        bail!(
            "conv2d: the input has {ci} channels but the weight is {:?} (expected [_, {ci}, {k}, {k}])",
            w.dims(),
            k = g.k
        );
    }
    let f = Frame { n, channels: ci, big: (h, wd), small: (g.small(h)?, g.small(wd)?), g };
    crate::kernel!(&[n, co, f.small.0, f.small.1], [x => xv, w => wv], T => conv(f, co, xv, wv))
}

/// For each group of images: unfold, multiply by the weight, and write the result into
/// y's NCHW layout (straight from the product for a single image, whose result is
/// already [Co, H'·W']). The group is cut down until its columns fit the cache.
fn conv<T: Element>(f: Frame, co: usize, x: &[T], w: &[T]) -> Vec<T> {
    let (sl, image) = (f.small_len(), f.channels * f.big_len());
    if f.whole() {
        // y [N, Co] = x [N, C·k·k] · wᵀ
        let mut y = vec![T::zero(); f.n * co];
        gemm_into(&mut y, co, Mat::new(x, f.n, image), Mat::new(w, co, image).t(), false);
        return y;
    }
    let fits = (CACHE_VALUES / (f.rows() * sl).max(1)).max(1);
    let g = images_per_task(f.n, sl).min(fits);
    let weight = Mat::new(w, co, f.rows());
    let task = |(cols, prod): &mut (Vec<T>, Vec<T>), i: usize, y: &mut [T]| {
        let sub = f.with_n(y.len() / (co * sl));
        let cols = scratch(cols, sub.rows() * sub.cols());
        im2col(&x[i * g * image..][..sub.n * image], &sub, 0..f.channels, cols);
        let cols = Mat::new(cols, sub.rows(), sub.cols());
        if sub.n == 1 {
            gemm_into(y, sl, weight, cols, false);
        } else {
            let prod = scratch(prod, y.len());
            gemm_into(prod, sub.cols(), weight, cols, false);
            swap_outer(prod, co, sub.n, y);
        }
    };
    output(f.n * co * sl, g * co * sl, task)
}

/// The transposed convolution (conv2d's adjoint in x) at output side `out`: x [N, Ci, h, w],
/// w [Ci, Co, k, k] → y [N, Co, out.0, out.1].
pub fn conv_transpose2d(x: &Tensor, w: &Tensor, g: Geometry, out: (usize, usize)) -> Result<Tensor> {
    let (n, ci, sh, sw) = dims4(x.dims(), "conv_transpose2d input")?;
    let (wci, co, k1, k2) = dims4(w.dims(), "conv_transpose2d weight")?;
    if (wci, k1, k2) != (ci, g.k, g.k) {
        bail!(
            "conv_transpose2d: the input has {ci} channels but the weight is {:?} (expected [{ci}, _, {k}, {k}])",
            w.dims(),
            k = g.k
        );
    }
    let f = Frame { n, channels: co, big: out, small: (sh, sw), g };
    if (g.small(out.0)?, g.small(out.1)?) != f.small {
        bail!("conv_transpose2d: an output of {out:?} does not match an input of {:?} with {g:?}", f.small);
    }
    crate::kernel!(&[n, co, out.0, out.1], [x => xv, w => wv], T => conv_transpose(f, ci, xv, wv))
}

/// For each group of images, block by block of output channels: the weight's
/// transpose times the input (a single image's NCHW input is already [Ci, H'·W']) gives
/// those channels' columns, folded back into y.
fn conv_transpose<T: Element>(f: Frame, ci: usize, x: &[T], w: &[T]) -> Vec<T> {
    let (sl, image, kk) = (f.small_len(), f.channels * f.big_len(), f.g.k * f.g.k);
    if f.whole() {
        // y [N, Co·k·k] = x [N, Ci] · w
        let mut y = vec![T::zero(); f.n * image];
        gemm_into(&mut y, image, Mat::new(x, f.n, ci), Mat::new(w, ci, image), false);
        return y;
    }
    let g = images_per_task(f.n, sl);
    let per_block = channels_per_block(kk * g * sl, f.channels);
    let weight = Mat::new(w, ci, f.rows());
    let task = |(cols, xcm): &mut (Vec<T>, Vec<T>), i: usize, y: &mut [T]| {
        let sub = f.with_n(y.len() / image);
        let xs = channel_major(&x[i * g * ci * sl..][..sub.n * ci * sl], sub.n, ci, xcm);
        for cs in blocks(f.channels, per_block) {
            let cols = scratch(cols, cs.len() * kk * sub.cols());
            let wt = weight.cols(cs.start * kk, cs.end * kk).t();
            gemm_into(cols, sub.cols(), wt, Mat::new(xs, ci, sub.cols()), false);
            col2im(cols, &sub, cs, y);
        }
    };
    output(f.n * image, g * image, task)
}

/// conv2d's weight gradient from its input x [N, Ci, H, W] and its output's gradient
/// dy [N, Co, H', W'] → [Co, Ci, k, k].
pub fn conv_weight_grad(x: &Tensor, dy: &Tensor, g: Geometry) -> Result<Tensor> {
    let (n, ci, h, w) = dims4(x.dims(), "conv2d weight gradient input")?;
    let (dn, co, sh, sw) = dims4(dy.dims(), "conv2d weight gradient output")?;
    let f = Frame { n, channels: ci, big: (h, w), small: (sh, sw), g };
    if dn != n || (g.small(h)?, g.small(w)?) != f.small {
        bail!("conv2d weight gradient: input {:?} and output gradient {:?} do not match {g:?}", x.dims(), dy.dims());
    }
    crate::kernel!(&[co, ci, g.k, g.k], [x => xv, dy => dv], T => weight_grad(f, co, xv, dv))
}

/// A sum over the batch: each thread adds up the products of its share of the images,
/// group by group and block by block of input channels (dy's rows times those
/// channels' unfolded columns, transposed), into its own copy of the gradient; the
/// copies are summed at the end.
fn weight_grad<T: Element>(f: Frame, co: usize, x: &[T], dy: &[T]) -> Vec<T> {
    let (sl, image, kk) = (f.small_len(), f.channels * f.big_len(), f.g.k * f.g.k);
    if f.whole() {
        // dw [Co, C·k·k] = dyᵀ · x [N, C·k·k]
        let mut dw = vec![T::zero(); co * image];
        gemm_into(&mut dw, image, Mat::new(dy, f.n, co).t(), Mat::new(x, f.n, image), false);
        return dw;
    }
    let g = images_per_task(f.n, sl);
    let per_block = channels_per_block(kk * g * sl, f.channels);
    let groups = f.n.div_ceil(g);
    let parts = rayon::current_num_threads().clamp(1, groups.max(1));
    let partial = |t: usize| {
        let (mut cols, mut dycm) = (Vec::new(), Vec::new());
        let range = groups * t / parts..groups * (t + 1) / parts;
        // The range's first group writes every block of dw; the others add to it.
        let mut dw = vec![T::zero(); co * f.rows()];
        for gi in range.clone() {
            let sub = f.with_n(g.min(f.n - gi * g));
            let ds = channel_major(&dy[gi * g * co * sl..][..sub.n * co * sl], sub.n, co, &mut dycm);
            let xs = &x[gi * g * image..][..sub.n * image];
            for cs in blocks(f.channels, per_block) {
                let cols = scratch(&mut cols, cs.len() * kk * sub.cols());
                im2col(xs, &sub, cs.clone(), cols);
                let (a, b) = (Mat::new(ds, co, sub.cols()), Mat::new(cols, cs.len() * kk, sub.cols()).t());
                gemm_into(&mut dw[cs.start * kk..], f.rows(), a, b, gi != range.start);
            }
        }
        dw
    };
    let sum = |mut dw: Vec<T>, part: Vec<T>| {
        add(&mut dw, &part);
        dw
    };
    (0..parts).into_par_iter().map(partial).reduce_with(sum).unwrap_or_else(|| vec![T::zero(); co * f.rows()])
}
