//! The divergence guard: stops a run that has gone wrong, with what happened and what to try
//! (the trainer adds where the run can go on from).

use crate::config::Arch;
use crate::report::LossRecord;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Divergence {
    #[error(
        "training diverged at step {step}: a loss became {value} (NaN or infinite). \
         Try a lower learning rate (e.g. --lr-g {lr_g:e} --lr-d {lr_d:e}){hint}."
    )]
    NonFinite { step: usize, value: f32, lr_g: f64, lr_d: f64, hint: &'static str },
    #[error(
        "the discriminator has won outright for {steps} steps (D(x) ≈ {d_real:.4}, D(G(z)) ≈ {d_fake:.5} at step {step}): \
         the generator gets no useful gradient any more and will not recover. Try a lower discriminator \
         learning rate (--lr-d), --augment (DiffAugment) if you have few pictures, or --arch wgan-gp."
    )]
    DiscriminatorWins { step: usize, steps: usize, d_real: f32, d_fake: f32 },
}

pub struct Guard {
    arch: Arch,
    patience: usize,
    lr_g: f64,
    lr_d: f64,
    /// Consecutive steps the discriminator has been winning outright.
    pub streak: usize,
}

impl Guard {
    pub fn new(arch: Arch, patience: usize, lr_g: f64, lr_d: f64) -> Self {
        Self { arch, patience, lr_g, lr_d, streak: 0 }
    }

    pub fn check(&mut self, r: &LossRecord) -> Result<(), Divergence> {
        if let Some(&value) = [r.loss_d, r.loss_g, r.d_real, r.d_fake, r.gp].iter().find(|v| !v.is_finite()) {
            let hint = self.arch.get().divergence_hint();
            return Err(Divergence::NonFinite {
                step: r.step,
                value,
                lr_g: self.lr_g / 2.0,
                lr_d: self.lr_d / 2.0,
                hint,
            });
        }
        // A Wasserstein critic cannot "win": its scores are unbounded by design.
        if self.arch.get().critic_wins(r) {
            self.streak += 1;
            if self.streak >= self.patience {
                return Err(Divergence::DiscriminatorWins {
                    step: r.step,
                    steps: self.streak,
                    d_real: r.d_real,
                    d_fake: r.d_fake,
                });
            }
        } else {
            self.streak = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(step: usize, d_real: f32, d_fake: f32, loss: f32) -> LossRecord {
        LossRecord { step, epoch: 1, loss_d: loss, loss_g: 1.0, d_real, d_fake, gp: 0.0, seconds: 0.0 }
    }

    #[test]
    fn stops_on_nan_or_inf_with_advice() {
        let mut g = Guard::new(Arch::Dcgan, 10, 2e-4, 2e-4);
        assert!(g.check(&rec(1, 0.6, 0.4, 1.3)).is_ok());
        let e = g.check(&rec(2, 0.6, 0.4, f32::NAN)).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Divergence::NonFinite { step: 2, .. }));
        assert!(msg.contains("lower learning rate") && msg.contains("1e-4"), "{msg}");
        let mut g = Guard::new(Arch::WganGp, 10, 1e-4, 1e-4);
        assert!(g.check(&LossRecord { gp: f32::INFINITY, ..rec(3, 1.0, -1.0, 1.0) }).is_err());
    }

    #[test]
    fn stops_when_the_discriminator_wins_for_patience_steps_in_a_row() {
        let mut g = Guard::new(Arch::Dcgan, 5, 2e-4, 2e-4);
        for s in 1..5 {
            assert!(g.check(&rec(s, 0.9999, 0.0001, 0.01)).is_ok());
        }
        // One ordinary step resets the count.
        assert!(g.check(&rec(5, 0.9, 0.2, 0.5)).is_ok());
        for s in 6..10 {
            assert!(g.check(&rec(s, 0.9999, 0.0001, 0.01)).is_ok());
        }
        let e = g.check(&rec(10, 0.9999, 0.0001, 0.01)).unwrap_err();
        assert!(matches!(e, Divergence::DiscriminatorWins { step: 10, steps: 5, .. }));
        assert!(e.to_string().contains("--augment"));
        // A WGAN critic with large scores is normal.
        let mut w = Guard::new(Arch::Wgan, 2, 5e-5, 5e-5);
        for s in 1..10 {
            assert!(w.check(&rec(s, 50.0, -50.0, -100.0)).is_ok());
        }
    }
}
