//! canard's small-data GAN (`--arch fastgan`), after FastGAN (Liu et al. 2021, "Towards
//! Faster and Stabilized GAN Training for High-fidelity Few-shot Image Synthesis"), sized
//! for a CPU: what trains best on a folder of a hundred to a few thousand pictures.
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
//! quarter of the 16×16 features ([`Discriminator::forward_rebuilt`]).
//!
//! Widths: side s has min(base·size/(2s), 8·base) channels (base = ngf or ndf): DCGAN's
//! widths, and base/2 at the picture's own side. Simpler than the paper's, for 2 cores:
//! one convolution per generator block, no noise injection, single-branch down blocks,
//! one logit rather than a 5×5 map, MSE reconstruction (not LPIPS, which needs
//! downloaded weights). `scripts/reference_fastgan.py` is the same network in PyTorch.

use candle_core::{Result, Tensor, Var};

use super::dcgan::DcganShape;
use super::layers::{leaky_relu, BatchNorm2d, Conv2d, ConvTranspose2d};
use super::params::Init;
use crate::ops::Activation;

/// The side the decoders rebuild pictures at: half the picture's, at most 128 (FastGAN's).
pub fn rebuilt_side(size: usize) -> usize {
    (size / 2).min(128)
}
/// Skip-layer excitation's LeakyReLU slope (the paper's).
pub const EXCITE_SLOPE: f64 = 0.1;

/// Channels at side `side` of a network for `size`-pixel pictures with base width `base`.
pub fn width(size: usize, side: usize, base: usize) -> usize {
    // Saturating: a width too large to count makes a parameter count that overflows, refused.
    (base.saturating_mul(size) / (2 * side)).min(base.saturating_mul(8))
}

/// The sides 4, 8, …, size.
fn sides(size: usize) -> impl DoubleEndedIterator<Item = usize> {
    (2..=size.trailing_zeros()).map(|k| 1usize << k)
}

pub fn validate(shape: &DcganShape) -> std::result::Result<(), String> {
    shape.validate()?;
    if shape.image_size < 32 {
        return Err(format!("fastgan needs pictures of 32×32 or more, not {0}×{0}", shape.image_size));
    }
    if shape.ngf < 2 || shape.ndf < 2 {
        return Err("fastgan needs ngf and ndf of 2 or more".into());
    }
    Ok(())
}

/// The generator's parameter count (weights and BatchNorm's four vectors), computed
/// without building it; `None` on overflow.
pub fn generator_parameters(shape: &DcganShape) -> Option<usize> {
    let (size, base) = (shape.image_size, shape.ngf);
    let w = |side: usize| width(size, side, base);
    let mul = |a: usize, b: usize, c: usize| a.checked_mul(b)?.checked_mul(c);
    let mut n = mul(shape.nz, 2 * w(4), 16)?.checked_add(8 * w(4))?;
    for side in sides(size).skip(1) {
        n = n.checked_add(mul(w(side / 2), 2 * w(side), 9)?)?.checked_add(8 * w(side))?;
        if side >= 32 {
            n = n.checked_add(mul(w(side / 8), w(side), 16)?)?.checked_add(mul(w(side), w(side), 1)?)?;
        }
    }
    n.checked_add(mul(w(size), shape.channels, 9)?)
}

/// The base width `ngf` of a generator whose first layer has `first_out` channels (2·w(4)),
/// if one has.
pub fn ngf_from_first(size: usize, first_out: usize) -> Option<usize> {
    let per = (size / 8).clamp(1, 8); // w(4) = base·min(size/8, 8)
    let w4 = first_out / 2;
    (first_out.is_multiple_of(2) && w4.is_multiple_of(per) && w4 > 0).then_some(w4 / per)
}

pub use crate::ops::{glu, upsample2};

/// Average pooling to 4×4 (the excitation's adaptive pool; sides are powers of two).
pub fn pool4(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    if (h, w) == (4, 4) {
        return Ok(x.clone());
    }
    x.reshape((n, c, 4, h / 4, 4, w / 4))?.mean(5)?.mean(3)
}

/// A convolution whose weight is divided by its largest singular value (Miyato et al.
/// 2018), estimated by one power iteration per training forward pass from the kept `u`, as
/// PyTorch's `spectral_norm`: σ = uᵀWv with u, v held constant, so the gradient reaches W
/// through σ too.
pub struct SpectralConv {
    pub conv: Conv2d,
    /// The left singular vector's estimate [out], kept in checkpoints (not trained).
    pub u: Var,
}

impl SpectralConv {
    pub fn new(init: &mut Init, c_in: usize, c_out: usize, k: usize, stride: usize, padding: usize) -> Result<Self> {
        let conv = Conv2d::square(init, c_in, c_out, k, stride, padding)?;
        // The parameter's own Var (a tensor made by `Init` is one), so checkpoints see updates.
        let u = Var::from_tensor(&init.buffer_normal("u", &[c_out])?)?;
        u.set(&unit(u.as_tensor())?)?;
        Ok(Self { conv, u })
    }

    /// W/σ(W); `update` advances the power iteration (training), else the kept `u` is used.
    pub fn weight(&self, update: bool) -> Result<Tensor> {
        let (u, v) = self.singular_vectors(update)?;
        let w = &self.conv.weight;
        w.broadcast_div(&sigma(w, &u, &v)?)
    }

    /// The power iteration's estimates u [out, 1] and v [in·k·k, 1] (detached); `update`
    /// takes one step from the kept u and keeps the new one.
    pub fn singular_vectors(&self, update: bool) -> Result<(Tensor, Tensor)> {
        let mat = self.conv.weight.detach().flatten_from(1)?; // [out, in·k·k]
        let u = self.u.as_tensor().unsqueeze(1)?; // [out, 1]
        let v = unit(&mat.t()?.matmul(&u)?)?; // [in·k·k, 1]
        if !update {
            return Ok((u, v));
        }
        let u = unit(&mat.matmul(&v)?)?;
        self.u.set(&u.squeeze(1)?)?;
        Ok((u, v))
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.conv.forward_with(x, &self.weight(train)?)
    }

    /// The same layer with its weight detached (its `u` shared).
    fn frozen(&self) -> Self {
        Self { conv: Conv2d { weight: self.conv.weight.detach(), ..self.conv }, u: self.u.clone() }
    }
}

/// σ = uᵀ W v for a weight and the power iteration's estimates (a scalar; differentiable in W).
pub fn sigma(w: &Tensor, u: &Tensor, v: &Tensor) -> Result<Tensor> {
    u.t()?.matmul(&w.flatten_from(1)?.matmul(v)?)?.reshape(())
}

/// v/‖v‖ (PyTorch's eps of 1e-12).
fn unit(v: &Tensor) -> Result<Tensor> {
    v.broadcast_div(&(v.sqr()?.sum_all()?.sqrt()? + 1e-12)?)
}

/// Upsample ×2, 3×3 convolution to 2·out, BatchNorm, GLU.
pub struct UpBlock {
    pub conv: Conv2d,
    pub bn: BatchNorm2d,
}

impl UpBlock {
    fn new(init: &mut Init, c_in: usize, c_out: usize) -> Result<Self> {
        let conv = Conv2d::square(&mut init.pp("conv"), c_in, 2 * c_out, 3, 1, 1)?;
        let bn = BatchNorm2d::new(&mut init.pp("bn"), 2 * c_out)?;
        Ok(Self { conv, bn })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        glu(&self.bn.forward_act(&self.conv.forward(&upsample2(x)?)?, train, Activation::Identity)?)
    }
}

/// Skip-layer excitation: channel gates for a big map from a small one.
pub struct Excitation {
    pub squeeze: Conv2d,
    pub excite: Conv2d,
}

impl Excitation {
    fn new(init: &mut Init, c_small: usize, c_big: usize) -> Result<Self> {
        let squeeze = Conv2d::square(&mut init.pp("squeeze"), c_small, c_big, 4, 1, 0)?;
        let excite = Conv2d::square(&mut init.pp("excite"), c_big, c_big, 1, 1, 0)?;
        Ok(Self { squeeze, excite })
    }

    fn forward(&self, small: &Tensor, big: &Tensor) -> Result<Tensor> {
        let s = crate::ops::leaky_relu(&self.squeeze.forward(&pool4(small)?)?, EXCITE_SLOPE)?;
        big.broadcast_mul(&candle_nn::ops::sigmoid(&self.excite.forward(&s)?)?)
    }
}

pub struct Generator {
    pub shape: DcganShape,
    /// z → 4×4 (2·w channels, halved by the GLU).
    pub first: ConvTranspose2d,
    pub first_bn: BatchNorm2d,
    /// One per doubling: sides 8, 16, …, size.
    pub ups: Vec<UpBlock>,
    /// (side, its excitation from side/8), for sides ≥ 32.
    pub excitations: Vec<(usize, Excitation)>,
    pub to_image: Conv2d,
}

impl Generator {
    pub fn new(init: &mut Init, shape: DcganShape) -> Result<Self> {
        let (size, base) = (shape.image_size, shape.ngf);
        let w = |side| width(size, side, base);
        let first = ConvTranspose2d::new(&mut init.pp("first"), shape.nz, 2 * w(4), 1, 0)?;
        let first_bn = BatchNorm2d::new(&mut init.pp("first_bn"), 2 * w(4))?;
        let mut ups = Vec::new();
        let mut excitations = Vec::new();
        for side in sides(size).skip(1) {
            ups.push(UpBlock::new(&mut init.pp(format!("up{side}")), w(side / 2), w(side))?);
            if side >= 32 {
                excitations.push((side, Excitation::new(&mut init.pp(format!("excite{side}")), w(side / 8), w(side))?));
            }
        }
        let to_image = Conv2d::square(&mut init.pp("to_image"), w(size), shape.channels, 3, 1, 1)?;
        Ok(Self { shape, first, first_bn, ups, excitations, to_image })
    }

    /// z: [N, nz, 1, 1] → images [N, C, size, size] in [-1, 1].
    pub fn forward(&self, z: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.first_bn.forward_act(&self.first.forward(z)?, train, Activation::Identity)?;
        let mut maps = vec![glu(&x)?]; // maps[k]: side 4·2^k
        for (k, up) in self.ups.iter().enumerate() {
            let side = 8 << k;
            let mut x = up.forward(&maps[k], train)?;
            if let Some((_, e)) = self.excitations.iter().find(|(s, _)| *s == side) {
                x = e.forward(&maps[k - 2], &x)?; // side/8
            }
            maps.push(x);
        }
        let last = maps.last().ok_or_else(|| candle_core::Error::Msg("internal error: no maps".into()))?;
        self.to_image.forward(last)?.tanh()
    }
}

/// A spectrally normalised convolution, BatchNorm (optional), LeakyReLU(0.2).
pub struct DownBlock {
    pub conv: SpectralConv,
    pub bn: Option<BatchNorm2d>,
}

/// 8×8 features → a [`rebuilt_side`]-sided picture: per doubling an [`UpBlock`] with a
/// spectrally normalised convolution (widths base, base/2, …, at least 1), then a 3×3
/// convolution to the channels, tanh.
pub struct Decoder {
    pub ups: Vec<(SpectralConv, BatchNorm2d)>,
    pub out: SpectralConv,
}

impl Decoder {
    fn new(init: &mut Init, c_in: usize, base: usize, channels: usize, side: usize) -> Result<Self> {
        let mut ups = Vec::new();
        let mut c = c_in;
        for k in 0..(side / 8).trailing_zeros() as usize {
            let mut init = init.pp(format!("up{k}"));
            let out = (base >> k).max(1);
            let conv = SpectralConv::new(&mut init.pp("conv"), c, 2 * out, 3, 1, 1)?;
            ups.push((conv, BatchNorm2d::new(&mut init.pp("bn"), 2 * out)?));
            c = out;
        }
        let out = SpectralConv::new(&mut init.pp("out"), c, channels, 3, 1, 1)?;
        Ok(Self { ups, out })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut x = x.clone();
        for (conv, bn) in &self.ups {
            x = glu(&bn.forward_act(&conv.forward(&upsample2(&x)?, train)?, train, Activation::Identity)?)?;
        }
        self.out.forward(&x, train)?.tanh()
    }

    fn frozen(&self) -> Self {
        Self { ups: self.ups.iter().map(|(c, bn)| (c.frozen(), bn.frozen())).collect(), out: self.out.frozen() }
    }
}

pub struct Discriminator {
    pub size: usize,
    /// Sides size/2, size/4, …, 4.
    pub downs: Vec<DownBlock>,
    pub logit: SpectralConv,
    pub rebuild_all: Decoder,
    pub rebuild_part: Decoder,
}

impl Discriminator {
    pub fn new(init: &mut Init, shape: DcganShape) -> Result<Self> {
        let (size, base) = (shape.image_size, shape.ndf);
        let w = |side| width(size, side, base);
        let mut downs = Vec::new();
        let mut c_in = shape.channels;
        for side in sides(size).rev().skip(1) {
            let mut b = init.pp(format!("down{side}"));
            let conv = SpectralConv::new(&mut b.pp("conv"), c_in, w(side), 4, 2, 1)?;
            let bn = if side == size / 2 { None } else { Some(BatchNorm2d::new(&mut b.pp("bn"), w(side))?) };
            downs.push(DownBlock { conv, bn });
            c_in = w(side);
        }
        let logit = SpectralConv::new(&mut init.pp("logit"), c_in, 1, 4, 1, 0)?;
        let side = rebuilt_side(size);
        let rebuild_all = Decoder::new(&mut init.pp("rebuild_all"), w(8), base, shape.channels, side)?;
        let rebuild_part = Decoder::new(&mut init.pp("rebuild_part"), w(16), base, shape.channels, side)?;
        Ok(Self { size, downs, logit, rebuild_all, rebuild_part })
    }

    /// The logits, and the 16×16 and 8×8 feature maps.
    fn features(&self, x: &Tensor, train: bool) -> Result<(Tensor, Tensor, Tensor)> {
        let mut x = x.clone();
        let (mut f16, mut f8) = (None, None);
        let mut side = self.size;
        for b in &self.downs {
            x = b.conv.forward(&x, train)?;
            if let Some(bn) = &b.bn {
                x = bn.forward_act(&x, train, Activation::LeakyRelu(0.2))?;
            } else {
                x = leaky_relu(&x)?;
            }
            side /= 2;
            match side {
                16 => f16 = Some(x.clone()),
                8 => f8 = Some(x.clone()),
                _ => {}
            }
        }
        let missing = || candle_core::Error::Msg("internal error: fastgan's critic lacks a 16×16 or 8×8 map".into());
        Ok((self.logit.forward(&x, train)?.flatten_all()?, f16.ok_or_else(missing)?, f8.ok_or_else(missing)?))
    }

    /// images [N, C, size, size] → logits [N].
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self.features(x, train)?.0)
    }

    /// The logits, the picture rebuilt from the 8×8 features and quarter `part` (0–3,
    /// row-major) rebuilt from the 16×16 features' same quarter, both [`rebuilt_side`]-sided.
    pub fn forward_rebuilt(&self, x: &Tensor, part: usize, train: bool) -> Result<(Tensor, Tensor, Tensor)> {
        let (logits, f16, f8) = self.features(x, train)?;
        let (r, c) = (part / 2 % 2, part % 2);
        let quarter = f16.narrow(2, 8 * r, 8)?.narrow(3, 8 * c, 8)?;
        Ok((logits, self.rebuild_all.forward(&f8, train)?, self.rebuild_part.forward(&quarter, train)?))
    }

    /// Every spectrally normalised convolution: the down blocks', the logit's, the decoders'.
    pub fn spectral_layers(&self) -> Vec<&SpectralConv> {
        let decoders = [&self.rebuild_all, &self.rebuild_part]
            .into_iter()
            .flat_map(|d| d.ups.iter().map(|(c, _)| c).chain(std::iter::once(&d.out)));
        self.downs.iter().map(|b| &b.conv).chain(std::iter::once(&self.logit)).chain(decoders).collect()
    }

    /// Every BatchNorm layer: the down blocks', then the decoders'.
    pub fn batch_norms(&self) -> Vec<&BatchNorm2d> {
        let decoders = [&self.rebuild_all, &self.rebuild_part].into_iter().flat_map(|d| d.ups.iter().map(|(_, bn)| bn));
        self.downs.iter().filter_map(|b| b.bn.as_ref()).chain(decoders).collect()
    }

    /// The same critic with its parameters detached (see `dcgan::Discriminator::frozen`);
    /// its spectral norms share their estimates and keep iterating in training mode, as
    /// PyTorch's do.
    pub fn frozen(&self) -> Self {
        Self {
            size: self.size,
            downs: self
                .downs
                .iter()
                .map(|b| DownBlock { conv: b.conv.frozen(), bn: b.bn.as_ref().map(BatchNorm2d::frozen) })
                .collect(),
            logit: self.logit.frozen(),
            rebuild_all: self.rebuild_all.frozen(),
            rebuild_part: self.rebuild_part.frozen(),
        }
    }
}

/// The decoders' targets from the (augmented) real pictures: all of each, and its quarter
/// `part`, at [`rebuilt_side`]² (average-pooled, or nearest-upsampled, to fit).
pub fn rebuild_targets(real: &Tensor, part: usize) -> Result<(Tensor, Tensor)> {
    let size = real.dim(2)?;
    let (r, c) = (part / 2 % 2, part % 2);
    let half = size / 2;
    let quarter = real.narrow(2, r * half, half)?.narrow(3, c * half, half)?;
    let side = rebuilt_side(size);
    Ok((fit(real, side)?, fit(&quarter, side)?))
}

fn fit(x: &Tensor, side: usize) -> Result<Tensor> {
    let mut x = x.clone();
    while x.dim(2)? < side {
        x = upsample2(&x)?;
    }
    match x.dim(2)? / side {
        1 => Ok(x),
        k => x.avg_pool2d(k),
    }
}

/// Mean squared error.
pub fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    (a - b)?.sqr()?.mean_all()
}

/// The reconstruction loss of [`Discriminator::forward_rebuilt`]'s two pictures.
pub fn rebuild_loss(all: &Tensor, part: &Tensor, targets: &(Tensor, Tensor)) -> Result<Tensor> {
    mse(all, &targets.0)? + mse(part, &targets.1)?
}
