//! Skip-layer excitation (FastGAN): channel gates for a big map from a small one,
//! big · σ(excite(LeakyReLU₀.₁(squeeze(pool₄(small))))), with `squeeze` a 4×4 and
//! `excite` a 1×1 convolution and pool₄ an average pooling to 4×4. Its maps are small, so
//! it runs on candle's ops on every device.

use candle_core::{Result, Tensor};

use super::{Ctx, Init, Layer};
use crate::export::onnx::Emitter;
use crate::ops::Geometry;

/// The LeakyReLU slope between its convolutions (the paper's).
pub const EXCITE_SLOPE: f64 = 0.1;

pub struct Excite {
    pub name: String,
    /// The small map's side.
    pub side: usize,
    pub squeeze: Tensor,
    pub excite: Tensor,
}

impl Excite {
    /// Gates `c_big` channels from a map of `c_small` channels and side `side`.
    pub fn new(init: &mut Init, c_small: usize, c_big: usize, side: usize) -> Result<Self> {
        let squeeze = init.pp("squeeze").normal("weight", &[c_big, c_small, 4, 4], 0.0, 0.02)?;
        let excite = init.pp("excite").normal("weight", &[c_big, c_big, 1, 1], 0.0, 0.02)?;
        Ok(Self { name: init.name(), side, squeeze, excite })
    }
}

impl Layer for Excite {
    fn params(&self) -> Vec<&Tensor> {
        vec![&self.squeeze, &self.excite]
    }

    /// Inputs: the small map, then the big one.
    fn apply(&self, xs: &[Tensor], c: &Ctx) -> Result<Tensor> {
        let (small, big) = (&xs[0], &xs[1]);
        let side = small.dim(2)?;
        let pooled = if side == 4 { small.clone() } else { small.avg_pool2d(side / 4)? };
        let s = pooled.conv2d(&c.weights[0], 0, 1, 1, 1)?;
        let s = s.mul(&((s.gt(0.0)?.to_dtype(s.dtype())? * (1.0 - EXCITE_SLOPE))? + EXCITE_SLOPE)?)?;
        let gate = candle_nn::ops::sigmoid(&s.conv2d(&c.weights[1], 0, 1, 1, 1)?)?;
        big.broadcast_mul(&gate)
    }

    fn onnx(&self, e: &mut Emitter, out: &str, xs: &[&str]) -> Result<()> {
        let name = &self.name;
        let pooled = match self.side / 4 {
            0 | 1 => xs[0].to_string(),
            f => {
                let pool = format!("{name}.pool");
                let f = f as i64;
                e.node("AveragePool", &pool, &[xs[0]], vec![Emitter::ints("kernel_shape", vec![f, f]), Emitter::ints("strides", vec![f, f])]);
                pool
            }
        };
        let one = Geometry::new(1, 1, 0)?;
        let w = e.initializer(&format!("{name}.squeeze.weight"), &self.squeeze)?;
        e.conv(&format!("{name}.squeeze"), &pooled, &w, Geometry::new(4, 1, 0)?, false);
        let act = format!("{name}.act");
        e.node("LeakyRelu", &act, &[&format!("{name}.squeeze")], vec![Emitter::float("alpha", EXCITE_SLOPE as f32)]);
        let w = e.initializer(&format!("{name}.excite.weight"), &self.excite)?;
        e.conv(&format!("{name}.excite"), &act, &w, one, false);
        let gate = format!("{name}.gate");
        e.node("Sigmoid", &gate, &[&format!("{name}.excite")], vec![]);
        e.node("Mul", out, &[xs[1], &gate], vec![]);
        Ok(())
    }
}
