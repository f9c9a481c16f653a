//! `canard-train sample --model models/NAME --seeds 1-64`: one PNG per seed, plus a grid.
//!
//! `seed_S.png` is the picture canard-serve returns for `/generate?seed=S` (without
//! truncation), because both come from the same ONNX file and the same seed → latent.

use std::path::PathBuf;

use canard_shared::image::grid;
use canard_shared::latent::{latent, truncate};

/// The most seeds one command takes.
pub const MAX_SEEDS: usize = 10_000;
/// `grid.png` shows at most this many seeds (the first ones), 8 to a row.
pub const GRID_MAX: usize = 256;

#[derive(clap::Args, Debug)]
pub struct SampleArgs {
    /// The exported model's folder (models/NAME)
    #[arg(long)]
    pub model: PathBuf,
    /// Seeds: numbers and ranges separated by commas, e.g. 1-64, 1,5,9 or 0-7,42 (at most 10,000)
    #[arg(long, default_value = "0-63", value_parser = parse_seeds)]
    pub seeds: Seeds,
    /// Output folder (default samples/NAME)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Truncation ψ in (0, 1]: smaller trades variety for more typical pictures
    #[arg(long, default_value_t = 1.0, value_parser = super::parse_psi)]
    pub truncation: f32,
    /// A conditional model's class, by name or index [default: each seed's own, as the server draws it]
    #[arg(long)]
    pub class: Option<String>,
}

/// A parsed `--seeds`: distinct seeds in the order given.
#[derive(Clone, Debug, PartialEq)]
pub struct Seeds(pub Vec<u64>);

/// `1-64`, `1,5,9`, `0-7,42`: commas separate items, an item is a seed or an inclusive
/// range `A-B` with A ≤ B. Repeated seeds are kept once; at most [`MAX_SEEDS`] in all.
pub fn parse_seeds(s: &str) -> Result<Seeds, String> {
    let number = |t: &str| {
        t.trim()
            .parse::<u64>()
            .map_err(|_| format!("'{}' is not a seed (a whole number from 0 to {})", t.trim(), u64::MAX))
    };
    let mut seen = std::collections::HashSet::new();
    let mut seeds = Vec::new();
    for item in s.split(',') {
        if item.trim().is_empty() {
            return Err(format!("'{s}' has an empty item: write seeds like 1-64 or 1,5,9"));
        }
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(item)?, number(item)?),
        };
        if a > b {
            return Err(format!("range '{}' goes backwards: write {b}-{a}", item.trim()));
        }
        // Checked before expanding, so `0-18446744073709551615` fails fast.
        if b - a >= (MAX_SEEDS - seeds.len()) as u64 {
            return Err(format!("'{s}' names more than {MAX_SEEDS} seeds"));
        }
        seeds.extend((a..=b).filter(|&v| seen.insert(v)));
    }
    Ok(Seeds(seeds))
}

pub fn run(args: SampleArgs) -> anyhow::Result<()> {
    let (manifest, g, class) = super::load(&args.model, args.class.as_deref())?;
    let out = super::out_dir(args.out.as_deref(), &manifest)?;
    let seeds = &args.seeds.0;
    let mut pictures = Vec::with_capacity(seeds.len().min(GRID_MAX));
    // A chunk at a time, so 10,000 seeds never sit in memory as pictures at once.
    for chunk in seeds.chunks(64) {
        let mut z: Vec<f32> = chunk.iter().flat_map(|&s| latent(s, g.shape.nz)).collect();
        truncate(&mut z, args.truncation);
        for (seed, img) in chunk.iter().zip(super::pictures(&g, &z, &g.classes_of(chunk, class))?) {
            super::write_png(&img, &out.join(format!("seed_{seed}.png")))?;
            if pictures.len() < GRID_MAX {
                pictures.push(img);
            }
        }
    }
    super::write_png(&grid(&pictures, 8, 2), &out.join("grid.png"))?;
    let shown = if seeds.len() > GRID_MAX { format!(" (the first {GRID_MAX} in grid.png)") } else { String::new() };
    println!("wrote {} picture(s) of {} and grid.png to {}{shown}", seeds.len(), manifest.name, out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges() {
        assert_eq!(parse_seeds("1-4").unwrap().0, [1, 2, 3, 4]);
        assert_eq!(parse_seeds("1,5,9").unwrap().0, [1, 5, 9]);
        assert_eq!(parse_seeds(" 0-2, 42 ,1").unwrap().0, [0, 1, 2, 42]);
        assert_eq!(parse_seeds("7").unwrap().0, [7]);
        assert_eq!(parse_seeds("18446744073709551615").unwrap().0, [u64::MAX]);
        assert_eq!(parse_seeds("0-9999").unwrap().0.len(), MAX_SEEDS);
    }

    #[test]
    fn refuses_bad_seed_lists_with_a_reason() {
        for (bad, says) in [
            ("", "empty item"),
            ("1,,2", "empty item"),
            ("abc", "'abc' is not a seed"),
            ("-5", "'' is not a seed"),
            ("1.5", "'1.5' is not a seed"),
            ("9-3", "goes backwards: write 3-9"),
            ("18446744073709551616", "is not a seed"),
            ("0-10000", "more than 10000 seeds"),
            ("0-18446744073709551615", "more than 10000 seeds"),
            ("0-9998,20000-20001", "more than 10000 seeds"),
            ("1-2-3", "'2-3' is not a seed"),
        ] {
            let e = parse_seeds(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn truncation_must_be_in_zero_one() {
        assert_eq!(super::super::parse_psi("0.7"), Ok(0.7));
        assert_eq!(super::super::parse_psi("1"), Ok(1.0));
        for bad in ["0", "-0.5", "1.5", "nan", "x", "inf"] {
            assert!(super::super::parse_psi(bad).is_err(), "{bad}");
        }
    }
}
