//! Named, seeded parameters: the one place weights are created, listed, saved and loaded.

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// One tensor of a network. Buffers (BatchNorm's running statistics) are saved with
/// the weights but never handed to an optimiser.
#[derive(Clone)]
pub struct Param {
    pub name: String,
    pub var: Var,
    pub trainable: bool,
}

/// A network's tensors in creation order, which is also the order they are initialised
/// from the seeded RNG: the same seed always gives the same network.
#[derive(Clone, Default)]
pub struct Params {
    list: Vec<Param>,
}

impl Params {
    pub fn iter(&self) -> impl Iterator<Item = &Param> {
        self.list.iter()
    }

    pub fn trainable(&self) -> Vec<Var> {
        self.list.iter().filter(|p| p.trainable).map(|p| p.var.clone()).collect()
    }

    pub fn tensors(&self, prefix: &str) -> HashMap<String, Tensor> {
        self.list.iter().map(|p| (format!("{prefix}{}", p.name), p.var.as_tensor().clone())).collect()
    }

    /// The dtype of the tensors (all share one).
    pub fn dtype(&self) -> DType {
        self.list.first().map_or(DType::F32, |p| p.var.dtype())
    }

    /// Copies every value of `source`, a network of the same shape.
    pub fn copy_from(&self, source: &Params) -> Result<()> {
        if self.list.len() != source.list.len() {
            candle_core::bail!("copying {} tensors into {}", source.list.len(), self.list.len());
        }
        for (d, s) in self.list.iter().zip(&source.list) {
            d.var.set(&s.var.as_tensor().copy()?)?;
        }
        Ok(())
    }

    /// Clamps every trainable tensor to [-c, c] (WGAN's weight clipping).
    pub fn clamp(&self, c: f64) -> Result<()> {
        for p in self.list.iter().filter(|p| p.trainable) {
            p.var.set(&p.var.as_tensor().clamp(-c, c)?)?;
        }
        Ok(())
    }

    /// Overwrites every tensor from `tensors` (keys `prefix` + name); all must be present with the same shape.
    pub fn load(&self, tensors: &HashMap<String, Tensor>, prefix: &str) -> Result<()> {
        for p in &self.list {
            let key = format!("{prefix}{}", p.name);
            let t = tensors.get(&key).ok_or_else(|| candle_core::Error::Msg(format!("missing tensor {key}")))?;
            if t.dims() != p.var.dims() {
                candle_core::bail!("tensor {key} has shape {:?}, expected {:?}", t.dims(), p.var.dims());
            }
            p.var.set(&t.to_dtype(p.var.dtype())?.to_device(p.var.device())?)?;
        }
        Ok(())
    }
}

/// Creates the parameters of one network under a name prefix, or only counts them.
pub struct Init<'a> {
    made: Made<'a>,
    device: &'a Device,
    dtype: DType,
    prefix: String,
}

/// Where what [`Init`] makes goes.
enum Made<'a> {
    Params {
        params: &'a mut Params,
        rng: &'a mut ChaCha8Rng,
    },
    /// Only the number of values, stopping past `limit`: a network too large to train is
    /// measured without being allocated (its tensors are zero-stride views of one zero).
    Count {
        n: &'a mut usize,
        limit: usize,
    },
}

impl<'a> Init<'a> {
    /// Parameters in `dtype`: F32 for training; F64 lets tests check gradients precisely.
    pub fn new(params: &'a mut Params, rng: &'a mut ChaCha8Rng, device: &'a Device, dtype: DType) -> Self {
        Self { made: Made::Params { params, rng }, device, dtype, prefix: String::new() }
    }

    /// The number of values (weights and buffers) the network `build` makes holds, counted
    /// from its layers without allocating them; `None` when it holds more than `limit`.
    pub fn count(limit: usize, build: impl FnOnce(&mut Init) -> Result<super::Net>) -> Option<usize> {
        let mut n = 0;
        let made = Made::Count { n: &mut n, limit };
        build(&mut Init { made, device: &Device::Cpu, dtype: DType::F32, prefix: String::new() }).ok()?;
        Some(n)
    }

    /// The names' common prefix (`0.conv`): where the exported graph names this layer.
    pub fn name(&self) -> String {
        self.prefix.trim_end_matches('.').to_string()
    }

    /// A child whose names start with `name.`.
    pub fn pp(&mut self, name: impl std::fmt::Display) -> Init<'_> {
        let made = match &mut self.made {
            Made::Params { params, rng } => Made::Params { params, rng },
            Made::Count { n, limit } => Made::Count { n, limit: *limit },
        };
        Init { made, device: self.device, dtype: self.dtype, prefix: format!("{}{name}.", self.prefix) }
    }

    /// N(mean, std) values, as DCGAN's initialisation wants.
    pub fn normal(&mut self, name: &str, shape: &[usize], mean: f32, std: f32) -> Result<Tensor> {
        let dist = Normal::new(mean, std).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        self.add(name, shape, true, |rng| dist.sample(rng))
    }

    /// N(0, 1) values that are kept but not trained (spectral norm's vector).
    pub fn buffer_normal(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.add(name, shape, false, |rng| rng.sample::<f32, _>(rand_distr::StandardNormal))
    }

    pub fn constant(&mut self, name: &str, shape: &[usize], value: f32, trainable: bool) -> Result<Tensor> {
        self.add(name, shape, trainable, |_| value)
    }

    /// A tensor of `shape` filled by `value`, drawn in order from the network's RNG.
    fn add(
        &mut self,
        name: &str,
        shape: &[usize],
        trainable: bool,
        mut value: impl FnMut(&mut ChaCha8Rng) -> f32,
    ) -> Result<Tensor> {
        match &mut self.made {
            Made::Params { params, rng } => {
                let values: Vec<f32> = (0..shape.iter().product()).map(|_| value(rng)).collect();
                let var = Var::from_tensor(&Tensor::from_vec(values, shape, self.device)?.to_dtype(self.dtype)?)?;
                let tensor = var.as_tensor().clone();
                params.list.push(Param { name: format!("{}{name}", self.prefix), var, trainable });
                Ok(tensor)
            }
            Made::Count { n, limit } => {
                let more = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                match more.and_then(|m| n.checked_add(m)).filter(|total| total <= limit) {
                    Some(total) => **n = total,
                    None => candle_core::bail!("more than {limit} values"),
                }
                Tensor::zeros((), self.dtype, self.device)?.broadcast_as(shape)
            }
        }
    }
}

/// Standard-normal noise from the trainer's RNG (candle cannot seed its CPU RNG).
pub fn randn(rng: &mut ChaCha8Rng, shape: &[usize], device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.sample::<f32, _>(rand_distr::StandardNormal)).collect();
    Tensor::from_vec(values, shape, device)
}
