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

/// The planar pixel (c, y, x) of image i, in 0..=255.
fn px(d: &Dataset, i: usize, c: usize, y: usize, x: usize) -> u8 {
    d.pixels[i * d.image_len() + c * d.size * d.size + y * d.size + x]
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

    let (data, skipped) = Dataset::open(root.to_str().unwrap(), 8, None, 0, None, false).unwrap();
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
    let batch = data.batch(&(0..9).collect::<Vec<_>>(), None, &candle_core::Device::Cpu).unwrap();
    assert_eq!(batch.dims(), [9, 3, 8, 8]);
    let values = batch.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));

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
    let (grey, _) = Dataset::open(dir.path().to_str().unwrap(), 8, None, 0, None, false).unwrap();
    assert_eq!((grey.len, grey.channels), (3, 1));
    let (rgb, _) = Dataset::open(dir.path().to_str().unwrap(), 8, Some(3), 0, None, false).unwrap();
    assert_eq!(rgb.channels, 3);
    assert_eq!(rgb.pixels.len(), 3 * 3 * 64);
}

#[test]
fn folders_without_usable_images_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = Dataset::open(dir.path().to_str().unwrap(), 8, None, 0, None, false).err().unwrap().to_string();
    assert!(err.contains("no usable image"), "{err}");
    std::fs::write(dir.path().join("a.txt"), b"x").unwrap();
    std::fs::write(dir.path().join("b.jpg"), b"x").unwrap();
    let err = Dataset::open(dir.path().to_str().unwrap(), 8, None, 0, None, false).err().unwrap().to_string();
    assert!(err.contains("2 files skipped") && err.contains("b.jpg"), "{err}");
    let err = Dataset::open("/definitely/not/here", 8, None, 0, None, false).err().unwrap().to_string();
    assert!(err.contains("/definitely/not/here"), "{err}");
    let err = Dataset::open("builtin:nope", 8, None, 0, None, false).err().unwrap().to_string();
    assert!(err.contains("shapes"), "{err}");
}

/// 120 pictures (enough for the progress display), picture i a flat colour that encodes i.
fn numbered_folder(root: &Path, n: u8) {
    for i in 0..n {
        let img = RgbImage::from_pixel(10 + i as u32 % 7, 12, Rgb([i, 255 - i, 7]));
        save(&DynamicImage::ImageRgb8(img), &root.join(format!("p{i:03}.png")), ImageFormat::Png);
    }
}

fn cache_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn decoding_is_parallel_but_ordered_and_a_second_run_reads_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (root, cache) = (dir.path().join("pics"), dir.path().join("cache"));
    numbered_folder(&root, 120);
    std::fs::write(root.join("zz_bad.png"), b"not a png").unwrap();
    let spec = root.to_str().unwrap();

    let (plain, skipped) = Dataset::open(spec, 8, None, 0, None, false).unwrap();
    assert_eq!((plain.len, plain.channels, skipped.count), (120, 3, 1));
    for i in 0..120 {
        assert_eq!([px(&plain, i, 0, 3, 3), px(&plain, i, 1, 3, 3)], [i as u8, 255 - i as u8], "sorted order");
    }
    assert!(cache_files(&cache).is_empty(), "no cache dir given, none written");

    let (first, _) = Dataset::open(spec, 8, None, 0, Some(&cache), false).unwrap();
    assert_eq!(first.pixels, plain.pixels);
    let entry = cache_files(&cache);
    assert_eq!(entry.len(), 2, "{entry:?}");

    // Prove the second run reads the cache: scribble over a picture but keep its size and
    // time, which is all the key looks at. From the cache it still reads; without, it is bad.
    let victim = root.join("p005.png");
    let (len, mtime) = {
        let m = std::fs::metadata(&victim).unwrap();
        (m.len() as usize, m.modified().unwrap())
    };
    std::fs::write(&victim, vec![b'x'; len]).unwrap();
    std::fs::File::options().write(true).open(&victim).unwrap().set_modified(mtime).unwrap();
    let (hit, skipped) = Dataset::open(spec, 8, None, 0, Some(&cache), false).unwrap();
    assert_eq!((hit.pixels == plain.pixels, hit.len, skipped.count), (true, 120, 1));
    assert_eq!(skipped.examples[0].0.file_name().unwrap(), "zz_bad.png", "decode failures are remembered");

    // A new modification time is a new key: decoded again, and the old entry replaced.
    std::fs::File::options().write(true).open(&victim).unwrap().set_modified(std::time::SystemTime::now()).unwrap();
    let (miss, skipped) = Dataset::open(spec, 8, None, 0, Some(&cache), false).unwrap();
    assert_eq!((miss.len, skipped.count), (119, 2));
    let entry2 = cache_files(&cache);
    assert_eq!(entry2.len(), 2);
    assert_ne!(entry, entry2);

    // Other sizes and channel requests are other entries of the same folder (one kept).
    let (grey, _) = Dataset::open(spec, 4, Some(1), 0, Some(&cache), false).unwrap();
    assert_eq!((grey.channels, grey.size, grey.pixels.len()), (1, 4, 119 * 16));
    assert_eq!(cache_files(&cache).len(), 2, "one entry per folder");

    // A damaged cache is ignored and rebuilt.
    let u8_file = cache_files(&cache).into_iter().find(|n| n.ends_with(".u8")).unwrap();
    let mut bytes = std::fs::read(cache.join(&u8_file)).unwrap();
    bytes[3] ^= 0xff;
    std::fs::write(cache.join(&u8_file), &bytes).unwrap();
    let (rebuilt, _) = Dataset::open(spec, 4, Some(1), 0, Some(&cache), false).unwrap();
    assert_eq!(rebuilt.pixels, grey.pixels);
    let (again, _) = Dataset::open(spec, 4, Some(1), 0, Some(&cache), false).unwrap();
    assert_eq!(again.pixels, grey.pixels);
}

#[test]
fn mirrored_batches_flip_only_the_chosen_images() {
    let dir = tempfile::tempdir().unwrap();
    // Left half black, right half white.
    let img = RgbImage::from_fn(8, 8, |x, _| if x < 4 { Rgb([0, 0, 0]) } else { Rgb([255, 255, 255]) });
    for n in ["a.png", "b.png"] {
        save(&DynamicImage::ImageRgb8(img.clone()), &dir.path().join(n), ImageFormat::Png);
    }
    let (data, _) = Dataset::open(dir.path().to_str().unwrap(), 8, None, 0, None, false).unwrap();
    let b = data.batch(&[0, 1], Some(&[true, false]), &candle_core::Device::Cpu).unwrap();
    let v = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let n = data.image_len();
    assert_eq!((v[0], v[7]), (1.0, -1.0), "first image mirrored: white on the left");
    assert_eq!((v[n], v[n + 7]), (-1.0, 1.0), "second image as it was");
}

/// `--classes subfolders`: each picture's class is its first-level subfolder (deeper
/// folders belong to it), classes in sorted order, a subfolder of no usable picture no
/// class; a picture directly in the folder, a name past 64 bytes or not UTF-8, and one
/// class alone are refused by name; the classes come back from the cache.
#[test]
fn subfolders_are_classes() {
    let dir = tempfile::tempdir().unwrap();
    let (root, cache) = (dir.path().join("birds"), dir.path().join("cache"));
    for (class, n) in [("swan", 2), ("duck", 3), ("goose", 1)] {
        for i in 0..n {
            save(&red(12, 12), &root.join(class).join(format!("deeper/{i}.png")), ImageFormat::Png);
        }
    }
    std::fs::create_dir_all(root.join("empty")).unwrap();
    std::fs::create_dir_all(root.join("broken")).unwrap();
    std::fs::write(root.join("broken/x.png"), b"not a png").unwrap();
    save(&red(12, 12), &root.join(".thumbnails/duck.png"), ImageFormat::Png);
    let spec = root.to_str().unwrap();
    for cache in [None, Some(cache.as_path()), Some(cache.as_path())] {
        let (d, skipped) = Dataset::open(spec, 8, None, 0, cache, true).unwrap();
        assert_eq!(d.classes.names, ["duck", "goose", "swan"]);
        assert_eq!(d.classes.labels, [0, 0, 0, 1, 2, 2]);
        assert_eq!((d.len, skipped.count), (6, 2), "the broken picture, and the hidden folder's");
    }
    let (plain, _) = Dataset::open(spec, 8, None, 0, Some(&cache), false).unwrap();
    assert!(plain.classes.names.is_empty(), "without --classes the same folder has none");

    let err = |root: &Path| Dataset::open(root.to_str().unwrap(), 8, None, 0, None, true).err().unwrap().to_string();
    save(&red(12, 12), &root.join("loose.png"), ImageFormat::Png);
    let e = err(&root);
    assert!(e.contains("--classes subfolders") && e.contains("loose.png") && e.contains("directly in"), "{e}");
    std::fs::remove_file(root.join("loose.png")).unwrap();
    save(&red(12, 12), &root.join("all/a.png"), ImageFormat::Png);
    assert!(err(&root).contains("reserved"), "class=all means every class: {}", err(&root));
    std::fs::remove_dir_all(root.join("all")).unwrap();
    let long = "x".repeat(65);
    save(&red(12, 12), &root.join(&long).join("a.png"), ImageFormat::Png);
    let e = err(&root);
    assert!(e.contains("64 bytes") && e.contains(&long), "{e}");
    std::fs::remove_dir_all(root.join(&long)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let bad = root.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
        save(&red(12, 12), &bad.join("a.png"), ImageFormat::Png);
        let e = err(&root);
        assert!(e.contains("not named in UTF-8"), "{e}");
        std::fs::remove_dir_all(bad).unwrap();
    }
    let one = dir.path().join("one");
    save(&red(12, 12), &one.join("duck/a.png"), ImageFormat::Png);
    let e = err(&one);
    assert!(e.contains("1 class (duck)") && e.contains("two or more"), "{e}");
}

/// More classes than the documented limit (1,000) are refused, naming the limit.
#[test]
fn a_thousand_and_one_classes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let png = {
        let mut buf = std::io::Cursor::new(Vec::new());
        red(4, 4).write_to(&mut buf, ImageFormat::Png).unwrap();
        buf.into_inner()
    };
    for i in 0..1001 {
        let d = dir.path().join(format!("c{i:04}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("a.png"), &png).unwrap();
    }
    let e = Dataset::open(dir.path().to_str().unwrap(), 4, None, 0, None, true).err().unwrap().to_string();
    assert!(e.contains("1001 classes is too many: at most 1000"), "{e}");
}

/// A class with fewer pictures than a batch trains, with a warning naming it; the run's
/// config.toml lists the classes in order with their pictures.
#[test]
fn a_class_smaller_than_a_batch_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pets");
    for (class, n) in [("cat", 3), ("dog", 20)] {
        for i in 0..n {
            let img = RgbImage::from_pixel(12, 12, Rgb([i as u8 * 10, if class == "cat" { 0 } else { 200 }, 50]));
            save(&DynamicImage::ImageRgb8(img), &data.join(class).join(format!("{i}.png")), ImageFormat::Png);
        }
    }
    let out = std::process::Command::new(canard_e2e::cargo_bin("canard-train", "canard-train"))
        .arg("--data")
        .arg(&data)
        .args(["--classes", "subfolders", "--name", "pets", "--arch", "dcgan", "--image-size", "8", "--steps", "1"])
        .args(["--batch-size", "8", "--ngf", "4", "--ndf", "4", "--eval-images", "0"])
        .arg("--runs-dir")
        .arg(dir.path().join("runs"))
        .arg("--models-dir")
        .arg(dir.path().join("models"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("fewer pictures than a batch (8) in cat"), "{stderr}");
    let config = std::fs::read_to_string(dir.path().join("runs/pets/config.toml")).unwrap();
    assert!(config.contains(r#"# The 2 classes, in index order (pictures): "cat" (3), "dog" (20)"#), "{config}");
}
