//! The networks' forward and backward passes written out by hand, on the CPU: how every
//! architecture's step trains there (`crate::step`). DCGAN's networks (dcgan, wgan,
//! wgan-gp) are chains of layers, here; fastgan's are not, in [`fastgan`].
//!
//! Why: the layers are the same operations as the candle graph's (`crate::ops`), but
//! candle's backward pass starts every node's gradient as a fresh zero tensor and adds
//! into it (two extra passes over every activation), with a tensor and a graph node for
//! every intermediate. Here each layer's gradient is computed once, into its own buffer,
//! a layer keeps only what its backward pass reads, and the critic's passes on real and
//! fake images run side by side. BENCHMARKS.md has what it saves in
//! time and memory. Upstream, this amounts to accumulating gradients in place in
//! candle-core's `backprop.rs`.
//!
//! The parameters' gradients go into a candle `GradStore`, so the optimisers, the
//! checkpoints and everything else see no difference; `tests/tape.rs` checks every
//! gradient against candle's graph. DiffAugment runs between the networks with its own
//! backward pass (`crate::augment::Draw`). WGAN-GP's penalty, which differentiates a
//! gradient, has its own second-order pass (`penalty`). Not used on other devices.

use candle_core::backprop::GradStore;
use candle_core::{bail, Result, Tensor};
use rayon::prelude::*;

use crate::model::layers::{BatchNorm2d, LayerNorm2d, BN_EPS, LEAKY_SLOPE};
use crate::model::{Discriminator, Generator, Norm};
use crate::ops::layer_norm::{self, Normed};
use crate::ops::{self, with_slice, Activation, BatchNormAct, Element, Geometry, Stats, TASK_VALUES};

pub mod fastgan;
pub mod penalty;

/// NCHW values and their shape.
#[derive(Clone)]
pub struct Values<T> {
    pub data: Vec<T>,
    pub dims: Vec<usize>,
}

impl<T: Element> Values<T> {
    /// A contiguous copy of a CPU tensor's values.
    pub fn of(t: &Tensor) -> Result<Self> {
        let t = t.to_dtype(T::DTYPE)?.contiguous()?;
        Ok(Self { data: with_slice(&t, |v: &[T]| v.to_vec())?, dims: t.dims().to_vec() })
    }
}

/// What follows a layer's convolution.
enum Post<'a> {
    BatchNorm(&'a BatchNorm2d, Activation),
    /// LayerNorm per sample, then LeakyReLU (WGAN-GP's critic).
    LayerNorm(&'a LayerNorm2d),
    LeakyRelu(f64),
    Tanh,
    Identity,
}

/// Each BatchNorm layer's batch statistics from a forward pass, in layer order, with the
/// number of values per channel, not yet folded into the running averages.
type Pending = Vec<(Stats, usize)>;

/// A convolution, or a transposed one, and what follows it.
struct Layer<'a> {
    transposed: bool,
    weight: &'a Tensor,
    g: Geometry,
    post: Post<'a>,
}

impl<'a> Layer<'a> {
    fn new(transposed: bool, weight: &'a Tensor, stride: usize, padding: usize, post: Post<'a>) -> Result<Self> {
        Ok(Self { transposed, weight, g: Geometry::new(weight.dim(3)?, stride, padding)?, post })
    }
}

/// A network as the tape runs it: its layers, borrowing the network's parameters (so an
/// optimiser's update is seen by the next pass).
pub struct Net<'a> {
    layers: Vec<Layer<'a>>,
}

impl<'a> Net<'a> {
    /// DCGAN's generator (the tape runs no other).
    pub fn generator(g: &'a Generator) -> Result<Self> {
        let Some(g) = g.dcgan() else { bail!("the CPU tape runs DCGAN's generator only") };
        let layers = g.blocks.iter().map(|b| {
            let post = match &b.bn {
                Some(bn) => Post::BatchNorm(bn, Activation::Relu),
                None => Post::Tanh,
            };
            Layer::new(true, &b.conv.weight, b.conv.stride, b.conv.padding, post)
        });
        Ok(Self { layers: layers.collect::<Result<_>>()? })
    }

    /// The discriminator: BatchNorm, LayerNorm or none between its convolutions.
    pub fn discriminator(d: &'a Discriminator) -> Result<Self> {
        let Some(d) = d.dcgan() else { bail!("the CPU tape runs DCGAN's critic only") };
        let last = d.blocks.len().saturating_sub(1);
        let layers = d.blocks.iter().enumerate().map(|(i, b)| {
            let post = match &b.norm {
                Some(Norm::Batch(bn)) => Post::BatchNorm(bn, Activation::LeakyRelu(LEAKY_SLOPE)),
                Some(Norm::Layer(ln)) => Post::LayerNorm(ln),
                None if i != last => Post::LeakyRelu(LEAKY_SLOPE),
                None => Post::Identity,
            };
            Layer::new(false, &b.conv.weight, b.conv.stride, b.conv.padding, post)
        });
        Ok(Self { layers: layers.collect::<Result<_>>()? })
    }

    /// The forward pass in training mode (BatchNorm's running statistics are updated, as
    /// the candle forward does), recorded for [`Tape::backward`].
    pub fn forward<T: Element>(&self, input: Values<T>) -> Result<Tape<'_, 'a, T>> {
        let (tape, stats) = self.forward_unrecorded(input)?;
        self.record(stats)?;
        Ok(tape)
    }

    /// Two forward passes side by side, one per thread (see [`backward_both`]), their
    /// BatchNorm statistics folded into the running averages first-then-second, as two
    /// [`Net::forward`] calls in turn would.
    pub fn forward_both<T: Element>(
        &self,
        first: Values<T>,
        second: Values<T>,
    ) -> Result<(Tape<'_, 'a, T>, Tape<'_, 'a, T>)> {
        let (a, b) = rayon::join(|| self.forward_unrecorded(first), || self.forward_unrecorded(second));
        let ((a, a_stats), (b, b_stats)) = (a?, b?);
        self.record(a_stats)?;
        self.record(b_stats)?;
        Ok((a, b))
    }

    /// Folds a pass's BatchNorm statistics into the running averages.
    fn record(&self, stats: Pending) -> Result<()> {
        let bns = self.layers.iter().filter_map(|l| match l.post {
            Post::BatchNorm(bn, _) => Some(bn),
            _ => None,
        });
        for (bn, (s, count)) in bns.zip(stats) {
            bn.record(s, count)?;
        }
        Ok(())
    }

    /// The forward pass, leaving the running statistics to the caller.
    fn forward_unrecorded<T: Element>(&self, input: Values<T>) -> Result<(Tape<'_, 'a, T>, Pending)> {
        let mut stats = Vec::new();
        let mut records: Vec<Record<T>> = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let x = records.last().map_or(&input, |r| &r.out);
            let (mut z, dims) = with_slice(layer.weight, |w| {
                let wd = layer.weight.dims();
                match layer.transposed {
                    true => {
                        let out = (layer.g.big(x.dims[2])?, layer.g.big(x.dims[3])?);
                        ops::conv_transpose2d_values(&x.data, &x.dims, w, wd, layer.g, out)
                    }
                    false => ops::conv2d_values(&x.data, &x.dims, w, wd, layer.g),
                }
            })??;
            let record = match layer.post {
                Post::BatchNorm(bn, act) => {
                    let frame = (dims[0], dims[1], dims[2] * dims[3]);
                    let (op, batch) = BatchNormAct::of(&z, frame, BN_EPS, act);
                    let y = with_slice(&bn.gamma, |g| with_slice(&bn.beta, |b| op.forward(&z, g, b)))??;
                    stats.push((batch, frame.0 * frame.2));
                    Record { pre: Pre::Batch(z, op), out: Values { data: y, dims } }
                }
                Post::LayerNorm(ln) => {
                    let frame = (dims[0], dims[1], dims[2] * dims[3]);
                    let (y, normed) = with_slice(&ln.gamma, |g| {
                        with_slice(&ln.beta, |b| layer_norm::forward(&z, frame, g, b, BN_EPS, LEAKY_SLOPE))
                    })??;
                    Record { pre: Pre::Layer(normed), out: Values { data: y, dims } }
                }
                Post::LeakyRelu(slope) => {
                    let s = T::from_f64(slope);
                    in_parallel(&mut z, |v, _| v * ops::relu_slope(v, s), &[]);
                    Record { pre: Pre::None, out: Values { data: z, dims } }
                }
                Post::Tanh => {
                    in_parallel(&mut z, |v, _| v.tanh(), &[]);
                    Record { pre: Pre::None, out: Values { data: z, dims } }
                }
                Post::Identity => Record { pre: Pre::None, out: Values { data: z, dims } },
            };
            records.push(record);
        }
        Ok((Tape { net: self, input, records }, stats))
    }
}

/// One layer's part of a forward pass: its output, and what its normalisation's backward
/// pass reads.
struct Record<T> {
    pre: Pre<T>,
    out: Values<T>,
}

enum Pre<T> {
    None,
    /// The values BatchNorm normalised, and how.
    Batch(Vec<T>, BatchNormAct),
    Layer(Normed<T>),
}

/// A recorded forward pass.
pub struct Tape<'n, 'a, T> {
    net: &'n Net<'a>,
    input: Values<T>,
    records: Vec<Record<T>>,
}

impl<T: Element> Tape<'_, '_, T> {
    pub fn output(&self) -> &Values<T> {
        &self.records.last().expect("a network has layers").out
    }

    /// The output, when no backward pass will follow.
    pub fn into_output(mut self) -> Values<T> {
        self.records.pop().expect("a network has layers").out
    }

    /// Backpropagates `dy`, the gradient of the output: adds the parameters' gradients to
    /// `grads` when given (none for a frozen network), and returns the input's gradient
    /// when `want_input`.
    pub fn backward(&self, dy: Vec<T>, mut grads: Option<&mut GradStore>, want_input: bool) -> Result<Option<Vec<T>>> {
        if dy.len() != self.output().data.len() {
            bail!("tape backward: {} gradients for {} outputs", dy.len(), self.output().data.len());
        }
        let mut d = dy;
        for (i, (layer, rec)) in self.net.layers.iter().zip(&self.records).enumerate().rev() {
            let x = if i == 0 { &self.input } else { &self.records[i - 1].out };
            let y = &rec.out;
            // Through what follows the convolution: d becomes the convolution output's gradient.
            match (&layer.post, &rec.pre) {
                (Post::BatchNorm(bn, _), Pre::Batch(z, op)) => {
                    let (dz, dgamma, dbeta) = with_slice(&bn.gamma, |g| op.backward(z, g, &y.data, &d))?;
                    if let Some(grads) = grads.as_deref_mut() {
                        accumulate(grads, &bn.gamma, dgamma)?;
                        accumulate(grads, &bn.beta, dbeta)?;
                    }
                    d = dz;
                }
                (Post::LayerNorm(ln), Pre::Layer(normed)) => {
                    let frame = (y.dims[0], y.dims[1], y.dims[2] * y.dims[3]);
                    let (dz, dgamma, dbeta) =
                        with_slice(&ln.gamma, |g| layer_norm::backward(&d, &y.data, normed, frame, g, LEAKY_SLOPE))?;
                    if let Some(grads) = grads.as_deref_mut() {
                        accumulate(grads, &ln.gamma, dgamma)?;
                        accumulate(grads, &ln.beta, dbeta)?;
                    }
                    d = dz;
                }
                (Post::LeakyRelu(slope), _) => {
                    let s = T::from_f64(*slope);
                    in_parallel(&mut d, |d, y| d * ops::relu_slope(y, s), &y.data);
                }
                (Post::Tanh, _) => in_parallel(&mut d, |d, y| d * (T::one() - y * y), &y.data),
                (Post::Identity, _) => {}
                (Post::BatchNorm(..) | Post::LayerNorm(_), _) => {
                    bail!("internal error: a normalisation layer without its record")
                }
            }
            if let Some(grads) = grads.as_deref_mut() {
                let (dw, _) = match layer.transposed {
                    true => ops::weight_grad_values(&d, &y.dims, &x.data, &x.dims, layer.g)?,
                    false => ops::weight_grad_values(&x.data, &x.dims, &d, &y.dims, layer.g)?,
                };
                accumulate(grads, layer.weight, dw)?;
            }
            if i == 0 && !want_input {
                return Ok(None);
            }
            d = with_slice(layer.weight, |w| {
                let wd = layer.weight.dims();
                match layer.transposed {
                    true => ops::conv2d_values(&d, &y.dims, w, wd, layer.g),
                    false => ops::conv_transpose2d_values(&d, &y.dims, w, wd, layer.g, (x.dims[2], x.dims[3])),
                }
            })??
            .0;
        }
        Ok(Some(d))
    }
}

/// v[i] = f(v[i], other[i]) (other may be empty: then f sees zeros), in parallel blocks.
fn in_parallel<T: Element>(v: &mut [T], f: impl Fn(T, T) -> T + Sync, other: &[T]) {
    v.par_chunks_mut(TASK_VALUES).enumerate().for_each(|(b, chunk)| match other.is_empty() {
        true => chunk.iter_mut().for_each(|v| *v = f(*v, T::zero())),
        false => chunk.iter_mut().zip(&other[b * TASK_VALUES..]).for_each(|(v, &o)| *v = f(*v, o)),
    });
}

/// The parameters' gradients of two backward passes through the same network (the critic
/// on real and on fake images), side by side, one per thread: one pass alone leaves the
/// threads idle at the end of each of its many short parallel loops and in the small
/// products at the ends of the network. Added first-then-second, whichever finishes first.
pub fn backward_both<T: Element>(
    first: (&Tape<'_, '_, T>, Vec<T>),
    second: (&Tape<'_, '_, T>, Vec<T>),
) -> Result<GradStore> {
    let pass = |(tape, dy): (&Tape<'_, '_, T>, Vec<T>)| -> Result<GradStore> {
        let mut grads = GradStore::default();
        tape.backward(dy, Some(&mut grads), false)?;
        Ok(grads)
    };
    let net = first.0.net;
    let (a, b) = rayon::join(|| pass(first), || pass(second));
    let (mut grads, mut b) = (a?, b?);
    for layer in &net.layers {
        let mut params = vec![layer.weight];
        match layer.post {
            Post::BatchNorm(bn, _) => params.extend([&bn.gamma, &bn.beta]),
            Post::LayerNorm(ln) => params.extend([&ln.gamma, &ln.beta]),
            _ => {}
        }
        merge_grads(&mut grads, &mut b, params)?;
    }
    Ok(grads)
}

/// grads[p] += b[p] for each of `params` that `b` holds (the second pass of two over the
/// same network), taking them out of `b`.
pub(crate) fn merge_grads<'p>(
    grads: &mut GradStore,
    b: &mut GradStore,
    params: impl IntoIterator<Item = &'p Tensor>,
) -> Result<()> {
    for p in params {
        let sum = match (grads.get(p), b.remove(p)) {
            (Some(x), Some(y)) => (x + y)?,
            (None, Some(y)) => y,
            (_, None) => continue,
        };
        grads.insert(p, sum);
    }
    Ok(())
}

/// grads[param] += g.
fn accumulate<T: Element>(grads: &mut GradStore, param: &Tensor, g: Vec<T>) -> Result<()> {
    let g = Tensor::from_vec(g, param.shape(), param.device())?;
    let sum = match grads.get(param) {
        Some(old) => (old + g)?,
        None => g,
    };
    grads.insert(param, sum);
    Ok(())
}
