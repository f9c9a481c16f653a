//! The training loop for every architecture, on any device: [`Setup`] settles the settings,
//! the device, the data and the length; [`Training`] builds the networks and resumes the
//! newest checkpoint, then runs the steps; [`finish`] measures and exports.
//!
//! One *step* is one generator update ([`crate::step`]); a run lasts a number of steps or
//! minutes ([`Length`]). Previews (grid, loss plot, GIF) come at a [`Cadence`] that costs at
//! most ~1% of the time, checkpoints every `--checkpoint-every` steps; both at the end too.
//! At the end it measures SWD and exports the generator (its EMA by default).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use canard_shared::manifest::{Class, Quality, TrainingSummary};
use candle_core::{DType, Device};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::augment::{Ada, DiffAugment};
use crate::checkpoint::{self, RngState, State};
use crate::config::{Arch, ClassSource, Settings, TrainConfig, AUGMENT_BELOW, NETWORK_SETTINGS};
use crate::cursor::Cursor;
use crate::data::Dataset;
use crate::ema::Ema;
use crate::guard::Guard;
use crate::length::Length;
use crate::nn::{Init, Net, Params, Shape};
use crate::optim::Optimizer;
use crate::report::cadence::Cadence;
use crate::report::gif::{preview_name, ProgressGif};
use crate::report::progress::Progress;
use crate::report::{self, LossRecord, PREVIEW_SEEDS};
use crate::start_from::StartFrom;
use crate::step::{StepCtx, StepLosses, Steps};
use crate::{atomic, device, export};

/// The two networks.
pub struct Gan {
    pub shape: Shape,
    pub g: Net,
    pub d: Net,
    pub g_params: Params,
    pub d_params: Params,
}

impl Gan {
    /// The networks of `arch`, initialised from `rng` (generator first); `dtype` F64 lets
    /// tests compare gradients precisely.
    pub fn new(
        arch: Arch,
        shape: Shape,
        rng: &mut ChaCha8Rng,
        device: &Device,
        dtype: DType,
    ) -> candle_core::Result<Self> {
        let mut g_params = Params::default();
        let g = arch.generator(&mut Init::new(&mut g_params, rng, device, dtype), shape)?;
        let mut d_params = Params::default();
        let d = arch.get().critic(&mut Init::new(&mut d_params, rng, device, dtype), shape)?;
        Ok(Self { shape, g, d, g_params, d_params })
    }
}

/// What a finished run produced.
pub struct TrainOutcome {
    pub model_dir: PathBuf,
    pub run_dir: PathBuf,
    pub config: TrainConfig,
    /// The exported generator (the EMA one when enabled), its parameters and its shape.
    pub generator: Net,
    pub generator_params: Params,
    pub shape: Shape,
    pub summary: TrainingSummary,
}

/// How to start: resume the run's newest checkpoint if there is one (the default),
/// require one (`--resume`), or discard the run and start over (`--fresh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Auto,
    Resume,
    Fresh,
}

/// Layers the saved config of a run being resumed, the config file and the flags, then
/// trains, started as `start` says: `Fresh` deletes the run's folder once every setting,
/// the data and the device have been checked; `Resume` fails if no checkpoint reads back.
/// Every setting is checked before anything on disk is touched; what they leave to the data
/// (`channels: None`, and with it fastgan's grey defaults) is settled once the folder is read.
pub fn train_with(flags: &Settings, config_file: Option<&Path>, start: Start) -> anyhow::Result<TrainOutcome> {
    let file = config_file.map(Settings::from_toml_file).transpose()?.unwrap_or_default();
    let layered = file.clone().overlay(flags)?;
    let name = layered.name.clone().context("--name is required (on the command line or in --config)")?;
    // The name becomes a path: checked before it is used as one.
    crate::config::check_name(&name)?;
    let runs_dir = layered.runs_dir.clone().unwrap_or_else(|| "runs".into());
    let run_dir = runs_dir.join(&name);
    let has_checkpoint = start != Start::Fresh && !checkpoint::list(&run_dir).is_empty();
    if start == Start::Resume && !has_checkpoint {
        anyhow::bail!("--resume: {} has no checkpoint to resume from", run_dir.display());
    }
    let settings = if has_checkpoint {
        // The run's own settings first, so a resumed run continues as it started unless told otherwise.
        let saved = Settings::from_saved_run(&run_dir.join("config.toml"))?;
        let settings = saved.clone().overlay(&file)?.overlay(flags)?;
        settings.resolve()?;
        same_networks(&saved, &settings, &run_dir)?;
        settings
    } else {
        layered
    };
    let setup = Setup::new(&settings, start)?;
    let mut training = Training::resume(&setup, start)?;
    training.run(&setup)?;
    finish(setup, training)
}

/// A resumed run's checkpoints hold networks of the shape it was started with: a setting
/// that changes that shape is refused by name, before anything is written.
/// `now` is `saved` with the config file and the flags laid over it.
fn same_networks(saved: &Settings, now: &Settings, run_dir: &Path) -> anyhow::Result<()> {
    let (saved, now) = (saved.to_table()?, now.to_table()?);
    let text = |v: &toml::Value| v.as_str().map_or_else(|| v.to_string(), Into::into);
    for flag in NETWORK_SETTINGS {
        let (Some(was), Some(is)) = (saved.get(flag).map(text), now.get(flag).map(text)) else { continue };
        if was != is {
            anyhow::bail!(
                "--{flag} {is} differs from the run's {was}: {} holds checkpoints of networks made with --{flag} {was}. \
                 Leave {flag} out of the flags and the --config file to resume it, or start over with --fresh \
                 (discards that run) or another --name",
                run_dir.display()
            );
        }
    }
    Ok(())
}

/// A resumed conditional run's classes must be the ones its networks learnt, in the same
/// order; a class whose number of pictures changed is only worth a warning.
fn same_classes(saved: &[Class], now: &[Class], run_dir: &Path) -> anyhow::Result<()> {
    let names = |c: &[Class]| c.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    if names(saved) != names(now) {
        let list = |c: &[Class]| match c.len() {
            0 => "no classes".to_string(),
            _ => names(c).join(", "),
        };
        anyhow::bail!(
            "the data's classes ({}) are not those {} was trained on ({}): its networks have one embedding per \
             class, in that order. Restore the data's subfolders, or start over with --fresh or another --name",
            list(now),
            run_dir.display(),
            list(saved)
        );
    }
    let changed: Vec<String> = saved
        .iter()
        .zip(now)
        .filter(|(a, b)| a.images != b.images)
        .map(|(a, b)| format!("{} {} → {}", a.name, a.images, b.images))
        .collect();
    if !changed.is_empty() {
        eprintln!("warning: pictures per class changed since the last checkpoint: {}", changed.join(", "));
    }
    Ok(())
}

/// `--fresh`: removes the run's folder, which must resolve to a folder directly inside the
/// runs folder (a link elsewhere is refused, never followed) and look like a run: empty, or
/// holding what canard-train writes there (`--runs-dir ~ --name Documents` deletes nothing).
fn discard_run(runs_dir: &Path, run_dir: &Path) -> anyhow::Result<()> {
    let Ok(meta) = std::fs::symlink_metadata(run_dir) else { return Ok(()) };
    let root = runs_dir.canonicalize().with_context(|| format!("cannot resolve {}", runs_dir.display()))?;
    let inside = run_dir.canonicalize().ok().and_then(|p| p.parent().map(|d| d == root)).unwrap_or(false);
    let empty = std::fs::read_dir(run_dir).is_ok_and(|mut d| d.next().is_none());
    let a_run = ["config.toml", checkpoint::DIR, "samples"].iter().any(|f| run_dir.join(f).exists());
    if !meta.is_dir() || !inside || !(empty || a_run) {
        anyhow::bail!(
            "--fresh: {} is not a canard run folder inside {}; refusing to delete it",
            run_dir.display(),
            runs_dir.display()
        );
    }
    std::fs::remove_dir_all(run_dir).with_context(|| format!("cannot remove {}", run_dir.display()))
}

/// What a run is settled to before its first step: its settings, device, data and length.
struct Setup {
    cfg: TrainConfig,
    device: Device,
    data: Dataset,
    run_dir: PathBuf,
    samples_dir: PathBuf,
    /// Pictures a batch: `--batch-size`, or the folder's size when that is smaller.
    batch: usize,
    per_epoch: usize,
    length: Length,
    augment: bool,
    /// The transforms once colour augmentation stops (`--color-until`), when it does.
    late: Option<DiffAugment>,
    /// The settings as `config.toml` records them, written once a checkpoint has loaded.
    config_toml: String,
    /// The data's classes with their pictures, in index order (empty without `--classes`).
    classes: Vec<Class>,
    /// The networks' shape.
    shape: Shape,
    /// `--init-from`'s weights, read and checked, when the run has no checkpoint to resume.
    start_from: Option<StartFrom>,
}

impl Setup {
    /// Checks the settings against the device and the data, reads the data, then (for
    /// `--fresh`, and only then) deletes the run's old folder.
    fn new(settings: &Settings, start: Start) -> anyhow::Result<Self> {
        let mut cfg = settings.resolve()?;
        let device = device::select(cfg.device)?;
        eprintln!("canard-train: {} on {}", cfg.arch.name(), device::describe(&device));
        let run_dir = cfg.runs_dir.join(&cfg.name);
        let samples_dir = run_dir.join("samples");

        // A run killed mid-write leaves temporaries behind (never half-written files).
        let dirs = [
            run_dir.clone(),
            run_dir.join(checkpoint::DIR),
            samples_dir.clone(),
            cfg.runs_dir.join(".cache"),
            cfg.models_dir.join(&cfg.name),
        ];
        let stale: usize = dirs.iter().map(|d| atomic::remove_stale_temporaries(d)).sum();
        if stale > 0 {
            eprintln!("canard-train: removed {stale} unfinished temporary file(s) left by an interrupted run");
        }

        let t0 = Instant::now();
        let cache = cfg.runs_dir.join(".cache");
        let by_class = cfg.classes == ClassSource::Subfolders;
        let (data, skipped) = Dataset::open(&cfg.data, cfg.image_size, cfg.channels, cfg.seed, Some(&cache), by_class)?;
        if let Some(w) = skipped.warning() {
            eprintln!("{w}");
        }
        if cfg.channels.is_none() {
            // Some of fastgan's defaults differ on grey pictures: settle them now the data says which.
            cfg = Settings { channels: Some(data.channels), ..settings.clone() }.resolve()?;
        }
        // fastgan's recipe always augments.
        let augment = *cfg.augment.get_or_insert(cfg.arch.get().always_augments() || data.len < AUGMENT_BELOW);
        if !augment {
            let why = format!("augmentation is off for {} pictures (--augment turns it on)", data.len);
            cfg.refuse_unused_augmentation(&why)?;
        }
        let batch = cfg.batch_size.min(data.len);
        // Colour augmentation hides colour from the critic: it keeps a small folder's shapes
        // crisp early on, then stops (--color-until) so the rest of the run fits the colours.
        let late = cfg.augment_policy.colour_stopped().filter(|_| augment && cfg.color_until < 1.0);
        eprintln!(
            "canard-train: {} images from {} ({}×{}, {} channel{}) in {:.1}s; DiffAugment {}",
            data.len,
            data.source,
            data.size,
            data.size,
            data.channels,
            if data.channels == 1 { "" } else { "s" },
            t0.elapsed().as_secs_f64(),
            match (augment, late) {
                (false, _) => "off".into(),
                (true, None) => format!("on ({})", cfg.augment_policy),
                (true, Some(_)) => format!("on ({}; color until {} of the run)", cfg.augment_policy, cfg.color_until),
            },
        );
        if batch < cfg.batch_size {
            eprintln!("canard-train: only {} images: batch size reduced from {} to {batch}", data.len, cfg.batch_size);
        }
        let classes = data.class_list();
        let mut config_toml = cfg.to_toml()?;
        if !classes.is_empty() {
            let list = classes.iter().map(|c| format!("{:?} ({})", c.name, c.images)).collect::<Vec<_>>().join(", ");
            eprintln!("canard-train: {} classes: {list}", classes.len());
            config_toml.push_str(&format!("# The {} classes, in index order (pictures): {list}\n", classes.len()));
            let few: Vec<&str> = classes.iter().filter(|c| c.images < batch).map(|c| c.name.as_str()).collect();
            if !few.is_empty() {
                eprintln!(
                    "warning: --classes: fewer pictures than a batch ({batch}) in {}: the model sees each of them \
                     often and may learn them by heart",
                    few.join(", ")
                );
            }
        }
        let per_epoch = Cursor::new(data.len, batch, cfg.seed, 0, 0).per_epoch();
        let length = Length::of(&cfg, per_epoch, batch)?;
        let shape = cfg.shape(data.channels, data.classes.names.len());
        cfg.check_size(&shape)?;
        // Read only by a run that starts: a resumed one goes on from its own checkpoints.
        let start_from = match &cfg.init_from {
            Some(path) if start == Start::Fresh || checkpoint::list(&run_dir).is_empty() => {
                Some(StartFrom::open(path, &cfg, shape, &device)?)
            }
            _ => None,
        };
        if start == Start::Fresh {
            discard_run(&cfg.runs_dir, &run_dir)?;
        }
        std::fs::create_dir_all(&samples_dir).with_context(|| format!("cannot create {}", samples_dir.display()))?;
        Ok(Setup {
            cfg,
            device,
            data,
            run_dir,
            samples_dir,
            batch,
            per_epoch,
            length,
            augment,
            late,
            config_toml,
            classes,
            shape,
            start_from,
        })
    }
}

/// The networks, their optimisers and everything else a checkpoint holds.
struct Training {
    gan: Gan,
    opt_g: Optimizer,
    opt_d: Optimizer,
    ema: Option<Ema>,
    guard: Guard,
    ada: Option<Ada>,
    rng: ChaCha8Rng,
    cursor: Cursor,
    st: State,
    losses: Vec<LossRecord>,
}

impl Training {
    /// New networks from the seed, then the newest checkpoint's weights, optimiser moments,
    /// counters and random state when there is one; `config.toml` is written only after it
    /// has loaded, so a resume refused on the way leaves the run's settings as they were.
    fn resume(setup: &Setup, start: Start) -> anyhow::Result<Self> {
        let Setup { cfg, device, data, run_dir, batch, shape, .. } = setup;
        let shape = *shape;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let gan = Gan::new(cfg.arch, shape, &mut rng, device, DType::F32)?;
        let rule = cfg.arch.get().rule(cfg);
        let mut opt_g = Optimizer::new(gan.g_params.trainable(), rule, cfg.lr_g)?;
        let mut opt_d = Optimizer::new(gan.d_params.trainable(), rule, cfg.lr_d)?;
        let frozen: Vec<String> = cfg.arch.get().critic_blocks(&shape).into_iter().take(cfg.freeze_d).collect();
        let trainable = gan.d_params.iter().filter(|p| p.trainable);
        opt_d.freeze(trainable.map(|p| frozen.iter().any(|b| p.name.starts_with(b))).collect());
        cfg.arch.get().constrain_critic(&gan, cfg)?;
        let mut ema = (cfg.ema_half_life > 0.0)
            .then(|| Ema::new(cfg.arch, shape, &gan.g_params, cfg.ema_half_life, cfg.ema_rampup, device))
            .transpose()?;
        let mut guard = Guard::new(cfg.arch, cfg.guard_patience, cfg.lr_g, cfg.lr_d);
        let mut ada = cfg.ada_target.map(Ada::new);

        let mut st = State { classes: setup.classes.clone(), ..checkpoint::new_state() };
        let mut losses: Vec<LossRecord> = Vec::new();
        let mut cursor = Cursor::new(data.len, *batch, cfg.seed, 0, 0);
        let newest = checkpoint::latest(run_dir, device);
        if start == Start::Resume && newest.is_none() {
            anyhow::bail!("--resume: no checkpoint of {} reads back (see the warnings above)", run_dir.display());
        }
        if let Some((dir, saved, tensors)) = newest {
            same_classes(&saved.classes, &setup.classes, run_dir)?;
            gan.g_params.load(&tensors, "g.")?;
            gan.d_params.load(&tensors, "d.")?;
            opt_g.load_state(&tensors, "opt_g.", saved.opt_g_t)?;
            opt_d.load_state(&tensors, "opt_d.", saved.opt_d_t)?;
            if let Some(e) = ema.as_mut() {
                if tensors.keys().any(|k| k.starts_with("ema.")) {
                    e.params.load(&tensors, "ema.")?;
                    e.updates = saved.ema_updates;
                } else {
                    e.params.copy_from(&gan.g_params)?;
                }
            }
            rng = saved.rng.restore()?;
            guard.streak = saved.guard_streak;
            if let (Some(a), Some(s)) = (ada.as_mut(), &saved.ada) {
                *a = Ada { target: a.target, ..s.clone() };
            }
            losses = report::read_losses_csv(&run_dir.join("losses.csv")).unwrap_or_default();
            losses.retain(|r| r.step <= saved.step);
            eprintln!(
                "canard-train: resuming {} at step {} (epoch {})",
                dir.display(),
                saved.step,
                saved.epochs_done + 1
            );
            cursor = Cursor::new(data.len, *batch, cfg.seed, saved.cursor_epoch, saved.cursor_pos);
            st = State { classes: setup.classes.clone(), ..saved };
        } else {
            // No checkpoint read back (even if some were there): `--init-from` applies as to a new run.
            let opened = match (&setup.start_from, &cfg.init_from) {
                (None, Some(path)) => Some(StartFrom::open(path, cfg, shape, device)?),
                _ => None,
            };
            if let Some(from) = setup.start_from.as_ref().or(opened.as_ref()) {
                from.apply(&gan, ema.as_mut())?;
                cfg.arch.get().constrain_critic(&gan, cfg)?;
                st.started_from = Some(from.record.clone());
                eprintln!("canard-train: starting from {}", from.record.file);
            }
            // Spread over the whole dataset: folders are read in path order, often one class per folder.
            let shown = data.len.min(64);
            let spread: Vec<usize> = (0..shown).map(|i| i * data.len / shown).collect();
            report::save_grid(&data.batch(&spread, None, device)?, &run_dir.join("real_samples.png"))?;
        }
        atomic::write_atomic(&run_dir.join("config.toml"), setup.config_toml.as_bytes())?;
        Ok(Training { gan, opt_g, opt_d, ema, guard, ada, rng, cursor, st, losses })
    }

    /// Steps until the run's length is reached: losses read back and checked by the guard,
    /// previews and checkpoints at their cadence, and both at the end.
    fn run(&mut self, setup: &Setup) -> anyhow::Result<()> {
        let Setup { cfg, device, data, run_dir, samples_dir, batch, per_epoch, length, augment, late, .. } = setup;
        let (length, batch) = (*length, *batch);
        let labels = cfg.arch.get().labels();
        let mut progress = Progress::new(length, (self.st.step, self.st.seconds), batch, cfg.log_every, labels);
        let default = if cfg.steps.is_none() && cfg.epochs.is_none() && cfg.minutes.is_none() {
            " (the default; --steps, --epochs or --minutes to change)"
        } else {
            ""
        };
        progress.message(&format!(
            "canard-train: {}{default}; {per_epoch} batches of {batch} an epoch; writing {}",
            length.describe(batch),
            run_dir.display()
        ));

        let mut colour_stopped = late.is_none();
        let mut ctx = StepCtx::new(cfg, &self.gan, data, device, augment.then_some(&cfg.augment_policy))?;
        let preview_seeds: Vec<u64> = PREVIEW_SEEDS.collect();
        let preview_classes = report::preview_classes(self.gan.shape.classes);
        let started = Instant::now();
        let seconds_before = self.st.seconds;
        let seconds = || seconds_before + started.elapsed().as_secs_f64();
        let mut previews = Cadence::new(length.steps, length.seconds, self.st.step, self.st.seconds);
        let mut gif = ProgressGif::from_previews(samples_dir)?;
        let mut last_saved = self.st.step;
        // Losses are read back (which waits for a GPU) every `log_every` steps and before
        // anything writes the records or the weights, so a checkpoint never holds weights past
        // a divergence the guard has not seen.
        let read_every = cfg.log_every.max(1);
        let mut pending: Vec<(StepLosses, f64)> = Vec::new();
        let mut finished = length.done(self.st.step, self.st.seconds);
        while !finished {
            if !colour_stopped && length.fraction(self.st.step, seconds()) >= cfg.color_until {
                colour_stopped = true;
                ctx.augment = late.as_ref();
                progress.message(&format!(
                    "canard-train: colour augmentation off from step {} ({} of the run; --color-until)",
                    self.st.step + 1,
                    cfg.color_until
                ));
            }
            let steps = Steps {
                opt_g: &mut self.opt_g,
                opt_d: &mut self.opt_d,
                cursor: &mut self.cursor,
                rng: &mut self.rng,
                ada: self.ada.as_mut(),
            };
            let (step_losses, images) = cfg.arch.get().step(&ctx, steps, self.st.step + 1)?;
            pending.push((step_losses, seconds()));
            self.st.step += 1;
            self.st.images_seen += images as u64;
            self.st.epochs_done = self.cursor.completed();
            if let Some(e) = self.ema.as_mut() {
                // Every generator update makes a batch (WGAN's critic images do not count).
                e.update(&self.gan.g_params, (self.st.step * batch) as f64, batch)?;
            }

            let now = seconds();
            finished = length.done(self.st.step, now);
            let preview_due = finished || previews.due(self.st.step, now);
            let checkpoint_due = finished || self.st.step - last_saved >= cfg.checkpoint_every;
            if pending.len() >= read_every || preview_due || checkpoint_due {
                let (steps, times): (Vec<StepLosses>, Vec<f64>) = pending.drain(..).unzip();
                for (mut rec, at) in StepLosses::read(&steps)?.into_iter().zip(times) {
                    rec.seconds = at;
                    self.losses.push(rec);
                    if let Err(divergence) = self.guard.check(&rec) {
                        report::write_losses_csv(&self.losses, &run_dir.join("losses.csv"))?;
                        progress.finish();
                        let advice = match checkpoint::list(run_dir).last() {
                            Some(_) => format!(
                                "The last good checkpoint (step {last_saved}) is kept; re-run the same command, \
                                 with new settings, to resume from it."
                            ),
                            None => format!(
                                "No checkpoint was saved before it (the first comes at step {}); re-run with new \
                                 settings to start over.",
                                cfg.checkpoint_every
                            ),
                        };
                        return Err(anyhow::anyhow!("{divergence} {advice}"));
                    }
                    progress.update(rec.epoch, &rec);
                }
            }
            if preview_due {
                let t = Instant::now();
                if let Some(e) = self.ema.as_ref() {
                    e.recalibrate(cfg.nz, cfg.seed)?;
                }
                let preview = self.ema.as_ref().map_or(&self.gan.g, |e| &e.g);
                let path = samples_dir.join(preview_name(self.st.step));
                let made = report::generate(preview, cfg.nz, &preview_seeds, &preview_classes, device)?;
                let grid = report::save_grid(&made, &path)?;
                report::plot::write_loss_plot(
                    &self.losses,
                    labels[2],
                    &format!("{} — {}", cfg.name, cfg.arch.name()),
                    &run_dir.join("losses.png"),
                )?;
                gif.push(grid.to_rgb8())?;
                atomic::write_atomic(&run_dir.join("progress.gif"), &gif.bytes()?)?;
                previews.wrote(self.st.step, now, t.elapsed().as_secs_f64());
            }
            if checkpoint_due {
                // The loss history first: a resume keeps the rows up to its checkpoint's step,
                // so the file must always reach at least that far.
                report::write_losses_csv(&self.losses, &run_dir.join("losses.csv"))?;
                self.st.seconds = seconds();
                self.save(run_dir, cfg.keep_checkpoints)?;
                last_saved = self.st.step;
            }
        }
        progress.finish();
        if let Some(a) = self.ada.as_ref() {
            eprintln!("canard-train: ADA's augmentation probability ended at {:.3}", a.p);
        }
        Ok(())
    }

    /// A checkpoint of everything a resume reads back: weights, optimiser moments, the
    /// average, the data cursor, the random state and the counters.
    fn save(&self, run_dir: &Path, keep: usize) -> anyhow::Result<()> {
        let mut tensors = self.gan.g_params.tensors("g.");
        tensors.extend(self.gan.d_params.tensors("d."));
        tensors.extend(self.opt_g.state("opt_g."));
        tensors.extend(self.opt_d.state("opt_d."));
        let mut st = State {
            cursor_epoch: self.cursor.epoch,
            cursor_pos: self.cursor.pos,
            rng: RngState::of(&self.rng),
            opt_g_t: self.opt_g.t,
            opt_d_t: self.opt_d.t,
            guard_streak: self.guard.streak,
            ada: self.ada.clone(),
            ..self.st.clone()
        };
        if let Some(e) = &self.ema {
            tensors.extend(e.params.tensors("ema."));
            st.ema_updates = e.updates;
        }
        checkpoint::save(run_dir, &tensors, &st, keep)?;
        Ok(())
    }
}

/// Measures the SWD of the generator and exports it: the average (EMA) when there is one,
/// smoother, and what the previews showed.
fn finish(setup: Setup, training: Training) -> anyhow::Result<TrainOutcome> {
    let Setup { cfg, device, data, run_dir, batch, .. } = setup;
    let Training { gan, ema, st, .. } = training;
    let shape = gan.shape;
    // The average's BatchNorm statistics are measured here, not left to the last preview: a
    // finished run resumed only to export has no preview (recalibrating is deterministic, so
    // twice at one step gives the same bits).
    let (g_out, g_params) = match ema {
        Some(e) => {
            e.recalibrate(cfg.nz, cfg.seed)?;
            (e.g, e.params)
        }
        None => (gan.g, gan.g_params),
    };
    let quality = measure_swd(&cfg, &g_out, &data, &device)?;
    let summary = TrainingSummary {
        dataset: data.source.clone(),
        dataset_images: data.len,
        epochs: st.epochs_done,
        steps: st.step,
        batch_size: batch,
        images_seen: st.images_seen,
        seconds: st.seconds,
        seed: cfg.seed,
        exported_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        ema: cfg.ema_half_life > 0.0,
        quality,
        started_from: st.started_from.clone(),
    };
    let (model_dir, _) =
        export::export(&g_out, &shape, &st.classes, &cfg.models_dir, &cfg.name, &cfg.arch.name(), summary.clone())?;
    eprintln!("canard-train: {} steps in {:.1}s; exported {}", st.step, st.seconds, model_dir.display());
    Ok(TrainOutcome { model_dir, run_dir, config: cfg, generator: g_out, generator_params: g_params, shape, summary })
}

/// ProGAN's SWD between `eval_images` generated images and the data (0 skips it).
fn measure_swd(cfg: &TrainConfig, g: &Net, data: &Dataset, device: &Device) -> anyhow::Result<Option<Quality>> {
    if cfg.eval_images == 0 {
        return Ok(None);
    }
    eprintln!("canard-train: measuring SWD on {} generated images…", cfg.eval_images);
    // A conditional generator's pictures in the data's proportions of classes: the class of
    // the data's picture that each seed picks.
    let labels = &data.classes.labels;
    let report = crate::tools::eval::evaluate_with(
        |seeds| {
            let of_seeds: Vec<u32> = match labels.is_empty() {
                true => Vec::new(),
                false => seeds.iter().map(|&s| labels[canard_shared::latent::class_of_seed(s, labels.len())]).collect(),
            };
            Ok(report::generate(g, cfg.nz, seeds, &of_seeds, device)?.flatten_all()?.to_vec1::<f32>()?)
        },
        data,
        cfg.eval_images,
        cfg.seed,
    )?;
    let levels: Vec<String> = report.levels.iter().map(|(r, v)| format!("{r}px {v:.2}")).collect();
    eprintln!("canard-train: SWD ×10³ {:.2} (per level: {})", report.mean, levels.join(", "));
    Ok(Some(Quality { swd: report.mean, swd_levels: report.levels, images: cfg.eval_images }))
}
