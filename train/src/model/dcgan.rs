//! DCGAN (Radford et al. 2016) sized from the image size, as pytorch/examples `dcgan`
//! at 64×64 but for any power of two from 8 up.
//!
//! Generator: z [N, nz, 1, 1] → ConvT(4, s1, p0) to 4×4 → (ConvT(4, s2, p1), BN, ReLU)
//! doubling the side and halving the width until `size/2` → ConvT(4, s2, p1) → Tanh.
//! Discriminator mirrors it with Conv, BN (not on the first layer) and LeakyReLU(0.2),
//! ending in one logit per image (the loss applies the sigmoid, stably).

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

use super::layers::{leaky_relu, BatchNorm2d, Conv2d, ConvTranspose2d, LayerNorm2d, KERNEL, LEAKY_SLOPE};
use super::params::Init;
use crate::ops::Activation;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DcganShape {
    pub image_size: usize,
    pub channels: usize,
    pub nz: usize,
    pub ngf: usize,
    pub ndf: usize,
}

impl DcganShape {
    /// Upsampling blocks after the first 4×4 layer: log2(size) - 2.
    pub fn stages(&self) -> usize {
        self.image_size.trailing_zeros() as usize - 2
    }

    /// The generator's widths, input to output: nz, ngf·2^(n−1), …, ngf, channels.
    pub fn generator_widths(&self) -> Vec<usize> {
        let n = self.stages();
        let hidden = (0..n).map(|i| self.ngf << (n - 1 - i));
        std::iter::once(self.nz).chain(hidden).chain(std::iter::once(self.channels)).collect()
    }

    /// The generator's parameter count (weights, BatchNorm's four vectors per hidden layer),
    /// computed without building it.
    pub fn generator_parameters(&self) -> Option<usize> {
        let w = self.generator_widths();
        let convs = w
            .windows(2)
            .try_fold(0usize, |sum, p| sum.checked_add(p[0].checked_mul(p[1])?.checked_mul(KERNEL * KERNEL)?))?;
        let norms = w[1..w.len() - 1].iter().try_fold(0usize, |sum, &c| sum.checked_add(c.checked_mul(4)?))?;
        convs.checked_add(norms)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        if !self.image_size.is_power_of_two() || !(8..=1024).contains(&self.image_size) {
            return Err(format!("image size must be a power of two from 8 to 1024, not {}", self.image_size));
        }
        if self.channels != 1 && self.channels != 3 {
            return Err(format!("channels must be 1 or 3, not {}", self.channels));
        }
        if self.nz == 0 || self.ngf == 0 || self.ndf == 0 {
            return Err("nz, ngf and ndf must be positive".into());
        }
        Ok(())
    }
}

/// One generator block: a transposed conv, then BatchNorm + ReLU except on the last.
pub struct GenBlock {
    pub conv: ConvTranspose2d,
    pub bn: Option<BatchNorm2d>,
}

pub struct Generator {
    pub shape: DcganShape,
    pub blocks: Vec<GenBlock>,
}

impl Generator {
    pub fn new(init: &mut Init, shape: DcganShape) -> Result<Self> {
        let widths = shape.generator_widths();
        let n = widths.len() - 2;
        let mut blocks = Vec::with_capacity(n + 1);
        for (i, pair) in widths.windows(2).enumerate() {
            let (c_in, c_out, last) = (pair[0], pair[1], i == n);
            let (stride, padding) = if i == 0 { (1, 0) } else { (2, 1) };
            let mut b = init.pp(i);
            let conv = ConvTranspose2d::new(&mut b.pp("conv"), c_in, c_out, stride, padding)?;
            let bn = if last { None } else { Some(BatchNorm2d::new(&mut b.pp("bn"), c_out)?) };
            blocks.push(GenBlock { conv, bn });
        }
        Ok(Self { shape, blocks })
    }

    /// z: [N, nz, 1, 1] → images [N, C, size, size] in [-1, 1].
    pub fn forward(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = z.clone();
        for b in &self.blocks {
            x = b.conv.forward(&x)?;
            x = match &b.bn {
                Some(bn) => bn.forward_act(&x, train, Activation::Relu)?,
                None => x.tanh()?,
            };
        }
        Ok(x)
    }
}

/// How the discriminator (critic) normalises its hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CriticNorm {
    Batch,
    Layer,
}

pub enum Norm {
    Batch(BatchNorm2d),
    Layer(LayerNorm2d),
}

pub struct DiscBlock {
    pub conv: Conv2d,
    pub norm: Option<Norm>,
}

pub struct Discriminator {
    pub blocks: Vec<DiscBlock>,
}

impl Discriminator {
    pub fn new(init: &mut Init, shape: DcganShape, norm: CriticNorm) -> Result<Self> {
        let n = shape.stages();
        let mut blocks = Vec::with_capacity(n + 1);
        let mut c_in = shape.channels;
        for i in 0..=n {
            let last = i == n;
            let c_out = if last { 1 } else { shape.ndf << i };
            let (stride, padding) = if last { (1, 0) } else { (2, 1) };
            let mut b = init.pp(i);
            let conv = Conv2d::new(&mut b.pp("conv"), c_in, c_out, stride, padding)?;
            let norm = match (i == 0 || last, norm) {
                (true, _) => None,
                (false, CriticNorm::Batch) => Some(Norm::Batch(BatchNorm2d::new(&mut b.pp("bn"), c_out)?)),
                (false, CriticNorm::Layer) => Some(Norm::Layer(LayerNorm2d::new(&mut b.pp("ln"), c_out)?)),
            };
            blocks.push(DiscBlock { conv, norm });
            c_in = c_out;
        }
        Ok(Self { blocks })
    }

    /// The same critic with its parameters detached, for the generator's update: the
    /// gradient reaches the images (and the generator behind them) but not the critic's
    /// weights, whose gradients that update would throw away. A sixth of a DCGAN step's
    /// arithmetic (the critic's weight gradients on the fake batch), for identical results.
    /// BatchNorm's running statistics are shared, so they keep being updated as before.
    pub fn frozen(&self) -> Self {
        let blocks = self
            .blocks
            .iter()
            .map(|b| DiscBlock {
                conv: Conv2d { weight: b.conv.weight.detach(), ..b.conv },
                norm: b.norm.as_ref().map(|n| match n {
                    Norm::Batch(bn) => Norm::Batch(bn.frozen()),
                    Norm::Layer(ln) => Norm::Layer(LayerNorm2d { gamma: ln.gamma.detach(), beta: ln.beta.detach() }),
                }),
            })
            .collect();
        Self { blocks }
    }

    /// images [N, C, size, size] → logits (DCGAN) or critic scores (WGAN) [N].
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = x.clone();
        let last = self.blocks.len() - 1;
        for (i, b) in self.blocks.iter().enumerate() {
            x = b.conv.forward(&x)?;
            x = match &b.norm {
                Some(Norm::Batch(bn)) => bn.forward_act(&x, train, Activation::LeakyRelu(LEAKY_SLOPE))?,
                Some(Norm::Layer(ln)) => leaky_relu(&ln.forward(&x)?)?,
                None if i != last => leaky_relu(&x)?,
                None => x,
            };
        }
        x.flatten_all()
    }
}
