//! Training settings: one struct is both the command line and the TOML file (`--config`),
//! with the same names (`--lr-g 1e-4` ⇔ `lr-g = 1e-4`). Sources are layered — a resumed
//! run's saved `config.toml`, then `--config`, then flags — and resolved against the
//! chosen architecture's published defaults into a [`TrainConfig`], which is saved as
//! `runs/NAME/config.toml` and can itself be read back as a config file.

use std::path::{Path, PathBuf};

use canard_shared::manifest::MAX_LATENT_DIM;
use serde::{Deserialize, Serialize};

pub use crate::arch::Arch;
use crate::augment::DiffAugment;
pub use crate::data::ClassSource;
use crate::device::DeviceChoice;
use crate::nn::Shape;

/// Declares every setting once: its help (the doc comment), its flag (`#[arg]`), its type
/// and its default, which may depend on the architecture and on grey pictures ([`Defaults`]).
/// From that one list come [`Settings`] (each setting optional: a command line, a `--config`
/// file, a saved run), [`TrainConfig`] (each decided: `runs/NAME/config.toml`) and
/// [`Settings::fill`]. A default is `required` (no default: the run needs it), `open` (stays
/// optional: decided later, or not at all) or `{ |d| value }`.
macro_rules! settings {
    ($( $(#[doc = $doc:literal])* #[arg($($arg:tt)*)] $field:ident : $ty:ident = $default:tt $(in $range:expr)?; )*) => {
        /// Every setting, each optional: what a user wrote on the command line or in a file.
        #[derive(clap::Args, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        pub struct Settings {
            $( $(#[doc = $doc])* #[arg($($arg)*)] pub $field: Option<$ty>, )*
        }

        /// Every setting decided: what a run uses, saved as `runs/NAME/config.toml`.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case", deny_unknown_fields)]
        pub struct TrainConfig {
            $( $(#[doc = $doc])* pub $field: setting_type!($default, $ty), )*
        }

        impl Settings {
            /// Each setting as given, or its default.
            fn fill(&self, d: &Defaults) -> Result<TrainConfig, ConfigError> {
                Ok(TrainConfig { $( $field: setting_value!($default, self.$field, d, stringify!($field)), )* })
            }
        }

        /// Each numeric setting's range, by its name in config.toml.
        pub const RANGES: &[(&str, Range)] = &[$( $( (stringify!($field), $range), )? )*];

        impl TrainConfig {
            /// Every setting with a range is in it (an unset optional one has nothing to check).
            fn check_ranges(&self) -> Result<(), ConfigError> {
                $( $( if let Some(v) = setting_given!($default, self.$field) {
                    $range.check(stringify!($field), v as f64, format!("{v:?}"))?;
                } )? )*
                Ok(())
            }
        }
    };
}

/// A setting's value in [`TrainConfig`] as an option: an `open` one may be unset.
macro_rules! setting_given {
    (open, $value:expr) => {
        $value
    };
    ($default:tt, $value:expr) => {
        Some($value)
    };
}

/// A setting's type in [`TrainConfig`]: an `open` one stays optional.
macro_rules! setting_type {
    (open, $ty:ident) => { Option<$ty> };
    ($default:tt, $ty:ident) => { $ty };
}

/// A setting's value in [`TrainConfig`]: as given, else by its kind of default.
macro_rules! setting_value {
    (required, $given:expr, $d:expr, $field:expr) => {
        $given.clone().ok_or_else(|| {
            let flag = $field.replace('_', "-");
            ConfigError::Invalid(format!("--{flag} is required (on the command line or in --config)"))
        })?
    };
    (open, $given:expr, $d:expr, $field:expr) => {
        $given.clone()
    };
    ({ $default:expr }, $given:expr, $d:expr, $field:expr) => {
        match &$given {
            Some(v) => v.clone(),
            None => default_of($d, $default),
        }
    };
}

/// What a default may depend on.
struct Defaults<'a> {
    arch: Arch,
    /// Every picture grey (`--channels 1`): some of fastgan's defaults differ.
    grey: bool,
    /// The settings given, for a default that follows another setting (`--lr-d` follows `--lr-g`).
    given: &'a Settings,
}

/// Calls a default (a closure typed here, so its argument's type is known).
fn default_of<T>(d: &Defaults, default: impl FnOnce(&Defaults) -> T) -> T {
    default(d)
}

/// The papers' learning rates: DCGAN's (and FastGAN's) 2e-4, WGAN's 5e-5, WGAN-GP's 1e-4.
fn default_lr(arch: Arch) -> f64 {
    match arch {
        Arch::Dcgan | Arch::Fastgan => 2e-4,
        Arch::Wgan => 5e-5,
        Arch::WganGp => 1e-4,
    }
}

settings! {
    /// A folder of pictures (searched recursively), or builtin:shapes
    #[arg(long)]
    data: String = required;
    /// Run and model name: writes runs/NAME/ and models/NAME/
    #[arg(long)]
    name: String = required;
    /// fastgan (small data), dcgan, wgan (weight clipping) or wgan-gp (gradient penalty) [default: fastgan]
    #[arg(long, value_enum)]
    arch: Arch = { |d| d.arch };
    /// Output image side in pixels, a power of two (32, 64, 128, 256) [default: 64]
    #[arg(long)]
    image_size: usize = { |_| 64 } in Range::from_to(8.0, 1024.0);
    /// 1 (grey) or 3 (RGB) [default: grey only when every picture is grey]
    #[arg(long)]
    channels: usize = open;
    /// subfolders: one model of several kinds of picture, each picture's class its first-level
    /// subfolder under --data (builtin:shapes: its five kinds), at most 1,000 classes;
    /// none: one kind [default: none]
    #[arg(long, value_enum)]
    classes: ClassSource = { |_| ClassSource::None };
    /// Passes over the data, instead of --steps; at most 99,999,999 steps in all [default: 128,000 generated images: 8,000 steps at fastgan's batch 16, 2,000 at 64]
    #[arg(long)]
    epochs: usize = open in Range::from_to(1.0, MAX_STEPS as f64);
    /// Generator updates, instead of --epochs; at most 99,999,999 [default: 128,000 generated images: 8,000 steps at fastgan's batch 16, 2,000 at 64]
    #[arg(long)]
    steps: usize = open in Range::from_to(1.0, MAX_STEPS as f64);
    /// Stop after this many minutes of training (counted across resumes), or at --steps/--epochs if sooner;
    /// at most 525,600 (a year)
    #[arg(long)]
    minutes: f64 = open in Range { low_open: true, ..Range::from_to(0.0, MAX_MINUTES) };
    // fastgan's: a narrow generator and small batches, so more updates in the same minutes,
    // and a critic twice the generator's width, which pays for its slower steps (the best
    // at equal minutes of the widths and batches tried; QUALITY.md). Grey pictures carry a
    // third of the values and no colour: there a critic as narrow as the generator, whose
    // 1.9 times the steps pay more, and no colour augmentation, measured better on digits.
    /// Pictures a batch, 1 to 4096 [default: 64; fastgan 16]
    #[arg(long)]
    batch_size: usize = { |d| if d.arch == Arch::Fastgan { 16 } else { 64 } } in Range::from_to(1.0, MAX_BATCH as f64);
    /// Seeds weights, noise, augmentation and data order, 0 to 2⁶³−1 [default: 0]
    #[arg(long)]
    seed: u64 = { |_| 0 };
    /// Latent vector length, 1 to 65536 [default: 100]
    #[arg(long)]
    nz: usize = { |_| 100 } in Range::from_to(1.0, MAX_LATENT_DIM as f64);
    /// Generator width; each network at most 134,217,728 parameters [default: 64; fastgan 16]
    #[arg(long)]
    ngf: usize = { |d| if d.arch == Arch::Fastgan { 16 } else { 64 } } in Range::at_least(1.0);
    /// Discriminator/critic width [default: 64; fastgan 32, or 16 on grey pictures]
    #[arg(long)]
    ndf: usize = { |d| match d.arch { Arch::Fastgan if d.grey => 16, Arch::Fastgan => 32, _ => 64 } } in Range::at_least(1.0);
    /// Generator learning rate [default: fastgan and dcgan 2e-4, wgan 5e-5, wgan-gp 1e-4]
    #[arg(long)]
    lr_g: f64 = { |d| default_lr(d.arch) } in Range::above(0.0);
    /// Discriminator/critic learning rate [default: as --lr-g]
    #[arg(long)]
    lr_d: f64 = { |d| d.given.lr_g.unwrap_or(default_lr(d.arch)) } in Range::above(0.0);
    /// Adam β1 [default: fastgan and dcgan 0.5, wgan-gp 0]
    #[arg(long)]
    beta1: f64 = { |d| if d.arch == Arch::WganGp { 0.0 } else { 0.5 } } in Range::below(0.0, 1.0);
    /// Adam β2 [default: fastgan and dcgan 0.999, wgan-gp 0.9]
    #[arg(long)]
    beta2: f64 = { |d| if d.arch == Arch::WganGp { 0.9 } else { 0.999 } } in Range::below(0.0, 1.0);
    /// RMSprop smoothing constant (wgan) [default: 0.99]
    #[arg(long)]
    rms_alpha: f64 = { |_| RMS_ALPHA } in Range::below(0.0, 1.0);
    /// Critic updates per generator update [default: fastgan and dcgan 1, wgan and wgan-gp 5]
    #[arg(long)]
    critic_steps: usize = { |d| if matches!(d.arch, Arch::Wgan | Arch::WganGp) { 5 } else { 1 } }
        in Range::from_to(1.0, MAX_BATCH as f64);
    /// wgan: critic steps for the first 25 and every 500th generator update [default: 100]
    #[arg(long)]
    critic_steps_burst: usize = { |_| CRITIC_STEPS_BURST } in Range::from_to(1.0, MAX_BATCH as f64);
    /// wgan: clamp critic weights to ±CLAMP [default: 0.01]
    #[arg(long)]
    clamp: f64 = { |_| CLAMP } in Range::above(0.0);
    /// wgan-gp: gradient penalty weight λ [default: 10]
    #[arg(long)]
    gp_lambda: f64 = { |_| GP_LAMBDA } in Range::above(0.0);
    /// Half-life, in generated images, of the generator's moving average (exported and
    /// previewed); 0 turns it off [default: 10000]
    #[arg(long)]
    ema_half_life: f64 = { |_| 10_000.0 } in Range::at_least(0.0);
    /// The average's half-life is at most this fraction of the images generated so far,
    /// so a short run is not averaged with its first, bad generators; 0: no ramp [default: 0.05]
    #[arg(long)]
    ema_rampup: f64 = { |_| 0.05 } in Range::from_to(0.0, 1.0);
    /// DiffAugment (--augment-policy) on real and fake images [default: fastgan always, others under 2,000 images]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    augment: bool = open;
    /// Which DiffAugment transforms: color, translation and/or cutout, comma-separated
    /// [default: fastgan color,translation (FastGAN's), or translation on grey pictures; others
    /// color,translation,cutout]
    #[arg(long, value_parser = DiffAugment::parse)]
    augment_policy: DiffAugment = { |d| default_policy(d.arch, d.grey) };
    /// DiffAugment's colour transform stops when the run is this fraction through its length
    /// (steps or minutes, as they stand), so the critic sees true colours at the end
    /// [default: fastgan 0.5; others 1: to the end]
    #[arg(long)]
    color_until: f64 = { |d| default_color_until(d.arch) } in Range::from_to(0.0, 1.0);
    /// Mirror real images horizontally at random [default: false]
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    mirror: bool = { |_| false };
    /// fastgan: ADA's adaptive augmentation, each transform applied with a probability that
    /// keeps E[sign(D(real))] at this target (the paper's 0.6) [default: off: always applied]
    #[arg(long)]
    ada_target: f64 = open in Range::between(0.0, 1.0);
    /// fastgan: R1's weight γ, a penalty of γ/2·‖∇ₓD(x)‖² on the (augmented) real pictures
    /// (Mescheder et al. 2018), 0 to 1000 [default: 0: off]
    #[arg(long)]
    r1: f64 = { |_| 0.0 } in Range::from_to(0.0, MAX_R1);
    /// Save a checkpoint every N generator updates (at least 1), and at the end [default: 200]
    #[arg(long)]
    checkpoint_every: usize = { |_| 200 } in Range::at_least(1.0);
    /// Checkpoints kept [default: 3]
    #[arg(long)]
    keep_checkpoints: usize = { |_| 3 } in Range::at_least(1.0);
    /// Steps the discriminator may win outright before training stops [default: 300]
    #[arg(long)]
    guard_patience: usize = { |_| GUARD_PATIENCE };
    /// Generated images compared with the data for the SWD at export, at most 16384; 0 skips it [default: 2048]
    #[arg(long)]
    eval_images: usize = { |_| 2048 } in Range::from_to(0.0, crate::tools::eval::MAX_IMAGES as f64);
    /// auto (the GPU when built with CUDA and one is present), cuda or cpu [default: auto]
    #[arg(long, value_enum)]
    device: DeviceChoice = { |_| DeviceChoice::default() };
    /// Start from another run (runs/NAME: its newest checkpoint; or runs/NAME/checkpoints/step_N) or a
    /// model (models/NAME: its generator, the critic new) instead of random weights, on any data; their
    /// networks must be this run's [default: none]
    #[arg(long)]
    init_from: PathBuf = open;
    /// With --init-from a run: its critic's first N blocks keep their weights (FreezeD, Mo et al. 2020) [default: 0]
    #[arg(long)]
    freeze_d: usize = { |_| 0 };
    /// Where runs/NAME/ goes [default: runs]
    #[arg(long)]
    runs_dir: PathBuf = { |_| "runs".into() };
    /// Where models/NAME/ goes [default: models]
    #[arg(long)]
    models_dir: PathBuf = { |_| "models".into() };
    /// A plain progress line every N steps when stderr is not a terminal [default: 10]
    #[arg(long)]
    log_every: usize = { |_| 10 };
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

/// The values a numeric setting may take, declared beside its default: checked by
/// [`TrainConfig::validate`] and stated by the README's settings table (a test holds the two
/// equal). Each end is included or not; an infinite end is no bound (and never a value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Range {
    pub low: f64,
    pub high: f64,
    low_open: bool,
    high_open: bool,
}

impl Range {
    /// [low, high]
    const fn from_to(low: f64, high: f64) -> Self {
        Self { low, high, low_open: false, high_open: false }
    }
    /// [low, ∞)
    const fn at_least(low: f64) -> Self {
        Self { high: f64::INFINITY, high_open: true, ..Self::from_to(low, 0.0) }
    }
    /// (low, ∞)
    const fn above(low: f64) -> Self {
        Self { low_open: true, ..Self::at_least(low) }
    }
    /// [low, high)
    const fn below(low: f64, high: f64) -> Self {
        Self { high_open: true, ..Self::from_to(low, high) }
    }
    /// (low, high)
    const fn between(low: f64, high: f64) -> Self {
        Self { low_open: true, ..Self::below(low, high) }
    }

    fn contains(&self, v: f64) -> bool {
        let above_low = if self.low_open { v > self.low } else { v >= self.low };
        above_low && if self.high_open { v < self.high } else { v <= self.high }
    }

    /// Refuses a value outside the range, naming the setting (`field` as config.toml spells
    /// it, with `_`); `shown` is the value as written (Debug: 1e308, not its 309 digits).
    fn check(&self, field: &str, value: f64, shown: String) -> Result<(), ConfigError> {
        if self.contains(value) {
            return Ok(());
        }
        Err(ConfigError::Invalid(format!("--{} must be {self}, not {shown}", field.replace('_', "-"))))
    }
}

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (low, high) = (self.low, self.high);
        match (self.low_open, self.high_open) {
            (false, _) if high.is_infinite() => write!(f, "at least {low}"),
            (true, _) if high.is_infinite() => write!(f, "more than {low}"),
            (false, false) => write!(f, "from {low} to {high}"),
            (false, true) => write!(f, "at least {low} and less than {high}"),
            (true, false) => write!(f, "more than {low} and at most {high}"),
            (true, true) => write!(f, "more than {low} and less than {high}"),
        }
    }
}

impl Settings {
    pub fn from_toml_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })
    }

    /// A run's own saved settings (`runs/NAME/config.toml`). Runs saved before the policy was
    /// recorded trained with all three DiffAugment transforms, and those saved before
    /// `--color-until` with colour to the end, so resuming them keeps that (fastgan's
    /// defaults are now colour and translation, colour for half the run).
    pub fn from_saved_run(path: &Path) -> Result<Settings, ConfigError> {
        let mut saved = Self::from_toml_file(path)?;
        if saved.augment == Some(false) {
            // They did nothing in that run: not carried on, so augmentation turned on at a
            // resume gets the defaults, and left off is not refused for them.
            (saved.augment_policy, saved.color_until) = (None, None);
        } else {
            saved.augment_policy.get_or_insert(DiffAugment::all());
            saved.color_until.get_or_insert(1.0);
        }
        // A run from before classes recorded none: it had none.
        saved.classes.get_or_insert_default();
        Ok(saved)
    }

    /// `self` with every setting that `over` gives replaced by `over`'s. A run's length
    /// (`--steps`, `--epochs`, `--minutes`) is one setting: `over` giving any part of it
    /// replaces all of it, so a resumed `--steps` run can be continued with `--epochs`.
    pub fn overlay(self, over: &Settings) -> Result<Settings, ConfigError> {
        let mut base = self;
        if over.epochs.is_some() || over.steps.is_some() || over.minutes.is_some() {
            (base.epochs, base.steps, base.minutes) = (None, None, None);
        }
        // Through TOML tables, where an unset option is absent (and NaN stays NaN, to be
        // refused by `validate`): no per-field code to keep in step.
        let mut table = base.to_table()?;
        table.extend(over.to_table()?);
        table.try_into().map_err(|e| ConfigError::Invalid(format!("settings do not combine: {e}")))
    }

    pub(crate) fn to_table(&self) -> Result<toml::Table, ConfigError> {
        for (flag, path) in
            [("runs-dir", &self.runs_dir), ("models-dir", &self.models_dir), ("init-from", &self.init_from)]
        {
            check_utf8(flag, path.as_deref())?;
        }
        check_integers(self)?;
        toml::Table::try_from(self).map_err(|e| ConfigError::Invalid(format!("settings cannot be recorded: {e}")))
    }

    /// Fills in the architecture's defaults and checks every value.
    pub fn resolve(&self) -> Result<TrainConfig, ConfigError> {
        let arch = self.arch.unwrap_or(Arch::Fastgan);
        let cfg = self.fill(&Defaults { arch, grey: self.channels == Some(1), given: self })?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// DiffAugment's transforms when none are named: FastGAN's for fastgan (translation alone on
/// grey pictures, where colour is brightness and contrast only), DiffAugment's for the rest.
fn default_policy(arch: Arch, grey: bool) -> DiffAugment {
    match arch {
        Arch::Fastgan if grey => DiffAugment::translation(),
        Arch::Fastgan => DiffAugment::fastgan(),
        _ => DiffAugment::all(),
    }
}

/// When colour augmentation stops, as a fraction of the run: fastgan's at half, the papers' never.
fn default_color_until(arch: Arch) -> f64 {
    if arch == Arch::Fastgan {
        0.5
    } else {
        1.0
    }
}

/// The settings that make the networks, as config.toml names them: a resumed run's
/// checkpoints hold networks made with its own (`trainer::same_networks`), and `--init-from`'s
/// source must match this run's (`start_from::same`).
pub const NETWORK_SETTINGS: [&str; 7] = ["arch", "image-size", "nz", "ngf", "ndf", "channels", "classes"];

/// The longest run in generator updates (`--steps`, or what `--epochs` comes to): eleven
/// days at a hundred steps a second, far from any counter's overflow, and the most that
/// checkpoints' eight-digit names (`step_NNNNNNNN`) can number.
pub const MAX_STEPS: usize = 99_999_999;
/// The longest `--minutes`: a year.
pub const MAX_MINUTES: f64 = 525_600.0;
/// The largest `--batch-size`.
pub const MAX_BATCH: usize = 4096;
/// The most parameters either network may have: 512 MiB of f32 weights (the exported
/// generator must stay far below ONNX's 2 GiB; Adam and the average triple it in memory).
pub const MAX_PARAMETERS: usize = 1 << 27;
/// The largest R1 weight γ (the papers use 0.1 to 100; more only diverges).
pub const MAX_R1: f64 = 1000.0;

/// Defaults of the settings only some architectures read (every run records them).
const CRITIC_STEPS_BURST: usize = 100;
const CLAMP: f64 = 0.01;
const RMS_ALPHA: f64 = 0.99;
const GP_LAMBDA: f64 = 10.0;
const GUARD_PATIENCE: usize = 300;

/// Below this many pictures DiffAugment is on unless told otherwise (Zhao et al. show it
/// matters most for a few hundred to a few thousand images).
pub const AUGMENT_BELOW: usize = 2000;
/// A run's length when none is given: generated images (2,000 generator updates at batch
/// 64), whatever the folder's size. Epochs made 131 pictures 50 updates (noise) and 5,000
/// pictures 1,950; this is ~27 minutes at 64×64 and ~5 at 32×32 on two CPU cores.
pub const DEFAULT_IMAGES: usize = 128_000;

impl TrainConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        check_name(&self.name)?;
        if self.epochs.is_some() && self.steps.is_some() {
            return bad("give --epochs or --steps, not both".into());
        }
        self.check_ranges()?;
        check_utf8("runs-dir", Some(&self.runs_dir))?;
        check_utf8("models-dir", Some(&self.models_dir))?;
        check_utf8("init-from", self.init_from.as_deref())?;
        // A setting this architecture never reads is refused when it differs from the value
        // every run records, rather than silently doing nothing (wgan's RMSprop reads no β;
        // there the recorded β are Adam's usual 0.5 and 0.999). Which it reads, it says.
        for (flag, changed) in [
            ("critic-steps", self.critic_steps != 1),
            ("critic-steps-burst", self.critic_steps_burst != CRITIC_STEPS_BURST),
            ("clamp", self.clamp != CLAMP),
            ("rms-alpha", self.rms_alpha != RMS_ALPHA),
            ("gp-lambda", self.gp_lambda != GP_LAMBDA),
            ("guard-patience", self.guard_patience != GUARD_PATIENCE),
            ("beta1", self.beta1 != 0.5),
            ("beta2", self.beta2 != 0.999),
            ("ada-target", self.ada_target.is_some()),
            ("r1", self.r1 != 0.0),
        ] {
            if changed && !self.arch.get().reads().contains(&flag) {
                let readers: Vec<String> =
                    Arch::ALL.into_iter().filter(|a| a.get().reads().contains(&flag)).map(Arch::name).collect();
                let readers = match readers.split_last() {
                    Some((last, [])) => last.to_string(),
                    Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
                    None => "no architecture".into(),
                };
                return bad(format!("--{flag} is read by {readers} only, not {}", self.arch.name()));
            }
        }
        if self.ada_target.is_some() && self.augment == Some(false) {
            return bad(
                "--ada-target adjusts how often pictures are augmented, and --augment=false turns augmentation off"
                    .into(),
            );
        }
        if self.augment == Some(false) {
            self.refuse_unused_augmentation(
                "--augment=false turns augmentation off (here or in the run's config.toml)",
            )?;
        }
        self.check_networks()?;
        let blocks = self.arch.get().critic_blocks(&self.shape(self.channels.unwrap_or(3), 0)).len();
        if self.freeze_d > 0 && self.init_from.is_none() {
            return bad("--freeze-d keeps the critic's first blocks as --init-from gave them; give --init-from".into());
        }
        if self.freeze_d > blocks {
            let (arch, size) = (self.arch.name(), self.image_size);
            return bad(format!(
                "--freeze-d {}: the {arch} critic at {size}×{size} has {blocks} blocks",
                self.freeze_d
            ));
        }
        Ok(())
    }

    /// With augmentation off, a policy or colour schedule other than the default would do
    /// nothing: refused by name (`why` says why augmentation is off).
    pub fn refuse_unused_augmentation(&self, why: &str) -> Result<(), ConfigError> {
        let grey = self.channels == Some(1);
        if self.augment_policy != default_policy(self.arch, grey) {
            return Err(ConfigError::Invalid(format!("--augment-policy {} does nothing: {why}", self.augment_policy)));
        }
        if self.color_until != default_color_until(self.arch) {
            return Err(ConfigError::Invalid(format!("--color-until {} does nothing: {why}", self.color_until)));
        }
        Ok(())
    }

    /// The networks' shape for pictures of `channels` and `classes` kinds (0: unconditional).
    pub fn shape(&self, channels: usize, classes: usize) -> Shape {
        Shape { image_size: self.image_size, channels, nz: self.nz, ngf: self.ngf, ndf: self.ndf, classes }
    }

    /// The networks' shape, and their size within what can be trained and exported.
    fn check_networks(&self) -> Result<(), ConfigError> {
        if let Some(c) = self.channels.filter(|&c| c != 1 && c != 3) {
            return Err(ConfigError::Invalid(format!("--channels must be 1 (grey) or 3 (RGB), not {c}")));
        }
        if !self.image_size.is_power_of_two() {
            return Err(ConfigError::Invalid(format!("--image-size {} must be a power of two", self.image_size)));
        }
        self.check_size(&self.shape(self.channels.unwrap_or(3), 0))
    }

    /// The networks of `shape` are buildable and each within [`MAX_PARAMETERS`] (checked
    /// again once the data gives the classes, whose embeddings count too).
    pub fn check_size(&self, shape: &Shape) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let kind = self.arch;
        kind.validate_shape(shape).map_err(|e| {
            ConfigError::Invalid(format!(
                "{e} (--image-size {}, --ngf {}, --ndf {})",
                self.image_size, self.ngf, self.ndf
            ))
        })?;
        let shape = *shape;
        for (flag, width, network, count) in [
            ("ngf", self.ngf, "generator", kind.generator_parameters(shape, MAX_PARAMETERS)),
            ("ndf", self.ndf, "critic", kind.critic_parameters(shape, MAX_PARAMETERS)),
        ] {
            if count.is_none() {
                let size = self.image_size;
                let classes = if shape.classes > 0 { format!(" of {} classes", shape.classes) } else { String::new() };
                return bad(format!(
                    "--{flag} {width} at {size}×{size} makes a {network}{classes} of more than {MAX_PARAMETERS} parameters"
                ));
            }
        }
        Ok(())
    }

    pub fn to_toml(&self) -> Result<String, ConfigError> {
        check_utf8("runs-dir", Some(&self.runs_dir))?;
        check_utf8("models-dir", Some(&self.models_dir))?;
        check_integers(self)?;
        toml::to_string(self).map_err(|e| ConfigError::Invalid(format!("settings cannot be recorded: {e}")))
    }
}

/// `--name` becomes a folder name: one plain path component, checked before it is used as one.
pub fn check_name(name: &str) -> Result<(), ConfigError> {
    if !canard_shared::manifest::is_plain_name(name) {
        return Err(ConfigError::Invalid(format!(
            "--name {name:?} must be letters, digits, '-', '_' or '.' (it becomes a folder name)"
        )));
    }
    Ok(())
}

/// TOML's integers are i64: a larger value (a seed from the top half of u64's range, say)
/// cannot be recorded, so it is refused by name.
fn check_integers(settings: &impl Serialize) -> Result<(), ConfigError> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(settings) else { return Ok(()) };
    for (key, value) in fields {
        if let Some(n) = value.as_u64().filter(|&n| n > i64::MAX as u64) {
            return Err(ConfigError::Invalid(format!("--{key} {n} is too large: at most {}", i64::MAX)));
        }
    }
    Ok(())
}

/// Settings are saved as TOML, which is text: a folder whose name is not UTF-8 is refused by name.
fn check_utf8(flag: &str, path: Option<&Path>) -> Result<(), ConfigError> {
    match path {
        Some(p) if p.to_str().is_none() => Err(ConfigError::Invalid(format!(
            "--{flag} {p:?} is not valid UTF-8; canard records its settings as text, so give a folder whose name is"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same settings, as a layer for [`Settings::overlay`] (a saved config read back).
    fn as_settings(c: &TrainConfig) -> Settings {
        toml::from_str(&c.to_toml().unwrap()).unwrap()
    }
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
            "--ema-half-life",
            "2000",
            "--ema-rampup",
            "0.1",
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
            ema-half-life = 2000
            ema-rampup = 0.1
            steps = 10
        "#;
        let from_file: Settings = toml::from_str(text).unwrap();
        assert_eq!(from_flags, from_file);
        let cfg = from_file.resolve().unwrap();
        assert_eq!((cfg.lr_g, cfg.lr_d, cfg.beta1, cfg.beta2, cfg.gp_lambda), (3e-4, 3e-4, 0.0, 0.9, 10.0));
        // The saved config reads back as the same config.
        assert_eq!(as_settings(&cfg).resolve().unwrap(), cfg);
    }

    #[test]
    fn flags_override_the_file_and_the_file_overrides_a_resumed_run() {
        let saved = flags(&["--data", "d", "--name", "n", "--lr-g", "1e-4", "--epochs", "5"]).resolve().unwrap();
        let file: Settings = toml::from_str("lr-g = 2e-4\nbatch-size = 32").unwrap();
        let cli = flags(&["--lr-g", "5e-5"]);
        let cfg = as_settings(&saved).overlay(&file).unwrap().overlay(&cli).unwrap().resolve().unwrap();
        assert_eq!((cfg.lr_g, cfg.batch_size, cfg.epochs, cfg.data.as_str()), (5e-5, 32, Some(5), "d"));
        // A length on the command line replaces the saved one whole: --steps after --epochs is no conflict.
        let longer = as_settings(&saved).overlay(&flags(&["--steps", "9"])).unwrap().resolve().unwrap();
        assert_eq!((longer.epochs, longer.steps, longer.minutes), (None, Some(9), None));
        let timed = as_settings(&saved).overlay(&flags(&["--minutes", "2.5"])).unwrap().resolve().unwrap();
        assert_eq!((timed.epochs, timed.steps, timed.minutes), (None, None, Some(2.5)));
    }

    /// Non-finite values survive layering and are refused by name (JSON once turned NaN
    /// into null, which the overlay dropped: `--lr-g nan` trained with the default).
    #[test]
    fn nan_and_infinite_settings_are_refused_by_name_from_flags_and_files() {
        let base = flags(&["--data", "d", "--name", "n"]);
        for (flag, value) in [
            ("--lr-g", "nan"),
            ("--lr-d", "inf"),
            ("--beta1", "nan"),
            ("--beta2", "-inf"),
            ("--ema-half-life", "nan"),
            ("--ema-half-life", "-1.0"),
            ("--ema-rampup", "inf"),
            ("--ema-rampup", "1.5"),
            ("--rms-alpha", "nan"),
            ("--clamp", "nan"),
            ("--gp-lambda", "inf"),
            ("--minutes", "nan"),
            ("--minutes", "inf"),
            ("--minutes", "0.0"),
            ("--minutes", "-3.0"),
        ] {
            let arg = format!("{flag}={value}");
            let err = base.clone().overlay(&flags(&[&arg])).unwrap().resolve().unwrap_err().to_string();
            assert!(err.contains(flag), "{arg}: {err}");
            // The same value from a config file.
            let line = format!("{} = {value}", &flag[2..]);
            let file: Settings = toml::from_str(&line).unwrap();
            let err = base.clone().overlay(&file).unwrap().resolve().unwrap_err().to_string();
            assert!(err.contains(flag), "{line} in a file: {err}");
        }
    }

    /// Every declared range refuses, by name, a value just past each of its ends (from a
    /// file, as a flag gives the same value), and NaN.
    #[test]
    fn each_range_refuses_what_lies_past_its_ends() {
        let base = flags(&["--data", "d", "--name", "n"]);
        for (field, range) in RANGES {
            let key = field.replace('_', "-");
            let nudge = |end: f64, open: bool, up: bool| match (open, end.fract() == 0.0, up) {
                (true, _, _) => end,
                (false, true, true) => end + 1.0,
                (false, true, false) => end - 1.0,
                (false, false, true) => end + 1e-9,
                (false, false, false) => end - 1e-9,
            };
            let mut past = vec![f64::NAN, nudge(range.low, range.low_open, false)];
            past.extend(Some(nudge(range.high, range.high_open, true)).filter(|h| h.is_finite()));
            for value in past {
                // An integer where the setting is one (a whole value too large for i64 is a float anyway).
                let lines = [format!("{key} = {}", value as i64), format!("{key} = {value:?}")];
                let parsed = lines.iter().filter(|_| value.fract() == 0.0 && value.abs() < 1e18).chain(&lines[1..]);
                let layer = parsed.filter_map(|l| toml::from_str::<Settings>(&l.replace("NaN", "nan")).ok()).next();
                let Some(layer) = layer else { continue }; // not a value of the setting's type at all
                let err = base.clone().overlay(&layer).and_then(|s| s.resolve()).unwrap_err().to_string();
                assert!(err.contains(&format!("--{key} must be {range}")), "{key} = {value}: {err}");
            }
        }
    }

    /// A folder name that is not UTF-8 cannot be recorded in config.toml: a clear error, not a panic.
    #[test]
    fn a_non_utf8_folder_is_a_clear_error() {
        use std::os::unix::ffi::OsStrExt;
        let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"runs-\xff"));
        for (flag, s) in [
            ("--runs-dir", Settings { runs_dir: Some(odd.clone()), ..Settings::default() }),
            ("--models-dir", Settings { models_dir: Some(odd.clone()), ..Settings::default() }),
        ] {
            let err = flags(&["--data", "d", "--name", "n"]).overlay(&s).unwrap_err().to_string();
            assert!(err.contains(flag) && err.contains("UTF-8"), "{err}");
        }
    }

    #[test]
    fn each_architecture_gets_its_papers_defaults() {
        let base = flags(&["--data", "d", "--name", "n"]);
        let f = base.clone().resolve().unwrap();
        assert_eq!((f.arch, f.lr_g, f.beta1, f.critic_steps), (Arch::Fastgan, 2e-4, 0.5, 1));
        assert_eq!((f.batch_size, f.ngf, f.ndf), (16, 16, 32));
        let d = Settings { arch: Some(Arch::Dcgan), ..base.clone() }.resolve().unwrap();
        assert_eq!((d.lr_g, d.beta1, d.critic_steps, d.batch_size, d.ngf, d.ndf), (2e-4, 0.5, 1, 64, 64, 64));
        let w = Settings { arch: Some(Arch::Wgan), ..base.clone() }.resolve().unwrap();
        assert_eq!((w.lr_g, w.lr_d, w.clamp, w.critic_steps, w.critic_steps_burst), (5e-5, 5e-5, 0.01, 5, 100));
        let gp = Settings { arch: Some(Arch::WganGp), ..base.clone() }.resolve().unwrap();
        assert_eq!((gp.lr_g, gp.beta1, gp.beta2, gp.gp_lambda, gp.critic_steps), (1e-4, 0.0, 0.9, 10.0, 5));
        // FastGAN's augmentation policy for fastgan, DiffAugment's for the rest.
        assert_eq!((f.augment_policy, d.augment_policy), (DiffAugment::fastgan(), DiffAugment::all()));
        assert_eq!((w.augment_policy, gp.augment_policy), (DiffAugment::all(), DiffAugment::all()));
        // fastgan stops colour augmentation halfway; the papers' recipes keep it to the end.
        assert_eq!((f.color_until, d.color_until, w.color_until, gp.color_until), (0.5, 1.0, 1.0, 1.0));
        // On grey pictures fastgan's critic is as narrow as its generator and colour augmentation
        // is off; the papers' recipes are the same on grey; flags still win.
        let grey = Settings { channels: Some(1), ..base.clone() };
        let fg = grey.clone().resolve().unwrap();
        assert_eq!((fg.ngf, fg.ndf, fg.augment_policy), (16, 16, DiffAugment::translation()));
        let dg = Settings { arch: Some(Arch::Dcgan), ..grey.clone() }.resolve().unwrap();
        assert_eq!((dg.ndf, dg.augment_policy), (64, DiffAugment::all()));
        let told = Settings { ndf: Some(32), augment_policy: Some(DiffAugment::fastgan()), ..grey }.resolve().unwrap();
        assert_eq!((told.ndf, told.augment_policy), (32, DiffAugment::fastgan()));
        let rgb = Settings { channels: Some(3), ..base }.resolve().unwrap();
        assert_eq!((rgb.ndf, rgb.augment_policy), (32, DiffAugment::fastgan()));
    }

    #[test]
    fn an_augment_policy_reads_from_flags_and_files_and_a_bad_one_is_refused_by_name() {
        let from_flags = flags(&["--data", "d", "--name", "n", "--augment-policy", "cutout,color"]);
        let from_file: Settings = toml::from_str("data = 'd'\nname = 'n'\naugment-policy = 'color,cutout'").unwrap();
        assert_eq!(from_flags, from_file);
        let cfg = from_file.resolve().unwrap();
        assert_eq!(cfg.augment_policy, DiffAugment { colour: true, translation: false, cutout: true });
        assert!(cfg.to_toml().unwrap().contains("augment-policy = \"color,cutout\""));
        assert_eq!(as_settings(&cfg).resolve().unwrap(), cfg);
        let args = ["canard-train", "--data", "d", "--name", "n", "--augment-policy", "color,flip"];
        let err = Cli::try_parse_from(args).err().unwrap().to_string();
        assert!(err.contains("--augment-policy") && err.contains("\"flip\" is not one of"), "{err}");
        let err = toml::from_str::<Settings>("augment-policy = 'color,color'").unwrap_err().to_string();
        assert!(err.contains("augment-policy") && err.contains("named twice"), "{err}");
    }

    #[test]
    fn a_run_saved_before_a_setting_existed_resumes_as_it_trained() {
        let dir = tempfile::tempdir().unwrap();
        let saved = dir.path().join("config.toml");
        let new = flags(&["--data", "d", "--name", "n"]).resolve().unwrap().to_toml().unwrap();
        let without =
            |key: &str| -> String { new.lines().filter(|l| !l.starts_with(key)).map(|l| format!("{l}\n")).collect() };
        for (text, policy, until) in [
            (without("augment-policy"), DiffAugment::all(), 0.5),
            (without("color-until"), DiffAugment::fastgan(), 1.0),
            (new.clone(), DiffAugment::fastgan(), 0.5),
        ] {
            std::fs::write(&saved, &text).unwrap();
            let cfg = Settings::from_saved_run(&saved).unwrap().resolve().unwrap();
            assert_eq!((cfg.arch, cfg.augment_policy, cfg.color_until), (Arch::Fastgan, policy, until), "{text}");
        }
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
            (
                vec!["--data", "d", "--name", "n", "--ada-target", "1.5"],
                "--ada-target must be more than 0 and less than 1, not 1.5",
            ),
            (
                vec!["--data", "d", "--name", "n", "--ada-target", "NaN"],
                "--ada-target must be more than 0 and less than 1, not NaN",
            ),
            (vec!["--data", "d", "--name", "n", "--ada-target", "0.6", "--arch", "dcgan"], "fastgan only, not dcgan"),
            (vec!["--data", "d", "--name", "n", "--r1=-1"], "--r1 must be from 0 to 1000, not -1.0"),
            (vec!["--data", "d", "--name", "n", "--color-until", "1.5"], "--color-until must be from 0 to 1, not 1.5"),
            (vec!["--data", "d", "--name", "n", "--color-until=-0.1"], "--color-until must be from 0 to 1, not -0.1"),
            (vec!["--data", "d", "--name", "n", "--color-until", "NaN"], "--color-until must be from 0 to 1, not NaN"),
            (vec!["--data", "d", "--name", "n", "--r1", "inf"], "--r1 must be from 0 to 1000, not inf"),
            (
                vec!["--data", "d", "--name", "n", "--r1", "1", "--arch", "wgan-gp"],
                "--r1 is read by fastgan only, not wgan-gp",
            ),
            (vec!["--data", "d", "--name", "n", "--image-size", "16"], "fastgan needs pictures of 32×32"),
            (
                vec!["--data", "d", "--name", "n", "--critic-steps", "2"],
                "--critic-steps is read by wgan and wgan-gp only, not fastgan",
            ),
            (vec!["--data", "d", "--name", "n", "--critic-steps", "2", "--arch", "dcgan"], "wgan-gp only, not dcgan"),
            (
                vec!["--data", "d", "--name", "n", "--critic-steps-burst", "9", "--arch", "wgan-gp"],
                "--critic-steps-burst is read by wgan only, not wgan-gp",
            ),
            (vec!["--data", "d", "--name", "n", "--clamp", "0.02"], "--clamp is read by wgan only, not fastgan"),
            (
                vec!["--data", "d", "--name", "n", "--rms-alpha", "0.9", "--arch", "dcgan"],
                "--rms-alpha is read by wgan only",
            ),
            (
                vec!["--data", "d", "--name", "n", "--gp-lambda", "5", "--arch", "wgan"],
                "--gp-lambda is read by wgan-gp only, not wgan",
            ),
            (
                vec!["--data", "d", "--name", "n", "--guard-patience", "50"],
                "--guard-patience is read by dcgan only, not fastgan",
            ),
            (
                vec!["--data", "d", "--name", "n", "--beta1", "0", "--arch", "wgan"],
                "--beta1 is read by fastgan, dcgan and wgan-gp only, not wgan",
            ),
            (
                vec!["--data", "d", "--name", "n", "--ada-target", "0.6", "--augment=false"],
                "--augment=false turns augmentation off",
            ),
            (
                vec!["--data", "d", "--name", "n", "--augment=false", "--augment-policy", "cutout"],
                "--augment-policy cutout does nothing: --augment=false",
            ),
            (
                vec!["--data", "d", "--name", "n", "--augment=false", "--color-until", "0.2"],
                "--color-until 0.2 does nothing: --augment=false",
            ),
            (
                vec!["--data", "d", "--name", "n", "--checkpoint-every", "0"],
                "--checkpoint-every must be at least 1, not 0",
            ),
            (
                vec!["--data", "d", "--name", "n", "--minutes", "1e308"],
                "--minutes must be more than 0 and at most 525600, not 1e308",
            ),
            (vec!["--data", "d", "--name", "n", "--r1", "1e308"], "--r1 must be from 0 to 1000, not 1e308"),
            (
                vec!["--data", "d", "--name", "n", "--steps", "100000000"],
                "--steps must be from 1 to 99999999, not 100000000",
            ),
            (
                vec!["--data", "d", "--name", "n", "--eval-images", "16385"],
                "--eval-images must be from 0 to 16384, not 16385",
            ),
            (
                vec!["--data", "d", "--name", "n", "--epochs", "72057594037927936"],
                "--epochs must be from 1 to 99999999, not 72057594037927936",
            ),
            (
                vec!["--data", "d", "--name", "n", "--batch-size", "4097"],
                "--batch-size must be from 1 to 4096, not 4097",
            ),
            (vec!["--data", "d", "--name", "n", "--nz", "70000"], "--nz must be from 1 to 65536, not 70000"),
            (
                vec!["--data", "d", "--name", "n", "--ngf", "100000"],
                "--ngf 100000 at 64×64 makes a generator of more than 134217728",
            ),
            (
                vec!["--data", "d", "--name", "n", "--ndf", "1000000"],
                "--ndf 1000000 at 64×64 makes a critic of more than 134217728",
            ),
            (
                vec!["--data", "d", "--name", "n", "--ngf", "1152921504606846976"],
                "makes a generator of more than 134217728 parameters",
            ),
        ] {
            let err = flags(&args).resolve().unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
        // A seed or length past TOML's i64, from a flag or a file, is refused by name.
        for (layer, needle) in [
            (flags(&["--seed", "18446744073709551615"]), "--seed 18446744073709551615 is too large"),
            (toml::from_str::<Settings>("seed = 9223372036854775808").unwrap(), "--seed 9223372036854775808"),
            (flags(&["--steps", "9223372036854775808"]), "--steps 9223372036854775808 is too large"),
        ] {
            let err = flags(&["--data", "d", "--name", "n"]).overlay(&layer).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        let top = flags(&["--data", "d", "--name", "n", "--seed", "9223372036854775807"]).resolve().unwrap();
        assert!(top.to_toml().unwrap().contains("seed = 9223372036854775807"));
        // The same settings are taken where the architecture reads them.
        for args in [
            vec!["--data", "d", "--name", "n", "--arch", "wgan", "--critic-steps-burst", "9", "--clamp", "0.02"],
            vec!["--data", "d", "--name", "n", "--arch", "wgan", "--rms-alpha", "0.9"],
            vec!["--data", "d", "--name", "n", "--arch", "wgan-gp", "--gp-lambda", "5", "--critic-steps", "3"],
            vec!["--data", "d", "--name", "n", "--arch", "dcgan", "--guard-patience", "50", "--beta1", "0"],
            vec!["--data", "d", "--name", "n", "--ada-target", "0.6", "--augment"],
        ] {
            let cfg = flags(&args).resolve();
            assert!(cfg.is_ok(), "{args:?}: {cfg:?}");
        }
    }

    /// Lengths, sizes, seeds and names drawn at random, near and far past every bound:
    /// each either resolves to a run that can be trained and recorded or is refused naming
    /// a flag; nothing panics, and an accepted name is one folder inside the runs folder.
    #[test]
    fn random_lengths_sizes_seeds_and_names_are_taken_or_refused_by_name() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(30);
        let big = |rng: &mut rand_chacha::ChaCha8Rng| -> usize {
            match rng.random_range(0..4) {
                0 => rng.random_range(0..8),
                1 => rng.random_range(0..200),
                2 => 1usize << rng.random_range(0..64),
                _ => rng.random::<u64>() as usize,
            }
        };
        let (mut taken, mut refused) = (0, 0);
        for _ in 0..3000 {
            let pick = |rng: &mut rand_chacha::ChaCha8Rng| rng.random_bool(0.3);
            const ALPHABET: &[u8] = b"ab./-_\\ \0";
            let name: String =
                (0..rng.random_range(0..6)).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
            let s = Settings {
                data: Some("d".into()),
                name: Some(name.clone()),
                arch: Some([Arch::Fastgan, Arch::Dcgan, Arch::Wgan, Arch::WganGp][rng.random_range(0..4)]),
                image_size: pick(&mut rng).then(|| 1usize << rng.random_range(2..12)),
                steps: pick(&mut rng).then(|| big(&mut rng)),
                epochs: pick(&mut rng).then(|| big(&mut rng)),
                minutes: pick(&mut rng).then(|| 10f64.powi(rng.random_range(-3..12))),
                batch_size: pick(&mut rng).then(|| big(&mut rng)),
                seed: pick(&mut rng).then(|| rng.random::<u64>() >> rng.random_range(0..2)),
                nz: pick(&mut rng).then(|| big(&mut rng)),
                ngf: pick(&mut rng).then(|| big(&mut rng)),
                ndf: pick(&mut rng).then(|| big(&mut rng)),
                checkpoint_every: pick(&mut rng).then(|| big(&mut rng)),
                ..Settings::default()
            };
            let resolved = Settings::default().overlay(&s).and_then(|layered| layered.resolve());
            match resolved {
                Ok(cfg) => {
                    taken += 1;
                    assert!(cfg.to_toml().is_ok(), "{s:?}: accepted but cannot be recorded");
                    let parts: Vec<_> = Path::new(&cfg.name).components().collect();
                    assert!(matches!(parts[..], [std::path::Component::Normal(_)]), "{name:?} is not one folder");
                    let length = crate::length::Length::of(&cfg, big(&mut rng).clamp(1, 1 << 20), cfg.batch_size);
                    match length {
                        Ok(l) => assert!(l.steps.is_none_or(|n| (1..=MAX_STEPS).contains(&n)), "{l:?}"),
                        Err(e) => assert!(e.to_string().contains("--epochs"), "{e}"),
                    }
                }
                Err(e) => {
                    refused += 1;
                    let e = e.to_string();
                    let named = e.contains("--") || e.contains("image size") || e.contains("fastgan needs");
                    assert!(named, "{s:?}: refused without naming the setting: {e}");
                }
            }
        }
        assert!(taken > 100 && refused > 100, "taken {taken}, refused {refused}: the draws miss one side");
    }
}
