//! canard's small-data GAN (`--arch fastgan`), after FastGAN (Liu et al. 2021, "Towards
//! Faster and Stabilized GAN Training for High-fidelity Few-shot Image Synthesis"), sized
//! for a CPU: what trains best on a folder of a hundred to a few thousand pictures.
//! Conditional (`shape.classes` > 0): the generator reads [z, e(class)] ([`Embed`]), the
//! critic adds the spectrally normalised projection of its 4×4 features on the class
//! ([`Project`]) to its logit.
//!
//! Generator: z → ConvTranspose 4×4 to 4×4 (2·w channels), BatchNorm, GLU; per doubling
//! nearest-upsample ×2, 3×3 convolution to 2·w', BatchNorm, GLU; skip-layer excitation:
//! the side-s/8 map gates the side-s map's channels (pool to 4×4 → 4×4 conv → LeakyReLU(0.1)
//! → 1×1 conv → sigmoid) for every s ≥ 32; a 3×3 convolution to the picture, tanh.
//!
//! Discriminator: every convolution spectrally normalised; 4×4 stride-2 convolutions with
//! BatchNorm (not the first) and LeakyReLU(0.2) down to 4×4, a 4×4 convolution to one
//! logit (hinge loss, `crate::losses`). Its self-supervision: two small decoders rebuild
//! the real picture at 32×32 from the 8×8 features, and one quarter of it from that
//! quarter of the 16×16 features (the critic's outputs 1 and 2, [`critic`]).
//!
//! Widths: side s has min(base·size/(2s), 8·base) channels (base = ngf or ndf): DCGAN's
//! widths, and base/2 at the picture's own side. Simpler than the paper's, for 2 cores:
//! one convolution per generator block, no noise injection, single-branch down blocks,
//! one logit rather than a 5×5 map, MSE reconstruction (not LPIPS, which needs
//! downloaded weights). `scripts/reference_fastgan.py` is the same network in PyTorch.

use candle_core::{Result, Tensor};

use super::activation::Activation;
use super::class::{Embed, Project};
use super::conv::Conv;
use super::excite::Excite;
use super::glu::Glu;
use super::norm::{Norm, LINEAR};
use super::quarter::Quarter;
use super::{Init, Net, Shape};

/// The side the decoders rebuild pictures at: half the picture's, at most 128 (FastGAN's).
pub fn rebuilt_side(size: usize) -> usize {
    (size / 2).min(128)
}

/// Channels at side `side` of a network for `size`-pixel pictures with base width `base`.
pub fn width(size: usize, side: usize, base: usize) -> usize {
    // Saturating: a width too large to count makes a parameter count that overflows, refused.
    (base.saturating_mul(size) / (2 * side)).min(base.saturating_mul(8))
}

/// The sides 4, 8, …, size.
fn sides(size: usize) -> impl DoubleEndedIterator<Item = usize> {
    (2..=size.trailing_zeros()).map(|k| 1usize << k)
}

pub fn validate(shape: &Shape) -> std::result::Result<(), String> {
    shape.validate()?;
    if shape.image_size < 32 {
        return Err(format!("fastgan needs pictures of 32×32 or more, not {0}×{0}", shape.image_size));
    }
    if shape.ngf < 2 || shape.ndf < 2 {
        return Err("fastgan needs ngf and ndf of 2 or more".into());
    }
    Ok(())
}

/// The base width `ngf` of a generator whose first layer has `first_out` channels (2·w(4)),
/// if one has.
pub fn ngf_from_first(size: usize, first_out: usize) -> Option<usize> {
    let per = (size / 8).clamp(1, 8); // w(4) = base·min(size/8, 8)
    let w4 = first_out / 2;
    (first_out.is_multiple_of(2) && w4.is_multiple_of(per) && w4 > 0).then_some(w4 / per)
}

/// The critic's down blocks, input first, by their parameters' prefix (`down32.`, …, `down4.`).
pub fn critic_blocks(shape: &Shape) -> Vec<String> {
    sides(shape.image_size).rev().skip(1).map(|side| format!("down{side}.")).collect()
}

/// The generator: outputs [pictures].
pub fn generator(init: &mut Init, shape: Shape) -> Result<Net> {
    let (size, base) = (shape.image_size, shape.ngf);
    let w = |side| width(size, side, base);
    let mut net = Net::default();
    if shape.classes > 0 {
        net.add("embed", Embed::new(&mut init.pp("embed"), shape.classes, shape.nz)?, &[0]);
    }
    let z = net.last();
    let first =
        net.add("first", Conv::transposed(&mut init.pp("first"), shape.latent_width(), 2 * w(4), 4, 1, 0)?, &[z]);
    let bn = net.add("first_bn", Norm::batch(&mut init.pp("first_bn"), 2 * w(4), LINEAR)?, &[first]);
    let mut maps = vec![net.add("first_glu", Glu, &[bn])]; // maps[k]: side 4·2^k
    for (k, side) in sides(size).skip(1).enumerate() {
        let mut up = init.pp(format!("up{side}"));
        let conv =
            net.add(format!("up{side}.conv"), Conv::up(&mut up.pp("conv"), w(side / 2), 2 * w(side))?, &[maps[k]]);
        let bn = net.add(format!("up{side}.bn"), Norm::batch(&mut up.pp("bn"), 2 * w(side), LINEAR)?, &[conv]);
        let mut x = net.add(format!("up{side}"), Glu, &[bn]);
        if side >= 32 {
            let e = Excite::new(&mut init.pp(format!("excite{side}")), w(side / 8), w(side), side / 8)?;
            x = net.add(format!("excite{side}"), e, &[maps[k - 2], x]); // side/8
        }
        maps.push(x);
    }
    let last = net.last();
    let image = net.add("to_image", Conv::new(&mut init.pp("to_image"), w(size), shape.channels, 3, 1, 1)?, &[last]);
    net.outputs = vec![net.add("tanh", Activation::Tanh, &[image])];
    Ok(net)
}

/// The critic: outputs [logits, the picture rebuilt from the 8×8 features, quarter
/// [`super::Ctx::part`] rebuilt from that quarter of the 16×16 features]. Every
/// convolution spectrally normalised.
pub fn critic(init: &mut Init, shape: Shape) -> Result<Net> {
    let (size, base) = (shape.image_size, shape.ndf);
    let w = |side| width(size, side, base);
    let mut net = Net::default();
    let (mut c_in, mut f16, mut f8) = (shape.channels, 0, 0);
    for side in sides(size).rev().skip(1) {
        let mut b = init.pp(format!("down{side}"));
        let x = net.last();
        let conv = Conv::new(&mut b.pp("conv"), c_in, w(side), 4, 2, 1)?.spectral(&mut b.pp("conv"))?;
        let conv = net.add(format!("down{side}.conv"), conv, &[x]);
        let y = match side == size / 2 {
            true => net.add(format!("down{side}.act"), Activation::LeakyRelu(0.2), &[conv]),
            false => net.add(format!("down{side}.bn"), Norm::batch(&mut b.pp("bn"), w(side), 0.2)?, &[conv]),
        };
        match side {
            16 => f16 = y,
            8 => f8 = y,
            _ => {}
        }
        c_in = w(side);
    }
    let x = net.last();
    let mut logit =
        net.add("logit", Conv::new(&mut init.pp("logit"), c_in, 1, 4, 1, 0)?.spectral(&mut init.pp("logit"))?, &[x]);
    if shape.classes > 0 {
        let project = Project::new(&mut init.pp("project"), shape.classes, c_in)?.spectral(&mut init.pp("project"))?;
        logit = net.add("project", project, &[x, logit]);
    }
    let side = rebuilt_side(size);
    let all = decoder(&mut net, &mut init.pp("rebuild_all"), f8, w(8), base, shape.channels, side)?;
    let quarter = net.add("quarter", Quarter, &[f16]);
    let part = decoder(&mut net, &mut init.pp("rebuild_part"), quarter, w(16), base, shape.channels, side)?;
    net.outputs = vec![logit, all, part];
    Ok(net)
}

/// 8×8 features → a `side`-sided picture: per doubling an upsampling convolution, BatchNorm
/// and GLU (widths base, base/2, …, at least 1), then a 3×3 convolution to the channels,
/// tanh; every convolution spectrally normalised. Its output's value.
fn decoder(
    net: &mut Net,
    init: &mut Init,
    x: usize,
    c_in: usize,
    base: usize,
    channels: usize,
    side: usize,
) -> Result<usize> {
    let name = init.name();
    let (mut x, mut c) = (x, c_in);
    for k in 0..(side / 8).trailing_zeros() as usize {
        let mut up = init.pp(format!("up{k}"));
        let out = (base >> k).max(1);
        let conv = Conv::up(&mut up.pp("conv"), c, 2 * out)?.spectral(&mut up.pp("conv"))?;
        let conv = net.add(format!("{name}.up{k}.conv"), conv, &[x]);
        let bn = net.add(format!("{name}.up{k}.bn"), Norm::batch(&mut up.pp("bn"), 2 * out, LINEAR)?, &[conv]);
        x = net.add(format!("{name}.up{k}"), Glu, &[bn]);
        c = out;
    }
    let conv = net.add(
        format!("{name}.out"),
        Conv::new(&mut init.pp("out"), c, channels, 3, 1, 1)?.spectral(&mut init.pp("out"))?,
        &[x],
    );
    Ok(net.add(format!("{name}.tanh"), Activation::Tanh, &[conv]))
}

/// The decoders' targets from the (augmented) real pictures: all of each, and its quarter
/// `part`, at [`rebuilt_side`]² (average-pooled to fit; neither is smaller).
pub fn rebuild_targets(real: &Tensor, part: usize) -> Result<(Tensor, Tensor)> {
    let size = real.dim(2)?;
    let (r, c) = (part / 2 % 2, part % 2);
    let half = size / 2;
    let quarter = real.narrow(2, r * half, half)?.narrow(3, c * half, half)?;
    let side = rebuilt_side(size);
    Ok((fit(real, side)?, fit(&quarter, side)?))
}

fn fit(x: &Tensor, side: usize) -> Result<Tensor> {
    match x.dim(2)? / side {
        1 => Ok(x.clone()),
        k => x.avg_pool2d(k),
    }
}

/// The reconstruction loss of the critic's two rebuilt pictures.
pub fn rebuild_loss(all: &Tensor, part: &Tensor, targets: &(Tensor, Tensor)) -> Result<Tensor> {
    candle_nn::loss::mse(all, &targets.0)? + candle_nn::loss::mse(part, &targets.1)?
}
