//! What a request asks the generator for: points in latent space, named by seeds.
//!
//! A [`Point`] is a few bytes; the latent vector itself is computed on the model's
//! inference thread (never on an HTTP worker), with the shared algorithms, so the
//! server's `z` for seed S is the trainer's.

use canard_shared::latent::{latent, slerp, truncate};

/// `slerp(z(from), z(to), t)`, then truncated by `psi`. A plain seed is `from == to`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub from: u64,
    pub to: u64,
    pub t: f32,
    pub psi: f32,
}

impl Point {
    pub fn seed(seed: u64) -> Point {
        Point { from: seed, to: seed, t: 0.0, psi: 1.0 }
    }

    /// The point `t` of the way from `from` to `to` (0 ≤ t ≤ 1) on the great circle.
    pub fn between(from: u64, to: u64, t: f32) -> Point {
        Point { from, to, t, psi: 1.0 }
    }

    pub fn truncated(self, psi: f32) -> Point {
        Point { psi, ..self }
    }

    /// The latent vector, `dim` values long. The endpoints are taken as they are
    /// (not through slerp's arithmetic) so that `t = 0` and `t = 1` give exactly the
    /// two seeds' own vectors, and so their own pictures.
    pub fn z(&self, dim: usize) -> Vec<f32> {
        let mut z = if self.from == self.to || self.t <= 0.0 {
            latent(self.from, dim)
        } else if self.t >= 1.0 {
            latent(self.to, dim)
        } else {
            slerp(&latent(self.from, dim), &latent(self.to, dim), self.t)
        };
        truncate(&mut z, self.psi);
        z
    }
}

/// The `[points.len(), dim]` input batch.
pub fn batch(points: &[Point], dim: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(points.len() * dim);
    for p in points {
        out.extend(p.z(dim));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_the_seeds_and_truncation_scales() {
        assert_eq!(Point::seed(5).z(16), latent(5, 16));
        assert_eq!(Point::between(5, 9, 0.0).z(16), latent(5, 16));
        assert_eq!(Point::between(5, 9, 1.0).z(16), latent(9, 16));
        let mid = Point::between(5, 9, 0.5).z(16);
        assert_ne!(mid, latent(5, 16));
        assert_eq!(mid, slerp(&latent(5, 16), &latent(9, 16), 0.5));
        let half: Vec<f32> = latent(5, 16).iter().map(|v| v * 0.5).collect();
        assert_eq!(Point::seed(5).truncated(0.5).z(16), half);
        assert_eq!(batch(&[Point::seed(1), Point::seed(2)], 4), [latent(1, 4), latent(2, 4)].concat());
    }
}
