//! One quarter of a map: the part of fastgan's critic's 16×16 features its second decoder
//! rebuilds, chosen per pass ([`super::Ctx::part`], 0–3, row-major).

use candle_core::{Result, Tensor};

use super::{Ctx, Grads, Layer, Recorded};

pub struct Quarter;

/// The first row and column of quarter `part` of an h×w map.
fn corner(part: usize, h: usize, w: usize) -> (usize, usize) {
    (part / 2 % 2 * h / 2, part % 2 * w / 2)
}

impl Layer for Quarter {
    fn apply(&self, xs: &[Tensor], c: &Ctx) -> Result<Tensor> {
        let (_, _, h, w) = xs[0].dims4()?;
        let (r, col) = corner(c.part, h, w);
        xs[0].narrow(2, r, h / 2)?.narrow(3, col, w / 2)
    }

    /// The gradient in its quarter, zeros elsewhere (on every device).
    fn backward(&self, r: &Recorded, dy: &Tensor, _want: &[bool], _weights: bool) -> Result<Option<Grads>> {
        let (_, _, h, w) = r.xs[0].dims4()?;
        let (r, col) = corner(r.c.part, h, w);
        let dx = dy.pad_with_zeros(2, r, h - r - h / 2)?.pad_with_zeros(3, col, w - col - w / 2)?;
        Ok(Some(Grads { inputs: vec![Some(dx)], weights: vec![] }))
    }
}
