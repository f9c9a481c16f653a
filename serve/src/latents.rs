//! What a request asks the generator for: points in latent space, named by seeds or given
//! as vectors (`latent=`, what `canard-train project` finds).
//!
//! A [`Point`] is small; a seed's latent vector is computed on the model's inference
//! thread (never on an HTTP worker), with the shared algorithms, so the server's `z` for
//! seed S is the trainer's.

use std::sync::Arc;

use canard_shared::latent::{latent, slerp, truncate};

/// One end of a path through latent space.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    Seed(u64),
    /// A vector of the model's latent length (checked when the request is read).
    Latent(Arc<[f32]>),
}

impl End {
    fn z(&self, dim: usize) -> Vec<f32> {
        match self {
            End::Seed(seed) => latent(*seed, dim),
            End::Latent(z) => z.to_vec(),
        }
    }
}

/// `slerp(z(from), z(to), t)`, then truncated by `psi`. A plain seed is `from == to`.
/// On a conditional model, the picture is of `class` (the route always sets one there).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub from: End,
    pub to: End,
    pub t: f32,
    pub psi: f32,
    pub class: Option<u32>,
}

impl Point {
    pub fn seed(seed: u64) -> Point {
        Point::at(End::Seed(seed))
    }

    /// The picture of one end.
    pub fn at(end: End) -> Point {
        Point { from: end.clone(), to: end, t: 0.0, psi: 1.0, class: None }
    }

    /// The point `t` of the way from `from` to `to` (0 ≤ t ≤ 1) on the great circle.
    pub fn between(from: End, to: End, t: f32) -> Point {
        Point { from, to, t, psi: 1.0, class: None }
    }

    pub fn truncated(self, psi: f32) -> Point {
        Point { psi, ..self }
    }

    /// The same point, a picture of `class` (a conditional model's).
    pub fn of_class(self, class: Option<u32>) -> Point {
        Point { class, ..self }
    }

    /// The latent vector, `dim` values long. The endpoints are taken as they are
    /// (not through slerp's arithmetic) so that `t = 0` and `t = 1` give exactly the
    /// two ends' own vectors, and so their own pictures.
    pub fn z(&self, dim: usize) -> Vec<f32> {
        let mut z = if self.from == self.to || self.t <= 0.0 {
            self.from.z(dim)
        } else if self.t >= 1.0 {
            self.to.z(dim)
        } else {
            slerp(&self.from.z(dim), &self.to.z(dim), self.t)
        };
        truncate(&mut z, self.psi);
        z
    }
}

/// The `[points.len()]` class input of a conditional model (class 0 where a point names none).
pub fn classes(points: &[Point]) -> Vec<i64> {
    points.iter().map(|p| i64::from(p.class.unwrap_or(0))).collect()
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
        let (five, nine) = (End::Seed(5), End::Seed(9));
        assert_eq!(Point::between(five.clone(), nine.clone(), 0.0).z(16), latent(5, 16));
        assert_eq!(Point::between(five.clone(), nine.clone(), 1.0).z(16), latent(9, 16));
        let mid = Point::between(five, nine.clone(), 0.5).z(16);
        assert_ne!(mid, latent(5, 16));
        assert_eq!(mid, slerp(&latent(5, 16), &latent(9, 16), 0.5));
        let half: Vec<f32> = latent(5, 16).iter().map(|v| v * 0.5).collect();
        assert_eq!(Point::seed(5).truncated(0.5).z(16), half);
        assert_eq!(batch(&[Point::seed(1), Point::seed(2)], 4), [latent(1, 4), latent(2, 4)].concat());
        // A given vector is taken as it is, and walks to a seed as a seed's does.
        let z: Arc<[f32]> = latent(77, 16).iter().map(|v| v * 0.9).collect();
        assert_eq!(Point::at(End::Latent(z.clone())).z(16), z.to_vec());
        let walk = Point::between(End::Latent(z.clone()), nine, 0.5).z(16);
        assert_eq!(walk, slerp(&z, &latent(9, 16), 0.5));
    }
}
