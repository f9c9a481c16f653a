//! Shared by the tape's tests: values compared with a tolerance, LayerNorm parameters
//! moved off their initial values, and whole training steps on the tape against the same
//! steps on candle's graph.

use canard_train::augment::{Ada, DiffAugment};
use canard_train::config::{Arch, Settings};
use canard_train::cursor::Cursor;
use canard_train::data::Dataset;
use canard_train::model::params::randn;
use canard_train::model::{CriticNorm, DcganShape};
use canard_train::optim::{Optimizer, Rule};
use canard_train::step::{dcgan_step, fastgan_step, wgan_step, StepCtx};
use canard_train::trainer::Gan;
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn vec(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap()
}

/// LayerNorm's γ and β (names with `ln`) moved away from their initial 1 and 0 by
/// N(0, 0.3²) noise, so a mistake in either shows.
pub fn move_layer_norms(params: &canard_train::model::Params, rng: &mut ChaCha8Rng) {
    for p in params.iter().filter(|p| p.name.contains("ln")) {
        let moved = randn(rng, p.var.dims(), p.var.device()).unwrap().to_dtype(p.var.dtype()).unwrap();
        p.var.set(&(p.var.as_tensor() + (moved * 0.3).unwrap()).unwrap()).unwrap();
    }
}

pub fn assert_close(what: &str, ours: &[f64], reference: &[f64], tol: f64) {
    assert_eq!(ours.len(), reference.len(), "{what}: lengths differ");
    let scale = reference.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
        assert!((a - b).abs() <= tol * scale, "{what}[{i}]: tape {a}, candle {b} (scale {scale})");
    }
}

/// Whole steps, tape against graph, from the same network, data and random numbers: the
/// losses each step reports and every parameter after three steps, with or without
/// DiffAugment (and mirroring; fastgan always has it, here with ADA's probability at 0.5).
/// And batches picked from pixels uploaded to the device (as
/// on a GPU) train bit for bit as the host's batches do.
pub fn tape_and_graph_steps_agree(arch: Arch, augment: Option<&DiffAugment>) {
    let size = if arch == Arch::Fastgan { 32 } else { 16 };
    let settings = Settings {
        data: Some("random".into()),
        name: Some("tape".into()),
        arch: Some(arch),
        image_size: Some(size),
        batch_size: Some(4),
        ngf: Some(4),
        ndf: Some(4),
        nz: Some(8),
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
    let data = Dataset { source: "random".into(), pixels, len: 12, channels: 3, size };
    let shape = DcganShape { image_size: size, channels: 3, nz: 8, ngf: 4, ndf: 4 };
    let run = |tape: bool, resident: bool| {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let norm = if arch == Arch::WganGp { CriticNorm::Layer } else { CriticNorm::Batch };
        let gan = Gan::build_kind(arch.kind(), shape, norm, &mut rng, &dev, DType::F32).unwrap();
        let mut ada = Ada::new(0.6);
        ada.p = 0.5;
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
                Arch::Fastgan => {
                    fastgan_step(&ctx, &mut opt_g, &mut opt_d, &mut cursor, &mut rng, step, Some(&mut ada))
                }
                _ => wgan_step(&ctx, &mut opt_g, &mut opt_d, &mut cursor, &mut rng, step),
            }
            .unwrap();
            let rec = out.record().unwrap();
            assert_eq!(rec.step, step);
            losses.extend([rec.loss_d, rec.loss_g, rec.d_real, rec.d_fake, rec.gp].map(f64::from));
        }
        let params: Vec<(String, Vec<f64>)> =
            gan.g_params.iter().chain(gan.d_params.iter()).map(|p| (p.name.clone(), vec(p.var.as_tensor()))).collect();
        (losses, params, (rng.random::<u64>(), ada.signs.to_bits()))
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
