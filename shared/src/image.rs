//! Generator output → pictures.
//!
//! A generator returns NCHW f32 values in [-1, 1]. One value becomes one 8-bit
//! sample by [`to_u8`]; images are laid out in grids with [`grid`] and written
//! as PNG with [`encode_png`] (animations as GIF with [`encode_gif`]). Trainer
//! previews and server responses both go through these functions, so they agree
//! pixel for pixel on equal tensors.

use std::io::Cursor;

use ::image::codecs::gif::{GifEncoder, Repeat};
use ::image::{DynamicImage, Frame, GenericImage, GrayImage, ImageFormat, Rgb, RgbImage};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("expected {expected} values for {n}×{c}×{h}×{w}, got {got}")]
    Shape { expected: usize, got: usize, n: usize, c: usize, h: usize, w: usize },
    #[error("channels must be 1 or 3, not {0}")]
    Channels(usize),
    #[error("cannot encode image: {0}")]
    Encode(#[from] ::image::ImageError),
}

/// [-1, 1] → 0..=255, rounding to nearest; out-of-range values are clamped and NaN is 0.
pub fn to_u8(v: f32) -> u8 {
    if v.is_nan() {
        return 0;
    }
    ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
}

/// 0..=255 → [-1, 1]: the inverse of [`to_u8`], used for training data.
pub fn from_u8(v: u8) -> f32 {
    v as f32 / 127.5 - 1.0
}

/// One image per item of an NCHW batch (`c` is 1 or 3).
pub fn batch_to_images(data: &[f32], n: usize, c: usize, h: usize, w: usize) -> Result<Vec<DynamicImage>, ImageError> {
    if c != 1 && c != 3 {
        return Err(ImageError::Channels(c));
    }
    let expected = n * c * h * w;
    if data.len() != expected {
        return Err(ImageError::Shape { expected, got: data.len(), n, c, h, w });
    }
    let plane = h * w;
    Ok(data
        .chunks_exact(c * plane)
        .map(|chw| {
            if c == 1 {
                let px = chw.iter().map(|&v| to_u8(v)).collect();
                DynamicImage::ImageLuma8(GrayImage::from_raw(w as u32, h as u32, px).expect("sized above"))
            } else {
                let px = (0..plane).flat_map(|i| [0, 1, 2].map(|ch| to_u8(chw[ch * plane + i]))).collect();
                DynamicImage::ImageRgb8(RgbImage::from_raw(w as u32, h as u32, px).expect("sized above"))
            }
        })
        .collect())
}

/// Lays images out in rows of `cols`, separated and framed by a `pad`-pixel black
/// border (as torchvision's `make_grid`). Grey images stay grey when all are grey.
pub fn grid(images: &[DynamicImage], cols: usize, pad: u32) -> DynamicImage {
    let cols = cols.clamp(1, images.len().max(1));
    let rows = images.len().div_ceil(cols).max(1);
    let (w, h) = images.first().map(|i| (i.width(), i.height())).unwrap_or((0, 0));
    let gw = cols as u32 * (w + pad) + pad;
    let gh = rows as u32 * (h + pad) + pad;
    let all_grey = images.iter().all(|i| i.color().channel_count() == 1);
    let mut out = if all_grey {
        DynamicImage::ImageLuma8(GrayImage::new(gw, gh))
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_pixel(gw, gh, Rgb([0, 0, 0])))
    };
    for (i, img) in images.iter().enumerate() {
        let x = pad + (i % cols) as u32 * (w + pad);
        let y = pad + (i / cols) as u32 * (h + pad);
        let tile =
            if all_grey { DynamicImage::ImageLuma8(img.to_luma8()) } else { DynamicImage::ImageRgb8(img.to_rgb8()) };
        // Every tile has the first tile's size, so it always fits.
        out.copy_from(&tile, x, y).expect("tile fits in grid");
    }
    out
}

/// PNG bytes; deterministic for equal pixels.
pub fn encode_png(img: &DynamicImage) -> Result<Vec<u8>, ImageError> {
    let mut buf = Cursor::new(Vec::new());
    img.write_to(&mut buf, ImageFormat::Png)?;
    Ok(buf.into_inner())
}

/// NeuQuant speed for GIF palettes: 10 is the `gif` crate's recommended balance (1 is
/// slowest and best, 30 fastest): good colours on small pictures, quick enough for 256 frames.
const GIF_SPEED: i32 = 10;

/// An animated GIF of `frames` (each shown for its own delay) that loops forever;
/// deterministic for equal frames. Fails with the `image` crate's own error, which the
/// server wraps in [`ImageError`] and the trainer reports as it is.
pub fn encode_gif(frames: impl IntoIterator<Item = Frame>) -> ::image::ImageResult<Vec<u8>> {
    let mut buf = Vec::new();
    {
        let mut enc = GifEncoder::new_with_speed(&mut buf, GIF_SPEED);
        enc.set_repeat(Repeat::Infinite)?;
        enc.encode_frames(frames)?;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_output_range_onto_bytes() {
        assert_eq!(to_u8(-1.0), 0);
        assert_eq!(to_u8(1.0), 255);
        assert_eq!(to_u8(0.0), 128);
        assert_eq!(to_u8(-7.0), 0);
        assert_eq!(to_u8(7.0), 255);
        assert_eq!(to_u8(f32::NAN), 0);
        for v in 0..=255u8 {
            assert_eq!(to_u8(from_u8(v)), v);
        }
    }

    #[test]
    fn splits_nchw_batches_into_images() {
        // Two 1×2 RGB images: image 0 is red then blue, image 1 all white.
        let data = [1.0, -1.0, -1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        let imgs = batch_to_images(&data, 2, 3, 1, 2).unwrap();
        let a = imgs[0].to_rgb8();
        assert_eq!(a.get_pixel(0, 0).0, [255, 0, 0]);
        assert_eq!(a.get_pixel(1, 0).0, [0, 0, 255]);
        assert_eq!(imgs[1].to_rgb8().get_pixel(1, 0).0, [255, 255, 255]);
        assert!(batch_to_images(&data, 2, 3, 2, 2).is_err());
        assert!(batch_to_images(&data, 6, 2, 1, 1).is_err());
    }

    #[test]
    fn grids_place_tiles_with_padding() {
        let white = DynamicImage::ImageLuma8(GrayImage::from_pixel(3, 3, ::image::Luma([255])));
        let g = grid(&vec![white; 5], 2, 1);
        assert_eq!((g.width(), g.height()), (2 * 4 + 1, 3 * 4 + 1));
        let g = g.to_luma8();
        assert_eq!(g.get_pixel(0, 0).0, [0]);
        assert_eq!(g.get_pixel(1, 1).0, [255]);
        assert_eq!(g.get_pixel(1, 9).0, [255]); // fifth tile: third row, first column
        assert_eq!(g.get_pixel(5, 9).0, [0]); // no sixth tile
    }

    #[test]
    fn png_encoding_is_deterministic_and_decodes() {
        let imgs = batch_to_images(&[0.5; 3 * 4 * 4], 1, 3, 4, 4).unwrap();
        let a = encode_png(&imgs[0]).unwrap();
        assert_eq!(a, encode_png(&imgs[0]).unwrap());
        let back = ::image::load_from_memory(&a).unwrap().to_rgb8();
        assert_eq!(back.get_pixel(3, 3).0, [191, 191, 191]);
    }
}
