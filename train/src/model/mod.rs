//! The networks: parameters, layers, and each architecture's generator and discriminator.

pub mod dcgan;
pub mod fastgan;
pub mod layers;
pub mod params;

use candle_core::{Device, Result, Tensor};

pub use dcgan::{CriticNorm, DcganShape, Norm};
pub use params::{Init, Params};

/// Which pair of networks: DCGAN's (dcgan, wgan, wgan-gp) or canard's small-data one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dcgan,
    Fastgan,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Dcgan => "dcgan",
            Kind::Fastgan => "fastgan",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Kind::Dcgan, Kind::Fastgan].into_iter().find(|k| k.name() == name)
    }

    /// Its generator's parameter count, computed without building it.
    pub fn generator_parameters(self, shape: &DcganShape) -> Option<usize> {
        match self {
            Kind::Dcgan => shape.generator_parameters(),
            Kind::Fastgan => fastgan::generator_parameters(shape),
        }
    }

    pub fn validate(self, shape: &DcganShape) -> std::result::Result<(), String> {
        match self {
            Kind::Dcgan => shape.validate(),
            Kind::Fastgan => fastgan::validate(shape),
        }
    }
}

pub enum Generator {
    Dcgan(dcgan::Generator),
    Fastgan(fastgan::Generator),
}

impl Generator {
    pub fn new(init: &mut Init, kind: Kind, shape: DcganShape) -> Result<Self> {
        Ok(match kind {
            Kind::Dcgan => Self::Dcgan(dcgan::Generator::new(init, shape)?),
            Kind::Fastgan => Self::Fastgan(fastgan::Generator::new(init, shape)?),
        })
    }

    pub fn kind(&self) -> Kind {
        match self {
            Self::Dcgan(_) => Kind::Dcgan,
            Self::Fastgan(_) => Kind::Fastgan,
        }
    }

    pub fn shape(&self) -> DcganShape {
        match self {
            Self::Dcgan(g) => g.shape,
            Self::Fastgan(g) => g.shape,
        }
    }

    /// z: [N, nz, 1, 1] → images [N, C, size, size] in [-1, 1].
    pub fn forward(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Self::Dcgan(g) => g.forward(z, train),
            Self::Fastgan(g) => g.forward(z, train),
        }
    }

    pub fn device(&self) -> &Device {
        match self {
            Self::Dcgan(g) => g.blocks[0].conv.weight.device(),
            Self::Fastgan(g) => g.first.weight.device(),
        }
    }

    /// Its BatchNorm layers, input to output.
    pub fn batch_norms(&self) -> Vec<&layers::BatchNorm2d> {
        match self {
            Self::Dcgan(g) => g.blocks.iter().filter_map(|b| b.bn.as_ref()).collect(),
            Self::Fastgan(g) => std::iter::once(&g.first_bn).chain(g.ups.iter().map(|u| &u.bn)).collect(),
        }
    }

    /// The DCGAN generator, if this is one.
    pub fn dcgan(&self) -> Option<&dcgan::Generator> {
        match self {
            Self::Dcgan(g) => Some(g),
            Self::Fastgan(_) => None,
        }
    }

    /// The fastgan generator, if this is one.
    pub fn fastgan(&self) -> Option<&fastgan::Generator> {
        match self {
            Self::Fastgan(g) => Some(g),
            Self::Dcgan(_) => None,
        }
    }
}

pub enum Discriminator {
    Dcgan(dcgan::Discriminator),
    Fastgan(fastgan::Discriminator),
}

impl Discriminator {
    /// `norm` is the DCGAN critic's (fastgan's is fixed).
    pub fn new(init: &mut Init, kind: Kind, shape: DcganShape, norm: CriticNorm) -> Result<Self> {
        Ok(match kind {
            Kind::Dcgan => Self::Dcgan(dcgan::Discriminator::new(init, shape, norm)?),
            Kind::Fastgan => Self::Fastgan(fastgan::Discriminator::new(init, shape)?),
        })
    }

    /// images [N, C, size, size] → logits or critic scores [N].
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Self::Dcgan(d) => d.forward(x, train),
            Self::Fastgan(d) => d.forward(x, train),
        }
    }

    /// The same network with its parameters detached, for the generator's update.
    pub fn frozen(&self) -> Self {
        match self {
            Self::Dcgan(d) => Self::Dcgan(d.frozen()),
            Self::Fastgan(d) => Self::Fastgan(d.frozen()),
        }
    }

    pub fn dcgan(&self) -> Option<&dcgan::Discriminator> {
        match self {
            Self::Dcgan(d) => Some(d),
            Self::Fastgan(_) => None,
        }
    }

    pub fn fastgan(&self) -> Option<&fastgan::Discriminator> {
        match self {
            Self::Fastgan(d) => Some(d),
            Self::Dcgan(_) => None,
        }
    }
}
