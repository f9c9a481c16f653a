//! Shared by the gradient tests: a central finite difference of a loss in one tensor
//! element, and autograd's gradient checked against it.

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

/// Asserts that `analytic`, autograd's gradient of `loss` in `var` (named `name`), matches
/// central differences with step `h` at each of `indices`, within `abs` + 1e-4·|gradient|.
/// How many elements it checked.
pub fn assert_matches_differences(
    name: &str,
    var: &Var,
    analytic: &[f64],
    indices: impl IntoIterator<Item = usize>,
    h: f64,
    abs: f64,
    loss: impl Fn() -> f64,
) -> usize {
    let mut checked = 0;
    for i in indices {
        let numeric = finite_difference(var, i, h, &loss);
        let a = analytic[i];
        assert!((numeric - a).abs() <= abs + 1e-4 * a.abs(), "{name}[{i}]: autograd {a}, finite difference {numeric}");
        checked += 1;
    }
    checked
}
