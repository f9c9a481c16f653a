//! fastgan's generator and critic (`crate::model::fastgan`) on the CPU tape: the same
//! operations as their candle forward passes, each layer's backward pass written out, so
//! fastgan trains on the CPU as DCGAN's networks do (`crate::tape`, same reasons).
//!
//! The networks are not a chain, so each has its own record: the generator's maps feed
//! the next block and, three blocks on, a skip-layer excitation; the critic's 16×16 and
//! 8×8 features feed the decoders. Spectral normalisation stays in candle: W/σ(W) is
//! computed (and u advanced) by [`SpectralConv::weight`] on the small weight, the tape runs
//! the convolution with its values, and W's gradient comes back through candle's graph of
//! that one division ([`spectral_grads`]). `tests/tape.rs` checks every gradient against
//! candle's graph.

use candle_core::backprop::GradStore;
use candle_core::{bail, Result, Tensor};

use super::{accumulate, in_parallel, Pending, Values};
use crate::model::fastgan::{Decoder, Discriminator, Excitation, Generator, SpectralConv, EXCITE_SLOPE};
use crate::model::layers::{BatchNorm2d, BN_EPS, LEAKY_SLOPE};
use crate::ops::glu::{glu_grad_values, glu_values};
use crate::ops::upsample::{upsample2_grad_values, upsample2_values};
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

/// A spectrally normalised convolution for one pass: W/σ(W) in candle (its graph leads
/// back to W) and its values.
struct Spectral<T> {
    bar: Tensor,
    kernel: Kernel<T>,
}

impl<T: Element> Spectral<T> {
    /// Advances the layer's power iteration, as a training forward pass does.
    fn of(layer: &SpectralConv) -> Result<Self> {
        let bar = layer.weight(true)?;
        let kernel = Kernel::of(&bar, layer.conv.stride, layer.conv.padding)?;
        Ok(Self { bar, kernel })
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

fn upsampled<T: Element>(x: &Values<T>) -> Values<T> {
    let d = &x.dims;
    Values { data: upsample2_values(&x.data, d[3]), dims: vec![d[0], d[1], 2 * d[2], 2 * d[3]] }
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

/// [upsample ×2 →] a convolution (transposed for the generator's first) → BatchNorm → GLU:
/// fastgan's generator and decoder blocks.
struct GluBlock<'a, T> {
    /// The convolution's input (upsampled, when the block upsamples).
    input: Values<T>,
    up: bool,
    transposed: bool,
    weight: &'a Tensor,
    kernel: Kernel<T>,
    normed: Normed<'a, T>,
    /// BatchNorm's output, the GLU's input.
    y: Values<T>,
}

impl<'a, T: Element> GluBlock<'a, T> {
    #[allow(clippy::too_many_arguments)]
    fn forward(
        x: &Values<T>,
        up: bool,
        transposed: bool,
        weight: &'a Tensor,
        kernel: Kernel<T>,
        bn: &'a BatchNorm2d,
        stats: &mut Pending,
    ) -> Result<(Self, Values<T>)> {
        let input = if up { upsampled(x) } else { x.clone() };
        let z = if transposed { kernel.conv_transposed(&input)? } else { kernel.conv(&input)? };
        let (normed, y) = Normed::forward(bn, z, Activation::Identity, stats)?;
        let d = &y.dims;
        let out = Values { data: glu_values(&y.data, d[0], d[1] / 2 * d[2] * d[3]), dims: vec![d[0], d[1] / 2, d[2], d[3]] };
        Ok((Self { input, up, transposed, weight, kernel, normed, y }, out))
    }

    /// The block's input gradient (before upsampling) from its output's, when
    /// `want_input`; the weight's gradient (as `dweight` wants it: by tensor, or as values
    /// for a spectral weight) and BatchNorm's added to `grads`.
    fn backward(&self, dout: &[T], mut grads: Grads<'_, T>, want_input: bool) -> Result<Option<Vec<T>>> {
        let d = &self.y.dims;
        let dy = glu_grad_values(&self.y.data, dout, d[0], d[1] / 2 * d[2] * d[3])?;
        let dz = self.normed.backward(&self.y.data, &dy, grads.store())?;
        let dw = match self.transposed {
            true => ops::weight_grad_values(&dz, d, &self.input.data, &self.input.dims, self.kernel.g)?.0,
            false => self.kernel.weight_grad(&self.input, &dz, d)?,
        };
        grads.weight(self.weight, dw)?;
        if !want_input {
            return Ok(None);
        }
        if self.transposed {
            bail!("internal error: the generator's first block has no input gradient");
        }
        let dx = self.kernel.input_grad(&dz, d, &self.input.dims)?;
        Ok(Some(if self.up { upsample2_grad_values(&dx, self.input.dims[3] / 2) } else { dx }))
    }
}

/// Where a backward pass puts the parameters' gradients: none (a frozen network), or a
/// store for plain parameters and a list of W/σ's gradients for spectral ones.
enum Grads<'g, T> {
    None,
    Generator(&'g mut GradStore),
    Critic(&'g mut CriticGrads<T>),
}

impl<T: Element> Grads<'_, T> {
    fn reborrow(&mut self) -> Grads<'_, T> {
        match self {
            Grads::None => Grads::None,
            Grads::Generator(g) => Grads::Generator(g),
            Grads::Critic(c) => Grads::Critic(c),
        }
    }

    fn store(&mut self) -> Option<&mut GradStore> {
        match self {
            Grads::None => None,
            Grads::Generator(g) => Some(g),
            Grads::Critic(c) => Some(&mut c.store),
        }
    }

    /// A weight's gradient: `weight` is the parameter itself (generator) or W/σ (critic).
    fn weight(&mut self, weight: &Tensor, dw: Vec<T>) -> Result<()> {
        match self {
            Grads::None => Ok(()),
            Grads::Generator(g) => accumulate(g, weight, dw),
            Grads::Critic(c) => {
                c.spectral.push((weight.clone(), dw));
                Ok(())
            }
        }
    }

    fn wanted(&self) -> bool {
        !matches!(self, Grads::None)
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
        out.data.chunks_mut(plane).zip(&gate).for_each(|(p, &g)| p.iter_mut().for_each(|v| *v *= g));
        Ok((Self { e, small_dims: small.dims.clone(), pooled, squeeze, s, a, excite, gate, big }, out))
    }

    /// The gradients of (small, big) from the output's; the two weights' added to `grads`.
    fn backward(&self, dout: &[T], grads: &mut GradStore) -> Result<(Vec<T>, Vec<T>)> {
        let plane = self.big.dims[2] * self.big.dims[3];
        let mut dbig = dout.to_vec();
        let mut dgate = Vec::with_capacity(self.gate.len());
        for ((db, big), &g) in dbig.chunks_mut(plane).zip(self.big.data.chunks(plane)).zip(&self.gate) {
            dgate.push(db.iter().zip(big).fold(T::zero(), |s, (&d, &b)| s + d * b) * g * (T::one() - g));
            db.iter_mut().for_each(|d| *d *= g);
        }
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
        let (first, map) = GluBlock::forward(&z, false, true, &g.first.weight, first_k, &g.first_bn, &mut stats)?;
        let mut maps = vec![map];
        let (mut ups, mut excited) = (Vec::new(), Vec::new());
        for (k, up) in g.ups.iter().enumerate() {
            let kernel = Kernel::of(&up.conv.weight, up.conv.stride, up.conv.padding)?;
            let (block, mut x) = GluBlock::forward(&maps[k], true, false, &up.conv.weight, kernel, &up.bn, &mut stats)?;
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
            let dx = self.ups[k].backward(&d, Grads::Generator(grads), true)?.ok_or_else(missing)?;
            add_into(&mut dmaps[k], dx);
        }
        let d0 = dmaps[0].take().ok_or_else(|| candle_core::Error::Msg("internal error: no first gradient".into()))?;
        self.first.backward(&d0, Grads::Generator(grads), false)?;
        Ok(())
    }
}

/// The critic's parameters' gradients from one or more backward passes: BatchNorm's in
/// `store`, and each spectral layer's W/σ with that normalised weight's gradient.
pub struct CriticGrads<T> {
    store: GradStore,
    spectral: Vec<(Tensor, Vec<T>)>,
}

impl<T> Default for CriticGrads<T> {
    fn default() -> Self {
        Self { store: GradStore::default(), spectral: Vec::new() }
    }
}

impl<T: Element> CriticGrads<T> {
    /// The gradients of every parameter: W's through candle's graph of W/σ(W), one
    /// backward pass over Σ ⟨W/σ, its gradient⟩ for every pass's normalised weights.
    pub fn into_store(self, d: &Discriminator) -> Result<GradStore> {
        let Self { mut store, spectral } = self;
        let mut total: Option<Tensor> = None;
        for (bar, dbar) in spectral {
            let dbar = Tensor::from_vec(dbar, bar.shape(), bar.device())?.to_dtype(bar.dtype())?;
            let term = (bar * dbar)?.sum_all()?;
            total = Some(match total {
                Some(t) => (t + term)?,
                None => term,
            });
        }
        let Some(total) = total else { return Ok(store) };
        let spectral_grads = total.backward()?;
        for layer in d.spectral_layers() {
            let w = &layer.conv.weight;
            if let Some(g) = spectral_grads.get(w) {
                let sum = match store.get(w) {
                    Some(old) => (old + g)?,
                    None => g.clone(),
                };
                store.insert(w, sum);
            }
        }
        Ok(store)
    }

    /// Adds another pass's gradients.
    fn merge(&mut self, other: CriticGrads<T>, d: &Discriminator) -> Result<()> {
        let CriticGrads { mut store, spectral } = other;
        for p in d.batch_norms().into_iter().flat_map(|bn| [&bn.gamma, &bn.beta]) {
            let sum = match (self.store.get(p), store.remove(p)) {
                (Some(x), Some(y)) => (x + y)?,
                (None, Some(y)) => y,
                (_, None) => continue,
            };
            self.store.insert(p, sum);
        }
        self.spectral.extend(spectral);
        Ok(())
    }
}

/// The critic's normalised weights for one pass (each layer's power iteration advanced
/// once, as a training forward pass advances it); with the decoders' when the pass rebuilds.
pub struct CriticWeights<'d, T> {
    d: &'d Discriminator,
    downs: Vec<Spectral<T>>,
    logit: Spectral<T>,
    decoders: Option<[DecoderWeights<'d, T>; 2]>,
}

struct DecoderWeights<'d, T> {
    decoder: &'d Decoder,
    ups: Vec<Spectral<T>>,
    out: Spectral<T>,
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
                let missing = || candle_core::Error::Msg("internal error: fastgan's critic lacks a 16×16 or 8×8 map".into());
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
            let (block, out) = GluBlock::forward(&x, true, false, &s.bar, kernel, bn, stats)?;
            blocks.push(block);
            x = out;
        }
        let image = tanh(w.out.kernel.conv(&x)?);
        Ok(Self { w, input_dims, blocks, last: x, image })
    }

    /// The input's gradient from the picture's; the parameters' into `grads`.
    fn backward(&self, dimage: &[T], mut grads: Grads<'_, T>) -> Result<Vec<T>> {
        let mut d = dimage.to_vec();
        in_parallel(&mut d, |d, y| d * (T::one() - y * y), &self.image.data);
        if grads.wanted() {
            grads.weight(&self.w.out.bar, self.w.out.kernel.weight_grad(&self.last, &d, &self.image.dims)?)?;
        }
        let mut d = self.w.out.kernel.input_grad(&d, &self.image.dims, &self.last.dims)?;
        for block in self.blocks.iter().rev() {
            d = block
                .backward(&d, grads.reborrow(), true)?
                .ok_or_else(|| candle_core::Error::Msg("internal error: a decoder block without its input gradient".into()))?;
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

    /// Backpropagates the logits' gradient (and the rebuilt pictures', when rebuilt):
    /// the parameters' gradients into `grads` when given, the input's returned when
    /// `want_input`.
    pub fn backward(
        &self,
        dlogits: Vec<T>,
        drebuilt: Option<[Vec<T>; 2]>,
        mut grads: Option<&mut CriticGrads<T>>,
        want_input: bool,
    ) -> Result<Option<Vec<T>>> {
        if dlogits.len() != self.logits.data.len() {
            bail!("critic backward: {} gradients for {} logits", dlogits.len(), self.logits.data.len());
        }
        // The decoders' gradients reach the 16×16 and 8×8 features.
        let mut extra: Vec<Option<Vec<T>>> = (0..self.xs.len()).map(|_| None).collect();
        match (&self.rebuilt, drebuilt) {
            (Some(r), Some([dall, dquarter])) => {
                add_into(&mut extra[r.f8], r.all.backward(&dall, grads_of(&mut grads))?);
                let dq = r.quarter.backward(&dquarter, grads_of(&mut grads))?;
                let f16 = &self.xs[r.f16];
                let mut d = vec![T::zero(); f16.data.len()];
                add_quarter(&mut d, &f16.dims, &dq, r.part);
                add_into(&mut extra[r.f16], d);
            }
            (None, None) => {}
            _ => bail!("internal error: the rebuilt pictures' gradients without a rebuilding pass, or the reverse"),
        }
        let top = &self.xs[self.xs.len() - 1];
        let logit = &self.w.logit;
        if let Some(g) = grads.as_deref_mut() {
            g.spectral.push((logit.bar.clone(), logit.kernel.weight_grad(top, &dlogits, &self.logits.dims)?));
        }
        let mut d = logit.kernel.input_grad(&dlogits, &self.logits.dims, &top.dims)?;
        for i in (0..self.w.downs.len()).rev() {
            let (x, y) = (&self.xs[i], &self.xs[i + 1]);
            if let Some(e) = extra[i + 1].take() {
                d.iter_mut().zip(e).for_each(|(d, e)| *d += e);
            }
            d = match &self.normed[i] {
                Some(n) => n.backward(&y.data, &d, grads.as_deref_mut().map(|g| &mut g.store))?,
                None => {
                    let s = T::from_f64(LEAKY_SLOPE);
                    in_parallel(&mut d, |d, y| d * ops::relu_slope(y, s), &y.data);
                    d
                }
            };
            let spectral = &self.w.downs[i];
            if let Some(g) = grads.as_deref_mut() {
                g.spectral.push((spectral.bar.clone(), spectral.kernel.weight_grad(x, &d, &y.dims)?));
            }
            if i == 0 && !want_input {
                return Ok(None);
            }
            d = spectral.kernel.input_grad(&d, &y.dims, &x.dims)?;
        }
        Ok(Some(d))
    }
}

fn grads_of<'g, T>(g: &'g mut Option<&mut CriticGrads<T>>) -> Grads<'g, T> {
    match g {
        Some(g) => Grads::Critic(g),
        None => Grads::None,
    }
}

/// Two backward passes of the critic side by side (real and fake pictures, as
/// `super::backward_both`), their gradients merged.
pub fn critic_backward_both<T: Element>(
    d: &Discriminator,
    first: (&CriticTape<'_, '_, T>, Vec<T>, Option<[Vec<T>; 2]>),
    second: (&CriticTape<'_, '_, T>, Vec<T>, Option<[Vec<T>; 2]>),
) -> Result<GradStore> {
    let pass = |(tape, dl, dr): (&CriticTape<'_, '_, T>, Vec<T>, Option<[Vec<T>; 2]>)| -> Result<CriticGrads<T>> {
        let mut grads = CriticGrads::default();
        tape.backward(dl, dr, Some(&mut grads), false)?;
        Ok(grads)
    };
    let (a, b) = rayon::join(|| pass(first), || pass(second));
    let mut grads = a?;
    grads.merge(b?, d)?;
    grads.into_store(d)
}
