//! The WGAN-GP penalty's gradient reaches every critic weight, and equals finite
//! differences; the CPU tape's second-order pass gives the same penalty and gradients,
//! and whole WGAN-GP steps train on the tape as on the graph. In its own test binary
//! because candle reads the second-order switch once per thread, before the first
//! backward pass, and setting it while other tests run would race.

use canard_train::augment::DiffAugment;
use canard_train::config::Arch;
use canard_train::losses::{gradient_penalty, second_order_gradients_work, SECOND_ORDER_ENV};
use canard_train::model::{params::randn, CriticNorm, DcganShape};
use canard_train::tape::penalty::add_gradient_penalty;
use canard_train::tape::{Net, Values};
use canard_train::trainer::Gan;
use candle_core::backprop::GradStore;
mod common;
#[path = "common/steps.rs"]
mod steps;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Every test here starts with this (each runs on its own thread).
fn second_order_on() {
    std::env::set_var(SECOND_ORDER_ENV, "1");
    assert!(second_order_gradients_work().unwrap());
}

#[test]
fn penalty_gradients_match_finite_differences_for_every_critic_weight() {
    second_order_on();
    let dev = Device::Cpu;
    let shape = DcganShape { image_size: 16, channels: 3, nz: 4, ngf: 2, ndf: 3 };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let gan = Gan::build(shape, CriticNorm::Layer, &mut rng, &dev, DType::F64).unwrap();
    let f64t = |t: Tensor| t.to_dtype(DType::F64).unwrap();
    let real = f64t(randn(&mut rng, &[3, 3, 16, 16], &dev).unwrap());
    let fake = f64t(randn(&mut rng, &[3, 3, 16, 16], &dev).unwrap());
    let eps = Tensor::new(&[0.2f64, 0.5, 0.9], &dev).unwrap();
    let penalty = || gradient_penalty(&gan.d, &real, &fake, &eps).unwrap();

    let grads = penalty().backward().unwrap();
    let mut checked = 0;
    for p in gan.d_params.iter().filter(|p| p.trainable) {
        // A shift before LeakyReLU does not change the input gradient (almost everywhere),
        // so LayerNorm's β legitimately gets none: finite differences must then be 0 too.
        let analytic = match grads.get(p.var.as_tensor()) {
            Some(g) => g.flatten_all().unwrap().to_vec1::<f64>().unwrap(),
            None => vec![0.0; p.var.elem_count()],
        };
        if p.name.contains("conv") || p.name.ends_with("gamma") {
            assert!(analytic.iter().any(|g| g.abs() > 1e-9), "{}: the penalty does not reach it", p.name);
        }
        let at = [0, p.var.elem_count() / 3, p.var.elem_count() - 1];
        checked += common::assert_matches_differences(&p.name, &p.var, &analytic, at, 1e-6, 1e-7, || {
            penalty().to_scalar::<f64>().unwrap()
        });
    }
    // Critic at 16 px: conv 0, conv 1 + LayerNorm (γ, β), conv 2 → 5 tensors.
    assert_eq!(checked, 3 * 5);
}

/// The tape's penalty (value, and λ times its gradient for every critic parameter)
/// against candle's graph, in f64 at several sizes and in f32, with LayerNorm's γ and β
/// moved off their initial values.
#[test]
fn the_tapes_penalty_matches_the_graphs() {
    second_order_on();
    let dev = Device::Cpu;
    let lambda = 10.0;
    for (size, channels, batch, ndf, dtype, tol) in [
        (8, 1, 1, 3, DType::F64, 1e-10),
        (16, 3, 3, 3, DType::F64, 1e-10),
        (32, 3, 2, 4, DType::F64, 1e-10),
        (16, 1, 4, 8, DType::F32, 1e-4),
    ] {
        let what = format!("{size}px ×{channels} batch {batch} {dtype:?}");
        let shape = DcganShape { image_size: size, channels, nz: 4, ngf: 2, ndf };
        let mut rng = ChaCha8Rng::seed_from_u64(size as u64 + batch as u64);
        let gan = Gan::build(shape, CriticNorm::Layer, &mut rng, &dev, dtype).unwrap();
        steps::move_layer_norms(&gan.d_params, &mut rng);
        let images =
            |rng: &mut ChaCha8Rng| randn(rng, &[batch, channels, size, size], &dev).unwrap().to_dtype(dtype).unwrap();
        let (real, fake) = (images(&mut rng), images(&mut rng));
        let eps: Vec<f64> = (0..batch).map(|i| (i as f64 + 0.3) / batch as f64).collect();
        let eps = Tensor::new(eps, &dev).unwrap().to_dtype(dtype).unwrap();

        let reference = gradient_penalty(&gan.d, &real, &fake, &eps).unwrap();
        let reference_grads = (&reference * lambda).unwrap().backward().unwrap();
        let e = eps.reshape((batch, 1, 1, 1)).unwrap();
        let x_hat = (real.broadcast_mul(&e).unwrap() + fake.broadcast_mul(&(1.0 - &e).unwrap()).unwrap()).unwrap();

        let net = Net::discriminator(&gan.d).unwrap();
        let mut grads = GradStore::default();
        let ours = match dtype {
            DType::F64 => add_gradient_penalty(&net, Values::<f64>::of(&x_hat).unwrap(), lambda, &mut grads),
            _ => add_gradient_penalty(&net, Values::<f32>::of(&x_hat).unwrap(), lambda, &mut grads),
        }
        .unwrap();
        let want = reference.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
        steps::assert_close(&format!("{what} penalty"), &[ours], &[want], tol);
        assert!(want > 1e-3, "{what}: a penalty of {want} tests little");
        let mut checked = 0;
        for p in gan.d_params.iter().filter(|p| p.trainable) {
            let zeros = || vec![0.0; p.var.elem_count()];
            let theirs = reference_grads.get(p.var.as_tensor()).map_or_else(zeros, steps::vec);
            let ours = grads.get(p.var.as_tensor()).map_or_else(zeros, steps::vec);
            if !p.name.ends_with("beta") {
                assert!(theirs.iter().any(|g| g.abs() > 1e-9), "{what} {}: no gradient to compare", p.name);
            }
            steps::assert_close(&format!("{what} d/d{}", p.name), &ours, &theirs, tol);
            checked += usize::from(p.name.ends_with("gamma"));
        }
        // A critic of n convolutions has n − 2 LayerNorms (none at 8 px).
        assert_eq!(checked, shape.stages().saturating_sub(1), "{what}: LayerNorms checked");
    }
}

/// Whole WGAN-GP steps, tape against graph, with and without DiffAugment.
#[test]
fn a_wgan_gp_step_on_the_tape_trains_as_the_graph_does() {
    second_order_on();
    steps::tape_and_graph_steps_agree(Arch::WganGp, None);
    steps::tape_and_graph_steps_agree(Arch::WganGp, Some(&DiffAugment::all()));
}
