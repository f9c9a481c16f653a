//! fastgan's generator and critic (`crate::model::fastgan`) on the CPU tape: the same
//! operations as their candle forward passes, each layer's backward pass written out, so
//! fastgan trains on the CPU as DCGAN's networks do (`crate::tape`, same reasons).
//!
//! The networks are not a chain, so each has its own record: the generator's maps feed
//! the next block and, three blocks on, a skip-layer excitation; the critic's 16×16 and
//! 8×8 features feed the decoders. Spectral normalisation's power iteration stays in
//! candle ([`SpectralConv::singular_vectors`]); the tape divides by σ and carries the
//! gradient back through it ([`Spectral`]). `tests/tape.rs` checks every gradient against
//! candle's graph.

use candle_core::backprop::GradStore;
use candle_core::{bail, Result, Tensor};
use rayon::prelude::*;

use super::{accumulate, in_parallel, merge_grads, Pending, Values};
use crate::model::fastgan::{self, Decoder, Discriminator, Excitation, Generator, SpectralConv, EXCITE_SLOPE};
use crate::model::layers::{BatchNorm2d, BN_EPS, LEAKY_SLOPE};
use crate::ops::glu::{glu_grad_values, glu_values};
use crate::ops::{self, Activation, BatchNormAct, Element, Geometry};

/// A convolution's weight values and geometry, as one pass reads them.
struct Kernel<T> {
    w: Values<T>,
    g: Geometry,
}

impl<T: Element> Kernel<T> {
    fn of(weight: &Tensor, stride: usize, padding: usize) -> Result<Self> {
        let w = Values::of(weight)?;
        let g = Geometry::new(w.dims[3], stride, padding)?;
        Ok(Self { w, g })
    }

    fn conv(&self, x: &Values<T>) -> Result<Values<T>> {
        let (data, dims) = ops::conv2d_values(&x.data, &x.dims, &self.w.data, &self.w.dims, self.g)?;
        Ok(Values { data, dims })
    }

    fn conv_transposed(&self, x: &Values<T>) -> Result<Values<T>> {
        let out = (self.g.big(x.dims[2])?, self.g.big(x.dims[3])?);
        let (data, dims) = ops::conv_transpose2d_values(&x.data, &x.dims, &self.w.data, &self.w.dims, self.g, out)?;
        Ok(Values { data, dims })
    }

    /// The convolution's weight gradient, from its input and its output's gradient.
    fn weight_grad(&self, x: &Values<T>, dy: &[T], y_dims: &[usize]) -> Result<Vec<T>> {
        Ok(ops::weight_grad_values(&x.data, &x.dims, dy, y_dims, self.g)?.0)
    }

    /// The convolution's input gradient (the input had `x_dims`).
    fn input_grad(&self, dy: &[T], y_dims: &[usize], x_dims: &[usize]) -> Result<Vec<T>> {
        let out = (x_dims[2], x_dims[3]);
        Ok(ops::conv_transpose2d_values(dy, y_dims, &self.w.data, &self.w.dims, self.g, out)?.0)
    }
}

/// A spectrally normalised convolution for one pass: W̄ = W/σ as the kernel, with
/// σ = uᵀWv from the power iteration's u and v.
struct Spectral<'a, T> {
    layer: &'a SpectralConv,
    kernel: Kernel<T>,
    u: Vec<T>,
    v: Vec<T>,
    sigma: T,
}

impl<'a, T: Element> Spectral<'a, T> {
    /// Advances the layer's power iteration, as a training forward pass does.
    fn of(layer: &'a SpectralConv) -> Result<Self> {
        let (u, v) = layer.singular_vectors(true)?;
        let w = layer.conv.weight.detach();
        let sigma = fastgan::sigma(&w, &u, &v)?;
        let kernel = Kernel::of(&w.broadcast_div(&sigma)?, layer.conv.stride, layer.conv.padding)?;
        let sigma = T::from_f64(sigma.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?);
        Ok(Self { layer, kernel, u: Values::of(&u)?.data, v: Values::of(&v)?.data, sigma })
    }

    /// Adds W's gradient to `grads` from W̄'s: (dW̄ − ⟨dW̄, W̄⟩·u vᵀ)/σ, u and v held
    /// constant (as PyTorch's `spectral_norm` differentiates).
    fn accumulate(&self, grads: &mut GradStore, dbar: Vec<T>) -> Result<()> {
        let bar = &self.kernel.w.data;
        let dot = dbar.iter().zip(bar).fold(T::zero(), |s, (&d, &b)| s + d * b);
        let cols = self.v.len();
        let mut dw = dbar;
        for (row, &u) in dw.chunks_mut(cols).zip(&self.u) {
            for (d, &v) in row.iter_mut().zip(&self.v) {
                *d = (*d - dot * u * v) / self.sigma;
            }
        }
        accumulate(grads, &self.layer.conv.weight, dw)
    }
}

/// A weight whose gradient a block adds: a parameter's own, or a spectral layer's W̄.
#[derive(Clone, Copy)]
enum Weight<'a, T> {
    Param(&'a Tensor),
    Spectral(&'a Spectral<'a, T>),
}

impl<T: Element> Weight<'_, T> {
    fn accumulate(self, grads: &mut GradStore, dw: Vec<T>) -> Result<()> {
        match self {
            Weight::Param(t) => accumulate(grads, t, dw),
            Weight::Spectral(s) => s.accumulate(grads, dw),
        }
    }
}

/// BatchNorm in training mode (its batch's statistics), with its activation: what its
/// backward pass reads.
struct Normed<'a, T> {
    bn: &'a BatchNorm2d,
    z: Vec<T>,
    op: BatchNormAct,
    gamma: Vec<T>,
}

impl<'a, T: Element> Normed<'a, T> {
    /// act(BatchNorm(z)); the batch's statistics go to `stats`.
    fn forward(bn: &'a BatchNorm2d, z: Values<T>, act: Activation, stats: &mut Pending) -> Result<(Self, Values<T>)> {
        let frame = (z.dims[0], z.dims[1], z.dims[2] * z.dims[3]);
        let (op, batch) = BatchNormAct::of(&z.data, frame, BN_EPS, act);
        let gamma = Values::<T>::of(&bn.gamma)?.data;
        let y = op.forward(&z.data, &gamma, &Values::<T>::of(&bn.beta)?.data);
        stats.push((batch, frame.0 * frame.2));
        Ok((Self { bn, z: z.data, op, gamma }, Values { data: y, dims: z.dims }))
    }

    /// dz from the output `y` and its gradient; γ's and β's gradients added to `grads`.
    fn backward(&self, y: &[T], dy: &[T], grads: Option<&mut GradStore>) -> Result<Vec<T>> {
        let (dz, dgamma, dbeta) = self.op.backward(&self.z, &self.gamma, y, dy);
        if let Some(grads) = grads {
            accumulate(grads, &self.bn.gamma, dgamma)?;
            accumulate(grads, &self.bn.beta, dbeta)?;
        }
        Ok(dz)
    }
}

fn tanh<T: Element>(mut x: Values<T>) -> Values<T> {
    in_parallel(&mut x.data, |v, _| v.tanh(), &[]);
    x
}

fn sigmoid<T: Element>(v: T) -> T {
    T::one() / (T::one() + (T::zero() - v).exp())
}

/// dst += src, where dst may not have a gradient yet.
fn add_into<T: Element>(dst: &mut Option<Vec<T>>, src: Vec<T>) {
    match dst {
        Some(d) => d.iter_mut().zip(src).for_each(|(d, s)| *d += s),
        None => *dst = Some(src),
    }
}

/// Nearest upsampling ×2 and then a 3×3 convolution (stride 1, padding 1), computed on
/// the small map: each of the four output phases (even or odd row, even or odd column)
/// reads two rows and two columns of the small map, so it is a 2×2 convolution whose taps
/// are the 3×3 kernel's summed over the rows and columns that read the same small pixel.
/// All four phases are one convolution (4·out channels, 2×2, padding 1, (h+1)×(w+1)
/// outputs), interleaved: 16 products per small pixel and output channel instead of 36,
/// and no upsampled copy. The same function as [`crate::ops::upsample2`] then the
/// convolution, up to rounding.
mod up_conv {
    use super::{Element, Geometry, Kernel, Values};
    use candle_core::{bail, Result};
    use rayon::prelude::*;

    /// Which of the 2×2 taps 3×3 tap `k` (0–2) reads, for phase `a` (0 even, 1 odd): the
    /// upsampled row 2i + a − 1 + k is small row i − 1 + tap (phase 0) or i + tap (phase 1).
    fn tap(a: usize, k: usize) -> usize {
        [[0, 1, 1], [0, 0, 1]][a][k]
    }

    /// The four phases' 2×2 kernels [4·out, in, 2, 2] (phase 2a + b first) from the 3×3 one.
    pub fn fold<T: Element>(k: &Kernel<T>) -> Result<Kernel<T>> {
        let &[o, c, 3, 3] = &k.w.dims[..] else {
            bail!("internal error: upsampling 3×3 kernels only, not {:?}", k.w.dims)
        };
        let mut f = vec![T::zero(); 4 * o * c * 4];
        for (a, b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            for oc in 0..o * c {
                let w = &k.w.data[oc * 9..oc * 9 + 9];
                let dst = &mut f[((2 * a + b) * o * c + oc) * 4..][..4];
                for ky in 0..3 {
                    for kx in 0..3 {
                        dst[tap(a, ky) * 2 + tap(b, kx)] += w[ky * 3 + kx];
                    }
                }
            }
        }
        Ok(Kernel { w: Values { data: f, dims: vec![4 * o, c, 2, 2] }, g: Geometry::new(2, 1, 1)? })
    }

    /// [`fold`]'s adjoint: the 3×3 kernel's gradient from the phases' [o, c, 3, 3].
    pub fn unfold<T: Element>(df: &[T], o: usize, c: usize) -> Vec<T> {
        let mut dw = vec![T::zero(); o * c * 9];
        for (a, b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            for oc in 0..o * c {
                let src = &df[((2 * a + b) * o * c + oc) * 4..][..4];
                let w = &mut dw[oc * 9..oc * 9 + 9];
                for ky in 0..3 {
                    for kx in 0..3 {
                        w[ky * 3 + kx] += src[tap(a, ky) * 2 + tap(b, kx)];
                    }
                }
            }
        }
        dw
    }

    /// The phases' outputs [N, 4·o, h+1, w+1] → the picture [N, o, 2h, 2w]:
    /// y[2i+a, 2j+b] = phase (a, b) at (i+a, j+b).
    pub fn interleave<T: Element>(p: &Values<T>, o: usize) -> Values<T> {
        let (n, h1, w1) = (p.dims[0], p.dims[2], p.dims[3]);
        let (h, w) = (h1 - 1, w1 - 1);
        let mut y = vec![T::zero(); n * o * 4 * h * w];
        y.par_chunks_mut(o * 4 * h * w).zip(p.data.par_chunks(4 * o * h1 * w1)).for_each(|(img, src)| {
            for (phase, src) in src.chunks(o * h1 * w1).enumerate() {
                let (a, b) = (phase / 2, phase % 2);
                for (plane, src) in img.chunks_mut(4 * h * w).zip(src.chunks(h1 * w1)) {
                    for i in 0..h {
                        let row = &mut plane[(2 * i + a) * 2 * w..][..2 * w];
                        let from = &src[(i + a) * w1 + b..][..w];
                        for (j, &v) in from.iter().enumerate() {
                            row[2 * j + b] = v;
                        }
                    }
                }
            }
        });
        Values { data: y, dims: vec![n, o, 2 * h, 2 * w] }
    }

    /// [`interleave`]'s adjoint: the phases' gradient (zero where no output reads them).
    pub fn deinterleave<T: Element>(dy: &[T], p_dims: &[usize]) -> Vec<T> {
        let (n, o4, h1, w1) = (p_dims[0], p_dims[1], p_dims[2], p_dims[3]);
        let (o, h, w) = (o4 / 4, h1 - 1, w1 - 1);
        let mut dp = vec![T::zero(); n * o4 * h1 * w1];
        dp.par_chunks_mut(o4 * h1 * w1).zip(dy.par_chunks(o * 4 * h * w)).for_each(|(img, src)| {
            for (phase, dst) in img.chunks_mut(o * h1 * w1).enumerate() {
                let (a, b) = (phase / 2, phase % 2);
                for (plane, src) in dst.chunks_mut(h1 * w1).zip(src.chunks(4 * h * w)) {
                    for i in 0..h {
                        let row = &src[(2 * i + a) * 2 * w..][..2 * w];
                        let to = &mut plane[(i + a) * w1 + b..][..w];
                        for (j, v) in to.iter_mut().enumerate() {
                            *v = row[2 * j + b];
                        }
                    }
                }
            }
        });
        dp
    }
}

/// How a block's convolution meets its input.
#[derive(Clone, Copy, PartialEq)]
enum Conv {
    /// Transposed (the generator's first, from z).
    Transposed,
    /// Upsampled ×2 first ([`up_conv`]).
    Up,
}

/// A convolution → BatchNorm → GLU: fastgan's generator and decoder blocks.
struct GluBlock<'a, T> {
    input: Values<T>,
    conv: Conv,
    weight: Weight<'a, T>,
    /// The kernel as run: for [`Conv::Up`] the four phases' (of `out` channels each).
    kernel: Kernel<T>,
    out: usize,
    /// The convolution's output before interleaving (its own shape).
    z_dims: Vec<usize>,
    normed: Normed<'a, T>,
    /// BatchNorm's output, the GLU's input.
    y: Values<T>,
}

impl<'a, T: Element> GluBlock<'a, T> {
    fn forward(
        x: &Values<T>,
        conv: Conv,
        weight: Weight<'a, T>,
        kernel: Kernel<T>,
        bn: &'a BatchNorm2d,
        stats: &mut Pending,
    ) -> Result<(Self, Values<T>)> {
        let out = kernel.w.dims[match conv {
            Conv::Transposed => 1,
            Conv::Up => 0,
        }];
        let (kernel, z, z_dims) = match conv {
            Conv::Transposed => {
                let z = kernel.conv_transposed(x)?;
                let dims = z.dims.clone();
                (kernel, z, dims)
            }
            Conv::Up => {
                let folded = up_conv::fold(&kernel)?;
                let p = folded.conv(x)?;
                (folded, up_conv::interleave(&p, out), p.dims)
            }
        };
        let (normed, y) = Normed::forward(bn, z, Activation::Identity, stats)?;
        let d = &y.dims;
        let glu =
            Values { data: glu_values(&y.data, d[0], d[1] / 2 * d[2] * d[3]), dims: vec![d[0], d[1] / 2, d[2], d[3]] };
        Ok((Self { input: x.clone(), conv, weight, kernel, out, z_dims, normed, y }, glu))
    }

    /// The block's input gradient from its output's, when `want_input`; the weight's
    /// gradient and BatchNorm's added to `grads` when given.
    fn backward(&self, dout: &[T], mut grads: Option<&mut GradStore>, want_input: bool) -> Result<Option<Vec<T>>> {
        let d = &self.y.dims;
        let dy = glu_grad_values(&self.y.data, dout, d[0], d[1] / 2 * d[2] * d[3])?;
        let dz = self.normed.backward(&self.y.data, &dy, grads.as_deref_mut())?;
        let (x, g) = (&self.input, self.kernel.g);
        match self.conv {
            Conv::Transposed => {
                if let Some(grads) = grads {
                    self.weight.accumulate(grads, ops::weight_grad_values(&dz, d, &x.data, &x.dims, g)?.0)?;
                }
                if want_input {
                    bail!("internal error: the generator's first block has no input gradient");
                }
                Ok(None)
            }
            Conv::Up => {
                let dp = up_conv::deinterleave(&dz, &self.z_dims);
                if let Some(grads) = grads {
                    let df = self.kernel.weight_grad(x, &dp, &self.z_dims)?;
                    self.weight.accumulate(grads, up_conv::unfold(&df, self.out, x.dims[1]))?;
                }
                want_input.then(|| self.kernel.input_grad(&dp, &self.z_dims, &x.dims)).transpose()
            }
        }
    }
}

/// Skip-layer excitation on the tape: big · σ(excite(LeakyReLU(squeeze(pool4(small))))).
struct Excited<'a, T> {
    e: &'a Excitation,
    small_dims: Vec<usize>,
    pooled: Values<T>,
    squeeze: Kernel<T>,
    /// The squeeze's output, before its LeakyReLU, and after.
    s: Values<T>,
    a: Values<T>,
    excite: Kernel<T>,
    /// σ(excite(a)), per sample and channel.
    gate: Vec<T>,
    big: Values<T>,
}

impl<'a, T: Element> Excited<'a, T> {
    fn forward(e: &'a Excitation, small: &Values<T>, big: Values<T>) -> Result<(Self, Values<T>)> {
        let pooled = pool4(small);
        let squeeze = Kernel::of(&e.squeeze.weight, e.squeeze.stride, e.squeeze.padding)?;
        let s = squeeze.conv(&pooled)?;
        let slope = T::from_f64(EXCITE_SLOPE);
        let mut a = s.clone();
        in_parallel(&mut a.data, |v, _| v * ops::relu_slope(v, slope), &[]);
        let excite = Kernel::of(&e.excite.weight, e.excite.stride, e.excite.padding)?;
        let gate: Vec<T> = excite.conv(&a)?.data.into_iter().map(sigmoid).collect();
        let plane = big.dims[2] * big.dims[3];
        if gate.len() * plane != big.data.len() {
            bail!("internal error: excitation gates {} planes of {:?}", gate.len(), big.dims);
        }
        let mut out = big.clone();
        out.data.par_chunks_mut(plane).zip(&gate).for_each(|(p, &g)| p.iter_mut().for_each(|v| *v *= g));
        Ok((Self { e, small_dims: small.dims.clone(), pooled, squeeze, s, a, excite, gate, big }, out))
    }

    /// The gradients of (small, big) from the output's; the two weights' added to `grads`.
    fn backward(&self, dout: &[T], grads: &mut GradStore) -> Result<(Vec<T>, Vec<T>)> {
        let plane = self.big.dims[2] * self.big.dims[3];
        let mut dbig = dout.to_vec();
        let dgate: Vec<T> = dbig
            .par_chunks_mut(plane)
            .zip(self.big.data.par_chunks(plane))
            .zip(&self.gate)
            .map(|((db, big), &g)| {
                let dg = db.iter().zip(big).fold(T::zero(), |s, (&d, &b)| s + d * b) * g * (T::one() - g);
                db.iter_mut().for_each(|d| *d *= g);
                dg
            })
            .collect();
        let e_dims = &self.s.dims; // the excite's output has the squeeze's shape
        accumulate(grads, &self.e.excite.weight, self.excite.weight_grad(&self.a, &dgate, e_dims)?)?;
        let mut ds = self.excite.input_grad(&dgate, e_dims, &self.a.dims)?;
        let slope = T::from_f64(EXCITE_SLOPE);
        in_parallel(&mut ds, |d, s| d * ops::relu_slope(s, slope), &self.s.data);
        accumulate(grads, &self.e.squeeze.weight, self.squeeze.weight_grad(&self.pooled, &ds, e_dims)?)?;
        let dpooled = self.squeeze.input_grad(&ds, e_dims, &self.pooled.dims)?;
        Ok((pool4_grad(&dpooled, &self.small_dims), dbig))
    }
}

/// Average pooling of NCHW values to 4×4 (sides that are multiples of 4).
fn pool4<T: Element>(x: &Values<T>) -> Values<T> {
    let (h, w) = (x.dims[2], x.dims[3]);
    let (kh, kw) = (h / 4, w / 4);
    let scale = T::from_f64(1.0 / (kh * kw) as f64);
    let mut out = Vec::with_capacity(x.data.len() / (kh * kw));
    for p in x.data.chunks(h * w) {
        for i in 0..16 {
            let (r, c) = (i / 4 * kh, i % 4 * kw);
            let sum = (r..r + kh).flat_map(|y| &p[y * w + c..y * w + c + kw]).fold(T::zero(), |s, &v| s + v);
            out.push(sum * scale);
        }
    }
    Values { data: out, dims: vec![x.dims[0], x.dims[1], 4, 4] }
}

/// [`pool4`]'s adjoint: each 4×4 gradient spread evenly over its block of an input of `dims`.
fn pool4_grad<T: Element>(dy: &[T], dims: &[usize]) -> Vec<T> {
    let (h, w) = (dims[2], dims[3]);
    let (kh, kw) = (h / 4, w / 4);
    let scale = T::from_f64(1.0 / (kh * kw) as f64);
    let mut dx = vec![T::zero(); dims.iter().product()];
    for (p, d) in dx.chunks_mut(h * w).zip(dy.chunks(16)) {
        for (y, row) in p.chunks_mut(w).enumerate() {
            for (x, v) in row.iter_mut().enumerate() {
                *v = d[y / kh * 4 + x / kw] * scale;
            }
        }
    }
    dx
}

/// The generator's forward pass in training mode (BatchNorm's running statistics
/// updated), recorded.
pub struct GeneratorTape<'g, T> {
    g: &'g Generator,
    first: GluBlock<'g, T>,
    ups: Vec<GluBlock<'g, T>>,
    /// Each up block's excitation, where it has one.
    excited: Vec<Option<Excited<'g, T>>>,
    /// The maps at sides 4, 8, …, size (the last is to_image's input).
    maps: Vec<Values<T>>,
    to_image: Kernel<T>,
    image: Values<T>,
}

impl<'g, T: Element> GeneratorTape<'g, T> {
    /// z [N, nz, 1, 1] → pictures in [-1, 1].
    pub fn forward(g: &'g Generator, z: Values<T>) -> Result<Self> {
        let mut stats = Vec::new();
        let first_k = Kernel::of(&g.first.weight, g.first.stride, g.first.padding)?;
        let (first, map) =
            GluBlock::forward(&z, Conv::Transposed, Weight::Param(&g.first.weight), first_k, &g.first_bn, &mut stats)?;
        let mut maps = vec![map];
        let (mut ups, mut excited) = (Vec::new(), Vec::new());
        for (k, up) in g.ups.iter().enumerate() {
            let kernel = Kernel::of(&up.conv.weight, up.conv.stride, up.conv.padding)?;
            let (block, mut x) =
                GluBlock::forward(&maps[k], Conv::Up, Weight::Param(&up.conv.weight), kernel, &up.bn, &mut stats)?;
            let e = match g.excitations.iter().find(|(s, _)| *s == 8 << k) {
                Some((_, e)) => {
                    let (rec, out) = Excited::forward(e, &maps[k - 2], x)?; // side/8
                    x = out;
                    Some(rec)
                }
                None => None,
            };
            ups.push(block);
            excited.push(e);
            maps.push(x);
        }
        let bns = std::iter::once(&g.first_bn).chain(g.ups.iter().map(|u| &u.bn));
        for (bn, (s, count)) in bns.zip(stats) {
            bn.record(s, count)?;
        }
        let to_image = Kernel::of(&g.to_image.weight, g.to_image.stride, g.to_image.padding)?;
        let last = maps.last().ok_or_else(|| candle_core::Error::Msg("internal error: no maps".into()))?;
        let image = tanh(to_image.conv(last)?);
        Ok(Self { g, first, ups, excited, maps, to_image, image })
    }

    pub fn output(&self) -> &Values<T> {
        &self.image
    }

    /// Adds the parameters' gradients to `grads`, given the pictures' gradient.
    pub fn backward(&self, dimage: Vec<T>, grads: &mut GradStore) -> Result<()> {
        if dimage.len() != self.image.data.len() {
            bail!("generator backward: {} gradients for {} values", dimage.len(), self.image.data.len());
        }
        let mut d = dimage;
        in_parallel(&mut d, |d, y| d * (T::one() - y * y), &self.image.data);
        let last = &self.maps[self.maps.len() - 1];
        accumulate(grads, &self.g.to_image.weight, self.to_image.weight_grad(last, &d, &self.image.dims)?)?;
        let mut dmaps: Vec<Option<Vec<T>>> = (0..self.maps.len()).map(|_| None).collect();
        dmaps[self.maps.len() - 1] = Some(self.to_image.input_grad(&d, &self.image.dims, &last.dims)?);
        for k in (0..self.ups.len()).rev() {
            let missing = || candle_core::Error::Msg("internal error: a map without its gradient".into());
            let mut d = dmaps[k + 1].take().ok_or_else(missing)?;
            if let Some(e) = &self.excited[k] {
                let (dsmall, dbig) = e.backward(&d, grads)?;
                add_into(&mut dmaps[k - 2], dsmall);
                d = dbig;
            }
            let dx = self.ups[k].backward(&d, Some(grads), true)?.ok_or_else(missing)?;
            add_into(&mut dmaps[k], dx);
        }
        let d0 = dmaps[0].take().ok_or_else(|| candle_core::Error::Msg("internal error: no first gradient".into()))?;
        self.first.backward(&d0, Some(grads), false)?;
        Ok(())
    }
}

/// The critic's normalised weights for one pass (each layer's power iteration advanced
/// once, as a training forward pass advances it); with the decoders' when the pass rebuilds.
pub struct CriticWeights<'d, T> {
    d: &'d Discriminator,
    downs: Vec<Spectral<'d, T>>,
    logit: Spectral<'d, T>,
    decoders: Option<[DecoderWeights<'d, T>; 2]>,
}

struct DecoderWeights<'d, T> {
    decoder: &'d Decoder,
    ups: Vec<Spectral<'d, T>>,
    out: Spectral<'d, T>,
}

impl<'d, T: Element> DecoderWeights<'d, T> {
    fn of(decoder: &'d Decoder) -> Result<Self> {
        let ups = decoder.ups.iter().map(|(c, _)| Spectral::of(c)).collect::<Result<_>>()?;
        Ok(Self { decoder, ups, out: Spectral::of(&decoder.out)? })
    }
}

impl<'d, T: Element> CriticWeights<'d, T> {
    pub fn of(d: &'d Discriminator, rebuilds: bool) -> Result<Self> {
        let downs = d.downs.iter().map(|b| Spectral::of(&b.conv)).collect::<Result<_>>()?;
        let logit = Spectral::of(&d.logit)?;
        let decoders = match rebuilds {
            true => Some([DecoderWeights::of(&d.rebuild_all)?, DecoderWeights::of(&d.rebuild_part)?]),
            false => None,
        };
        Ok(Self { d, downs, logit, decoders })
    }

    /// The forward pass in training mode on (augmented) pictures, rebuilding quarter
    /// `part` when these weights include the decoders; the BatchNorm statistics, in the
    /// graph's order, for [`CriticTape::record`].
    pub fn forward(&self, x: Values<T>, part: usize) -> Result<CriticTape<'_, 'd, T>> {
        let mut stats = Vec::new();
        let mut xs = vec![x];
        let mut normed = Vec::new();
        let (mut f16, mut f8) = (None, None);
        for (b, w) in self.d.downs.iter().zip(&self.downs) {
            let z = w.kernel.conv(&xs[xs.len() - 1])?;
            let y = match &b.bn {
                Some(bn) => {
                    let (n, y) = Normed::forward(bn, z, Activation::LeakyRelu(LEAKY_SLOPE), &mut stats)?;
                    normed.push(Some(n));
                    y
                }
                None => {
                    normed.push(None);
                    let mut y = z;
                    let s = T::from_f64(LEAKY_SLOPE);
                    in_parallel(&mut y.data, |v, _| v * ops::relu_slope(v, s), &[]);
                    y
                }
            };
            match y.dims[2] {
                16 => f16 = Some(xs.len()),
                8 => f8 = Some(xs.len()),
                _ => {}
            }
            xs.push(y);
        }
        let logits = self.logit.kernel.conv(&xs[xs.len() - 1])?;
        let rebuilt = match &self.decoders {
            Some([all, quarter]) => {
                let missing =
                    || candle_core::Error::Msg("internal error: fastgan's critic lacks a 16×16 or 8×8 map".into());
                let (f16, f8) = (f16.ok_or_else(missing)?, f8.ok_or_else(missing)?);
                let all = DecoderTape::forward(all, &xs[f8], &mut stats)?;
                let quarter = DecoderTape::forward(quarter, &quarter_of(&xs[f16], part), &mut stats)?;
                Some(Rebuilt { all, quarter, part, f16, f8 })
            }
            None => None,
        };
        Ok(CriticTape { w: self, xs, normed, logits, rebuilt, stats })
    }
}

/// Quarter `part` (0–3, row-major) of NCHW values.
fn quarter_of<T: Element>(x: &Values<T>, part: usize) -> Values<T> {
    let (h, w) = (x.dims[2], x.dims[3]);
    let (r, c) = (part / 2 % 2 * h / 2, part % 2 * w / 2);
    let mut out = Vec::with_capacity(x.data.len() / 4);
    for p in x.data.chunks(h * w) {
        for y in r..r + h / 2 {
            out.extend_from_slice(&p[y * w + c..y * w + c + w / 2]);
        }
    }
    Values { data: out, dims: vec![x.dims[0], x.dims[1], h / 2, w / 2] }
}

/// [`quarter_of`]'s adjoint, added into `dx` (of `dims`).
fn add_quarter<T: Element>(dx: &mut [T], dims: &[usize], dq: &[T], part: usize) {
    let (h, w) = (dims[2], dims[3]);
    let (r, c) = (part / 2 % 2 * h / 2, part % 2 * w / 2);
    for (p, q) in dx.chunks_mut(h * w).zip(dq.chunks(h * w / 4)) {
        for (y, row) in (r..r + h / 2).zip(q.chunks(w / 2)) {
            p[y * w + c..y * w + c + w / 2].iter_mut().zip(row).for_each(|(d, &g)| *d += g);
        }
    }
}

/// A decoder's pass: its blocks, and the 3×3 convolution to the picture.
struct DecoderTape<'w, 'd, T> {
    w: &'w DecoderWeights<'d, T>,
    input_dims: Vec<usize>,
    blocks: Vec<GluBlock<'w, T>>,
    /// The last block's output (the input of `out`), and the picture.
    last: Values<T>,
    image: Values<T>,
}

impl<'w, 'd, T: Element> DecoderTape<'w, 'd, T> {
    fn forward(w: &'w DecoderWeights<'d, T>, x: &Values<T>, stats: &mut Pending) -> Result<Self> {
        let mut blocks = Vec::new();
        let mut x = x.clone();
        let input_dims = x.dims.clone();
        for (s, (_, bn)) in w.ups.iter().zip(&w.decoder.ups) {
            let kernel = Kernel { w: s.kernel.w.clone(), g: s.kernel.g };
            let (block, out) = GluBlock::forward(&x, Conv::Up, Weight::Spectral(s), kernel, bn, stats)?;
            blocks.push(block);
            x = out;
        }
        let image = tanh(w.out.kernel.conv(&x)?);
        Ok(Self { w, input_dims, blocks, last: x, image })
    }

    /// The input's gradient from the picture's; the parameters' into `grads`.
    fn backward(&self, dimage: &[T], mut grads: Option<&mut GradStore>) -> Result<Vec<T>> {
        let mut d = dimage.to_vec();
        in_parallel(&mut d, |d, y| d * (T::one() - y * y), &self.image.data);
        if let Some(grads) = grads.as_deref_mut() {
            self.w.out.accumulate(grads, self.w.out.kernel.weight_grad(&self.last, &d, &self.image.dims)?)?;
        }
        let mut d = self.w.out.kernel.input_grad(&d, &self.image.dims, &self.last.dims)?;
        for block in self.blocks.iter().rev() {
            d = block.backward(&d, grads.as_deref_mut(), true)?.ok_or_else(|| {
                candle_core::Error::Msg("internal error: a decoder block without its input gradient".into())
            })?;
        }
        if d.len() != self.input_dims.iter().product::<usize>() {
            bail!("internal error: a decoder's input gradient has {} values", d.len());
        }
        Ok(d)
    }
}

struct Rebuilt<'w, 'd, T> {
    all: DecoderTape<'w, 'd, T>,
    quarter: DecoderTape<'w, 'd, T>,
    part: usize,
    /// Which of the critic's outputs are its 16×16 and 8×8 features.
    f16: usize,
    f8: usize,
}

/// A recorded pass of the critic.
pub struct CriticTape<'w, 'd, T> {
    w: &'w CriticWeights<'d, T>,
    /// The input, then each down block's output.
    xs: Vec<Values<T>>,
    /// Each down block's BatchNorm, where it has one.
    normed: Vec<Option<Normed<'d, T>>>,
    logits: Values<T>,
    rebuilt: Option<Rebuilt<'w, 'd, T>>,
    stats: Pending,
}

impl<T: Element> CriticTape<'_, '_, T> {
    pub fn logits(&self) -> &Values<T> {
        &self.logits
    }

    /// The two rebuilt pictures (whole, quarter), when this pass rebuilt.
    pub fn rebuilt(&self) -> Option<[&Values<T>; 2]> {
        self.rebuilt.as_ref().map(|r| [&r.all.image, &r.quarter.image])
    }

    /// Folds this pass's BatchNorm statistics into the running averages (in the graph's
    /// order: the down blocks', then the decoders').
    pub fn record(&mut self) -> Result<()> {
        let w = self.w;
        let downs = w.d.downs.iter().filter_map(|b| b.bn.as_ref());
        let decoders = w.decoders.iter().flatten().flat_map(|dw| dw.decoder.ups.iter().map(|(_, bn)| bn));
        for (bn, (s, count)) in downs.chain(decoders).zip(std::mem::take(&mut self.stats)) {
            bn.record(s, count)?;
        }
        Ok(())
    }

    /// R1 (Mescheder et al. 2018) at this pass's pictures: R = γ/2 · mean_b ‖∇ₓ D(x_b)‖²;
    /// its value, and its gradient with respect to the critic's parameters added to
    /// `grads`, for this pass's BatchNorm statistics and normalised weights. As WGAN-GP's
    /// penalty on the tape (`super::penalty`): g = ∇ₓ Σ D; v = ∂R/∂g = γ/B·g; ∇_θ R =
    /// ∇_θ ⟨v, ∇ₓ Σ D⟩, the derivative of Σ D(x + s·v) at s = 0: v pushed forward through
    /// the critic beside the recorded values, then that push reversed with two adjoints
    /// (the tangent's and the values'), BatchNorm's second derivative included.
    pub fn add_r1(&self, gamma: f64, grads: &mut GradStore) -> Result<f64> {
        let internal = |m: &str| candle_core::Error::Msg(format!("internal error: {m}"));
        let b = self.xs[0].dims[0];
        let g = self.backward(vec![T::one(); self.logits.data.len()], None, None, true)?;
        let g = g.ok_or_else(|| internal("no input gradient"))?;
        let penalty = gamma / 2.0 * g.iter().map(|v| v.to_f64().powi(2)).sum::<f64>() / b as f64;
        let scale = T::from_f64(gamma / b as f64);
        let v = Values { data: g.into_iter().map(|x| x * scale).collect(), dims: self.xs[0].dims.clone() };

        // v pushed forward: ts[i] is the tangent of xs[i], tzs[i] of down block i's convolution.
        let mut ts = vec![v];
        let mut tzs = Vec::with_capacity(self.w.downs.len());
        for (i, spectral) in self.w.downs.iter().enumerate() {
            let y = &self.xs[i + 1];
            let tz = spectral.kernel.conv(&ts[i])?.data;
            let ty = match &self.normed[i] {
                Some(n) => n.op.tangent(&n.z, &n.gamma, &y.data, &tz),
                None => {
                    let (mut t, s) = (tz.clone(), T::from_f64(LEAKY_SLOPE));
                    in_parallel(&mut t, |t, y| t * ops::relu_slope(y, s), &y.data);
                    t
                }
            };
            tzs.push(tz);
            ts.push(Values { data: ty, dims: y.dims.clone() });
        }

        // The reverse: ⟨v, g⟩ is the sum of the logits' tangents, so their adjoint is 1;
        // `ay`, the values' adjoint, is zero above the topmost BatchNorm.
        let (top, logit) = (&self.xs[self.xs.len() - 1], &self.w.logit);
        let ones = vec![T::one(); self.logits.data.len()];
        let tangent_top = ts.last().ok_or_else(|| internal("no tangents"))?;
        logit.accumulate(grads, logit.kernel.weight_grad(tangent_top, &ones, &self.logits.dims)?)?;
        let mut at = logit.kernel.input_grad(&ones, &self.logits.dims, &top.dims)?;
        let mut ay: Option<Vec<T>> = None;
        for i in (0..self.w.downs.len()).rev() {
            let (x, y) = (&self.xs[i], &self.xs[i + 1]);
            match &self.normed[i] {
                Some(n) => {
                    let (atz, az, dgamma, dbeta) =
                        n.op.tangent_backward(&n.z, &n.gamma, &y.data, &tzs[i], &at, ay.as_deref());
                    accumulate(grads, &n.bn.gamma, dgamma)?;
                    accumulate(grads, &n.bn.beta, dbeta)?;
                    (at, ay) = (atz, Some(az));
                }
                None => {
                    let s = T::from_f64(LEAKY_SLOPE);
                    in_parallel(&mut at, |a, y| a * ops::relu_slope(y, s), &y.data);
                    if let Some(ay) = ay.as_mut() {
                        in_parallel(ay, |a, y| a * ops::relu_slope(y, s), &y.data);
                    }
                }
            }
            // The convolution is linear in its input: the tangent's and the values' parts of
            // its weight's gradient add.
            let spectral = &self.w.downs[i];
            let mut dw = spectral.kernel.weight_grad(&ts[i], &at, &y.dims)?;
            if let Some(ay) = &ay {
                let dv = spectral.kernel.weight_grad(x, ay, &y.dims)?;
                dw.iter_mut().zip(dv).for_each(|(d, v)| *d += v);
            }
            spectral.accumulate(grads, dw)?;
            if i == 0 {
                break;
            }
            at = spectral.kernel.input_grad(&at, &y.dims, &x.dims)?;
            if let Some(a) = ay.as_mut() {
                *a = spectral.kernel.input_grad(a, &y.dims, &x.dims)?;
            }
        }
        Ok(penalty)
    }

    /// Backpropagates the logits' gradient (and the rebuilt pictures', when rebuilt):
    /// the parameters' gradients into `grads` when given, the input's returned when
    /// `want_input`.
    pub fn backward(
        &self,
        dlogits: Vec<T>,
        drebuilt: Option<[Vec<T>; 2]>,
        mut grads: Option<&mut GradStore>,
        want_input: bool,
    ) -> Result<Option<Vec<T>>> {
        if dlogits.len() != self.logits.data.len() {
            bail!("critic backward: {} gradients for {} logits", dlogits.len(), self.logits.data.len());
        }
        // The decoders' gradients reach the 16×16 and 8×8 features.
        let mut extra: Vec<Option<Vec<T>>> = (0..self.xs.len()).map(|_| None).collect();
        match (&self.rebuilt, drebuilt) {
            (Some(r), Some([dall, dquarter])) => {
                add_into(&mut extra[r.f8], r.all.backward(&dall, grads.as_deref_mut())?);
                let dq = r.quarter.backward(&dquarter, grads.as_deref_mut())?;
                let f16 = &self.xs[r.f16];
                let mut d = vec![T::zero(); f16.data.len()];
                add_quarter(&mut d, &f16.dims, &dq, r.part);
                add_into(&mut extra[r.f16], d);
            }
            (_, None) => {}
            (None, Some(_)) => bail!("internal error: the rebuilt pictures' gradients without a rebuilding pass"),
        }
        let top = &self.xs[self.xs.len() - 1];
        let logit = &self.w.logit;
        if let Some(g) = grads.as_deref_mut() {
            logit.accumulate(g, logit.kernel.weight_grad(top, &dlogits, &self.logits.dims)?)?;
        }
        let mut d = logit.kernel.input_grad(&dlogits, &self.logits.dims, &top.dims)?;
        for i in (0..self.w.downs.len()).rev() {
            let (x, y) = (&self.xs[i], &self.xs[i + 1]);
            if let Some(e) = extra[i + 1].take() {
                d.iter_mut().zip(e).for_each(|(d, e)| *d += e);
            }
            d = match &self.normed[i] {
                Some(n) => n.backward(&y.data, &d, grads.as_deref_mut())?,
                None => {
                    let s = T::from_f64(LEAKY_SLOPE);
                    in_parallel(&mut d, |d, y| d * ops::relu_slope(y, s), &y.data);
                    d
                }
            };
            let spectral = &self.w.downs[i];
            if let Some(g) = grads.as_deref_mut() {
                spectral.accumulate(g, spectral.kernel.weight_grad(x, &d, &y.dims)?)?;
            }
            if i == 0 && !want_input {
                return Ok(None);
            }
            d = spectral.kernel.input_grad(&d, &y.dims, &x.dims)?;
        }
        Ok(Some(d))
    }
}

/// Two backward passes of the critic side by side (real and fake pictures, as
/// `super::backward_both`), their gradients added first-then-second.
pub fn critic_backward_both<T: Element>(
    d: &Discriminator,
    first: (&CriticTape<'_, '_, T>, Vec<T>, Option<[Vec<T>; 2]>),
    second: (&CriticTape<'_, '_, T>, Vec<T>, Option<[Vec<T>; 2]>),
) -> Result<GradStore> {
    let pass = |(tape, dl, dr): (&CriticTape<'_, '_, T>, Vec<T>, Option<[Vec<T>; 2]>)| -> Result<GradStore> {
        let mut grads = GradStore::default();
        tape.backward(dl, dr, Some(&mut grads), false)?;
        Ok(grads)
    };
    let (a, b) = rayon::join(|| pass(first), || pass(second));
    let (mut grads, mut b) = (a?, b?);
    let weights = d.spectral_layers().into_iter().map(|l| &l.conv.weight);
    let norms = d.batch_norms().into_iter().flat_map(|bn| [&bn.gamma, &bn.beta]);
    merge_grads(&mut grads, &mut b, weights.chain(norms))?;
    Ok(grads)
}
