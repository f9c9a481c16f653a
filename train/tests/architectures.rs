//! Every architecture builds and runs at every supported size, grey and RGB, forward and
//! backward; its parameter count is counted without allocating it; fastgan's layers are wired
//! as it says.

use canard_train::config::Arch;
use canard_train::nn::fastgan::{self, rebuild_targets, rebuilt_side};
use canard_train::nn::params::{randn, Params};
use canard_train::nn::{Engine, Shape};
use canard_train::trainer::Gan;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn generators_and_critics_fit_every_image_size_and_channel_count() {
    let dev = Device::Cpu;
    for arch in [Arch::Dcgan, Arch::WganGp, Arch::Fastgan] {
        for size in [32, 64, 128, 256] {
            for channels in [1, 3] {
                let what = format!("{arch:?} {size}px {channels}ch");
                let shape = Shape { image_size: size, channels, nz: 6, ngf: 4, ndf: 2, classes: 0 };
                let mut rng = ChaCha8Rng::seed_from_u64(1);
                let gan = Gan::new(arch, shape, &mut rng, &dev, DType::F32).unwrap();
                let held = |params: &Params| params.iter().map(|p| p.var.elem_count()).sum::<usize>();
                let (g, d) = (held(&gan.g_params), held(&gan.d_params));
                assert_eq!(arch.generator_parameters(shape, g), Some(g), "{what}");
                assert_eq!(arch.critic_parameters(shape, d), Some(d), "{what}");
                assert_eq!(arch.generator_parameters(shape, g - 1), None, "{what}: past the limit");
                let z = randn(&mut rng, &[2, 6, 1, 1], &dev).unwrap();
                let g_pass = gan.g.pass(Engine::Kernels, true, &[0]).unwrap();
                let made = g_pass.forward(z, 0).unwrap();
                let img = made.output(0).unwrap();
                assert_eq!(img.dims(), &[2, channels, size, size], "{what}");
                let outputs: Vec<usize> = (0..gan.d.outputs.len()).collect();
                let d_pass = gan.d.pass(Engine::Kernels, true, &outputs).unwrap();
                let scored = d_pass.forward(img.clone(), 2).unwrap();
                assert_eq!(scored.output(0).unwrap().elem_count(), 2, "{what}: one score a picture");
                let mut grads = GradStore::default();
                let douts = outputs.iter().map(|&k| (k, scored.output(k).unwrap().ones_like().unwrap())).collect();
                let dimg = scored.backward(douts, Some(&mut grads), true).unwrap().unwrap();
                made.backward(vec![(0, dimg)], Some(&mut grads), false).unwrap();
                for p in gan.g_params.iter().chain(gan.d_params.iter()).filter(|p| p.trainable) {
                    assert!(grads.get(p.var.as_tensor()).is_some(), "{what}: no gradient for {}", p.name);
                }
                if arch == Arch::Fastgan {
                    let side = rebuilt_side(size);
                    for k in [1, 2] {
                        assert_eq!(scored.output(k).unwrap().dims(), &[2, channels, side, side], "{what}");
                    }
                    let first = gan.g_params.iter().find(|p| p.name == "first.weight").unwrap().var.dim(1).unwrap();
                    assert_eq!(fastgan::ngf_from_first(size, first), Some(4));
                    // The excitations: side/8 gates side, from 32 up.
                    let gated: Vec<usize> =
                        gan.g.nodes.iter().filter_map(|n| n.name.strip_prefix("excite")?.parse().ok()).collect();
                    assert_eq!(gated, (5..=size.trailing_zeros()).map(|k| 1 << k).collect::<Vec<usize>>());
                } else {
                    // Widths double per stage and stop at the image: log2(size) − 1 convolutions.
                    let convs = gan.g.nodes.iter().filter(|n| n.name.ends_with(".conv")).count();
                    assert_eq!(convs, size.trailing_zeros() as usize - 1, "{what}");
                }
            }
        }
    }
    let small = Shape { image_size: 16, channels: 3, nz: 6, ngf: 4, ndf: 4, classes: 0 };
    assert!(Arch::Fastgan.validate_shape(&small).unwrap_err().contains("32×32"));
    assert!(Arch::Dcgan.validate_shape(&small).is_ok());
    let narrow = Shape { image_size: 32, ngf: 1, ..small };
    assert!(Arch::Fastgan.validate_shape(&narrow).unwrap_err().contains("ngf and ndf of 2"));
}

#[test]
fn fastgans_decoders_rebuild_the_picture_and_one_quarter_of_it() {
    let dev = Device::Cpu;
    // The targets: the whole picture and quarter 1 (top right), at half the side.
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
