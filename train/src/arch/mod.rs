//! The architectures. One enum names them; each is one file holding its networks, its
//! optimisers, its step and what the guard, the length and the progress table need to
//! know of it ([`Architecture`]). The rest of canard asks the architecture rather than
//! matching on it; the per-architecture defaults of the settings stay beside the settings
//! they belong to (`crate::config`).

mod dcgan;
mod fastgan;
mod wgan;
mod wgan_gp;

use candle_core::Result;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

use crate::config::TrainConfig;
use crate::nn::{self, Init, Net, Shape};
use crate::optim::Rule;
use crate::report::LossRecord;
use crate::step::{StepCtx, StepLosses, Steps};
use crate::trainer::Gan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// Radford et al. 2016: BCE loss, Adam 2e-4 β1 0.5, BatchNorm in both networks.
    Dcgan,
    /// Arjovsky et al. 2017: critic clipped to ±0.01, RMSprop 5e-5, 5 critic steps.
    Wgan,
    /// Gulrajani et al. 2017: gradient penalty λ 10, Adam 1e-4 β (0, 0.9), LayerNorm critic.
    WganGp,
    /// canard's small-data GAN after FastGAN (Liu et al. 2021): GLU upsampling blocks with
    /// skip-layer excitation; a spectrally normalised critic with hinge loss that also
    /// rebuilds the real pictures; DiffAugment always; Adam 2e-4 β (0.5, 0.999).
    Fastgan,
}

impl Arch {
    pub const ALL: [Arch; 4] = [Arch::Fastgan, Arch::Dcgan, Arch::Wgan, Arch::WganGp];

    /// Its file's answers.
    pub fn get(self) -> &'static dyn Architecture {
        match self {
            Arch::Dcgan => &dcgan::Dcgan,
            Arch::Wgan => &wgan::Wgan,
            Arch::WganGp => &wgan_gp::WganGp,
            Arch::Fastgan => &fastgan::Fastgan,
        }
    }

    /// Its name, as `--arch`, `config.toml` and the manifest spell it.
    pub fn name(self) -> String {
        self.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string())
    }

    /// Its generator: latents [N, nz, 1, 1] → pictures [N, C, S, S] in [-1, 1].
    pub fn generator(self, init: &mut Init, shape: Shape) -> Result<Net> {
        self.get().generator(init, shape)
    }

    /// How many values its generator holds, counted from its layers without allocating
    /// them; `None` past `limit`.
    pub fn generator_parameters(self, shape: Shape, limit: usize) -> Option<usize> {
        Init::count(limit, |init| self.generator(init, shape))
    }

    /// The same for its critic.
    pub fn critic_parameters(self, shape: Shape, limit: usize) -> Option<usize> {
        Init::count(limit, |init| self.get().critic(init, shape))
    }

    /// Whether it can build networks of `shape` (the reason when not).
    pub fn validate_shape(self, shape: &Shape) -> std::result::Result<(), String> {
        self.get().validate(shape)
    }
}

/// What an architecture is. The defaults are DCGAN's networks, Adam with the settings'
/// β, `--critic-steps` critic updates a step, nothing to add after a critic update.
pub trait Architecture: Sync {
    /// The settings only some architectures read that this one reads (the others are
    /// refused when given: `crate::config`).
    fn reads(&self) -> &'static [&'static str];

    fn generator(&self, init: &mut Init, shape: Shape) -> Result<Net> {
        nn::dcgan::generator(init, shape)
    }

    fn critic(&self, init: &mut Init, shape: Shape) -> Result<Net> {
        nn::dcgan::critic(init, shape, nn::dcgan::CriticNorm::Batch)
    }

    /// The critic's blocks that `--freeze-d` can keep, input first: their parameters' prefixes.
    fn critic_blocks(&self, shape: &Shape) -> Vec<String> {
        nn::dcgan::critic_blocks(shape)
    }

    fn validate(&self, shape: &Shape) -> std::result::Result<(), String> {
        shape.validate()
    }

    /// Both optimisers' update rule.
    fn rule(&self, cfg: &TrainConfig) -> Rule {
        Rule::Adam { beta1: cfg.beta1, beta2: cfg.beta2, eps: 1e-8 }
    }

    /// What follows every critic update, and the critic's initialisation (WGAN's clipping).
    fn constrain_critic(&self, _gan: &Gan, _cfg: &TrainConfig) -> Result<()> {
        Ok(())
    }

    /// Critic updates before generator update `gen_step` (0-based).
    fn critic_updates(&self, _gen_step: usize, cfg: &TrainConfig) -> usize {
        cfg.critic_steps
    }

    /// Batches of data the first `steps` generator updates consume, in closed form (a
    /// loop over a billion steps took seconds): one per critic update.
    fn batches_for_steps(&self, cfg: &TrainConfig, steps: u128) -> u128 {
        cfg.critic_steps as u128 * steps
    }

    /// Whether it trains on augmented pictures whatever the data's size.
    fn always_augments(&self) -> bool {
        false
    }

    /// The progress table's column names: the critic's two scores and the third loss.
    fn labels(&self) -> [&'static str; 3] {
        ["C(x)", "C(G(z))", "GP"]
    }

    /// What else to try when its losses stop being numbers (after halving the rates).
    fn divergence_hint(&self) -> &'static str {
        ""
    }

    /// Whether a step's record shows the critic winning outright (the guard counts them).
    fn critic_wins(&self, _r: &LossRecord) -> bool {
        false
    }

    /// Training step `step` (from 1): its losses and the pictures it generated.
    fn step(&self, c: &StepCtx, s: Steps, step: usize) -> anyhow::Result<(StepLosses, usize)>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn each_name_is_the_one_the_settings_and_the_manifest_write() {
        assert_eq!(Arch::ALL.map(Arch::name), ["fastgan", "dcgan", "wgan", "wgan-gp"]);
        for arch in Arch::ALL {
            assert_eq!(toml::Value::try_from(arch).unwrap().as_str(), Some(arch.name().as_str()));
        }
    }

    #[test]
    fn the_wgan_critic_schedule_matches_the_reference_code() {
        let cfg = |arch, n| {
            let s = Settings {
                data: Some("d".into()),
                name: Some("n".into()),
                arch: Some(arch),
                critic_steps: Some(n),
                critic_steps_burst: Some(100),
                ..Settings::default()
            };
            s.resolve().unwrap()
        };
        let wgan = cfg(Arch::Wgan, 5);
        let schedule: Vec<usize> = (0..1002).map(|g| Arch::Wgan.get().critic_updates(g, &wgan)).collect();
        assert!(schedule[..25].iter().all(|&n| n == 100));
        assert_eq!(&schedule[25..30], &[5; 5]);
        assert_eq!((schedule[499], schedule[500], schedule[501], schedule[1000]), (5, 100, 5, 100));
        assert_eq!(schedule.iter().filter(|&&n| n == 100).count(), 25 + 2);
        let gp = cfg(Arch::WganGp, 5);
        assert!((0..600).all(|g| Arch::WganGp.get().critic_updates(g, &gp) == 5));
        let dcgan = cfg(Arch::Dcgan, 1);
        assert!((0..600).all(|g| Arch::Dcgan.get().critic_updates(g, &dcgan) == 1));
        // The closed form the length counts with is the schedule's sum.
        for arch in Arch::ALL {
            let c = cfg(arch, 1 + (arch == Arch::Wgan || arch == Arch::WganGp) as usize * 4);
            let sum: u128 = (0..1002).map(|g| arch.get().critic_updates(g, &c) as u128).sum();
            assert_eq!(arch.get().batches_for_steps(&c, 1002), sum, "{arch:?}");
        }
    }
}
