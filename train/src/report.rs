//! What the trainer shows its user on disk: sample grids and the loss log.

use std::path::Path;

use canard_shared::image::{batch_to_images, encode_png, grid};
use canard_shared::latent::latent_batch;
use candle_core::{Device, Tensor};

use crate::atomic::write_atomic;
use crate::model::Generator;

/// The seeds every preview grid shows: the server's `/generate?seed=S` is the same picture.
pub const PREVIEW_SEEDS: std::ops::Range<u64> = 0..64;

/// Runs the generator in evaluation mode (as exported) on the latent vectors of `seeds`.
pub fn generate(g: &Generator, seeds: &[u64], device: &Device) -> candle_core::Result<Tensor> {
    let nz = g.shape.nz;
    let z = Tensor::from_vec(latent_batch(seeds, nz), (seeds.len(), nz, 1, 1), device)?;
    g.forward(&z, false)
}

/// Writes an NCHW batch in [-1, 1] as a PNG grid, 8 to a row.
pub fn save_grid(images: &Tensor, path: &Path) -> anyhow::Result<()> {
    let (n, c, h, w) = images.dims4()?;
    let data = images.flatten_all()?.to_vec1::<f32>()?;
    let tiles = batch_to_images(&data, n, c, h, w)?;
    write_atomic(path, &encode_png(&grid(&tiles, 8, 2))?)?;
    Ok(())
}

/// One row of `losses.csv`.
#[derive(Debug, Clone, Copy)]
pub struct LossRecord {
    pub step: usize,
    pub epoch: usize,
    pub loss_d: f32,
    pub loss_g: f32,
    /// Mean D(x) on real images and D(G(z)) on fakes, as probabilities.
    pub d_real: f32,
    pub d_fake: f32,
}

pub fn write_losses_csv(records: &[LossRecord], path: &Path) -> std::io::Result<()> {
    let mut s = String::from("step,epoch,loss_d,loss_g,d_real,d_fake\n");
    for r in records {
        s.push_str(&format!(
            "{},{},{:.6},{:.6},{:.6},{:.6}\n",
            r.step, r.epoch, r.loss_d, r.loss_g, r.d_real, r.d_fake
        ));
    }
    write_atomic(path, s.as_bytes())
}
