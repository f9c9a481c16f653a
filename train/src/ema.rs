//! An exponential moving average of the generator's weights (Yazıcı et al. 2019): a
//! smoother generator than the last step's, exported and previewed by default.

use candle_core::{Device, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::model::{DcganShape, Generator, Init, Params};

pub struct Ema {
    pub g: Generator,
    pub params: Params,
    pub decay: f64,
    /// Updates so far: early on the average warms up faster (see [`Ema::update`]).
    pub updates: u64,
}

impl Ema {
    /// An average that starts as a copy of `source`.
    pub fn new(shape: DcganShape, source: &Params, decay: f64, device: &Device) -> Result<Self> {
        let mut params = Params::default();
        // The throwaway RNG only fills tensors that are overwritten at once.
        let g = Generator::new(
            &mut Init::new(&mut params, &mut ChaCha8Rng::seed_from_u64(0), device, source.dtype()),
            shape,
        )?;
        params.copy_from(source)?;
        Ok(Self { g, params, decay, updates: 0 })
    }

    /// ema ← d·ema + (1−d)·weights with d = min(decay, (1+n)/(10+n)), as TensorFlow's
    /// ExponentialMovingAverage with `num_updates`: a short run is not dominated by the
    /// initial weights. BatchNorm's running statistics are copied, not averaged.
    pub fn update(&mut self, source: &Params) -> Result<()> {
        let n = self.updates as f64;
        let d = self.decay.min((1.0 + n) / (10.0 + n));
        for (e, s) in self.params.iter().zip(source.iter()) {
            let next = if e.trainable {
                ((e.var.as_tensor() * d)? + (s.var.as_tensor() * (1.0 - d))?)?
            } else {
                s.var.as_tensor().clone()
            };
            e.var.set(&next)?;
        }
        self.updates += 1;
        Ok(())
    }
}
