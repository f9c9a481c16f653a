//! Shared by the gradient tests: a central finite difference of a loss in one tensor element.

use candle_core::{Tensor, Var};

/// (loss(w + h) − loss(w − h)) / 2h for element `i` of `var`, restoring `var` afterwards.
pub fn finite_difference(var: &Var, i: usize, h: f64, loss: impl Fn() -> f64) -> f64 {
    let original = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let at = |delta: f64| {
        let mut v = original.clone();
        v[i] += delta;
        var.set(&Tensor::from_vec(v, var.dims(), var.device()).unwrap()).unwrap();
        let l = loss();
        var.set(&Tensor::from_vec(original.clone(), var.dims(), var.device()).unwrap()).unwrap();
        l
    };
    (at(h) - at(-h)) / (2.0 * h)
}
