//! Does a model invent or copy? Each generated picture's distance to its nearest training
//! picture, beside the training pictures' distances to their own nearest neighbours, and
//! the pairs side by side (`nearest.png`). On a small folder a generator can learn the
//! pictures by heart; SWD alone would then call it perfect.
//!
//! Distances are root-mean-square differences of pixel values in [0, 1], over every
//! value of the picture: 0 is the same picture, 0.02 is invisible, 0.3 is very different.

use std::fmt;

use rayon::prelude::*;

use crate::data::Dataset;

/// What [`nearest`] found.
pub struct Nearest {
    /// Per generated picture: the index of its nearest training picture, and the distance.
    pub generated: Vec<(usize, f64)>,
    /// Per training picture of a sample: the distance to its nearest other training picture
    /// that is not an exact copy of it.
    pub training: Vec<f64>,
    /// Training pictures that are exact copies of another (a folder with the same file
    /// twice): left out of `training`, where their distance 0 would make every copy look new.
    pub duplicates: usize,
}

/// Generated pictures (`fakes`, NCHW in [-1, 1], at the data's size and channels) against
/// every picture of `data`; `sample` training pictures (chosen with `seed`) against all
/// the others that differ from them.
pub fn nearest(fakes: &[f32], data: &Dataset, sample: usize, seed: u64) -> Nearest {
    let n = data.image_len();
    let reals: Vec<f32> = data.pixels.iter().map(|&p| p as f32 / 255.0).collect();
    // `distinct`: only pictures that differ from `picture` count (a training picture's exact copies).
    let closest = |picture: &[f32], distinct: bool| -> (usize, f64) {
        let mut best = (usize::MAX, f64::INFINITY);
        for (i, real) in reals.chunks(n).enumerate() {
            let d: f32 = picture.iter().zip(real).map(|(a, b)| (a - b) * (a - b)).sum();
            if distinct && d == 0.0 {
                continue;
            }
            if (d as f64) < best.1 {
                best = (i, d as f64);
            }
        }
        (best.0, (best.1 / n as f64).sqrt())
    };
    let generated = fakes
        .par_chunks(n)
        .map(|f| {
            let picture: Vec<f32> = f.iter().map(|&v| ((v + 1.0) / 2.0).clamp(0.0, 1.0)).collect();
            closest(&picture, false)
        })
        .collect();
    let picked = match data.len > sample {
        true => {
            use rand::SeedableRng;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            rand::seq::index::sample(&mut rng, data.len, sample).into_vec()
        }
        false => (0..data.len).collect(),
    };
    // A folder of one picture (or of copies of one) has no distinct neighbour: no distance.
    let training = picked
        .par_iter()
        .map(|&i| closest(&reals[i * n..(i + 1) * n], true).1)
        .filter(|d| d.is_finite())
        .collect::<Vec<f64>>();
    let distinct: std::collections::HashSet<&[u8]> = data.pixels.chunks(n.max(1)).collect();
    Nearest { generated, training, duplicates: data.len - distinct.len() }
}

impl Nearest {
    /// Generated pictures closer to a training picture than all but the closest tenth of
    /// training pictures are to theirs: about a tenth when the model samples like the data,
    /// many more when it copies.
    pub fn suspiciously_close(&self) -> (usize, f64) {
        let threshold = quantile(&sorted(&self.training), 0.1);
        (self.generated.iter().filter(|(_, d)| *d < threshold).count(), threshold)
    }
}

/// The q-quantile (nearest rank) of `sorted`, which is in ascending order; NaN when empty.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n => sorted[((n - 1) as f64 * q).round() as usize],
    }
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

impl fmt::Display for Nearest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gen: Vec<f64> = self.generated.iter().map(|g| g.1).collect();
        let row = |f: &mut fmt::Formatter<'_>, what: &str, v: &[f64]| {
            let v = sorted(v);
            let (lo, med) = (quantile(&v, 0.0), quantile(&v, 0.5));
            writeln!(f, "| {what} | {} | {lo:.3} | {:.3} | {med:.3} |", v.len(), quantile(&v, 0.1))
        };
        writeln!(f, "| distance to the nearest training picture | pictures | min | 10% | median |")?;
        writeln!(f, "|---|---|---|---|---|")?;
        row(f, "generated", &gen)?;
        row(f, "training (to the nearest other)", &self.training)?;
        if self.duplicates > 0 {
            writeln!(
                f,
                "{} training pictures are exact copies of another; the training distances leave them out.",
                self.duplicates
            )?;
        }
        let (close, threshold) = self.suspiciously_close();
        let share = close as f64 / gen.len().max(1) as f64;
        write!(
            f,
            "{close} of {} generated pictures ({:.0}%) are nearer a training picture than 90% of training pictures \
             are to theirs (distance < {threshold:.3}); ",
            gen.len(),
            100.0 * share
        )?;
        match share {
            s if s > 0.5 => write!(f, "most are near-copies: the model is memorising its pictures"),
            s if s > 0.25 => {
                write!(f, "more than a model that invents would make: look at the pairs (nearest.png) for copies")
            }
            _ => write!(f, "no sign of copying"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pixels: Vec<u8>, len: usize) -> Dataset {
        Dataset { source: "test".into(), pixels, len, channels: 1, size: 2, ..Default::default() }
    }

    /// Random pixel values, the same for the same seed (a linear congruential generator).
    fn random_pixels(seed: u64) -> impl FnMut() -> u8 {
        let mut state = seed;
        move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 56) as u8
        }
    }

    fn to_f(p: &[u8]) -> Vec<f32> {
        p.iter().map(|&v| v as f32 / 127.5 - 1.0).collect()
    }

    #[test]
    fn finds_the_nearest_picture_and_its_distance() {
        // Four 2×2 grey pictures: black, white, mid-grey, and black with one white pixel.
        let d = data([[0, 0, 0, 0], [255, 255, 255, 255], [128, 128, 128, 128], [255, 0, 0, 0]].concat(), 4);
        // A generated white picture, and a near-black one.
        let fakes = [1.0f32, 1.0, 1.0, 1.0, -1.0, -1.0, -0.9, -1.0];
        let n = nearest(&fakes, &d, 10, 0);
        assert_eq!(n.generated[0].0, 1);
        assert!(n.generated[0].1 < 1e-6, "{:?}", n.generated);
        assert_eq!(n.generated[1].0, 0);
        assert!((n.generated[1].1 - (0.05f64.powi(2) / 4.0).sqrt()).abs() < 1e-6, "{:?}", n.generated);
        // Each training picture's nearest other: black ↔ the one-pixel picture at √(1/4) = 0.5.
        assert_eq!(n.training.len(), 4);
        assert!((n.training[0] - 0.5).abs() < 1e-6, "{:?}", n.training);
    }

    #[test]
    fn copies_are_called_copies_and_inventions_are_not() {
        // 40 random pictures; "copies" are the first 20 of them, "inventions" new random ones.
        let mut next = random_pixels(7);
        let pixels: Vec<u8> = (0..40 * 4).map(|_| next()).collect();
        let d = data(pixels.clone(), 40);
        let copies = nearest(&to_f(&pixels[..20 * 4]), &d, 40, 0);
        assert_eq!(copies.suspiciously_close().0, 20);
        assert!(copies.to_string().contains("memorising"), "{copies}");
        let new: Vec<u8> = (0..20 * 4).map(|_| next()).collect();
        let inventions = nearest(&to_f(&new), &d, 40, 0);
        assert!(inventions.suspiciously_close().0 <= 8, "{inventions}");
        assert!(!inventions.to_string().contains("memorising"), "{inventions}");
    }

    /// Exact duplicates in the training folder do not blind the check: their distance 0
    /// once made the threshold 0, so 64 exact copies read "no sign of copying".
    #[test]
    fn duplicate_training_pictures_do_not_hide_copies() {
        let mut next = random_pixels(11);
        let mut pixels: Vec<u8> = (0..40 * 4).map(|_| next()).collect();
        // Three files twice over.
        for i in [0, 5, 9] {
            pixels.extend_from_within(i * 4..(i + 1) * 4);
        }
        let d = data(pixels.clone(), 43);
        let copies: Vec<u8> = (0..64).flat_map(|k| pixels[(k % 40) * 4..(k % 40 + 1) * 4].to_vec()).collect();
        let found = nearest(&to_f(&copies), &d, 128, 0);
        assert_eq!(found.duplicates, 3);
        assert!(found.training.iter().all(|&t| t > 0.0), "{:?}", found.training);
        assert_eq!(found.suspiciously_close().0, 64);
        let verdict = found.to_string();
        assert!(
            verdict.contains("memorising") && verdict.contains("3 training pictures are exact copies"),
            "{verdict}"
        );
    }
}
