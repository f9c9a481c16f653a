//! `canard-train`: train a GAN on a folder of pictures and export it for canard-serve;
//! `eval`, `sample` and `interpolate` look at an exported model without the server.

use std::path::PathBuf;

use canard_train::{tools, train_with, Settings, Start};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "canard-train",
    version,
    about = "Train a GAN (fastgan, DCGAN, WGAN, WGAN-GP) on a folder of pictures and export it to ONNX for canard-serve",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    train: TrainArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train (the default when no subcommand is given)
    Train(TrainArgs),
    /// Sliced Wasserstein distance between a model's images and a dataset
    Eval(tools::eval::EvalArgs),
    /// Write one PNG per seed, and a grid
    Sample(tools::sample::SampleArgs),
    /// Walk through latent space between two seeds (slerp): a strip and a GIF
    Interpolate(tools::interpolate::InterpolateArgs),
    /// Find the latent vector whose picture is closest to a photo: the pair, a GIF of the search, the latent
    Project(tools::project::ProjectArgs),
}

#[derive(Args, Debug)]
struct TrainArgs {
    #[command(flatten)]
    settings: Settings,
    /// A TOML file with any of the settings above (same names, e.g. `lr-g = 1e-4`); flags win
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue the run's newest checkpoint (re-running with the same --name does too); fail if none
    #[arg(long, conflicts_with = "fresh")]
    resume: bool,
    /// Discard runs/NAME (samples, checkpoints) and start over
    #[arg(long)]
    fresh: bool,
}

fn main() -> anyhow::Result<()> {
    canard_train::alloc::keep_freed_memory();
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Train(cli.train)) {
        Command::Train(args) => train(args),
        Command::Eval(args) => tools::eval::run(args).map(|_| ()),
        Command::Sample(args) => tools::sample::run(args),
        Command::Interpolate(args) => tools::interpolate::run(args),
        Command::Project(args) => tools::project::run(args).map(|_| ()),
    }
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    let start = match (args.resume, args.fresh) {
        (true, _) => Start::Resume,
        (_, true) => Start::Fresh,
        _ => Start::Auto,
    };
    let out = train_with(&args.settings, args.config.as_deref(), start)?;
    eprintln!(
        "canard-train: done. Samples in {}/samples; serve it with: canard-serve --model {}",
        out.run_dir.display(),
        out.config.name
    );
    Ok(())
}
