//! The sizes every architecture's networks are made from.

use serde::{Deserialize, Serialize};

pub use canard_shared::manifest::MAX_CLASSES;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    pub image_size: usize,
    pub channels: usize,
    pub nz: usize,
    pub ngf: usize,
    pub ndf: usize,
    /// Kinds of picture a conditional network makes (`--classes`); 0: unconditional.
    #[serde(default)]
    pub classes: usize,
}

impl Shape {
    /// Doublings after the first 4×4 layer: log2(size) − 2.
    pub fn stages(&self) -> usize {
        self.image_size.trailing_zeros() as usize - 2
    }

    /// The generator's input channels: z, and as many for the class's embedding.
    pub fn latent_width(&self) -> usize {
        if self.classes > 0 {
            2 * self.nz
        } else {
            self.nz
        }
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
        if self.classes == 1 || self.classes > MAX_CLASSES {
            return Err(format!("a conditional network needs 2 to {MAX_CLASSES} classes, not {}", self.classes));
        }
        Ok(())
    }
}
