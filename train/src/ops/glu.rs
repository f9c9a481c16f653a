//! The gated linear unit over channels, y = a·σ(b) for x = [a, b], as one pass forward and
//! one pass backward (fastgan's generator and decoders, after every BatchNorm).
//!
//! Why: as candle ops it is two strided views, a sigmoid, a product, and backward two
//! products, the sigmoid's own backward and two zero-padded copies back into x's shape,
//! each a pass over the largest activations. First-order only (fastgan has no penalty
//! that differentiates a gradient).

use rayon::prelude::*;

use super::Element;

/// In T's own precision: an f64 exp per value was a tenth of fastgan's 64×64 step.
fn sigmoid<T: Element>(v: T) -> T {
    T::one() / (T::one() + (T::zero() - v).exp())
}

/// The GLU on plain values: `n` samples of 2·`per` values (a, then b) → `n` of `per`.
pub fn glu_values<T: Element>(x: &[T], n: usize, per: usize) -> Vec<T> {
    let mut y = vec![T::zero(); n * per];
    y.par_chunks_mut(per).zip(x.par_chunks(2 * per)).for_each(|(y, x)| {
        let (a, b) = x.split_at(per);
        for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
            *y = a * sigmoid(b);
        }
    });
    y
}

/// [`glu_values`]' input gradient from its input and its output's gradient:
/// da = dy·σ(b), db = dy·a·σ(b)·(1 − σ(b)).
pub fn glu_grad_values<T: Element>(x: &[T], dy: &[T], n: usize, per: usize) -> Vec<T> {
    let mut dx = vec![T::zero(); 2 * n * per];
    dx.par_chunks_mut(2 * per).zip(x.par_chunks(2 * per)).zip(dy.par_chunks(per)).for_each(|((dx, x), dy)| {
        let (da, db) = dx.split_at_mut(per);
        let (a, b) = x.split_at(per);
        for i in 0..per {
            let s = sigmoid(b[i]);
            da[i] = dy[i] * s;
            db[i] = dy[i] * a[i] * s * (T::one() - s);
        }
    });
    dx
}
