//! Where a DCGAN training step's time goes, phase by phase (generator forward,
//! discriminator forwards, each backward pass, each Adam update), for BENCHMARKS.md.
//!
//! ```sh
//! cargo run --release -p canard-train --example profile_step -- 64   # image size; ngf = ndf = 64, batch 64
//! ```

use canard_train::losses::bce_with_logits;
use canard_train::model::{params::randn, DcganShape};
use canard_train::optim::{Optimizer, Rule};
use canard_train::trainer::Gan;
use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    canard_train::alloc::keep_freed_memory();
    let size: usize = std::env::args().nth(1).unwrap_or("32".into()).parse()?;
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let shape = DcganShape { image_size: size, channels: 3, nz: 100, ngf: 64, ndf: 64 };
    let gan = Gan::new(shape, &mut rng, &dev)?;
    let adam = Rule::Adam { beta1: 0.5, beta2: 0.999, eps: 1e-8 };
    let mut opt_g = Optimizer::new(gan.g_params.trainable(), adam, 2e-4)?;
    let mut opt_d = Optimizer::new(gan.d_params.trainable(), adam, 2e-4)?;
    let real = randn(&mut rng, &[64, 3, size, size], &dev)?;
    let mut t = [0f64; 8];
    let names = ["g_fwd", "d_fwd_real", "d_fwd_fake", "d_backward", "d_adam", "d_fwd_g", "g_backward", "g_adam"];
    for it in 0..8 {
        let mut lap = Instant::now();
        let mut tick = |i: usize, t: &mut [f64; 8]| {
            if it >= 2 {
                t[i] += lap.elapsed().as_secs_f64();
            }
            lap = Instant::now();
        };
        let fake = gan.g.forward(&randn(&mut rng, &[64, 100, 1, 1], &dev)?, true)?;
        tick(0, &mut t);
        let d_real = gan.d.forward(&real, true)?;
        tick(1, &mut t);
        let d_fake = gan.d.forward(&fake.detach(), true)?;
        tick(2, &mut t);
        let loss_d = (bce_with_logits(&d_real, 1.0)? + bce_with_logits(&d_fake, 0.0)?)?;
        let grads = loss_d.backward()?;
        tick(3, &mut t);
        opt_d.step(&grads)?;
        drop(grads);
        tick(4, &mut t);
        let loss_g = bce_with_logits(&gan.d.frozen().forward(&fake, true)?, 1.0)?;
        tick(5, &mut t);
        let grads = loss_g.backward()?;
        tick(6, &mut t);
        opt_g.step(&grads)?;
        drop(grads);
        tick(7, &mut t);
    }
    let total: f64 = t.iter().sum();
    for (n, v) in names.iter().zip(t) {
        println!("{n:12} {:7.1} ms  {:4.1}%", v / 6.0 * 1e3, 100.0 * v / total);
    }
    println!("total        {:7.1} ms/step  {:.1} img/s", total / 6.0 * 1e3, 64.0 * 6.0 / total);
    Ok(())
}
