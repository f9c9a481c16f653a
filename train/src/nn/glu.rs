//! The gated linear unit over channels (Dauphin et al.): x = [a, b] with 2C channels →
//! a·σ(b), after every BatchNorm of fastgan's generator and decoders.

use candle_core::{bail, Result, Tensor};

use super::{Ctx, Grads, Layer, Recorded, Saved};
use crate::export::onnx::Emitter;
use crate::ops::glu::{glu_grad_values, glu_values};

pub struct Glu;

impl Layer for Glu {
    fn apply(&self, xs: &[Tensor], _c: &Ctx) -> Result<Tensor> {
        let c = xs[0].dim(1)? / 2;
        xs[0].narrow(1, 0, c)?.mul(&candle_nn::ops::sigmoid(&xs[0].narrow(1, c, c)?)?)
    }

    fn forward(&self, xs: &[&Tensor], c: &Ctx) -> Result<Option<(Tensor, Saved)>> {
        if !c.kernels(xs[0]) {
            return Ok(None);
        }
        let (n, ch, h, w) = xs[0].dims4()?;
        let y = crate::kernel!(&[n, ch / 2, h, w], [xs[0] => x], T => glu_values(x, n, ch / 2 * h * w))?;
        Ok(Some((y, None)))
    }

    fn backward(&self, r: &Recorded, dy: &Tensor, _want: &[bool], _weights: bool) -> Result<Option<Grads>> {
        let x = r.xs[0];
        if !r.c.kernels(x) {
            return Ok(None);
        }
        let (n, ch, h, w) = x.dims4()?;
        if dy.dims() != [n, ch / 2, h, w] {
            bail!("glu backward: a gradient of {:?} for an input of {:?}", dy.dims(), x.dims());
        }
        let dx = crate::kernel!(x.dims(), [x => x, dy => d], T => glu_grad_values(x, d, n, ch / 2 * h * w))?;
        Ok(Some(Grads { inputs: vec![Some(dx)], weights: vec![] }))
    }

    /// Split in two, the second half's Sigmoid gates the first.
    fn onnx(&self, e: &mut Emitter, out: &str, xs: &[&str]) -> Result<()> {
        let (a, b, gate) = (format!("{out}.a"), format!("{out}.b"), format!("{out}.gate"));
        e.split(&format!("{out}.split"), xs[0], [&a, &b]);
        e.node("Sigmoid", &gate, &[&b], vec![]);
        e.node("Mul", out, &[&a, &gate], vec![]);
        Ok(())
    }
}
