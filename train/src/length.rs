//! How long a run trains: a number of generator updates (`--steps`, `--epochs`, or by
//! default [`DEFAULT_IMAGES`] generated images, whatever the folder's size), a budget of
//! training minutes (`--minutes`, counted across resumes), or both: whichever comes first.

use crate::config::{Arch, TrainConfig, DEFAULT_IMAGES};
use crate::losses::critic_updates;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Length {
    pub steps: Option<usize>,
    /// Seconds of training.
    pub seconds: Option<f64>,
    /// The passes over the data that `steps` makes, when it is known.
    pub epochs: Option<usize>,
}

impl Length {
    /// The length `cfg` asks for, with `per_epoch` batches of `batch` images in an epoch.
    pub fn of(cfg: &TrainConfig, per_epoch: usize, batch: usize) -> Self {
        let steps = match (cfg.steps, cfg.epochs, cfg.minutes) {
            (Some(s), _, _) => Some(s),
            (None, Some(e), _) => Some(steps_for_epochs(cfg, e, per_epoch)),
            (None, None, Some(_)) => None,
            (None, None, None) => Some(DEFAULT_IMAGES.div_ceil(batch.max(1))),
        };
        let epochs = match (cfg.epochs, steps) {
            (Some(e), _) => Some(e),
            (None, Some(s)) => Some(batches_to_epochs(cfg, s, per_epoch)),
            (None, None) => None,
        };
        Self { steps, seconds: cfg.minutes.map(|m| m * 60.0), epochs }
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
        let steps = self.steps.map(|s| format!("{s} steps ({} images)", thousands(s * batch)));
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

/// 128000 → "128,000".
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Batches one generator update consumes at update `step` (0-based).
fn batches_per_step(cfg: &TrainConfig, step: usize) -> usize {
    match cfg.arch {
        Arch::Dcgan => 1,
        _ => critic_updates(cfg.arch, step, cfg.critic_steps, cfg.critic_steps_burst),
    }
}

/// Generator updates that `epochs` passes over the data take.
fn steps_for_epochs(cfg: &TrainConfig, epochs: usize, per_epoch: usize) -> usize {
    let (mut batches, mut steps) = (0, 0);
    while batches < epochs * per_epoch {
        batches += batches_per_step(cfg, steps);
        steps += 1;
    }
    steps
}

/// Epochs that `steps` generator updates reach (at least 1).
fn batches_to_epochs(cfg: &TrainConfig, steps: usize, per_epoch: usize) -> usize {
    let batches: usize = (0..steps).map(|s| batches_per_step(cfg, s)).sum();
    batches.div_ceil(per_epoch.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn cfg(extra: Settings) -> TrainConfig {
        Settings { data: Some("d".into()), name: Some("n".into()), ..extra }.resolve().unwrap()
    }

    #[test]
    fn the_default_length_does_not_depend_on_the_folders_size() {
        // 131 pictures at batch 64: 2 batches an epoch. 25 epochs were 50 steps; now 2,000.
        let small = Length::of(&cfg(Settings::default()), 2, 64);
        assert_eq!((small.steps, small.seconds, small.epochs), (Some(2000), None, Some(1000)));
        let large = Length::of(&cfg(Settings::default()), 78, 64);
        assert_eq!(large.steps, Some(2000));
        assert_eq!(small.describe(64), "2000 steps (128,000 images)");
        // A folder smaller than a batch trains with smaller batches, so more of them.
        assert_eq!(Length::of(&cfg(Settings::default()), 1, 40).steps, Some(3200));
    }

    #[test]
    fn steps_epochs_and_minutes() {
        let s = Length::of(&cfg(Settings { steps: Some(7), ..Settings::default() }), 3, 64);
        assert_eq!((s.steps, s.epochs), (Some(7), Some(3)));
        let e = Length::of(&cfg(Settings { epochs: Some(4), ..Settings::default() }), 3, 64);
        assert_eq!((e.steps, e.epochs), (Some(12), Some(4)));
        // WGAN: 5 critic batches a step, 100 in the first 25 steps.
        let w = Settings { arch: Some(Arch::Wgan), epochs: Some(1), ..Settings::default() };
        assert_eq!(Length::of(&cfg(w), 250, 64).steps, Some(3));
        let m = Length::of(&cfg(Settings { minutes: Some(1.5), ..Settings::default() }), 3, 64);
        assert_eq!((m.steps, m.seconds, m.epochs), (None, Some(90.0), None));
        assert!(!m.done(1_000_000, 89.9) && m.done(1, 90.0));
        assert_eq!(m.describe(64), "1.5 minutes of training");
        let both = Length::of(&cfg(Settings { steps: Some(10), minutes: Some(1.0), ..Settings::default() }), 3, 64);
        assert!(both.done(10, 0.0) && both.done(2, 60.0) && !both.done(9, 59.0));
        assert_eq!(both.describe(64), "10 steps (640 images) or 1 minute of training, whichever comes first");
        // How far through: the further of the two limits, never past the end.
        assert_eq!((s.fraction(0, 1e9), s.fraction(7, 0.0), s.fraction(14, 0.0)), (0.0, 1.0, 1.0));
        assert_eq!((m.fraction(1_000_000, 45.0), m.fraction(0, 180.0)), (0.5, 1.0));
        assert_eq!((both.fraction(5, 6.0), both.fraction(1, 30.0)), (0.5, 0.5));
    }
}
