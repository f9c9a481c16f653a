//! LayerNorm over each sample's (C, H, W) with a per-channel scale and shift, then
//! LeakyReLU: the WGAN-GP critic's normalisation, since BatchNorm couples the samples of a
//! batch and the gradient penalty is defined per sample (Gulrajani et al. §4).

use candle_core::{Result, Tensor};

use super::activation::slope_at;
use super::batch_norm::BN_EPS;
use super::{Ctx, Grads, Init, Layer, Recorded, Saved, TangentGrads};
use crate::ops::layer_norm::{self, Normed};
use crate::ops::{self, with_slice, with_slices, Element};

pub struct LayerNorm {
    pub gamma: Tensor,
    pub beta: Tensor,
    /// The LeakyReLU's slope after it.
    pub slope: f64,
}

impl LayerNorm {
    pub fn new(init: &mut Init, channels: usize, slope: f64) -> Result<Self> {
        let gamma = init.constant("gamma", &[channels], 1.0, true)?;
        let beta = init.constant("beta", &[channels], 0.0, true)?;
        Ok(Self { gamma, beta, slope })
    }

    /// x̂ and 1/σ per sample, in candle's ops.
    fn normalised(x: &Tensor) -> Result<(Tensor, Tensor)> {
        let flat = x.flatten_from(1)?;
        let mean = flat.mean_keepdim(1)?;
        let centred = flat.broadcast_sub(&mean)?;
        let r = (centred.sqr()?.mean_keepdim(1)? + BN_EPS)?.sqrt()?.recip()?;
        Ok((centred.broadcast_mul(&r)?.reshape(x.shape())?, r))
    }

    fn scale(&self, c: &Ctx) -> Result<(Tensor, Tensor)> {
        let ch = (1, self.gamma.dim(0)?, 1, 1);
        Ok((c.weights[0].reshape(ch)?, c.weights[1].reshape(ch)?))
    }

    /// LeakyReLU's slope at u.
    fn slope_at(&self, u: &Tensor) -> Result<Tensor> {
        slope_at(u, self.slope)
    }

    fn frame(x: &Tensor) -> Result<layer_norm::Frame> {
        let (n, c, h, w) = x.dims4()?;
        Ok((n, c, h * w))
    }
}

fn normed<T: Element>(saved: &Saved) -> Option<&Normed<T>> {
    saved.as_ref().and_then(|s| s.downcast_ref::<Normed<T>>())
}

impl Layer for LayerNorm {
    fn params(&self) -> Vec<&Tensor> {
        vec![&self.gamma, &self.beta]
    }

    fn apply(&self, xs: &[Tensor], c: &Ctx) -> Result<Tensor> {
        let (xhat, _) = Self::normalised(&xs[0])?;
        let (g, b) = self.scale(c)?;
        let u = xhat.broadcast_mul(&g)?.broadcast_add(&b)?;
        u.mul(&self.slope_at(&u)?)
    }

    /// m·γ·r·(t − mean t − x̂·mean(x̂·t)), per sample.
    fn apply_tangent(&self, xs: &[Tensor], ts: &[Tensor], c: &Ctx) -> Result<Tensor> {
        let (xhat, r) = Self::normalised(&xs[0])?;
        let (g, b) = self.scale(c)?;
        let u = xhat.broadcast_mul(&g)?.broadcast_add(&b)?;
        let (t, xh) = (ts[0].flatten_from(1)?, xhat.flatten_from(1)?);
        let tau = t.broadcast_sub(&t.mean_keepdim(1)?)?.sub(&xh.broadcast_mul(&(&t * &xh)?.mean_keepdim(1)?)?)?;
        let tau = tau.broadcast_mul(&r)?.reshape(xs[0].shape())?;
        tau.broadcast_mul(&g)?.mul(&self.slope_at(&u)?)
    }

    fn forward(&self, xs: &[&Tensor], c: &Ctx) -> Result<Option<(Tensor, Saved)>> {
        if !c.kernels(xs[0]) {
            return Ok(None);
        }
        let x = xs[0].contiguous()?;
        let f = Self::frame(&x)?;
        crate::by_element!(x.dtype(), T => {
            let (g, b) = (ops::values::<T>(&c.weights[0])?, ops::values::<T>(&c.weights[1])?);
            let (y, normed) = with_slice(&x, |z: &[T]| layer_norm::forward(z, f, &g, &b, BN_EPS, self.slope))?;
            Ok(Some((ops::tensor(y, x.dims())?, Some(Box::new(normed) as Box<_>))))
        })
    }

    fn backward(&self, r: &Recorded, dy: &Tensor, _want: &[bool], _weights: bool) -> Result<Option<Grads>> {
        let (x, f) = (r.xs[0], Self::frame(r.xs[0])?);
        crate::by_element!(x.dtype(), T => {
            let Some(n) = normed::<T>(r.saved) else { return Ok(None) };
            let g = ops::values::<T>(&r.c.weights[0])?;
            let (dz, dg, db) = with_slices([dy, r.y], |[dy, y]: [&[T]; 2]| layer_norm::backward(dy, y, n, f, &g, self.slope))?;
            let ch = [g.len()];
            Ok(Some(Grads { inputs: vec![Some(ops::tensor(dz, x.dims())?)], weights: vec![ops::tensor(dg, &ch)?, ops::tensor(db, &ch)?] }))
        })
    }

    fn tangent(&self, r: &Recorded) -> Result<Option<Tensor>> {
        let (x, f) = (r.xs[0], Self::frame(r.xs[0])?);
        crate::by_element!(x.dtype(), T => {
            let Some(n) = normed::<T>(r.saved) else { return Ok(None) };
            let g = ops::values::<T>(&r.c.weights[0])?;
            let ty = with_slices([r.ts[0], r.y], |[t, y]: [&[T]; 2]| layer_norm::tangent(t, y, n, f, &g, self.slope))?;
            Ok(Some(ops::tensor(ty, x.dims())?))
        })
    }

    fn tangent_backward(&self, r: &Recorded, at: &Tensor, ay: Option<&Tensor>) -> Result<Option<TangentGrads>> {
        let (x, f) = (r.xs[0], Self::frame(r.xs[0])?);
        crate::by_element!(x.dtype(), T => {
            let Some(n) = normed::<T>(r.saved) else { return Ok(None) };
            let g = ops::values::<T>(&r.c.weights[0])?;
            let ay = ay.map(ops::values::<T>).transpose()?;
            let (atz, az, dg, db) = with_slices([at, r.ts[0], r.y], |[at, tz, y]: [&[T]; 3]| {
                layer_norm::tangent_backward(at, ay.as_deref(), tz, y, n, f, &g, self.slope)
            })?;
            let (dims, ch) = (x.dims(), [g.len()]);
            Ok(Some(TangentGrads {
                at: vec![ops::tensor(atz, dims)?],
                ay: vec![Some(ops::tensor(az, dims)?)],
                weights: vec![ops::tensor(dg, &ch)?, ops::tensor(db, &ch)?],
            }))
        })
    }
}
