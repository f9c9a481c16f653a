//! The update rules in one pass over each parameter on the CPU.
//!
//! Why: written with tensor operations, one Adam update is about thirteen passes over
//! every parameter and its moments (each with a new allocation); on the CPU that was 5%
//! of a DCGAN step. Here each value of the gradient, the moments and the weight is read
//! once. The arithmetic is exactly the tensor version's, operation for operation (candle's
//! `x * c`, `x / c` and `x + c` are `x·mul + add` in the element type), so both give the
//! same bits; `optim::tests` checks it. Other devices use the tensor version.

use candle_core::{DType, Result, Tensor};
use rayon::prelude::*;

use super::Rule;
use crate::ops::{with_slices, Element, TASK_VALUES};

/// The new (first moment, second moment, weight) of one parameter, or `None` when it is
/// not f32/f64 values on the CPU.
pub fn step(rule: Rule, lr: f64, t: u64, gmvw: [&Tensor; 4]) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    let w = gmvw[3];
    if !w.device().is_cpu() || rule == Rule::Sgd || !matches!(w.dtype(), DType::F32 | DType::F64) {
        return Ok(None);
    }
    crate::by_element!(w.dtype(), T => {
        let (m2, v2, w2) = with_slices(gmvw, |[g, m, v, w]: [&[T]; 4]| run(rule, lr, t, g, m, v, w))?;
        let make = |values: Vec<T>| Tensor::from_vec(values, w.shape(), w.device());
        Ok(Some((make(m2)?, make(v2)?, make(w2)?)))
    })
}

fn run<T: Element>(rule: Rule, lr: f64, t: u64, g: &[T], m: &[T], v: &[T], w: &[T]) -> (Vec<T>, Vec<T>, Vec<T>) {
    let c = T::from_f64;
    let (zero, one, lr) = (T::zero(), T::one(), c(lr));
    let (mut m2, mut v2, mut w2) = (vec![zero; g.len()], vec![zero; g.len()], vec![zero; g.len()]);
    let chunks = m2
        .par_chunks_mut(TASK_VALUES)
        .zip(v2.par_chunks_mut(TASK_VALUES))
        .zip(w2.par_chunks_mut(TASK_VALUES))
        .enumerate();
    match rule {
        Rule::Adam { beta1, beta2, eps } => {
            let (b1, c1, b2, c2, eps) = (c(beta1), c(1.0 - beta1), c(beta2), c(1.0 - beta2), c(eps));
            let bc1 = c(1.0 / (1.0 - beta1.powi(t as i32)));
            let bc2 = c(1.0 / (1.0 - beta2.powi(t as i32)));
            chunks.for_each(|(i, ((m2, v2), w2))| {
                let at = i * TASK_VALUES;
                for j in 0..m2.len() {
                    let (g, k) = (g[at + j], at + j);
                    let m = (m[k] * b1 + zero) + (g * c1 + zero);
                    let v = (v[k] * b2 + zero) + ((g * g) * c2 + zero);
                    let update = (m * bc1 + zero) / ((v * bc2 + zero).sqrt() * one + eps);
                    (m2[j], v2[j], w2[j]) = (m, v, w[k] - (update * lr + zero));
                }
            });
        }
        Rule::Sgd => unreachable!("plain gradient descent is left to the tensor update"),
        Rule::RmsProp { alpha, eps } => {
            let (a, ca, eps) = (c(alpha), c(1.0 - alpha), c(eps));
            chunks.for_each(|(i, ((m2, v2), w2))| {
                let at = i * TASK_VALUES;
                for j in 0..m2.len() {
                    let (g, k) = (g[at + j], at + j);
                    let v = (v[k] * a + zero) + ((g * g) * ca + zero);
                    let update = g / (v.sqrt() * one + eps);
                    (m2[j], v2[j], w2[j]) = (m[k], v, w[k] - (update * lr + zero));
                }
            });
        }
    }
    (m2, v2, w2)
}
