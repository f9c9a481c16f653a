//! DCGAN's networks (Radford et al. 2016), for dcgan, wgan and wgan-gp, sized from the
//! image size: pytorch/examples `dcgan` at 64×64, and any power of two from 8 up.
//!
//! Generator: z [N, nz, 1, 1] → ConvT(4, s1, p0) to 4×4 → (ConvT(4, s2, p1), BN, ReLU)
//! doubling the side and halving the width until `size/2` → ConvT(4, s2, p1) → Tanh.
//! Critic: mirrors it with Conv, a normalisation (not on the first layer) and
//! LeakyReLU(0.2), ending in one logit or score per image.
//! Conditional (`shape.classes` > 0): the generator reads [z, e(class)] ([`Embed`]), the
//! critic adds the projection of its last features on the class ([`Project`]).

use candle_core::Result;

use super::activation::Activation;
use super::class::{Embed, Project};
use super::conv::Conv;
use super::norm::Norm;
use super::{Init, Net, Shape};

/// 4×4 kernels everywhere, as in Radford et al.
pub const KERNEL: usize = 4;
/// DCGAN's LeakyReLU slope.
pub const LEAKY_SLOPE: f64 = 0.2;

/// How the critic normalises its hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CriticNorm {
    Batch,
    /// Per sample: WGAN-GP's, whose penalty is defined per sample.
    Layer,
}

/// The generator's widths, input to output: nz (2·nz conditional), ngf·2^(n−1), …, ngf, channels.
pub fn generator_widths(shape: &Shape) -> Vec<usize> {
    let n = shape.stages();
    let hidden = (0..n).map(|i| shape.ngf << (n - 1 - i));
    std::iter::once(shape.latent_width()).chain(hidden).chain(std::iter::once(shape.channels)).collect()
}

pub fn generator(init: &mut Init, shape: Shape) -> Result<Net> {
    let widths = generator_widths(&shape);
    let last = widths.len() - 2;
    let mut net = Net::default();
    if shape.classes > 0 {
        net.add("embed", Embed::new(&mut init.pp("embed"), shape.classes, shape.nz)?, &[0]);
    }
    for (i, pair) in widths.windows(2).enumerate() {
        let (stride, padding) = if i == 0 { (1, 0) } else { (2, 1) };
        let mut b = init.pp(i);
        let x = net.last();
        let conv = net.add(
            format!("{i}.conv"),
            Conv::transposed(&mut b.pp("conv"), pair[0], pair[1], KERNEL, stride, padding)?,
            &[x],
        );
        match i == last {
            false => net.add(format!("{i}.relu"), Norm::batch(&mut b.pp("bn"), pair[1], 0.0)?, &[conv]),
            true => net.add(format!("{i}.tanh"), Activation::Tanh, &[conv]),
        };
    }
    net.outputs = vec![net.last()];
    Ok(net)
}

/// The critic's blocks before its last layer, input first, by their parameters' prefix (`0.`, `1.`, …).
pub fn critic_blocks(shape: &Shape) -> Vec<String> {
    (0..shape.stages()).map(|i| format!("{i}.")).collect()
}

pub fn critic(init: &mut Init, shape: Shape, norm: CriticNorm) -> Result<Net> {
    let n = shape.stages();
    let mut net = Net::default();
    let mut c_in = shape.channels;
    for i in 0..=n {
        let last = i == n;
        let c_out = if last { 1 } else { shape.ndf << i };
        let (stride, padding) = if last { (1, 0) } else { (2, 1) };
        let mut b = init.pp(i);
        let x = net.last();
        let conv =
            net.add(format!("{i}.conv"), Conv::new(&mut b.pp("conv"), c_in, c_out, KERNEL, stride, padding)?, &[x]);
        match (i == 0, last, norm) {
            (_, true, _) => {}
            (true, _, _) => _ = net.add(format!("{i}.act"), Activation::LeakyRelu(LEAKY_SLOPE), &[conv]),
            (_, _, CriticNorm::Batch) => {
                _ = net.add(format!("{i}.bn"), Norm::batch(&mut b.pp("bn"), c_out, LEAKY_SLOPE)?, &[conv])
            }
            (_, _, CriticNorm::Layer) => {
                _ = net.add(format!("{i}.ln"), Norm::layer(&mut b.pp("ln"), c_out, LEAKY_SLOPE)?, &[conv])
            }
        }
        c_in = c_out;
    }
    if shape.classes > 0 {
        let (features, logit) = (net.last() - 1, net.last());
        // Over the last convolution's input features.
        let project = Project::new(&mut init.pp("project"), shape.classes, shape.ndf << (n - 1))?;
        net.add("project", project, &[features, logit]);
    }
    net.outputs = vec![net.last()];
    Ok(net)
}
