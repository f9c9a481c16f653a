//! Forward and backward time of each convolution of the 32×32 DCGAN (ngf = ndf = 64,
//! batch 64) through canard_train::ops, with the GFLOP/s each reaches; for BENCHMARKS.md.
//!
//! ```sh
//! cargo run --release -p canard-train --example profile_ops
//! ```

use canard_train::ops::{self, Geometry};
use candle_core::{Device, Tensor};
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
        let x = Tensor::randn(0f32, 1., (n, ci, side, side), &dev)?;
        let w = Tensor::randn(0f32, 1., if tr { (ci, co, 4, 4) } else { (co, ci, 4, 4) }, &dev)?;
        let g = Geometry::new(4, s, p)?;
        let f = |x: &Tensor| {
            if tr {
                ops::conv_transpose2d(x, &w, g, (g.big(side)?, g.big(side)?))
            } else {
                ops::conv2d(x, &w, g)
            }
        };
        let y = f(&x)?;
        let osz = y.dim(2)?;
        let macs = (n * ci * co * 16 * if tr { side * side } else { osz * osz }) as f64;
        let fwd = time(|| {
            f(&x).unwrap();
        });
        let dy = Tensor::randn(0f32, 1., y.shape(), &dev)?;
        // The input's gradient (the other product) and the weight's.
        let bwd = time(|| match tr {
            true => {
                ops::conv2d(&dy, &w, g).unwrap();
                ops::conv_weight_grad(&dy, &x, g).unwrap();
            }
            false => {
                ops::conv_transpose2d(&dy, &w, g, (side, side)).unwrap();
                ops::conv_weight_grad(&x, &dy, g).unwrap();
            }
        });
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
