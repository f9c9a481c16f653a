//! The data loader on a messy folder of real-world files.

use std::path::Path;

use canard_train::data::Dataset;
use image::{DynamicImage, GrayImage, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};

fn save(img: &DynamicImage, path: &Path, format: ImageFormat) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save_with_format(path, format).unwrap();
}

fn jpeg_bytes(img: &DynamicImage) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, ImageFormat::Jpeg).unwrap();
    buf.into_inner()
}

fn red(w: u32, h: u32) -> DynamicImage {
    DynamicImage::ImageRgb8(RgbImage::from_pixel(w, h, Rgb([255, 0, 0])))
}

/// A CMYK JPEG (as print workflows and some cameras write them): pure cyan.
fn write_cmyk_jpeg(path: &Path) {
    let (w, h) = (24u16, 24u16);
    let data: Vec<u8> = (0..w as usize * h as usize).flat_map(|_| [255u8, 0, 0, 0]).collect();
    let enc = jpeg_encoder::Encoder::new_file(path, 95).unwrap();
    enc.encode(&data, w, h, jpeg_encoder::ColorType::Cmyk).unwrap();
}

/// A palette PNG with two colours: blue and green halves.
fn write_palette_png(path: &Path) {
    let f = std::fs::File::create(path).unwrap();
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), 16, 16);
    enc.set_color(png::ColorType::Indexed);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_palette(vec![0, 0, 255, 0, 255, 0]);
    let mut w = enc.write_header().unwrap();
    let px: Vec<u8> = (0..16 * 16).map(|i| if i % 16 < 8 { 0 } else { 1 }).collect();
    w.write_image_data(&px).unwrap();
}

/// The planar pixel (c, y, x) of image i, back in 0..=255.
fn px(d: &Dataset, i: usize, c: usize, y: usize, x: usize) -> u8 {
    let v = d.pixels[i * d.image_len() + c * d.size * d.size + y * d.size + x];
    canard_shared::image::to_u8(v)
}

#[test]
fn loads_good_images_and_counts_bad_ones_in_a_messy_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Good ones, in nested folders and with upper-case extensions.
    save(&red(40, 40), &root.join("a/b/red.PNG"), ImageFormat::Png);
    save(
        &DynamicImage::ImageLuma8(GrayImage::from_pixel(20, 30, image::Luma([10]))),
        &root.join("grey.jpg"),
        ImageFormat::Jpeg,
    );
    let mut rgba = RgbaImage::from_pixel(16, 16, Rgba([0, 0, 0, 0])); // fully transparent: must become white
    rgba.put_pixel(8, 8, Rgba([0, 0, 0, 255]));
    save(&DynamicImage::ImageRgba8(rgba), &root.join("a/alpha.png"), ImageFormat::Png);
    write_cmyk_jpeg(&root.join("cmyk.JPEG"));
    write_palette_png(&root.join("palette.png"));
    save(&red(16, 16), &root.join("x.webp"), ImageFormat::WebP);
    save(&red(16, 16), &root.join("x.Gif"), ImageFormat::Gif);
    save(&red(16, 16), &root.join("x.bmp"), ImageFormat::Bmp);
    // A wide picture: left third blue, middle red, right third blue → centre crop is red.
    let wide =
        RgbImage::from_fn(90, 30, |x, _| if (30..60).contains(&x) { Rgb([255, 0, 0]) } else { Rgb([0, 0, 255]) });
    save(&DynamicImage::ImageRgb8(wide), &root.join("z_wide.png"), ImageFormat::Png);
    // Bad ones.
    let jpeg = jpeg_bytes(&red(64, 64));
    std::fs::write(root.join("truncated.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    std::fs::write(root.join("empty.png"), b"").unwrap();
    std::fs::write(root.join("notes.txt"), b"not a picture").unwrap();
    std::fs::write(root.join("fake.png"), b"this is text with a png name").unwrap();
    std::os::unix::fs::symlink(root.join("does-not-exist.png"), root.join("dangling.png")).unwrap();

    let (data, skipped) = Dataset::open(root.to_str().unwrap(), 8, None, 0).unwrap();
    assert_eq!(data.len, 9, "good images: {skipped:?}");
    assert_eq!(data.channels, 3, "a mixed folder is RGB");
    let bad: Vec<String> =
        skipped.examples.iter().map(|(p, _)| p.file_name().unwrap().to_string_lossy().into()).collect();
    assert_eq!(skipped.count, 5, "skipped: {:?}", skipped.examples);
    let warning = skipped.warning().unwrap();
    assert!(warning.contains("skipped 5 file"), "{warning}");
    for name in ["truncated.jpg", "empty.png", "notes.txt", "fake.png", "dangling.png"] {
        assert!(bad.contains(&name.to_string()), "{name} not reported in {bad:?}");
    }
    assert_eq!(data.pixels.len(), 9 * 3 * 8 * 8);
    assert!(data.pixels.iter().all(|v| (-1.0..=1.0).contains(v)));

    // Files are read in sorted path order: a/alpha.png, a/b/red.PNG, cmyk.JPEG, grey.jpg, palette.png, x.Gif, x.bmp, x.webp, z_wide.png.
    assert_eq!(
        [px(&data, 0, 0, 0, 0), px(&data, 0, 1, 0, 0), px(&data, 0, 2, 0, 0)],
        [255, 255, 255],
        "transparent → white"
    );
    assert_eq!([px(&data, 1, 0, 4, 4), px(&data, 1, 1, 4, 4)], [255, 0], "red stays red");
    let cyan = [px(&data, 2, 0, 4, 4), px(&data, 2, 1, 4, 4), px(&data, 2, 2, 4, 4)];
    assert!(cyan[0] < 60 && cyan[1] > 180 && cyan[2] > 180, "CMYK cyan decodes to RGB cyan, got {cyan:?}");
    assert!(px(&data, 3, 0, 4, 4) < 30 && px(&data, 3, 0, 4, 4) == px(&data, 3, 2, 4, 4), "grey is grey");
    assert_eq!([px(&data, 4, 1, 4, 0), px(&data, 4, 2, 4, 0)], [0, 255], "palette left half is blue");
    assert_eq!([px(&data, 4, 1, 4, 7), px(&data, 4, 2, 4, 7)], [255, 0], "palette right half is green");
    for x in 0..8 {
        assert_eq!([px(&data, 8, 0, 4, x), px(&data, 8, 2, 4, x)], [255, 0], "wide picture is centre-cropped (x={x})");
    }
}

#[test]
fn a_grey_folder_gives_one_channel_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        save(
            &DynamicImage::ImageLuma8(GrayImage::from_pixel(12, 12, image::Luma([i * 100]))),
            &dir.path().join(format!("{i}.png")),
            ImageFormat::Png,
        );
    }
    let (grey, _) = Dataset::open(dir.path().to_str().unwrap(), 8, None, 0).unwrap();
    assert_eq!((grey.len, grey.channels), (3, 1));
    let (rgb, _) = Dataset::open(dir.path().to_str().unwrap(), 8, Some(3), 0).unwrap();
    assert_eq!(rgb.channels, 3);
    assert_eq!(rgb.pixels.len(), 3 * 3 * 64);
}

#[test]
fn folders_without_usable_images_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Dataset::open(dir.path().to_str().unwrap(), 8, None, 0).err().unwrap().to_string();
    assert!(err.contains("no usable image"), "{err}");
    std::fs::write(dir.path().join("a.txt"), b"x").unwrap();
    std::fs::write(dir.path().join("b.jpg"), b"x").unwrap();
    let err = Dataset::open(dir.path().to_str().unwrap(), 8, None, 0).err().unwrap().to_string();
    assert!(err.contains("2 files skipped") && err.contains("b.jpg"), "{err}");
    let err = Dataset::open("/definitely/not/here", 8, None, 0).err().unwrap().to_string();
    assert!(err.contains("/definitely/not/here"), "{err}");
    let err = Dataset::open("builtin:nope", 8, None, 0).err().unwrap().to_string();
    assert!(err.contains("shapes"), "{err}");
}
