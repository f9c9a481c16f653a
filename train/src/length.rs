//! How long a run trains: a number of generator updates (`--steps`, `--epochs`, or by
//! default [`DEFAULT_IMAGES`] generated images, whatever the folder's size), a budget of
//! training minutes (`--minutes`, counted across resumes), or both: whichever comes first.

use crate::config::{ConfigError, TrainConfig, DEFAULT_IMAGES, MAX_STEPS};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Length {
    pub steps: Option<usize>,
    /// Seconds of training.
    pub seconds: Option<f64>,
    /// The passes over the data that `steps` makes, when it is known.
    pub epochs: Option<usize>,
}

impl Length {
    /// The length `cfg` asks for, with `per_epoch` batches of `batch` images in an epoch;
    /// `--epochs` that come to more than [`MAX_STEPS`] steps are refused by name.
    pub fn of(cfg: &TrainConfig, per_epoch: usize, batch: usize) -> Result<Self, ConfigError> {
        let steps = match (cfg.steps, cfg.epochs, cfg.minutes) {
            (Some(s), _, _) => Some(s),
            (None, Some(e), _) => {
                let steps = steps_for_epochs(cfg, e as u128 * per_epoch as u128);
                if steps > MAX_STEPS as u128 {
                    return Err(ConfigError::Invalid(format!(
                        "--epochs {e} is {steps} steps at {per_epoch} batches an epoch: at most {MAX_STEPS}"
                    )));
                }
                Some(steps as usize)
            }
            (None, None, Some(_)) => None,
            (None, None, None) => Some(DEFAULT_IMAGES.div_ceil(batch.max(1))),
        };
        let epochs = match (cfg.epochs, steps) {
            (Some(e), _) => Some(e),
            (None, Some(s)) => Some(batches_to_epochs(cfg, s, per_epoch)),
            (None, None) => None,
        };
        Ok(Self { steps, seconds: cfg.minutes.map(|m| m * 60.0), epochs })
    }

    /// Whether a run at `step` after `seconds` of training is over.
    pub fn done(&self, step: usize, seconds: f64) -> bool {
        self.steps.is_some_and(|s| step >= s) || self.seconds.is_some_and(|s| seconds >= s)
    }

    /// How far through its length a run at `step` after `seconds` of training is, from 0 to 1:
    /// the larger of the two fractions when it has both limits.
    pub fn fraction(&self, step: usize, seconds: f64) -> f64 {
        let of_steps = self.steps.map_or(0.0, |s| step as f64 / s as f64);
        let of_seconds = self.seconds.map_or(0.0, |s| seconds / s);
        of_steps.max(of_seconds).clamp(0.0, 1.0)
    }

    /// For the run's first lines, e.g. "2000 steps (128,000 images)" or "30 minutes".
    pub fn describe(&self, batch: usize) -> String {
        let steps = self
            .steps
            .map(|s| format!("{s} steps ({} images)", indicatif::HumanCount((s as u64).saturating_mul(batch as u64))));
        let minutes = self.seconds.map(|s| s / 60.0).map(|m| match m == 1.0 {
            true => "1 minute of training".to_string(),
            false => format!("{m} minutes of training"),
        });
        match (steps, minutes) {
            (Some(s), Some(m)) => format!("{s} or {m}, whichever comes first"),
            (Some(s), None) => s,
            (None, Some(m)) => m,
            (None, None) => "no limit".into(),
        }
    }
}

/// Generator updates that `batches` batches of data take: the fewest whose batches reach it.
fn steps_for_epochs(cfg: &TrainConfig, batches: u128) -> u128 {
    // Every update takes at least one batch, so the answer is at most `batches`.
    let (mut lo, mut hi) = (0, batches);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if cfg.arch.get().batches_for_steps(cfg, mid) >= batches {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// Epochs that `steps` generator updates reach (at least 1).
fn batches_to_epochs(cfg: &TrainConfig, steps: usize, per_epoch: usize) -> usize {
    let epochs = cfg.arch.get().batches_for_steps(cfg, steps as u128).div_ceil(per_epoch.max(1) as u128).max(1);
    usize::try_from(epochs).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Arch;
    use crate::config::Settings;

    fn cfg(extra: Settings) -> TrainConfig {
        Settings { data: Some("d".into()), name: Some("n".into()), ..extra }.resolve().unwrap()
    }

    #[test]
    fn the_default_length_does_not_depend_on_the_folders_size() {
        // 131 pictures at batch 64: 2 batches an epoch. 25 epochs were 50 steps; now 2,000.
        let small = Length::of(&cfg(Settings::default()), 2, 64).unwrap();
        assert_eq!((small.steps, small.seconds, small.epochs), (Some(2000), None, Some(1000)));
        let large = Length::of(&cfg(Settings::default()), 78, 64).unwrap();
        assert_eq!(large.steps, Some(2000));
        assert_eq!(small.describe(64), "2000 steps (128,000 images)");
        // A folder smaller than a batch trains with smaller batches, so more of them.
        assert_eq!(Length::of(&cfg(Settings::default()), 1, 40).unwrap().steps, Some(3200));
    }

    #[test]
    fn steps_epochs_and_minutes() {
        let s = Length::of(&cfg(Settings { steps: Some(7), ..Settings::default() }), 3, 64).unwrap();
        assert_eq!((s.steps, s.epochs), (Some(7), Some(3)));
        let e = Length::of(&cfg(Settings { epochs: Some(4), ..Settings::default() }), 3, 64).unwrap();
        assert_eq!((e.steps, e.epochs), (Some(12), Some(4)));
        // WGAN: 5 critic batches a step, 100 in the first 25 steps.
        let w = Settings { arch: Some(Arch::Wgan), epochs: Some(1), ..Settings::default() };
        assert_eq!(Length::of(&cfg(w), 250, 64).unwrap().steps, Some(3));
        let m = Length::of(&cfg(Settings { minutes: Some(1.5), ..Settings::default() }), 3, 64).unwrap();
        assert_eq!((m.steps, m.seconds, m.epochs), (None, Some(90.0), None));
        assert!(!m.done(1_000_000, 89.9) && m.done(1, 90.0));
        assert_eq!(m.describe(64), "1.5 minutes of training");
        let both =
            Length::of(&cfg(Settings { steps: Some(10), minutes: Some(1.0), ..Settings::default() }), 3, 64).unwrap();
        assert!(both.done(10, 0.0) && both.done(2, 60.0) && !both.done(9, 59.0));
        assert_eq!(both.describe(64), "10 steps (640 images) or 1 minute of training, whichever comes first");
        // How far through: the further of the two limits, never past the end.
        assert_eq!((s.fraction(0, 1e9), s.fraction(7, 0.0), s.fraction(14, 0.0)), (0.0, 1.0, 1.0));
        assert_eq!((m.fraction(1_000_000, 45.0), m.fraction(0, 180.0)), (0.5, 1.0));
        assert_eq!((both.fraction(5, 6.0), both.fraction(1, 30.0)), (0.5, 0.5));
    }

    /// The closed form gives what counting step by step gives, for every architecture,
    /// across WGAN's bursts (the first 25 updates and every 500th).
    #[test]
    fn the_closed_form_matches_counting_update_by_update() {
        for arch in [Arch::Dcgan, Arch::Fastgan, Arch::Wgan, Arch::WganGp] {
            let c = cfg(Settings { arch: Some(arch), ..Settings::default() });
            let mut batches = 0u128;
            for step in 0..2600usize {
                assert_eq!(c.arch.get().batches_for_steps(&c, step as u128), batches, "{arch:?} after {step} updates");
                let per = arch.get().critic_updates(step, &c);
                batches += per as u128;
            }
            for target in [1u128, 7, 99, 100, 2500, 2501, 12_345] {
                let steps = steps_for_epochs(&c, target);
                assert!(c.arch.get().batches_for_steps(&c, steps) >= target, "{arch:?} {target}");
                assert!(
                    steps == 0 || c.arch.get().batches_for_steps(&c, steps - 1) < target,
                    "{arch:?} {target}: not the fewest"
                );
            }
        }
    }

    /// Lengths near and past the bound: refused by name, at once, never wrapped to 0.
    #[test]
    fn huge_lengths_are_refused_by_name_and_never_wrap() {
        let start = std::time::Instant::now();
        for epochs in [100_000_000, 72_057_594_037_927_936, usize::MAX / 2, MAX_STEPS] {
            let c = TrainConfig { epochs: Some(epochs), ..cfg(Settings::default()) };
            let err = Length::of(&c, 1000, 16).unwrap_err().to_string();
            assert!(err.contains("--epochs") && err.contains(&format!("at most {MAX_STEPS}")), "{epochs}: {err}");
        }
        assert!(start.elapsed().as_secs() < 5, "computed, not counted");
        let c = TrainConfig { epochs: Some(MAX_STEPS / 9), ..cfg(Settings::default()) };
        assert_eq!(Length::of(&c, 9, 16).unwrap().steps, Some(MAX_STEPS));
        assert!(Length::of(&c, 10, 16).is_err(), "one batch an epoch more is past the bound");
        let c = TrainConfig { steps: Some(MAX_STEPS), ..cfg(Settings::default()) };
        assert_eq!(Length::of(&c, 10, 4096).unwrap().describe(4096), "99999999 steps (409,599,995,904 images)");
    }
}
