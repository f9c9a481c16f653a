//! Class conditioning (`--classes`): the generator's class embedding, concatenated to z,
//! and the critic's projection (Miyato & Koyama 2018), the inner product of a class
//! embedding with the critic's last features added to its logit. Both read each
//! picture's class from the pass ([`super::Ctx::classes`]); their backward passes are
//! candle's backprop of these definitions (a gather and a sum: little arithmetic).

use candle_core::{Result, Tensor};

use super::spectral::SpectralNorm;

use super::{Ctx, Init, Layer, Weights};
use crate::export::onnx::{Emitter, CLASS_INPUT};

/// z [N, nz, 1, 1] → [z, e(class)] [N, nz + dim, 1, 1], e a learned vector per class.
pub struct Embed {
    name: String,
    /// [classes, dim], drawn from N(0, 1) as z is.
    weight: Tensor,
}

impl Embed {
    pub fn new(init: &mut Init, classes: usize, dim: usize) -> Result<Self> {
        Ok(Self { name: init.name(), weight: init.normal("weight", &[classes, dim], 0.0, 1.0)? })
    }
}

impl Layer for Embed {
    fn params(&self) -> Vec<&Tensor> {
        vec![&self.weight]
    }

    fn apply(&self, xs: &[Tensor], c: &Ctx) -> Result<Tensor> {
        let e = c.weights[0].index_select(c.classes()?, 0)?;
        let (n, dim) = e.dims2()?;
        Tensor::cat(&[&xs[0], &e.reshape((n, dim, 1, 1))?], 1)
    }

    /// Gather the rows of the graph's class input, make them [N, dim, 1, 1], concatenate.
    fn onnx(&self, e: &mut Emitter, out: &str, xs: &[&str]) -> Result<()> {
        let name = &self.name;
        let w = e.initializer(&format!("{name}.weight"), &self.weight)?;
        let rows = format!("{name}.rows");
        e.node("Gather", &rows, &[&w, CLASS_INPUT], vec![Emitter::int("axis", 0)]);
        let axes = e.constant_ints(&format!("{name}.axes"), &[2, 3]);
        let e4 = format!("{name}.rows4");
        e.node("Unsqueeze", &e4, &[&rows, &axes], vec![]);
        e.node("Concat", out, &[xs[0], &e4], vec![Emitter::int("axis", 1)]);
        Ok(())
    }
}

/// [features [N, C, H, W], logit [N, 1, 1, 1]] → logit + ⟨Σ_hw features, v(class)⟩, v a
/// learned vector per class; spectrally normalised in a spectrally normalised critic.
pub struct Project {
    /// [classes, C].
    weight: Tensor,
    spectral: Option<SpectralNorm>,
}

impl Project {
    pub fn new(init: &mut Init, classes: usize, channels: usize) -> Result<Self> {
        Ok(Self { weight: init.normal("weight", &[classes, channels], 0.0, 0.02)?, spectral: None })
    }

    /// The same projection, spectrally normalised.
    pub fn spectral(self, init: &mut Init) -> Result<Self> {
        Ok(Self { spectral: Some(SpectralNorm::new(init, self.weight.dim(0)?)?), ..self })
    }

    /// ⟨Σ_hw h, v(class)⟩ shaped as the logit.
    fn term(h: &Tensor, logit: &Tensor, c: &Ctx) -> Result<Tensor> {
        let v = c.weights[0].index_select(c.classes()?, 0)?;
        (h.sum((2, 3))? * v)?.sum_keepdim(1)?.reshape(logit.shape())
    }
}

impl Layer for Project {
    fn params(&self) -> Vec<&Tensor> {
        vec![&self.weight]
    }

    fn weights(&self, train: bool) -> Result<Weights> {
        SpectralNorm::weights(self.spectral.as_ref(), &self.weight, train)
    }

    fn apply(&self, xs: &[Tensor], c: &Ctx) -> Result<Tensor> {
        &xs[1] + Self::term(&xs[0], &xs[1], c)?
    }

    /// Linear in both inputs: the same map of their tangents.
    fn apply_tangent(&self, _xs: &[Tensor], ts: &[Tensor], c: &Ctx) -> Result<Tensor> {
        self.apply(ts, c)
    }
}
