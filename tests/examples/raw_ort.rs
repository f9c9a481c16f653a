//! Raw ONNX Runtime throughput of an exported generator: no HTTP, no queue, just
//! seeds → latents → `Session::run` (→ PNG with `--png`), the way canard-serve's
//! inference thread does it. `scripts/bench-serve.sh` runs it beside the HTTP load
//! test so the two can be compared.
//!
//! ```sh
//! cargo run --release -p canard-e2e --example raw_ort -- --model models/demo --batch 64
//! cargo run --release -p canard-e2e --example raw_ort -- --model models/demo --batch 1 --png
//! ```
//!
//! Options: `--model DIR` (a model folder), `--batch N` (default 64), `--png` (also
//! encode every image as PNG, on the same thread), `--seconds S` (how long to
//! measure, default 5, after one warm-up run), `--threads N` (ONNX Runtime intra-op
//! threads; default: every CPU, as the server), `--provider cpu|cuda` (default cpu;
//! cuda needs the `cuda` feature and ONNX Runtime's GPU build, and fails rather than
//! falling back). The last line printed is
//! `RESULT batch=N png=BOOL images=I seconds=S images_per_s=R ms_per_run=M`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use canard_shared::image::{batch_to_images, encode_png};
use canard_shared::latent::latent_batch;
use canard_shared::Manifest;
use ort::session::Session;
use ort::value::TensorRef;

struct Args {
    model: PathBuf,
    batch: usize,
    png: bool,
    seconds: f64,
    threads: usize,
    cuda: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        model: PathBuf::from("models/demo"),
        batch: 64,
        png: false,
        seconds: 5.0,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cuda: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match flag.as_str() {
            "--model" => args.model = PathBuf::from(value("--model")?),
            "--batch" => args.batch = value("--batch")?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--seconds" => args.seconds = value("--seconds")?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--threads" => args.threads = value("--threads")?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--png" => args.png = true,
            "--provider" => {
                args.cuda = match value("--provider")?.as_str() {
                    "cpu" => false,
                    "cuda" => true,
                    other => return Err(format!("--provider {other:?}: cpu or cuda")),
                }
            }
            "-h" | "--help" => {
                println!("raw_ort --model DIR [--batch N] [--png] [--seconds S] [--threads N] [--provider cpu|cuda]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}; try --help")),
        }
    }
    if args.batch == 0 || args.threads == 0 || args.seconds.is_nan() || args.seconds <= 0.0 {
        return Err("--batch and --threads must be at least 1, --seconds more than 0".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    match parse_args().and_then(|a| run(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("raw_ort: {e}");
            ExitCode::FAILURE
        }
    }
}

/// As canard-serve builds its sessions.
fn build_session(env: &ort::environment::Environment, onnx: &[u8], threads: usize, cuda: bool) -> ort::Result<Session> {
    let mut builder = Session::builder(env)?.with_intra_threads(threads)?;
    if cuda {
        register_cuda(&mut builder)?;
    }
    builder.commit_from_memory(onnx)
}

/// The CUDA provider on device 0, as canard-serve registers it: an error, never a silent CPU fallback.
#[cfg(feature = "cuda")]
fn register_cuda(builder: &mut ort::session::builder::SessionBuilder) -> ort::Result<()> {
    use ort::ep::ExecutionProvider;
    ort::ep::CUDA::default().with_device_id(0).register(builder)
}

#[cfg(not(feature = "cuda"))]
fn register_cuda(_builder: &mut ort::session::builder::SessionBuilder) -> ort::Result<()> {
    Err(ort::Error::new("raw_ort was built without the cuda feature (cargo build --features cuda)"))
}

fn run(args: &Args) -> Result<(), String> {
    let manifest = Manifest::load(&args.model).map_err(|e| e.to_string())?;
    let onnx = manifest.read_onnx(&args.model).map_err(|e| e.to_string())?;
    let env = canard_e2e::ort_environment();
    let mut session = build_session(&env, &onnx, args.threads, args.cuda)
        .map_err(|e| format!("ONNX Runtime cannot load {}: {e}", args.model.display()))?;
    let (dim, c, s) = (manifest.latent.dim, manifest.channels as usize, manifest.image_size as usize);
    eprintln!(
        "raw_ort: model {} ({s}×{s}, {c} channel(s), latent {dim}), batch {}, png {}, {} intra-op thread(s)",
        manifest.name, args.batch, args.png, args.threads
    );

    // Distinct seeds every run, as distinct requests would be.
    let mut next_seed = 0u64;
    let mut run_once = |session: &mut Session| -> Result<usize, String> {
        let seeds: Vec<u64> = (next_seed..next_seed + args.batch as u64).collect();
        next_seed += args.batch as u64;
        let z = latent_batch(&seeds, dim);
        let z = TensorRef::from_array_view(([seeds.len(), dim, 1, 1], z.as_slice())).map_err(|e| e.to_string())?;
        let outputs =
            session.run(ort::inputs![manifest.onnx.input.as_str() => z]).map_err(|e| format!("inference: {e}"))?;
        let image = outputs.get(&manifest.onnx.output).ok_or("the model has no output named as in model.json")?;
        let (_, values) = image.try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
        if args.png {
            let images = batch_to_images(values, seeds.len(), c, s, s).map_err(|e| e.to_string())?;
            let mut bytes = 0;
            for img in &images {
                bytes += encode_png(img).map_err(|e| e.to_string())?.len();
            }
            std::hint::black_box(bytes);
        } else {
            std::hint::black_box(values.len());
        }
        Ok(seeds.len())
    };

    run_once(&mut session)?; // warm-up: first-run allocations and kernel selection
    let budget = Duration::from_secs_f64(args.seconds);
    let (start, mut images, mut runs) = (Instant::now(), 0usize, 0usize);
    while start.elapsed() < budget {
        images += run_once(&mut session)?;
        runs += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "RESULT batch={} png={} images={images} seconds={secs:.2} images_per_s={:.1} ms_per_run={:.3}",
        args.batch,
        args.png,
        images as f64 / secs,
        secs * 1000.0 / runs as f64
    );
    Ok(())
}
