//! The CPU tape (`canard_train::tape`) against candle's graph: every layer's output, every
//! parameter's gradient and the input's gradient, for both networks, at several image
//! sizes, grey and colour, batch 1 and more; then whole DCGAN and WGAN steps.

#[path = "common/steps.rs"]
mod steps;

use canard_train::augment::DiffAugment;
use canard_train::config::{Arch, Settings};
use canard_train::data::Dataset;
use canard_train::model::params::randn;
use canard_train::model::{CriticNorm, DcganShape};
use canard_train::ops::Element;
use canard_train::step::StepCtx;
use canard_train::tape::{Net, Values};
use canard_train::trainer::Gan;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use steps::{assert_close, move_layer_norms, tape_and_graph_steps_agree, vec};

/// One network both ways, in T: forward in training mode, then the gradients of
/// ⟨output, r⟩ for a random r, with respect to every trainable parameter and the input.
fn compare<T: Element>(
    what: &str,
    params: &canard_train::model::Params,
    candle_forward: impl Fn(&Tensor) -> Tensor,
    net: &Net,
    input: &Tensor,
    tol: f64,
) {
    let x = Var::from_tensor(input).unwrap();
    let y = candle_forward(x.as_tensor());
    let r = randn(&mut ChaCha8Rng::seed_from_u64(7), y.dims(), &Device::Cpu).unwrap().to_dtype(y.dtype()).unwrap();
    let reference = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();

    let tape = net.forward(Values::<T>::of(input).unwrap()).unwrap();
    let f64s = |v: &[T]| v.iter().map(|x| x.to_f64()).collect::<Vec<_>>();
    assert_close(&format!("{what} output"), &f64s(&tape.output().data), &vec(&y), tol);
    let mut grads = GradStore::default();
    let dy: Vec<T> = r.flatten_all().unwrap().to_vec1().unwrap();
    let dx = tape.backward(dy.clone(), Some(&mut grads), true).unwrap().expect("the input's gradient");
    assert_close(&format!("{what} d/dinput"), &f64s(&dx), &vec(reference.get(x.as_tensor()).unwrap()), tol);
    let mut checked = 0;
    for p in params.iter().filter(|p| p.trainable) {
        let ours =
            grads.get(p.var.as_tensor()).unwrap_or_else(|| panic!("{what}: the tape gave no gradient for {}", p.name));
        assert_close(
            &format!("{what} d/d{}", p.name),
            &vec(ours),
            &vec(reference.get(p.var.as_tensor()).unwrap()),
            tol,
        );
        checked += 1;
    }
    assert!(checked > 0, "{what}: no parameters");
    // Frozen: the input's gradient alone, the same, and no parameter gradients asked for.
    let frozen = tape.backward(dy, None, true).unwrap().unwrap();
    assert_close(&format!("{what} frozen d/dinput"), &f64s(&frozen), &f64s(&dx), 0.0);
}

/// Both networks of a DCGAN, and WGAN-GP's critic with LayerNorm, both ways.
#[test]
fn the_tape_gives_candles_outputs_and_gradients() {
    let dev = Device::Cpu;
    // (image size, channels, batch, ngf = ndf, dtype)
    for (size, channels, batch, width, dtype) in
        [(8, 1, 1, 3, DType::F64), (16, 3, 3, 4, DType::F64), (32, 3, 2, 5, DType::F64), (16, 1, 2, 8, DType::F32)]
    {
        let what = format!("{size}px ×{channels} batch {batch} {dtype:?}");
        let shape = DcganShape { image_size: size, channels, nz: 6, ngf: width, ndf: width };
        let mut rng = ChaCha8Rng::seed_from_u64(size as u64 + batch as u64);
        let gan = Gan::build(shape, CriticNorm::Batch, &mut rng, &dev, dtype).unwrap();
        let wgan_gp = Gan::build(shape, CriticNorm::Layer, &mut rng, &dev, dtype).unwrap();
        move_layer_norms(&wgan_gp.d_params, &mut rng);
        let images = randn(&mut rng, &[batch, channels, size, size], &dev).unwrap().to_dtype(dtype).unwrap();
        let z = randn(&mut rng, &[batch, 6, 1, 1], &dev).unwrap().to_dtype(dtype).unwrap();
        let (d_net, g_net) = (Net::discriminator(&gan.d).unwrap(), Net::generator(&gan.g).unwrap());
        let ln_net = Net::discriminator(&wgan_gp.d).unwrap();
        let d = |x: &Tensor| gan.d.forward(x, true).unwrap();
        let g = |z: &Tensor| gan.g.forward(z, true).unwrap();
        let ln = |x: &Tensor| wgan_gp.d.forward(x, true).unwrap();
        let ln_what = format!("LayerNorm critic {what}");
        if dtype == DType::F64 {
            compare::<f64>(&format!("D {what}"), &gan.d_params, d, &d_net, &images, 1e-10);
            compare::<f64>(&format!("G {what}"), &gan.g_params, g, &g_net, &z, 1e-10);
            compare::<f64>(&ln_what, &wgan_gp.d_params, ln, &ln_net, &images, 1e-10);
        } else {
            compare::<f32>(&format!("D {what}"), &gan.d_params, d, &d_net, &images, 1e-4);
            compare::<f32>(&format!("G {what}"), &gan.g_params, g, &g_net, &z, 1e-4);
            compare::<f32>(&ln_what, &wgan_gp.d_params, ln, &ln_net, &images, 1e-4);
        }
    }
}

/// The tape runs on the CPU for every architecture, with or without DiffAugment.
#[test]
fn the_tape_is_chosen_on_the_cpu_for_every_architecture() {
    let dev = Device::Cpu;
    let data = Dataset { source: "random".into(), pixels: vec![0; 2 * 3 * 8 * 8], len: 2, channels: 3, size: 8 };
    let shape = DcganShape { image_size: 8, channels: 3, nz: 4, ngf: 2, ndf: 2 };
    let gan = Gan::build(shape, CriticNorm::Batch, &mut ChaCha8Rng::seed_from_u64(0), &dev, DType::F32).unwrap();
    for (arch, want) in [(Arch::Dcgan, true), (Arch::Wgan, true), (Arch::WganGp, true), (Arch::Fastgan, true)] {
        let settings = Settings {
            data: Some("random".into()),
            name: Some("t".into()),
            arch: Some(arch),
            image_size: Some(32),
            ..Settings::default()
        };
        let cfg = settings.resolve().unwrap();
        assert_eq!(StepCtx::new(&cfg, &gan, &data, &dev, None).unwrap().tape, want, "{arch:?}");
        let augment = DiffAugment { colour: true, translation: true, cutout: true };
        let ctx = StepCtx::new(&cfg, &gan, &data, &dev, Some(&augment)).unwrap();
        assert_eq!(ctx.tape, want, "{arch:?} with DiffAugment");
        assert!(ctx.resident.is_none(), "on the CPU, batches come from the host's pixels");
    }
}

/// fastgan's generator, and its critic with both decoders, both ways in f64: the outputs
/// and the gradients of ⟨outputs, r⟩ for random r with respect to every trainable
/// parameter (spectral norms' W through σ) and the critic's input. At 32 px one
/// excitation (from the 4×4 map), at 64 px two (pooling 8×8 maps); every quarter.
#[test]
fn fastgan_on_the_tape_gives_candles_gradients() {
    use canard_train::model::Kind;
    use canard_train::tape::fastgan::{CriticWeights, GeneratorTape};
    let dev = Device::Cpu;
    for (size, channels, batch, width, part) in [(32, 3, 2, 4, 0), (32, 1, 3, 3, 3), (64, 3, 2, 2, 1), (64, 1, 2, 2, 2)]
    {
        let what = format!("fastgan {size}px ×{channels} batch {batch} quarter {part}");
        let shape = DcganShape { image_size: size, channels, nz: 6, ngf: width, ndf: width };
        let mut rng = ChaCha8Rng::seed_from_u64(size as u64 + batch as u64);
        let gan = Gan::build_kind(Kind::Fastgan, shape, CriticNorm::Batch, &mut rng, &dev, DType::F64).unwrap();
        move_batch_norms(&gan, &mut rng);
        let (g, d) = (gan.g.fastgan().unwrap(), gan.d.fastgan().unwrap());
        let f64s = |v: &[f64]| v.to_vec();
        let r = |dims: &[usize], rng: &mut ChaCha8Rng| randn(rng, dims, &dev).unwrap().to_dtype(DType::F64).unwrap();

        // The generator.
        let z = Var::from_tensor(&r(&[batch, 6, 1, 1], &mut rng)).unwrap();
        let y = g.forward(z.as_tensor(), true).unwrap();
        let ry = r(y.dims(), &mut rng);
        let reference = (&y * &ry).unwrap().sum_all().unwrap().backward().unwrap();
        let tape = GeneratorTape::forward(g, Values::<f64>::of(z.as_tensor()).unwrap()).unwrap();
        assert_close(&format!("G {what} output"), &f64s(&tape.output().data), &vec(&y), 1e-10);
        let mut grads = GradStore::default();
        tape.backward(vec(&ry), &mut grads).unwrap();
        assert_same_gradients(&format!("G {what}"), &gan.g_params, &grads, &reference);

        // The critic, rebuilding: the power iterations' estimates restored between the two ways.
        let x = Var::from_tensor(&r(&[batch, channels, size, size], &mut rng)).unwrap();
        let saved: Vec<Tensor> = gan.d_params.iter().map(|p| p.var.as_tensor().copy().unwrap()).collect();
        let (logits, all, quarter) = d.forward_rebuilt(x.as_tensor(), part, true).unwrap();
        let rs = [logits.dims(), all.dims(), quarter.dims()].map(|dims| r(dims, &mut rng));
        let outputs = [&logits, &all, &quarter];
        let loss = outputs.iter().zip(&rs).map(|(o, r)| (*o * r).unwrap().sum_all().unwrap());
        let loss = loss.reduce(|a, b| (a + b).unwrap()).unwrap();
        let reference = loss.backward().unwrap();
        for (p, t) in gan.d_params.iter().zip(&saved) {
            p.var.set(t).unwrap();
        }
        let weights = CriticWeights::<f64>::of(d, true).unwrap();
        let tape = weights.forward(Values::of(x.as_tensor()).unwrap(), part).unwrap();
        assert_close(&format!("D {what} logits"), &tape.logits().data, &vec(&logits), 1e-10);
        let [t_all, t_quarter] = tape.rebuilt().unwrap();
        assert_close(&format!("D {what} rebuilt"), &t_all.data, &vec(&all), 1e-10);
        assert_close(&format!("D {what} quarter rebuilt"), &t_quarter.data, &vec(&quarter), 1e-10);
        let mut grads = GradStore::default();
        let drebuilt = Some([vec(&rs[1]), vec(&rs[2])]);
        let dx = tape.backward(vec(&rs[0]), drebuilt.clone(), Some(&mut grads), true).unwrap().unwrap();
        assert_close(&format!("D {what} d/dinput"), &dx, &vec(reference.get(x.as_tensor()).unwrap()), 1e-10);
        assert_same_gradients(&format!("D {what}"), &gan.d_params, &grads, &reference);
        // Frozen: the same input gradient, nothing else asked for.
        let frozen = tape.backward(vec(&rs[0]), drebuilt, None, true).unwrap().unwrap();
        assert_close(&format!("D {what} frozen d/dinput"), &frozen, &dx, 0.0);
    }
}

/// BatchNorm's γ and β moved off their initial values, so a mistake in either shows.
fn move_batch_norms(gan: &Gan, rng: &mut ChaCha8Rng) {
    for p in
        gan.g_params.iter().chain(gan.d_params.iter()).filter(|p| p.name.ends_with("gamma") || p.name.ends_with("beta"))
    {
        let moved = randn(rng, p.var.dims(), p.var.device()).unwrap().to_dtype(p.var.dtype()).unwrap();
        p.var.set(&(p.var.as_tensor() + (moved * 0.3).unwrap()).unwrap()).unwrap();
    }
}

/// Every trainable parameter's gradient in `ours` matches candle's.
fn assert_same_gradients(what: &str, params: &canard_train::model::Params, ours: &GradStore, reference: &GradStore) {
    let mut checked = 0;
    for p in params.iter().filter(|p| p.trainable) {
        let g =
            ours.get(p.var.as_tensor()).unwrap_or_else(|| panic!("{what}: the tape gave no gradient for {}", p.name));
        let want =
            reference.get(p.var.as_tensor()).unwrap_or_else(|| panic!("{what}: candle gave none for {}", p.name));
        assert_close(&format!("{what} d/d{}", p.name), &vec(g), &vec(want), 1e-9);
        checked += 1;
    }
    assert!(checked > 10, "{what}: only {checked} parameters");
}

/// Whole DCGAN and WGAN steps, tape against graph (WGAN-GP's are in gradient_penalty.rs:
/// its graph needs candle's second-order switch, set once per test binary).
#[test]
fn a_step_on_the_tape_trains_as_the_graph_does() {
    let all = DiffAugment::all();
    for (arch, augment) in [
        (Arch::Dcgan, None),
        (Arch::Wgan, None),
        (Arch::Dcgan, Some(&all)),
        (Arch::Wgan, Some(&all)),
        (Arch::Fastgan, Some(&all)),
    ] {
        tape_and_graph_steps_agree(arch, augment);
    }
}
