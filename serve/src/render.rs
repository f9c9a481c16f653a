//! Generated tensors (NCHW f32) → the picture a request asked for: resampled to
//! `size`, laid out alone, in a grid, in a strip or as a there-and-back animation,
//! then encoded. Runs on the blocking pool, never on an HTTP worker.

use canard_shared::image::{batch_to_images, grid, ImageError};
use canard_shared::Manifest;
use image::imageops::FilterType;
use image::DynamicImage;

use crate::encode::{self, Format};
use crate::limits::GRID_PAD;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Exactly one picture, no border.
    Single,
    /// `ceil(sqrt(n))` per row, framed by [`GRID_PAD`] black pixels.
    Grid,
    /// One row.
    Strip,
    /// Rows of this many (one row per class), framed as a grid.
    Rows(usize),
    /// Frames 0..n-1 then back down to 1: `2n - 2` frames that loop smoothly.
    PingPong,
}

/// What to make of the generated images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    pub layout: Layout,
    pub format: Format,
    /// Side of each picture in pixels.
    pub size: u32,
}

/// Pictures per row of a [`Layout::Grid`] of `n`.
pub fn grid_cols(n: usize) -> usize {
    (1..=n.max(1)).find(|c| c * c >= n).unwrap_or(1)
}

/// Pixels in the response for `n` pictures of `size`² (all frames for an
/// animation), computed without building anything.
pub fn output_pixels(n: usize, size: u32, layout: Layout) -> u64 {
    let (n, size, pad) = (n as u64, u64::from(size), u64::from(GRID_PAD));
    let framed = |cols: u64, rows: u64| (cols * (size + pad) + pad) * (rows * (size + pad) + pad);
    match layout {
        Layout::Single => size * size,
        Layout::Grid => {
            let cols = grid_cols(n as usize) as u64;
            framed(cols, n.div_ceil(cols))
        }
        Layout::Strip => framed(n, 1),
        Layout::Rows(cols) => framed(cols.max(1) as u64, n.div_ceil(cols.max(1) as u64)),
        Layout::PingPong => n.saturating_mul(2).saturating_sub(2).max(1) * size * size,
    }
}

/// `values` holds whole images of `spec`; the result is the encoded response body.
pub fn render(spec: &ImageSpec, values: &[f32], out: &Output) -> Result<Vec<u8>, ImageError> {
    let images = to_images(spec, values)?;
    let images: Vec<DynamicImage> = if out.size as usize == spec.size {
        images
    } else {
        // Lanczos3: sharp and ringing-free enough for both thumbnails and upscales.
        images.iter().map(|i| i.resize_exact(out.size, out.size, FilterType::Lanczos3)).collect()
    };
    let n = images.len();
    match out.layout {
        Layout::Single => match images.first() {
            Some(img) => encode::still(img, out.format),
            None => Err(empty(spec)),
        },
        Layout::Grid => encode::still(&grid(&images, grid_cols(n), GRID_PAD), out.format),
        Layout::Strip => encode::still(&grid(&images, n, GRID_PAD), out.format),
        Layout::Rows(cols) => encode::still(&grid(&images, cols.max(1), GRID_PAD), out.format),
        Layout::PingPong => {
            let back = images.iter().rev().skip(1).take(n.saturating_sub(2)).cloned().collect::<Vec<_>>();
            let frames = [images, back].concat();
            encode::animation(&frames)
        }
    }
}

/// The shared pixel mapping expects [-1, 1]; a model whose manifest declares
/// another range is mapped onto it linearly first.
fn to_images(spec: &ImageSpec, values: &[f32]) -> Result<Vec<DynamicImage>, ImageError> {
    let n = if spec.is_empty() { 0 } else { values.len() / spec.len() };
    let rescaled: Vec<f32>;
    let values = if spec.range == [-1.0, 1.0] {
        values
    } else {
        let [lo, hi] = spec.range;
        rescaled = values.iter().map(|v| (v - lo) / (hi - lo) * 2.0 - 1.0).collect();
        &rescaled
    };
    batch_to_images(values, n, spec.channels, spec.size, spec.size)
}

fn empty(spec: &ImageSpec) -> ImageError {
    ImageError::Shape { expected: spec.len(), got: 0, n: 1, c: spec.channels, h: spec.size, w: spec.size }
}

#[cfg(test)]
mod tests {
    use image::GenericImageView;

    use super::*;

    fn decode(bytes: &[u8]) -> DynamicImage {
        image::load_from_memory(bytes).unwrap()
    }

    const RGB4: ImageSpec = ImageSpec { channels: 3, size: 4, range: [-1.0, 1.0] };

    fn single(format: Format, size: u32) -> Output {
        Output { layout: Layout::Single, format, size }
    }

    #[test]
    fn encodes_one_image_and_rejects_wrong_lengths() {
        let png = render(&RGB4, &[1.0; 48], &single(Format::Png, 4)).unwrap();
        assert_eq!(decode(&png).to_rgb8().into_raw(), vec![255; 48]);
        assert!(render(&RGB4, &[1.0; 47], &single(Format::Png, 4)).is_err());
        assert!(render(&RGB4, &[], &single(Format::Png, 4)).is_err());
    }

    #[test]
    fn other_output_ranges_are_mapped_onto_the_pixel_range() {
        let spec = ImageSpec { channels: 1, size: 4, range: [0.0, 1.0] };
        let px = decode(&render(&spec, &[0.0; 16], &single(Format::Png, 4)).unwrap()).to_luma8();
        assert!(px.iter().all(|&p| p == 0));
        let px = decode(&render(&spec, &[1.0; 16], &single(Format::Png, 4)).unwrap()).to_luma8();
        assert!(px.iter().all(|&p| p == 255));
    }

    #[test]
    fn layouts_have_the_sizes_they_promise() {
        assert_eq!([1, 2, 4, 5, 9, 10, 64].map(grid_cols), [1, 2, 2, 3, 3, 4, 8]);
        for (n, layout) in [(5, Layout::Grid), (3, Layout::Strip), (1, Layout::Single), (9, Layout::Grid)] {
            let out = Output { layout, format: Format::Png, size: 6 };
            let img = decode(&render(&RGB4, &vec![0.0; 48 * n], &out).unwrap());
            assert_eq!(u64::from(img.width()) * u64::from(img.height()), output_pixels(n, 6, layout), "{n} {layout:?}");
        }
        let img =
            decode(&render(&RGB4, &[0.0; 48 * 5], &Output { layout: Layout::Grid, ..single(Format::Png, 4) }).unwrap());
        assert_eq!(img.dimensions(), (3 * 6 + 2, 2 * 6 + 2));
        assert_eq!(output_pixels(8, 10, Layout::PingPong), 14 * 100);
    }

    #[test]
    fn resampling_keeps_a_flat_colour_flat() {
        let png = render(&RGB4, &[0.0; 48], &single(Format::Png, 37)).unwrap();
        let img = decode(&png).to_rgb8();
        assert_eq!(img.dimensions(), (37, 37));
        assert!(img.pixels().all(|p| p.0 == [128, 128, 128]));
    }
}
