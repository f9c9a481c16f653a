//! Every layer's CPU kernels against its definition in candle's ops (what CUDA runs, and
//! candle's own backprop of it), in f64: the output, the gradients of the inputs and the
//! weights, and for the critics' layers the tangent and its reverse. And each layer's
//! tangent against finite differences of its definition.

use canard_train::nn::activation::Activation;
use canard_train::nn::conv::Conv;
use canard_train::nn::excite::Excite;
use canard_train::nn::glu::Glu;
use canard_train::nn::norm::{Norm, LINEAR};
use canard_train::nn::quarter::Quarter;
use canard_train::nn::{self, Ctx, Engine, Init, Layer, Params, Recorded};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(seed: u64, dims: &[usize]) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f64> = (0..dims.iter().product()).map(|_| rng.random_range(-1.0..1.0)).collect();
    Tensor::from_vec(v, dims, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn assert_close(what: &str, a: &Tensor, b: &Tensor, tol: f64) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes");
    let (a, b) = (values(a), values(b));
    let scale = b.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!((x - y).abs() <= tol * scale, "{what}[{i}]: kernels {x}, candle {y} (scale {scale})");
    }
}

/// Runs `layer` on `xs` with both engines and compares everything its passes give.
fn agree(what: &str, layer: &dyn Layer, xs: &[Tensor], train: bool, tangents: bool) {
    let w = layer.weights(false).unwrap();
    let run = |engine: Engine| -> Vec<(String, Tensor)> {
        let c = Ctx { engine, train, part: 2, classes: None, weights: &w.used };
        let xr: Vec<&Tensor> = xs.iter().collect();
        let (y, saved) = nn::forward(layer, &xr, &c).unwrap();
        let dy = random(9, y.dims());
        let want = vec![true; xs.len()];
        let r = Recorded { xs: xr.clone(), ts: vec![], y: &y, saved: &saved, c };
        let g = nn::backward(layer, &r, &dy, &want, true).unwrap();
        let mut out = vec![("output".to_string(), y.clone())];
        for (i, d) in g.inputs.into_iter().enumerate() {
            out.push((format!("d input {i}"), d.expect("an input gradient")));
        }
        for (i, d) in g.weights.into_iter().enumerate() {
            out.push((format!("d weight {i}"), d));
        }
        if tangents {
            let ts: Vec<Tensor> = xs.iter().enumerate().map(|(i, x)| random(20 + i as u64, x.dims())).collect();
            let r = Recorded { ts: ts.iter().collect(), ..r };
            out.push(("tangent".into(), nn::tangent(layer, &r).unwrap()));
            let (at, ay) = (random(30, y.dims()), random(31, y.dims()));
            for (ay, name) in [(Some(&ay), "with"), (None, "without")] {
                let g = nn::tangent_backward(layer, &r, &at, ay).unwrap();
                for (i, a) in g.at.into_iter().enumerate() {
                    out.push((format!("tangent's adjoint {i} {name} the values'"), a));
                }
                for (i, a) in g.ay.into_iter().enumerate() {
                    let zero = xs[i].zeros_like().unwrap();
                    out.push((format!("values' adjoint {i} {name} the values'"), a.unwrap_or(zero)));
                }
                for (i, d) in g.weights.into_iter().enumerate() {
                    out.push((format!("tangent's d weight {i} {name} the values'"), d));
                }
            }
        }
        out
    };
    let (k, c) = (run(Engine::Kernels), run(Engine::Candle));
    assert_eq!(k.len(), c.len(), "{what}: the engines give different gradients");
    for ((name, a), (_, b)) in k.iter().zip(&c) {
        assert_close(&format!("{what}: {name}"), a, b, 1e-10);
    }
}

/// The layer's tangent against central differences of its definition along the tangent.
fn tangent_is_the_derivative(what: &str, layer: &dyn Layer, xs: &[Tensor], train: bool) {
    let w = layer.weights(false).unwrap();
    let c = Ctx { engine: Engine::Candle, train, part: 1, classes: None, weights: &w.used };
    let ts: Vec<Tensor> = xs.iter().enumerate().map(|(i, x)| random(40 + i as u64, x.dims())).collect();
    let h = 1e-5;
    let at = |s: f64| -> Tensor {
        let moved: Vec<Tensor> = xs.iter().zip(&ts).map(|(x, t)| (x + (t * s).unwrap()).unwrap()).collect();
        layer.apply(&moved, &c).unwrap()
    };
    let numeric = ((at(h) - at(-h)).unwrap() / (2.0 * h)).unwrap();
    let analytic = layer.apply_tangent(xs, &ts, &c).unwrap();
    assert_close(&format!("{what}: tangent vs differences"), &analytic, &numeric, 1e-6);
}

fn init<'a>(params: &'a mut Params, rng: &'a mut ChaCha8Rng) -> Init<'a> {
    Init::new(params, rng, &Device::Cpu, DType::F64)
}

/// (batch, in, out, side, kernel, stride, padding) as the networks use them, and odd ones.
const CONVS: &[(usize, usize, usize, usize, usize, usize, usize)] = &[
    (2, 3, 4, 16, 4, 2, 1),
    (3, 4, 1, 4, 4, 1, 0),
    (1, 3, 2, 7, 3, 1, 1),
    (3, 2, 3, 8, 3, 1, 1),
    (2, 5, 2, 9, 5, 2, 0),
];

#[test]
fn convolutions_in_every_form_agree_with_candle() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (i, &(n, ci, co, side, k, s, p)) in CONVS.iter().enumerate() {
        let mut params = Params::default();
        let conv = Conv::new(&mut init(&mut params, &mut rng).pp("c"), ci, co, k, s, p).unwrap();
        let x = random(i as u64, &[n, ci, side, side]);
        agree(&format!("conv {ci}→{co} {side}² k{k} s{s} p{p}"), &conv, std::slice::from_ref(&x), true, true);
        tangent_is_the_derivative("conv", &conv, &[x], true);

        let t = Conv::transposed(&mut init(&mut params, &mut rng).pp("t"), ci, co, k, s, p).unwrap();
        let x = random(50 + i as u64, &[n, ci, side / 2 + 1, side / 2 + 1]);
        agree(&format!("transposed {ci}→{co} k{k} s{s} p{p}"), &t, &[x], true, false);
    }
    for (n, ci, co, side) in [(2, 3, 4, 4), (1, 2, 6, 8), (3, 5, 2, 5)] {
        let mut params = Params::default();
        let up = Conv::up(&mut init(&mut params, &mut rng).pp("u"), ci, co).unwrap();
        agree(&format!("upsampling {ci}→{co} from {side}²"), &up, &[random(7, &[n, ci, side, side])], true, false);
    }
}

/// Big enough that every product splits its work: several groups of images (one short)
/// and several blocks of channels (the last short), as in training.
#[test]
fn large_convolutions_split_into_image_groups_and_channel_blocks_agree() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut params = Params::default();
    let conv = Conv::new(&mut init(&mut params, &mut rng).pp("c"), 96, 40, 4, 2, 1).unwrap();
    agree("conv 96→40 32×32", &conv, &[random(1, &[3, 96, 32, 32])], true, false);
    let t = Conv::transposed(&mut init(&mut params, &mut rng).pp("t"), 96, 40, 4, 2, 1).unwrap();
    agree("transposed 96→40 16×16", &t, &[random(2, &[3, 96, 16, 16])], true, false);
}

#[test]
fn spectrally_normalised_convolutions_agree_and_divide_by_the_top_singular_value() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut params = Params::default();
    let conv = Conv::new(&mut init(&mut params, &mut rng).pp("c"), 3, 5, 4, 2, 1).unwrap();
    let conv = conv.spectral(&mut init(&mut params, &mut rng).pp("c")).unwrap();
    for _ in 0..60 {
        conv.weights(true).unwrap();
    }
    // W/σ has a top singular value of 1 once the estimate settles: ‖W̄v‖ for its v.
    let w = &conv.weights(false).unwrap().used[0];
    let m = w.flatten_from(1).unwrap();
    let mut v = Tensor::ones((m.dim(1).unwrap(), 1), DType::F64, &Device::Cpu).unwrap();
    for _ in 0..200 {
        let mv = m.t().unwrap().matmul(&m.matmul(&v).unwrap()).unwrap();
        v = mv.broadcast_div(&mv.sqr().unwrap().sum_all().unwrap().sqrt().unwrap()).unwrap();
    }
    let top = m.matmul(&v).unwrap().sqr().unwrap().sum_all().unwrap().sqrt().unwrap().to_scalar::<f64>().unwrap();
    assert!((top - 1.0).abs() < 1e-3, "top singular value of W/σ: {top}");
    agree("spectral conv", &conv, &[random(3, &[2, 3, 8, 8])], true, true);
}

#[test]
fn batch_norm_agrees_with_candle_in_training_and_evaluation() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    // ReLU, LeakyReLU and no activation.
    for slope in [0.0, 0.2, LINEAR] {
        let mut params = Params::default();
        let bn = Norm::batch(&mut init(&mut params, &mut rng).pp("bn"), 4, slope).unwrap();
        for p in params.iter().filter(|p| p.name.ends_with("beta")) {
            p.var.set(&(p.var.as_tensor() + 0.3).unwrap()).unwrap();
        }
        let x = (random(4, &[3, 4, 5, 5]) * 2.0).unwrap();
        agree(&format!("batch norm slope {slope}"), &bn, std::slice::from_ref(&x), true, true);
        agree(&format!("batch norm slope {slope}, evaluation"), &bn, std::slice::from_ref(&x), false, false);
        tangent_is_the_derivative(&format!("batch norm slope {slope}"), &bn, &[x], true);
    }
}

#[test]
fn layer_norm_agrees_with_candle() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let mut params = Params::default();
    let ln = Norm::layer(&mut init(&mut params, &mut rng).pp("ln"), 3, 0.2).unwrap();
    for p in params.iter() {
        let t = p.var.as_tensor();
        p.var.set(&(t + random(8, t.dims()).affine(0.3, 0.0).unwrap()).unwrap()).unwrap();
    }
    let x = random(5, &[3, 3, 4, 4]);
    agree("layer norm", &ln, std::slice::from_ref(&x), true, true);
    tangent_is_the_derivative("layer norm", &ln, &[x], true);
}

#[test]
fn normalisations_split_over_parallel_tasks_agree_with_candle() {
    // 64×64 planes make a parallel task of five: BatchNorm's seven channels wrap around the
    // tasks, and LayerNorm's samples straddle them. A mean far from zero tests the sums' accuracy.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut params = Params::default();
    let bn = Norm::batch(&mut init(&mut params, &mut rng).pp("bn"), 7, 0.2).unwrap();
    let ln = Norm::layer(&mut init(&mut params, &mut rng).pp("ln"), 7, 0.2).unwrap();
    for p in params.iter().filter(|p| p.trainable) {
        let t = p.var.as_tensor();
        p.var.set(&(t + random(12, t.dims()).affine(0.3, 0.0).unwrap()).unwrap()).unwrap();
    }
    let x = random(13, &[3, 7, 64, 64]).affine(2.0, 5.0).unwrap();
    agree("batch norm over many tasks", &bn, std::slice::from_ref(&x), true, true);
    agree("layer norm over many tasks", &ln, std::slice::from_ref(&x), true, true);
}

#[test]
fn activations_glu_excitation_and_quarters_agree_with_candle() {
    let x = random(6, &[2, 4, 6, 6]);
    agree("leaky relu", &Activation::LeakyRelu(0.2), std::slice::from_ref(&x), true, true);
    tangent_is_the_derivative("leaky relu", &Activation::LeakyRelu(0.2), std::slice::from_ref(&x), true);
    agree("tanh", &Activation::Tanh, std::slice::from_ref(&x), true, false);
    tangent_is_the_derivative("tanh", &Activation::Tanh, std::slice::from_ref(&x), true);
    agree("sigmoid", &Activation::Sigmoid, std::slice::from_ref(&x), true, false);
    agree("glu", &Glu, std::slice::from_ref(&x), true, false);
    agree("quarter", &Quarter, std::slice::from_ref(&x), true, false);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for side in [4, 8] {
        let mut params = Params::default();
        let e = Excite::new(&mut init(&mut params, &mut rng).pp("e"), 3, 5, side).unwrap();
        let (small, big) = (random(10, &[2, 3, side, side]), random(11, &[2, 5, 8 * side, 8 * side]));
        agree(&format!("excitation from {side}²"), &e, &[small, big], true, false);
    }
}

/// The class layers: the embedding puts each picture's own row after z; the projection adds
/// ⟨Σ features, v(class)⟩ to the logit, its tangent is its derivative, and its weights'
/// gradient reaches only the rows of the classes in the batch.
#[test]
fn class_layers_pick_each_pictures_class() {
    use canard_train::nn::class::{Embed, Project};
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut params = Params::default();
    let embed = Embed::new(&mut init(&mut params, &mut rng).pp("embed"), 4, 3).unwrap();
    let project = Project::new(&mut init(&mut params, &mut rng).pp("project"), 4, 5).unwrap();
    let classes = Tensor::new(&[2u32, 0, 2], &Device::Cpu).unwrap();
    let z = random(1, &[3, 2, 1, 1]);
    let w = embed.weights(false).unwrap();
    let c = Ctx { engine: Engine::Kernels, train: true, part: 0, classes: Some(&classes), weights: &w.used };
    let y = embed.apply(std::slice::from_ref(&z), &c).unwrap();
    assert_eq!(y.dims(), &[3, 5, 1, 1]);
    let rows = values(&w.used[0]);
    let y = values(&y);
    for (i, class) in [2, 0, 2].into_iter().enumerate() {
        assert_eq!(&y[i * 5..i * 5 + 2], &values(&z)[i * 2..i * 2 + 2], "z first");
        assert_eq!(&y[i * 5 + 2..i * 5 + 5], &rows[class * 3..class * 3 + 3], "then its class's row");
    }

    let (h, logit) = (random(2, &[3, 5, 2, 2]), random(3, &[3, 1, 1, 1]));
    let w = project.weights(false).unwrap();
    let c = Ctx { weights: &w.used, ..c };
    let out = values(&project.apply(&[h.clone(), logit.clone()], &c).unwrap());
    let (hv, v, l) = (values(&h), values(&w.used[0]), values(&logit));
    for (i, class) in [2, 0, 2].into_iter().enumerate() {
        let dot: f64 =
            (0..5).map(|ch| hv[i * 20 + ch * 4..i * 20 + ch * 4 + 4].iter().sum::<f64>() * v[class * 5 + ch]).sum();
        assert!((out[i] - (l[i] + dot)).abs() < 1e-12, "picture {i}");
    }
    let ts = [random(4, &[3, 5, 2, 2]), random(5, &[3, 1, 1, 1])];
    let (e, s) = (1e-5, 0.5 / 1e-5);
    let moved = |k: f64| {
        let xs = [(&h + (&ts[0] * k).unwrap()).unwrap(), (&logit + (&ts[1] * k).unwrap()).unwrap()];
        project.apply(&xs, &c).unwrap()
    };
    let numeric = ((moved(e) - moved(-e)).unwrap() * s).unwrap();
    let analytic = project.apply_tangent(&[h.clone(), logit.clone()], &ts, &c).unwrap();
    assert_close("projection's tangent", &analytic, &numeric, 1e-6);
    let r = Recorded { xs: vec![&h, &logit], ts: vec![], y: &logit, saved: &None, c };
    let g =
        nn::backward(&project, &r, &Tensor::ones((3, 1, 1, 1), DType::F64, &Device::Cpu).unwrap(), &[true, true], true)
            .unwrap();
    let dv = values(&g.weights[0]);
    let row = |r: usize| &dv[r * 5..r * 5 + 5];
    assert!(row(0).iter().chain(row(2)).all(|&d| d != 0.0), "classes 0 and 2 are in the batch: {dv:?}");
    assert!(row(1).iter().chain(row(3)).all(|&d| d == 0.0), "classes 1 and 3 are not: {dv:?}");
}
