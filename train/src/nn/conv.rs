//! A 2-D convolution without bias, in one of three forms: plain, transposed, or after a
//! nearest upsampling ×2 (fastgan's generator and decoders); any of them spectrally
//! normalised ([`super::spectral`]). Weights are drawn from N(0, 0.02), as DCGAN's.

use candle_core::{bail, Result, Tensor};

use super::spectral::SpectralNorm;
use super::{Ctx, Grads, Init, Layer, Recorded, Saved, TangentGrads, Weights};
use crate::export::onnx::Emitter;
use crate::ops::{self, up_conv, Geometry};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// y = x ⋆ w; w [out, in, k, k].
    Plain,
    /// The adjoint of a convolution in its input; w [in, out, k, k] (as in ONNX).
    Transposed,
    /// Nearest upsampling ×2, then a 3×3 convolution with padding 1.
    Up,
}

pub struct Conv {
    /// Where the exported graph names it (its weight is `{name}.weight`).
    pub name: String,
    pub form: Form,
    pub weight: Tensor,
    pub g: Geometry,
    pub spectral: Option<SpectralNorm>,
}

impl Conv {
    /// A `k`×`k` convolution from `c_in` to `c_out` channels.
    pub fn new(init: &mut Init, c_in: usize, c_out: usize, k: usize, stride: usize, padding: usize) -> Result<Self> {
        let weight = init.normal("weight", &[c_out, c_in, k, k], 0.0, 0.02)?;
        Ok(Self { name: init.name(), form: Form::Plain, weight, g: Geometry::new(k, stride, padding)?, spectral: None })
    }

    /// A transposed `k`×`k` convolution: its weight is [c_in, c_out, k, k].
    pub fn transposed(init: &mut Init, c_in: usize, c_out: usize, k: usize, s: usize, p: usize) -> Result<Self> {
        Ok(Self { form: Form::Transposed, ..Self::new(init, c_out, c_in, k, s, p)? })
    }

    /// Upsampling ×2, then a 3×3 convolution.
    pub fn up(init: &mut Init, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(Self { form: Form::Up, ..Self::new(init, c_in, c_out, 3, 1, 1)? })
    }

    /// The same convolution, spectrally normalised (its estimate `u` kept beside the weight).
    pub fn spectral(self, init: &mut Init) -> Result<Self> {
        Ok(Self { spectral: Some(SpectralNorm::new(init, self.weight.dim(0)?)?), ..self })
    }

    /// The convolution of `x` by `w` (this layer's form and geometry) in candle's ops.
    fn candle(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let Geometry { stride, padding, .. } = self.g;
        match self.form {
            Form::Plain => x.conv2d(w, padding, stride, 1, 1),
            Form::Transposed => x.conv_transpose2d(w, padding, 0, stride, 1),
            Form::Up => upsample2(x)?.conv2d(w, padding, stride, 1, 1),
        }
    }

    /// The convolution by canard's kernels.
    fn kernel(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        match self.form {
            Form::Plain => ops::conv2d(x, w, self.g),
            Form::Transposed => {
                let (_, _, h, wd) = x.dims4()?;
                ops::conv_transpose2d(x, w, self.g, (self.g.big(h)?, self.g.big(wd)?))
            }
            Form::Up => up(x, w),
        }
    }

    /// Input and weight gradients by canard's kernels (for an input `x`, gradient `dy`);
    /// `w` the weight the pass used.
    fn kernel_grads(
        &self,
        x: &Tensor,
        dy: &Tensor,
        w: &Tensor,
        want_x: bool,
        want_w: bool,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (_, _, h, wd) = x.dims4()?;
        Ok(match self.form {
            Form::Plain => (
                want_x.then(|| ops::conv_transpose2d(dy, w, self.g, (h, wd))).transpose()?,
                want_w.then(|| ops::conv_weight_grad(x, dy, self.g)).transpose()?,
            ),
            Form::Transposed => (
                want_x.then(|| ops::conv2d(dy, w, self.g)).transpose()?,
                want_w.then(|| ops::conv_weight_grad(dy, x, self.g)).transpose()?,
            ),
            Form::Up => up_grads(x, dy, w, want_x, want_w)?,
        })
    }
}

impl Layer for Conv {
    fn params(&self) -> Vec<&Tensor> {
        vec![&self.weight]
    }

    fn weights(&self, train: bool) -> Result<Weights> {
        SpectralNorm::weights(self.spectral.as_ref(), &self.weight, train)
    }

    fn apply(&self, xs: &[Tensor], c: &Ctx) -> Result<Tensor> {
        self.candle(&xs[0], &c.weights[0])
    }

    fn apply_tangent(&self, _xs: &[Tensor], ts: &[Tensor], c: &Ctx) -> Result<Tensor> {
        self.candle(&ts[0], &c.weights[0])
    }

    fn forward(&self, xs: &[&Tensor], c: &Ctx) -> Result<Option<(Tensor, Saved)>> {
        match c.kernels(xs[0]) {
            true => Ok(Some((self.kernel(xs[0], &c.weights[0])?, None))),
            false => Ok(None),
        }
    }

    fn backward(&self, r: &Recorded, dy: &Tensor, want: &[bool], weights: bool) -> Result<Option<Grads>> {
        if !r.c.kernels(r.xs[0]) {
            return Ok(None);
        }
        let (dx, dw) = self.kernel_grads(r.xs[0], dy, &r.c.weights[0], want[0], weights)?;
        Ok(Some(Grads { inputs: vec![dx], weights: dw.into_iter().collect() }))
    }

    fn tangent(&self, r: &Recorded) -> Result<Option<Tensor>> {
        match r.c.kernels(r.xs[0]) {
            true => Ok(Some(self.kernel(r.ts[0], &r.c.weights[0])?)),
            false => Ok(None),
        }
    }

    /// Linear in its input: the tangent's adjoint and the values' go back through the
    /// same weights, as one batch of twice the images when both are there, and both add
    /// to the weight's gradient.
    fn tangent_backward(&self, r: &Recorded, at: &Tensor, ay: Option<&Tensor>) -> Result<Option<TangentGrads>> {
        let (xs, ts) = (&r.xs, &r.ts);
        if !r.c.kernels(xs[0]) {
            return Ok(None);
        }
        let w = &r.c.weights[0];
        let (inputs, adjoints) = match ay {
            Some(ay) => (Tensor::cat(&[xs[0], ts[0]], 0)?, Tensor::cat(&[ay, at], 0)?),
            None => (ts[0].clone(), at.clone()),
        };
        let (Some(back), Some(dw)) = self.kernel_grads(&inputs, &adjoints, w, true, true)? else {
            bail!("internal error: a convolution's kernels gave no gradient")
        };
        let (at, ay) = match ay {
            Some(_) => {
                let n = xs[0].dim(0)?;
                (back.narrow(0, n, n)?, Some(back.narrow(0, 0, n)?))
            }
            None => (back, None),
        };
        Ok(Some(TangentGrads { at: vec![at], ay: vec![ay], weights: vec![dw] }))
    }

    fn onnx(&self, e: &mut Emitter, out: &str, xs: &[&str]) -> Result<()> {
        let weight = e.initializer(&format!("{}.weight", self.name), &self.weights(false)?.used[0])?;
        let x = match self.form {
            Form::Up => e.resize(&format!("{}.resize", self.name.trim_end_matches(".conv")), xs[0]),
            _ => xs[0].to_string(),
        };
        e.conv(out, &x, &weight, self.g, self.form == Form::Transposed);
        Ok(())
    }
}

/// Nearest upsampling ×2: [N, C, H, W] → [N, C, 2H, 2W], as a broadcast (whose backward
/// pass sums each 2×2 block).
fn upsample2(x: &Tensor) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    x.reshape((n, c, h, 1, w, 1))?.broadcast_as((n, c, h, 2, w, 2))?.contiguous()?.reshape((n, c, 2 * h, 2 * w))
}

/// Upsampling then the 3×3 convolution, by [`up_conv`]'s four phases.
fn up(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let o = w.dim(0)?;
    let (n, _, h, wd) = x.dims4()?;
    let p = ops::conv2d(x, &folded(w)?, PHASES)?;
    crate::kernel!(&[n, o, 2 * h, 2 * wd], [&p => p], T => up_conv::interleave(p, &[n, 4 * o, h + 1, wd + 1], o))
}

/// [`up`]'s input and weight gradients.
fn up_grads(
    x: &Tensor,
    dy: &Tensor,
    w: &Tensor,
    want_x: bool,
    want_w: bool,
) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let (o, c) = (w.dim(0)?, w.dim(1)?);
    let (n, _, h, wd) = x.dims4()?;
    let p_dims = [n, 4 * o, h + 1, wd + 1];
    let dp = crate::kernel!(&p_dims, [dy => d], T => up_conv::deinterleave(d, &p_dims))?;
    let unfold = |df: Tensor| crate::kernel!(&[o, c, 3, 3], [&df => d], T => up_conv::unfold(d, o, c));
    let dw = want_w.then(|| unfold(ops::conv_weight_grad(x, &dp, PHASES)?)).transpose()?;
    let dx = want_x.then(|| ops::conv_transpose2d(&dp, &folded(w)?, PHASES, (h, wd))).transpose()?;
    Ok((dx, dw))
}

/// The four phases' 2×2 kernels [4·o, c, 2, 2] from the 3×3 kernel [o, c, 3, 3].
fn folded(w: &Tensor) -> Result<Tensor> {
    let (o, c) = (w.dim(0)?, w.dim(1)?);
    crate::kernel!(&[4 * o, c, 2, 2], [w => w], T => up_conv::fold(w, o, c))
}

/// The four phases' convolution: 2×2, padding 1.
const PHASES: Geometry = Geometry { k: 2, stride: 1, padding: 1 };
