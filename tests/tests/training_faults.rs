//! kill -9 at random moments of a training run — during steps, checkpoint writes,
//! previews, SWD and the export — then the same command again, until it finishes:
//! after every kill each visible checkpoint and model is whole, and the final model
//! and checkpoint equal an uninterrupted run's, bit for bit (training on the CPU is
//! deterministic). RELIABILITY.md records a run of it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use canard_e2e::cargo_bin;
use canard_shared::Manifest;
use canard_train::checkpoint;
use candle_core::{DType, Device};

const KILLS: usize = 30;

fn command(bin: &Path, dir: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "--data",
        "builtin:shapes",
        "--name",
        "k",
        "--arch",
        "dcgan",
        "--image-size",
        "16",
        "--ngf",
        "8",
        "--ndf",
        "8",
    ])
    .args(["--batch-size", "16", "--steps", "300", "--checkpoint-every", "1", "--keep-checkpoints", "2"])
    .args(["--eval-images", "512", "--seed", "3"])
    .arg("--runs-dir")
    .arg(dir.join("runs"))
    .arg("--models-dir")
    .arg(dir.join("models"))
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    c
}

/// Temporaries (`.NAME.PID.tmp`) anywhere under `dir`: what a write cut short leaves.
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                found.push(e.path());
            } else if e.path().is_dir() && name != ".cache" {
                stack.push(e.path());
            }
        }
    }
    found
}

/// The last step's checkpoint is written: what runs now is the final previews, SWD or export.
fn past_last_step(dir: &Path) -> bool {
    checkpoint::list(&dir.join("runs/k")).last().is_some_and(|p| p.ends_with("step_00000300"))
}

/// Every checkpoint a resume could pick is complete, and a model folder, if any, is whole.
fn assert_whole(dir: &Path, kill: usize) {
    let run = dir.join("runs/k");
    for c in checkpoint::list(&run) {
        checkpoint::read(&c, &Device::Cpu)
            .unwrap_or_else(|e| panic!("after kill {kill}: {} is broken: {e}", c.display()));
    }
    let model = dir.join("models/k");
    if model.join("model.json").exists() {
        let m = Manifest::load(&model).unwrap_or_else(|e| panic!("after kill {kill}: manifest broken: {e}"));
        m.read_onnx(&model).unwrap_or_else(|e| panic!("after kill {kill}: ONNX does not match its manifest: {e}"));
    }
}

#[test]
fn kill_9_at_random_moments_then_resume_ends_with_the_uninterrupted_model() {
    let bin = cargo_bin("canard-train", "canard-train");
    let straight = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let mut child = command(&bin, straight.path()).spawn().unwrap();
    // How long a life takes to start (dataset, model): the first checkpoint's time.
    let mut startup = None;
    while child.try_wait().unwrap().is_none() {
        if startup.is_none() && !checkpoint::list(&straight.path().join("runs/k")).is_empty() {
            startup = Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(child.wait().unwrap().success());
    let whole_run = t0.elapsed();
    let startup = startup.expect("the run wrote checkpoints");

    let faulty = tempfile::tempdir().unwrap();
    // Random kill delays after each life's start: short at first (each life gets a little
    // further; kills land in steps and checkpoint writes), then growing, so that lives also
    // reach the final SWD and export (not checkpointed: each life redoes them) and one finishes.
    let mut state = 0x9e3779b97f4a7c15u64;
    let mut next_delay = |life: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // At most 1/40 of the run each for the first 30 lives (so at least 30 kills), then longer.
        let reach = if life <= 30 { 1.0 / 40.0 } else { (life - 30) as f64 / 40.0 };
        startup + whole_run.mul_f64((state % 1000) as f64 / 1000.0 * reach)
    };
    let (mut kills, mut mid_write, mut lives, mut in_final_phase) = (0, 0, 0, 0);
    loop {
        lives += 1;
        assert!(lives < 200, "the run made no progress in {lives} lives ({kills} kills)");
        let mut child = command(&bin, faulty.path()).spawn().unwrap();
        let deadline = Instant::now() + next_delay(lives);
        let exited = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            // Writes and the final SWD and export are small slices of the run that random
            // delays can all miss (CI once did): until a kill has landed in each, also kill
            // the moment a write is seen under way, and (once the random kills are done) the
            // first life seen past the last step.
            if mid_write == 0 && !temporaries(faulty.path()).is_empty() {
                break None;
            }
            if lives > KILLS && in_final_phase == 0 && past_last_step(faulty.path()) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        match exited {
            Some(status) => {
                assert!(status.success(), "a resumed run failed after {kills} kills: {status}");
                break;
            }
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                mid_write += !temporaries(faulty.path()).is_empty() as usize;
                // Past the last step: killed during the final previews, SWD or export.
                in_final_phase += past_last_step(faulty.path()) as usize;
                assert_whole(faulty.path(), kills);
            }
        }
    }
    eprintln!(
        "{kills} kills in {lives} lives; {mid_write} left a write unfinished, {in_final_phase} came after the last \
         step; a whole run takes {whole_run:?}, its start {startup:?}"
    );
    assert!(in_final_phase > 0, "no kill landed after the last step (SWD, export)");
    assert!(kills >= KILLS, "only {kills} kills before the run finished (want {KILLS})");
    assert!(mid_write > 0, "no kill landed during a write: the test is not exercising what it should");

    // The resumed run cleaned up after the killed ones.
    assert_eq!(temporaries(faulty.path()), Vec::<PathBuf>::new(), "temporaries left behind");
    let onnx = |d: &Path| std::fs::read(d.join("models/k/generator.onnx")).unwrap();
    assert_eq!(onnx(straight.path()), onnx(faulty.path()), "the exported models differ");
    let last = |d: &Path| checkpoint::latest(&d.join("runs/k"), &Device::Cpu).unwrap();
    let ((_, sa, ta), (_, sb, tb)) = (last(straight.path()), last(faulty.path()));
    assert_eq!(sa.step, sb.step);
    assert_eq!(ta.len(), tb.len());
    for (k, a) in &ta {
        let b = &tb[k];
        let values =
            |t: &candle_core::Tensor| t.flatten_all().unwrap().to_dtype(DType::F64).unwrap().to_vec1::<f64>().unwrap();
        let (a, b) = (values(a), values(b));
        assert_eq!(a, b, "checkpoint tensor {k} differs");
    }
    // Every column but the last, the training time, which is the clock's.
    let losses = |d: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(d.join("runs/k/losses.csv")).unwrap();
        text.lines().map(|l| l.rsplit_once(',').map_or(l, |(rest, _)| rest).to_string()).collect()
    };
    let (a, b) = (losses(straight.path()), losses(faulty.path()));
    assert_eq!(a.len(), 301, "a header and one row per step");
    assert_eq!(a, b, "loss histories differ");
}
