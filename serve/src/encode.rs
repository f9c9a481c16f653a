//! Pictures → bytes in the formats the server speaks. Every encoder here is
//! deterministic (fixed JPEG quality, lossless WebP, fixed GIF quantiser speed, no
//! timestamps), so replicas serve identical bytes and ETags stay honest.

use std::io::Cursor;

use canard_shared::image::{encode_gif, encode_png, ImageError};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::webp::WebPEncoder;
use image::{Delay, DynamicImage, Frame};

use crate::limits::{GIF_FRAME_MS, JPEG_QUALITY};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Png,
    Jpeg,
    /// Lossless: the `image` crate's WebP encoder has no lossy mode.
    Webp,
    /// Only for animations (`/interpolate?format=gif`).
    Gif,
}

impl Format {
    pub const STILL: [Format; 3] = [Format::Png, Format::Jpeg, Format::Webp];
    pub const ALL: [Format; 4] = [Format::Png, Format::Jpeg, Format::Webp, Format::Gif];

    /// The name used in `format=`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpeg",
            Format::Webp => "webp",
            Format::Gif => "gif",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Jpeg => "image/jpeg",
            Format::Webp => "image/webp",
            Format::Gif => "image/gif",
        }
    }
}

/// One picture. A GIF is a single-frame animation.
pub fn still(img: &DynamicImage, format: Format) -> Result<Vec<u8>, ImageError> {
    let mut buf = Cursor::new(Vec::new());
    match format {
        Format::Png => return encode_png(img),
        Format::Jpeg => img.write_with_encoder(JpegEncoder::new_with_quality(&mut buf, JPEG_QUALITY))?,
        Format::Webp => img.write_with_encoder(WebPEncoder::new_lossless(&mut buf))?,
        Format::Gif => return animation(std::slice::from_ref(img)),
    }
    Ok(buf.into_inner())
}

/// An animated GIF that loops forever, [`GIF_FRAME_MS`] per frame.
pub fn animation(frames: &[DynamicImage]) -> Result<Vec<u8>, ImageError> {
    let delay = Delay::from_numer_denom_ms(GIF_FRAME_MS, 1);
    Ok(encode_gif(frames.iter().map(|f| Frame::from_parts(f.to_rgba8(), 0, 0, delay)))?)
}

#[cfg(test)]
mod tests {
    use image::{AnimationDecoder, GenericImageView, Rgb, RgbImage};

    use super::*;

    fn picture(v: u8) -> DynamicImage {
        DynamicImage::ImageRgb8(RgbImage::from_fn(6, 4, |x, y| Rgb([v, (x * 40) as u8, (y * 60) as u8])))
    }

    #[test]
    fn every_format_decodes_to_the_same_size_and_repeats_exactly() {
        for f in Format::ALL {
            let bytes = still(&picture(9), f).unwrap();
            assert_eq!(bytes, still(&picture(9), f).unwrap(), "{f:?} is deterministic");
            let back = image::load_from_memory(&bytes).unwrap();
            assert_eq!(back.dimensions(), (6, 4), "{f:?}");
            assert_eq!(image::guess_format(&bytes).unwrap().to_mime_type(), f.mime());
        }
        // Lossless formats give the pixels back.
        for f in [Format::Png, Format::Webp] {
            let back = image::load_from_memory(&still(&picture(9), f).unwrap()).unwrap().to_rgb8();
            assert_eq!(back, picture(9).to_rgb8(), "{f:?}");
        }
    }

    #[test]
    fn animations_keep_every_frame_and_loop() {
        let frames: Vec<_> = (0..5).map(|i| picture(i * 50)).collect();
        let gif = animation(&frames).unwrap();
        let decoded = image::codecs::gif::GifDecoder::new(Cursor::new(&gif)).unwrap().into_frames();
        assert_eq!(decoded.collect_frames().unwrap().len(), 5);
        // NETSCAPE2.0 application extension: the loop marker.
        assert!(gif.windows(11).any(|w| w == b"NETSCAPE2.0"));
    }
}
