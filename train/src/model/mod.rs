//! The networks: parameters, layers, and the DCGAN generator and discriminator.

pub mod dcgan;
pub mod layers;
pub mod params;

pub use dcgan::{CriticNorm, DcganShape, Discriminator, Generator, Norm};
pub use params::{Init, Params};
