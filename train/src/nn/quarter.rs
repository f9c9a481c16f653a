//! One quarter of a map: the part of fastgan's critic's 16×16 features its second decoder
//! rebuilds, chosen per pass ([`super::Ctx::part`], 0–3, row-major).

use candle_core::{Result, Tensor};

use super::{Ctx, Layer};

pub struct Quarter;

impl Layer for Quarter {
    fn apply(&self, xs: &[Tensor], c: &Ctx) -> Result<Tensor> {
        let (_, _, h, w) = xs[0].dims4()?;
        let (r, col) = (c.part / 2 % 2, c.part % 2);
        xs[0].narrow(2, r * h / 2, h / 2)?.narrow(3, col * w / 2, w / 2)
    }
}
