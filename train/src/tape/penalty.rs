//! WGAN-GP's gradient penalty on the tape: its value, and its gradient with respect to
//! the critic's parameters, which differentiates the critic's input gradient.
//!
//! The penalty P = mean_b (‖g_b‖ − 1)², g = ∇ₓ Σ D(x̂), depends on the parameters θ only
//! through g. With v = ∂P/∂g (fixed once g is known), ∇_θ P = ∇_θ ⟨v, ∇ₓ Σ D⟩, and
//! ⟨v, ∇ₓ Σ D⟩ is the derivative of Σ D(x̂ + s·v) at s = 0: a tangent pushed forward
//! through the critic. So: (1) the tape's forward pass and its input gradient, g;
//! (2) v; (3) v pushed forward, layer by layer, beside the recorded values; (4) the
//! reverse of that push, which carries two adjoints, the tangent's and the values'. The
//! second is zero above the topmost LayerNorm and picks up LayerNorm's second derivative
//! (LeakyReLU's is zero almost everywhere); the convolutions' weight gradients take
//! both. About a forward and two backward passes, as PyTorch's double backward costs.
//! `tests/tape.rs` checks it against candle's graph (`crate::losses::gradient_penalty`).

use candle_core::backprop::GradStore;
use candle_core::{bail, Result};

use super::{accumulate, in_parallel, Net, Post, Pre, Values};
use crate::model::layers::LEAKY_SLOPE;
use crate::ops::{self, layer_norm, with_slice, Element};

/// The penalty at `x_hat` (the interpolated images), and `lambda` times its gradient
/// added to `grads`. The critic must normalise per sample (LayerNorm or nothing): the
/// penalty is defined per sample, and BatchNorm's running statistics would count the pass.
pub fn add_gradient_penalty<T: Element>(
    net: &Net,
    x_hat: Values<T>,
    lambda: f64,
    grads: &mut GradStore,
) -> Result<f64> {
    if net.layers.iter().any(|l| matches!(l.post, Post::BatchNorm(..) | Post::Tanh)) {
        bail!("the gradient penalty needs a critic without BatchNorm (WGAN-GP's LayerNorm critic)");
    }
    // (1) The input gradient of the critic's summed scores.
    let tape = net.forward(x_hat)?;
    let g = tape.backward(vec![T::one(); tape.output().data.len()], None, true)?;
    let g = g.ok_or_else(|| candle_core::Error::Msg("internal error: no input gradient".into()))?;

    // (2) The penalty, and v = λ·∂P/∂g = λ·(2/B)·(‖g_b‖ − 1)·g_b/‖g_b‖ per sample. The tiny
    // epsilon matches the graph's: it keeps the norm's gradient finite at g = 0.
    let b = tape.input.dims[0];
    let per = g.len() / b;
    let mut penalty = 0.0;
    let mut v = g;
    for sample in v.chunks_mut(per) {
        let norm = (sample.iter().map(|&x| x.to_f64().powi(2)).sum::<f64>() + 1e-12).sqrt();
        penalty += (norm - 1.0).powi(2) / b as f64;
        let scale = T::from_f64(lambda * 2.0 / b as f64 * (norm - 1.0) / norm);
        sample.iter_mut().for_each(|x| *x *= scale);
    }

    // (3) v pushed forward: each layer's input tangent, and for LayerNorm layers the
    // tangent of the convolution's output (the reverse reads both).
    let n = net.layers.len();
    let mut tangents: Vec<Vec<T>> = Vec::with_capacity(n);
    let mut conv_tangents: Vec<Option<Vec<T>>> = Vec::with_capacity(n);
    let mut t = v;
    for (i, (layer, rec)) in net.layers.iter().zip(&tape.records).enumerate() {
        let x = if i == 0 { &tape.input } else { &tape.records[i - 1].out };
        let y = &rec.out;
        let (mut tz, _) =
            with_slice(layer.weight, |w| ops::conv2d_values(&t, &x.dims, w, layer.weight.dims(), layer.g))??;
        let mut kept = None;
        match (&layer.post, &rec.pre) {
            (Post::LayerNorm(ln), Pre::Layer(normed)) => {
                let frame = (y.dims[0], y.dims[1], y.dims[2] * y.dims[3]);
                let ty = with_slice(&ln.gamma, |gm| layer_norm::tangent(&tz, &y.data, normed, frame, gm, LEAKY_SLOPE))?;
                kept = Some(std::mem::replace(&mut tz, ty));
            }
            (Post::LeakyRelu(slope), _) => {
                let s = T::from_f64(*slope);
                in_parallel(&mut tz, |t, y| t * ops::relu_slope(y, s), &y.data);
            }
            (Post::Identity, _) => {}
            _ => bail!("internal error: a layer the penalty cannot push a tangent through"),
        }
        tangents.push(std::mem::replace(&mut t, tz));
        conv_tangents.push(kept);
    }

    // (4) The reverse: `at` is the adjoint of a layer's output tangent, `ay` of its output
    // (None while zero). At the top, ⟨v, g⟩ = Σ of the output tangent: `at` = 1.
    let mut at = vec![T::one(); t.len()];
    let mut ay: Option<Vec<T>> = None;
    for i in (0..n).rev() {
        let (layer, rec) = (&net.layers[i], &tape.records[i]);
        let x = if i == 0 { &tape.input } else { &tape.records[i - 1].out };
        let y = &rec.out;
        match (&layer.post, &rec.pre) {
            (Post::LayerNorm(ln), Pre::Layer(normed)) => {
                let frame = (y.dims[0], y.dims[1], y.dims[2] * y.dims[3]);
                let Some(tz) = conv_tangents[i].as_deref() else { bail!("internal error: no tangent kept") };
                let (atz, az, dgamma, dbeta) = with_slice(&ln.gamma, |gm| {
                    layer_norm::tangent_backward(&at, ay.as_deref(), tz, &y.data, normed, frame, gm, LEAKY_SLOPE)
                })?;
                accumulate(grads, &ln.gamma, dgamma)?;
                accumulate(grads, &ln.beta, dbeta)?;
                (at, ay) = (atz, Some(az));
            }
            (Post::LeakyRelu(slope), _) => {
                let s = T::from_f64(*slope);
                in_parallel(&mut at, |a, y| a * ops::relu_slope(y, s), &y.data);
                if let Some(ay) = ay.as_mut() {
                    in_parallel(ay, |a, y| a * ops::relu_slope(y, s), &y.data);
                }
            }
            _ => {}
        }
        // The convolution, linear in its input: the tangent and the values go through the
        // same weights, so both adjoints pass as one batch of twice the images.
        let (inputs, adjoints, batch) = match &ay {
            Some(ay) => ([x.data.as_slice(), &tangents[i]].concat(), [ay.as_slice(), &at].concat(), 2),
            None => (tangents[i].clone(), at.clone(), 1),
        };
        let twice = |d: &[usize]| [vec![d[0] * batch], d[1..].to_vec()].concat();
        let (xd, yd) = (twice(&x.dims), twice(&y.dims));
        let (dw, _) = ops::weight_grad_values(&inputs, &xd, &adjoints, &yd, layer.g)?;
        accumulate(grads, layer.weight, dw)?;
        if i == 0 {
            break;
        }
        let (back, _) = with_slice(layer.weight, |w| {
            ops::conv_transpose2d_values(&adjoints, &yd, w, layer.weight.dims(), layer.g, (x.dims[2], x.dims[3]))
        })??;
        match batch {
            2 => {
                let (a, t) = back.split_at(back.len() / 2);
                (ay, at) = (Some(a.to_vec()), t.to_vec());
            }
            _ => at = back,
        }
    }
    Ok(penalty)
}
