//! `--init-from`: a new run's first weights taken from another run's checkpoint or an
//! exported model instead of the seed (fine-tuning, on any data). Generator, critic and
//! average are taken where the source has them; optimisers, counters, length and
//! augmentation start fresh, as in any new run.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context};
use canard_shared::manifest::{sha256_hex, StartedFrom};
use candle_core::{Device, Tensor};

use crate::checkpoint;
use crate::config::{Arch, Settings, TrainConfig, MAX_PARAMETERS, NETWORK_SETTINGS};
use crate::ema::Ema;
use crate::nn::Shape;
use crate::trainer::Gan;

/// The weights a run starts from, read and checked against the run's networks.
pub struct StartFrom {
    /// The file read and its SHA-256, for the manifest.
    pub record: StartedFrom,
    /// By a checkpoint's names: `g.`, and `d.` and `ema.` where the source has them.
    tensors: HashMap<String, Tensor>,
}

impl StartFrom {
    /// Reads `path`: a run's folder (its newest checkpoint that reads back), one of its
    /// checkpoints (`checkpoints/step_N`), or a model's folder (its generator, with the
    /// manifest's SHA-256 checked). Refused, naming each difference, unless its networks
    /// are this run's (`cfg.arch`, `shape`; for a model, its generator's family and shape),
    /// or `--freeze-d` would keep a critic it does not hold.
    pub fn open(path: &Path, cfg: &TrainConfig, shape: Shape, device: &Device) -> anyhow::Result<Self> {
        let (what, arch) = (format!("--init-from {}", path.display()), cfg.arch);
        if path.join("model.json").is_file() {
            if cfg.freeze_d > 0 {
                bail!("--freeze-d {}: {} is a model, which holds no critic", cfg.freeze_d, path.display());
            }
            let (manifest, g) = crate::export::reader::load_generator(path, device).with_context(|| what.clone())?;
            // A model holds no critic: only the generator's family (dcgan's serves wgan and
            // wgan-gp too) and shape must match.
            let same_family = (g.arch == Arch::Fastgan) == (arch == Arch::Fastgan);
            let theirs = (if same_family { arch } else { g.arch }, Shape { ndf: shape.ndf, ..g.shape });
            same(&what, theirs, (arch, shape))?;
            let mut tensors = g.params.tensors("g.");
            tensors.extend(g.params.tensors("ema."));
            let file = path.join(&manifest.onnx.file).display().to_string();
            return Ok(Self { record: StartedFrom { file, sha256: manifest.onnx.sha256.clone() }, tensors });
        }
        let (run_dir, dirs) = if path.join(checkpoint::DIR).is_dir() {
            (path.to_path_buf(), checkpoint::list(path).into_iter().rev().collect())
        } else if path.join(checkpoint::TENSORS).is_file() {
            let run_dir = path.parent().and_then(Path::parent).context(what.clone())?;
            (run_dir.to_path_buf(), vec![path.to_path_buf()])
        } else {
            bail!(
                "{what}: not a canard run (runs/NAME), one of its checkpoints (runs/NAME/checkpoints/step_N) or a \
                 model (models/NAME)"
            );
        };
        let source = Settings::from_saved_run(&run_dir.join("config.toml"))
            .and_then(|s| s.resolve())
            .with_context(|| format!("{what}: its run's config.toml"))?;
        let mut errors = Vec::new();
        let (dir, state, tensors) = dirs
            .iter()
            .find_map(|dir| match checkpoint::read(dir, device) {
                Ok((state, tensors)) => Some((dir, state, tensors)),
                Err(e) => {
                    errors.push(format!("{}: {e:#}", dir.display()));
                    None
                }
            })
            .with_context(|| format!("{what}: no checkpoint reads back ({})", errors.join("; ")))?;
        // A run that left its channels to the data recorded none: its generator's size says which.
        let held: usize = tensors.iter().filter(|(k, _)| k.starts_with("g.")).map(|(_, t)| t.elem_count()).sum();
        let (image_size, nz, ngf, ndf) = (source.image_size, source.nz, source.ngf, source.ndf);
        let classes = state.classes.len();
        let of = |channels| Shape { image_size, channels, nz, ngf, ndf, classes };
        let channels = source.channels.or_else(|| {
            [1, 3].into_iter().find(|&c| source.arch.generator_parameters(of(c), MAX_PARAMETERS) == Some(held))
        });
        let channels =
            channels.with_context(|| format!("{what}: its generator is not the one its config.toml makes"))?;
        same(&what, (source.arch, of(channels)), (arch, shape))?;
        let file = dir.join(checkpoint::TENSORS);
        let bytes = std::fs::read(&file).with_context(|| format!("{what}: cannot read {}", file.display()))?;
        Ok(Self { record: StartedFrom { file: file.display().to_string(), sha256: sha256_hex(&bytes) }, tensors })
    }

    /// Puts the weights into the new networks (and the average: the source's, else the
    /// generator's).
    pub fn apply(&self, gan: &Gan, ema: Option<&mut Ema>) -> candle_core::Result<()> {
        let has = |prefix: &str| self.tensors.keys().any(|k| k.starts_with(prefix));
        gan.g_params.load(&self.tensors, "g.")?;
        if has("d.") {
            gan.d_params.load(&self.tensors, "d.")?;
        }
        match ema {
            Some(e) if has("ema.") => e.params.load(&self.tensors, "ema."),
            Some(e) => e.params.copy_from(&gan.g_params),
            None => Ok(()),
        }
    }
}

/// Refuses networks that differ, naming each setting that makes them differ.
fn same(what: &str, (a, s): (Arch, Shape), (b, t): (Arch, Shape)) -> anyhow::Result<()> {
    let classes = |k: usize| if k == 0 { "none".to_string() } else { format!("subfolders ({k} classes)") };
    let values = |a: Arch, s: Shape| {
        let n = |v: usize| v.to_string();
        [a.name(), n(s.image_size), n(s.nz), n(s.ngf), n(s.ndf), n(s.channels), classes(s.classes)]
    };
    let differences: Vec<String> = NETWORK_SETTINGS
        .into_iter()
        .zip(values(a, s))
        .zip(values(b, t))
        .filter(|((_, there), here)| there != here)
        .map(|((flag, there), here)| format!("--{flag} {there} there, {here} here"))
        .collect();
    match differences.is_empty() {
        true => Ok(()),
        false => bail!("{what}: its networks are not this run's: {}", differences.join("; ")),
    }
}
