//! Datasets drawn in code, so canard trains with no download.
//!
//! `shapes`: 4,096 anti-aliased coloured shapes on white — circles, squares, triangles,
//! rings and crosses in six colours, at varied sizes and positions. Five kinds a person
//! tells apart at 32×32, so a generator that collapses onto one or two is easy to see.

use image::{DynamicImage, Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::folder::to_chw;
use super::{Classes, DataError, Dataset};

pub const NAMES: [&str; 1] = ["shapes"];
pub const SHAPES_COUNT: usize = 4096;

const PALETTE: [[u8; 3]; 6] =
    [[220, 40, 40], [240, 140, 20], [40, 160, 60], [30, 90, 220], [140, 50, 180], [30, 30, 30]];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Ring,
    Cross,
}

pub const SHAPES: [Shape; 5] = [Shape::Circle, Shape::Square, Shape::Triangle, Shape::Ring, Shape::Cross];

impl Shape {
    /// Whether the point (dx, dy), relative to the centre, is inside a shape of radius r.
    fn contains(self, dx: f32, dy: f32, r: f32) -> bool {
        match self {
            Shape::Circle => dx * dx + dy * dy <= r * r,
            Shape::Square => dx.abs() <= 0.85 * r && dy.abs() <= 0.85 * r,
            // Apex up at -r, base at +0.8r.
            Shape::Triangle => dy >= -r && dy <= 0.8 * r && dx.abs() <= (dy + r) / 1.8,
            Shape::Ring => (0.55 * r * 0.55 * r..=r * r).contains(&(dx * dx + dy * dy)),
            Shape::Cross => (dx.abs() <= 0.3 * r && dy.abs() <= r) || (dy.abs() <= 0.3 * r && dx.abs() <= r),
        }
    }
}

pub fn generate(name: &str, size: usize, channels: usize, seed: u64) -> Result<Dataset, DataError> {
    if name != "shapes" {
        return Err(DataError::UnknownBuiltin(name.to_string()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5348_4150_4553); // "SHAPES": independent of the trainer's stream
    let mut pixels = Vec::with_capacity(SHAPES_COUNT * channels * size * size);
    for i in 0..SHAPES_COUNT {
        let shape = SHAPES[i % SHAPES.len()];
        pixels.extend(to_chw(&draw(shape, size, &mut rng), channels));
    }
    // Its kinds are its classes (`--classes`), in the order drawn.
    let names = SHAPES.iter().map(|s| format!("{s:?}").to_lowercase()).collect();
    let labels = (0..SHAPES_COUNT).map(|i| (i % SHAPES.len()) as u32).collect();
    let classes = Classes { names, labels };
    Ok(Dataset { source: format!("builtin:{name}"), pixels, len: SHAPES_COUNT, channels, size, classes })
}

/// One shape with random colour, radius and centre, 4×4 supersampled.
pub fn draw(shape: Shape, size: usize, rng: &mut impl Rng) -> DynamicImage {
    let s = size as f32;
    let colour = PALETTE[rng.random_range(0..PALETTE.len())];
    let r = s * rng.random_range(0.2..0.34);
    let cx = s * 0.5 + rng.random_range(-0.12..0.12) * s;
    let cy = s * 0.5 + rng.random_range(-0.12..0.12) * s;
    const SUB: usize = 4;
    let img = RgbImage::from_fn(size as u32, size as u32, |x, y| {
        let mut hits = 0;
        for sy in 0..SUB {
            for sx in 0..SUB {
                let px = x as f32 + (sx as f32 + 0.5) / SUB as f32;
                let py = y as f32 + (sy as f32 + 0.5) / SUB as f32;
                hits += shape.contains(px - cx, py - cy, r) as usize;
            }
        }
        let cover = hits as f32 / (SUB * SUB) as f32;
        Rgb(colour.map(|c| (c as f32 * cover + 255.0 * (1.0 - cover)).round() as u8))
    });
    DynamicImage::ImageRgb8(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_deterministic_by_seed_and_draws_every_kind() {
        let a = generate("shapes", 32, 3, 1).unwrap();
        let b = generate("shapes", 32, 3, 1).unwrap();
        let c = generate("shapes", 32, 3, 2).unwrap();
        assert_eq!(a.pixels, b.pixels);
        assert_ne!(a.pixels, c.pixels);
        assert_eq!((a.len, a.channels, a.size), (SHAPES_COUNT, 3, 32));
        assert_eq!(a.pixels.len(), SHAPES_COUNT * 3 * 32 * 32);
        assert!(a.pixels.contains(&255) && a.pixels.iter().any(|&v| v < 128), "white background and ink");
        let grey = generate("shapes", 16, 1, 1).unwrap();
        assert_eq!(grey.pixels.len(), SHAPES_COUNT * 16 * 16);
    }

    #[test]
    fn shapes_cover_different_areas_on_a_white_background() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let mut areas = Vec::new();
        for shape in SHAPES {
            let img = draw(shape, 32, &mut rng).to_rgb8();
            assert_eq!(img.get_pixel(0, 0).0, [255, 255, 255], "{shape:?} corner is background");
            let inked = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
            assert!(inked > 40, "{shape:?} is visible ({inked} px)");
            areas.push(inked);
        }
        areas.sort();
        areas.dedup();
        assert_eq!(areas.len(), SHAPES.len());
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let err = generate("bikes2", 32, 3, 0).unwrap_err().to_string();
        assert!(err.contains("shapes"), "{err}");
    }
}
