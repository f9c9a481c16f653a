//! Class conditioning (`--classes`): the generator's class embedding, concatenated to z,
//! and the critic's projection (Miyato & Koyama 2018), the inner product of a class
//! embedding with the critic's last features added to its logit. Both read each
//! picture's class from the pass ([`super::Ctx::classes`]); their backward passes are
//! candle's backprop of these definitions (a gather and a sum: little arithmetic).
//!
//! Classes fade in (Shahbazi et al. 2023, "Collapse by Conditioning"): on a folder of a few
//! hundred pictures a class, a conditional GAN trained with its classes from the start
//! makes one picture per class whatever z. Both layers scale the class's part by a
//! strength that is 0 for the first [`FADE_START`] of the run, so the networks first learn
//! what every class shares, then rises to 1 at [`FADE_END`] ([`strength`]).

use candle_core::{Result, Tensor};

use super::spectral::SpectralNorm;

/// The fraction of a run before classes start to count.
pub const FADE_START: f64 = 0.2;
/// The fraction of a run at which they count fully.
pub const FADE_END: f64 = 0.6;

/// How much classes count `fraction` of the way through a run: 0, then linearly to 1.
pub fn strength(fraction: f64) -> f64 {
    ((fraction - FADE_START) / (FADE_END - FADE_START)).clamp(0.0, 1.0)
}
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
        let e = (c.weights[0].index_select(c.classes()?, 0)? * c.strength)?;
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

/// An experiment: mean pooling instead of sum pooling in the projection.
pub const PROJECT_MEAN: bool = false;

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
        let pooled = if PROJECT_MEAN { h.mean((2, 3))? } else { h.sum((2, 3))? };
        (pooled * v)?.sum_keepdim(1)?.reshape(logit.shape())
    }
}

impl Layer for Project {
    fn params(&self) -> Vec<&Tensor> {
        vec![&self.weight]
    }

    fn weights(&self, train: bool) -> Result<Weights> {
        match &self.spectral {
            Some(s) => s.normalise(&self.weight, train),
            None => Ok(Weights::plain(self.params())),
        }
    }

    fn apply(&self, xs: &[Tensor], c: &Ctx) -> Result<Tensor> {
        &xs[1] + (Self::term(&xs[0], &xs[1], c)? * c.strength)?
    }

    /// Linear in both inputs: the same map of their tangents.
    fn apply_tangent(&self, _xs: &[Tensor], ts: &[Tensor], c: &Ctx) -> Result<Tensor> {
        self.apply(ts, c)
    }
}

/// Conditional BatchNorm's class part (de Vries et al. 2017): x·γ(class) + β(class), per
/// channel, after a BatchNorm; γ starts at 1, β at 0.
pub struct ClassNorm {
    name: String,
    gamma: Tensor,
    beta: Tensor,
}

impl ClassNorm {
    pub fn new(init: &mut Init, classes: usize, channels: usize) -> Result<Self> {
        let gamma = init.constant("gamma", &[classes, channels], 1.0, true)?;
        let beta = init.constant("beta", &[classes, channels], 0.0, true)?;
        Ok(Self { name: init.name(), gamma, beta })
    }
}

impl Layer for ClassNorm {
    fn params(&self) -> Vec<&Tensor> {
        vec![&self.gamma, &self.beta]
    }

    fn apply(&self, xs: &[Tensor], c: &Ctx) -> Result<Tensor> {
        let per = |w: &Tensor| -> Result<Tensor> {
            let rows = w.index_select(c.classes()?, 0)?;
            let (n, ch) = rows.dims2()?;
            rows.reshape((n, ch, 1, 1))
        };
        xs[0].broadcast_mul(&per(&c.weights[0])?)?.broadcast_add(&per(&c.weights[1])?)
    }

    fn onnx(&self, e: &mut Emitter, out: &str, xs: &[&str]) -> Result<()> {
        let name = &self.name;
        let axes = e.constant_ints(&format!("{name}.axes"), &[2, 3]);
        let mut per = |w: &Tensor, what: &str| -> Result<String> {
            let w = e.initializer(&format!("{name}.{what}"), w)?;
            let rows = format!("{name}.{what}.rows");
            e.node("Gather", &rows, &[&w, CLASS_INPUT], vec![Emitter::int("axis", 0)]);
            e.node("Unsqueeze", &format!("{rows}4"), &[&rows, &axes], vec![]);
            Ok(format!("{rows}4"))
        };
        let (g, b) = (per(&self.gamma, "gamma")?, per(&self.beta, "beta")?);
        let scaled = format!("{name}.scaled");
        e.node("Mul", &scaled, &[xs[0], &g], vec![]);
        e.node("Add", out, &[&scaled, &b], vec![]);
        Ok(())
    }
}
