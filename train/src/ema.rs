//! An exponential moving average of the generator's weights (Yazıcı et al. 2019): a
//! smoother generator than the last step's, exported and previewed by default.

use candle_core::{DType, Device, Result, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::model::{DcganShape, Generator, Init, Params};
use crate::ops::{with_slice, Element, TASK_VALUES};

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
            let next =
                if e.trainable { blend(e.var.as_tensor(), s.var.as_tensor(), d)? } else { s.var.as_tensor().clone() };
            e.var.set(&next)?;
        }
        self.updates += 1;
        Ok(())
    }
}

/// ema·d + w·(1−d). On the CPU in one pass (the tensor version is four passes and three
/// allocations over every weight, each step), with the tensor version's arithmetic
/// (`x * c` is `x·c + 0` in candle), so both give the same bits.
fn blend(ema: &Tensor, w: &Tensor, d: f64) -> Result<Tensor> {
    match (ema.device().is_cpu(), ema.dtype()) {
        (true, DType::F32) => blend_cpu::<f32>(ema, w, d),
        (true, DType::F64) => blend_cpu::<f64>(ema, w, d),
        _ => (ema * d)? + (w * (1.0 - d))?,
    }
}

fn blend_cpu<T: Element>(ema: &Tensor, w: &Tensor, d: f64) -> Result<Tensor> {
    let (keep, take, zero) = (T::from_f64(d), T::from_f64(1.0 - d), T::zero());
    let out = with_slice(ema, |e: &[T]| {
        with_slice(w, |w: &[T]| {
            let mut out = vec![zero; e.len()];
            out.par_chunks_mut(TASK_VALUES).enumerate().for_each(|(i, chunk)| {
                let at = i * TASK_VALUES;
                for (j, o) in chunk.iter_mut().enumerate() {
                    *o = (e[at + j] * keep + zero) + (w[at + j] * take + zero);
                }
            });
            out
        })
    })??;
    Tensor::from_vec(out, ema.shape(), ema.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_one_pass_blend_gives_the_tensor_versions_bits() {
        let n = 3 * TASK_VALUES + 17;
        let a: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 1.3).collect();
        let b: Vec<f32> = (0..n).map(|i| ((i * 11 % 97) as f32 / 40.0 - 1.2) * 0.7).collect();
        let (a, b) = (Tensor::from_vec(a, n, &Device::Cpu).unwrap(), Tensor::from_vec(b, n, &Device::Cpu).unwrap());
        for d in [0.0, 0.5, 0.9, 0.999, 0.9999] {
            let fused = blend(&a, &b, d).unwrap().to_vec1::<f32>().unwrap();
            let tensor = ((&a * d).unwrap() + (&b * (1.0 - d)).unwrap()).unwrap().to_vec1::<f32>().unwrap();
            assert!(fused.iter().zip(&tensor).all(|(x, y)| x.to_bits() == y.to_bits()), "decay {d}");
        }
        let (a64, b64) = (a.to_dtype(DType::F64).unwrap(), b.to_dtype(DType::F64).unwrap());
        let fused = blend(&a64, &b64, 0.99).unwrap().to_vec1::<f64>().unwrap();
        let tensor = ((&a64 * 0.99).unwrap() + (&b64 * (1.0 - 0.99)).unwrap()).unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(fused, tensor);
    }
}
