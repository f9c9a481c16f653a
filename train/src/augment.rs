//! DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
//! Training"), policy `color,translation,cutout`, after the authors' PyTorch code
//! (github.com/mit-han-lab/data-efficient-gans, `DiffAugment_pytorch.py`).
//!
//! The discriminator sees real and fake images through the same random transforms, so
//! it cannot memorise a small dataset, while the generator still gets gradients. A
//! batch's random parameters are drawn once ([`DiffAugment::draw`], from the caller's
//! [`ChaCha8Rng`], which keeps training deterministic and resumable); the drawn
//! transforms then run either as candle ops ([`Draw::apply`]: any device, differentiated
//! by candle's backprop) or on plain CPU values with their own backward pass
//! ([`Draw::forward`], [`Draw::backward`]: canard's CPU kernels). The transforms
//! are linear in the image up to a constant (brightness), so the backward pass is the
//! adjoint map.
//!
//! Each call draws new parameters: apply it once to the real batch and once to the fake
//! batch, and the two get the same *distribution* of transforms, as in the paper.

use candle_core::{Result, Tensor, D};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::ops::Element;

/// Which transforms to apply, in the paper's order: colour, translation, cutout. Written
/// as DiffAugment's policy string (`color,translation,cutout`) in settings and run files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DiffAugment {
    /// Brightness ±0.5, saturation ×[0, 2], contrast ×[0.5, 1.5], per sample.
    pub colour: bool,
    /// A shift of up to 1/8 of the size in each direction, per sample, with zeros coming in.
    pub translation: bool,
    /// A zeroed square of half the size at a random centre (clipped at the border), per sample.
    pub cutout: bool,
}

/// One batch's drawn transforms: per sample, the colour change (brightness, saturation,
/// contrast), the shift (down, right) and the cutout's centre (row, column).
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    dims: (usize, usize, usize, usize),
    colour: Option<Vec<(f32, f32, f32)>>,
    shifts: Option<Vec<(i64, i64)>>,
    cutout: Option<(Vec<(i64, i64)>, (i64, i64))>,
}

impl DiffAugment {
    /// The paper's recommended policy for unconditional GANs: all three.
    pub fn all() -> Self {
        Self { colour: true, translation: true, cutout: true }
    }

    /// FastGAN's policy (its `train.py`): colour and translation, no cutout. On 131 and
    /// 1,797 pictures it trained faster than all three (QUALITY.md).
    pub fn fastgan() -> Self {
        Self { cutout: false, ..Self::all() }
    }

    /// Translation alone: fastgan's on grey pictures, where colour augmentation (brightness
    /// and contrast there) measured worse (QUALITY.md).
    pub fn translation() -> Self {
        Self { colour: false, translation: true, cutout: false }
    }

    /// The policy once the colour transform stops (`--color-until`): `None` when it has no
    /// colour to stop, or nothing else (colour alone then stays: DiffAugment is never dropped).
    pub fn colour_stopped(self) -> Option<Self> {
        let rest = Self { colour: false, ..self };
        (self.colour && (rest.translation || rest.cutout)).then_some(rest)
    }

    /// A policy string: the names `color`, `translation`, `cutout`, comma-separated, each at
    /// most once, at least one.
    pub fn parse(policy: &str) -> std::result::Result<Self, String> {
        let mut a = Self { colour: false, translation: false, cutout: false };
        for name in policy.split(',').map(str::trim) {
            let flag = match name {
                "color" => &mut a.colour,
                "translation" => &mut a.translation,
                "cutout" => &mut a.cutout,
                _ => return Err(format!("{name:?} is not one of color, translation, cutout")),
            };
            if std::mem::replace(flag, true) {
                return Err(format!("{name:?} is named twice"));
            }
        }
        Ok(a)
    }

    /// Draws the random parameters for a batch of `dims` (N, C, H, W).
    pub fn draw(&self, dims: (usize, usize, usize, usize), rng: &mut ChaCha8Rng) -> Draw {
        let (b, _, h, w) = dims;
        let colour = self.colour.then(|| {
            let mut draw =
                |lo: f32, hi: f32| -> Vec<f32> { (0..b).map(|_| lo + (hi - lo) * rng.random::<f32>()).collect() };
            let (brightness, saturation, contrast) = (draw(-0.5, 0.5), draw(0.0, 2.0), draw(0.5, 1.5));
            (0..b).map(|i| (brightness[i], saturation[i], contrast[i])).collect()
        });
        let shifts = self.translation.then(|| {
            let (sy, sx) = (round_frac(h, 0.125), round_frac(w, 0.125));
            (0..b).map(|_| (rng.random_range(-sy..=sy), rng.random_range(-sx..=sx))).collect()
        });
        let cutout = self.cutout.then(|| {
            let (ch, cw) = (round_frac(h, 0.5), round_frac(w, 0.5));
            // As the reference: centres in 0..size (+1 for even squares), so the square
            // may hang over any border and is clipped there.
            let centres = (0..b)
                .map(|_| (rng.random_range(0..h as i64 + 1 - ch % 2), rng.random_range(0..w as i64 + 1 - cw % 2)))
                .collect();
            (centres, (ch, cw))
        });
        Draw { dims, colour, shifts, cutout }
    }

    /// As [`DiffAugment::draw`], then each transform is kept for each sample with
    /// probability `p` and made the identity otherwise (ADA's per-transform probability,
    /// [`Ada`]). At `p` ≥ 1 nothing more is drawn: the same random numbers as `draw`.
    pub fn draw_sometimes(&self, dims: (usize, usize, usize, usize), p: f64, rng: &mut ChaCha8Rng) -> Draw {
        let mut d = self.draw(dims, rng);
        if p >= 1.0 {
            return d;
        }
        let (b, _, h, w) = dims;
        for i in 0..b {
            let [colour, shift, cut] = [0; 3].map(|_| rng.random::<f64>() >= p);
            if let (true, Some(c)) = (colour, d.colour.as_mut()) {
                c[i] = (0.0, 1.0, 1.0);
            }
            if let (true, Some(s)) = (shift, d.shifts.as_mut()) {
                s[i] = (0, 0);
            }
            if let (true, Some((centres, _))) = (cut, d.cutout.as_mut()) {
                centres[i] = (-2 * h as i64, -2 * w as i64); // a square wholly outside: nothing cut
            }
        }
        d
    }
}

impl std::fmt::Display for DiffAugment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = [(self.colour, "color"), (self.translation, "translation"), (self.cutout, "cutout")];
        let on: Vec<&str> = names.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        f.write_str(&on.join(","))
    }
}

impl TryFrom<String> for DiffAugment {
    type Error = String;
    fn try_from(policy: String) -> std::result::Result<Self, String> {
        Self::parse(&policy)
    }
}

impl From<DiffAugment> for String {
    fn from(a: DiffAugment) -> String {
        a.to_string()
    }
}

/// ADA's adaptive augmentation probability (Karras et al. 2020, "Training Generative
/// Adversarial Networks with Limited Data"): every [`Ada::INTERVAL`] steps, r = E[sign(D(real))]
/// over them; above `target` the critic is overfitting and p rises, below it p falls, by
/// the images seen over [`Ada::SPEED_IMAGES`], within [0, 1].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Ada {
    pub p: f64,
    pub target: f64,
    /// Σ sign(D(real)) and the logits counted since the last adjustment, and the steps.
    pub signs: f64,
    pub count: usize,
    pub steps: usize,
}

impl Ada {
    pub const INTERVAL: usize = 4;
    /// Images over which p can go from 0 to 1: ADA's 500,000 is longer than a CPU run, so a
    /// tenth of it.
    pub const SPEED_IMAGES: f64 = 50_000.0;

    /// Starts at p = 0, as ADA.
    pub fn new(target: f64) -> Self {
        Self { p: 0.0, target, signs: 0.0, count: 0, steps: 0 }
    }

    /// One step's real-picture logits.
    pub fn observe(&mut self, real_logits: &[f32]) {
        self.signs += real_logits.iter().map(|&l| (l > 0.0) as i32 as f64 - (l < 0.0) as i32 as f64).sum::<f64>();
        self.count += real_logits.len();
        self.steps += 1;
        if self.steps == Self::INTERVAL {
            let r = self.signs / self.count.max(1) as f64;
            let step = self.count as f64 / Self::SPEED_IMAGES;
            let direction = (r > self.target) as i32 as f64 - (r < self.target) as i32 as f64;
            self.p = (self.p + direction * step).clamp(0.0, 1.0);
            (self.signs, self.count, self.steps) = (0.0, 0, 0);
        }
    }
}

impl Draw {
    /// The transforms as candle ops on `x` (any device; candle differentiates them).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if x.dims4()? != self.dims {
            candle_core::bail!("DiffAugment drawn for {:?}, applied to {:?}", self.dims, x.dims());
        }
        let mut x = x.clone();
        if let Some(c) = &self.colour {
            x = colour(&x, c)?;
        }
        if self.shifts.is_some() || self.cutout.is_some() {
            x = self.moved(&x)?;
        }
        Ok(x)
    }

    /// The transforms on a contiguous NCHW batch on the CPU: the same numbers as
    /// [`Draw::apply`] (up to rounding), one sample per task.
    pub fn forward<T: Element>(&self, x: &[T]) -> Vec<T> {
        let (_, c, h, w) = self.dims;
        let mut y = vec![T::zero(); x.len()];
        y.par_chunks_mut(c * h * w).zip(x.par_chunks(c * h * w)).enumerate().for_each(|(i, (y, x))| {
            let coloured = match self.colour_of(i) {
                Some(k) => k.map(x, c, k.offset),
                None => x.to_vec(),
            };
            let src = self.sources(i);
            for (yc, xc) in y.chunks_mut(h * w).zip(coloured.chunks(h * w)) {
                for (v, s) in yc.iter_mut().zip(&src) {
                    *v = s.map_or(T::zero(), |s| xc[s as usize]);
                }
            }
        });
        y
    }

    /// The gradient with respect to [`Draw::forward`]'s input, given `dy`, its output's.
    pub fn backward<T: Element>(&self, dy: &[T]) -> Vec<T> {
        let (_, c, h, w) = self.dims;
        let mut dx = vec![T::zero(); dy.len()];
        dx.par_chunks_mut(c * h * w).zip(dy.par_chunks(c * h * w)).enumerate().for_each(|(i, (dx, dy))| {
            // Translation moves each pixel to at most one place: its adjoint moves the gradient back.
            let src = self.sources(i);
            for (dxc, dyc) in dx.chunks_mut(h * w).zip(dy.chunks(h * w)) {
                for (&g, s) in dyc.iter().zip(&src) {
                    if let Some(s) = s {
                        dxc[*s as usize] = g;
                    }
                }
            }
            if let Some(k) = self.colour_of(i) {
                let d = k.map(dx, c, 0.0);
                dx.copy_from_slice(&d);
            }
        });
        dx
    }

    fn colour_of(&self, i: usize) -> Option<Affine> {
        self.colour.as_ref().map(|c| Affine::of(c[i]))
    }

    /// For sample `i`, where each output pixel comes from in its input plane: `None`
    /// where translation let a zero in or cutout zeroed it.
    fn sources(&self, i: usize) -> Vec<Option<u32>> {
        let (_, _, h, w) = self.dims;
        let (hi, wi) = (h as i64, w as i64);
        let (dy, dx) = self.shifts.as_ref().map_or((0, 0), |s| s[i]);
        let cut = self.cutout.as_ref().map(|(centres, size)| square(centres[i], *size, h, w));
        let mut src = Vec::with_capacity(h * w);
        for y in 0..hi {
            for x in 0..wi {
                let (sy, sx) = (y - dy, x - dx);
                let inside = (0..hi).contains(&sy) && (0..wi).contains(&sx);
                let zeroed = cut.as_ref().is_some_and(|(rows, cols)| rows.contains(&y) && cols.contains(&x));
                src.push((inside && !zeroed).then_some((sy * wi + sx) as u32));
            }
        }
        src
    }

    /// Translation and cutout in candle's ops: one `gather` over each image plane from
    /// [`Draw::sources`], times a constant mask of the pixels that have a source. Per-sample
    /// slices and a `cat` would be simpler, but their backward pass builds a full-batch
    /// gradient per sample: O(B²).
    fn moved(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = self.dims;
        let mut index: Vec<u32> = Vec::with_capacity(b * c * h * w);
        let mut kept: Vec<f32> = Vec::with_capacity(b * h * w);
        for i in 0..b {
            let src = self.sources(i);
            kept.extend(src.iter().map(|s| s.is_some() as u8 as f32));
            let plane: Vec<u32> = src.iter().map(|s| s.unwrap_or(0)).collect(); // 0: masked
            (0..c).for_each(|_| index.extend_from_slice(&plane));
        }
        let index = Tensor::from_vec(index, (b, c, h * w), x.device())?;
        let kept = Tensor::from_vec(kept, (b, 1, h, w), x.device())?.to_dtype(x.dtype())?;
        x.reshape((b, c, h * w))?.gather(&index, 2)?.reshape((b, c, h, w))?.broadcast_mul(&kept)
    }
}

/// `size · frac`, rounded half up, as the reference's `int(size * ratio + 0.5)`.
fn round_frac(size: usize, frac: f64) -> i64 {
    (size as f64 * frac + 0.5) as i64
}

/// The rows and columns of the `size` square centred at `centre`, clipped to the image.
fn square(centre: (i64, i64), size: (i64, i64), h: usize, w: usize) -> (std::ops::Range<i64>, std::ops::Range<i64>) {
    let (cy, cx) = centre;
    let rows = (cy - size.0 / 2).max(0)..(cy - size.0 / 2 + size.0).min(h as i64);
    let cols = (cx - size.1 / 2).max(0)..(cx - size.1 / 2 + size.1).min(w as i64);
    (rows, cols)
}

/// One sample's colour change as one affine map (see [`colour`]):
/// y = on_x·x + on_grey·m + on_mean·M + offset, with m the per-pixel channel mean and M
/// the image mean.
struct Affine {
    on_x: f64,
    on_grey: f64,
    on_mean: f64,
    offset: f64,
}

impl Affine {
    fn of((brightness, saturation, contrast): (f32, f32, f32)) -> Self {
        let (b, s, k) = (brightness as f64, saturation as f64, contrast as f64);
        Self { on_x: k * s, on_grey: k * (1.0 - s), on_mean: 1.0 - k, offset: b }
    }

    /// One sample's C planes, plus `offset`. The map without its offset is its own adjoint:
    /// dx = on_x·dy + on_grey/C·Σ_c dy + on_mean/(C·H·W)·Σ dy.
    fn map<T: Element>(&self, x: &[T], c: usize, offset: f64) -> Vec<T> {
        let hw = x.len() / c;
        // Each pixel's mean over the C planes.
        let grey: Vec<T> =
            (0..hw).map(|j| (1..c).fold(x[j], |m, k| m + x[k * hw + j]) / T::from_f64(c as f64)).collect();
        let mean = x.iter().map(|v| v.to_f64()).sum::<f64>() / x.len() as f64;
        let base = T::from_f64(self.on_mean * mean + offset);
        let (on_x, on_grey) = (T::from_f64(self.on_x), T::from_f64(self.on_grey));
        x.iter().enumerate().map(|(j, &v)| on_x * v + on_grey * grey[j % hw] + base).collect()
    }
}

/// One value per sample, as a [B, 1, 1, 1] tensor of `like`'s dtype and device.
fn per_sample(values: Vec<f64>, like: &Tensor) -> Result<Tensor> {
    let n = values.len();
    Tensor::from_vec(values, (n, 1, 1, 1), like.device())?.to_dtype(like.dtype())
}

/// Brightness, then saturation, then contrast, folded into one affine map per sample.
///
/// With x' = x + b (brightness), saturation s about the channel mean m, then contrast k
/// about the image mean M (the mean of x'' is M + b: saturation keeps it), the result is
///   k·s·x + k·(1−s)·m + (1−k)·M + b,
/// the same numbers as applying the three in turn, but 3 full-size tensor ops instead
/// of 9 (colour was most of the augmentation's time).
fn colour(x: &Tensor, draws: &[(f32, f32, f32)]) -> Result<Tensor> {
    let b = x.dim(0)?;
    let grey = x.mean_keepdim(1)?; // m: [B, 1, H, W]
    let mean = x.flatten_from(1)?.mean_keepdim(D::Minus1)?.reshape((b, 1, 1, 1))?; // M
    let affine: Vec<Affine> = draws.iter().map(|&d| Affine::of(d)).collect();
    let scale = |f: fn(&Affine) -> f64| per_sample(affine.iter().map(f).collect(), x);
    let offset = mean.broadcast_mul(&scale(|a| a.on_mean)?)?.broadcast_add(&scale(|a| a.offset)?)?;
    let per_pixel = grey.broadcast_mul(&scale(|a| a.on_grey)?)?.broadcast_add(&offset)?; // [B, 1, H, W]
    x.broadcast_mul(&scale(|a| a.on_x)?)?.broadcast_add(&per_pixel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use rand::SeedableRng;

    /// `x` as f32 values on the host.
    fn host(x: &Tensor) -> Result<Vec<f32>> {
        x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()
    }

    /// New draws of `a` for `x`, applied.
    fn apply(a: &DiffAugment, x: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        a.draw(x.dims4()?, rng).apply(x)
    }

    fn apply_sometimes(a: &DiffAugment, x: &Tensor, p: f64, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        a.draw_sometimes(x.dims4()?, p, rng).apply(x)
    }

    /// Sample i moved by `shifts[i]` = (down, right).
    fn translate(x: &Tensor, shifts: Vec<(i64, i64)>) -> Result<Tensor> {
        Draw { dims: x.dims4()?, colour: None, shifts: Some(shifts), cutout: None }.apply(x)
    }

    /// Sample i with the `size` square at `centres[i]` zeroed.
    fn cutout(x: &Tensor, centres: Vec<(i64, i64)>, size: (i64, i64)) -> Result<Tensor> {
        Draw { dims: x.dims4()?, colour: None, shifts: None, cutout: Some((centres, size)) }.apply(x)
    }

    fn input(dtype: DType, b: usize, c: usize, s: usize) -> Tensor {
        let n = b * c * s * s;
        let v: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
        Tensor::from_vec(v, (b, c, s, s), &Device::Cpu).unwrap().to_dtype(dtype).unwrap()
    }

    #[test]
    fn a_policy_string_reads_and_writes_diffaugments_names() {
        assert_eq!(DiffAugment::parse("color,translation,cutout"), Ok(DiffAugment::all()));
        assert_eq!(DiffAugment::parse("translation, color"), Ok(DiffAugment::fastgan()));
        let cut = DiffAugment::parse("cutout").unwrap();
        assert_eq!(cut, DiffAugment { colour: false, translation: false, cutout: true });
        for a in [DiffAugment::all(), DiffAugment::fastgan(), cut] {
            assert_eq!(DiffAugment::parse(&a.to_string()), Ok(a));
        }
        assert_eq!(DiffAugment::fastgan().to_string(), "color,translation");
        // What is left when colour stops (--color-until); no change without colour, or with colour alone.
        assert_eq!(DiffAugment::fastgan().colour_stopped(), DiffAugment::parse("translation").ok());
        assert_eq!(DiffAugment::all().colour_stopped(), DiffAugment::parse("translation,cutout").ok());
        assert_eq!(cut.colour_stopped(), None);
        assert_eq!(DiffAugment::parse("color").unwrap().colour_stopped(), None);
        for (bad, why) in [("", "\"\""), ("colour", "\"colour\" is not one of"), ("color,color", "named twice")] {
            let err = DiffAugment::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_probability_of_one_is_plain_diffaugment_and_of_zero_the_identity() {
        let x = input(DType::F32, 6, 3, 16);
        let a = DiffAugment::all();
        let plain = apply(&a, &x, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
        let one = apply_sometimes(&a, &x, 1.0, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
        assert_eq!(host(&plain).unwrap(), host(&one).unwrap());
        let zero = apply_sometimes(&a, &x, 0.0, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
        assert_eq!(host(&zero).unwrap(), host(&x).unwrap());
        // In between, some samples keep a transform and others do not.
        let half = a.draw_sometimes((64, 3, 16, 16), 0.5, &mut ChaCha8Rng::seed_from_u64(3));
        let kept = half.shifts.as_ref().unwrap().iter().filter(|s| **s != (0, 0)).count();
        assert!((16..48).contains(&kept), "{kept} of 64 samples shifted");
        let tape = half.forward(&host(&input(DType::F32, 64, 3, 16)).unwrap());
        let graph = host(&half.apply(&input(DType::F32, 64, 3, 16)).unwrap()).unwrap();
        assert!(tape.iter().zip(&graph).all(|(a, b)| (a - b).abs() < 1e-5), "tape and graph agree");
    }

    #[test]
    fn ada_raises_p_when_the_critic_is_sure_of_the_real_pictures_and_lowers_it_when_not() {
        let mut ada = Ada::new(0.6);
        for _ in 0..Ada::INTERVAL - 1 {
            ada.observe(&[1.0; 16]);
        }
        assert_eq!(ada.p, 0.0, "adjusted only every INTERVAL steps");
        ada.observe(&[1.0; 16]);
        assert!((ada.p - 64.0 / Ada::SPEED_IMAGES).abs() < 1e-12, "{}", ada.p);
        // r = 0.5 < 0.6: down by the same step, then held at 0.
        for _ in 0..Ada::INTERVAL {
            ada.observe(&[1.0, 1.0, 1.0, -1.0].repeat(4));
        }
        assert!(ada.p.abs() < 1e-15, "{}", ada.p);
        for _ in 0..Ada::INTERVAL {
            ada.observe(&[1.0, 1.0, 1.0, -1.0].repeat(4));
        }
        assert_eq!(ada.p, 0.0, "never below 0");
        let mut high = Ada { p: 0.99999, ..Ada::new(0.6) };
        for _ in 0..Ada::INTERVAL {
            high.observe(&[3.0; 64]);
        }
        assert_eq!(high.p, 1.0, "never above 1");
    }

    #[test]
    fn keeps_the_shape_and_is_reproducible_by_seed() {
        let x = input(DType::F32, 5, 3, 16);
        let a = apply(&DiffAugment::all(), &x, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
        let b = apply(&DiffAugment::all(), &x, &mut ChaCha8Rng::seed_from_u64(7)).unwrap();
        let c = apply(&DiffAugment::all(), &x, &mut ChaCha8Rng::seed_from_u64(8)).unwrap();
        assert_eq!(a.dims(), x.dims());
        assert_eq!(host(&a).unwrap(), host(&b).unwrap());
        assert_ne!(host(&a).unwrap(), host(&c).unwrap());
        let grey = input(DType::F32, 2, 1, 8);
        assert_eq!(apply(&DiffAugment::all(), &grey, &mut ChaCha8Rng::seed_from_u64(0)).unwrap().dims(), [2, 1, 8, 8]);
        let none = DiffAugment { colour: false, translation: false, cutout: false };
        assert_eq!(host(&apply(&none, &x, &mut ChaCha8Rng::seed_from_u64(0)).unwrap()).unwrap(), host(&x).unwrap());
    }

    #[test]
    fn gradients_reach_the_input_and_match_finite_differences() {
        let x0 = input(DType::F64, 3, 3, 8);
        let weights = input(DType::F64, 3, 3, 8).sin().unwrap(); // so the loss is not just a sum
        let loss_of = |x: &Tensor| -> Tensor {
            let y = apply(&DiffAugment::all(), x, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
            (y * &weights).unwrap().sum_all().unwrap()
        };
        let var = Var::from_tensor(&x0).unwrap();
        let grads = loss_of(var.as_tensor()).backward().unwrap();
        let g: Vec<f64> =
            grads.get(var.as_tensor()).expect("x has a gradient").flatten_all().unwrap().to_vec1().unwrap();
        assert!(g.iter().any(|v| v.abs() > 1e-6), "gradient is not all zero");

        let flat: Vec<f64> = x0.flatten_all().unwrap().to_vec1().unwrap();
        let eps = 1e-6;
        for &i in &[0usize, 17, 100, 191, 300, 575] {
            let bump = |d: f64| {
                let mut v = flat.clone();
                v[i] += d;
                let t = Tensor::from_vec(v, x0.dims(), &Device::Cpu).unwrap();
                loss_of(&t).to_scalar::<f64>().unwrap()
            };
            let fd = (bump(eps) - bump(-eps)) / (2.0 * eps);
            assert!(
                (fd - g[i]).abs() < 1e-6 * (1.0 + fd.abs()),
                "element {i}: backprop {} vs finite difference {fd}",
                g[i]
            );
        }
    }

    /// One bright pixel in a dark 1×1×16×16 image, at (row 5, column 9).
    fn dot() -> Tensor {
        let mut v = vec![0f32; 256];
        v[5 * 16 + 9] = 1.0;
        Tensor::from_vec(v, (1, 1, 16, 16), &Device::Cpu).unwrap()
    }

    #[test]
    fn translation_moves_a_pixel_by_the_shift_and_lets_zeros_in() {
        let x = Tensor::cat(&[dot(), dot(), dot()], 0).unwrap();
        let y = translate(&x, vec![(2, -1), (-2, 2), (0, 0)]).unwrap();
        let v = host(&y).unwrap();
        let lit: Vec<Vec<usize>> = (0..3).map(|i| (0..256).filter(|&p| v[i * 256 + p] == 1.0).collect()).collect();
        assert_eq!(lit, [vec![7 * 16 + 8], vec![3 * 16 + 11], vec![5 * 16 + 9]]);
        assert_eq!(v.iter().filter(|&&p| p != 0.0).count(), 3);
        // A full image shifted right by 2: the two left columns are zeros.
        let ones = Tensor::ones((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap();
        let shifted = host(&translate(&ones, vec![(0, 2)]).unwrap()).unwrap();
        assert_eq!(shifted, [0., 0., 1., 1.].repeat(4));
        // Through `apply`, shifts stay within 1/8 of the size (2 px at 16).
        let only = DiffAugment { colour: false, translation: true, cutout: false };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..20 {
            let v = host(&apply(&only, &dot(), &mut rng).unwrap()).unwrap();
            let p = v.iter().position(|&p| p == 1.0).expect("the dot stays inside");
            assert!((p / 16).abs_diff(5) <= 2 && (p % 16).abs_diff(9) <= 2, "moved to {p}");
        }
    }

    #[test]
    fn cutout_zeros_a_half_size_square_clipped_at_the_border() {
        let ones = Tensor::ones((3, 2, 16, 16), DType::F32, &Device::Cpu).unwrap();
        // Inside; at the top-left corner (clipped to 4×4); over the right border (8 tall, 4 wide).
        let y = host(&cutout(&ones, vec![(8, 8), (0, 0), (6, 16)], (8, 8)).unwrap()).unwrap();
        let zeros =
            |i: usize, c: usize| y[(i * 2 + c) * 256..(i * 2 + c + 1) * 256].iter().filter(|&&v| v == 0.0).count();
        assert_eq!([zeros(0, 0), zeros(1, 0), zeros(2, 0)], [64, 16, 32]);
        assert_eq!(zeros(2, 1), 32, "every channel gets the same square");
        assert_eq!(y[4 * 16 + 4], 0.0);
        assert_eq!(y[3 * 16 + 4], 1.0, "the square is rows 4..12 for a centre of 8");
        // Through `apply`: exactly 8×8 (16/2) or fewer when it meets a border.
        let only = DiffAugment { colour: false, translation: false, cutout: true };
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut full = 0;
        for _ in 0..30 {
            let v = host(&apply(&only, &ones.narrow(0, 0, 1).unwrap(), &mut rng).unwrap()).unwrap();
            let z = v[..256].iter().filter(|&&p| p == 0.0).count();
            assert!(z <= 64 && z > 0, "{z}");
            full += (z == 64) as usize;
        }
        assert!(full > 0, "some squares are whole");
    }

    #[test]
    fn colour_equals_brightness_saturation_contrast_in_turn() {
        let x = input(DType::F64, 3, 3, 6);
        let only = DiffAugment { colour: true, translation: false, cutout: false };
        let got = host(&apply(&only, &x, &mut ChaCha8Rng::seed_from_u64(9)).unwrap()).unwrap();
        // The reference's three steps, with the same draws in the same order.
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut draw = |lo: f32, hi: f32| -> Tensor {
            let v: Vec<f32> = (0..3).map(|_| lo + (hi - lo) * rng.random::<f32>()).collect();
            per_sample(v.into_iter().map(f64::from).collect(), &x).unwrap()
        };
        let (b, s, k) = (draw(-0.5, 0.5), draw(0.0, 2.0), draw(0.5, 1.5));
        let y = x.broadcast_add(&b).unwrap();
        let m = y.mean_keepdim(1).unwrap();
        let y = y.broadcast_sub(&m).unwrap().broadcast_mul(&s).unwrap().broadcast_add(&m).unwrap();
        let mean = y.flatten_from(1).unwrap().mean_keepdim(1).unwrap().reshape((3, 1, 1, 1)).unwrap();
        let y = y.broadcast_sub(&mean).unwrap().broadcast_mul(&k).unwrap().broadcast_add(&mean).unwrap();
        for (a, b) in got.iter().zip(host(&y).unwrap()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    #[test]
    fn colour_keeps_grey_grey_under_saturation_and_moves_the_mean() {
        let x = input(DType::F32, 4, 3, 8);
        let only = DiffAugment { colour: true, translation: false, cutout: false };
        let y = apply(&only, &x, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        assert_ne!(host(&y).unwrap(), host(&x).unwrap());
        // A grey image (equal channels) stays grey: saturation scales only colour.
        let g = input(DType::F32, 2, 1, 8).repeat((1, 3, 1, 1)).unwrap();
        let v = host(&apply(&only, &g, &mut ChaCha8Rng::seed_from_u64(5)).unwrap()).unwrap();
        for i in 0..64 {
            assert!((v[i] - v[64 + i]).abs() < 1e-6 && (v[i] - v[128 + i]).abs() < 1e-6);
        }
    }
    /// The CPU transforms (the tape's) against candle's: outputs and the input's gradient,
    /// in f64, for every policy, colour and grey, odd and even sizes.
    #[test]
    fn the_cpu_transforms_and_their_backward_match_candles() {
        let policies = [
            DiffAugment::all(),
            DiffAugment { colour: true, translation: false, cutout: false },
            DiffAugment { colour: false, translation: true, cutout: false },
            DiffAugment { colour: false, translation: false, cutout: true },
        ];
        for (b, c, s) in [(3, 3, 8), (2, 1, 8), (4, 3, 7)] {
            let x0 = input(DType::F64, b, c, s);
            let xs: Vec<f64> = x0.flatten_all().unwrap().to_vec1().unwrap();
            let weights = input(DType::F64, b, c, s).cos().unwrap();
            let ws: Vec<f64> = weights.flatten_all().unwrap().to_vec1().unwrap();
            for (k, policy) in policies.iter().enumerate() {
                for seed in 0..4 {
                    let draw = policy.draw((b, c, s, s), &mut ChaCha8Rng::seed_from_u64(seed));
                    let var = Var::from_tensor(&x0).unwrap();
                    let y = draw.apply(var.as_tensor()).unwrap();
                    let want: Vec<f64> = y.flatten_all().unwrap().to_vec1().unwrap();
                    let got = draw.forward(&xs);
                    let grad = (y * &weights).unwrap().sum_all().unwrap().backward().unwrap();
                    let want_dx: Vec<f64> = grads_of(&grad, var.as_tensor()).flatten_all().unwrap().to_vec1().unwrap();
                    let got_dx = draw.backward(&ws);
                    for (what, a, e) in [("forward", &got, &want), ("backward", &got_dx, &want_dx)] {
                        let worst = a.iter().zip(e.iter()).map(|(a, e)| (a - e).abs()).fold(0.0, f64::max);
                        assert!(worst < 1e-12, "{what}, policy {k}, {b}×{c}×{s}², seed {seed}: off by {worst}");
                    }
                }
            }
        }
        // A draw is for one shape.
        let draw = DiffAugment::all().draw((2, 3, 8, 8), &mut ChaCha8Rng::seed_from_u64(0));
        assert!(draw.apply(&input(DType::F32, 3, 3, 8)).is_err());
    }

    fn grads_of(g: &candle_core::backprop::GradStore, t: &Tensor) -> Tensor {
        g.get(t).expect("a gradient").clone()
    }
}
