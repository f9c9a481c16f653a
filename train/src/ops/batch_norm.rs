//! BatchNorm in training mode fused with the activation after it: forward in three passes
//! over the activations (mean, variance, output), backward in two (sums, gradient), each
//! reading the planes in memory order.
//!
//! Why: built from candle's tensor ops, BatchNorm + ReLU is a dozen full passes forward
//! and three times that backward (broadcasts, reductions over non-contiguous axes,
//! gradient accumulation), and was most of a training step's time after the
//! convolutions became GEMMs. Upstream this would be a `batch_norm` op in candle-nn
//! with its own backward rule.
//!
//! R1's penalty differentiates fastgan's critic's input gradient, BatchNorm included: its
//! tangent and that tangent's reverse are here too (`crate::nn::Record::add_tangent_gradient`).

use candle_core::WithDType;
use rayon::prelude::*;

use super::profile::{self, Work};
use super::{made_in_chunks, relu_slope, Element, TASK_VALUES};

/// The activation fused after the normalisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    Relu,
    /// max(x, slope·x).
    LeakyRelu(f64),
    /// None (a GLU follows, in `fastgan`).
    Identity,
}

impl Activation {
    /// The slope left of zero.
    pub fn negative_slope(self) -> f64 {
        match self {
            Activation::Relu => 0.0,
            Activation::LeakyRelu(s) => s,
            Activation::Identity => 1.0,
        }
    }
}

/// Per-channel batch statistics of x [N, C, H, W]: (mean, biased variance), both [C].
/// The normalisation uses them, and the running statistics take them when the pass is
/// committed (`crate::nn::batch_norm`).
pub struct Stats {
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
}

/// One normalisation by a batch's statistics, with its activation: the operation on
/// plain values (`crate::nn::batch_norm` runs it on CPU tensors).
pub struct BatchNormAct {
    pub stats: Stats,
    /// 1/√(var + eps), per channel.
    inv_std: Vec<f64>,
    act: Activation,
    /// (N, C, H·W)
    pub frame: (usize, usize, usize),
}

impl BatchNormAct {
    /// The normalisation of x [N, C, P] by its own statistics.
    pub fn of<T: WithDType>(x: &[T], frame: (usize, usize, usize), eps: f64, act: Activation) -> Self {
        profile::timed(Work::BatchNorm, || {
            let (n, c, p) = frame;
            let stats = channel_stats(x, n, c, p);
            let inv_std = stats.var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
            Self { stats, inv_std, act, frame }
        })
    }

    /// act(γ·x̂ + β), plane by plane.
    pub fn forward<T: Element>(&self, x: &[T], gamma: &[T], beta: &[T]) -> Vec<T> {
        profile::timed(Work::BatchNorm, || {
            let (_, c, p) = self.frame;
            let slope = T::from_f64(self.act.negative_slope());
            let task = p * planes_per_task(p);
            made_in_chunks(
                x.len(),
                task,
                || (),
                |_, t, y| {
                    for (i, (y, x)) in y.chunks_mut(p).zip(x[t * task..].chunks(p)).enumerate() {
                        let ch = (t * task / p + i) % c;
                        let scale = self.inv_std[ch] * gamma[ch].to_f64();
                        let shift = T::from_f64(beta[ch].to_f64() - self.stats.mean[ch] * scale);
                        let scale = T::from_f64(scale);
                        for (y, &x) in y.iter_mut().zip(x) {
                            *y = activate(x * scale + shift, slope);
                        }
                    }
                },
            )
        })
    }

    /// dz = dy·act′; dβ = Σdz; dγ = Σdz·x̂; dx = γ/σ·(dz − (dβ + x̂·dγ)/M), per channel,
    /// which is a·dz + b·x + c with per-channel constants: one pass for the sums, one for dx.
    pub fn backward<T: Element>(&self, x: &[T], gamma: &[T], y: &[T], dy: &[T]) -> (Vec<T>, Vec<T>, Vec<T>) {
        profile::timed(Work::BatchNorm, || {
            let (n, c, p) = self.frame;
            let m = (n * p) as f64;
            let slope = T::from_f64(self.act.negative_slope());
            let dz = |y: T, dy: T| dy * relu_slope(y, slope);
            let sums = per_channel(x, y, dy, c, p, |_, x, y, dy| {
                let dz = dz(y, dy);
                (dz, dz * x)
            });
            // Σdz·(x − mean) = Σdz·x − mean·Σdz
            let sums: Vec<(f64, f64)> = sums
                .iter()
                .enumerate()
                .map(|(ch, &(s, sx))| (s, (sx - self.stats.mean[ch] * s) * self.inv_std[ch]))
                .collect();
            let task = planes_per_task(p);
            let dx = made_in_chunks(
                x.len(),
                p * task,
                || (),
                |_, t, dx| {
                    for (i, dx) in dx.chunks_mut(p).enumerate() {
                        let i = t * task + i;
                        let ch = i % c;
                        let at = i * p..(i + 1) * p;
                        let (dbeta, dgamma) = sums[ch];
                        let k = gamma[ch].to_f64() * self.inv_std[ch];
                        let b = -k * dgamma * self.inv_std[ch] / m;
                        let (a, cc) = (T::from_f64(k), T::from_f64(-k * dbeta / m - b * self.stats.mean[ch]));
                        let b = T::from_f64(b);
                        for (((d, &x), &y), &dy) in dx.iter_mut().zip(&x[at.clone()]).zip(&y[at.clone()]).zip(&dy[at]) {
                            *d = a * dz(y, dy) + b * x + cc;
                        }
                    }
                },
            );
            let dgamma = sums.iter().map(|s| T::from_f64(s.1)).collect();
            let dbeta = sums.iter().map(|s| T::from_f64(s.0)).collect();
            (dx, dgamma, dbeta)
        })
    }
}

/// The second-order pieces (R1's penalty, `crate::losses::r1`): with
/// x̂ = (x − mean)/σ per channel over its M values, BatchNorm's Jacobian is
/// J = (I − 11ᵀ/M − x̂x̂ᵀ/M)/σ (symmetric), so a tangent t of x becomes
/// tx̂ = (t − mean(t) − x̂·mean(t·x̂))/σ, and ty = act′·γ·tx̂ (LeakyReLU's second
/// derivative is zero almost everywhere).
impl BatchNormAct {
    fn normalised<T: WithDType>(&self, ch: usize, x: T) -> T {
        T::from_f64((x.to_f64() - self.stats.mean[ch]) * self.inv_std[ch])
    }

    /// The output's tangent ty from the input's, `t` (x and y: the recorded pass).
    pub fn tangent<T: Element>(&self, x: &[T], gamma: &[T], y: &[T], t: &[T]) -> Vec<T> {
        let (n, c, p) = self.frame;
        let m = (n * p) as f64;
        let sums = per_channel(x, t, t, c, p, |ch, x, t, _| (t, t * self.normalised(ch, x)));
        let slope = T::from_f64(self.act.negative_slope());
        let mut ty = vec![T::zero(); x.len()];
        ty.par_chunks_mut(p).enumerate().for_each(|(i, ty)| {
            let ch = i % c;
            let (a, cc) = (sums[ch].0 / m, sums[ch].1 / m);
            let at = i * p..(i + 1) * p;
            for ((o, &x), (&y, &t)) in ty.iter_mut().zip(&x[at.clone()]).zip(y[at.clone()].iter().zip(&t[at])) {
                let tx = (t.to_f64() - a - self.normalised(ch, x).to_f64() * cc) * self.inv_std[ch];
                *o = relu_slope(y, slope) * gamma[ch] * T::from_f64(tx);
            }
        });
        ty
    }

    /// The reverse of (x, t) ↦ (y, ty): from `aty`, the adjoint of ty, and `ay`, that of y
    /// (None: zero), the adjoints of t and of x, and γ's and β's gradients. With u = γ·act′·aty
    /// and, per channel, a = mean(t), c = mean(t·x̂), U₁ = Σu(t − a), U_z = Σu·x̂:
    /// at = J·u, and ∂⟨u, J(x)·t⟩/∂xᵢ = (−U₁x̂ᵢ/M − U_z(tᵢ − a)/M − c(uᵢ − ū) + 3c·U_z·x̂ᵢ/M)/σ².
    #[allow(clippy::type_complexity)]
    pub fn tangent_backward<T: Element>(
        &self,
        x: &[T],
        gamma: &[T],
        y: &[T],
        t: &[T],
        aty: &[T],
        ay: Option<&[T]>,
    ) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
        let (n, c, p) = self.frame;
        let m = (n * p) as f64;
        let slope = T::from_f64(self.act.negative_slope());
        // w = act′·aty (u = γ·w).
        let w: Vec<T> = y.iter().zip(aty).map(|(&y, &a)| a * relu_slope(y, slope)).collect();
        let s1 = per_channel(x, &w, &w, c, p, |ch, x, w, _| (w, w * self.normalised(ch, x)));
        let s2 = per_channel(x, &w, t, c, p, |_, _, w, t| (w * t, t));
        let s3 = per_channel(x, t, t, c, p, |ch, x, t, _| (t * self.normalised(ch, x), T::zero()));
        let (mut at, mut ax) = (vec![T::zero(); x.len()], vec![T::zero(); x.len()]);
        let mut dgamma_t = vec![T::zero(); c];
        for ch in 0..c {
            let g = gamma[ch].to_f64();
            let (sw, swx, swt, st, stx) = (s1[ch].0, s1[ch].1, s2[ch].0, s2[ch].1, s3[ch].0);
            let (a, cc) = (st / m, stx / m);
            dgamma_t[ch] = T::from_f64((swt - a * sw - cc * swx) * self.inv_std[ch]);
            let (u_mean, uz, u1) = (g * sw / m, g * swx, g * (swt - a * sw));
            let inv = self.inv_std[ch];
            for img in 0..n {
                let at_ = (img * c + ch) * p..(img * c + ch + 1) * p;
                for i in at_ {
                    let xh = self.normalised(ch, x[i]).to_f64();
                    let u = g * w[i].to_f64();
                    at[i] = T::from_f64((u - u_mean - xh * g * swx / m) * inv);
                    let ti = t[i].to_f64();
                    let dq = -u1 / m * xh - uz / m * (ti - a) - cc * (u - u_mean) + 3.0 * cc * uz / m * xh;
                    ax[i] = T::from_f64(dq * inv * inv);
                }
            }
        }
        let (mut dgamma, mut dbeta) = (dgamma_t, vec![T::zero(); c]);
        if let Some(ay) = ay {
            let (dx, dg, db) = self.backward(x, gamma, y, ay);
            ax.iter_mut().zip(dx).for_each(|(a, d)| *a += d);
            dgamma.iter_mut().zip(dg).for_each(|(a, d)| *a += d);
            dbeta = db;
        }
        (at, ax, dgamma, dbeta)
    }
}

/// act(z) for a slope left of zero (0 for ReLU).
#[inline(always)]
fn activate<T: WithDType>(z: T, slope: T) -> T {
    z * relu_slope(z, slope)
}

const LANES: usize = 16;

/// Adds f(x, y, z) over equal-length slices into sixteen independent partial sums each
/// (`a` for the first value, `b` for the second), so the loop vectorises: one running
/// sum is a dependency chain the compiler may not reorder.
#[inline(always)]
fn add_lanes<T: WithDType>(
    x: &[T],
    y: &[T],
    z: &[T],
    a: &mut [T; LANES],
    b: &mut [T; LANES],
    f: impl Fn(T, T, T) -> (T, T),
) {
    assert!(x.len() == y.len() && y.len() == z.len(), "add_lanes of unequal slices");
    let lanes = x.chunks_exact(LANES).zip(y.chunks_exact(LANES)).zip(z.chunks_exact(LANES));
    for ((x, y), z) in lanes {
        for k in 0..LANES {
            let (u, v) = f(x[k], y[k], z[k]);
            a[k] += u;
            b[k] += v;
        }
    }
    for j in x.len() / LANES * LANES..x.len() {
        let (u, v) = f(x[j], y[j], z[j]);
        a[0] += u;
        b[0] += v;
    }
}

/// (mean, biased variance) per channel, two-pass for accuracy.
fn channel_stats<T: WithDType>(x: &[T], n: usize, c: usize, p: usize) -> Stats {
    let m = (n * p) as f64;
    let mean: Vec<f64> = per_channel(x, x, x, c, p, |_, x, _, _| (x, T::zero())).into_iter().map(|s| s.0 / m).collect();
    let mu: Vec<T> = mean.iter().map(|&v| T::from_f64(v)).collect();
    let var = per_channel(x, x, x, c, p, |ch, x, _, _| ((x - mu[ch]) * (x - mu[ch]), T::zero()));
    Stats { var: var.into_iter().map(|s| s.0 / m).collect(), mean }
}

/// Planes per parallel task: about [`TASK_VALUES`] values.
fn planes_per_task(p: usize) -> usize {
    TASK_VALUES / p.max(1) + 1
}

/// Per channel, (Σ f(ch, x, y, z).0, Σ … .1) over every image's plane of that channel, for
/// [N, C, P] buffers. The planes are read in memory order (each thread a contiguous run of
/// them), which the hardware prefetches; a channel's planes are a whole image apart.
fn per_channel<T: WithDType>(
    x: &[T],
    y: &[T],
    z: &[T],
    c: usize,
    p: usize,
    f: impl Fn(usize, T, T, T) -> (T, T) + Sync,
) -> Vec<(f64, f64)> {
    let planes = x.len() / p.max(1);
    let per_task = planes_per_task(p);
    // Each task sums its planes into per-channel lanes in T (a task is ~16k values, so a
    // lane adds up ~1k of them), then hands on f64 totals; those are added in task order,
    // so the result does not depend on how the threads shared the work.
    let tasks: Vec<Vec<(f64, f64)>> = (0..planes.div_ceil(per_task))
        .into_par_iter()
        .map(|t| {
            let mut lanes = vec![([T::zero(); LANES], [T::zero(); LANES]); c];
            for i in t * per_task..((t + 1) * per_task).min(planes) {
                let (ch, at) = (i % c, i * p..(i + 1) * p);
                let (a, b) = &mut lanes[ch];
                add_lanes(&x[at.clone()], &y[at.clone()], &z[at], a, b, |x, y, z| f(ch, x, y, z));
            }
            let total = |l: &[T; LANES]| l.iter().map(|v| v.to_f64()).sum::<f64>();
            lanes.iter().map(|(a, b)| (total(a), total(b))).collect()
        })
        .collect();
    let mut sums = vec![(0.0, 0.0); c];
    for task in tasks {
        for (s, t) in sums.iter_mut().zip(task) {
            (s.0, s.1) = (s.0 + t.0, s.1 + t.1);
        }
    }
    sums
}
