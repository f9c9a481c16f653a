//! The networks, written once: a library of layers ([`Layer`], one file each) and each
//! network's topology described once ([`Net`]); the forward pass, the backward pass, the
//! tangent pass the penalties need, the ONNX export and the reader all walk that one
//! description.
//!
//! One engine on every device. A layer's definition is [`Layer::apply`], in candle's
//! differentiable tensor ops; where no faster kernel applies (any device but the CPU, or
//! [`Engine::Candle`] on the CPU, which the tests use as the reference), its backward pass
//! is candle's own backprop of that definition, layer by layer ([`vjp`]). On the CPU the
//! layers that carry most of the arithmetic run canard's kernels instead (`crate::ops`),
//! forward and backward, saving only what their backward pass reads.
//!
//! The parameters' gradients go into a candle `GradStore`, so the optimisers and the
//! checkpoints see tensors as ever.

use std::any::Any;

use candle_core::backprop::GradStore;
use candle_core::{bail, Context, Result, Tensor, Var};

pub mod activation;
pub mod class;
pub mod conv;
pub mod dcgan;
pub mod excite;
pub mod fastgan;
pub mod glu;
pub mod norm;
pub mod params;
pub mod quarter;
pub mod shape;
pub mod spectral;

pub use params::{Init, Params};
pub use shape::Shape;

use crate::export::onnx::Emitter;

/// Which implementation of the layers runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// canard's CPU kernels where a layer has them and its tensors are on the CPU, candle's
    /// ops elsewhere: what every run uses, on any device.
    Kernels,
    /// candle's ops and backprop only: every device, and the CPU reference the tests compare with.
    Candle,
}

impl Engine {
    /// Whether canard's kernels run on `x` (this engine, on CPU tensors).
    pub fn kernels(self, x: &Tensor) -> bool {
        self == Engine::Kernels && x.device().is_cpu()
    }
}

/// What a layer's forward pass keeps for its backward pass, beyond its inputs and output.
pub type Saved = Option<Box<dyn Any + Send + Sync>>;

/// The gradients a layer's backward pass gives: one per input (None where not wanted or
/// zero), and one per weight it used ([`Weights::used`]; empty when not wanted).
pub struct Grads {
    pub inputs: Vec<Option<Tensor>>,
    pub weights: Vec<Tensor>,
}

/// What a layer reads besides its inputs, in one pass.
pub struct Ctx<'a> {
    pub engine: Engine,
    /// Training mode: BatchNorm normalises by the batch.
    pub train: bool,
    /// The quarter (0–3, row-major) fastgan's critic rebuilds this pass.
    pub part: usize,
    /// Each picture's class [N] (u32), for a conditional network's class layers.
    pub classes: Option<&'a Tensor>,
    /// The layer's weights as this pass uses them.
    pub weights: &'a [Tensor],
}

impl Ctx<'_> {
    /// Whether canard's kernels run (the CPU engine on CPU tensors).
    pub fn kernels(&self, x: &Tensor) -> bool {
        self.engine.kernels(x)
    }

    /// The pictures' classes: a conditional network's passes are given them.
    pub fn classes(&self) -> Result<&Tensor> {
        self.classes.context("internal error: a conditional network without classes")
    }
}

/// A layer's parameters as one pass uses them: the tensors themselves, or spectral
/// normalisation's W/σ(W), whose gradient then goes back through σ to W.
pub struct Weights {
    pub used: Vec<Tensor>,
    pub spectral: Option<spectral::Normalised>,
}

impl Weights {
    pub fn plain(params: Vec<&Tensor>) -> Self {
        Self { used: params.into_iter().cloned().collect(), spectral: None }
    }

    /// The parameters' gradients from the used weights', by `engine`.
    fn param_grads(&self, mut dws: Vec<Tensor>, engine: Engine) -> Result<Vec<Tensor>> {
        if let (Some(s), Some(first)) = (&self.spectral, dws.first_mut()) {
            *first = s.grad(&self.used[0], first, engine.kernels(first))?;
        }
        Ok(dws)
    }
}

/// One layer: its definition in candle's ops, optional CPU kernels, and its ONNX form.
pub trait Layer: Send + Sync {
    /// The tensors gradients reach, in the order [`Layer::weights`] uses them.
    fn params(&self) -> Vec<&Tensor> {
        Vec::new()
    }

    /// The weights one pass uses (spectral normalisation advances its power iteration
    /// here, once per training pass).
    fn weights(&self, _train: bool) -> Result<Weights> {
        Ok(Weights::plain(self.params()))
    }

    /// The output from the inputs in candle's differentiable ops, any device: the layer's
    /// definition. Pure: what a training pass measures is kept by [`Layer::forward`].
    fn apply(&self, xs: &[Tensor], c: &Ctx) -> Result<Tensor>;

    /// The output's tangent for tangents `ts` of the inputs, in candle's ops (the
    /// penalties' second-order pass); linear in `ts`.
    fn apply_tangent(&self, _xs: &[Tensor], _ts: &[Tensor], _c: &Ctx) -> Result<Tensor> {
        bail!("internal error: a layer with no tangent in a penalised network")
    }

    /// The forward pass by a kernel, or with what it measures kept (None: [`Layer::apply`]).
    fn forward(&self, _xs: &[&Tensor], _c: &Ctx) -> Result<Option<(Tensor, Saved)>> {
        Ok(None)
    }

    /// The backward pass by a kernel (None: candle's backprop of `apply`). `want[i]`: whether
    /// input i's gradient is wanted; `weights`: whether the weights' are.
    fn backward(&self, _r: &Recorded, _dy: &Tensor, _want: &[bool], _weights: bool) -> Result<Option<Grads>> {
        Ok(None)
    }

    /// The tangent of the output for the inputs' tangents `r.ts`, by a kernel (None:
    /// [`Layer::apply_tangent`]).
    fn tangent(&self, _r: &Recorded) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// The reverse of (xs, ts) ↦ (y, ty) by a kernel, from the adjoints of ty (`at`) and
    /// of y (`ay`, None when zero): the adjoints of the inputs' tangents, of the inputs
    /// (None when zero), and the weights' gradients (None: candle's backprop).
    fn tangent_backward(&self, _r: &Recorded, _at: &Tensor, _ay: Option<&Tensor>) -> Result<Option<TangentGrads>> {
        Ok(None)
    }

    /// Folds what a training pass measured into kept state (BatchNorm's running statistics).
    fn commit(&self, _saved: &Saved) -> Result<()> {
        Ok(())
    }

    /// Writes the layer as ONNX nodes whose output is `out`, reading `xs`.
    fn onnx(&self, _e: &mut Emitter, _out: &str, _xs: &[&str]) -> Result<()> {
        bail!("internal error: this layer has no ONNX form")
    }
}

/// What a recorded pass holds at one layer, as its backward and tangent passes read it.
pub struct Recorded<'a> {
    pub xs: Vec<&'a Tensor>,
    /// The inputs' tangents (tangent passes only).
    pub ts: Vec<&'a Tensor>,
    pub y: &'a Tensor,
    pub saved: &'a Saved,
    pub c: Ctx<'a>,
}

/// [`Layer::tangent_backward`]'s result.
pub struct TangentGrads {
    /// Adjoints of the inputs' tangents.
    pub at: Vec<Tensor>,
    /// Adjoints of the inputs (None: zero).
    pub ay: Vec<Option<Tensor>>,
    pub weights: Vec<Tensor>,
}

/// One layer in a network: its output is value `i + 1` for node `i`; value 0 is the input.
pub struct Node {
    /// The output's name in the exported graph.
    pub name: String,
    pub layer: Box<dyn Layer>,
    pub inputs: Vec<usize>,
}

/// A network: its layers in forward order, and which values are its outputs.
#[derive(Default)]
pub struct Net {
    pub nodes: Vec<Node>,
    pub outputs: Vec<usize>,
}

impl Net {
    /// Adds a layer reading `inputs`; its output's value.
    pub fn add(&mut self, name: impl Into<String>, layer: impl Layer + 'static, inputs: &[usize]) -> usize {
        self.nodes.push(Node { name: name.into(), layer: Box::new(layer), inputs: inputs.to_vec() });
        self.nodes.len()
    }

    /// The value produced last.
    pub fn last(&self) -> usize {
        self.nodes.len()
    }

    /// Which nodes the outputs `wanted` (indices into `outputs`) depend on.
    fn needed(&self, wanted: &[usize]) -> Result<Vec<bool>> {
        let mut need = vec![false; self.nodes.len() + 1];
        for &k in wanted {
            let Some(&v) = self.outputs.get(k) else { bail!("internal error: the network has no output {k}") };
            need[v] = true;
        }
        for i in (0..self.nodes.len()).rev() {
            if need[i + 1] {
                for &v in &self.nodes[i].inputs {
                    need[v] = true;
                }
            }
        }
        Ok(need[1..].to_vec())
    }

    /// A pass computing the outputs `wanted`: each of their layers' weights as it uses
    /// them, its power iterations advanced once when training.
    pub fn pass(&self, engine: Engine, train: bool, wanted: &[usize]) -> Result<Pass<'_>> {
        let need = self.needed(wanted)?;
        let weights = self
            .nodes
            .iter()
            .zip(&need)
            .map(|(n, &need)| if need { n.layer.weights(train).map(Some) } else { Ok(None) })
            .collect::<Result<_>>()?;
        Ok(Pass { net: self, engine, train, need, weights, classes: None })
    }

    /// The first output for `x` (of pictures of `classes`, for a conditional network), in
    /// evaluation mode (the exported generator's pictures).
    pub fn run(&self, x: &Tensor, classes: Option<&Tensor>) -> Result<Tensor> {
        let pass = self.pass(Engine::Kernels, false, &[0])?.conditioned(classes.cloned());
        pass.forward(x.clone(), 0)?.output(0).cloned()
    }

    /// Every trainable tensor the layers hold, in order.
    pub fn params(&self) -> Vec<&Tensor> {
        self.nodes.iter().flat_map(|n| n.layer.params()).collect()
    }
}

/// One pass's plan: the layers it runs, with their weights.
pub struct Pass<'n> {
    net: &'n Net,
    engine: Engine,
    train: bool,
    need: Vec<bool>,
    weights: Vec<Option<Weights>>,
    classes: Option<Tensor>,
}

impl<'n> Pass<'n> {
    /// The same pass for pictures of `classes` ([N] u32; a conditional network's).
    pub fn conditioned(self, classes: Option<Tensor>) -> Self {
        Self { classes, ..self }
    }

    fn ctx(&self, i: usize, part: usize) -> Ctx<'_> {
        let weights = self.weights[i].as_ref().map_or(&[][..], |w| &w.used[..]);
        Ctx { engine: self.engine, train: self.train, part, classes: self.classes.as_ref(), weights }
    }

    /// The forward pass on `x`; the critic's decoders rebuild quarter `part`. Nothing
    /// measured is kept until [`Record::commit`].
    pub fn forward(&self, x: Tensor, part: usize) -> Result<Record<'_, 'n>> {
        let n = self.net.nodes.len();
        let mut values: Vec<Option<Tensor>> = vec![None; n + 1];
        values[0] = Some(x);
        let mut saved: Vec<Saved> = (0..n).map(|_| None).collect();
        for (i, node) in self.net.nodes.iter().enumerate() {
            if !self.need[i] {
                continue;
            }
            let xs = inputs(&values, &node.inputs)?;
            let c = self.ctx(i, part);
            let (y, s) = forward(node.layer.as_ref(), &xs, &c)?;
            values[i + 1] = Some(y);
            saved[i] = s;
        }
        Ok(Record { pass: self, part, values, saved })
    }

    /// Two forward passes side by side, one per thread (the critic on real and on
    /// generated pictures): one pass alone leaves threads idle at the end of each of its
    /// many short parallel loops.
    pub fn forward_both(&self, a: Tensor, b: Tensor, part: usize) -> Result<(Record<'_, 'n>, Record<'_, 'n>)> {
        let (a, b) = rayon::join(|| self.forward(a, part), || self.forward(b, part));
        Ok((a?, b?))
    }
}

fn inputs<'v>(values: &'v [Option<Tensor>], ids: &[usize]) -> Result<Vec<&'v Tensor>> {
    ids.iter().map(|&v| values[v].as_ref().context("internal error: a layer before its input")).collect()
}

/// A recorded forward pass.
pub struct Record<'p, 'n> {
    pass: &'p Pass<'n>,
    part: usize,
    values: Vec<Option<Tensor>>,
    saved: Vec<Saved>,
}

impl Record<'_, '_> {
    /// Output `k` (an index into the network's outputs).
    pub fn output(&self, k: usize) -> Result<&Tensor> {
        let v = self.pass.net.outputs.get(k).copied().unwrap_or(usize::MAX);
        match self.values.get(v) {
            Some(Some(t)) => Ok(t),
            _ => bail!("internal error: output {k} was not computed"),
        }
    }

    /// Layer `i` as this pass recorded it, with its inputs' tangents `ts` if any.
    fn at<'a>(&'a self, i: usize, ts: &'a [Option<Tensor>]) -> Result<Recorded<'a>> {
        let node = &self.pass.net.nodes[i];
        Ok(Recorded {
            xs: inputs(&self.values, &node.inputs)?,
            ts: if ts.is_empty() { Vec::new() } else { inputs(ts, &node.inputs)? },
            y: self.values[i + 1].as_ref().context("internal error: no value")?,
            saved: &self.saved[i],
            c: self.pass.ctx(i, self.part),
        })
    }

    /// The classes the pass was given.
    pub fn classes(&self) -> Option<&Tensor> {
        self.pass.classes.as_ref()
    }

    pub fn input(&self) -> Result<&Tensor> {
        self.values[0].as_ref().context("internal error: no input")
    }

    /// Folds the pass's BatchNorm statistics into the running averages, in layer order.
    pub fn commit(&self) -> Result<()> {
        for (node, saved) in self.pass.net.nodes.iter().zip(&self.saved) {
            node.layer.commit(saved)?;
        }
        Ok(())
    }

    /// Backpropagates the outputs' gradients (`(k, gradient)` pairs): the parameters'
    /// gradients added to `grads` when given (none for a frozen network), the input's
    /// returned when `want_input`.
    pub fn backward(
        &self,
        douts: Vec<(usize, Tensor)>,
        mut grads: Option<&mut GradStore>,
        want_input: bool,
    ) -> Result<Option<Tensor>> {
        let net = self.pass.net;
        let mut d: Vec<Option<Tensor>> = vec![None; self.values.len()];
        for (k, g) in douts {
            let v = net.outputs[k];
            let shape = self.values[v].as_ref().map(|t| t.shape().clone());
            let Some(shape) = shape else { bail!("internal error: a gradient for output {k}, not computed") };
            add_into(&mut d[v], g.reshape(shape)?)?;
        }
        for (i, node) in net.nodes.iter().enumerate().rev() {
            let Some(dy) = d[i + 1].take() else { continue };
            let want: Vec<bool> = node.inputs.iter().map(|&v| v != 0 || want_input).collect();
            let weights = grads.is_some() && !node.layer.params().is_empty();
            if !weights && !want.iter().any(|&w| w) {
                continue;
            }
            let g = backward(node.layer.as_ref(), &self.at(i, &[])?, &dy, &want, weights)?;
            if let (Some(grads), true) = (grads.as_deref_mut(), weights) {
                let w = self.pass.weights[i].as_ref().context("internal error: no weights")?;
                for (p, g) in node.layer.params().into_iter().zip(w.param_grads(g.weights, self.pass.engine)?) {
                    accumulate(grads, p, g)?;
                }
            }
            for ((&v, dx), &w) in node.inputs.iter().zip(g.inputs).zip(&want) {
                if let (Some(dx), true) = (dx, w) {
                    add_into(&mut d[v], dx)?;
                }
            }
        }
        Ok(d[0].take())
    }

    /// Adds ∇_θ ⟨v, ∇ₓ Σ out⟩ to `grads`, for `out` the network's output `k` and v a
    /// tangent at the input: the parameters' gradient of a penalty on the input gradient
    /// (WGAN-GP's, R1), given v = ∂penalty/∂(∇ₓ Σ out). ⟨v, ∇ₓ Σ out⟩ is the derivative of
    /// Σ out(x + s·v) at s = 0: v is pushed forward through the layers beside the recorded
    /// values, then that push is reversed with two adjoints, the tangent's and the values'
    /// (the second zero until a layer with a second derivative, BatchNorm or LayerNorm).
    /// About a forward and two backward passes, as a double backward costs.
    pub fn add_tangent_gradient(&self, v: Tensor, k: usize, grads: &mut GradStore) -> Result<()> {
        let net = self.pass.net;
        let need = net.needed(&[k])?;
        let mut ts: Vec<Option<Tensor>> = vec![None; self.values.len()];
        ts[0] = Some(v);
        for (i, node) in net.nodes.iter().enumerate() {
            if !need[i] {
                continue;
            }
            let t = tangent(node.layer.as_ref(), &self.at(i, &ts)?)?;
            ts[i + 1] = Some(t);
        }
        let out = net.outputs[k];
        let mut at: Vec<Option<Tensor>> = vec![None; self.values.len()];
        let mut ay: Vec<Option<Tensor>> = vec![None; self.values.len()];
        at[out] = Some(ts[out].as_ref().context("internal error: no tangent")?.ones_like()?);
        for (i, node) in net.nodes.iter().enumerate().rev() {
            let Some(a_t) = at[i + 1].take() else { continue };
            let a_y = ay[i + 1].take();
            let g = tangent_backward(node.layer.as_ref(), &self.at(i, &ts)?, &a_t, a_y.as_ref())?;
            let w = self.pass.weights[i].as_ref().context("internal error: no weights")?;
            for (p, g) in node.layer.params().into_iter().zip(w.param_grads(g.weights, self.pass.engine)?) {
                accumulate(grads, p, g)?;
            }
            for ((&v, t), y) in node.inputs.iter().zip(g.at).zip(g.ay) {
                if v != 0 {
                    add_into(&mut at[v], t)?;
                    if let Some(y) = y {
                        add_into(&mut ay[v], y)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The parameters' gradients of two backward passes through the same network (the critic
/// on real and on generated pictures), side by side, added first-then-second.
pub fn backward_both(
    net: &Net,
    first: (&Record, Vec<(usize, Tensor)>),
    second: (&Record, Vec<(usize, Tensor)>),
) -> Result<GradStore> {
    let pass = |(r, d): (&Record, Vec<(usize, Tensor)>)| -> Result<GradStore> {
        let mut grads = GradStore::default();
        r.backward(d, Some(&mut grads), false)?;
        Ok(grads)
    };
    let (a, b) = rayon::join(|| pass(first), || pass(second));
    let (mut grads, mut b) = (a?, b?);
    for p in net.params() {
        if let Some(y) = b.remove(p) {
            accumulate(&mut grads, p, y)?;
        }
    }
    Ok(grads)
}

fn owned(ts: &[&Tensor]) -> Vec<Tensor> {
    ts.iter().map(|&t| t.clone()).collect()
}

/// A layer's forward pass: its kernel's, or its definition in candle's ops.
pub fn forward(layer: &dyn Layer, xs: &[&Tensor], c: &Ctx) -> Result<(Tensor, Saved)> {
    match layer.forward(xs, c)? {
        Some(done) => Ok(done),
        None => Ok((layer.apply(&owned(xs), c)?, None)),
    }
}

/// A layer's backward pass: its kernel's, or candle's backprop of its definition.
pub fn backward(layer: &dyn Layer, r: &Recorded, dy: &Tensor, want: &[bool], weights: bool) -> Result<Grads> {
    match layer.backward(r, dy, want, weights)? {
        Some(g) => Ok(g),
        None => backward_by_candle(layer, r, dy, want, weights),
    }
}

/// A layer's tangent: its kernel's, or [`Layer::apply_tangent`].
pub fn tangent(layer: &dyn Layer, r: &Recorded) -> Result<Tensor> {
    match layer.tangent(r)? {
        Some(t) => Ok(t),
        None => layer.apply_tangent(&owned(&r.xs), &owned(&r.ts), &r.c),
    }
}

/// The reverse of a layer's tangent: its kernel's, or candle's backprop of its definition
/// and its tangent together.
pub fn tangent_backward(layer: &dyn Layer, r: &Recorded, at: &Tensor, ay: Option<&Tensor>) -> Result<TangentGrads> {
    match layer.tangent_backward(r, at, ay)? {
        Some(g) => Ok(g),
        None => tangent_backward_by_candle(layer, r, at, ay),
    }
}

/// dst += src, where dst may have no gradient yet (by a kernel on the CPU: outside
/// candle's graph).
fn add_into(dst: &mut Option<Tensor>, src: Tensor) -> Result<()> {
    *dst = Some(match dst.take() {
        Some(d) => crate::ops::add(&d, &src)?,
        None => src,
    });
    Ok(())
}

/// grads[param] += g.
pub fn accumulate(grads: &mut GradStore, param: &Tensor, g: Tensor) -> Result<()> {
    let sum = match grads.get(param) {
        Some(old) => (old + g)?,
        None => g,
    };
    grads.insert(param, sum);
    Ok(())
}

/// The vector-Jacobian product by candle's backprop: the gradients of Σₖ ⟨outₖ, adjₖ⟩
/// with respect to each of `args`, for out = f(args) (None where it does not depend on one).
pub fn vjp(
    args: &[&Tensor],
    adjoints: &[Option<&Tensor>],
    f: impl FnOnce(&[Tensor]) -> Result<Vec<Tensor>>,
) -> Result<Vec<Option<Tensor>>> {
    let vars = args.iter().map(|t| Var::from_tensor(&t.detach())).collect::<Result<Vec<_>>>()?;
    let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let outs = f(&ts)?;
    let mut total: Option<Tensor> = None;
    for (o, a) in outs.iter().zip(adjoints) {
        if let Some(a) = a {
            let term = (o * a.reshape(o.shape())?)?.sum_all()?;
            total = Some(match total {
                Some(t) => (t + term)?,
                None => term,
            });
        }
    }
    let Some(total) = total else { return Ok(vec![None; args.len()]) };
    let mut g = total.backward()?;
    Ok(ts.iter().map(|t| g.remove(t)).collect())
}

/// A layer's backward pass as candle's backprop of its definition.
fn backward_by_candle(layer: &dyn Layer, r: &Recorded, dy: &Tensor, want: &[bool], weights: bool) -> Result<Grads> {
    let (xs, c, n) = (&r.xs, &r.c, r.xs.len());
    let ws: Vec<&Tensor> = if weights { c.weights.iter().collect() } else { Vec::new() };
    let args: Vec<&Tensor> = xs.iter().copied().chain(ws.iter().copied()).collect();
    let mut g = vjp(&args, &[Some(dy)], |a| {
        let weights: Vec<Tensor> = if weights { a[n..].to_vec() } else { c.weights.to_vec() };
        let c = Ctx { weights: &weights, ..*c };
        Ok(vec![layer.apply(&a[..n], &c)?])
    })?;
    let weights = or_zeros(g.split_off(n), ws)?;
    let inputs = g.into_iter().zip(want).map(|(d, &w)| d.filter(|_| w)).collect();
    Ok(Grads { inputs, weights })
}

/// [`Layer::tangent_backward`] as candle's backprop of (xs, ts) ↦ (apply, apply_tangent).
fn tangent_backward_by_candle(
    layer: &dyn Layer,
    r: &Recorded,
    at: &Tensor,
    ay: Option<&Tensor>,
) -> Result<TangentGrads> {
    let (xs, ts, c, n) = (&r.xs, &r.ts, &r.c, r.xs.len());
    let args: Vec<&Tensor> = xs.iter().chain(ts).copied().chain(c.weights.iter()).collect();
    let mut g = vjp(&args, &[ay, Some(at)], |a| {
        let c = Ctx { weights: &a[2 * n..], ..*c };
        let y = match ay {
            Some(_) => layer.apply(&a[..n], &c)?,
            None => a[0].zeros_like()?, // unused: its adjoint is zero
        };
        Ok(vec![y, layer.apply_tangent(&a[..n], &a[n..2 * n], &c)?])
    })?;
    let weights = or_zeros(g.split_off(2 * n), c.weights.iter().collect())?;
    let at = or_zeros(g.split_off(n), ts.clone())?;
    Ok(TangentGrads { at, ay: g, weights })
}

/// Gradients with zeros (shaped as `like`) where backprop found none.
fn or_zeros(grads: Vec<Option<Tensor>>, like: Vec<&Tensor>) -> Result<Vec<Tensor>> {
    grads.into_iter().zip(like).map(|(d, t)| d.map_or_else(|| t.zeros_like(), Ok)).collect()
}
