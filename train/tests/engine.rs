//! The engine (`canard_train::nn`) as the trainer runs it: whole training steps of every
//! architecture with canard's CPU kernels against the same steps with candle's ops (what
//! CUDA runs), with DiffAugment, WGAN-GP's penalty and R1; and the gradients the walker
//! assembles (skip connections, decoders, the penalties' tangent pass) against finite
//! differences.

use canard_train::augment::{Ada, DiffAugment};
use canard_train::config::{Arch, Settings};
use canard_train::cursor::Cursor;
use canard_train::data::Dataset;
use canard_train::losses::{gradient_penalty, hinge, r1};
use canard_train::nn::fastgan::{rebuild_loss, rebuild_targets};
use canard_train::nn::params::randn;
use canard_train::nn::{Engine, Params, Shape};
use canard_train::optim::{Optimizer, Rule};
use canard_train::step::{StepCtx, StepLosses, Steps};
use canard_train::trainer::Gan;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
mod common;

fn vec(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

fn assert_close(what: &str, ours: &[f64], reference: &[f64], tol: f64) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths differ");
    let scale = reference.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        assert!((a - b).abs() <= tol * scale, "{what}[{i}]: kernels {a}, candle {b} (scale {scale})");
    }
}

/// Normalisation parameters (γ, β) moved off their initial values by N(0, 0.3²) noise, so
/// a mistake in either shows.
fn move_norms(gan: &Gan, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for p in gan.g_params.iter().chain(gan.d_params.iter()) {
        if p.name.ends_with("gamma") || p.name.ends_with("beta") {
            let moved = randn(&mut rng, p.var.dims(), p.var.device()).unwrap().to_dtype(p.var.dtype()).unwrap();
            p.var.set(&(p.var.as_tensor() + (moved * 0.3).unwrap()).unwrap()).unwrap();
        }
    }
}

struct Run {
    losses: Vec<f64>,
    /// Each parameter's change, per unit of learning rate for plain gradient descent.
    params: Vec<(String, Vec<f64>)>,
    /// The next random number and ADA's tally: both engines drew the same numbers.
    random: (u64, u64),
}

/// `steps` training steps of `arch` with `engine`, in `dtype`, from the same networks,
/// data and random numbers; `uploaded`: batches picked from pixels uploaded as a GPU's are.
/// `classes` > 0: conditional networks, the pictures of that many classes in turn.
fn train(
    arch: Arch,
    augment: Option<&DiffAugment>,
    (r1, classes): (f64, usize),
    dtype: DType,
    engine: Engine,
    uploaded: bool,
) -> Run {
    let size = if arch == Arch::Fastgan { 32 } else { 16 };
    let settings = Settings {
        data: Some("random".into()),
        name: Some("engine".into()),
        arch: Some(arch),
        image_size: Some(size),
        batch_size: Some(4),
        ngf: Some(4),
        ndf: Some(4),
        nz: Some(8),
        r1: Some(r1),
        // Two critic updates a step where the architecture reads a schedule (WGAN's).
        critic_steps: matches!(arch, Arch::Wgan | Arch::WganGp).then_some(2),
        critic_steps_burst: (arch == Arch::Wgan).then_some(2),
        mirror: Some(augment.is_some()),
        ..Settings::default()
    };
    let cfg = settings.resolve().unwrap();
    let dev = Device::Cpu;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let pixels: Vec<u8> = (0..12 * 3 * size * size).map(|_| rng.random()).collect();
    let labels = (0..12).map(|i| (i % classes.max(1)) as u32).collect();
    let names = (0..classes).map(|c| format!("class {c}")).collect();
    let classes_of = canard_train::data::Classes { names, labels };
    let data = Dataset { source: "random".into(), pixels, len: 12, channels: 3, size, classes: classes_of };
    let shape = Shape { image_size: size, channels: 3, nz: 8, ngf: 4, ndf: 4, classes };
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let gan = Gan::new(arch, shape, &mut rng, &dev, dtype).unwrap();
    move_norms(&gan, 6);
    let before: Vec<Vec<f64>> =
        gan.g_params.iter().chain(gan.d_params.iter()).map(|p| vec(p.var.as_tensor())).collect();
    let mut ada = Ada::new(0.6);
    ada.p = 0.5;
    let (rule, lr, steps) = match dtype {
        DType::F64 => (Rule::Sgd, 0.01, 1),
        // Large enough that reading the change back loses nothing to f32's rounding of the weights.
        _ => (Rule::Sgd, 1.0, 1),
    };
    let mut opt_g = Optimizer::new(gan.g_params.trainable(), rule, lr).unwrap();
    let mut opt_d = Optimizer::new(gan.d_params.trainable(), rule, lr).unwrap();
    let mut ctx = StepCtx::new(&cfg, &gan, &data, &dev, augment).unwrap();
    assert_eq!(ctx.engine, Engine::Kernels, "canard's kernels are chosen on the CPU");
    ctx.engine = engine;
    ctx.resident = uploaded.then(|| data.upload(&dev).unwrap());
    let mut cursor = Cursor::new(data.len, 4, 0, 0, 1);
    let mut losses = vec![];
    for step in 1..=steps {
        let steps =
            Steps { opt_g: &mut opt_g, opt_d: &mut opt_d, cursor: &mut cursor, rng: &mut rng, ada: Some(&mut ada) };
        let (out, _) = arch.get().step(&ctx, steps, step).unwrap();
        let rec = StepLosses::read(std::slice::from_ref(&out)).unwrap()[0];
        assert_eq!(rec.step, step);
        losses.extend([rec.loss_d, rec.loss_g, rec.d_real, rec.d_fake, rec.gp].map(f64::from));
    }
    let params = gan
        .g_params
        .iter()
        .chain(gan.d_params.iter())
        .zip(before)
        .map(|(p, b)| (p.name.clone(), vec(p.var.as_tensor()).iter().zip(b).map(|(a, b)| (a - b) / lr).collect()))
        .collect();
    Run { losses, params, random: (rng.random::<u64>(), ada.signs.to_bits()) }
}

/// One step of plain gradient descent reads the gradients back: they agree to 1e-10 in
/// f64 and 1e-4 in f32.
fn engines_agree(arch: Arch, augment: Option<&DiffAugment>, r1: f64) {
    conditional_engines_agree(arch, augment, (r1, 0));
}

/// [`engines_agree`] for networks of `classes` classes (0: unconditional).
fn conditional_engines_agree(arch: Arch, augment: Option<&DiffAugment>, (r1, classes): (f64, usize)) {
    let r1 = (r1, classes);
    let what = format!("{arch:?}, DiffAugment {}, R1 {}, {classes} classes", augment.is_some(), r1.0);
    for (dtype, tol) in [(DType::F64, 1e-10), (DType::F32, 1e-4)] {
        let (k, c) = (
            train(arch, augment, r1, dtype, Engine::Kernels, false),
            train(arch, augment, r1, dtype, Engine::Candle, false),
        );
        assert_eq!(k.random, c.random, "{what}: both used the same random numbers");
        assert_close(&format!("{what} {dtype:?} losses"), &k.losses, &c.losses, tol);
        for ((name, a), (_, b)) in k.params.iter().zip(&c.params) {
            assert!(
                a.iter().any(|v| *v != 0.0) || name.ends_with(".u") || name.contains("running"),
                "{what}: {name} did not train"
            );
            assert_close(&format!("{what} {dtype:?} {name}"), a, b, tol);
        }
    }
    let k = train(arch, augment, r1, DType::F32, Engine::Kernels, false);
    let up = train(arch, augment, r1, DType::F32, Engine::Kernels, true);
    assert_eq!((&k.losses, &k.params), (&up.losses, &up.params), "{what}: uploaded pixels give the same bits");
}

#[test]
fn dcgan_steps_agree_on_both_engines() {
    engines_agree(Arch::Dcgan, None, 0.0);
    engines_agree(Arch::Dcgan, Some(&DiffAugment::all()), 0.0);
}

#[test]
fn wgan_steps_agree_on_both_engines() {
    engines_agree(Arch::Wgan, Some(&DiffAugment::translation()), 0.0);
}

#[test]
fn wgan_gp_steps_with_the_penalty_agree_on_both_engines() {
    engines_agree(Arch::WganGp, None, 0.0);
    engines_agree(Arch::WganGp, Some(&DiffAugment::all()), 0.0);
}

/// Conditional networks (the class embedding, the projection critic) on every
/// architecture, with fastgan's R1 and WGAN-GP's penalty through the projection.
#[test]
fn conditional_steps_agree_on_both_engines() {
    for arch in Arch::ALL {
        let augment = (arch == Arch::Fastgan).then(DiffAugment::fastgan);
        conditional_engines_agree(arch, augment.as_ref(), (if arch == Arch::Fastgan { 1.0 } else { 0.0 }, 3));
    }
}

#[test]
fn fastgan_steps_with_ada_and_r1_agree_on_both_engines() {
    engines_agree(Arch::Fastgan, Some(&DiffAugment::fastgan()), 0.0);
    engines_agree(Arch::Fastgan, Some(&DiffAugment::fastgan()), 1.0);
}

/// The networks' buffers (spectral norm's `u`, running statistics) put back, so each
/// evaluation of a loss sees one function.
fn restorer(gan: &Gan) -> impl Fn() + '_ {
    let saved: Vec<Tensor> =
        gan.g_params.iter().chain(gan.d_params.iter()).map(|p| p.var.as_tensor().copy().unwrap()).collect();
    move || {
        for (p, t) in gan.g_params.iter().chain(gan.d_params.iter()).zip(&saved) {
            if !p.trainable {
                p.var.set(t).unwrap();
            }
        }
    }
}

/// Checks `grads`, the gradient of `loss` the engine gave, against central differences at
/// three elements of every parameter `which` selects; how many it checked.
fn check(
    params: &[&Params],
    grads: &GradStore,
    which: impl Fn(&str) -> bool,
    h: f64,
    abs: f64,
    loss: impl Fn() -> f64,
) -> usize {
    let mut checked = 0;
    for p in params.iter().flat_map(|p| p.iter()).filter(|p| p.trainable && which(&p.name)) {
        let grad = grads.get(p.var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {}", p.name));
        let analytic = grad.flatten_all().unwrap().to_vec1::<f64>().unwrap();
        let at = [0, p.var.elem_count() / 2, p.var.elem_count() - 1];
        checked += common::assert_matches_differences(&p.name, &p.var, &analytic, at, h, abs, &loss);
    }
    checked
}

/// fastgan's generator loss through the critic, the critic's hinge loss on real pictures
/// and its reconstruction of them: a loss that reaches every parameter, through spectral
/// norm, GLU, upsampling, the skip-layer excitations and both decoders.
#[test]
fn every_fastgan_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let shape = Shape { image_size: 32, channels: 3, nz: 5, ngf: 2, ndf: 2, classes: 0 };
    let gan = Gan::new(Arch::Fastgan, shape, &mut ChaCha8Rng::seed_from_u64(11), &dev, DType::F64).unwrap();
    move_norms(&gan, 13);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let z = randn(&mut rng, &[3, 5, 1, 1], &dev).unwrap().to_dtype(DType::F64).unwrap();
    let real = (randn(&mut rng, &[3, 3, 32, 32], &dev).unwrap().to_dtype(DType::F64).unwrap() * 0.5).unwrap();
    // Converge the power iterations first: then σ is the largest singular value, whose
    // derivative is uvᵀ (what the backward pass uses).
    for _ in 0..300 {
        gan.d.pass(Engine::Kernels, true, &[0, 1, 2]).unwrap();
    }
    let restore = restorer(&gan);
    let loss = |grads: Option<&mut GradStore>| -> f64 {
        restore();
        let g_pass = gan.g.pass(Engine::Kernels, true, &[0]).unwrap();
        let made = g_pass.forward(z.clone(), 0).unwrap();
        let d_pass = gan.d.pass(Engine::Kernels, true, &[0, 1, 2]).unwrap();
        let on_real = d_pass.forward(real.clone(), 3).unwrap();
        let on_fake = d_pass.forward(made.output(0).unwrap().clone(), 3).unwrap();
        let outs = [0, 1, 2].map(|k| Var::from_tensor(&on_real.output(k).unwrap().detach()).unwrap());
        let fake = Var::from_tensor(&on_fake.output(0).unwrap().detach()).unwrap();
        let targets = rebuild_targets(&real, 3).unwrap();
        let total = (hinge(&outs[0].flatten_all().unwrap(), true).unwrap()
            + rebuild_loss(outs[1].as_tensor(), outs[2].as_tensor(), &targets).unwrap()
            + fake.as_tensor().mean_all().unwrap().neg().unwrap())
        .unwrap();
        if let Some(grads) = grads {
            let g = total.backward().unwrap();
            let d = |v: &Var| g.get(v.as_tensor()).unwrap().clone();
            on_real.backward(vec![(0, d(&outs[0])), (1, d(&outs[1])), (2, d(&outs[2]))], Some(grads), false).unwrap();
            let dfake = on_fake.backward(vec![(0, d(&fake))], Some(grads), true).unwrap().unwrap();
            made.backward(vec![(0, dfake)], Some(grads), false).unwrap();
        }
        total.to_scalar::<f64>().unwrap()
    };
    let mut grads = GradStore::default();
    loss(Some(&mut grads));
    let checked = check(&[&gan.g_params, &gan.d_params], &grads, |_| true, 1e-6, 1e-8, || loss(None));
    assert_eq!(checked, 3 * (gan.g_params.trainable().len() + gan.d_params.trainable().len()));
}

/// WGAN-GP's penalty: its gradient with respect to every critic parameter (the tangent
/// pass through LayerNorm's second derivative) against finite differences of its value.
#[test]
fn the_gradient_penalty_matches_finite_differences() {
    let dev = Device::Cpu;
    let shape = Shape { image_size: 16, channels: 3, nz: 4, ngf: 2, ndf: 3, classes: 0 };
    let gan = Gan::new(Arch::WganGp, shape, &mut ChaCha8Rng::seed_from_u64(1), &dev, DType::F64).unwrap();
    move_norms(&gan, 2);
    let x = randn(&mut ChaCha8Rng::seed_from_u64(3), &[3, 3, 16, 16], &dev).unwrap().to_dtype(DType::F64).unwrap();
    for engine in [Engine::Kernels, Engine::Candle] {
        let penalty = |grads: &mut GradStore| {
            let pass = gan.d.pass(engine, true, &[0]).unwrap();
            gradient_penalty(&pass.forward(x.clone(), 0).unwrap(), 1.0, grads).unwrap()
        };
        let mut grads = GradStore::default();
        let value = penalty(&mut grads);
        assert!(value > 1e-3, "the penalty is {value}: too small to test its gradient");
        let checked = check(&[&gan.d_params], &grads, |_| true, 1e-5, 1e-8, || penalty(&mut GradStore::default()));
        // Three convolutions and one LayerNorm's γ and β.
        assert_eq!(checked, 3 * 5, "{engine:?}");
    }
}

/// R1 on fastgan's critic: its gradient with respect to every parameter the logits depend
/// on, through spectral normalisation and BatchNorm's batch statistics.
#[test]
fn r1s_gradient_matches_finite_differences() {
    let dev = Device::Cpu;
    let shape = Shape { image_size: 32, channels: 3, nz: 5, ngf: 2, ndf: 3, classes: 0 };
    let gan = Gan::new(Arch::Fastgan, shape, &mut ChaCha8Rng::seed_from_u64(21), &dev, DType::F64).unwrap();
    move_norms(&gan, 22);
    let real =
        (randn(&mut ChaCha8Rng::seed_from_u64(23), &[3, 3, 32, 32], &dev).unwrap().to_dtype(DType::F64).unwrap() * 0.5)
            .unwrap();
    for _ in 0..300 {
        gan.d.pass(Engine::Kernels, true, &[0]).unwrap();
    }
    let restore = restorer(&gan);
    for engine in [Engine::Kernels, Engine::Candle] {
        let penalty = |grads: &mut GradStore| {
            restore();
            let pass = gan.d.pass(engine, true, &[0]).unwrap();
            r1(&pass.forward(real.clone(), 0).unwrap(), 10.0, grads).unwrap()
        };
        let mut grads = GradStore::default();
        assert!(penalty(&mut grads) > 1e-3);
        let checked = check(
            &[&gan.d_params],
            &grads,
            |n| !n.contains("rebuild"),
            1e-6,
            1e-7,
            || penalty(&mut GradStore::default()),
        );
        // Three down blocks (two with BatchNorm) and the logit: 4 weights, 2 γ, 2 β.
        assert_eq!(checked, 3 * 8, "{engine:?}");
    }
}
