//! fastgan's export reads back into the very generator that trained it.

use canard_train::config::Arch;
use canard_train::export::reader::load_generator;
use canard_train::nn::Shape;
use canard_train::trainer::Gan;
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[test]
fn the_export_reads_back_into_the_same_generator() {
    let shape = Shape { image_size: 64, channels: 3, nz: 7, ngf: 4, ndf: 4, classes: 0 };
    let gan = Gan::new(Arch::Fastgan, shape, &mut ChaCha8Rng::seed_from_u64(9), &Device::Cpu, DType::F32).unwrap();
    // Trained-looking BatchNorm: distinct statistics per channel.
    for (i, p) in gan.g_params.iter().enumerate().filter(|(_, p)| p.name.contains("bn.")) {
        let c = p.var.dim(0).unwrap();
        let (a, b) = match p.name.rsplit('.').next() {
            Some("running_var") => (0.5, 0.3),
            Some("gamma") => (1.2, 0.5),
            _ => (0.0, 0.1),
        };
        let wave: Vec<f32> = (0..c).map(|k| a + b * ((k * 5 + i) as f32).sin()).collect();
        p.var.set(&Tensor::new(wave, &Device::Cpu).unwrap()).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let (model_dir, manifest) =
        canard_train::export::export(&gan.g, &shape, &[], dir.path(), "fg", "fastgan", Default::default()).unwrap();
    assert_eq!(manifest.arch, "fastgan");
    let (_, read) = load_generator(&model_dir, &Device::Cpu).unwrap();
    assert_eq!((read.arch, read.shape.ngf, read.shape.nz, read.shape.image_size), (Arch::Fastgan, 4, 7, 64));
    let seeds = [0u64, 5, 99];
    let want = canard_train::report::generate(&gan.g, 7, &seeds, &[], &Device::Cpu).unwrap();
    assert_eq!(read.generate(&seeds, None).unwrap(), want.flatten_all().unwrap().to_vec1::<f32>().unwrap());
}
