//! fastgan's networks: every parameter's gradient (through spectral norm, GLU, upsampling,
//! the excitation and the decoders) agrees with finite differences; the layers compute
//! what they claim; every size builds; the export reads back into the same module.

use canard_shared::latent::latent_batch;
use canard_train::export::reader::load_generator;
use canard_train::losses::hinge;
use canard_train::model::fastgan::{
    self, glu, pool4, rebuild_loss, rebuild_targets, rebuilt_side, upsample2, SpectralConv,
};
use canard_train::model::params::randn;
use canard_train::model::{CriticNorm, DcganShape, Init, Kind, Params};
use canard_train::trainer::Gan;
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
mod common;

fn fastgan(shape: DcganShape, seed: u64, dtype: DType) -> Gan {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    Gan::build_kind(Kind::Fastgan, shape, CriticNorm::Batch, &mut rng, &Device::Cpu, dtype).unwrap()
}

/// Every value the networks keep but do not train (spectral norm's `u`, running statistics).
fn buffers(gan: &Gan) -> Vec<Tensor> {
    gan.g_params.iter().chain(gan.d_params.iter()).map(|p| p.var.as_tensor().copy().unwrap()).collect()
}

fn restore(gan: &Gan, saved: &[Tensor]) {
    for (p, t) in gan.g_params.iter().chain(gan.d_params.iter()).zip(saved) {
        if !p.trainable {
            p.var.set(t).unwrap();
        }
    }
}

/// A loss that reaches every parameter: the generator's hinge loss through the critic, the
/// critic's on real pictures, and its reconstruction of them.
fn loss(gan: &Gan, z: &Tensor, real: &Tensor) -> Tensor {
    let d = gan.d.fastgan().unwrap();
    let fake = gan.g.forward(z, true).unwrap();
    let (logits, all, part) = d.forward_rebuilt(real, 3, true).unwrap();
    let rebuilt = rebuild_loss(&all, &part, &rebuild_targets(real, 3).unwrap()).unwrap();
    let g = d.forward(&fake, true).unwrap().mean_all().unwrap().neg().unwrap();
    ((g + hinge(&logits, true).unwrap()).unwrap() + rebuilt).unwrap()
}

#[test]
fn every_parameter_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let shape = DcganShape { image_size: 32, channels: 3, nz: 5, ngf: 2, ndf: 2 };
    let gan = fastgan(shape, 11, DType::F64);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let z = randn(&mut rng, &[3, 5, 1, 1], &dev).unwrap().to_dtype(DType::F64).unwrap();
    let real = (randn(&mut rng, &[3, 3, 32, 32], &dev).unwrap().to_dtype(DType::F64).unwrap() * 0.5).unwrap();
    // Converge the power iterations first: then σ is the largest singular value, whose
    // derivative is uvᵀ (what the backward pass uses), and each evaluation below starts
    // from the same `u` (restored), so the finite differences see one function.
    for _ in 0..300 {
        gan.d.fastgan().unwrap().forward_rebuilt(&real, 0, true).unwrap();
    }
    let saved = buffers(&gan);
    let grads = loss(&gan, &z, &real).backward().unwrap();
    let mut checked = 0;
    for p in gan.g_params.iter().chain(gan.d_params.iter()).filter(|p| p.trainable) {
        let grad = grads.get(p.var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {}", p.name));
        let analytic = grad.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let at = [0, p.var.elem_count() / 2, p.var.elem_count() - 1];
        // A small step: with widths of one or two channels the loss bends sharply.
        checked += common::assert_matches_differences(&p.name, &p.var, &analytic, at, 1e-6, 1e-7, || {
            restore(&gan, &saved);
            loss(&gan, &z, &real).to_scalar::<f64>().unwrap()
        });
    }
    let trainable = gan.g_params.trainable().len() + gan.d_params.trainable().len();
    assert_eq!(checked, 3 * trainable);
    // G: first + BN, three up blocks + BN, one excitation (2), to_image = 15; D: four
    // convolutions, two BNs = 8; each decoder one up block + BN and its output = 4.
    assert_eq!(trainable, 15 + 8 + 2 * 4);
}

/// The largest singular value of a [rows, cols] matrix, by many power iterations in f64.
fn top_singular_value(m: &[f64], rows: usize, cols: usize) -> f64 {
    let mut v = vec![1.0; cols];
    let mut s = 0.0;
    for _ in 0..2000 {
        let u: Vec<f64> = (0..rows).map(|r| (0..cols).map(|c| m[r * cols + c] * v[c]).sum()).collect();
        let nu = u.iter().map(|x| x * x).sum::<f64>().sqrt();
        let w: Vec<f64> = (0..cols).map(|c| (0..rows).map(|r| m[r * cols + c] * u[r] / nu).sum()).collect();
        s = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        v = w.iter().map(|x| x / s).collect();
    }
    s
}

#[test]
fn spectral_norm_divides_by_the_largest_singular_value_once_its_estimate_settles() {
    let dev = Device::Cpu;
    let mut params = Params::default();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let conv = SpectralConv::new(&mut Init::new(&mut params, &mut rng, &dev, DType::F64), 5, 7, 3, 1, 1).unwrap();
    let raw = conv.conv.weight.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let sigma = top_singular_value(&raw, 7, 45);
    // Before: one step from a random u, the estimate is below σ (a Rayleigh quotient).
    let first = conv.weight(true).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    assert!(raw[0] / first[0] <= sigma * (1.0 + 1e-9));
    for _ in 0..2000 {
        conv.weight(true).unwrap();
    }
    let w = conv.weight(false).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    for (a, b) in w.iter().zip(&raw) {
        assert!((a - b / sigma).abs() < 1e-6 * (b / sigma).abs().max(1e-3), "{a} vs {}", b / sigma);
    }
    assert!((top_singular_value(&w, 7, 45) - 1.0).abs() < 1e-6);
    // u is a parameter (a buffer): checkpoints keep the estimate.
    let u = params.iter().find(|p| p.name == "u").expect("u is listed");
    assert!(!u.trainable);
    assert_eq!(u.var.as_tensor().to_vec1::<f64>().unwrap(), conv.u.as_tensor().to_vec1::<f64>().unwrap());
}

#[test]
fn the_layers_compute_what_they_claim() {
    let dev = Device::Cpu;
    let x = Tensor::arange(0f32, 2.0 * 3.0 * 16.0 * 16.0, &dev).unwrap().reshape((2, 3, 16, 16)).unwrap();
    let x = (x / 100.0).unwrap().sin().unwrap();
    let same = |a: &Tensor, b: &Tensor| {
        let (a, b) =
            (a.flatten_all().unwrap().to_vec1::<f32>().unwrap(), b.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        assert_eq!(a.len(), b.len());
        a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-6)
    };
    assert!(same(&upsample2(&x).unwrap(), &x.upsample_nearest2d(32, 32).unwrap()));
    assert!(same(&pool4(&x).unwrap(), &x.avg_pool2d(4).unwrap()));
    assert_eq!(pool4(&x.narrow(2, 0, 4).unwrap().narrow(3, 0, 4).unwrap()).unwrap().dims(), &[2, 3, 4, 4]);
    let g = Tensor::new(&[[[[2f32]], [[-1.0]], [[0.0]], [[3.0]]]], &dev).unwrap(); // [1, 4, 1, 1]
    let out = glu(&g).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
    assert!((out[0] - 2.0 * sigmoid(0.0)).abs() < 1e-6 && (out[1] + sigmoid(3.0)).abs() < 1e-6, "{out:?}");

    // The decoders' targets: the whole picture and quarter 1 (top right), at half the side.
    let img = Tensor::arange(0f32, 64.0 * 64.0, &dev).unwrap().reshape((1, 1, 64, 64)).unwrap();
    let (all, part) = rebuild_targets(&img, 1).unwrap();
    assert_eq!((all.dims(), part.dims()), (&[1, 1, 32, 32][..], &[1, 1, 32, 32][..]));
    let at = |t: &Tensor, r: usize, c: usize| {
        t.get(0).unwrap().get(0).unwrap().get(r).unwrap().get(c).unwrap().to_scalar::<f32>().unwrap()
    };
    assert_eq!(at(&all, 0, 0), (0.0 + 1.0 + 64.0 + 65.0) / 4.0);
    assert_eq!(at(&part, 0, 0), 32.0, "quarter 1 starts at column 32 of row 0");
    let small = Tensor::arange(0f32, 32.0 * 32.0, &dev).unwrap().reshape((1, 1, 32, 32)).unwrap();
    let (all, part) = rebuild_targets(&small, 2).unwrap();
    assert_eq!(all.dims(), &[1, 1, 16, 16]);
    assert_eq!(at(&all, 5, 7), 10.5 * 32.0 + 14.5, "rows 10–11, columns 14–15 averaged");
    assert_eq!(
        (at(&part, 0, 0), at(&part, 1, 1), at(&part, 2, 2)),
        (16.0 * 32.0, 17.0 * 32.0 + 1.0, 18.0 * 32.0 + 2.0)
    );
    assert_eq!((rebuilt_side(32), rebuilt_side(64), rebuilt_side(256), rebuilt_side(1024)), (16, 32, 128, 128));
}

#[test]
fn every_size_and_channel_count_builds_and_the_parameter_count_is_known_in_advance() {
    let dev = Device::Cpu;
    for size in [32, 64, 128, 256] {
        for channels in [1, 3] {
            let shape = DcganShape { image_size: size, channels, nz: 6, ngf: 4, ndf: 2 };
            let gan = fastgan(shape, 1, DType::F32);
            let mut rng = ChaCha8Rng::seed_from_u64(2);
            let img = gan.g.forward(&randn(&mut rng, &[2, 6, 1, 1], &dev).unwrap(), true).unwrap();
            assert_eq!(img.dims(), &[2, channels, size, size], "{size}px {channels}ch");
            let (logits, all, part) = gan.d.fastgan().unwrap().forward_rebuilt(&img, 2, true).unwrap();
            let side = rebuilt_side(size);
            assert_eq!(logits.dims(), &[2]);
            assert_eq!((all.dims(), part.dims()), (&[2, channels, side, side][..], &[2, channels, side, side][..]));
            let held: usize = gan.g_params.iter().map(|p| p.var.elem_count()).sum();
            assert_eq!(Kind::Fastgan.generator_parameters(&shape), Some(held), "{size}px");
            let first = gan.g_params.iter().find(|p| p.name == "first.weight").unwrap().var.dim(1).unwrap();
            assert_eq!(fastgan::ngf_from_first(size, first), Some(4));
            // The excitations: side/8 gates side, from 32 up.
            let gated = match &gan.g {
                canard_train::model::Generator::Fastgan(g) => g.excitations.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
                _ => unreachable!(),
            };
            assert_eq!(gated, (5..=size.trailing_zeros()).map(|k| 1 << k).collect::<Vec<usize>>());
        }
    }
    let small = DcganShape { image_size: 16, channels: 3, nz: 6, ngf: 4, ndf: 4 };
    assert!(Kind::Fastgan.validate(&small).unwrap_err().contains("32×32"));
    assert!(Kind::Dcgan.validate(&small).is_ok());
    let narrow = DcganShape { image_size: 32, ngf: 1, ..small };
    assert!(Kind::Fastgan.validate(&narrow).unwrap_err().contains("ngf and ndf of 2"));
}

#[test]
fn a_frozen_critic_gives_the_generator_the_same_gradients_and_itself_none() {
    let dev = Device::Cpu;
    let shape = DcganShape { image_size: 32, channels: 3, nz: 5, ngf: 4, ndf: 4 };
    let gan = fastgan(shape, 5, DType::F32);
    let z = randn(&mut ChaCha8Rng::seed_from_u64(6), &[4, 5, 1, 1], &dev).unwrap();
    let fake = gan.g.forward(&z, true).unwrap();
    // Both passes start from the same power-iteration state and running statistics.
    let saved = buffers(&gan);
    let live = gan.d.forward(&fake, true).unwrap().mean_all().unwrap();
    restore(&gan, &saved);
    let frozen = gan.d.frozen().forward(&fake, true).unwrap().mean_all().unwrap();
    assert_eq!(live.to_scalar::<f32>().unwrap(), frozen.to_scalar::<f32>().unwrap());
    let (live, frozen) = (live.backward().unwrap(), frozen.backward().unwrap());
    for p in gan.g_params.iter().filter(|p| p.trainable) {
        let get = |g: &candle_core::backprop::GradStore| -> Vec<f32> {
            g.get(p.var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap()
        };
        assert_eq!(get(&live), get(&frozen), "gradient of {}", p.name);
    }
    for p in gan.d_params.iter().filter(|p| p.trainable) {
        assert!(frozen.get(p.var.as_tensor()).is_none(), "the frozen critic's {} has a gradient", p.name);
    }
    assert!(gan.d_params.iter().filter(|p| p.trainable).any(|p| live.get(p.var.as_tensor()).is_some()));
}

#[test]
fn the_export_reads_back_into_the_same_generator() {
    let shape = DcganShape { image_size: 64, channels: 3, nz: 7, ngf: 4, ndf: 4 };
    let gan = fastgan(shape, 9, DType::F32);
    // Trained-looking BatchNorm: distinct statistics per channel.
    for (i, bn) in gan.g.batch_norms().into_iter().enumerate() {
        let c = bn.gamma.dim(0).unwrap();
        let wave = |a: f32, b: f32| -> Vec<f32> { (0..c).map(|k| a + b * ((k * 5 + i) as f32).sin()).collect() };
        let set = |t: &Tensor, v: Vec<f32>| {
            candle_core::Var::from_tensor(t).unwrap().set(&Tensor::new(v, t.device()).unwrap()).unwrap()
        };
        set(&bn.gamma, wave(1.2, 0.5));
        set(bn.running_mean.as_tensor(), wave(0.0, 0.1));
        set(bn.running_var.as_tensor(), wave(0.5, 0.3));
    }
    let dir = tempfile::tempdir().unwrap();
    let (model_dir, manifest) =
        canard_train::export::export(&gan.g, dir.path(), "fg", "fastgan", Default::default()).unwrap();
    assert_eq!(manifest.arch, "fastgan");
    let (_, read) = load_generator(&model_dir, &Device::Cpu).unwrap();
    assert_eq!((read.g.kind(), read.g.shape().ngf, read.nz, read.image_size), (Kind::Fastgan, 4, 7, 64));
    let seeds = [0u64, 5, 99];
    let want = canard_train::report::generate(&gan.g, &seeds, &Device::Cpu).unwrap();
    let z = Tensor::from_vec(latent_batch(&seeds, 7), (3, 7, 1, 1), &Device::Cpu).unwrap();
    assert_eq!(
        read.forward(&z).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        want.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}

/// R1 on the tape (`CriticTape::add_r1`): its value is γ/2·mean ‖∇ₓD‖² from the tape's
/// own input gradient, and its gradient with respect to every parameter the logits depend
/// on (spectral convolutions through σ, BatchNorm's γ and β: the second-order pass
/// through BatchNorm's batch statistics) agrees with finite differences of that value.
#[test]
fn r1s_gradient_matches_finite_differences() {
    use canard_train::tape::fastgan::CriticWeights;
    use canard_train::tape::Values;
    use candle_core::backprop::GradStore;
    let dev = Device::Cpu;
    let shape = DcganShape { image_size: 32, channels: 3, nz: 5, ngf: 2, ndf: 3 };
    let gan = fastgan(shape, 21, DType::F64);
    move_batch_norms(&gan, 22);
    let d = gan.d.fastgan().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let real = (randn(&mut rng, &[3, 3, 32, 32], &dev).unwrap().to_dtype(DType::F64).unwrap() * 0.5).unwrap();
    for _ in 0..300 {
        d.forward(&real, true).unwrap(); // converge the power iterations (see above)
    }
    let saved = buffers(&gan);
    let gamma = 10.0;
    let r1 = |grads: &mut GradStore| {
        restore(&gan, &saved);
        let weights = CriticWeights::<f64>::of(d, false).unwrap();
        let tape = weights.forward(Values::of(&real).unwrap(), 0).unwrap();
        tape.add_r1(gamma, grads).unwrap()
    };
    let mut grads = GradStore::default();
    let value = r1(&mut grads);
    // The value from candle's graph: the input gradient of Σ D, first order.
    restore(&gan, &saved);
    let x = candle_core::Var::from_tensor(&real).unwrap();
    let g = d.forward(x.as_tensor(), true).unwrap().sum_all().unwrap().backward().unwrap();
    let g = g.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let want = gamma / 2.0 * g.iter().map(|v| v * v).sum::<f64>() / 3.0;
    assert!((value - want).abs() <= 1e-9 * want, "R1 {value}, from candle's input gradient {want}");
    assert!(value > 1e-3, "R1 is {value}: too small to test its gradient");

    let mut checked = 0;
    for p in gan.d_params.iter().filter(|p| p.trainable && !p.name.contains("rebuild")) {
        let grad = grads.get(p.var.as_tensor()).unwrap_or_else(|| panic!("R1 gave no gradient for {}", p.name));
        let analytic = grad.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let at = [0, p.var.elem_count() / 2, p.var.elem_count() - 1];
        checked += common::assert_matches_differences(&p.name, &p.var, &analytic, at, 1e-6, 1e-7, || {
            r1(&mut GradStore::default())
        });
    }
    // Three down blocks (two with BatchNorm) and the logit: 4 weights, 2 γ, 2 β.
    assert_eq!(checked, 3 * 8);
}

/// BatchNorm's γ and β moved off their initial values, so a mistake in either shows.
fn move_batch_norms(gan: &Gan, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for p in gan.d_params.iter().filter(|p| p.name.ends_with("gamma") || p.name.ends_with("beta")) {
        let moved = randn(&mut rng, p.var.dims(), p.var.device()).unwrap().to_dtype(p.var.dtype()).unwrap();
        p.var.set(&(p.var.as_tensor() + (moved * 0.3).unwrap()).unwrap()).unwrap();
    }
}
