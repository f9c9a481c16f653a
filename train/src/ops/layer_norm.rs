//! LayerNorm over each sample's (C, H, W), with a per-channel scale and shift, then
//! LeakyReLU: the WGAN-GP critic's layer (`crate::nn::layer_norm`) on plain values.
//! Forward, backward, and the two pieces the gradient penalty's second-order pass needs
//! (`crate::nn::Record::add_tangent_gradient`): a tangent pushed forward, and the
//! reverse of that push.
//!
//! Every function works one sample at a time, samples in parallel; per-channel sums are
//! added across samples in sample order, so results do not depend on the threads.
//! Notation, per sample of N = C·H·W values: z the input, x̂ = (z − mean z)·r with
//! r = 1/√(var z + eps), u = γ·x̂ + β, y = LeakyReLU(u); m the slope LeakyReLU applied.

use rayon::prelude::*;

use super::{relu_slope, Element};

/// (samples, channels, values per channel plane).
pub type Frame = (usize, usize, usize);

/// A forward pass's values its backward passes read: x̂ for every value, r per sample.
pub struct Normed<T> {
    pub xhat: Vec<T>,
    pub r: Vec<T>,
}

/// y, and what the backward passes need.
pub fn forward<T: Element>(z: &[T], f: Frame, gamma: &[T], beta: &[T], eps: f64, slope: f64) -> (Vec<T>, Normed<T>) {
    let (n, c, hw) = f;
    let len = c * hw;
    let (mut y, mut xhat, mut r) = (vec![T::zero(); z.len()], vec![T::zero(); z.len()], vec![T::zero(); n]);
    let s = T::from_f64(slope);
    y.par_chunks_mut(len).zip(xhat.par_chunks_mut(len)).zip(r.par_iter_mut()).zip(z.par_chunks(len)).for_each(
        |(((y, xhat), r), z)| {
            let mean = sum(z) / len as f64;
            let var = z.iter().map(|&v| (v.to_f64() - mean).powi(2)).sum::<f64>() / len as f64;
            let rs = 1.0 / (var + eps).sqrt();
            *r = T::from_f64(rs);
            let (mean, rs) = (T::from_f64(mean), T::from_f64(rs));
            for ch in 0..c {
                let (g, b) = (gamma[ch], beta[ch]);
                let plane = ch * hw..(ch + 1) * hw;
                for ((y, xh), &z) in y[plane.clone()].iter_mut().zip(&mut xhat[plane.clone()]).zip(&z[plane]) {
                    *xh = (z - mean) * rs;
                    let u = g * *xh + b;
                    *y = u * relu_slope(u, s);
                }
            }
        },
    );
    (y, Normed { xhat, r })
}

/// Gradients from dy, the gradient of y: (dz, dγ, dβ).
pub fn backward<T: Element>(
    dy: &[T],
    y: &[T],
    normed: &Normed<T>,
    f: Frame,
    gamma: &[T],
    slope: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (_, c, hw) = f;
    let len = c * hw;
    let s = T::from_f64(slope);
    let mut dz = vec![T::zero(); dy.len()];
    let partial: Vec<(Vec<f64>, Vec<f64>)> = dz
        .par_chunks_mut(len)
        .zip(dy.par_chunks(len))
        .zip(y.par_chunks(len))
        .zip(normed.xhat.par_chunks(len))
        .zip(normed.r.par_iter())
        .map(|((((dz, dy), y), xhat), &r)| {
            // du, then dx̂ = γ·du, written into dz until the last line.
            let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
            for ch in 0..c {
                let plane = ch * hw..(ch + 1) * hw;
                for ((dz, (&dy, &y)), &xh) in
                    dz[plane.clone()].iter_mut().zip(dy[plane.clone()].iter().zip(&y[plane.clone()])).zip(&xhat[plane])
                {
                    let du = dy * relu_slope(y, s);
                    dgamma[ch] += (du * xh).to_f64();
                    dbeta[ch] += du.to_f64();
                    *dz = du * gamma[ch];
                }
            }
            through_normalisation(dz, xhat, r);
            (dgamma, dbeta)
        })
        .collect();
    let (dgamma, dbeta) = add_channels(&partial, c);
    (dz, dgamma, dbeta)
}

/// In place, d = dx̂ ↦ dz: r·(dx̂ − mean dx̂ − x̂·mean(dx̂·x̂)), the gradient through x̂'s
/// dependence on z (mean and variance included). The same map takes a tangent of z to
/// the tangent of x̂ (the Jacobian is symmetric).
fn through_normalisation<T: Element>(d: &mut [T], xhat: &[T], r: T) {
    let n = d.len() as f64;
    let mean_d = T::from_f64(sum(d) / n);
    let mean_dx = T::from_f64(d.iter().zip(xhat).map(|(&d, &x)| (d * x).to_f64()).sum::<f64>() / n);
    for (d, &x) in d.iter_mut().zip(xhat) {
        *d = r * (*d - mean_d - x * mean_dx);
    }
}

/// The tangent of y for a tangent `tz` of z: m·γ·τ, with τ = r·(tz − mean tz − x̂·mean(x̂·tz))
/// the tangent of x̂.
pub fn tangent<T: Element>(tz: &[T], y: &[T], normed: &Normed<T>, f: Frame, gamma: &[T], slope: f64) -> Vec<T> {
    let (_, c, hw) = f;
    let len = c * hw;
    let s = T::from_f64(slope);
    let mut ty = tz.to_vec();
    ty.par_chunks_mut(len).zip(y.par_chunks(len)).zip(normed.xhat.par_chunks(len)).zip(normed.r.par_iter()).for_each(
        |(((ty, y), xhat), &r)| {
            through_normalisation(ty, xhat, r);
            for (ch, &g) in gamma[..c].iter().enumerate() {
                let plane = ch * hw..(ch + 1) * hw;
                for (t, &y) in ty[plane.clone()].iter_mut().zip(&y[plane]) {
                    *t = *t * g * relu_slope(y, s);
                }
            }
        },
    );
    ty
}

/// The reverse of [`forward`] and [`tangent`] together. Given the adjoints of y's tangent
/// (`aty`) and of y (`ay`; None when zero), and the tangent `tz` the forward push started
/// from: the adjoints of tz and of z, and dγ, dβ. The adjoint of z is where the second
/// derivative lives: τ depends on z through x̂ and r.
#[allow(clippy::type_complexity)]
pub fn tangent_backward<T: Element>(
    aty: &[T],
    ay: Option<&[T]>,
    tz: &[T],
    y: &[T],
    normed: &Normed<T>,
    f: Frame,
    gamma: &[T],
    slope: f64,
) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
    let (_, c, hw) = f;
    let len = c * hw;
    let nf = len as f64;
    let s = T::from_f64(slope);
    let (mut atz, mut az) = (vec![T::zero(); tz.len()], vec![T::zero(); tz.len()]);
    let partial: Vec<(Vec<f64>, Vec<f64>)> = atz
        .par_chunks_mut(len)
        .zip(az.par_chunks_mut(len))
        .enumerate()
        .map(|(i, (atz, az))| {
            let at = i * len..(i + 1) * len;
            let (aty, tz, y, xhat, r) =
                (&aty[at.clone()], &tz[at.clone()], &y[at.clone()], &normed.xhat[at.clone()], normed.r[i]);
            let ay = ay.map(|a| &a[at]);
            // τ, the tangent of x̂, and a = mean(x̂·tz), which it used.
            let mut tau = tz.to_vec();
            through_normalisation(&mut tau, xhat, r);
            let a = T::from_f64(tz.iter().zip(xhat).map(|(&t, &x)| (t * x).to_f64()).sum::<f64>() / nf);
            let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
            // Through LeakyReLU and the scale: adjoints of τ (into atz) and of x̂ (into az).
            for ch in 0..c {
                let g = gamma[ch];
                for k in ch * hw..(ch + 1) * hw {
                    let m = relu_slope(y[k], s);
                    let atu = aty[k] * m;
                    let au = ay.map_or(T::zero(), |a| a[k] * m);
                    dgamma[ch] += (au * xhat[k] + atu * tau[k]).to_f64();
                    dbeta[ch] += au.to_f64();
                    atz[k] = g * atu;
                    az[k] = g * au;
                }
            }
            // τ = r·(tz − mean tz − x̂·a): its adjoint reaches x̂ (through x̂·a and a), and r.
            let mean_atau_x = T::from_f64(atz.iter().zip(xhat).map(|(&t, &x)| (t * x).to_f64()).sum::<f64>() / nf);
            let ar = atz.iter().zip(&tau).map(|(&t, &u)| (t * u).to_f64()).sum::<f64>() / r.to_f64();
            for k in 0..len {
                az[k] -= r * (a * atz[k] + tz[k] * mean_atau_x);
            }
            // ...and tz itself (the symmetric map), then x̂'s adjoint back to z, plus r's:
            // r = (var + eps)^(-1/2), d var/dz = 2·(z − mean)/N = 2·x̂/(r·N), so dr/dz = −r²·x̂/N.
            through_normalisation(atz, xhat, r);
            through_normalisation(az, xhat, r);
            let r_to_z = T::from_f64(ar * r.to_f64().powi(2) / nf);
            for k in 0..len {
                az[k] -= r_to_z * xhat[k];
            }
            (dgamma, dbeta)
        })
        .collect();
    let (dgamma, dbeta) = add_channels(&partial, c);
    (atz, az, dgamma, dbeta)
}

fn sum<T: Element>(v: &[T]) -> f64 {
    v.iter().map(|&x| x.to_f64()).sum()
}

/// Per-sample (dγ, dβ) added across samples, in sample order.
fn add_channels<T: Element>(partial: &[(Vec<f64>, Vec<f64>)], c: usize) -> (Vec<T>, Vec<T>) {
    let (mut dgamma, mut dbeta) = (vec![0.0; c], vec![0.0; c]);
    for (g, b) in partial {
        for ch in 0..c {
            dgamma[ch] += g[ch];
            dbeta[ch] += b[ch];
        }
    }
    (dgamma.into_iter().map(T::from_f64).collect(), dbeta.into_iter().map(T::from_f64).collect())
}
