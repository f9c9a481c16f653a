//! Training behaviour end to end on the built-in data, small enough for CI: exact
//! resume for every architecture (fastgan included), WGAN's clipping bounds, and the divergence guard.

use std::path::Path;

use canard_train::{checkpoint, train_with, Arch, Settings, Start};
use candle_core::{DType, Device};

fn settings(dir: &Path, arch: &str, steps: usize) -> Settings {
    let size = if arch == "fastgan" { 32 } else { 16 }; // fastgan's smallest
    let burst = if arch == "wgan" { "critic-steps-burst = 10" } else { "" }; // wgan's alone
    let text = format!(
        r#"
        data = "builtin:shapes"
        name = "t"
        arch = "{arch}"
        image-size = {size}
        batch-size = 8
        ngf = 4
        ndf = 4
        nz = 8
        steps = {steps}
        seed = 3
        augment = true
        color-until = 1.0
        mirror = true
        checkpoint-every = 2
        {burst}
        eval-images = 64
        runs-dir = "{runs}"
        models-dir = "{models}"
        "#,
        runs = dir.join("runs").display(),
        models = dir.join("models").display(),
    );
    toml::from_str(&text).unwrap()
}

fn final_tensors(dir: &Path) -> std::collections::HashMap<String, Vec<f32>> {
    let (_, _, t) = checkpoint::latest(&dir.join("runs/t"), &Device::Cpu).expect("a checkpoint");
    t.into_iter().map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect()
}

fn resume_is_exact(arch: &str) {
    resume_is_exact_with(arch, |_| {});
}

/// 6 steps straight and 3 + 3 give the same checkpoint, model and loss history. (Colour
/// augmentation runs to the end: fastgan's default stops it halfway through the run's length,
/// which a 3-step run and a 6-step one place differently; `fastgan_stops_colour_augmentation_partway`.)
fn resume_is_exact_with(arch: &str, tweak: impl Fn(&mut Settings)) {
    let run = |dir: &Path, steps| {
        let mut s = settings(dir, arch, steps);
        tweak(&mut s);
        train_with(&s, None, Start::Auto).unwrap()
    };
    let straight = tempfile::tempdir().unwrap();
    run(straight.path(), 6);

    let resumed = tempfile::tempdir().unwrap();
    run(resumed.path(), 3);
    // Re-running with the same name and more steps continues from the checkpoint.
    let out = run(resumed.path(), 6);
    assert_eq!(out.summary.steps, 6);

    let state = |d: &Path| checkpoint::latest(&d.join("runs/t"), &Device::Cpu).expect("a checkpoint").1;
    let (sa, sb) = (state(straight.path()), state(resumed.path()));
    assert_eq!((sa.ada, sa.rng, sa.images_seen), (sb.ada, sb.rng, sb.images_seen), "{arch}: counters differ");
    let (a, b) = (final_tensors(straight.path()), final_tensors(resumed.path()));
    assert_eq!(a.len(), b.len());
    assert!(a.keys().any(|k| k.starts_with("opt_d.")) && a.keys().any(|k| k.starts_with("ema.")));
    for (k, v) in &a {
        assert_eq!(Some(v), b.get(k), "{arch}: {k} differs between a straight and a resumed run");
    }
    let onnx = |d: &Path| std::fs::read(d.join("models/t/generator.onnx")).unwrap();
    assert_eq!(onnx(straight.path()), onnx(resumed.path()), "{arch}: exported models differ");
    let rows = std::fs::read_to_string(resumed.path().join("runs/t/losses.csv")).unwrap().lines().count();
    assert_eq!(rows, 1 + 6, "{arch}: one loss row per step across the resume");
}

#[test]
fn dcgan_resume_is_exact() {
    resume_is_exact("dcgan");
}

#[test]
fn wgan_resume_is_exact() {
    resume_is_exact("wgan");
}

#[test]
fn wgan_gp_resume_is_exact() {
    resume_is_exact("wgan-gp");
}

/// Spectral norm's estimates, the reconstruction's quarter and the augmentation all resume.
#[test]
fn fastgan_resume_is_exact() {
    resume_is_exact("fastgan");
}

/// With R1 the critic trains differently (the penalty reaches it), and resumes exactly.
#[test]
fn fastgan_with_r1_trains_and_resumes_exactly() {
    resume_is_exact_with("fastgan", |s| s.r1 = Some(1.0));
    let run = |r1: Option<f64>| {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path(), "fastgan", 2);
        s.r1 = r1;
        let out = train_with(&s, None, Start::Auto).unwrap();
        (final_tensors(dir.path()), out)
    };
    let ((plain, _), (with_r1, _)) = (run(None), run(Some(10.0)));
    let differs =
        |prefix: &str| plain.iter().filter(|(k, _)| k.starts_with(prefix)).any(|(k, v)| with_r1.get(k) != Some(v));
    assert!(differs("d.down"), "R1 changed none of the critic's down blocks");
}

/// ADA's probability and counters resume too (p moves every 4 steps: once before the
/// resume at step 3 is saved mid-interval, once after).
#[test]
fn fastgan_with_ada_resume_is_exact() {
    resume_is_exact_with("fastgan", |s| s.ada_target = Some(0.2));
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), "fastgan", 8);
    s.ada_target = Some(0.2);
    train_with(&s, None, Start::Auto).unwrap();
    let (_, st, _) = checkpoint::latest(&dir.path().join("runs/t"), &Device::Cpu).unwrap();
    let ada = st.ada.expect("the checkpoint holds ADA's state");
    // Adjusted at steps 4 and 8 by 4 × 8 images over SPEED_IMAGES each, up or down from 0.
    let moves = ada.p * canard_train::augment::Ada::SPEED_IMAGES / 32.0;
    assert!((moves - moves.round()).abs() < 1e-9 && (0.0..=2.0).contains(&moves), "p = {}", ada.p);
    assert_eq!((ada.steps, ada.count, ada.target), (0, 0, 0.2));
}

/// `--color-until 0.5` stops colour augmentation before step 4 of 6: the same as 3 steps with
/// colour and translation and then 3 with translation alone, and not the same as colour throughout;
/// a run resumed past the point keeps it off.
#[test]
fn fastgan_stops_colour_augmentation_partway() {
    use canard_train::augment::DiffAugment;
    let run = |dir: &Path, steps, until, policy: &str| {
        let mut s = settings(dir, "fastgan", steps);
        (s.color_until, s.augment_policy) = (Some(until), DiffAugment::parse(policy).ok());
        train_with(&s, None, Start::Auto).unwrap();
        final_tensors(dir)
    };
    let (halfway, by_hand, throughout) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let stopped = run(halfway.path(), 6, 0.5, "color,translation");
    run(by_hand.path(), 3, 1.0, "color,translation");
    assert_eq!(stopped, run(by_hand.path(), 6, 1.0, "translation"), "colour did not stop exactly before step 4");
    // Resumed past the point (4 steps at 0.5, then to 8 at 0.25) colour stays off: 8 straight at 0.25.
    let (straight, past) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(past.path(), 4, 0.5, "color,translation");
    let resumed = run(past.path(), 8, 0.25, "color,translation");
    assert_eq!(resumed, run(straight.path(), 8, 0.25, "color,translation"), "colour came back after a resume");
    let coloured = run(throughout.path(), 6, 1.0, "color,translation");
    let differs = stopped.iter().any(|(k, v)| k.starts_with("d.") && coloured.get(k) != Some(v));
    assert!(differs, "stopping colour changed nothing");
}

/// fastgan on a folder of grey pictures, with no --channels: the data settles the grey
/// defaults (a critic as narrow as the generator, translation alone) and the run records them;
/// the same folder read as RGB keeps the colour defaults, and flags still win.
#[test]
fn fastgan_on_grey_pictures_gets_the_grey_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("grey");
    std::fs::create_dir_all(&folder).unwrap();
    for i in 0..4u32 {
        let img = image::GrayImage::from_fn(32, 32, |x, y| image::Luma([((x * 7 + y * 3 + i * 50) % 256) as u8]));
        img.save(folder.join(format!("{i}.png"))).unwrap();
    }
    let recorded = |name: &str, extra: &str| {
        let text = format!(
            "data = \"{data}\"\nname = \"{name}\"\nimage-size = 32\nbatch-size = 4\nngf = 4\nnz = 8\nsteps = 1\n\
             eval-images = 0\nruns-dir = \"{runs}\"\nmodels-dir = \"{models}\"\n{extra}",
            data = folder.display(),
            runs = dir.path().join("runs").display(),
            models = dir.path().join("models").display(),
        );
        train_with(&toml::from_str(&text).unwrap(), None, Start::Auto).unwrap();
        let saved = Settings::from_toml_file(&dir.path().join("runs").join(name).join("config.toml")).unwrap();
        (saved.channels, saved.ndf, saved.augment_policy.map(|p| p.to_string()))
    };
    assert_eq!(recorded("grey", ""), (Some(1), Some(16), Some("translation".into())));
    assert_eq!(recorded("rgb", "channels = 3"), (Some(3), Some(32), Some("color,translation".into())));
    let told = recorded("told", "ndf = 8\naugment-policy = \"color,translation\"");
    assert_eq!(told, (Some(1), Some(8), Some("color,translation".into())));
}

#[test]
fn wgan_critic_weights_stay_within_the_clamp() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), "wgan", 2);
    s.clamp = Some(0.005);
    train_with(&s, None, Start::Auto).unwrap();
    let t = final_tensors(dir.path());
    let mut checked = 0;
    for (k, v) in t.iter().filter(|(k, _)| k.starts_with("d.") && !k.contains("running_")) {
        assert!(v.iter().all(|x| x.abs() <= 0.005), "{k} exceeds the clamp");
        checked += 1;
    }
    assert!(checked >= 5, "critic tensors checked: {checked}");
    // The clamp binds: some weights sit on it.
    assert!(t["d.0.conv.weight"].iter().any(|x| x.abs() == 0.005));
}

/// A DCGAN run with absurd learning rates: the guard's error, the step it names, and the
/// steps of the checkpoints left.
fn diverging_run(dir: &Path, checkpoint_every: usize, log_every: usize) -> (String, usize, Vec<usize>) {
    let mut s = settings(dir, "dcgan", 40);
    (s.checkpoint_every, s.log_every) = (Some(checkpoint_every), Some(log_every));
    (s.lr_g, s.lr_d) = (Some(1e30), Some(1e30));
    let err = train_with(&s, None, Start::Auto).err().expect("training must stop").to_string();
    let diverged: usize = err.split("step ").nth(1).and_then(|s| s.split(':').next()).unwrap().parse().unwrap();
    let steps = checkpoint::list(&dir.join("runs/t"))
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy()["step_".len()..].parse().unwrap())
        .collect();
    (err, diverged, steps)
}

#[test]
fn the_guard_stops_a_diverging_run_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (err, diverged, steps) = diverging_run(dir.path(), 1, 1);
    assert!(err.contains("diverged") && err.contains("lower learning rate"), "{err}");
    assert!(!dir.path().join("models/t").exists(), "nothing exported from a diverged run");
    assert!(steps.iter().all(|&s| s < diverged), "checkpoints {steps:?} must predate step {diverged}");
}

/// Losses are read back every `log_every` steps, not every step: a divergence is still
/// caught before any checkpoint could hold its weights, and the history ends at its step.
#[test]
fn the_guard_sees_every_step_when_losses_are_read_back_in_groups() {
    let dir = tempfile::tempdir().unwrap();
    let (_, diverged, steps) = diverging_run(dir.path(), 3, 7);
    assert!(steps.iter().all(|&s| s < diverged), "checkpoints {steps:?} must predate step {diverged}");
    let rows = std::fs::read_to_string(dir.path().join("runs/t/losses.csv")).unwrap();
    let last: usize = rows.lines().last().unwrap().split(',').next().unwrap().parse().unwrap();
    assert_eq!(last, diverged, "the loss history ends at the step that diverged:\n{rows}");
}

#[test]
fn resume_requires_a_checkpoint_and_fresh_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let err = train_with(&settings(dir.path(), "dcgan", 2), None, Start::Resume).err().unwrap().to_string();
    assert!(err.contains("no checkpoint"), "{err}");
    train_with(&settings(dir.path(), "dcgan", 2), None, Start::Auto).unwrap();
    let out = train_with(&settings(dir.path(), "dcgan", 1), None, Start::Fresh).unwrap();
    assert_eq!(out.summary.steps, 1);
}

/// `--fresh` deletes only a run folder inside the runs folder, and only once every setting
/// is known to be good: a bad name or a bad value deletes nothing (it once deleted first).
#[test]
fn fresh_checks_every_setting_first_and_never_deletes_outside_the_runs_folder() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let victim = dir.path().join("victim");
    std::fs::create_dir_all(runs.join("other")).unwrap();
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("keep.txt"), b"mine").unwrap();
    std::fs::write(runs.join("other/keep.txt"), b"another run").unwrap();
    let absolute = victim.to_string_lossy().into_owned();
    for name in ["../victim", absolute.as_str(), ".", "..", "other/..", ""] {
        let s = Settings { name: Some(name.into()), ..settings(dir.path(), "dcgan", 1) };
        let err = train_with(&s, None, Start::Fresh).err().expect("refused").to_string();
        assert!(err.contains("--name"), "{name:?}: {err}");
    }
    // The same name from a config file.
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "name = \"../victim\"\n").unwrap();
    let s = Settings { name: None, ..settings(dir.path(), "dcgan", 1) };
    assert!(train_with(&s, Some(&file), Start::Fresh).err().unwrap().to_string().contains("--name"));
    // A good name with a bad value: the run is refused before it is deleted.
    train_with(&settings(dir.path(), "dcgan", 2), None, Start::Auto).unwrap();
    let bad = Settings { image_size: Some(48), ..settings(dir.path(), "dcgan", 1) };
    let err = train_with(&bad, None, Start::Fresh).err().unwrap().to_string();
    assert!(err.contains("power of two"), "{err}");
    // Nor is it deleted when the data cannot be read, or the length it makes is too long.
    let missing = Settings {
        data: Some(dir.path().join("no-such-folder").display().to_string()),
        ..settings(dir.path(), "dcgan", 1)
    };
    assert!(train_with(&missing, None, Start::Fresh).is_err());
    let long = Settings { steps: None, epochs: Some(99_999_999), ..settings(dir.path(), "dcgan", 1) };
    let err = train_with(&long, None, Start::Fresh).err().unwrap().to_string();
    assert!(err.contains("--epochs 99999999 is"), "{err}");
    assert_eq!(checkpoint::list(&runs.join("t")).len(), 1, "the run is still there");
    // A folder inside the runs folder that is not a run is not deleted either.
    let s = Settings { name: Some("other".into()), ..settings(dir.path(), "dcgan", 1) };
    let err = train_with(&s, None, Start::Fresh).err().unwrap().to_string();
    assert!(err.contains("not a canard run folder"), "{err}");
    // A run folder that is a link elsewhere is not followed.
    std::os::unix::fs::symlink(&victim, runs.join("link")).unwrap();
    let s = Settings { name: Some("link".into()), ..settings(dir.path(), "dcgan", 1) };
    let err = train_with(&s, None, Start::Fresh).err().unwrap().to_string();
    assert!(err.contains("refusing to delete"), "{err}");
    assert_eq!(std::fs::read(victim.join("keep.txt")).unwrap(), b"mine");
    assert_eq!(std::fs::read(runs.join("other/keep.txt")).unwrap(), b"another run");
    assert!(runs.join("link").exists());
}

/// Resuming with a setting that changes the networks' shape is refused by name before
/// anything is written, so the run still resumes as it was (config.toml was once saved
/// first, and every later resume failed on the tensors' shapes).
#[test]
fn a_resume_that_changes_the_networks_is_refused_by_name_and_leaves_the_run_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let base = || Settings { checkpoint_every: Some(1), ..settings(dir.path(), "fastgan", 2) };
    train_with(&base(), None, Start::Auto).unwrap();
    let config = dir.path().join("runs/t/config.toml");
    let saved = std::fs::read(&config).unwrap();
    for (flag, tweak) in [
        ("--nz 50", Settings { nz: Some(50), ..Settings::default() }),
        ("--arch dcgan", Settings { arch: Some(canard_train::config::Arch::Dcgan), ..Settings::default() }),
        ("--ngf 8", Settings { ngf: Some(8), ..Settings::default() }),
        ("--ndf 8", Settings { ndf: Some(8), ..Settings::default() }),
        ("--channels 1", Settings { channels: Some(1), ..Settings::default() }),
        ("--image-size 64", Settings { image_size: Some(64), ..Settings::default() }),
    ] {
        let s = base().overlay(&tweak).unwrap();
        let err = train_with(&s, None, Start::Auto).err().expect("refused").to_string();
        assert!(err.contains(flag) && err.contains("--fresh"), "{flag}: {err}");
        assert_eq!(std::fs::read(&config).unwrap(), saved, "{flag}: config.toml untouched");
    }
    // Plain resume still works, and a changed batch size (no change of shape) is taken.
    let more = Settings { steps: Some(3), ..base() };
    assert_eq!(train_with(&more, None, Start::Resume).unwrap().summary.steps, 3);
    let wider_batch = Settings { steps: Some(4), batch_size: Some(4), ..base() };
    assert_eq!(train_with(&wider_batch, None, Start::Resume).unwrap().summary.steps, 4);
    // --resume with no checkpoint that reads back fails instead of starting over.
    for c in checkpoint::list(&dir.path().join("runs/t")) {
        std::fs::write(c.join("tensors.safetensors"), b"cut").unwrap();
    }
    let err = train_with(&Settings { steps: Some(5), ..base() }, None, Start::Resume).err().unwrap().to_string();
    assert!(err.contains("reads back"), "{err}");
}

/// A run saved with augmentation off resumes, however old its config.toml (one without
/// `augment-policy` or `color-until`, from before they were recorded).
#[test]
fn a_run_with_augmentation_off_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let base = || Settings { augment: Some(false), color_until: None, ..settings(dir.path(), "fastgan", 2) };
    train_with(&base(), None, Start::Auto).unwrap();
    let config = dir.path().join("runs/t/config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let old: String = text
        .lines()
        .filter(|l| !l.starts_with("augment-policy") && !l.starts_with("color-until"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, old).unwrap();
    let more = Settings { name: Some("t".into()), steps: Some(3), ..Settings::default() };
    let runs = Settings { runs_dir: base().runs_dir, models_dir: base().models_dir, ..more };
    assert_eq!(train_with(&runs, None, Start::Resume).unwrap().summary.steps, 3);
}

/// A run that diverges before its first checkpoint is not told to resume from one.
#[test]
fn a_divergence_before_any_checkpoint_does_not_advise_resuming() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), "dcgan", 40);
    (s.checkpoint_every, s.log_every) = (Some(1000), Some(1));
    (s.lr_g, s.lr_d) = (Some(1e30), Some(1e30));
    let err = train_with(&s, None, Start::Auto).err().expect("training must stop").to_string();
    assert!(err.contains("No checkpoint was saved") && !err.contains("last good checkpoint"), "{err}");
    // Two good steps with checkpoints, then the same run resumed with the absurd rates.
    let with = dir.path().join("with");
    let good = Settings { checkpoint_every: Some(1), ..settings(&with, "dcgan", 2) };
    train_with(&good, None, Start::Auto).unwrap();
    let bad = Settings { steps: Some(40), lr_g: Some(1e30), lr_d: Some(1e30), log_every: Some(1), ..good };
    let err = train_with(&bad, None, Start::Resume).err().expect("training must stop").to_string();
    assert!(err.contains("The last good checkpoint (step 2) is kept"), "{err}");
}

/// Augmentation that the data's size turns off (dcgan on builtin:shapes' 4,096 pictures)
/// makes an explicit policy meaningless: refused by name, not ignored.
#[test]
fn a_policy_for_augmentation_the_data_turns_off_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let s = Settings {
        augment: None,
        augment_policy: Some(canard_train::augment::DiffAugment::parse("cutout").unwrap()),
        ..settings(dir.path(), "dcgan", 1)
    };
    let err = train_with(&s, None, Start::Auto).err().expect("refused").to_string();
    assert!(err.contains("--augment-policy cutout does nothing") && err.contains("--augment"), "{err}");
    let on = Settings { augment: Some(true), ..s };
    train_with(&on, None, Start::Auto).unwrap();
}

/// A run trained for `steps` in `dir` (name `t`), then the settings of run `b` there
/// starting from `from`.
fn fine_tuning(dir: &Path, from: &Path) -> Settings {
    let mut s = settings(dir, "fastgan", 2);
    (s.name, s.init_from) = (Some("b".into()), Some(from.to_path_buf()));
    s
}

#[test]
fn a_run_starts_from_another_runs_checkpoint_or_a_model_records_it_and_resumes_without_it() {
    use canard_train::nn::Shape;
    use canard_train::start_from::StartFrom;
    use canard_train::trainer::Gan;
    use rand::SeedableRng;

    let source = tempfile::tempdir().unwrap();
    train_with(&settings(source.path(), "fastgan", 2), None, Start::Auto).unwrap();
    let (run, model) = (source.path().join("runs/t"), source.path().join("models/t"));
    let shape = Shape { image_size: 32, channels: 3, nz: 8, ngf: 4, ndf: 4, classes: 0 };
    let cfg = settings(source.path(), "fastgan", 2).resolve().unwrap();
    let values = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let fresh =
        || Gan::new(Arch::Fastgan, shape, &mut rand_chacha::ChaCha8Rng::seed_from_u64(9), &Device::Cpu, DType::F32);

    // From the run: both networks are its newest checkpoint's.
    let saved = final_tensors(source.path());
    let gan = fresh().unwrap();
    StartFrom::open(&run, &cfg, shape, &Device::Cpu).unwrap().apply(&gan, None).unwrap();
    for (prefix, params) in [("g.", &gan.g_params), ("d.", &gan.d_params)] {
        for p in params.iter() {
            assert_eq!(values(p.var.as_tensor()), saved[&format!("{prefix}{}", p.name)], "{prefix}{}", p.name);
        }
    }
    // From the model: the exported generator, and a critic as a new run's.
    let gan = fresh().unwrap();
    let (_, exported) = canard_train::export::reader::load_generator(&model, &Device::Cpu).unwrap();
    StartFrom::open(&model, &cfg, shape, &Device::Cpu).unwrap().apply(&gan, None).unwrap();
    let new_critic = fresh().unwrap();
    for (p, e) in gan.g_params.iter().zip(exported.params.iter()) {
        assert_eq!(values(p.var.as_tensor()), values(e.var.as_tensor()), "{}", p.name);
    }
    for (p, n) in gan.d_params.iter().zip(new_critic.d_params.iter()) {
        assert_eq!(values(p.var.as_tensor()), values(n.var.as_tensor()), "{}", p.name);
    }

    // A whole run: recorded in its config.toml and its manifest, with the file's SHA-256.
    let tuned = tempfile::tempdir().unwrap();
    let out = train_with(&fine_tuning(tuned.path(), &run), None, Start::Auto).unwrap();
    let checkpoint = checkpoint::list(&run).pop().unwrap().join(checkpoint::TENSORS);
    let started = out.summary.started_from.expect("the manifest says where it started");
    assert_eq!(started.sha256, canard_shared::manifest::sha256_hex(&std::fs::read(&checkpoint).unwrap()));
    assert_eq!(started.file, checkpoint.display().to_string());
    let recorded = std::fs::read_to_string(tuned.path().join("runs/b/config.toml")).unwrap();
    assert!(recorded.contains(&format!("init-from = \"{}\"", run.display())), "{recorded}");
    // It resumes as any run, with its source gone, and still says where it started.
    drop(source);
    let mut longer = fine_tuning(tuned.path(), &run);
    longer.steps = Some(4);
    let out = train_with(&longer, None, Start::Auto).unwrap();
    assert_eq!((out.summary.steps, out.summary.started_from.map(|s| s.sha256)), (4, Some(started.sha256)));
}

#[test]
fn init_from_refuses_other_networks_by_name_and_folders_that_are_not_runs_or_models() {
    let source = tempfile::tempdir().unwrap();
    train_with(&settings(source.path(), "fastgan", 2), None, Start::Auto).unwrap();
    let run = source.path().join("runs/t");
    let tuned = tempfile::tempdir().unwrap();
    let refused = |tweak: &dyn Fn(&mut Settings)| {
        let mut s = fine_tuning(tuned.path(), &run);
        tweak(&mut s);
        let err = format!("{:#}", train_with(&s, None, Start::Auto).err().expect("refused"));
        assert!(!tuned.path().join("runs/b").exists(), "nothing written for a refused start: {err}");
        err
    };
    let err = refused(&|s| (s.ngf, s.nz) = (Some(8), Some(16)));
    assert!(err.contains("--nz 8 there, 16 here") && err.contains("--ngf 4 there, 8 here"), "{err}");
    let err = refused(&|s| s.arch = Some(Arch::Dcgan));
    assert!(err.contains("--arch fastgan there, dcgan here"), "{err}");
    let model = source.path().join("models/t");
    let err = refused(&|s| (s.init_from, s.ngf) = (Some(model.clone()), Some(8)));
    assert!(err.contains("--ngf 4 there, 8 here") && !err.contains("ndf"), "{err}");
    let err = refused(&|s| s.init_from = Some(source.path().into()));
    assert!(err.contains("not a canard run (runs/NAME), one of its checkpoints"), "{err}");
    let err = refused(&|s| (s.init_from, s.arch, s.image_size) = (Some(model.clone()), Some(Arch::WganGp), Some(32)));
    assert!(err.contains("--arch fastgan there, wgan-gp here"), "a model of another architecture: {err}");
    let err = refused(&|s| (s.init_from, s.freeze_d) = (Some(model.clone()), Some(1)));
    assert!(err.contains("--freeze-d 1: ") && err.contains("is a model, which holds no critic"), "{err}");
    let err = refused(&|s| s.freeze_d = Some(4));
    assert!(err.contains("--freeze-d 4: the fastgan critic at 32×32 has 3 blocks"), "{err}");
    let err = refused(&|s| (s.init_from, s.freeze_d) = (None, Some(1)));
    assert!(err.contains("--freeze-d keeps the critic's first blocks as --init-from gave them"), "{err}");
    // A damaged checkpoint is named, and left where it is (it is another run's).
    let newest = checkpoint::list(&run).pop().unwrap();
    std::fs::write(newest.join(checkpoint::TENSORS), b"not tensors").unwrap();
    let err = refused(&|_| {});
    assert!(err.contains("no checkpoint reads back") && err.contains("tensors.safetensors"), "{err}");
    assert!(newest.exists());
}

#[test]
fn freeze_d_keeps_the_critics_first_blocks_as_the_source_had_them() {
    let source = tempfile::tempdir().unwrap();
    train_with(&settings(source.path(), "fastgan", 2), None, Start::Auto).unwrap();
    let before = final_tensors(source.path());
    let tuned = tempfile::tempdir().unwrap();
    let mut s = fine_tuning(tuned.path(), &source.path().join("runs/t"));
    s.freeze_d = Some(2);
    train_with(&s, None, Start::Auto).unwrap();
    let (_, _, after) = checkpoint::latest(&tuned.path().join("runs/b"), &Device::Cpu).unwrap();
    let trainable =
        |k: &str| k.starts_with("d.") && (k.ends_with(".weight") || k.ends_with("gamma") || k.ends_with("beta"));
    for (k, t) in after.iter().filter(|(k, _)| trainable(k)) {
        let same = t.flatten_all().unwrap().to_vec1::<f32>().unwrap() == before[k];
        // fastgan 32×32's critic: down16, down8 (frozen), down4, the logit, the decoders.
        let frozen = k.starts_with("d.down16.") || k.starts_with("d.down8.");
        assert_eq!(same, frozen, "{k}");
    }
}

/// `--classes subfolders` on builtin:shapes: its five kinds are the classes, recorded in
/// config.toml, the checkpoint and a format-2 manifest whose generator reads them back; a
/// conditional run resumes exactly (fastgan and dcgan); resuming it without its classes is
/// refused by name, leaving the run as it was.
#[test]
fn a_conditional_run_records_its_classes_and_resumes_exactly() {
    use canard_train::config::ClassSource;
    let by_class = |s: &mut Settings| s.classes = Some(ClassSource::Subfolders);
    resume_is_exact_with("fastgan", by_class);
    resume_is_exact_with("dcgan", by_class);

    let dir = tempfile::tempdir().unwrap();
    let mut s = Settings { checkpoint_every: Some(1), ..settings(dir.path(), "dcgan", 2) };
    by_class(&mut s);
    let out = train_with(&s, None, Start::Auto).unwrap();
    let names = ["circle", "square", "triangle", "ring", "cross"];
    let config = std::fs::read_to_string(dir.path().join("runs/t/config.toml")).unwrap();
    assert!(config.contains("classes = \"subfolders\"") && config.contains("\"circle\" (820)"), "{config}");
    let (_, state, _) = checkpoint::latest(&dir.path().join("runs/t"), &Device::Cpu).unwrap();
    assert_eq!(state.classes.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), names);
    assert_eq!(state.classes.iter().map(|c| c.images).sum::<usize>(), 4096);
    let (manifest, g) = canard_train::export::reader::load_generator(&out.model_dir, &Device::Cpu).unwrap();
    assert_eq!((manifest.format_version, manifest.class_names()), (2, names.to_vec()));
    assert_eq!(g.shape.classes, 5);
    // The class changes the picture; a seed's own class is the server's.
    let (a, b) = (g.generate(&[7], Some(0)).unwrap(), g.generate(&[7], Some(3)).unwrap());
    assert_ne!(a, b);
    let own = canard_shared::latent::class_of_seed(7, 5);
    assert_eq!(g.generate(&[7], None).unwrap(), g.generate(&[7], Some(own)).unwrap());

    let config_before = std::fs::read(dir.path().join("runs/t/config.toml")).unwrap();
    let plain = Settings { classes: Some(ClassSource::None), steps: Some(3), ..s.clone() };
    let err = train_with(&plain, None, Start::Auto).err().unwrap().to_string();
    assert!(err.contains("--classes none differs from the run's subfolders") && err.contains("--fresh"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("runs/t/config.toml")).unwrap(), config_before);
}
