//! Autograd through the whole DCGAN (conv, transposed conv, train-mode BatchNorm,
//! LeakyReLU, Tanh, the stable BCE) agrees with finite differences, parameter by parameter.

use canard_train::losses::bce_with_logits;
use canard_train::model::params::randn;
use canard_train::model::{CriticNorm, DcganShape};
use canard_train::trainer::Gan;
mod common;

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn generator_loss(gan: &Gan, z: &Tensor) -> Tensor {
    bce_with_logits(&gan.d.forward(&gan.g.forward(z, true).unwrap(), true).unwrap(), 1.0).unwrap()
}

#[test]
fn every_parameter_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let shape = DcganShape { image_size: 16, channels: 3, nz: 5, ngf: 3, ndf: 3 };
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // f64, so that finite differences are exact enough for a tight tolerance.
    let gan = Gan::build(shape, CriticNorm::Batch, &mut rng, &dev, DType::F64).unwrap();
    let z = randn(&mut rng, &[4, 5, 1, 1], &dev).unwrap().to_dtype(DType::F64).unwrap();

    let grads = generator_loss(&gan, &z).backward().unwrap();
    let mut checked = 0;
    for p in gan.g_params.iter().chain(gan.d_params.iter()).filter(|p| p.trainable) {
        let grad = grads.get(p.var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {}", p.name));
        let analytic = grad.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let at = [0, p.var.elem_count() / 2, p.var.elem_count() - 1];
        checked += common::assert_matches_differences(&p.name, &p.var, &analytic, at, 1e-5, 1e-8, || {
            generator_loss(&gan, &z).to_scalar::<f64>().unwrap()
        });
    }
    assert_eq!(checked, 3 * 12, "G: 3 convs + 2 BN × (γ, β); D: 3 convs + 1 BN × (γ, β): {checked} elements");
}

#[test]
fn a_frozen_critic_gives_the_generator_the_same_gradients_and_itself_none() {
    let dev = Device::Cpu;
    let shape = DcganShape { image_size: 16, channels: 3, nz: 5, ngf: 3, ndf: 3 };
    for norm in [CriticNorm::Batch, CriticNorm::Layer] {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let gan = Gan::build(shape, norm, &mut rng, &dev, DType::F32).unwrap();
        let z = randn(&mut rng, &[4, 5, 1, 1], &dev).unwrap();
        let fake = gan.g.forward(&z, true).unwrap();
        let live = bce_with_logits(&gan.d.forward(&fake, true).unwrap(), 1.0).unwrap();
        let running = |gan: &Gan| -> Vec<f32> {
            let bn = gan.d.dcgan().unwrap().blocks.iter().find_map(|b| match &b.norm {
                Some(canard_train::model::dcgan::Norm::Batch(bn)) => Some(bn),
                _ => None,
            });
            bn.map(|bn| bn.running_mean.as_tensor().to_vec1().unwrap()).unwrap_or_default()
        };
        let stats_before = running(&gan);
        let frozen = bce_with_logits(&gan.d.frozen().forward(&fake, true).unwrap(), 1.0).unwrap();
        assert_eq!(live.to_scalar::<f32>().unwrap(), frozen.to_scalar::<f32>().unwrap(), "{norm:?}: loss");
        if norm == CriticNorm::Batch {
            assert_ne!(running(&gan), stats_before, "the frozen critic still updates BatchNorm's running statistics");
        }

        let (live, frozen) = (live.backward().unwrap(), frozen.backward().unwrap());
        for p in gan.g_params.iter().filter(|p| p.trainable) {
            let get = |g: &candle_core::backprop::GradStore| -> Vec<f32> {
                g.get(p.var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap()
            };
            assert_eq!(get(&live), get(&frozen), "{norm:?}: gradient of {}", p.name);
        }
        for p in gan.d_params.iter().filter(|p| p.trainable) {
            assert!(live.get(p.var.as_tensor()).is_some(), "{norm:?}: the live critic's {} has a gradient", p.name);
            assert!(frozen.get(p.var.as_tensor()).is_none(), "{norm:?}: the frozen critic's {} has one", p.name);
        }
    }
}
