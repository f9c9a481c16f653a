//! The contract between `canard-train` and `canard-serve`.
//!
//! Both binaries depend on this crate and on nothing of each other:
//! - [`manifest`]: what an exported model is (`models/NAME/model.json`);
//! - [`latent`]: the one algorithm that turns a seed into a latent vector, so the
//!   trainer's preview of seed S and the server's image for seed S are the same picture;
//! - [`image`]: generator output (NCHW, f32 in [-1, 1]) to 8-bit images, grids, PNG and GIF;
//! - [`files`]: reading a model's files without ever blocking on a FIFO or a device.

pub mod files;
pub mod image;
pub mod latent;
pub mod manifest;

pub use manifest::{Manifest, ManifestError};
