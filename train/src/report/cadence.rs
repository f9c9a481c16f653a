//! When a run writes its previews (the sample grid, the loss plot, the GIF): often enough
//! to watch, never more than ~1% of the training time, and about [`PER_RUN`] times a run.
//!
//! Epoch ends were the old cadence: on 131 pictures that is every 2 steps, and the
//! previews came to cost more than the training. Here the gap after a preview is at least
//! 99× what that preview cost (so previews take at most 1% of the time), and at least
//! 1/[`PER_RUN`] of the run's length, in steps or in minutes, whichever it has.

/// Previews a run of known length writes (besides the final one), at most.
pub const PER_RUN: usize = 100;
/// The share of training time previews may take.
const SHARE: f64 = 0.01;

pub struct Cadence {
    min_steps: usize,
    min_seconds: f64,
    /// The step and training time of the last preview (or of the start).
    last: (usize, f64),
    /// Seconds the last preview took.
    cost: f64,
}

impl Cadence {
    /// For a run of `steps` and/or `seconds` of training, at `step` after `seconds` now.
    pub fn new(length_steps: Option<usize>, length_seconds: Option<f64>, step: usize, seconds: f64) -> Self {
        Self {
            min_steps: length_steps.map_or(1, |s| (s / PER_RUN).max(1)),
            min_seconds: length_seconds.map_or(0.0, |s| s / PER_RUN as f64),
            last: (step, seconds),
            cost: 0.0,
        }
    }

    /// Whether a preview is due after `step`, at `seconds` of training.
    pub fn due(&self, step: usize, seconds: f64) -> bool {
        let (s, t) = self.last;
        let gap = seconds - t;
        step >= s + self.min_steps && gap >= self.min_seconds && gap >= self.cost * (1.0 / SHARE - 1.0)
    }

    /// A preview was written after `step`, at `seconds`, and took `cost` seconds.
    pub fn wrote(&mut self, step: usize, seconds: f64, cost: f64) {
        self.last = (step, seconds + cost);
        self.cost = cost;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_known_steps_previews_about_a_hundred_times() {
        let mut c = Cadence::new(Some(2000), None, 0, 0.0);
        let mut written = 0;
        for step in 1..=2000 {
            if c.due(step, step as f64) {
                c.wrote(step, step as f64, 0.0);
                written += 1;
            }
        }
        assert_eq!(written, PER_RUN);
        // Resumed at step 700: the first preview comes a gap later, not at once.
        let c = Cadence::new(Some(2000), None, 700, 5.0);
        assert!(!c.due(701, 6.0) && c.due(720, 6.0));
    }

    #[test]
    fn previews_take_at_most_one_percent_of_the_time() {
        // Steps of 0.1 s, previews of 0.5 s: the step count alone would preview every 20 steps (25%).
        let mut c = Cadence::new(Some(2000), None, 0, 0.0);
        let (mut t, mut spent) = (0.0, 0.0);
        for step in 1..=2000 {
            t += 0.1;
            if c.due(step, t) {
                c.wrote(step, t, 0.5);
                t += 0.5;
                spent += 0.5;
            }
        }
        assert!(spent / t <= 0.0101 && spent > 0.0, "{spent} of {t} s");
    }

    #[test]
    fn a_timed_run_previews_by_minutes() {
        // 10 minutes and no step count: every 6 s of training at most.
        let mut c = Cadence::new(None, Some(600.0), 0, 0.0);
        assert!(!c.due(1, 5.9) && c.due(1, 6.0));
        c.wrote(1, 6.0, 0.01);
        assert!(!c.due(2, 11.9) && c.due(2, 12.1));
    }
}
