//! Seed → latent vector: one portable, documented algorithm.
//!
//! `z(seed)` is `dim` independent standard-normal numbers made like this:
//!
//! 1. A SplitMix64 generator starts with `state = seed` and, on each call, does
//!    `state += 0x9E3779B97F4A7C15; x = state;`
//!    `x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9; x = (x ^ (x >> 27)) * 0x94D049BB133111EB;`
//!    `return x ^ (x >> 31)` (all arithmetic wrapping, on u64).
//! 2. A uniform number in (0, 1] is `((next() >> 11) + 1) / 2^53`, in f64.
//! 3. Pairs `(u1, u2)` become two normals by Box–Muller, in f64:
//!    `r = sqrt(-2 ln u1)`, `z0 = r cos(2π u2)`, `z1 = r sin(2π u2)`, in that order.
//!    An odd `dim` drops the last `z1`.
//! 4. Each value is rounded to f32.
//!
//! Any language can reproduce it (a JavaScript or Python port is a dozen lines), and
//! the result does not depend on the batch a seed is generated in.

/// The name the manifest records for this algorithm.
pub const ALGORITHM: &str = "splitmix64-box-muller-v1";
/// The distribution `z` is drawn from.
pub const DISTRIBUTION: &str = "standard_normal";

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and the same everywhere.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut x = self.state;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// Uniform in (0, 1]: never 0, so `ln` below is always finite.
    pub fn next_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// The latent vector for `seed`, `dim` values long.
pub fn latent(seed: u64, dim: usize) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    let mut z = Vec::with_capacity(dim + 1);
    while z.len() < dim {
        let (u1, u2) = (rng.next_unit(), rng.next_unit());
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = 2.0 * std::f64::consts::PI * u2;
        z.push((r * theta.cos()) as f32);
        z.push((r * theta.sin()) as f32);
    }
    z.truncate(dim);
    z
}

/// The class a seed draws on a conditional model of `classes` classes, when a request
/// names none: SplitMix64 started at `seed ^ CLASS_STREAM`, its first output scaled to
/// `0..classes` as `(x · classes) >> 64`. Independent of the seed's latent vector, the same
/// in every batch, and reproducible in any language like [`latent`].
pub fn class_of_seed(seed: u64, classes: usize) -> usize {
    let x = SplitMix64::new(seed ^ CLASS_STREAM).next_u64();
    ((x as u128 * classes as u128) >> 64) as usize
}

/// The seed offset of [`class_of_seed`]'s stream ("CLASS" in ASCII).
pub const CLASS_STREAM: u64 = 0x43_4C_41_53_53;

/// The latent vectors of several seeds, concatenated: a `[seeds.len(), dim]` batch.
pub fn latent_batch(seeds: &[u64], dim: usize) -> Vec<f32> {
    seeds.iter().flat_map(|&s| latent(s, dim)).collect()
}

/// Spherical linear interpolation between two latent vectors (Shoemake 1985, used for
/// GAN latent walks by White 2016, "Sampling Generative Networks").
///
/// Gaussian latents concentrate near a sphere of radius `sqrt(dim)`; a straight line
/// between two of them passes through the low-norm interior the generator rarely saw,
/// while the great-circle path stays on the shell. `t = 0` gives `a`, `t = 1` gives `b`
/// (exactly, within f32 rounding). The angle is computed in f64 so that nearly
/// parallel vectors do not lose precision; when `sin(omega)` is ~0 (parallel or
/// antiparallel, or a zero vector) the formula is undefined and plain linear
/// interpolation is used instead.
///
/// The vectors should have the same length; extra values in the longer one are ignored.
pub fn slerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    let t = f64::from(t);
    let (dot, na, nb) = a.iter().zip(b).fold((0.0f64, 0.0f64, 0.0f64), |(d, x, y), (&p, &q)| {
        let (p, q) = (f64::from(p), f64::from(q));
        (d + p * q, x + p * p, y + q * q)
    });
    let norms = (na * nb).sqrt();
    let cos = if norms > 0.0 { (dot / norms).clamp(-1.0, 1.0) } else { 1.0 };
    let omega = cos.acos();
    let so = omega.sin();
    let (wa, wb) =
        if so.abs() < 1e-6 { (1.0 - t, t) } else { (((1.0 - t) * omega).sin() / so, (t * omega).sin() / so) };
    a.iter().zip(b).map(|(&p, &q)| (wa * f64::from(p) + wb * f64::from(q)) as f32).collect()
}

/// The truncation trick (Brock et al. 2018, BigGAN; Karras et al. 2019): scale `z`
/// toward the distribution's mean by `psi`. The mean of a standard normal is 0, so
/// this is `z *= psi`. `psi = 1` leaves `z` unchanged; smaller values trade variety
/// for typical, cleaner images. Callers validate the range (usually `(0, 1]`).
pub fn truncate(z: &mut [f32], psi: f32) {
    // Bit-exact identity at psi = 1 (x * 1.0 == x in IEEE 754, but be explicit).
    if psi == 1.0 {
        return;
    }
    for v in z {
        *v *= psi;
    }
}

/// The longest latent text accepted: base64 of [`crate::manifest::MAX_LATENT_DIM`] f32s.
pub const MAX_LATENT_TEXT: usize = crate::manifest::MAX_LATENT_DIM * 4 / 3 + 4;

/// A latent vector as text (`canard-train project` writes it, `/generate?latent=` reads it):
/// standard base64 of its values as little-endian f32.
pub fn encode_latent(z: &[f32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = z.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// [`encode_latent`]'s text back to `dim` values; refused, saying why, when it is not
/// base64, not `dim` values long, or holds a value that is not a finite number.
pub fn decode_latent(text: &str, dim: usize) -> Result<Vec<f32>, String> {
    use base64::Engine;
    if text.len() > MAX_LATENT_TEXT {
        return Err(format!("is {} characters long, more than any latent vector's {MAX_LATENT_TEXT}", text.len()));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("is not base64 of little-endian f32 values: {e}"))?;
    if bytes.len() != dim * 4 {
        return Err(format!(
            "holds {} bytes; this model's latent vectors are {dim} f32 values ({} bytes)",
            bytes.len(),
            dim * 4
        ));
    }
    let z: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    match z.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(format!("value {i} is {}, not a finite number", z[i])),
        None => Ok(z),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED: [usize; 8] = [4, 2, 0, 2, 4, 5, 3, 5];

    #[test]
    fn a_seeds_class_is_fixed_in_range_and_even() {
        let mut counts = [0usize; 3];
        for seed in 0..3000 {
            let c = class_of_seed(seed, 3);
            assert_eq!(c, class_of_seed(seed, 3));
            counts[c] += 1;
        }
        assert!(counts.iter().all(|&n| (900..1100).contains(&n)), "{counts:?}");
        assert!(class_of_seed(u64::MAX, 1000) < 1000);
        // Pinned, so a port can check itself.
        let pinned: Vec<usize> = (0..8).map(|s| class_of_seed(s, 10)).collect();
        assert_eq!(pinned, PINNED);
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs of the reference C implementation for seed 1234567.
        let mut rng = SplitMix64::new(1234567);
        let expected = [
            6457827717110365317u64,
            3203168211198807973,
            9817491932198370423,
            4593380528125082431,
            16408922859458223821,
        ];
        for e in expected {
            assert_eq!(rng.next_u64(), e);
        }
    }

    #[test]
    fn same_seed_same_vector_and_different_seeds_differ() {
        assert_eq!(latent(42, 100), latent(42, 100));
        assert_ne!(latent(42, 100), latent(43, 100));
        assert_eq!(latent(7, 101).len(), 101);
        // A shorter vector is a prefix of a longer one.
        assert_eq!(latent(7, 99)[..], latent(7, 100)[..99]);
    }

    #[test]
    fn values_look_standard_normal() {
        let z: Vec<f64> = (0..200u64).flat_map(|s| latent(s, 100)).map(f64::from).collect();
        let n = z.len() as f64;
        let mean = z.iter().sum::<f64>() / n;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 1.0).abs() < 0.03, "variance {var}");
        assert!(z.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn batch_is_the_concatenation_of_single_seeds() {
        let b = latent_batch(&[3, 9], 10);
        assert_eq!(&b[..10], &latent(3, 10)[..]);
        assert_eq!(&b[10..], &latent(9, 10)[..]);
    }

    fn norm(v: &[f32]) -> f64 {
        v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn slerp_endpoints_are_the_inputs() {
        let (a, b) = (latent(1, 64), latent(2, 64));
        let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-5);
        assert!(close(&slerp(&a, &b, 0.0), &a));
        assert!(close(&slerp(&a, &b, 1.0), &b));
        assert_eq!(slerp(&a, &b, 0.5).len(), 64);
    }

    #[test]
    fn slerp_of_orthogonal_unit_vectors_stays_on_the_circle() {
        let (a, b) = ([1.0f32, 0.0], [0.0f32, 1.0]);
        let m = slerp(&a, &b, 0.5);
        let h = std::f32::consts::FRAC_1_SQRT_2;
        assert!((m[0] - h).abs() < 1e-6 && (m[1] - h).abs() < 1e-6, "{m:?}");
        // Lerp would give norm 0.707; slerp keeps norm 1 all along the path.
        for i in 0..=10 {
            assert!((norm(&slerp(&a, &b, i as f32 / 10.0)) - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn slerp_falls_back_to_lerp_for_parallel_or_zero_vectors() {
        let a = [1.0f32, 2.0, 3.0];
        let b = [2.0f32, 4.0, 6.0];
        assert_eq!(slerp(&a, &b, 0.5), vec![1.5, 3.0, 4.5]);
        let z = [0.0f32; 3];
        assert_eq!(slerp(&z, &a, 0.5), vec![0.5, 1.0, 1.5]);
        assert!(slerp(&a, &a, 0.3).iter().zip(&a).all(|(p, q)| (p - q).abs() < 1e-6));
    }

    #[test]
    fn truncate_scales_toward_zero_and_one_is_identity() {
        let z = latent(5, 10);
        let mut t = z.clone();
        truncate(&mut t, 1.0);
        assert_eq!(t, z);
        truncate(&mut t, 0.5);
        assert!(t.iter().zip(&z).all(|(p, q)| *p == q * 0.5));
    }

    #[test]
    fn a_latent_reads_back_from_its_text_and_bad_text_says_why() {
        let z = latent(42, 100);
        assert_eq!(decode_latent(&encode_latent(&z), 100).unwrap(), z);
        assert!(decode_latent(&encode_latent(&z), 99)
            .unwrap_err()
            .contains("400 bytes; this model's latent vectors are 99"));
        assert!(decode_latent("not base64!", 100).unwrap_err().contains("not base64"));
        let nan = encode_latent(&[0.0, f32::NAN]);
        assert!(decode_latent(&nan, 2).unwrap_err().contains("value 1 is NaN"));
        let long = "A".repeat(MAX_LATENT_TEXT + 1);
        assert!(decode_latent(&long, 2).unwrap_err().contains("characters long"));
    }
}
