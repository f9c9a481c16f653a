//! Our im2col + GEMM convolutions (canard_train::ops) against candle's own CPU kernels:
//! outputs, first-order gradients of input and weight, and the second-order gradients
//! WGAN-GP's penalty takes, on odd sizes, strides 1 and 2, padding 0 and 1, batch 1 and 3.

use canard_train::losses::SECOND_ORDER_ENV;
use canard_train::ops;
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
mod common;

/// (batch, in channels, out channels, height, width, kernel, stride, padding)
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);
const CASES: &[Case] = &[
    (1, 1, 1, 5, 5, 3, 1, 0),
    (1, 3, 2, 7, 5, 3, 1, 1),
    (3, 2, 4, 9, 7, 4, 2, 1),
    (3, 4, 3, 8, 8, 4, 2, 1),
    (1, 5, 2, 11, 6, 4, 2, 0),
    (3, 3, 5, 6, 9, 3, 2, 1),
    (2, 6, 1, 4, 4, 4, 1, 0),
    (3, 2, 3, 13, 13, 5, 2, 0),
];

fn random(rng: &mut ChaCha8Rng, shape: &[usize]) -> Var {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
}

fn assert_close(what: &str, ours: &Tensor, reference: &Tensor) {
    assert_eq!(ours.dims(), reference.dims(), "{what}: shapes differ");
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= 2e-5 * scale, "{what}[{i}]: ours {x}, candle {y} (scale {scale})");
    }
}

type ConvFn = fn(&Tensor, &Tensor, usize, usize) -> candle_core::Result<Tensor>;

struct Grads {
    y: Tensor,
    gx: Tensor,
    gw: Tensor,
    /// d(|dL/dx|²)/dw: the penalty's shape, a function of the input gradient differentiated again.
    hw: Tensor,
    /// d(|dL/dx|²)/dx, zero for a bilinear loss.
    hx: f32,
}

/// The output, the gradients of a random projection ⟨y, r⟩, and second-order gradients.
fn grads(f: ConvFn, x: &Var, w: &Var, s: usize, p: usize) -> candle_core::Result<Grads> {
    let y = f(x.as_tensor(), w.as_tensor(), s, p)?;
    let r = random(&mut ChaCha8Rng::seed_from_u64(99), y.dims());
    let g = (&y * r.as_tensor())?.sum_all()?.backward()?;
    let (gx, gw) = (g.get(x.as_tensor()).unwrap().clone(), g.get(w.as_tensor()).unwrap().clone());
    let second = gx.sqr()?.sum_all()?.backward()?;
    let hw = second.get(w.as_tensor()).unwrap().clone();
    let hx = match second.get(x.as_tensor()) {
        Some(t) => t.abs()?.sum_all()?.to_scalar::<f32>()?,
        None => 0.0,
    };
    Ok(Grads { y, gx, gw, hw, hx })
}

/// Compares ours with candle's kernels where candle's backward handles the shape; returns
/// whether it did (candle 0.11's conv2d backward fails on sides a stride-2 kernel does not tile).
fn compare_with_candle(what: &str, x: &Var, w: &Var, s: usize, p: usize, ours: ConvFn, reference: ConvFn) -> bool {
    let a = grads(ours, x, w, s, p).unwrap();
    let Ok(b) = grads(reference, x, w, s, p) else { return false };
    assert_close(&format!("{what} output"), &a.y, &b.y);
    assert_close(&format!("{what} d/dx"), &a.gx, &b.gx);
    assert_close(&format!("{what} d/dw"), &a.gw, &b.gw);
    assert_close(&format!("{what} second order d/dw"), &a.hw, &b.hw);
    assert!(a.hx < 1e-6 && b.hx < 1e-6, "{what}: second-order d/dx should vanish");
    true
}

/// ⟨f(x, w), r⟩ is linear in each operand, so a unit step's difference is its exact
/// derivative: checks ours in f64 element by element, on every shape.
fn check_against_differences(what: &str, x: &Var, w: &Var, s: usize, p: usize, f: ConvFn) {
    let f64v = |v: &Var| Var::from_tensor(&v.as_tensor().to_dtype(DType::F64).unwrap()).unwrap();
    let (x, w) = (f64v(x), f64v(w));
    let y = f(x.as_tensor(), w.as_tensor(), s, p).unwrap();
    let r = random(&mut ChaCha8Rng::seed_from_u64(7), y.dims()).as_tensor().to_dtype(DType::F64).unwrap();
    let loss = || {
        (f(x.as_tensor(), w.as_tensor(), s, p).unwrap() * &r).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
    };
    let g = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    for (name, v) in [("x", &x), ("w", &w)] {
        let analytic = g.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        for (i, a) in analytic.iter().enumerate() {
            let numeric = common::finite_difference(v, i, 1.0, loss);
            assert!((numeric - a).abs() <= 1e-9 * (1.0 + a.abs()), "{what} d/d{name}[{i}]: {a} vs {numeric}");
        }
    }
}

fn check_all(name: &str, transposed: bool, ours: ConvFn, reference: ConvFn) {
    std::env::set_var(SECOND_ORDER_ENV, "1");
    let mut rng = ChaCha8Rng::seed_from_u64(transposed as u64);
    let mut with_candle = 0;
    for &(n, ci, co, h, w, k, s, p) in CASES {
        // Transposed convolutions run on the small side: a conv's output size.
        let (h, w) = if transposed { ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1) } else { (h, w) };
        let x = random(&mut rng, &[n, ci, h, w]);
        let wt = random(&mut rng, &if transposed { [ci, co, k, k] } else { [co, ci, k, k] });
        let what = format!("{name} n{n} {ci}→{co} {h}×{w} k{k} s{s} p{p}");
        with_candle += compare_with_candle(&what, &x, &wt, s, p, ours, reference) as usize;
        check_against_differences(&what, &x, &wt, s, p, ours);
    }
    assert!(with_candle >= CASES.len() - 2, "{name}: candle's reference ran on only {with_candle} cases");
}

#[test]
fn conv2d_matches_candle_and_finite_differences() {
    check_all("conv2d", false, ops::conv2d, |x, w, s, p| x.conv2d(w, p, s, 1, 1));
}

#[test]
fn conv_transpose2d_matches_candle_and_finite_differences() {
    check_all("conv_transpose2d", true, ops::conv_transpose2d, |x, w, s, p| x.conv_transpose2d(w, p, 0, s, 1));
}

/// Shapes big enough that every product splits its work: several groups of images (one
/// of them short) and several blocks of channels (the last one short), as in training.
#[test]
fn large_shapes_split_into_image_groups_and_channel_blocks_match_candle() {
    std::env::set_var(SECOND_ORDER_ENV, "1");
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let x = random(&mut rng, &[3, 96, 32, 32]);
    let w = random(&mut rng, &[40, 96, 4, 4]);
    assert!(compare_with_candle("conv2d 96→40 32×32", &x, &w, 2, 1, ops::conv2d, |x, w, s, p| x.conv2d(w, p, s, 1, 1)));
    let x = random(&mut rng, &[3, 96, 16, 16]);
    let w = random(&mut rng, &[96, 40, 4, 4]);
    let reference = |x: &Tensor, w: &Tensor, s, p| x.conv_transpose2d(w, p, 0, s, 1);
    assert!(compare_with_candle("conv_transpose2d 96→40 16×16", &x, &w, 2, 1, ops::conv_transpose2d, reference));
}

#[test]
fn f64_operands_work_and_mixed_or_integer_ones_are_refused_with_a_reason() {
    let x = Tensor::ones((1, 2, 5, 5), DType::F64, &Device::Cpu).unwrap();
    let w = Tensor::ones((3, 2, 3, 3), DType::F64, &Device::Cpu).unwrap();
    let y = ops::conv2d(&x, &w, 1, 1).unwrap();
    // Centre pixel: 2 channels × 9 taps of 1·1; corner: 2 × 4.
    let flat = y.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert_eq!(y.dims(), &[1, 3, 5, 5]);
    assert_eq!((flat[0], flat[12]), (8.0, 18.0));

    let err = ops::conv2d(&x.to_dtype(DType::F32).unwrap(), &w, 1, 1).unwrap_err().to_string();
    assert!(err.contains("f32 or f64") && err.contains("F64"), "{err}");
    let err = ops::conv2d(&x, &Tensor::ones((3, 4, 3, 3), DType::F64, &Device::Cpu).unwrap(), 1, 1).unwrap_err();
    assert!(err.to_string().contains("2 channels"), "{err}");
    let err = ops::conv2d(&x, &Tensor::ones((3, 2, 7, 7), DType::F64, &Device::Cpu).unwrap(), 1, 0).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
}

/// The fused BatchNorm + activation against the same layer built from candle's tensor ops
/// (the path other devices take): output, gradients of x, γ and β, running statistics.
#[test]
fn fused_batch_norm_matches_candle_composition() {
    use canard_train::model::layers::{BatchNorm2d, LEAKY_SLOPE};
    use canard_train::model::params::{Init, Params};
    use canard_train::ops::Activation;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for (dims, act) in [
        ([1, 3, 5, 7], Activation::Relu),
        ([4, 2, 3, 3], Activation::LeakyRelu(LEAKY_SLOPE)),
        ([3, 5, 1, 1], Activation::Relu),
        ([2, 6, 4, 4], Activation::Identity),
    ] {
        let layer = |rng: &mut ChaCha8Rng| {
            let mut params = Params::default();
            let bn = BatchNorm2d::new(&mut Init::new(&mut params, rng, &Device::Cpu, DType::F32), dims[1]).unwrap();
            (bn, params)
        };
        let (fused, pf) = layer(&mut rng.clone());
        let (composed, pc) = layer(&mut rng);
        let x = random(&mut rng, &dims);
        let r = random(&mut rng, &dims);
        let run = |bn: &BatchNorm2d, fused: bool| {
            let y = if fused {
                bn.forward_act(x.as_tensor(), true, act).unwrap()
            } else {
                let z = bn.forward(x.as_tensor(), true).unwrap();
                match act {
                    Activation::Relu => z.relu().unwrap(),
                    Activation::LeakyRelu(s) => z.maximum(&(&z * s).unwrap()).unwrap(),
                    Activation::Identity => z,
                }
            };
            let g = (&y * r.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            let get = |t: &Tensor| g.get(t).unwrap().clone();
            (y, get(x.as_tensor()), get(&bn.gamma), get(&bn.beta))
        };
        let (a, b) = (run(&fused, true), run(&composed, false));
        let what = format!("batch norm {dims:?} {act:?}");
        assert_close(&format!("{what} output"), &a.0, &b.0);
        assert_close(&format!("{what} d/dx"), &a.1, &b.1);
        assert_close(&format!("{what} d/dγ"), &a.2, &b.2);
        assert_close(&format!("{what} d/dβ"), &a.3, &b.3);
        let (tf, tc) = (pf.tensors(""), pc.tensors(""));
        for name in ["running_mean", "running_var"] {
            assert_close(&format!("{what} {name}"), &tf[name], &tc[name]);
        }
    }
}

/// LeakyReLU as one op (ours) against candle's `maximum(x, s·x)`, behind a convolution so
/// that gradients reach a weight: output, d/dx, d/dw, and the second-order gradients the
/// penalty takes (through the backward op's own backward, into the incoming gradient).
#[test]
fn leaky_relu_matches_candle_composition_to_second_order() {
    use canard_train::model::layers::LEAKY_SLOPE;
    std::env::set_var(SECOND_ORDER_ENV, "1");
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    for dims in [[1, 2, 5, 7], [3, 4, 8, 8], [2, 1, 3, 1]] {
        let x = random(&mut rng, &dims);
        let w = random(&mut rng, &[3, dims[1], 3, 3]);
        let y_dims = [dims[0], 3, dims[2], dims[3]];
        let r = random(&mut rng, &y_dims);
        let run = |ours: bool| {
            let z = ops::conv2d(x.as_tensor(), w.as_tensor(), 1, 1).unwrap();
            let y = match ours {
                true => ops::leaky_relu(&z, LEAKY_SLOPE).unwrap(),
                false => z.maximum(&(&z * LEAKY_SLOPE).unwrap()).unwrap(),
            };
            let g = (&y * r.as_tensor()).unwrap().sum_all().unwrap().backward().unwrap();
            let (gx, gw) = (g.get(x.as_tensor()).unwrap().clone(), g.get(w.as_tensor()).unwrap().clone());
            let second = gx.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let (hw, hr) = (second.get(w.as_tensor()).unwrap().clone(), second.get(r.as_tensor()).unwrap().clone());
            [y, gx, gw, hw, hr]
        };
        let (a, b) = (run(true), run(false));
        for (i, what) in ["output", "d/dx", "d/dw", "second order d/dw", "second order d/dr"].iter().enumerate() {
            assert_close(&format!("leaky relu {dims:?} {what}"), &a[i], &b[i]);
        }
        let negative = a[0].flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().filter(|v| **v < 0.0).count();
        assert!(negative > 0, "{dims:?}: the test should cross zero");
    }
}
