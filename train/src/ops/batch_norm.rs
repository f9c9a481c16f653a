//! BatchNorm in training mode fused with the activation after it, forward and backward
//! in two passes each over the activations.
//!
//! Why: built from candle's tensor ops, BatchNorm + ReLU is a dozen full passes forward
//! and three times that backward (broadcasts, reductions over non-contiguous axes,
//! gradient accumulation), and was most of a training step's time after the
//! convolutions became GEMMs. Upstream this would be a `batch_norm` op in candle-nn
//! with its own backward rule.
//!
//! The backward pass is computed directly, not from differentiable tensor ops: a
//! second-order gradient through it is not supported. None is ever needed: WGAN-GP's
//! critic uses LayerNorm (the penalty is per sample), and BatchNorm sits only in the
//! generator and the DCGAN / WGAN discriminators.

use candle_core::{bail, CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::{contiguous, with_slice};

/// The activation fused after the normalisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Relu,
    /// max(x, slope·x).
    LeakyRelu(f64),
}

impl Activation {
    /// The slope left of zero.
    fn negative_slope(self) -> f64 {
        match self {
            Activation::Relu => 0.0,
            Activation::LeakyRelu(s) => s,
        }
    }

    /// act(z), in T so the loops it sits in vectorise.
    #[inline(always)]
    fn apply<T: WithDType>(self, z: T, slope: T) -> T {
        match self {
            Activation::Relu if z > T::zero() => z,
            Activation::Relu => T::zero(),
            Activation::LeakyRelu(_) if z > T::zero() => z,
            Activation::LeakyRelu(_) => z * slope,
        }
    }

    /// dy·act′, with act′ read from the output y (its sign is the input's).
    #[inline(always)]
    fn back<T: WithDType>(self, y: T, dy: T, slope: T) -> T {
        match self {
            _ if y > T::zero() => dy,
            Activation::Relu => T::zero(),
            Activation::LeakyRelu(_) => dy * slope,
        }
    }
}

/// Per-channel batch statistics of x [N, C, H, W]: (mean, biased variance), both [C].
pub struct Stats {
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
}

/// act(γ·(x − mean)/√(var + eps) + β) with the batch's own statistics, which are also
/// returned (detached) for the running averages.
pub fn batch_norm_act(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64, act: Activation) -> Result<(Tensor, Stats)> {
    let x = x.contiguous()?;
    let (n, c, h, w) = x.dims4()?;
    if gamma.dims() != [c] || beta.dims() != [c] {
        bail!("batch_norm: {c} channels but γ is {:?} and β is {:?}", gamma.dims(), beta.dims());
    }
    let frame = (n, c, h * w);
    let (op, stats) = match x.dtype() {
        DType::F32 => with_slice(&x, |v: &[f32]| BatchNormAct::of(v, frame, eps, act))?,
        DType::F64 => with_slice(&x, |v: &[f64]| BatchNormAct::of(v, frame, eps, act))?,
        d => bail!("batch_norm: f32 or f64 operands, got {d:?}"),
    };
    let y = x.apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    Ok((y, stats))
}

/// One normalisation by a batch's statistics, with its activation: the operation on
/// candle tensors above, and on plain values for `crate::tape`.
pub struct BatchNormAct {
    mean: Vec<f64>,
    inv_std: Vec<f64>,
    act: Activation,
    /// (N, C, H·W)
    frame: (usize, usize, usize),
}

impl CustomOp3 for BatchNormAct {
    fn name(&self) -> &'static str {
        "canard-batch-norm-act"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(g), CpuStorage::F32(b)) => {
                CpuStorage::F32(self.forward(contiguous(x, l1)?, contiguous(g, l2)?, contiguous(b, l3)?))
            }
            (CpuStorage::F64(x), CpuStorage::F64(g), CpuStorage::F64(b)) => {
                CpuStorage::F64(self.forward(contiguous(x, l1)?, contiguous(g, l2)?, contiguous(b, l3)?))
            }
            _ => bail!("batch_norm: f32 or f64 operands of one type"),
        };
        Ok((out, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.contiguous()?;
        let (dx, dgamma, dbeta) = match x.dtype() {
            DType::F32 => self.backward_tensors::<f32>(x, gamma, y, &dy)?,
            DType::F64 => self.backward_tensors::<f64>(x, gamma, y, &dy)?,
            d => bail!("batch_norm: f32 or f64 operands, got {d:?}"),
        };
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

impl BatchNormAct {
    /// The normalisation of x [N, C, P] by its own statistics (also returned).
    pub fn of<T: WithDType>(x: &[T], frame: (usize, usize, usize), eps: f64, act: Activation) -> (Self, Stats) {
        let (n, c, p) = frame;
        let stats = channel_stats(x, n, c, p);
        let inv_std = stats.var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
        (Self { mean: stats.mean.clone(), inv_std, act, frame }, stats)
    }

    pub fn forward<T: WithDType>(&self, x: &[T], gamma: &[T], beta: &[T]) -> Vec<T> {
        let (_, c, p) = self.frame;
        let slope = T::from_f64(self.act.negative_slope());
        let mut y = vec![T::zero(); x.len()];
        y.par_chunks_mut(p).zip(x.par_chunks(p)).enumerate().for_each(|(i, (y, x))| {
            let ch = i % c;
            let scale = self.inv_std[ch] * gamma[ch].to_f64();
            let shift = T::from_f64(beta[ch].to_f64() - self.mean[ch] * scale);
            let scale = T::from_f64(scale);
            for (y, &x) in y.iter_mut().zip(x) {
                *y = self.act.apply(x * scale + shift, slope);
            }
        });
        y
    }

    fn backward_tensors<T: WithDType>(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (n, c, p) = self.frame;
        let gamma: Vec<T> = gamma.to_vec1()?;
        let (dx, dgamma, dbeta) = with_slice(x, |x: &[T]| {
            with_slice(y, |y: &[T]| with_slice(dy, |dy: &[T]| self.backward(x, &gamma, y, dy)))
        })???;
        let dev = x.device();
        Ok((
            Tensor::from_vec(dx, (n, c, p), dev)?.reshape(x.shape())?,
            Tensor::from_vec(dgamma, c, dev)?,
            Tensor::from_vec(dbeta, c, dev)?,
        ))
    }

    /// dz = dy·act′; dβ = Σdz; dγ = Σdz·x̂; dx = γ/σ·(dz − (dβ + x̂·dγ)/M), per channel,
    /// which is a·dz + b·x + c with per-channel constants.
    pub fn backward<T: WithDType>(&self, x: &[T], gamma: &[T], y: &[T], dy: &[T]) -> (Vec<T>, Vec<T>, Vec<T>) {
        let (n, c, p) = self.frame;
        let m = (n * p) as f64;
        let slope = T::from_f64(self.act.negative_slope());
        let sums: Vec<(f64, f64)> = (0..c)
            .into_par_iter()
            .map(|ch| {
                let (mut s, mut sx) = (0.0, 0.0);
                for i in 0..n {
                    let at = (i * c + ch) * p..(i * c + ch + 1) * p;
                    let (x, y, dy) = (&x[at.clone()], &y[at.clone()], &dy[at]);
                    let (a, b) = lane_sums(p, |j| {
                        let dz = self.act.back(y[j], dy[j], slope).to_f64();
                        (dz, dz * x[j].to_f64())
                    });
                    (s, sx) = (s + a, sx + b);
                }
                // Σdz·(x − mean) = Σdz·x − mean·Σdz
                (s, (sx - self.mean[ch] * s) * self.inv_std[ch])
            })
            .collect();
        let mut dx = vec![T::zero(); x.len()];
        dx.par_chunks_mut(p).enumerate().for_each(|(i, dx)| {
            let ch = i % c;
            let at = i * p;
            let (dbeta, dgamma) = sums[ch];
            let k = gamma[ch].to_f64() * self.inv_std[ch];
            let b = -k * dgamma * self.inv_std[ch] / m;
            let (a, cc) = (T::from_f64(k), T::from_f64(-k * dbeta / m - b * self.mean[ch]));
            let b = T::from_f64(b);
            let (x, y, dy) = (&x[at..at + p], &y[at..at + p], &dy[at..at + p]);
            for (j, d) in dx.iter_mut().enumerate() {
                *d = a * self.act.back(y[j], dy[j], slope) + b * x[j] + cc;
            }
        });
        let dgamma = sums.iter().map(|s| T::from_f64(s.1)).collect();
        let dbeta = sums.iter().map(|s| T::from_f64(s.0)).collect();
        (dx, dgamma, dbeta)
    }
}

/// Σ f(j) for j in 0..len, in f64, eight independent partial sums so the loop vectorises
/// (one running sum is a dependency chain the compiler may not reorder).
#[inline(always)]
fn lane_sum(len: usize, f: impl Fn(usize) -> f64) -> f64 {
    lane_sums(len, |j| (f(j), 0.0)).0
}

/// Two such sums at once, for one pass over the data.
#[inline(always)]
fn lane_sums(len: usize, f: impl Fn(usize) -> (f64, f64)) -> (f64, f64) {
    let (mut a, mut b) = ([0.0f64; 8], [0.0f64; 8]);
    let whole = len / 8 * 8;
    for j in (0..whole).step_by(8) {
        for k in 0..8 {
            let (u, v) = f(j + k);
            a[k] += u;
            b[k] += v;
        }
    }
    let (mut ta, mut tb) = (0.0, 0.0);
    for j in whole..len {
        let (u, v) = f(j);
        (ta, tb) = (ta + u, tb + v);
    }
    (a.iter().sum::<f64>() + ta, b.iter().sum::<f64>() + tb)
}

/// (mean, biased variance) per channel, two-pass for accuracy.
fn channel_stats<T: WithDType>(x: &[T], n: usize, c: usize, p: usize) -> Stats {
    let (mean, var) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = || (0..n).map(move |i| &x[(i * c + ch) * p..][..p]);
            let m = (n * p) as f64;
            let mean = planes().map(|s| lane_sum(p, |j| s[j].to_f64())).sum::<f64>() / m;
            let var = planes().map(|s| lane_sum(p, |j| (s[j].to_f64() - mean).powi(2))).sum::<f64>() / m;
            (mean, var)
        })
        .unzip();
    Stats { mean, var }
}
