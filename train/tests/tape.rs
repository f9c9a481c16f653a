//! The CPU tape (`canard_train::tape`) against candle's graph: every layer's output, every
//! parameter's gradient and the input's gradient, for both networks, at several image
//! sizes, grey and colour, batch 1 and more; then whole DCGAN and WGAN steps.

use canard_train::config::{Arch, Settings};
use canard_train::cursor::Cursor;
use canard_train::data::Dataset;
use canard_train::model::params::randn;
use canard_train::model::{CriticNorm, DcganShape};
use canard_train::ops::Element;
use canard_train::optim::{Optimizer, Rule};
use canard_train::step::{dcgan_step, wgan_step, StepCtx};
use canard_train::tape::{Net, Values};
use canard_train::trainer::Gan;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn vec(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

fn assert_close(what: &str, ours: &[f64], reference: &[f64], tol: f64) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths differ");
    let scale = reference.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        assert!((a - b).abs() <= tol * scale, "{what}[{i}]: tape {a}, candle {b} (scale {scale})");
    }
}

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
        let images = randn(&mut rng, &[batch, channels, size, size], &dev).unwrap().to_dtype(dtype).unwrap();
        let z = randn(&mut rng, &[batch, 6, 1, 1], &dev).unwrap().to_dtype(dtype).unwrap();
        let (d_net, g_net) = (Net::discriminator(&gan.d).unwrap(), Net::generator(&gan.g).unwrap());
        let d = |x: &Tensor| gan.d.forward(x, true).unwrap();
        let g = |z: &Tensor| gan.g.forward(z, true).unwrap();
        if dtype == DType::F64 {
            compare::<f64>(&format!("D {what}"), &gan.d_params, d, &d_net, &images, 1e-10);
            compare::<f64>(&format!("G {what}"), &gan.g_params, g, &g_net, &z, 1e-10);
        } else {
            compare::<f32>(&format!("D {what}"), &gan.d_params, d, &d_net, &images, 1e-4);
            compare::<f32>(&format!("G {what}"), &gan.g_params, g, &g_net, &z, 1e-4);
        }
    }
}

#[test]
fn the_tape_refuses_wgan_gp_critics() {
    let shape = DcganShape { image_size: 16, channels: 1, nz: 4, ngf: 2, ndf: 2 };
    let gan =
        Gan::build(shape, CriticNorm::Layer, &mut ChaCha8Rng::seed_from_u64(0), &Device::Cpu, DType::F32).unwrap();
    let err = Net::discriminator(&gan.d).err().expect("a LayerNorm critic is refused").to_string();
    assert!(err.contains("LayerNorm"), "{err}");
}

/// The tape runs where it gives the same training: DCGAN and WGAN on the CPU, with or
/// without DiffAugment; WGAN-GP (second-order gradients) stays on candle's graph.
#[test]
fn the_tape_is_chosen_only_where_it_applies() {
    use canard_train::augment::DiffAugment;
    let dev = Device::Cpu;
    let data = Dataset { source: "random".into(), pixels: vec![0; 2 * 3 * 8 * 8], len: 2, channels: 3, size: 8 };
    let shape = DcganShape { image_size: 8, channels: 3, nz: 4, ngf: 2, ndf: 2 };
    let gan = Gan::build(shape, CriticNorm::Batch, &mut ChaCha8Rng::seed_from_u64(0), &dev, DType::F32).unwrap();
    for (arch, want) in [(Arch::Dcgan, true), (Arch::Wgan, true), (Arch::WganGp, false)] {
        let settings = Settings {
            data: Some("random".into()),
            name: Some("t".into()),
            arch: Some(arch),
            image_size: Some(8),
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

/// Whole steps, tape against graph, from the same network, data and random numbers: the
/// losses each step reports and every parameter after three steps, with and without
/// DiffAugment (and mirroring). And batches picked from pixels uploaded to the device (as
/// on a GPU) train bit for bit as the host's batches do.
#[test]
fn a_step_on_the_tape_trains_as_the_graph_does() {
    use canard_train::augment::DiffAugment;
    let all = DiffAugment::all();
    for (arch, augment) in
        [(Arch::Dcgan, None), (Arch::Wgan, None), (Arch::Dcgan, Some(&all)), (Arch::Wgan, Some(&all))]
    {
        let settings = Settings {
            data: Some("random".into()),
            name: Some("tape".into()),
            arch: Some(arch),
            image_size: Some(16),
            batch_size: Some(4),
            ngf: Some(4),
            ndf: Some(4),
            nz: Some(8),
            critic_steps: Some(2),
            critic_steps_burst: Some(2),
            mirror: Some(augment.is_some()),
            ..Settings::default()
        };
        let cfg = settings.resolve().unwrap();
        let dev = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let pixels: Vec<u8> = (0..12 * 3 * 16 * 16).map(|_| rng.random()).collect();
        let data = Dataset { source: "random".into(), pixels, len: 12, channels: 3, size: 16 };
        let shape = DcganShape { image_size: 16, channels: 3, nz: 8, ngf: 4, ndf: 4 };
        let run = |tape: bool, resident: bool| {
            let mut rng = ChaCha8Rng::seed_from_u64(5);
            let gan = Gan::build(shape, CriticNorm::Batch, &mut rng, &dev, DType::F32).unwrap();
            let rule = match arch {
                Arch::Wgan => Rule::RmsProp { alpha: 0.99, eps: 1e-8 },
                _ => Rule::Adam { beta1: 0.5, beta2: 0.999, eps: 1e-8 },
            };
            let mut opt_g = Optimizer::new(gan.g_params.trainable(), rule, cfg.lr_g).unwrap();
            let mut opt_d = Optimizer::new(gan.d_params.trainable(), rule, cfg.lr_d).unwrap();
            let mut ctx = StepCtx::new(&cfg, &gan, &data, &dev, augment).unwrap();
            assert!(ctx.tape, "the tape is chosen on the CPU for {arch:?}");
            ctx.tape = tape;
            ctx.resident = resident.then(|| data.upload(&dev).unwrap());
            let mut cursor = Cursor::new(data.len, 4, 0, 0, 1);
            let mut losses = vec![];
            for step in 1..=3 {
                let (out, _) = match arch {
                    Arch::Dcgan => dcgan_step(&ctx, &mut opt_g, &mut opt_d, &mut cursor, &mut rng, step),
                    _ => wgan_step(&ctx, &mut opt_g, &mut opt_d, &mut cursor, &mut rng, step),
                }
                .unwrap();
                let rec = out.record().unwrap();
                assert_eq!(rec.step, step);
                losses.extend([rec.loss_d as f64, rec.loss_g as f64, rec.d_real as f64, rec.d_fake as f64]);
            }
            let params: Vec<(String, Vec<f64>)> = gan
                .g_params
                .iter()
                .chain(gan.d_params.iter())
                .map(|p| (p.name.clone(), vec(p.var.as_tensor())))
                .collect();
            (losses, params, rng.random::<u64>())
        };
        let (tape, graph) = (run(true, false), run(false, false));
        assert_eq!(run(true, true), tape, "{arch:?}: uploaded pixels give the same bits");
        let what = format!("{arch:?}, DiffAugment {}", augment.is_some());
        assert_eq!(tape.2, graph.2, "{what}: both used the same random numbers");
        assert_close(&format!("{what} losses"), &tape.0, &graph.0, 1e-4);
        for ((name, a), (_, b)) in tape.1.iter().zip(&graph.1) {
            assert_close(&format!("{what} {name} after 3 steps"), a, b, 1e-4);
        }
    }
}
