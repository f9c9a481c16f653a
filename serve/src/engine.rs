//! One loaded model: its manifest, an ONNX Runtime session owned by a dedicated
//! inference thread, and the handle request handlers use to reach that thread.
//!
//! ort's `Session::run` needs `&mut self` and blocks for the whole forward pass, so
//! the session lives on its own thread and requests queue up in front of it; the
//! queue is bounded so overload turns into quick 503s instead of unbounded memory.
//! A model is only handed out after one test inference passed, so a graph that
//! loads but cannot run (or returns NaN) never replaces a working one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use canard_shared::{Manifest, ManifestError};
use ort::environment::Environment;
use ort::session::Session;
use ort::value::{Outlet, TensorElementType, TensorRef, ValueType};
use prometheus::{Histogram, HistogramOpts, IntCounter};
use tokio::sync::oneshot;

use crate::batcher::{self, Job, Rules};
use crate::caching::Compute;
use crate::device::{self, Device, Provider};
use crate::latents::{self, Point};
use crate::render::ImageSpec;

/// The seed of the test inference every model must pass at load.
const TEST_SEED: u64 = 0;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    #[error("model {model} has {capacity} requests waiting already; try again shortly")]
    Busy { model: String, capacity: usize },
    #[error("the model's inference thread has stopped")]
    Stopped,
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("the model returned an unexpected output: {0}")]
    Output(String),
}

impl From<ort::Error> for EngineError {
    fn from(e: ort::Error) -> Self {
        EngineError::Inference(e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{}: ONNX Runtime cannot load it: {source}", .path.display())]
    Session { path: PathBuf, source: ort::Error },
    /// `--device cuda` and the model's session cannot be made on CUDA.
    #[error("{}: cannot run on CUDA (--device cuda): {source}", .path.display())]
    Cuda { path: PathBuf, source: ort::Error },
    #[error("{}: {reason}", .path.display())]
    Graph { path: PathBuf, reason: String },
    #[error("{}: the test inference failed: {reason}", .path.display())]
    TestInference { path: PathBuf, reason: String },
    #[error("cannot start the inference thread: {0}")]
    Thread(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// ONNX Runtime's intra-op threads for the session.
    pub intra_threads: usize,
    /// Most images in one `Session::run`.
    pub max_batch: usize,
    /// How long the inference thread waits for more requests to fill a batch.
    pub max_wait: Duration,
    /// Most requests waiting for the thread before new ones get [`EngineError::Busy`].
    pub queue: usize,
    /// Where sessions run, as [`device::resolve`] settled it at start: `Cpu`; `Cuda`
    /// (a failure is [`LoadError::Cuda`]); or `Auto`: CUDA, else the CPU with a warning.
    pub device: Device,
}

impl Default for EngineOptions {
    fn default() -> Self {
        let cpus = thread::available_parallelism().map_or(1, |n| n.get());
        EngineOptions {
            intra_threads: cpus,
            max_batch: 64,
            max_wait: Duration::from_millis(2),
            queue: 256,
            device: Device::Cpu,
        }
    }
}

/// Where an engine reports its batches; [`crate::metrics::Metrics::observer`] gives
/// ones that appear in `/metrics`, [`Observer::default`] ones that go nowhere.
#[derive(Clone)]
pub struct Observer {
    pub batch_size: Histogram,
    pub images: IntCounter,
}

impl Default for Observer {
    fn default() -> Self {
        // Constant, valid names: these constructors cannot fail.
        Observer {
            batch_size: Histogram::with_opts(HistogramOpts::new("batch_size", "images per run"))
                .expect("valid histogram options"),
            images: IntCounter::new("images", "images generated").expect("valid counter options"),
        }
    }
}

pub struct Engine {
    name: String,
    manifest: Manifest,
    compute: Compute,
    jobs: SyncSender<Job<Point>>,
    queue: usize,
    depth: Arc<AtomicUsize>,
    alive: Arc<AtomicBool>,
}

impl Engine {
    /// Loads `dir` (a model folder), runs the test inference and starts its
    /// inference thread. `name` is how clients address it.
    pub fn load(env: &Environment, name: &str, dir: &Path, opts: EngineOptions) -> Result<Engine, LoadError> {
        Engine::load_observed(env, name, dir, opts, Observer::default())
    }

    /// [`Engine::load`], reporting batch sizes and images to `observer`.
    pub fn load_observed(
        env: &Environment,
        name: &str,
        dir: &Path,
        opts: EngineOptions,
        observer: Observer,
    ) -> Result<Engine, LoadError> {
        let manifest = Manifest::load(dir)?;
        let bytes = manifest.read_onnx(dir)?;
        let onnx_path = dir.join(&manifest.onnx.file);
        let io = Io {
            input: manifest.onnx.input.clone(),
            output: manifest.onnx.output.clone(),
            dim: manifest.latent.dim,
            class_input: manifest.onnx.class_input.clone(),
        };
        let item_len = ImageSpec::of(&manifest).len();
        let (mut session, compute) = refuse_panics(&onnx_path, || {
            let (mut session, provider) = build_session(env, name, &onnx_path, &bytes, opts)?;
            check_graph(&session, &manifest).map_err(|reason| LoadError::Graph { path: onnx_path.clone(), reason })?;
            test_inference(&mut session, &io, item_len, manifest.classes.len())
                .map_err(|reason| LoadError::TestInference { path: onnx_path.clone(), reason })?;
            Ok((session, Compute::here(provider)))
        })?;

        let (jobs, rx) = sync_channel(opts.queue);
        let depth = Arc::new(AtomicUsize::new(0));
        let alive = Arc::new(AtomicBool::new(true));
        let (thread_depth, guard) = (depth.clone(), AliveGuard(alive.clone()));
        let rules = Rules { max_batch: opts.max_batch.max(1), max_wait: opts.max_wait };
        thread::Builder::new().name(format!("infer-{name}")).spawn(move || {
            let _guard = guard;
            batcher::run(rx, rules, item_len, &thread_depth, |points: &[Point]| {
                observer.batch_size.observe(points.len() as f64);
                let out = infer(&mut session, &io, points)?;
                observer.images.inc_by(points.len() as u64);
                Ok(out)
            })
        })?;
        Ok(Engine { name: name.to_string(), manifest, compute, jobs, queue: opts.queue, depth, alive })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn image_spec(&self) -> ImageSpec {
        ImageSpec::of(&self.manifest)
    }

    /// ONNX Runtime's name of the provider this model's session runs on.
    pub fn execution_provider(&self) -> &'static str {
        self.compute.provider.name()
    }

    pub fn provider(&self) -> Provider {
        self.compute.provider
    }

    /// How this model's pictures are computed, for their ETags.
    pub fn compute(&self) -> &Compute {
        &self.compute
    }

    /// Requests waiting for the inference thread.
    pub fn queue_depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// False once the inference thread has ended (it only ends on a panic while
    /// the engine exists).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// The generator's output for `seeds` (on a model of classes, each of its own class);
    /// see [`Engine::generate_points`].
    pub async fn generate(&self, seeds: Vec<u64>) -> Result<Vec<f32>, EngineError> {
        let k = self.manifest.classes.len();
        let class = |s: u64| (k > 0).then(|| canard_shared::latent::class_of_seed(s, k) as u32);
        self.generate_points(seeds.into_iter().map(|s| Point::seed(s).of_class(class(s))).collect()).await
    }

    /// `points.len()` images of [`ImageSpec::len`] values each, NCHW, in order.
    /// Never blocks the caller's thread: a full queue is an immediate
    /// [`EngineError::Busy`]. Dropping the future before the answer withdraws the
    /// request: if it has not run yet, it never will.
    pub async fn generate_points(&self, points: Vec<Point>) -> Result<Vec<f32>, EngineError> {
        if points.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.depth.fetch_add(1, Ordering::Relaxed);
        self.jobs.try_send(Job { items: points, reply }).map_err(|e| {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            match e {
                TrySendError::Full(_) => EngineError::Busy { model: self.name.clone(), capacity: self.queue },
                TrySendError::Disconnected(_) => EngineError::Stopped,
            }
        })?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }
}

/// Runs the ONNX Runtime side of a load, turning a panic into [`LoadError::Session`]:
/// ort 2.0.0-rc.15 panics instead of returning an error on some malformed graphs
/// (`expect("infallible")` in `commit_from_memory` when an output's inferred shape has
/// a negative dimension; found by `fuzz/` target `onnx_serve`, and leaking about 100
/// bytes inside ort each time). A bad model file must be refused and skipped, not take
/// the server, or its hot-reload thread, down.
fn refuse_panics<T>(path: &Path, load: impl FnOnce() -> Result<T, LoadError>) -> Result<T, LoadError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(load)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".into());
        Err(LoadError::Session {
            path: path.to_path_buf(),
            source: ort::Error::new(format!("the ort binding panicked on this model: {what}")),
        })
    })
}

/// Marks the engine dead when the inference thread ends, however it ends.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// The session on the provider `opts.device` asks for. CUDA is registered
/// explicitly (ort's `with_execution_providers` would fall back to the CPU silently).
/// When CUDA fails the model is tried on the CPU, to tell a broken model
/// ([`LoadError::Session`]) from a CUDA problem: that is [`LoadError::Cuda`] with
/// `Cuda`, and with `Auto` a fall-back to the CPU, logged at warn level with the reason.
fn build_session(
    env: &Environment,
    name: &str,
    path: &Path,
    onnx: &[u8],
    opts: EngineOptions,
) -> Result<(Session, Provider), LoadError> {
    let on = |provider| session_on(env, onnx, opts.intra_threads, provider);
    let cpu = || on(Provider::Cpu).map_err(|source| LoadError::Session { path: path.to_path_buf(), source });
    // Without the cuda feature `Auto` is the CPU; `Cuda` fails below with the reason.
    let device = match opts.device {
        Device::Auto if !device::CUDA_BUILT => Device::Cpu,
        d => d,
    };
    if device == Device::Cpu {
        return cpu().map(|s| (s, Provider::Cpu));
    }
    match on(Provider::Cuda) {
        Ok(session) => Ok((session, Provider::Cuda)),
        Err(cuda) => {
            let session = cpu()?;
            if device == Device::Cuda {
                return Err(LoadError::Cuda { path: path.to_path_buf(), source: cuda });
            }
            tracing::warn!(
                model = name,
                "--device auto: model {name} cannot run on CUDA, falling back to the CPU: {cuda}"
            );
            Ok((session, Provider::Cpu))
        }
    }
}

fn session_on(env: &Environment, onnx: &[u8], intra_threads: usize, provider: Provider) -> ort::Result<Session> {
    let mut builder = Session::builder(env)?.with_intra_threads(intra_threads)?;
    if provider == Provider::Cuda {
        device::register_cuda(&mut builder)?;
    }
    builder.commit_from_memory(onnx)
}

/// What the inference thread needs to know of the manifest.
struct Io {
    input: String,
    output: String,
    dim: usize,
    /// A conditional model's class input (int64 [N]).
    class_input: Option<String>,
}

fn infer(session: &mut Session, io: &Io, points: &[Point]) -> Result<Vec<f32>, EngineError> {
    let z = latents::batch(points, io.dim);
    let z = TensorRef::from_array_view(([points.len(), io.dim, 1, 1], z.as_slice()))?;
    let classes = latents::classes(points);
    let outputs = match &io.class_input {
        Some(name) => {
            let classes = TensorRef::from_array_view(([points.len()], classes.as_slice()))?;
            session.run(ort::inputs![io.input.as_str() => z, name.as_str() => classes])?
        }
        None => session.run(ort::inputs![io.input.as_str() => z])?,
    };
    let image =
        outputs.get(&io.output).ok_or_else(|| EngineError::Output(format!("no output named {:?}", io.output)))?;
    let (_, values) = image.try_extract_tensor::<f32>()?;
    Ok(values.to_vec())
}

/// One image (of the first and of the last class, with classes), of the right size, with
/// finite values: a graph with fewer classes than its manifest names is refused here.
fn test_inference(session: &mut Session, io: &Io, item_len: usize, classes: usize) -> Result<(), String> {
    let points: Vec<Point> = match classes {
        0 => vec![Point::seed(TEST_SEED)],
        k => [0, k as u32 - 1].map(|c| Point::seed(TEST_SEED).of_class(Some(c))).to_vec(),
    };
    let out = infer(session, io, &points).map_err(|e| format!("{e} (with the {classes} classes model.json names)"))?;
    if out.len() != item_len * points.len() {
        return Err(format!("{} values for {} image(s) of {item_len}", out.len(), points.len()));
    }
    if let Some(bad) = out.iter().find(|v| !v.is_finite()) {
        return Err(format!("the output holds {bad} for seed {TEST_SEED}"));
    }
    Ok(())
}

/// Refuses, at load time, a graph that does not match its manifest, so a wrong
/// export fails at startup with a reason instead of on every request.
fn check_graph(session: &Session, m: &Manifest) -> Result<(), String> {
    let size = i64::from(m.image_size);
    let (dim, channels) = (m.latent.dim as i64, i64::from(m.channels));
    let inputs = 1 + usize::from(m.onnx.class_input.is_some());
    if session.inputs().len() != inputs {
        return Err(format!(
            "the generator must have exactly {inputs} input(s) (z{}), not {}: {}",
            if inputs == 2 { " and the class" } else { "" },
            session.inputs().len(),
            names(session.inputs())
        ));
    }
    let input = find(session.inputs(), &m.onnx.input, "input")?;
    check_shape(input, &m.onnx.input, [dim, 1, 1])?;
    if let Some(name) = &m.onnx.class_input {
        let class = find(session.inputs(), name, "input")?;
        let fits =
            matches!(class.dtype(), ValueType::Tensor { ty: TensorElementType::Int64, shape, .. } if shape.len() == 1);
        if !fits {
            return Err(format!("{name:?}, the class input, must be int64 of shape [N]"));
        }
    }
    let output = find(session.outputs(), &m.onnx.output, "output")?;
    check_shape(output, &m.onnx.output, [channels, size, size])
}

fn find<'s>(outlets: &'s [Outlet], name: &str, kind: &str) -> Result<&'s Outlet, String> {
    outlets
        .iter()
        .find(|o| o.name() == name)
        .ok_or_else(|| format!("model.json names the {kind} {name:?}, but the graph's {kind}s are: {}", names(outlets)))
}

fn names(outlets: &[Outlet]) -> String {
    outlets.iter().map(|o| format!("{:?}", o.name())).collect::<Vec<_>>().join(", ")
}

/// f32, rank 4, and each static dimension after the batch equal to the manifest's.
fn check_shape(outlet: &Outlet, name: &str, expected: [i64; 3]) -> Result<(), String> {
    let ValueType::Tensor { ty, shape, .. } = outlet.dtype() else {
        return Err(format!("{name:?} is not a tensor"));
    };
    if *ty != TensorElementType::Float32 {
        return Err(format!("{name:?} holds {ty:?}, not float32"));
    }
    let dims: &[i64] = shape;
    let fits = dims.len() == 4 && dims[1..].iter().zip(expected).all(|(&d, e)| d < 0 || d == e);
    if !fits {
        return Err(format!(
            "{name:?} has shape {dims:?}; model.json implies [N, {}, {}, {}]",
            expected[0], expected[1], expected[2]
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_is_marked_dead_when_its_thread_panics() {
        let alive = Arc::new(AtomicBool::new(true));
        let guard = AliveGuard(alive.clone());
        let thread = thread::spawn(move || {
            let _guard = guard;
            panic!("an inference thread that dies");
        });
        assert!(thread.join().is_err());
        assert!(!alive.load(Ordering::Relaxed), "/readyz reads this flag");
    }
}
