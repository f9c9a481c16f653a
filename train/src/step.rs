//! What every architecture's training step (`crate::arch`) is made of, on any device
//! (`crate::nn`'s engine): batches, latents and DiffAugment ([`StepCtx`]), a critic update
//! on real and generated pictures, a generator update through the critic, and the losses
//! a step reports. The trainer repeats the steps; `examples/bench_step.rs` times them.

use anyhow::Context;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::augment::{Ada, DiffAugment, Draw};
use crate::config::TrainConfig;
use crate::cursor::Cursor;
use crate::data::Dataset;
use crate::losses::gradient_penalty;
use crate::nn::params::randn;
use crate::nn::{backward_both, vjp, Engine, Net, Pass, Record};
use crate::optim::Optimizer;
use crate::report::LossRecord;
use crate::trainer::Gan;

/// A step's losses, left where they were computed (the GPU, say) until a log line or a
/// record needs them: reading a value back waits for the device, so the trainer reads
/// many steps' at once. `values` is [loss_d, loss_g, d_real, d_fake, gp], f32.
pub struct StepLosses {
    pub step: usize,
    pub epoch: usize,
    pub values: Tensor,
}

impl StepLosses {
    pub(crate) fn new(step: usize, epoch: usize, values: [&Tensor; 5]) -> candle_core::Result<Self> {
        let values = values.map(|v| v.to_dtype(DType::F32));
        let values: Vec<Tensor> = values.into_iter().collect::<candle_core::Result<_>>()?;
        Ok(Self { step, epoch, values: Tensor::stack(&values, 0)? })
    }

    /// The records of `steps`, read back in one transfer.
    pub fn read(steps: &[StepLosses]) -> candle_core::Result<Vec<LossRecord>> {
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        let all: Vec<&Tensor> = steps.iter().map(|s| &s.values).collect();
        let rows = Tensor::stack(&all, 0)?.to_vec2::<f32>()?;
        Ok(steps
            .iter()
            .zip(rows)
            .map(|(s, v)| LossRecord {
                step: s.step,
                epoch: s.epoch,
                loss_d: v[0],
                loss_g: v[1],
                d_real: v[2],
                d_fake: v[3],
                gp: v[4],
                seconds: 0.0,
            })
            .collect())
    }
}

/// What a step changes besides the networks.
pub struct Steps<'a> {
    pub opt_g: &'a mut Optimizer,
    pub opt_d: &'a mut Optimizer,
    pub cursor: &'a mut Cursor,
    pub rng: &'a mut ChaCha8Rng,
    /// ADA's state, when augmentation adapts (fastgan's `--ada-target`).
    pub ada: Option<&'a mut Ada>,
}

/// What one step needs to read.
pub struct StepCtx<'a> {
    pub cfg: &'a TrainConfig,
    pub gan: &'a Gan,
    pub data: &'a Dataset,
    pub device: &'a Device,
    pub augment: Option<&'a DiffAugment>,
    /// canard's CPU kernels, or candle's ops (other devices; the tests' reference).
    pub engine: Engine,
    /// The dataset's pixels on the device ([`Dataset::upload`]), where that is not the CPU:
    /// batches are picked there. On the CPU the host's batches are the same (and a copy would
    /// double the dataset's memory).
    pub resident: Option<Tensor>,
}

impl<'a> StepCtx<'a> {
    /// canard's kernels on the CPU, candle's ops elsewhere.
    pub fn new(
        cfg: &'a TrainConfig,
        gan: &'a Gan,
        data: &'a Dataset,
        device: &'a Device,
        augment: Option<&'a DiffAugment>,
    ) -> candle_core::Result<Self> {
        let resident = if device.is_cpu() { None } else { Some(data.upload(device)?) };
        Ok(Self { cfg, gan, data, device, augment, engine: Engine::Kernels, resident })
    }
    /// The next batch of real pictures, mirrored where `--mirror` draws it, and their
    /// classes when the data has them.
    pub(crate) fn real_batch(
        &self,
        cursor: &mut Cursor,
        rng: &mut ChaCha8Rng,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let idx = cursor.next_batch().to_vec();
        let flips: Option<Vec<bool>> = self.cfg.mirror.then(|| (0..idx.len()).map(|_| rng.random::<bool>()).collect());
        let batch = match (&self.resident, flips) {
            (Some(pixels), flips) => crate::data::batch_from(pixels, &idx, flips.as_deref()),
            (None, flips) => self.data.batch(&idx, flips.as_deref(), self.device),
        };
        Ok((batch?.to_dtype(self.gan.g_params.dtype())?, self.data.classes.batch(&idx, self.device)?))
    }

    /// A training pass through `net` (its outputs `wanted`) of pictures of `classes`.
    pub(crate) fn pass<'n>(
        &self,
        net: &'n Net,
        wanted: &[usize],
        classes: Option<Tensor>,
    ) -> candle_core::Result<Pass<'n>> {
        Ok(net.pass(self.engine, true, wanted)?.conditioned(classes))
    }

    /// Classes for `b` generated pictures, as often as the data has each: those of `b`
    /// pictures drawn at random. None (and nothing drawn) when the data has no classes.
    pub(crate) fn draw_classes(&self, b: usize, rng: &mut ChaCha8Rng) -> candle_core::Result<Option<Tensor>> {
        if self.data.classes.names.is_empty() {
            return Ok(None);
        }
        let idx: Vec<usize> = (0..b).map(|_| rng.random_range(0..self.data.len)).collect();
        self.data.classes.batch(&idx, self.device)
    }

    fn noise(&self, b: usize, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
        randn(rng, &[b, self.cfg.nz, 1, 1], self.device)?.to_dtype(self.gan.g_params.dtype())
    }

    /// The pictures as the critic sees them: DiffAugment when on, each transform applied
    /// with probability `p` (ADA; at 1, DiffAugment's own draws); and the transforms drawn,
    /// for the generator's gradient to go back through ([`StepCtx::unview`]).
    pub(crate) fn view(&self, x: Tensor, p: f64, rng: &mut ChaCha8Rng) -> anyhow::Result<(Tensor, Option<Draw>)> {
        let Some(a) = self.augment else { return Ok((x, None)) };
        let draw = a.draw_sometimes(x.dims4()?, p, rng);
        let seen = match self.engine.kernels(&x) {
            true => crate::kernel!(x.dims(), [&x => v], T => draw.forward(v))?,
            false => draw.apply(&x)?,
        };
        Ok((seen, Some(draw)))
    }

    /// The gradient of [`StepCtx::view`]'s input `x` from its output's, `dy`.
    fn unview(&self, draw: Option<Draw>, x: &Tensor, dy: Tensor) -> anyhow::Result<Tensor> {
        let Some(draw) = draw else { return Ok(dy) };
        Ok(match self.engine.kernels(&dy) {
            true => crate::kernel!(dy.dims(), [&dy => v], T => draw.backward(v))?,
            false => {
                let g = vjp(&[x], &[Some(&dy)], |a| Ok(vec![draw.apply(&a[0])?]))?;
                g.into_iter().next().flatten().context("internal error: DiffAugment gave no gradient")?
            }
        })
    }

    /// The generator's forward pass in training mode (BatchNorm's running statistics
    /// updated), recorded.
    pub(crate) fn generate<'p, 'n>(
        &self,
        pass: &'p Pass<'n>,
        b: usize,
        rng: &mut ChaCha8Rng,
    ) -> anyhow::Result<Record<'p, 'n>> {
        let record = pass.forward(self.noise(b, rng)?, 0)?;
        record.commit()?;
        Ok(record)
    }
}

/// One critic update: the critic on real and fake pictures (both of `classes`, when
/// conditional) side by side, `loss` of its two outputs, both backward passes, with
/// WGAN-GP the gradient penalty at the interpolated pictures `x_hat` (times λ, added to
/// the loss), the optimiser's step. The loss and the two outputs, as tensors, and the
/// penalty (0 without).
pub(crate) fn critic_update(
    c: &StepCtx,
    opt_d: &mut Optimizer,
    [real, fake]: [Tensor; 2],
    classes: Option<Tensor>,
    x_hat: Option<Tensor>,
    loss: impl FnOnce([&Tensor; 2]) -> candle_core::Result<Tensor>,
) -> anyhow::Result<(Tensor, Tensor, Tensor, f64)> {
    let pass = c.pass(&c.gan.d, &[0], classes)?;
    let (on_real, on_fake) = pass.forward_both(real, fake, 0)?;
    on_real.commit()?;
    on_fake.commit()?;
    let (mut loss, [(r, dl_real), (f, dl_fake)]) = logit_loss([on_real.output(0)?, on_fake.output(0)?], loss)?;
    let mut grads = backward_both(&c.gan.d, (&on_real, vec![(0, dl_real)]), (&on_fake, vec![(0, dl_fake)]))?;
    let mut gp = 0.0;
    if let Some(x_hat) = x_hat {
        gp = gradient_penalty(&pass.forward(x_hat, 0)?, c.cfg.gp_lambda, &mut grads)?;
        loss = (loss + gp * c.cfg.gp_lambda)?;
    }
    opt_d.step(&grads)?;
    Ok((loss, r, f, gp))
}

/// The generator's update: the critic as just updated scores the pictures `made` made
/// (of its classes; through DiffAugment when on, each transform with probability `p`); the gradient of
/// `loss` of its output reaches the pictures (not the critic's weights), then the
/// generator. The loss.
pub(crate) fn generator_update(
    c: &StepCtx,
    made: &Record,
    opt_g: &mut Optimizer,
    rng: &mut ChaCha8Rng,
    p: f64,
    loss: impl FnOnce([&Tensor; 1]) -> candle_core::Result<Tensor>,
) -> anyhow::Result<Tensor> {
    let pictures = made.output(0)?;
    let (seen, draw) = c.view(pictures.clone(), p, rng)?;
    let pass = c.pass(&c.gan.d, &[0], made.classes().cloned())?;
    let scored = pass.forward(seen, 0)?;
    scored.commit()?;
    let (loss, [(_, dl)]) = logit_loss([scored.output(0)?], loss)?;
    let dseen = scored.backward(vec![(0, dl)], None, true)?.context("the critic gave no input gradient")?;
    let mut dpictures = c.unview(draw, pictures, dseen)?;
    if let Some(classes) = made.classes() {
        dpictures = (dpictures + mode_seeking(made.input()?, pictures, classes)?)?;
    }
    let mut grads = GradStore::default();
    made.backward(vec![(0, dpictures)], Some(&mut grads), false)?;
    opt_g.step(&grads)?;
    Ok(loss)
}

/// The weight of [`mode_seeking`]'s term in a conditional generator's loss (MSGAN's 1).
pub const MODE_SEEKING: f64 = 1.0;

/// Mode seeking (Mao et al. 2019, MSGAN), for a conditional generator: over the pairs of its
/// pictures `x` of one class, the mean of their latents' distance over their pictures'
/// (mean absolute differences), times [`MODE_SEEKING`]; its gradient at `x`. Without it a
/// conditional generator trained on a few hundred pictures a class draws one picture per
/// class whatever z (QUALITY.md).
fn mode_seeking(z: &Tensor, x: &Tensor, classes: &Tensor) -> candle_core::Result<Tensor> {
    let labels = classes.to_vec1::<u32>()?;
    let n = labels.len();
    let pairs: Vec<(u32, u32)> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .filter(|&(i, j)| labels[i] == labels[j])
        .map(|(i, j)| (i as u32, j as u32))
        .collect();
    if pairs.is_empty() {
        return x.zeros_like();
    }
    let (a, b): (Vec<u32>, Vec<u32>) = pairs.into_iter().unzip();
    let (a, b) = (Tensor::new(a, x.device())?, Tensor::new(b, x.device())?);
    let distance = |t: &Tensor| -> candle_core::Result<Tensor> {
        (t.index_select(&a, 0)? - t.index_select(&b, 0)?)?.abs()?.flatten_from(1)?.mean(1)
    };
    let xv = Var::from_tensor(&x.detach())?;
    let ratio = (distance(&z.detach())? / (distance(xv.as_tensor())? + 1e-5)?)?;
    let grads = (ratio.mean_all()? * MODE_SEEKING)?.backward()?;
    grads.get(xv.as_tensor()).map_or_else(|| x.zeros_like(), |g| Ok(g.clone()))
}

/// A loss of the critic's outputs (each flattened), by candle: the loss (f32), and each
/// output with the loss's gradient with respect to it.
#[allow(clippy::type_complexity)]
pub(crate) fn logit_loss<const K: usize>(
    outputs: [&Tensor; K],
    loss: impl FnOnce([&Tensor; K]) -> candle_core::Result<Tensor>,
) -> candle_core::Result<(Tensor, [(Tensor, Tensor); K])> {
    let vars = outputs.map(|o| o.flatten_all().and_then(|o| Var::from_tensor(&o.detach())));
    let vars = vars.into_iter().collect::<candle_core::Result<Vec<Var>>>()?;
    let value = loss(std::array::from_fn(|i| vars[i].as_tensor()))?;
    let grads = value.backward()?;
    let grads: Vec<Tensor> = vars
        .iter()
        .map(|v| grads.get(v).map_or_else(|| v.zeros_like(), |g| Ok(g.clone())))
        .collect::<candle_core::Result<_>>()?;
    let out = std::array::from_fn(|i| (vars[i].as_tensor().clone(), grads[i].clone()));
    Ok((value.to_dtype(DType::F32)?, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mode seeking pushes pictures of one class apart, more the closer they are, and
    /// leaves a picture alone in its class untouched.
    #[test]
    fn mode_seeking_pushes_pictures_of_one_class_apart() {
        let dev = Device::Cpu;
        let z = Tensor::new(&[[1.0f32, 0.0], [-1.0, 0.5], [0.3, 0.3]], &dev).unwrap().reshape((3, 2, 1, 1)).unwrap();
        let x = Tensor::new(&[[0.10f32, 0.2], [0.12, 0.25], [0.9, -0.9]], &dev).unwrap().reshape((3, 1, 1, 2)).unwrap();
        let classes = Tensor::new(&[4u32, 4, 1], &dev).unwrap();
        let g = mode_seeking(&z, &x, &classes).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // Descending the gradient moves picture 0 down and picture 1 up: apart.
        assert!(g[0] > 0.0 && g[1] > 0.0 && g[2] < 0.0 && g[3] < 0.0, "{g:?}");
        assert_eq!(&g[4..], &[0.0, 0.0], "the only picture of class 1");
        let apart =
            Tensor::new(&[[0.10f32, 0.2], [0.5, 0.9], [0.9, -0.9]], &dev).unwrap().reshape((3, 1, 1, 2)).unwrap();
        let far = mode_seeking(&z, &apart, &classes).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(far[0].abs() < g[0].abs() / 10.0, "a pair far apart is pushed less: {far:?} against {g:?}");
        let alone = Tensor::new(&[0u32, 1, 2], &dev).unwrap();
        let none = mode_seeking(&z, &x, &alone).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(none.iter().all(|&v| v == 0.0), "no pair of one class, no push");
    }
}
