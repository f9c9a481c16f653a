//! The WGAN-GP penalty's gradient reaches every critic weight, and equals finite
//! differences. In its own test binary because candle reads the second-order switch
//! once per thread, before the first backward pass.

use canard_train::losses::{gradient_penalty, second_order_gradients_work, SECOND_ORDER_ENV};
use canard_train::model::{params::randn, CriticNorm, DcganShape};
use canard_train::trainer::Gan;
mod common;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn penalty_gradients_match_finite_differences_for_every_critic_weight() {
    std::env::set_var(SECOND_ORDER_ENV, "1");
    assert!(second_order_gradients_work().unwrap());
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
        for i in [0, p.var.elem_count() / 3, p.var.elem_count() - 1] {
            let numeric = common::finite_difference(&p.var, i, 1e-6, || penalty().to_scalar::<f64>().unwrap());
            let a = analytic[i];
            assert!(
                (numeric - a).abs() <= 1e-7 + 1e-4 * a.abs(),
                "{}[{i}]: autograd {a}, finite difference {numeric}",
                p.name
            );
            checked += 1;
        }
    }
    // Critic at 16 px: conv 0, conv 1 + LayerNorm (γ, β), conv 2 → 5 tensors.
    assert_eq!(checked, 3 * 5);
}
