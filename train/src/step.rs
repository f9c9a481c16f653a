//! One training step of each architecture: what the trainer repeats, and what
//! `examples/bench_step.rs` times.
//!
//! DCGAN (pytorch/examples `dcgan`): one generator forward; one discriminator update on
//! real and (detached) fake; one generator update against it (the non-saturating loss).
//! WGAN / WGAN-GP: `critic_updates` critic updates, each on a new batch (clipping the
//! weights, or adding the gradient penalty), then one generator update.
//! fastgan: as DCGAN's, with the hinge loss, and the critic's reconstruction of the real
//! pictures added to its loss.

use anyhow::Context;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::augment::{Ada, DiffAugment, Draw};
use crate::config::{Arch, TrainConfig};
use crate::cursor::Cursor;
use crate::data::Dataset;
use crate::losses::{bce_with_logits, critic_updates, gradient_penalty, hinge};
use crate::model::fastgan::{rebuild_loss, rebuild_targets};
use crate::model::params::randn;
use crate::ops::Element;
use crate::optim::Optimizer;
use crate::report::LossRecord;
use crate::tape::fastgan::{critic_backward_both, CriticWeights, GeneratorTape};
use crate::tape::penalty::add_gradient_penalty;
use crate::tape::{backward_both, Net, Tape, Values};
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
    fn new(step: usize, epoch: usize, values: [&Tensor; 5]) -> candle_core::Result<Self> {
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

    /// This step's record alone.
    pub fn record(&self) -> candle_core::Result<LossRecord> {
        let mut r = Self::read(std::slice::from_ref(self))?;
        r.pop().ok_or_else(|| candle_core::Error::Msg("internal error: no record".into()))
    }
}

/// What one step needs to read.
pub struct StepCtx<'a> {
    pub cfg: &'a TrainConfig,
    pub gan: &'a Gan,
    pub data: &'a Dataset,
    pub device: &'a Device,
    pub augment: Option<&'a DiffAugment>,
    /// Whether the gradients come from the CPU tape (`crate::tape`) rather than candle's graph.
    pub tape: bool,
    /// The dataset's pixels on the device ([`Dataset::upload`]), where that is not the CPU:
    /// batches are picked there. On the CPU the host's batches are the same (and a copy would
    /// double the dataset's memory).
    pub resident: Option<Tensor>,
}

impl<'a> StepCtx<'a> {
    /// The tape where it can run: on the CPU, for every architecture.
    pub fn new(
        cfg: &'a TrainConfig,
        gan: &'a Gan,
        data: &'a Dataset,
        device: &'a Device,
        augment: Option<&'a DiffAugment>,
    ) -> candle_core::Result<Self> {
        let tape = device.is_cpu();
        let resident = if device.is_cpu() { None } else { Some(data.upload(device)?) };
        Ok(Self { cfg, gan, data, device, augment, tape, resident })
    }
}

impl StepCtx<'_> {
    fn real_batch(&self, cursor: &mut Cursor, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
        let idx = cursor.next_batch().to_vec();
        let flips: Option<Vec<bool>> = self.cfg.mirror.then(|| (0..idx.len()).map(|_| rng.random::<bool>()).collect());
        match (&self.resident, flips) {
            (Some(pixels), flips) => crate::data::batch_from(pixels, &idx, flips.as_deref()),
            (None, Some(flips)) => self.data.batch_mirrored(&idx, &flips, self.device),
            (None, None) => self.data.batch(&idx, self.device),
        }
    }

    fn noise(&self, b: usize, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
        randn(rng, &[b, self.cfg.nz, 1, 1], self.device)
    }

    /// DiffAugment when on: the discriminator only ever sees augmented images, real and fake alike.
    fn view(&self, x: &Tensor, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
        self.view_sometimes(x, 1.0, rng)
    }

    /// [`StepCtx::view`] with each transform applied with probability `p` (ADA); at 1, the
    /// same draws as DiffAugment's own `apply`.
    fn view_sometimes(&self, x: &Tensor, p: f64, rng: &mut ChaCha8Rng) -> candle_core::Result<Tensor> {
        match self.augment {
            Some(a) => a.apply_sometimes(x, p, rng),
            None => Ok(x.clone()),
        }
    }

    /// [`StepCtx::view_sometimes`] on the tape: the images as the critic sees them, and the
    /// transforms drawn (for the generator's gradient to go back through). The same random
    /// numbers as `view_sometimes`.
    fn view_values<T: Element>(
        &self,
        x: Values<T>,
        p: f64,
        rng: &mut ChaCha8Rng,
    ) -> anyhow::Result<(Values<T>, Option<Draw>)> {
        let Some(a) = self.augment else { return Ok((x, None)) };
        let [b, c, h, w] = x.dims[..] else { anyhow::bail!("DiffAugment needs NCHW images, not {:?}", x.dims) };
        let draw = a.draw_sometimes((b, c, h, w), p, rng);
        Ok((Values { data: draw.forward(&x.data), dims: x.dims }, Some(draw)))
    }
}

pub fn dcgan_step(
    c: &StepCtx,
    opt_g: &mut Optimizer,
    opt_d: &mut Optimizer,
    cursor: &mut Cursor,
    rng: &mut ChaCha8Rng,
    step: usize,
) -> anyhow::Result<(StepLosses, usize)> {
    match (c.tape, c.gan.g_params.dtype()) {
        (true, DType::F32) => return dcgan_step_on_tape::<f32>(c, opt_g, opt_d, cursor, rng, step),
        (true, DType::F64) => return dcgan_step_on_tape::<f64>(c, opt_g, opt_d, cursor, rng, step),
        _ => {}
    }
    let real = c.real_batch(cursor, rng)?;
    let b = real.dim(0)?;
    let fake = c.gan.g.forward(&c.noise(b, rng)?, true)?;

    let d_real = c.gan.d.forward(&c.view(&real, rng)?, true)?;
    let d_fake = c.gan.d.forward(&c.view(&fake.detach(), rng)?, true)?;
    let loss_d = (bce_with_logits(&d_real, 1.0)? + bce_with_logits(&d_fake, 0.0)?)?;
    opt_d.backward_step(&loss_d)?;

    let loss_g = bce_with_logits(&c.gan.d.frozen().forward(&c.view(&fake, rng)?, true)?, 1.0)?;
    opt_g.backward_step(&loss_g)?;

    Ok((dcgan_record(step, cursor.epoch + 1, &loss_d, &loss_g, &d_real, &d_fake)?, b))
}

/// [`dcgan_step`] on the CPU tape: the same operations in the same order, the same
/// random numbers, the gradients computed by `crate::tape` instead of candle's graph.
fn dcgan_step_on_tape<T: Element>(
    c: &StepCtx,
    opt_g: &mut Optimizer,
    opt_d: &mut Optimizer,
    cursor: &mut Cursor,
    rng: &mut ChaCha8Rng,
    step: usize,
) -> anyhow::Result<(StepLosses, usize)> {
    let (g_net, d_net) = (Net::generator(&c.gan.g)?, Net::discriminator(&c.gan.d)?);
    let real = Values::<T>::of(&c.real_batch(cursor, rng)?)?;
    let b = real.dims[0];
    let g_tape = g_net.forward(Values::<T>::of(&c.noise(b, rng)?)?)?;
    let (real, _) = c.view_values(real, 1.0, rng)?;
    let (fake, _) = c.view_values(g_tape.output().clone(), 1.0, rng)?;
    let (loss_d, d_real, d_fake, _) = critic_update_on_tape(c, &d_net, opt_d, real, fake, None, |[r, f]| {
        bce_with_logits(r, 1.0)? + bce_with_logits(f, 0.0)?
    })?;
    let loss_g = generator_update_on_tape(c, &g_tape, &d_net, opt_g, rng, |[f]| bce_with_logits(f, 1.0))?;
    Ok((dcgan_record(step, cursor.epoch + 1, &loss_d, &loss_g, &d_real, &d_fake)?, b))
}

/// One fastgan step (on candle's graph off the CPU; on the CPU, [`fastgan_step_on_tape`]): the critic's hinge loss on real and
/// generated pictures (DiffAugment always on) plus its reconstruction of the real ones,
/// then the generator's −mean(D(G(z))). Reports the mean logits, and the reconstruction
/// error in the fifth column. With `ada`, each transform is applied with its probability,
/// which the real pictures' logits then adjust.
pub fn fastgan_step(
    c: &StepCtx,
    opt_g: &mut Optimizer,
    opt_d: &mut Optimizer,
    cursor: &mut Cursor,
    rng: &mut ChaCha8Rng,
    step: usize,
    ada: Option<&mut Ada>,
) -> anyhow::Result<(StepLosses, usize)> {
    match (c.tape, c.gan.g_params.dtype()) {
        (true, DType::F32) => return fastgan_step_on_tape::<f32>(c, opt_g, opt_d, cursor, rng, step, ada),
        (true, DType::F64) => return fastgan_step_on_tape::<f64>(c, opt_g, opt_d, cursor, rng, step, ada),
        _ => {}
    }
    if c.cfg.r1 > 0.0 {
        anyhow::bail!("--r1 trains on the CPU only: its second-order pass is written for canard's CPU tape");
    }
    let p = ada.as_ref().map_or(1.0, |a| a.p);
    let d = c.gan.d.fastgan().context("internal error: a fastgan step without fastgan's critic")?;
    let real = c.real_batch(cursor, rng)?;
    let b = real.dim(0)?;
    let fake = c.gan.g.forward(&c.noise(b, rng)?, true)?;

    let part = rng.random_range(0..4usize);
    let real_seen = c.view_sometimes(&real, p, rng)?;
    let (d_real, all, quarter) = d.forward_rebuilt(&real_seen, part, true)?;
    if let Some(ada) = ada {
        ada.observe(&d_real.to_dtype(DType::F32)?.to_vec1::<f32>()?);
    }
    let rebuilt = rebuild_loss(&all, &quarter, &rebuild_targets(&real_seen, part)?)?;
    let d_fake = d.forward(&c.view_sometimes(&fake.detach(), p, rng)?, true)?;
    let loss_d = ((hinge(&d_real, true)? + hinge(&d_fake, false)?)? + &rebuilt)?;
    opt_d.backward_step(&loss_d)?;

    let loss_g = d.frozen().forward(&c.view_sometimes(&fake, p, rng)?, true)?.mean_all()?.neg()?;
    opt_g.backward_step(&loss_g)?;
    let (r, f) = (d_real.mean_all()?, d_fake.mean_all()?);
    Ok((StepLosses::new(step, cursor.epoch + 1, [&loss_d, &loss_g, &r, &f, &rebuilt])?, b))
}

/// [`fastgan_step`] on the CPU tape (`crate::tape::fastgan`): the same operations in the
/// same order, the same random numbers; the critic's passes on real and generated
/// pictures run side by side.
fn fastgan_step_on_tape<T: Element>(
    c: &StepCtx,
    opt_g: &mut Optimizer,
    opt_d: &mut Optimizer,
    cursor: &mut Cursor,
    rng: &mut ChaCha8Rng,
    step: usize,
    ada: Option<&mut Ada>,
) -> anyhow::Result<(StepLosses, usize)> {
    let p = ada.as_ref().map_or(1.0, |a| a.p);
    let internal = "internal error: a fastgan step without fastgan's networks";
    let (g, d) = (c.gan.g.fastgan().context(internal)?, c.gan.d.fastgan().context(internal)?);
    let real = Values::<T>::of(&c.real_batch(cursor, rng)?)?;
    let b = real.dims[0];
    let g_tape = GeneratorTape::forward(g, Values::<T>::of(&c.noise(b, rng)?)?)?;

    let part = rng.random_range(0..4usize);
    let (real, _) = c.view_values(real, p, rng)?;
    let targets = rebuild_targets(&Tensor::from_vec(real.data.clone(), real.dims.clone(), c.device)?, part)?;
    let (fake, _) = c.view_values(g_tape.output().clone(), p, rng)?;
    let (w_real, w_fake) = (CriticWeights::of(d, true)?, CriticWeights::of(d, false)?);
    let (on_real, on_fake) = rayon::join(|| w_real.forward(real, part), || w_fake.forward(fake, part));
    let (mut on_real, mut on_fake) = (on_real?, on_fake?);
    on_real.record()?;
    on_fake.record()?;
    let [all, quarter] = on_real.rebuilt().context("internal error: the critic rebuilt nothing")?;
    let flat = |v: &Values<T>| Values { data: v.data.clone(), dims: vec![v.data.len()] };
    let mut rebuilt = None;
    let outputs = [on_real.logits(), on_fake.logits(), &flat(all), &flat(quarter)];
    let (loss_d, [(d_real, dl_real), (d_fake, dl_fake), (_, dl_all), (_, dl_quarter)]) =
        logit_loss(c.device, outputs, |[r, f, a, q]| {
            let loss = rebuild_loss(a, q, &(targets.0.flatten_all()?, targets.1.flatten_all()?))?;
            rebuilt = Some(loss.clone());
            (hinge(r, true)? + hinge(f, false)?)? + loss
        })?;
    if let Some(ada) = ada {
        ada.observe(&d_real.to_dtype(DType::F32)?.to_vec1::<f32>()?);
    }
    let mut grads =
        critic_backward_both(d, (&on_real, dl_real, Some([dl_all, dl_quarter])), (&on_fake, dl_fake, None))?;
    let loss_d = if c.cfg.r1 > 0.0 { (loss_d + on_real.add_r1(c.cfg.r1, &mut grads)?)? } else { loss_d };
    drop((on_real, on_fake));
    opt_d.step(&grads)?;

    let (seen, draw) = c.view_values(g_tape.output().clone(), p, rng)?;
    let w_gen = CriticWeights::of(d, false)?;
    let mut on_gen = w_gen.forward(seen, part)?;
    on_gen.record()?;
    let (loss_g, [(_, dl)]) = logit_loss(c.device, [on_gen.logits()], |[f]| f.mean_all()?.neg())?;
    let dseen = on_gen.backward(dl, None, None, true)?.context("the critic's tape gave no input gradient")?;
    let dfake = match draw {
        Some(d) => d.backward(&dseen),
        None => dseen,
    };
    let mut grads = GradStore::default();
    g_tape.backward(dfake, &mut grads)?;
    opt_g.step(&grads)?;
    let rebuilt = rebuilt.context("internal error: no reconstruction loss")?.to_dtype(DType::F32)?;
    let (r, f) = (d_real.mean_all()?, d_fake.mean_all()?);
    Ok((StepLosses::new(step, cursor.epoch + 1, [&loss_d, &loss_g, &r, &f, &rebuilt])?, b))
}

/// What a DCGAN step reports: its losses, and how likely the critic finds the real and
/// the fake images on average.
fn dcgan_record(
    step: usize,
    epoch: usize,
    loss_d: &Tensor,
    loss_g: &Tensor,
    d_real: &Tensor,
    d_fake: &Tensor,
) -> candle_core::Result<StepLosses> {
    let prob = |t: &Tensor| candle_nn::ops::sigmoid(t)?.mean_all();
    let zero = loss_d.zeros_like()?;
    StepLosses::new(step, epoch, [loss_d, loss_g, &prob(d_real)?, &prob(d_fake)?, &zero])
}

/// One critic update on the tape: the critic on real and fake images side by side, `loss`
/// of its two outputs, both backward passes, with WGAN-GP the gradient penalty at the
/// interpolated images `x_hat` (times λ, added to the loss), the optimiser's step. The
/// loss and the two outputs, as tensors, and the penalty (0 without).
fn critic_update_on_tape<T: Element>(
    c: &StepCtx,
    d_net: &Net,
    opt_d: &mut Optimizer,
    real: Values<T>,
    fake: Values<T>,
    x_hat: Option<Values<T>>,
    loss: impl FnOnce([&Tensor; 2]) -> candle_core::Result<Tensor>,
) -> anyhow::Result<(Tensor, Tensor, Tensor, f64)> {
    let (d_real, d_fake) = d_net.forward_both(real, fake)?;
    let (mut loss, [(r, dl_real), (f, dl_fake)]) = logit_loss(c.device, [d_real.output(), d_fake.output()], loss)?;
    let mut grads = backward_both((&d_real, dl_real), (&d_fake, dl_fake))?;
    let mut gp = 0.0;
    if let Some(x_hat) = x_hat {
        gp = add_gradient_penalty(d_net, x_hat, c.cfg.gp_lambda, &mut grads)?;
        loss = (loss + gp * c.cfg.gp_lambda)?;
    }
    opt_d.step(&grads)?;
    Ok((loss, r, f, gp))
}

/// The generator's update on the tape: the critic as just updated, frozen, scores the
/// images `g_tape` made (through DiffAugment when on); the gradient of `loss` of its output
/// reaches the images, then the generator. The loss.
fn generator_update_on_tape<T: Element>(
    c: &StepCtx,
    g_tape: &Tape<T>,
    d_net: &Net,
    opt_g: &mut Optimizer,
    rng: &mut ChaCha8Rng,
    loss: impl FnOnce([&Tensor; 1]) -> candle_core::Result<Tensor>,
) -> anyhow::Result<Tensor> {
    let (seen, draw) = c.view_values(g_tape.output().clone(), 1.0, rng)?;
    let d_gen = d_net.forward(seen)?;
    let (loss, [(_, dl)]) = logit_loss(c.device, [d_gen.output()], loss)?;
    let dseen = d_gen.backward(dl, None, true)?.context("the critic's tape gave no input gradient")?;
    let dfake = match draw {
        Some(d) => d.backward(&dseen),
        None => dseen,
    };
    let mut grads = GradStore::default();
    g_tape.backward(dfake, Some(&mut grads), false)?;
    opt_g.step(&grads)?;
    Ok(loss)
}

/// A loss of the critic's outputs, computed by candle (the same loss functions as the
/// graph path): the loss (f32), and each output as a tensor with the loss's gradient
/// with respect to it.
#[allow(clippy::type_complexity)]
fn logit_loss<T: Element, const K: usize>(
    device: &Device,
    outputs: [&Values<T>; K],
    loss: impl FnOnce([&Tensor; K]) -> candle_core::Result<Tensor>,
) -> candle_core::Result<(Tensor, [(Tensor, Vec<T>); K])> {
    let vars = outputs.map(|o| Var::from_vec(o.data.clone(), o.data.len(), device));
    let vars = vars.into_iter().collect::<candle_core::Result<Vec<Var>>>()?;
    let tensors: [&Tensor; K] = std::array::from_fn(|i| vars[i].as_tensor());
    let value = loss(tensors)?;
    let grads = value.backward()?;
    let mut out = Vec::with_capacity(K);
    for v in &vars {
        let g = grads.get(v.as_tensor()).map_or_else(|| v.as_tensor().zeros_like(), |g| Ok(g.clone()))?;
        out.push((v.as_tensor().clone(), g.to_vec1::<T>()?));
    }
    let out: [(Tensor, Vec<T>); K] =
        out.try_into().map_err(|_| candle_core::Error::Msg("internal error: loss arity".into()))?;
    Ok((value.to_dtype(DType::F32)?, out))
}

/// Critic updates (clipped, or with the gradient penalty), then one generator update.
pub fn wgan_step(
    c: &StepCtx,
    opt_g: &mut Optimizer,
    opt_d: &mut Optimizer,
    cursor: &mut Cursor,
    rng: &mut ChaCha8Rng,
    step: usize,
) -> anyhow::Result<(StepLosses, usize)> {
    match (c.tape, c.gan.g_params.dtype()) {
        (true, DType::F32) => return wgan_step_on_tape::<f32>(c, opt_g, opt_d, cursor, rng, step),
        (true, DType::F64) => return wgan_step_on_tape::<f64>(c, opt_g, opt_d, cursor, rng, step),
        _ => {}
    }
    let cfg = c.cfg;
    let n = critic_updates(cfg.arch, step - 1, cfg.critic_steps, cfg.critic_steps_burst);
    let mut images = 0;
    // The last critic update's loss, scores and penalty, as tensors.
    let mut last: Option<[Tensor; 4]> = None;
    for _ in 0..n {
        let real = c.view(&c.real_batch(cursor, rng)?, rng)?;
        let b = real.dim(0)?;
        images += b;
        let fake = c.view(&c.gan.g.forward(&c.noise(b, rng)?, true)?.detach(), rng)?;
        let score_real = c.gan.d.forward(&real, true)?.mean_all()?;
        let score_fake = c.gan.d.forward(&fake, true)?.mean_all()?;
        let mut loss = (&score_fake - &score_real)?;
        let mut gp = loss.zeros_like()?;
        if cfg.arch == Arch::WganGp {
            let eps: Vec<f32> = (0..b).map(|_| rng.random::<f32>()).collect();
            gp = gradient_penalty(&c.gan.d, &real, &fake, &Tensor::new(eps, c.device)?)?;
            loss = (loss + (&gp * cfg.gp_lambda)?)?;
        }
        opt_d.backward_step(&loss)?;
        if cfg.arch == Arch::Wgan {
            c.gan.d_params.clamp(cfg.clamp)?;
        }
        last = Some([loss.detach(), score_real.detach(), score_fake.detach(), gp.detach()]);
    }
    let b = cfg.batch_size.min(c.data.len);
    let fake = c.gan.g.forward(&c.noise(b, rng)?, true)?;
    let loss_g = c.gan.d.frozen().forward(&c.view(&fake, rng)?, true)?.mean_all()?.neg()?;
    opt_g.backward_step(&loss_g)?;
    let [loss_d, s_real, s_fake, gp] = last.context("a WGAN step makes at least one critic update")?;
    Ok((StepLosses::new(step, cursor.epoch + 1, [&loss_d, &loss_g.detach(), &s_real, &s_fake, &gp])?, images))
}

/// [`wgan_step`] on the CPU tape (see [`dcgan_step_on_tape`]), clipped or with the penalty.
fn wgan_step_on_tape<T: Element>(
    c: &StepCtx,
    opt_g: &mut Optimizer,
    opt_d: &mut Optimizer,
    cursor: &mut Cursor,
    rng: &mut ChaCha8Rng,
    step: usize,
) -> anyhow::Result<(StepLosses, usize)> {
    let cfg = c.cfg;
    let (g_net, d_net) = (Net::generator(&c.gan.g)?, Net::discriminator(&c.gan.d)?);
    let n = critic_updates(cfg.arch, step - 1, cfg.critic_steps, cfg.critic_steps_burst);
    let mut images = 0;
    let mut last: Option<[Tensor; 4]> = None;
    for _ in 0..n {
        let (real, _) = c.view_values(Values::<T>::of(&c.real_batch(cursor, rng)?)?, 1.0, rng)?;
        let b = real.dims[0];
        images += b;
        let fake = g_net.forward(Values::<T>::of(&c.noise(b, rng)?)?)?.into_output();
        let (fake, _) = c.view_values(fake, 1.0, rng)?;
        let x_hat = (cfg.arch == Arch::WganGp).then(|| interpolate(&real, &fake, rng));
        let (loss, r, f, gp) =
            critic_update_on_tape(c, &d_net, opt_d, real, fake, x_hat, |[r, f]| f.mean_all()? - r.mean_all()?)?;
        if cfg.arch == Arch::Wgan {
            c.gan.d_params.clamp(cfg.clamp)?;
        }
        let gp = Tensor::new(gp as f32, c.device)?;
        last = Some([loss, r.mean_all()?, f.mean_all()?, gp]);
    }
    let b = cfg.batch_size.min(c.data.len);
    let g_tape = g_net.forward(Values::<T>::of(&c.noise(b, rng)?)?)?;
    let loss_g = generator_update_on_tape(c, &g_tape, &d_net, opt_g, rng, |[f]| f.mean_all()?.neg())?;
    let [loss_d, s_real, s_fake, gp] = last.context("a WGAN step makes at least one critic update")?;
    Ok((StepLosses::new(step, cursor.epoch + 1, [&loss_d, &loss_g, &s_real, &s_fake, &gp])?, images))
}

/// x̂ = ε·real + (1 − ε)·fake, one ε ~ U(0, 1) per sample: where WGAN-GP's penalty is
/// taken. The same random numbers, in the same order, as the graph's step.
fn interpolate<T: Element>(real: &Values<T>, fake: &Values<T>, rng: &mut ChaCha8Rng) -> Values<T> {
    let b = real.dims[0];
    let per = real.data.len() / b.max(1);
    let eps: Vec<T> = (0..b).map(|_| T::from_f64(rng.random::<f32>() as f64)).collect();
    let data = real
        .data
        .chunks(per)
        .zip(fake.data.chunks(per))
        .zip(&eps)
        .flat_map(|((r, f), &e)| r.iter().zip(f).map(move |(&r, &f)| r * e + f * (T::one() - e)))
        .collect();
    Values { data, dims: real.dims.clone() }
}
