//! One generated image (CHW f32) → PNG bytes.

use canard_shared::image::{batch_to_images, encode_png, ImageError};
use canard_shared::Manifest;

/// The picture a model produces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageSpec {
    pub channels: usize,
    pub size: usize,
    pub range: [f32; 2],
}

impl ImageSpec {
    pub fn of(m: &Manifest) -> ImageSpec {
        ImageSpec { channels: m.channels as usize, size: m.image_size as usize, range: m.output_range }
    }

    /// Values in one image.
    pub fn len(&self) -> usize {
        self.channels * self.size * self.size
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `chw` is one image of `spec`. The shared pixel mapping expects [-1, 1]; a model
/// whose manifest declares another range is mapped onto it linearly first.
pub fn png(spec: &ImageSpec, chw: &[f32]) -> Result<Vec<u8>, ImageError> {
    let rescaled: Vec<f32>;
    let values = if spec.range == [-1.0, 1.0] {
        chw
    } else {
        let [lo, hi] = spec.range;
        rescaled = chw.iter().map(|v| (v - lo) / (hi - lo) * 2.0 - 1.0).collect();
        &rescaled
    };
    let images = batch_to_images(values, 1, spec.channels, spec.size, spec.size)?;
    match images.first() {
        Some(image) => encode_png(image),
        // batch_to_images checked the length, so one image came back.
        None => Err(ImageError::Shape {
            expected: spec.len(),
            got: chw.len(),
            n: 1,
            c: spec.channels,
            h: spec.size,
            w: spec.size,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png: &[u8]) -> Vec<u8> {
        image::load_from_memory(png).unwrap().to_rgb8().into_raw()
    }

    #[test]
    fn encodes_one_image_and_rejects_wrong_lengths() {
        let spec = ImageSpec { channels: 3, size: 4, range: [-1.0, 1.0] };
        let png = png(&spec, &[1.0; 48]).unwrap();
        assert_eq!(decode(&png), vec![255; 48]);
        assert!(super::png(&spec, &[1.0; 47]).is_err());
    }

    #[test]
    fn other_output_ranges_are_mapped_onto_the_pixel_range() {
        let spec = ImageSpec { channels: 1, size: 4, range: [0.0, 1.0] };
        let px = decode(&png(&spec, &[0.0; 16]).unwrap());
        assert!(px.iter().all(|&p| p == 0));
        let px = decode(&png(&spec, &[1.0; 16]).unwrap());
        assert!(px.iter().all(|&p| p == 255));
    }
}
