//! Normalisation fused with the activation after it, on plain values: BatchNorm (each
//! channel's statistics over the batch) and LayerNorm (each sample's over its channels),
//! both with a per-channel scale and shift. Forward in three passes over the activations
//! (mean, variance, output), backward in two (sums, gradient), each reading the planes in
//! memory order; and the two pieces the penalties' second-order pass needs
//! (`crate::nn::Record::add_tangent_gradient`): a tangent pushed forward, and its reverse.
//!
//! Why: built from candle's tensor ops, BatchNorm + ReLU is a dozen full passes forward
//! and three times that backward (broadcasts, reductions over non-contiguous axes,
//! gradient accumulation), and was most of a training step's time after the
//! convolutions became GEMMs. Upstream this would be a `batch_norm` op in candle-nn
//! with its own backward rule.
//!
//! Notation, for a group of M values sharing statistics: x̂ = (x − mean)/σ,
//! u = γ·x̂ + β with γ, β per channel, y = act(u). Sums are taken per cell, the values that
//! share both a group and a channel (a BatchNorm channel; a LayerNorm plane, one channel of
//! one sample), then added per group or per channel; each in an order that does not depend
//! on the threads.

use candle_core::WithDType;
use rayon::prelude::*;

use super::profile::{self, Work};
use super::{made_in_chunks, relu_slope, Element, TASK_VALUES};

/// Which values share statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// BatchNorm: each channel's, across the batch.
    Batch,
    /// LayerNorm: each sample's, across its channels.
    Sample,
}

/// One normalisation by a batch's own statistics, with its activation.
pub struct Norm {
    /// Each group's mean and biased variance: the normalisation uses them, and BatchNorm's
    /// running statistics take them when the pass is committed (`crate::nn::norm`).
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
    /// 1/√(var + eps), per group.
    inv_std: Vec<f64>,
    /// The activation's slope left of zero: 0 for ReLU, 1 for none.
    slope: f64,
    over: Over,
    /// (N, C, H·W)
    pub frame: (usize, usize, usize),
}

impl Norm {
    /// The normalisation of x [N, C, P] by its own statistics.
    pub fn of<T: WithDType>(x: &[T], frame: (usize, usize, usize), over: Over, eps: f64, slope: f64) -> Self {
        profile::timed(Work::Norm, || {
            let mut norm = Self { mean: vec![], var: vec![], inv_std: vec![], slope, over, frame };
            let m = norm.count();
            let sums = norm.sums(x, x, x, |_, x, _, _| (x, T::zero()));
            let mean: Vec<f64> = norm.per_group(&sums, |_| 1.0).iter().map(|s| s.0 / m).collect();
            let mu: Vec<T> = mean.iter().map(|&v| T::from_f64(v)).collect();
            let squares = norm.sums(x, x, x, |cell, x, _, _| {
                let d = x - mu[norm.group_of(cell)];
                (d * d, T::zero())
            });
            let var: Vec<f64> = norm.per_group(&squares, |_| 1.0).iter().map(|s| s.0 / m).collect();
            norm.inv_std = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
            (norm.mean, norm.var) = (mean, var);
            norm
        })
    }

    /// The cell of plane i (one channel of one sample): its channel in BatchNorm, itself in LayerNorm.
    fn cell(&self, plane: usize) -> usize {
        match self.over {
            Over::Batch => plane % self.frame.1,
            Over::Sample => plane,
        }
    }

    /// The group a cell belongs to (its channel is the cell's index modulo C).
    fn group_of(&self, cell: usize) -> usize {
        match self.over {
            Over::Batch => cell,
            Over::Sample => cell / self.frame.1,
        }
    }

    /// The group of plane i.
    fn group(&self, plane: usize) -> usize {
        self.group_of(self.cell(plane))
    }

    /// Values per group.
    fn count(&self) -> f64 {
        let (n, c, p) = self.frame;
        (p * if self.over == Over::Batch { n } else { c }) as f64
    }

    /// Per-cell sums added per group, each weighted by `weight(cell)`.
    fn per_group(&self, sums: &[(f64, f64)], weight: impl Fn(usize) -> f64) -> Vec<(f64, f64)> {
        let groups = if self.over == Over::Batch { self.frame.1 } else { self.frame.0 };
        let mut total = vec![(0.0, 0.0); groups];
        for (i, &(a, b)) in sums.iter().enumerate() {
            let (t, w) = (&mut total[self.group_of(i)], weight(i));
            (t.0, t.1) = (t.0 + w * a, t.1 + w * b);
        }
        total
    }

    /// Per-cell sums added per channel.
    fn per_channel<T: WithDType>(&self, sums: &[(f64, f64)]) -> (Vec<T>, Vec<T>) {
        let c = self.frame.1;
        let (mut a, mut b) = (vec![0.0; c], vec![0.0; c]);
        for (i, s) in sums.iter().enumerate() {
            a[i % c] += s.0;
            b[i % c] += s.1;
        }
        (a.into_iter().map(T::from_f64).collect(), b.into_iter().map(T::from_f64).collect())
    }

    /// Per-cell (Σv, Σv·x) made (Σv, Σv·x̂), x̂ = (x − mean)/σ with a cell's mean and σ.
    fn normalise_sums(&self, sums: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
        let g = |i| self.group_of(i);
        sums.into_iter().enumerate().map(|(i, (s, sx))| (s, (sx - self.mean[g(i)] * s) * self.inv_std[g(i)])).collect()
    }

    /// Per cell of [N·C, P] buffers, (Σ f(cell, x, y, z).0, Σ … .1) over its planes. Each task
    /// reads a run of planes in memory order (which the hardware prefetches) into lanes per
    /// cell, then hands on f64 totals, added in task order.
    fn sums<T: WithDType>(
        &self,
        x: &[T],
        y: &[T],
        z: &[T],
        f: impl Fn(usize, T, T, T) -> (T, T) + Sync,
    ) -> Vec<(f64, f64)> {
        let p = self.frame.2;
        let (planes, per_task) = (x.len() / p.max(1), planes_per_task(p));
        let total = |l: &[T; LANES]| l.iter().map(|v| v.to_f64()).sum::<f64>();
        let tasks: Vec<(usize, Vec<(f64, f64)>)> = (0..planes.div_ceil(per_task))
            .into_par_iter()
            .map(|t| {
                let run = t * per_task..((t + 1) * per_task).min(planes);
                // Its cells: every channel (BatchNorm), or a run of planes (LayerNorm).
                let first = run.clone().map(|i| self.cell(i)).min().unwrap_or(0);
                let last = run.clone().map(|i| self.cell(i)).max().unwrap_or(0);
                let mut lanes = vec![([T::zero(); LANES], [T::zero(); LANES]); last + 1 - first];
                for i in run {
                    let (cell, at) = (self.cell(i), i * p..(i + 1) * p);
                    let (a, b) = &mut lanes[cell - first];
                    add_lanes(&x[at.clone()], &y[at.clone()], &z[at], a, b, |x, y, z| f(cell, x, y, z));
                }
                (first, lanes.iter().map(|(a, b)| (total(a), total(b))).collect())
            })
            .collect();
        let cells = if self.over == Over::Batch { self.frame.1 } else { planes };
        let mut sums = vec![(0.0, 0.0); cells];
        for (first, task) in tasks {
            for (s, t) in sums[first..].iter_mut().zip(task) {
                (s.0, s.1) = (s.0 + t.0, s.1 + t.1);
            }
        }
        sums
    }

    /// Per cell (Σv, Σv·x̂), x − mean formed before the product: the penalties' passes want
    /// it exact where |mean| ≫ σ (the backward pass's Σv·x − mean·Σv, [`Norm::normalise_sums`],
    /// is one pass fewer).
    fn centred_sums<T: WithDType>(&self, x: &[T], v: &[T]) -> Vec<(f64, f64)> {
        let mu: Vec<T> = self.mean.iter().map(|&m| T::from_f64(m)).collect();
        let sums = self.sums(x, v, v, |cell, x, v, _| (v, v * (x - mu[self.group_of(cell)])));
        sums.into_iter().enumerate().map(|(i, (s, sx))| (s, sx * self.inv_std[self.group_of(i)])).collect()
    }

    fn normalised<T: WithDType>(&self, g: usize, x: T) -> f64 {
        (x.to_f64() - self.mean[g]) * self.inv_std[g]
    }

    fn slope<T: WithDType>(&self) -> T {
        T::from_f64(self.slope)
    }

    /// act(γ·x̂ + β), plane by plane.
    pub fn forward<T: Element>(&self, x: &[T], gamma: &[T], beta: &[T]) -> Vec<T> {
        profile::timed(Work::Norm, || {
            let (_, c, p) = self.frame;
            let slope = self.slope();
            let task = p * planes_per_task(p);
            made_in_chunks(
                x.len(),
                task,
                || (),
                |_, t, y| {
                    for (i, (y, x)) in y.chunks_mut(p).zip(x[t * task..].chunks(p)).enumerate() {
                        let plane = t * task / p + i;
                        let (ch, g) = (plane % c, self.group(plane));
                        let scale = self.inv_std[g] * gamma[ch].to_f64();
                        let shift = T::from_f64(beta[ch].to_f64() - self.mean[g] * scale);
                        let scale = T::from_f64(scale);
                        for (y, &x) in y.iter_mut().zip(x) {
                            let z = x * scale + shift;
                            *y = z * relu_slope(z, slope);
                        }
                    }
                },
            )
        })
    }

    /// With dz = dy·act′: dβ = Σdz, dγ = Σdz·x̂ per channel, and with dx̂ = γ·dz,
    /// dx = (dx̂ − mean dx̂ − x̂·mean(dx̂·x̂))/σ per group, which is a·dz + b·x + c with
    /// constants per plane: one pass for the sums, one for dx.
    pub fn backward<T: Element>(&self, x: &[T], gamma: &[T], y: &[T], dy: &[T]) -> (Vec<T>, Vec<T>, Vec<T>) {
        profile::timed(Work::Norm, || {
            let (_, c, p) = self.frame;
            let m = self.count();
            let slope = self.slope();
            let dz = |y: T, dy: T| dy * relu_slope(y, slope);
            let sums = self.normalise_sums(self.sums(x, y, dy, |_, x, y, dy| {
                let dz = dz(y, dy);
                (dz, dz * x)
            }));
            let (dbeta, dgamma) = self.per_channel(&sums);
            let dxhat = self.per_group(&sums, |i| gamma[i % c].to_f64());
            let task = planes_per_task(p);
            let dx = made_in_chunks(
                x.len(),
                p * task,
                || (),
                |_, t, dx| {
                    for (i, dx) in dx.chunks_mut(p).enumerate() {
                        let i = t * task + i;
                        let (ch, g, at) = (i % c, self.group(i), i * p..(i + 1) * p);
                        let inv = self.inv_std[g];
                        let b = -inv * inv * dxhat[g].1 / m;
                        let cc = T::from_f64(-inv * dxhat[g].0 / m - b * self.mean[g]);
                        let (a, b) = (T::from_f64(gamma[ch].to_f64() * inv), T::from_f64(b));
                        for (((d, &x), &y), &dy) in dx.iter_mut().zip(&x[at.clone()]).zip(&y[at.clone()]).zip(&dy[at]) {
                            *d = a * dz(y, dy) + b * x + cc;
                        }
                    }
                },
            );
            (dx, dgamma, dbeta)
        })
    }

    /// The output's tangent for the input's, `t` (x and y: the recorded pass): x̂'s
    /// Jacobian per group is J = (I − 11ᵀ/M − x̂x̂ᵀ/M)/σ (symmetric), so
    /// τ = J·t = (t − mean t − x̂·mean(t·x̂))/σ and ty = act′·γ·τ (LeakyReLU's second
    /// derivative is zero almost everywhere).
    pub fn tangent<T: Element>(&self, x: &[T], gamma: &[T], y: &[T], t: &[T]) -> Vec<T> {
        let (_, c, p) = self.frame;
        let m = self.count();
        let means = self.per_group(&self.centred_sums(x, t), |_| 1.0 / m);
        let slope = self.slope();
        let mut ty = vec![T::zero(); x.len()];
        ty.par_chunks_mut(p).enumerate().for_each(|(i, ty)| {
            let (ch, g, at) = (i % c, self.group(i), i * p..(i + 1) * p);
            let (a, cc) = means[g];
            for ((o, &x), (&y, &t)) in ty.iter_mut().zip(&x[at.clone()]).zip(y[at.clone()].iter().zip(&t[at])) {
                let tau = (t.to_f64() - a - self.normalised(g, x) * cc) * self.inv_std[g];
                *o = relu_slope(y, slope) * gamma[ch] * T::from_f64(tau);
            }
        });
        ty
    }

    /// The reverse of (x, t) ↦ (y, ty): from `aty`, the adjoint of ty, and `ay`, that of y
    /// (None: zero), the adjoints of t and of x, and γ's and β's gradients. With w = act′·aty,
    /// u = γ·w and, per group, a = mean(t), c = mean(t·x̂), ū = mean(u), U₁ = Σu(t − a),
    /// U_z = Σu·x̂: at = J·u, dγ = Σw·τ, and
    /// ∂⟨u, J(x)·t⟩/∂xᵢ = (−U₁x̂ᵢ/M − U_z(tᵢ − a)/M − c(uᵢ − ū) + 3c·U_z·x̂ᵢ/M)/σ².
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
        let (_, c, p) = self.frame;
        let m = self.count();
        let slope = self.slope();
        let w: Vec<T> = y.iter().zip(aty).map(|(&y, &a)| a * relu_slope(y, slope)).collect();
        let gamma_of = |i: usize| gamma[i % c].to_f64();
        let (sw, st) = (self.centred_sums(x, &w), self.centred_sums(x, t));
        let swt = self.sums(x, &w, t, |_, _, w, t| (w * t, T::zero()));
        let (u, ut) = (self.per_group(&sw, gamma_of), self.per_group(&swt, gamma_of));
        let tg = self.per_group(&st, |_| 1.0 / m);
        // dγ's tangent part per cell: Σw·τ = (Σw·t − a·Σw − c·Σw·x̂)/σ.
        let dgamma_t: Vec<(f64, f64)> = (0..sw.len())
            .map(|i| {
                let g = self.group_of(i);
                let (a, cc) = tg[g];
                ((swt[i].0 - a * sw[i].0 - cc * sw[i].1) * self.inv_std[g], 0.0)
            })
            .collect();
        let (mut dgamma, mut dbeta): (Vec<T>, Vec<T>) = self.per_channel(&dgamma_t);
        let (mut at, mut ax) = (vec![T::zero(); x.len()], vec![T::zero(); x.len()]);
        at.par_chunks_mut(p).zip(ax.par_chunks_mut(p)).enumerate().for_each(|(i, (at, ax))| {
            let g = self.group(i);
            let (k, inv) = (gamma_of(i), self.inv_std[g]);
            let ((a, cc), (su, suz)) = (tg[g], u[g]);
            let (u_mean, u1) = (su / m, ut[g].0 - a * su);
            for (j, (at, ax)) in (i * p..(i + 1) * p).zip(at.iter_mut().zip(ax)) {
                let (xh, ui, ti) = (self.normalised(g, x[j]), k * w[j].to_f64(), t[j].to_f64());
                *at = T::from_f64((ui - u_mean - xh * suz / m) * inv);
                let dq = -u1 / m * xh - suz / m * (ti - a) - cc * (ui - u_mean) + 3.0 * cc * suz / m * xh;
                *ax = T::from_f64(dq * inv * inv);
            }
        });
        if let Some(ay) = ay {
            let (dx, dg, db) = self.backward(x, gamma, y, ay);
            ax.iter_mut().zip(dx).for_each(|(a, d)| *a += d);
            dgamma.iter_mut().zip(dg).for_each(|(a, d)| *a += d);
            dbeta = db;
        }
        (at, ax, dgamma, dbeta)
    }
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

/// Planes per parallel task: about [`TASK_VALUES`] values.
fn planes_per_task(p: usize) -> usize {
    TASK_VALUES / p.max(1) + 1
}
