//! Forward and backward time of each convolution of the 32×32 DCGAN (ngf = ndf = 64,
//! batch 64) through canard_train::ops, with the GFLOP/s each reaches; for BENCHMARKS.md.
//!
//! ```sh
//! cargo run --release -p canard-train --example profile_ops
//! ```

use candle_core::{Device, Tensor, Var};
use std::time::Instant;

fn time<F: FnMut()>(mut f: F) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..5 {
        f();
    }
    t.elapsed().as_secs_f64() / 5.0
}

fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let n = 64;
    // (transposed, cin, cout, input side, stride, pad)
    let layers = [
        (true, 100, 256, 1, 1, 0),
        (true, 256, 128, 4, 2, 1),
        (true, 128, 64, 8, 2, 1),
        (true, 64, 3, 16, 2, 1),
        (false, 3, 64, 32, 2, 1),
        (false, 64, 128, 16, 2, 1),
        (false, 128, 256, 8, 2, 1),
        (false, 256, 1, 4, 1, 0),
    ];
    for (tr, ci, co, side, s, p) in layers {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1., (n, ci, side, side), &dev)?)?;
        let w = Var::from_tensor(&Tensor::randn(0f32, 1., if tr { (ci, co, 4, 4) } else { (co, ci, 4, 4) }, &dev)?)?;
        let f = |x: &Tensor, w: &Tensor| {
            if tr {
                canard_train::ops::conv_transpose2d(x, w, s, p)
            } else {
                canard_train::ops::conv2d(x, w, s, p)
            }
        };
        let y = f(x.as_tensor(), w.as_tensor())?;
        let osz = y.dim(2)?;
        let macs = (n * ci * co * 16 * if tr { side * side } else { osz * osz }) as f64;
        let fwd = time(|| {
            f(x.as_tensor(), w.as_tensor()).unwrap();
        });
        let r = Tensor::randn(0f32, 1., y.shape(), &dev)?;
        let bwd = time(|| {
            let y = f(x.as_tensor(), w.as_tensor()).unwrap();
            (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        }) - fwd;
        println!(
            "{} {ci:>3}->{co:>3} {side:>2}->{osz:>2}: fwd {:6.2} ms ({:5.0} GFLOP/s)  bwd {:6.2} ms ({:5.0} GFLOP/s)",
            if tr { "convT" } else { "conv " },
            fwd * 1e3,
            2.0 * macs / fwd / 1e9,
            bwd * 1e3,
            4.0 * macs / bwd / 1e9
        );
    }
    Ok(())
}
