//! Every architecture builds and runs at every supported size, grey and RGB, forward and backward.

use canard_train::losses::bce_with_logits;
use canard_train::model::{params::randn, CriticNorm, DcganShape};
use canard_train::trainer::Gan;
use candle_core::{DType, Device};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn generators_and_critics_fit_every_image_size_and_channel_count() {
    let dev = Device::Cpu;
    for norm in [CriticNorm::Batch, CriticNorm::Layer] {
        for size in [32, 64, 128, 256] {
            for channels in [1, 3] {
                let shape = DcganShape { image_size: size, channels, nz: 6, ngf: 2, ndf: 2 };
                let mut rng = ChaCha8Rng::seed_from_u64(1);
                let gan = Gan::build(shape, norm, &mut rng, &dev, DType::F32).unwrap();
                let z = randn(&mut rng, &[2, 6, 1, 1], &dev).unwrap();
                let img = gan.g.forward(&z, true).unwrap();
                assert_eq!(img.dims(), &[2, channels, size, size], "{norm:?} {size}px {channels}ch");
                let score = gan.d.forward(&img, true).unwrap();
                assert_eq!(score.dims(), &[2]);
                let grads = bce_with_logits(&score, 1.0).unwrap().backward().unwrap();
                for p in gan.g_params.iter().chain(gan.d_params.iter()).filter(|p| p.trainable) {
                    assert!(grads.get(p.var.as_tensor()).is_some(), "{norm:?} {size}px: no gradient for {}", p.name);
                }
                // Widths double per stage and stop at the image: log2(size) - 1 layers each.
                assert_eq!(gan.g.dcgan().unwrap().blocks.len(), size.trailing_zeros() as usize - 1);
            }
        }
    }
}
