//! An exponential moving average of the generator's weights (Yazıcı et al. 2019): a
//! smoother generator than the last step's, exported and previewed by default.
//!
//! Its window is a half-life in generated images, ramped up with the run as in
//! StyleGAN2-ADA (Karras et al. 2020): at most `rampup` × the images seen so far. A
//! fixed decay (0.999 was ours) is a window of ~44,000 images at batch 64, longer than a
//! short run: the exported average then still remembered the early, bad generators
//! (QUALITY.md has the SWD of both).

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::Arch;
use crate::nn::norm::BN_MOMENTUM;
use crate::nn::params::randn;
use crate::nn::{Engine, Init, Net, Params, Shape};
use crate::ops::map;

pub struct Ema {
    pub g: Net,
    pub params: Params,
    /// Images after which an old generator's weight in the average has halved.
    pub half_life: f64,
    /// The half-life is at most this fraction of the images seen so far; 0: no ramp.
    pub rampup: f64,
    /// Updates so far (kept in checkpoints).
    pub updates: u64,
    /// The generator's classes (0: unconditional): recalibration draws pictures of each.
    classes: usize,
    device: Device,
}

impl Ema {
    /// An average that starts as a copy of `source`.
    pub fn new(
        arch: Arch,
        shape: Shape,
        source: &Params,
        half_life: f64,
        rampup: f64,
        device: &Device,
    ) -> Result<Self> {
        let mut params = Params::default();
        // The throwaway RNG only fills tensors that are overwritten at once.
        let g = arch
            .generator(&mut Init::new(&mut params, &mut ChaCha8Rng::seed_from_u64(0), device, source.dtype()), shape)?;
        params.copy_from(source)?;
        Ok(Self { g, params, half_life, rampup, updates: 0, classes: shape.classes, device: device.clone() })
    }

    /// The decay for an update of `batch` images when `seen` images have been generated
    /// (this update's included): 0.5^(batch / half-life), the half-life ramped.
    pub fn decay(&self, seen: f64, batch: usize) -> f64 {
        let h = if self.rampup > 0.0 { self.half_life.min(self.rampup * seen) } else { self.half_life };
        0.5f64.powf(batch as f64 / h.max(1e-8))
    }

    /// ema ← d·ema + (1−d)·weights with d = [`Ema::decay`]. BatchNorm's running statistics
    /// are copied, not averaged.
    pub fn update(&mut self, source: &Params, seen: f64, batch: usize) -> Result<()> {
        let d = self.decay(seen, batch);
        for (e, s) in self.params.iter().zip(source.iter()) {
            let next =
                if e.trainable { blend(e.var.as_tensor(), s.var.as_tensor(), d)? } else { s.var.as_tensor().clone() };
            e.var.set(&next)?;
        }
        self.updates += 1;
        Ok(())
    }

    /// BatchNorm's running statistics measured on the average itself ("standing
    /// statistics", Brock et al. 2019, BigGAN): [`Ema::update`] copies the raw generator's,
    /// which belong to other weights. From zero, [`STANDING_BATCHES`] batches of 64 latents
    /// from `seed` (of classes drawn evenly after them, on a conditional generator) run
    /// through the average in training mode, and the momentum-weighted sum
    /// is divided by its total weight (as Adam's bias correction), so nothing of the copied
    /// statistics is left. Training's own random numbers are not touched, and the next
    /// update copies the raw statistics back, so a resumed run is unchanged.
    pub fn recalibrate(&self, nz: usize, seed: u64) -> Result<()> {
        let stats: Vec<&Var> = self
            .params
            .iter()
            .filter(|p| p.name.ends_with("running_mean") || p.name.ends_with("running_var"))
            .map(|p| &p.var)
            .collect();
        for v in &stats {
            v.set(&v.as_tensor().zeros_like()?)?;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..STANDING_BATCHES {
            let z = randn(&mut rng, &[64, nz, 1, 1], &self.device)?.to_dtype(self.params.dtype())?;
            let k = self.classes as u32;
            let classes = (k > 0)
                .then(|| Tensor::from_vec((0..64).map(|_| rng.random_range(0..k)).collect(), 64, &self.device))
                .transpose()?;
            let pass = self.g.pass(Engine::Kernels, true, &[0])?.conditioned(classes);
            pass.forward(z, 0)?.commit()?;
        }
        let weight = 1.0 - (1.0 - BN_MOMENTUM).powi(STANDING_BATCHES as i32);
        for v in &stats {
            v.set(&(v.as_tensor() / weight)?)?;
        }
        Ok(())
    }
}

/// Batches of 64 latents for [`Ema::recalibrate`].
pub const STANDING_BATCHES: usize = 32;

/// ema·d + w·(1−d). On the CPU in one pass (the tensor version is four passes and three
/// allocations over every weight, each step), with the tensor version's arithmetic
/// (`x * c` is `x·c + 0` in candle), so both give the same bits.
fn blend(ema: &Tensor, w: &Tensor, d: f64) -> Result<Tensor> {
    if !ema.device().is_cpu() || !matches!(ema.dtype(), DType::F32 | DType::F64) {
        return (ema * d)? + (w * (1.0 - d))?;
    }
    crate::kernel!(ema.dims(), [ema => e, w => w], T => {
        let (keep, take, zero) = (d as T, (1.0 - d) as T, 0.0 as T);
        map(e, w, |x, y| (x * keep + zero) + (y * take + zero))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::TASK_VALUES;

    fn ema(half_life: f64, rampup: f64) -> Ema {
        let shape = Shape { image_size: 8, channels: 1, nz: 2, ngf: 2, ndf: 2, classes: 0 };
        let mut params = Params::default();
        let dev = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        Arch::Dcgan.generator(&mut Init::new(&mut params, &mut rng, &dev, DType::F32), shape).unwrap();
        Ema::new(Arch::Dcgan, shape, &params, half_life, rampup, &dev).unwrap()
    }

    #[test]
    fn an_images_half_life_halves_an_old_weight_and_ramps_up_with_the_run() {
        let e = ema(10_000.0, 0.05);
        // Past the ramp (10,000 ≤ 0.05 × 1M): 10,000 images in batches of 64 halve a weight.
        let d = e.decay(1e6, 64);
        assert!((d.powf(10_000.0 / 64.0) - 0.5).abs() < 1e-9, "{d}");
        // Within it: the window is 5% of what was seen, so early generators fade fast.
        assert!((e.decay(64_000.0, 64).powf(3_200.0 / 64.0) - 0.5).abs() < 1e-9);
        assert!(e.decay(64.0, 64) < 1e-5, "the first update almost replaces the initial weights");
        assert!(e.decay(1e5, 64) > e.decay(1e4, 64), "the window grows with the run");
        // The same half-life in images whatever the batch.
        assert!((e.decay(1e6, 32).powi(2) - e.decay(1e6, 64)).abs() < 1e-12);
        // No ramp: the full half-life from the first step.
        assert_eq!(ema(10_000.0, 0.0).decay(64.0, 64), e.decay(1e6, 64));
    }

    #[test]
    fn the_average_follows_the_weights_by_the_decay() {
        let mut e = ema(1_000.0, 0.0);
        let before: Vec<f32> =
            e.params.iter().next().unwrap().var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let mut source = Params::default();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let shape = Shape { image_size: 8, channels: 1, nz: 2, ngf: 2, ndf: 2, classes: 0 };
        Arch::Dcgan.generator(&mut Init::new(&mut source, &mut rng, &Device::Cpu, DType::F32), shape).unwrap();
        let w: Vec<f32> = source.iter().next().unwrap().var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        e.update(&source, 1e6, 100).unwrap();
        let d = e.decay(1e6, 100) as f32;
        let after: Vec<f32> = e.params.iter().next().unwrap().var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        for ((a, b), w) in after.iter().zip(&before).zip(&w) {
            assert!((a - (b * d + w * (1.0 - d))).abs() < 1e-6, "{a} from {b} and {w}");
        }
        assert_ne!(after, before);
        assert_eq!(e.updates, 1);
    }

    #[test]
    fn recalibrating_measures_batchnorms_statistics_on_the_average_itself() {
        let e = ema(1_000.0, 0.0);
        let param = |name: &str| e.params.iter().find(|p| p.name == name).unwrap().var.clone();
        let (running_mean, running_var) = (param("0.bn.running_mean"), param("0.bn.running_var"));
        // Statistics that belong to other weights, as `update` copies them from the raw generator.
        let c = running_mean.dim(0).unwrap();
        running_mean.set(&Tensor::full(5f32, c, &Device::Cpu).unwrap()).unwrap();
        running_var.set(&Tensor::full(9f32, c, &Device::Cpu).unwrap()).unwrap();
        e.recalibrate(2, 7).unwrap();
        // The first layer's own per-channel mean and variance over many fresh latents.
        let z = randn(&mut ChaCha8Rng::seed_from_u64(99), &[8192, 2, 1, 1], &Device::Cpu).unwrap();
        let first = z.conv_transpose2d(param("0.conv.weight").as_tensor(), 0, 0, 1, 1).unwrap();
        let flat = first.transpose(0, 1).unwrap().flatten_from(1).unwrap();
        let mean: Vec<f32> = flat.mean(1).unwrap().to_vec1().unwrap();
        let var: Vec<f32> = flat
            .broadcast_sub(&flat.mean_keepdim(1).unwrap())
            .unwrap()
            .sqr()
            .unwrap()
            .mean(1)
            .unwrap()
            .to_vec1()
            .unwrap();
        let (rm, rv): (Vec<f32>, Vec<f32>) =
            (running_mean.as_tensor().to_vec1().unwrap(), running_var.as_tensor().to_vec1().unwrap());
        for i in 0..c {
            assert!(
                (rm[i] - mean[i]).abs() < 0.1 * var[i].sqrt(),
                "channel {i}: mean {} vs {} (var {})",
                rm[i],
                mean[i],
                var[i]
            );
            assert!((rv[i] / var[i] - 1.0).abs() < 0.15, "channel {i}: variance {} vs {}", rv[i], var[i]);
        }
    }

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
