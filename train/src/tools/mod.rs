//! `canard-train eval | sample | interpolate | project`: working with an exported model.
//!
//! Every tool reads `models/NAME/` through [`crate::export::reader`] (the same ONNX file
//! the server runs, checked against its manifest), never a checkpoint, and makes the
//! latent vectors with `canard_shared::latent`, so seed S is the server's seed S.

pub mod eval;
pub mod interpolate;
pub mod project;
pub mod sample;

use std::path::{Path, PathBuf};

use canard_shared::image::{batch_to_images, encode_png};
use canard_shared::Manifest;
use image::DynamicImage;

use crate::atomic::write_atomic;
use crate::export::reader::{load_generator, OnnxGenerator};

/// The model at `dir`, on the device canard-train would train on, and `--class NAME|INDEX`
/// on it: the class's index, refused by name on a model without classes or one that has
/// no such class (the error lists them).
fn load(dir: &Path, class: Option<&str>) -> anyhow::Result<(Manifest, OnnxGenerator, Option<usize>)> {
    let device = crate::device::select(crate::device::DeviceChoice::Auto)?;
    let (manifest, g) = load_generator(dir, &device)?;
    let class = class.map(|c| manifest.class_index(c).map_err(|e| anyhow::anyhow!("--class: {e}"))).transpose()?;
    Ok((manifest, g, class))
}

/// `--out`, or `samples/NAME`.
fn out_dir(out: Option<&Path>, manifest: &Manifest) -> anyhow::Result<PathBuf> {
    let dir = out.map_or_else(|| Path::new("samples").join(&manifest.name), Path::to_path_buf);
    std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// `--truncation ψ`: a number in (0, 1].
pub fn parse_psi(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(psi) if psi > 0.0 && psi <= 1.0 => Ok(psi),
        _ => Err(format!("'{s}' is not a truncation ψ in (0, 1] (1 = no truncation)")),
    }
}

/// Flat latent vectors → one picture each (a conditional model's of `classes`, one each).
fn pictures(g: &OnnxGenerator, z: &[f32], classes: &[u32]) -> anyhow::Result<Vec<DynamicImage>> {
    let values = g.images(z, classes)?;
    let n = values.len() / g.image_len();
    Ok(batch_to_images(&values, n, g.shape.channels, g.shape.image_size, g.shape.image_size)?)
}

fn write_png(img: &DynamicImage, path: &Path) -> anyhow::Result<()> {
    write_atomic(path, &encode_png(img)?)?;
    Ok(())
}

/// The three tools on a freshly exported model (unit tests rather than `tests/`, so they
/// run without building the binary).
#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use canard_shared::image::to_u8;
    use candle_core::{DType, Device};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::{eval, interpolate, project, sample};
    use crate::config::Arch;
    use crate::data::Dataset;
    use crate::eval::SwdReport;
    use crate::export::reader::{load_generator, OnnxGenerator};
    use crate::nn::Shape;
    use crate::trainer::Gan;

    const SIZE: usize = 16;

    /// The SWD between `images` pictures of `g` (seeds 0..images) and as many of `data`'s,
    /// through the reader rather than a closure.
    fn evaluate(g: &OnnxGenerator, data: &Dataset, images: usize, seed: u64) -> anyhow::Result<SwdReport> {
        if (g.shape.channels, g.shape.image_size) != (data.channels, data.size) {
            anyhow::bail!(
                "the model makes {}-channel {}px images but the data is {}-channel {}px",
                g.shape.channels,
                g.shape.image_size,
                data.channels,
                data.size
            );
        }
        eval::evaluate_with(|seeds| Ok(g.generate(seeds, None)?), data, images, seed)
    }

    /// models/tiny in a temporary folder. Untrained weights give pictures that are all
    /// mid-grey; scaling the weights up gives varied ones, so comparisons mean something.
    fn model(dir: &Path) -> PathBuf {
        let shape = Shape { image_size: SIZE, channels: 3, nz: 16, ngf: 8, ndf: 8, classes: 0 };
        let gan = Gan::new(Arch::Dcgan, shape, &mut ChaCha8Rng::seed_from_u64(0), &Device::Cpu, DType::F32).unwrap();
        for p in gan.g_params.iter().filter(|p| p.name.ends_with("weight")) {
            p.var.set(&(p.var.as_tensor() * 25.0).unwrap()).unwrap();
        }
        crate::export::export(&gan.g, &shape, &[], &dir.join("models"), "tiny", "dcgan", Default::default()).unwrap().0
    }

    /// models/birds: the same, of three classes (a, b, c), its embedding scaled up too.
    fn conditional_model(dir: &Path) -> PathBuf {
        let shape = Shape { image_size: SIZE, channels: 3, nz: 16, ngf: 8, ndf: 8, classes: 3 };
        let gan = Gan::new(Arch::Dcgan, shape, &mut ChaCha8Rng::seed_from_u64(0), &Device::Cpu, DType::F32).unwrap();
        for p in gan.g_params.iter().filter(|p| p.name.ends_with("weight")) {
            p.var.set(&(p.var.as_tensor() * 25.0).unwrap()).unwrap();
        }
        let classes: Vec<_> =
            ["a", "b", "c"].map(|name| canard_shared::manifest::Class { name: name.into(), images: 5 }).to_vec();
        crate::export::export(&gan.g, &shape, &classes, &dir.join("models"), "birds", "dcgan", Default::default())
            .unwrap()
            .0
    }

    /// `sample`, `interpolate`, `project` and `eval` with `--class` on a model with classes:
    /// by name or index, each seed's own without it, refused by name when unknown or when
    /// the model has none.
    #[test]
    fn the_tools_take_a_class() {
        let dir = tempfile::tempdir().unwrap();
        let plain = model(dir.path());
        let model = conditional_model(dir.path());
        let (_, g) = load_generator(&model, &Device::Cpu).unwrap();
        let hwc = |v: &[f32]| {
            let plane = SIZE * SIZE;
            (0..plane).flat_map(|i| [0, 1, 2].map(|c| to_u8(v[c * plane + i]))).collect::<Vec<u8>>()
        };
        let sample = |class: Option<&str>, out: &str| {
            let seeds = sample::parse_seeds("4-6").unwrap();
            let out = dir.path().join(out);
            let args = sample::SampleArgs {
                model: model.clone(),
                seeds,
                out: Some(out.clone()),
                truncation: 1.0,
                class: class.map(Into::into),
            };
            sample::run(args).map(|_| out)
        };
        let b = sample(Some("b"), "b").unwrap();
        assert_eq!(rgb(&b.join("seed_5.png")).into_raw(), hwc(&g.generate(&[5], Some(1)).unwrap()));
        assert_eq!(rgb(&sample(Some("1"), "one").unwrap().join("seed_5.png")), rgb(&b.join("seed_5.png")));
        let own = sample(None, "own").unwrap();
        let k = canard_shared::latent::class_of_seed(6, 3);
        assert_eq!(rgb(&own.join("seed_6.png")).into_raw(), hwc(&g.generate(&[6], Some(k)).unwrap()));
        assert_ne!(rgb(&b.join("seed_5.png")), rgb(&sample(Some("c"), "c").unwrap().join("seed_5.png")));
        let err = sample(Some("heron"), "x").unwrap_err().to_string();
        assert!(err.contains("--class") && err.contains("a, b, c"), "{err}");
        let seeds = sample::parse_seeds("1").unwrap();
        let args = sample::SampleArgs { model: plain, seeds, out: None, truncation: 1.0, class: Some("a".into()) };
        assert!(sample::run(args).unwrap_err().to_string().contains("has no classes"));

        let out = dir.path().join("walk");
        let args = interpolate::InterpolateArgs {
            model: model.clone(),
            from: 1,
            to: 2,
            steps: 3,
            out: Some(out.clone()),
            truncation: 1.0,
            frame_ms: 100,
            class: Some("c".into()),
        };
        interpolate::run(args).unwrap();
        let strip = rgb(&out.join("interpolate_1_2.png"));
        let s = SIZE as u32;
        let last = image::imageops::crop_imm(&strip, 2 + 2 * (s + 2), 2, s, s).to_image().into_raw();
        assert_eq!(last, hwc(&g.generate(&[2], Some(2)).unwrap()), "the walk ends at seed 2's c");

        let photo = dir.path().join("photo.png");
        image::RgbImage::from_raw(s, s, hwc(&g.generate(&[3], Some(2)).unwrap())).unwrap().save(&photo).unwrap();
        let args = project::ProjectArgs {
            model: model.clone(),
            image: photo,
            seeds: 8,
            steps: 5,
            lr: 0.05,
            out: Some(dir.path().join("p")),
            class: Some("c".into()),
        };
        assert_eq!(project::run(args).unwrap().class.as_deref(), Some("c"));

        // eval --class: that class's pictures against the data's subfolder of that name.
        let data = dir.path().join("data");
        for (class, colour) in [("a", [250, 0, 0]), ("c", [0, 0, 250])] {
            for i in 0..4 {
                let img = image::RgbImage::from_pixel(s, s, image::Rgb(colour));
                std::fs::create_dir_all(data.join(class)).unwrap();
                img.save(data.join(class).join(format!("{i}.png"))).unwrap();
            }
        }
        let eval_args = |class: &str| eval::EvalArgs {
            model: Some(model.clone()),
            generated: None,
            image_size: None,
            channels: None,
            data: data.display().to_string(),
            images: Some(16),
            seed: 1,
            class: Some(class.into()),
            nearest: Some(dir.path().join("n.png")),
        };
        assert!(eval::run(eval_args("c")).unwrap().mean.is_finite());
        let err = eval::run(eval_args("b")).unwrap_err().to_string();
        assert!(err.contains("no subfolder \"b\"") && err.contains("a, c"), "{err}");
    }

    fn rgb(path: &Path) -> image::RgbImage {
        image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8()
    }

    /// The reader's picture for `z`, as 8-bit RGB.
    fn picture(model: &Path, z: Vec<f32>) -> Vec<u8> {
        let (_, g) = load_generator(model, &Device::Cpu).unwrap();
        let v = g.images(&z, &[]).unwrap();
        let plane = SIZE * SIZE;
        (0..plane).flat_map(|i| [0, 1, 2].map(|c| to_u8(v[c * plane + i]))).collect()
    }

    fn z(seed: u64) -> Vec<f32> {
        canard_shared::latent::latent(seed, 16)
    }

    #[test]
    fn sample_writes_one_png_per_seed_and_a_grid() {
        let dir = tempfile::tempdir().unwrap();
        let model = model(dir.path());
        let out = dir.path().join("samples");
        let seeds = sample::parse_seeds("3-5,9,4").unwrap();
        sample::run(sample::SampleArgs {
            model: model.clone(),
            seeds,
            out: Some(out.clone()),
            truncation: 1.0,
            class: None,
        })
        .unwrap();
        let mut names: Vec<String> =
            std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["grid.png", "seed_3.png", "seed_4.png", "seed_5.png", "seed_9.png"]);
        let img = rgb(&out.join("seed_9.png"));
        assert_eq!(img.dimensions(), (SIZE as u32, SIZE as u32));
        assert_eq!(img.into_raw(), picture(&model, z(9)));
        assert_ne!(rgb(&out.join("seed_3.png")).into_raw(), picture(&model, z(9)));
        // 4 tiles in one row, 2-pixel borders.
        let s = SIZE as u32;
        assert_eq!(rgb(&out.join("grid.png")).dimensions(), (4 * (s + 2) + 2, s + 4));

        // Truncation scales z; a missing model is an error naming it.
        let t = dir.path().join("truncated");
        let seeds = sample::parse_seeds("9").unwrap();
        sample::run(sample::SampleArgs {
            model: model.clone(),
            seeds,
            out: Some(t.clone()),
            truncation: 0.5,
            class: None,
        })
        .unwrap();
        let half: Vec<f32> = z(9).iter().map(|v| v * 0.5).collect();
        assert_eq!(rgb(&t.join("seed_9.png")).into_raw(), picture(&model, half));
        assert_ne!(rgb(&t.join("seed_9.png")).into_raw(), picture(&model, z(9)));
        let seeds = sample::parse_seeds("1").unwrap();
        let e = sample::run(sample::SampleArgs {
            model: dir.path().join("nope"),
            seeds,
            out: None,
            truncation: 1.0,
            class: None,
        });
        assert!(e.unwrap_err().to_string().contains("nope"));
    }

    #[test]
    fn interpolate_starts_and_ends_at_the_seeds_pictures() {
        let dir = tempfile::tempdir().unwrap();
        let model = model(dir.path());
        let out = dir.path().join("walk");
        let args = interpolate::InterpolateArgs {
            model: model.clone(),
            from: 1,
            to: 2,
            steps: 5,
            out: Some(out.clone()),
            truncation: 1.0,
            frame_ms: 100,
            class: None,
        };
        interpolate::run(args).unwrap();
        let strip = rgb(&out.join("interpolate_1_2.png"));
        let s = SIZE as u32;
        assert_eq!(strip.dimensions(), (5 * (s + 2) + 2, s + 4));
        let tile = |i: u32| image::imageops::crop_imm(&strip, 2 + i * (s + 2), 2, s, s).to_image().into_raw();
        assert_eq!(tile(0), picture(&model, z(1)));
        assert_eq!(tile(4), picture(&model, z(2)));
        assert_ne!(tile(2), tile(0));
        assert_ne!(tile(2), tile(4));

        // There and back: 0 1 2 3 4 3 2 1, looping.
        let gif = std::fs::File::open(out.join("interpolate_1_2.gif")).unwrap();
        let decoder = image::codecs::gif::GifDecoder::new(std::io::BufReader::new(gif)).unwrap();
        let frames = image::AnimationDecoder::into_frames(decoder).collect_frames().unwrap();
        assert_eq!(frames.len(), 8);
        assert!(frames[0].buffer().width() >= 128);
    }

    #[test]
    fn eval_of_a_model_against_data_is_finite_and_checks_its_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let model = model(dir.path());
        let model_files = |m: &Path| ["generator.onnx", "model.json"].map(|f| std::fs::read(m.join(f)).unwrap());
        let before = model_files(&model);
        let eval_args = |nearest: Option<PathBuf>| eval::EvalArgs {
            model: Some(model.clone()),
            generated: None,
            image_size: None,
            channels: None,
            data: "builtin:shapes".into(),
            images: Some(64),
            seed: 1,
            class: None,
            nearest,
        };
        // Refused before anything is read or written: another format, the model's own file, a
        // folder, and --image-size/--channels, which only --generated reads.
        for (nearest, needle) in [
            ("x.jpg", "ending in .png"),
            ("no-such-folder/n.png", "does not exist"),
            ("models/tiny/generator.onnx", "ending in .png"),
            ("models/tiny/model.json", "ending in .png"),
        ] {
            let err = eval::run(eval_args(Some(dir.path().join(nearest)))).unwrap_err().to_string();
            assert!(err.contains("--nearest") && err.contains(needle), "{nearest}: {err}");
        }
        let folder = dir.path().join("folder.png");
        std::fs::create_dir(&folder).unwrap();
        assert!(eval::run(eval_args(Some(folder))).unwrap_err().to_string().contains("is a folder"));
        let err = eval::run(eval::EvalArgs { image_size: Some(64), ..eval_args(None) }).unwrap_err().to_string();
        assert!(err.contains("--image-size goes with --generated"), "{err}");
        let err = eval::run(eval::EvalArgs { channels: Some(1), ..eval_args(None) }).unwrap_err().to_string();
        assert!(err.contains("--channels goes with --generated"), "{err}");
        assert_eq!(model_files(&model), before, "the model is untouched");
        assert!(!dir.path().join("x.jpg").exists());

        // By default nearest.png goes into the model's folder, never the current one.
        let listing = || {
            let mut names: Vec<_> = std::fs::read_dir(".").unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            names
        };
        let here = listing();
        let report = eval::run(eval_args(None)).unwrap();
        let nearest = model.join("nearest.png");
        assert!(nearest.is_file());
        assert_eq!(listing(), here, "nothing written into the current folder");
        assert_eq!(model_files(&model), before, "the model's own files are untouched");
        // nearest.png: 64 pairs, 8 to a row; each generated picture beside a training picture.
        let pairs = rgb(&nearest);
        let s = SIZE as u32;
        assert_eq!(pairs.dimensions(), (16 * (s + 2) + 2, 8 * (s + 2) + 2));
        let tile = |col: u32, row: u32| {
            image::imageops::crop_imm(&pairs, 2 + col * (s + 2), 2 + row * (s + 2), s, s).to_image().into_raw()
        };
        assert_eq!(tile(0, 0), picture(&model, z(0)));
        assert_eq!(tile(2, 7), picture(&model, z(57)));
        let shapes = Dataset::open("builtin:shapes", SIZE, Some(3), 1, None, false).unwrap().0;
        let plane = SIZE * SIZE;
        let hwc = |chw: &[u8]| (0..plane).flat_map(|i| [0, 1, 2].map(|c| chw[c * plane + i])).collect::<Vec<u8>>();
        for (col, row) in [(1, 0), (15, 7)] {
            let right = tile(col, row);
            assert!((0..shapes.len).any(|i| hwc(shapes.image_u8(i)) == right), "pair ({col}, {row})");
        }
        assert_eq!(report.levels.len(), 1);
        assert_eq!(report.levels[0].0, SIZE);
        assert!(report.mean.is_finite() && report.mean > 0.0, "{report}");

        // The library entry point on the reader's pictures: `run`'s numbers, and the same again.
        let (_, g) = load_generator(&model, &Device::Cpu).unwrap();
        let data = Dataset::open("builtin:shapes", SIZE, Some(3), 1, None, false).unwrap().0;
        let a = evaluate(&g, &data, 64, 1).unwrap();
        assert_eq!(a, report);
        let b = eval::evaluate_with(|seeds| Ok(g.generate(seeds, None)?), &data, 64, 1).unwrap();
        assert_eq!(a, b);
        let e = eval::evaluate_with(|_| Ok(vec![0.0; 3]), &data, 64, 1).unwrap_err();
        assert!(e.to_string().contains("values for"), "{e}");
        // More images than the data has: the data cycled to 64, as many generated.
        assert!(evaluate(&g, &data.first(10), 64, 1).unwrap().mean.is_finite());
        let grey = Dataset::open("builtin:shapes", SIZE, Some(1), 1, None, false).unwrap().0;
        assert!(evaluate(&g, &grey, 8, 1).unwrap_err().to_string().contains("channel"));

        // The same 64 pictures as PNG files (another program's output): the same SWD, but
        // for 8-bit rounding.
        let pngs = dir.path().join("pngs");
        let seeds = sample::parse_seeds("0-63").unwrap();
        sample::run(sample::SampleArgs {
            model: model.clone(),
            seeds,
            out: Some(pngs.clone()),
            truncation: 1.0,
            class: None,
        })
        .unwrap();
        std::fs::remove_file(pngs.join("grid.png")).ok();
        let args = eval::EvalArgs {
            model: None,
            generated: Some(pngs),
            image_size: Some(SIZE),
            channels: Some(3),
            data: "builtin:shapes".into(),
            images: Some(64),
            seed: 1,
            class: None,
            nearest: Some(dir.path().join("nearest-pngs.png")),
        };
        let from_files = eval::run(args).unwrap();
        assert!((from_files.mean - report.mean).abs() <= 0.02 * report.mean, "{from_files} vs {report}");
        assert!(dir.path().join("nearest-pngs.png").is_file());
    }

    #[test]
    fn project_finds_a_generated_picture_and_writes_it_with_its_latent() {
        let dir = tempfile::tempdir().unwrap();
        let model = model(dir.path());
        let photo = dir.path().join("photo.png");
        image::RgbImage::from_raw(SIZE as u32, SIZE as u32, picture(&model, z(777))).unwrap().save(&photo).unwrap();
        let out = dir.path().join("out");
        let args = |image: &Path| project::ProjectArgs {
            model: model.clone(),
            image: image.to_path_buf(),
            seeds: 16,
            steps: 60,
            lr: 0.05,
            out: Some(out.clone()),
            class: None,
        };
        let p = project::run(args(&photo)).unwrap();
        assert!(p.seed < 16 && p.loss < p.start_loss / 2.0, "{p:?}");
        let z = canard_shared::latent::decode_latent(&p.latent, 16).unwrap();
        // The latent written makes the picture the distance was measured on.
        let made = picture(&model, z);
        let error = made.iter().zip(rgb(&photo).into_raw()).map(|(&a, b)| (a as f64 - b as f64).abs()).sum::<f64>();
        assert!((error / made.len() as f64 - p.pixel_error).abs() < 0.5, "{error} {p:?}");
        for file in ["project_photo.png", "project_photo_projection.png", "project_photo.gif", "project_photo.json"] {
            assert!(out.join(file).is_file(), "{file}");
        }
        assert_eq!(rgb(&out.join("project_photo.png")).dimensions(), (2 * (SIZE as u32 + 2) + 2, SIZE as u32 + 4));
        // A grey photo is made colour, as training reads pictures; a file that is no picture is named.
        let grey = dir.path().join("grey.png");
        image::GrayImage::from_pixel(40, 30, image::Luma([90])).save(&grey).unwrap();
        assert!(project::run(args(&grey)).is_ok());
        // A huge photo is cut to its centre square and resized.
        let huge = dir.path().join("huge.png");
        image::RgbImage::from_pixel(3000, 2000, image::Rgb([200, 40, 40])).save(&huge).unwrap();
        assert!(project::run(args(&huge)).is_ok());
        let junk = dir.path().join("junk.png");
        std::fs::write(&junk, b"not a picture").unwrap();
        let err = project::run(args(&junk)).unwrap_err().to_string();
        assert!(err.starts_with(&format!("--image {}: ", junk.display())), "{err}");
    }
}
