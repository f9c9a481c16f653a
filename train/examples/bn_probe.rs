use canard_train::ops::{Activation, BatchNormAct};
use std::time::Instant;
fn main() {
    canard_train::alloc::keep_freed_memory();
    let (n, c, p) = (64usize, 128usize, 256usize);
    let x: Vec<f32> = (0..n * c * p).map(|i| (((i as u64 * 2654435761) >> 7) % 1000) as f32 * 0.001 - 0.5).collect();
    let dy: Vec<f32> = (0..n * c * p).map(|i| ((i * 104729) % 1000) as f32 * 0.001 - 0.5).collect();
    let gamma = vec![1.0f32; c];
    let beta = vec![0.0f32; c];
    let mut junk = vec![1u8; 600 << 20];
    for it in 0..6 {
        if it >= 3 {
            junk.iter_mut().step_by(64).for_each(|v| *v = v.wrapping_add(1));
        }
        let t = Instant::now();
        let (op, _) = BatchNormAct::of(&x, (n, c, p), 1e-5, Activation::LeakyRelu(0.2));
        let t1 = t.elapsed().as_secs_f64() * 1e3;
        let y = op.forward(&x, &gamma, &beta);
        let t2 = t.elapsed().as_secs_f64() * 1e3;
        let (dx, _, _) = op.backward(&x, &gamma, &y, &dy);
        let t3 = t.elapsed().as_secs_f64() * 1e3;
        println!("stats {:.2} fwd {:.2} bwd {:.2} ms ({})", t1, t2 - t1, t3 - t2, dx[5]);
    }
}
