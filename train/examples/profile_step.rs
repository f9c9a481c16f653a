//! Where a DCGAN training step's time goes on the CPU, for BENCHMARKS.md: the step's
//! phases as the trainer runs them (`canard_train::nn` with canard's kernels), then the
//! thread-time of each kind of work inside the convolutions and BatchNorm (`Norm`).
//!
//! ```sh
//! cargo run --release -p canard-train --example profile_step -- 64   # image size; ngf = ndf = 64, batch 64
//! ```

use canard_train::config::Arch;
use canard_train::losses::bce_with_logits;
use canard_train::nn::params::randn;
use canard_train::nn::{backward_both, Engine, Shape};
use canard_train::ops::profile;
use canard_train::optim::{Optimizer, Rule};
use canard_train::trainer::Gan;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

const NAMES: [&str; 8] = [
    "G forward",
    "D forward, real and fake",
    "D backward ×2",
    "D Adam",
    "D forward, fake for G",
    "D backward, to the pictures",
    "G backward",
    "G Adam",
];

/// The loss's gradient with respect to the logits, as the step takes it from candle.
fn dlogits(logits: &Tensor, target: f64) -> anyhow::Result<Vec<(usize, Tensor)>> {
    let v = Var::from_tensor(&logits.flatten_all()?.detach())?;
    let g = bce_with_logits(v.as_tensor(), target)?.backward()?;
    Ok(vec![(0, g.get(v.as_tensor()).expect("a gradient").clone())])
}

fn main() -> anyhow::Result<()> {
    canard_train::alloc::keep_freed_memory();
    let size: usize = std::env::args().nth(1).unwrap_or("32".into()).parse()?;
    let (steps, warmup) = (6, 2);
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let shape = Shape { image_size: size, channels: 3, nz: 100, ngf: 64, ndf: 64, classes: 0 };
    let gan = Gan::new(Arch::Dcgan, shape, &mut rng, &dev, DType::F32)?;
    let adam = Rule::Adam { beta1: 0.5, beta2: 0.999, eps: 1e-8 };
    let mut opt_g = Optimizer::new(gan.g_params.trainable(), adam, 2e-4)?;
    let mut opt_d = Optimizer::new(gan.d_params.trainable(), adam, 2e-4)?;
    let real = randn(&mut rng, &[64, 3, size, size], &dev)?;
    let mut t = [0f64; 8];
    let mut work = [0f64; 5];
    let mut flop = 0;
    for it in 0..warmup + steps {
        let mut lap = Instant::now();
        let mut tick = |i: usize, t: &mut [f64; 8]| {
            if it >= warmup {
                t[i] += lap.elapsed().as_secs_f64();
            }
            lap = Instant::now();
        };
        let noise: Tensor = randn(&mut rng, &[64, 100, 1, 1], &dev)?;
        let g_pass = gan.g.pass(Engine::Kernels, true, &[0])?;
        let made = g_pass.forward(noise, 0)?;
        made.commit()?;
        let fake = made.output(0)?.clone();
        tick(0, &mut t);
        let d_pass = gan.d.pass(Engine::Kernels, true, &[0])?;
        let (d_real, d_fake) = d_pass.forward_both(real.clone(), fake.clone(), 0)?;
        d_real.commit()?;
        d_fake.commit()?;
        tick(1, &mut t);
        let grads = backward_both(
            &gan.d,
            (&d_real, dlogits(d_real.output(0)?, 1.0)?),
            (&d_fake, dlogits(d_fake.output(0)?, 0.0)?),
        )?;
        tick(2, &mut t);
        opt_d.step(&grads)?;
        tick(3, &mut t);
        let d_pass = gan.d.pass(Engine::Kernels, true, &[0])?;
        let d_gen = d_pass.forward(fake, 0)?;
        d_gen.commit()?;
        tick(4, &mut t);
        let dfake = d_gen.backward(dlogits(d_gen.output(0)?, 1.0)?, None, true)?.expect("the input's gradient");
        tick(5, &mut t);
        let mut grads = GradStore::default();
        made.backward(vec![(0, dfake)], Some(&mut grads), false)?;
        tick(6, &mut t);
        opt_g.step(&grads)?;
        tick(7, &mut t);
        let (secs, f) = profile::take();
        if it >= warmup {
            secs.iter().enumerate().for_each(|(i, s)| work[i] += s.1);
            flop += f;
        }
    }
    let n = steps as f64;
    let total: f64 = t.iter().sum();
    println!("| phase | ms per step | share |\n|---|---:|---:|");
    for (name, v) in NAMES.iter().zip(t) {
        println!("| {name} | {:.1} | {:.1}% |", v / n * 1e3, 100.0 * v / total);
    }
    println!("| **total** | **{:.1}** ({:.1} img/s) | |", total / n * 1e3, 64.0 * n / total);
    let threads = rayon::current_num_threads() as f64;
    println!("\n| work | ms per step ({threads} threads) |\n|---|---:|");
    let mut covered = 0.0;
    for (w, v) in profile::ALL.iter().zip(work) {
        let ms = v / n * 1e3 / if w.per_thread() { threads } else { 1.0 };
        covered += ms;
        println!("| {w:?} | {ms:.1} |");
    }
    println!("| everything else | {:.1} |", total / n * 1e3 - covered);
    let gemm = work[0] / n;
    println!(
        "\nmatrix products: {:.1} GFLOP per step, {:.0} GFLOP/s per thread while in them",
        flop as f64 / n / 1e9,
        flop as f64 / n / gemm / 1e9
    );
    Ok(())
}
