//! Training settings: one struct is both the command line and the TOML file (`--config`),
//! with the same names (`--lr-g 1e-4` ⇔ `lr-g = 1e-4`). Sources are layered — a resumed
//! run's saved `config.toml`, then `--config`, then flags — and resolved against the
//! chosen architecture's published defaults into a [`TrainConfig`], which is saved as
//! `runs/NAME/config.toml` and can itself be read back as a config file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::device::DeviceChoice;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// Radford et al. 2016: BCE loss, Adam 2e-4 β1 0.5, BatchNorm in both networks.
    Dcgan,
    /// Arjovsky et al. 2017: critic clipped to ±0.01, RMSprop 5e-5, 5 critic steps.
    Wgan,
    /// Gulrajani et al. 2017: gradient penalty λ 10, Adam 1e-4 β (0, 0.9), LayerNorm critic.
    WganGp,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Dcgan => "dcgan",
            Arch::Wgan => "wgan",
            Arch::WganGp => "wgan-gp",
        }
    }
}

/// Every setting, each optional: what a user wrote on the command line or in a file.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Settings {
    /// A folder of pictures (searched recursively), or builtin:shapes
    #[arg(long)]
    pub data: Option<String>,
    /// Run and model name: writes runs/NAME/ and models/NAME/
    #[arg(long)]
    pub name: Option<String>,
    /// dcgan, wgan (weight clipping) or wgan-gp (gradient penalty) [default: dcgan]
    #[arg(long, value_enum)]
    pub arch: Option<Arch>,
    /// Output image side in pixels, a power of two (32, 64, 128, 256) [default: 64]
    #[arg(long)]
    pub image_size: Option<usize>,
    /// 1 (grey) or 3 (RGB) [default: grey only when every picture is grey]
    #[arg(long)]
    pub channels: Option<usize>,
    /// Passes over the data [default: 25]
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Generator updates, instead of --epochs
    #[arg(long)]
    pub steps: Option<usize>,
    /// [default: 64]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seeds weights, noise, augmentation and data order [default: 0]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Latent vector length [default: 100]
    #[arg(long)]
    pub nz: Option<usize>,
    /// Generator width [default: 64]
    #[arg(long)]
    pub ngf: Option<usize>,
    /// Discriminator/critic width [default: 64]
    #[arg(long)]
    pub ndf: Option<usize>,
    /// Generator learning rate [default: dcgan 2e-4, wgan 5e-5, wgan-gp 1e-4]
    #[arg(long)]
    pub lr_g: Option<f64>,
    /// Discriminator/critic learning rate [default: as --lr-g]
    #[arg(long)]
    pub lr_d: Option<f64>,
    /// Adam β1 [default: dcgan 0.5, wgan-gp 0]
    #[arg(long)]
    pub beta1: Option<f64>,
    /// Adam β2 [default: dcgan 0.999, wgan-gp 0.9]
    #[arg(long)]
    pub beta2: Option<f64>,
    /// RMSprop smoothing constant (wgan) [default: 0.99]
    #[arg(long)]
    pub rms_alpha: Option<f64>,
    /// Critic updates per generator update [default: dcgan 1, wgan and wgan-gp 5]
    #[arg(long)]
    pub critic_steps: Option<usize>,
    /// wgan: critic steps for the first 25 and every 500th generator update [default: 100]
    #[arg(long)]
    pub critic_steps_burst: Option<usize>,
    /// wgan: clamp critic weights to ±CLAMP [default: 0.01]
    #[arg(long)]
    pub clamp: Option<f64>,
    /// wgan-gp: gradient penalty weight λ [default: 10]
    #[arg(long)]
    pub gp_lambda: Option<f64>,
    /// Decay of the generator's exponential moving average, exported by default; 0 turns it off [default: 0.999]
    #[arg(long)]
    pub ema_decay: Option<f64>,
    /// DiffAugment (colour, translation, cutout) on real and fake images [default: on under 2,000 images]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub augment: Option<bool>,
    /// Mirror real images horizontally at random [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub mirror: Option<bool>,
    /// Save a checkpoint every N generator updates, besides every epoch's end [default: 200]
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Checkpoints kept [default: 3]
    #[arg(long)]
    pub keep_checkpoints: Option<usize>,
    /// Steps the discriminator may win outright before training stops [default: 300]
    #[arg(long)]
    pub guard_patience: Option<usize>,
    /// Generated images compared with the data for the SWD at export; 0 skips it [default: 2048]
    #[arg(long)]
    pub eval_images: Option<usize>,
    /// auto (the GPU when built with CUDA and one is present), cuda or cpu [default: auto]
    #[arg(long, value_enum)]
    pub device: Option<DeviceChoice>,
    /// Where runs/NAME/ goes [default: runs]
    #[arg(long)]
    pub runs_dir: Option<PathBuf>,
    /// Where models/NAME/ goes [default: models]
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    /// A plain progress line every N steps when stderr is not a terminal [default: 10]
    #[arg(long)]
    pub log_every: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    #[error("{0}")]
    Invalid(String),
}

impl Settings {
    pub fn from_toml_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })
    }

    /// `self` with every setting that `over` gives replaced by `over`'s.
    pub fn overlay(self, over: &Settings) -> Settings {
        // Through JSON, where an unset option is null: no per-field code to keep in step.
        let mut base = serde_json::to_value(self).expect("settings serialise");
        if let (Some(b), serde_json::Value::Object(o)) =
            (base.as_object_mut(), serde_json::to_value(over).expect("settings serialise"))
        {
            for (k, v) in o.into_iter().filter(|(_, v)| !v.is_null()) {
                b.insert(k, v);
            }
        }
        serde_json::from_value(base).expect("overlay of valid settings is valid")
    }

    /// Fills in the architecture's defaults and checks every value.
    pub fn resolve(&self) -> Result<TrainConfig, ConfigError> {
        let arch = self.arch.unwrap_or(Arch::Dcgan);
        let (lr, beta1, beta2, critic) = match arch {
            Arch::Dcgan => (2e-4, 0.5, 0.999, 1),
            Arch::Wgan => (5e-5, 0.5, 0.999, 5),
            Arch::WganGp => (1e-4, 0.0, 0.9, 5),
        };
        let lr_g = self.lr_g.unwrap_or(lr);
        let need = |v: &Option<String>, flag: &str| {
            v.clone().ok_or_else(|| {
                ConfigError::Invalid(format!("--{flag} is required (on the command line or in --config)"))
            })
        };
        let cfg = TrainConfig {
            data: need(&self.data, "data")?,
            name: need(&self.name, "name")?,
            arch,
            image_size: self.image_size.unwrap_or(64),
            channels: self.channels,
            epochs: self.epochs,
            steps: self.steps,
            batch_size: self.batch_size.unwrap_or(64),
            seed: self.seed.unwrap_or(0),
            nz: self.nz.unwrap_or(100),
            ngf: self.ngf.unwrap_or(64),
            ndf: self.ndf.unwrap_or(64),
            lr_g,
            lr_d: self.lr_d.unwrap_or(lr_g),
            beta1: self.beta1.unwrap_or(beta1),
            beta2: self.beta2.unwrap_or(beta2),
            rms_alpha: self.rms_alpha.unwrap_or(0.99),
            critic_steps: self.critic_steps.unwrap_or(critic),
            critic_steps_burst: self.critic_steps_burst.unwrap_or(100),
            clamp: self.clamp.unwrap_or(0.01),
            gp_lambda: self.gp_lambda.unwrap_or(10.0),
            ema_decay: self.ema_decay.unwrap_or(0.999),
            augment: self.augment,
            mirror: self.mirror.unwrap_or(false),
            checkpoint_every: self.checkpoint_every.unwrap_or(200),
            keep_checkpoints: self.keep_checkpoints.unwrap_or(3),
            guard_patience: self.guard_patience.unwrap_or(300),
            eval_images: self.eval_images.unwrap_or(2048),
            device: self.device.unwrap_or_default(),
            runs_dir: self.runs_dir.clone().unwrap_or_else(|| "runs".into()),
            models_dir: self.models_dir.clone().unwrap_or_else(|| "models".into()),
            log_every: self.log_every.unwrap_or(10),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Every setting decided: what a run uses, saved as `runs/NAME/config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TrainConfig {
    pub data: String,
    pub name: String,
    pub arch: Arch,
    pub image_size: usize,
    /// `None`: follow the data.
    pub channels: Option<usize>,
    pub epochs: Option<usize>,
    pub steps: Option<usize>,
    pub batch_size: usize,
    pub seed: u64,
    pub nz: usize,
    pub ngf: usize,
    pub ndf: usize,
    pub lr_g: f64,
    pub lr_d: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub rms_alpha: f64,
    pub critic_steps: usize,
    pub critic_steps_burst: usize,
    pub clamp: f64,
    pub gp_lambda: f64,
    pub ema_decay: f64,
    /// `None`: decided from the dataset's size when it is loaded.
    pub augment: Option<bool>,
    pub mirror: bool,
    pub checkpoint_every: usize,
    pub keep_checkpoints: usize,
    pub guard_patience: usize,
    pub eval_images: usize,
    pub device: DeviceChoice,
    pub runs_dir: PathBuf,
    pub models_dir: PathBuf,
    pub log_every: usize,
}

/// Below this many pictures DiffAugment is on unless told otherwise (Zhao et al. show it
/// matters most for a few hundred to a few thousand images).
pub const AUGMENT_BELOW: usize = 2000;
pub const DEFAULT_EPOCHS: usize = 25;

impl TrainConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !canard_shared::manifest::is_plain_name(&self.name) {
            return bad(format!(
                "--name {:?} must be letters, digits, '-', '_' or '.' (it becomes a folder name)",
                self.name
            ));
        }
        if self.epochs.is_some() && self.steps.is_some() {
            return bad("give --epochs or --steps, not both".into());
        }
        if self.epochs == Some(0) || self.steps == Some(0) {
            return bad("--epochs and --steps must be at least 1".into());
        }
        if self.batch_size == 0 || self.critic_steps == 0 || self.critic_steps_burst == 0 {
            return bad("--batch-size, --critic-steps and --critic-steps-burst must be at least 1".into());
        }
        for (flag, v) in
            [("lr-g", self.lr_g), ("lr-d", self.lr_d), ("clamp", self.clamp), ("gp-lambda", self.gp_lambda)]
        {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("--{flag} must be a positive number, not {v}"));
            }
        }
        for (flag, v) in
            [("beta1", self.beta1), ("beta2", self.beta2), ("rms-alpha", self.rms_alpha), ("ema-decay", self.ema_decay)]
        {
            if !(0.0..1.0).contains(&v) {
                return bad(format!("--{flag} must be in [0, 1), not {v}"));
            }
        }
        if self.keep_checkpoints == 0 {
            return bad("--keep-checkpoints must be at least 1".into());
        }
        let shape = crate::model::DcganShape {
            image_size: self.image_size,
            channels: self.channels.unwrap_or(3),
            nz: self.nz,
            ngf: self.ngf,
            ndf: self.ndf,
        };
        shape.validate().map_err(ConfigError::Invalid)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("config serialises to TOML")
    }

    /// The same settings, as a layer for [`Settings::overlay`] (a saved config read back).
    pub fn as_settings(&self) -> Settings {
        toml::from_str(&self.to_toml()).expect("a saved config reads back as settings")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        s: Settings,
    }

    fn flags(args: &[&str]) -> Settings {
        Cli::try_parse_from(std::iter::once("canard-train").chain(args.iter().copied())).unwrap().s
    }

    #[test]
    fn a_config_file_and_the_same_flags_resolve_identically() {
        let from_flags = flags(&[
            "--data",
            "builtin:shapes",
            "--name",
            "x",
            "--arch",
            "wgan-gp",
            "--image-size",
            "32",
            "--lr-g",
            "3e-4",
            "--critic-steps",
            "3",
            "--augment",
            "--ema-decay",
            "0.99",
            "--steps",
            "10",
        ]);
        let text = r#"
            data = "builtin:shapes"
            name = "x"
            arch = "wgan-gp"
            image-size = 32
            lr-g = 3e-4
            critic-steps = 3
            augment = true
            ema-decay = 0.99
            steps = 10
        "#;
        let from_file: Settings = toml::from_str(text).unwrap();
        assert_eq!(from_flags, from_file);
        let cfg = from_file.resolve().unwrap();
        assert_eq!((cfg.lr_g, cfg.lr_d, cfg.beta1, cfg.beta2, cfg.gp_lambda), (3e-4, 3e-4, 0.0, 0.9, 10.0));
        // The saved config reads back as the same config.
        assert_eq!(cfg.as_settings().resolve().unwrap(), cfg);
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_a_resumed_run() {
        let saved = flags(&["--data", "d", "--name", "n", "--lr-g", "1e-4", "--epochs", "5"]).resolve().unwrap();
        let file: Settings = toml::from_str("lr-g = 2e-4\nbatch-size = 32").unwrap();
        let cli = flags(&["--lr-g", "5e-5"]);
        let cfg = saved.as_settings().overlay(&file).overlay(&cli).resolve().unwrap();
        assert_eq!((cfg.lr_g, cfg.batch_size, cfg.epochs, cfg.data.as_str()), (5e-5, 32, Some(5), "d"));
    }

    #[test]
    fn each_architecture_gets_its_papers_defaults() {
        let base = flags(&["--data", "d", "--name", "n"]);
        let d = base.clone().resolve().unwrap();
        assert_eq!((d.arch, d.lr_g, d.beta1, d.critic_steps), (Arch::Dcgan, 2e-4, 0.5, 1));
        let w = Settings { arch: Some(Arch::Wgan), ..base.clone() }.resolve().unwrap();
        assert_eq!((w.lr_g, w.lr_d, w.clamp, w.critic_steps, w.critic_steps_burst), (5e-5, 5e-5, 0.01, 5, 100));
        let gp = Settings { arch: Some(Arch::WganGp), ..base }.resolve().unwrap();
        assert_eq!((gp.lr_g, gp.beta1, gp.beta2, gp.gp_lambda, gp.critic_steps), (1e-4, 0.0, 0.9, 10.0, 5));
    }

    #[test]
    fn bad_values_and_typos_are_clear_errors() {
        let err = toml::from_str::<Settings>("lr_g = 1").unwrap_err().to_string();
        assert!(err.contains("lr_g"), "{err}");
        for (args, needle) in [
            (vec!["--name", "n"], "--data"),
            (vec!["--data", "d", "--name", "../x"], "--name"),
            (vec!["--data", "d", "--name", "n", "--lr-g=-1"], "lr-g"),
            (vec!["--data", "d", "--name", "n", "--image-size", "48"], "power of two"),
            (vec!["--data", "d", "--name", "n", "--epochs", "2", "--steps", "3"], "not both"),
            (vec!["--data", "d", "--name", "n", "--beta2", "1"], "beta2"),
        ] {
            let err = flags(&args).resolve().unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
