//! One loaded model: its manifest, an ONNX Runtime session owned by a dedicated
//! inference thread, and the handle request handlers use to reach that thread.
//!
//! ort's `Session::run` needs `&mut self` and blocks for the whole forward pass, so
//! the session lives on its own thread and requests queue up in front of it; the
//! queue is bounded so overload turns into quick 503s instead of unbounded memory.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::thread;

use canard_shared::latent::latent_batch;
use canard_shared::{Manifest, ManifestError};
use ort::environment::Environment;
use ort::session::Session;
use ort::value::{Outlet, TensorElementType, TensorRef, ValueType};
use tokio::sync::oneshot;

use crate::batcher::{self, Job};
use crate::render::ImageSpec;

/// The only provider this build registers; reported so clients never have to guess.
pub const CPU_PROVIDER: &str = "CPUExecutionProvider";

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
    #[error("{}: {reason}", .path.display())]
    Graph { path: PathBuf, reason: String },
    #[error("cannot start the inference thread: {0}")]
    Thread(#[from] std::io::Error),
}

#[derive(Debug, Clone, Copy)]
pub struct EngineOptions {
    /// ONNX Runtime's intra-op threads for the session.
    pub intra_threads: usize,
    /// Most images in one `Session::run`.
    pub max_batch: usize,
    /// Most requests waiting for the thread before new ones get [`EngineError::Busy`].
    pub queue: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        let cpus = thread::available_parallelism().map_or(1, |n| n.get());
        EngineOptions { intra_threads: cpus, max_batch: 64, queue: 256 }
    }
}

pub struct Engine {
    name: String,
    manifest: Manifest,
    jobs: SyncSender<Job>,
    queue: usize,
}

impl Engine {
    /// Loads `dir` (a model folder) and starts its inference thread. `name` is how
    /// clients address it.
    pub fn load(env: &Environment, name: &str, dir: &Path, opts: EngineOptions) -> Result<Engine, LoadError> {
        let manifest = Manifest::load(dir)?;
        let bytes = manifest.read_onnx(dir)?;
        let onnx_path = dir.join(&manifest.onnx.file);
        let mut session = build_session(env, &bytes, opts.intra_threads)
            .map_err(|source| LoadError::Session { path: onnx_path.clone(), source })?;
        check_graph(&session, &manifest).map_err(|reason| LoadError::Graph { path: onnx_path, reason })?;

        let (jobs, rx) = sync_channel(opts.queue);
        let io =
            Io { input: manifest.onnx.input.clone(), output: manifest.onnx.output.clone(), dim: manifest.latent.dim };
        let item_len = ImageSpec::of(&manifest).len();
        thread::Builder::new()
            .name(format!("infer-{name}"))
            .spawn(move || batcher::run(rx, opts.max_batch, item_len, |seeds| infer(&mut session, &io, seeds)))?;
        Ok(Engine { name: name.to_string(), manifest, jobs, queue: opts.queue })
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

    pub fn execution_provider(&self) -> &'static str {
        CPU_PROVIDER
    }

    /// The generator's output for `seeds`: `seeds.len()` images of
    /// [`ImageSpec::len`] values each, NCHW, in seed order. Never blocks the caller's
    /// thread: a full queue is an immediate [`EngineError::Busy`].
    pub async fn generate(&self, seeds: Vec<u64>) -> Result<Vec<f32>, EngineError> {
        if seeds.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.jobs.try_send(Job { seeds, reply }).map_err(|e| match e {
            TrySendError::Full(_) => EngineError::Busy { model: self.name.clone(), capacity: self.queue },
            TrySendError::Disconnected(_) => EngineError::Stopped,
        })?;
        answer.await.map_err(|_| EngineError::Stopped)?
    }
}

fn build_session(env: &Environment, onnx: &[u8], intra_threads: usize) -> ort::Result<Session> {
    Session::builder(env)?.with_intra_threads(intra_threads)?.commit_from_memory(onnx)
}

/// What the inference thread needs to know of the manifest.
struct Io {
    input: String,
    output: String,
    dim: usize,
}

fn infer(session: &mut Session, io: &Io, seeds: &[u64]) -> Result<Vec<f32>, EngineError> {
    let z = latent_batch(seeds, io.dim);
    let z = TensorRef::from_array_view(([seeds.len(), io.dim, 1, 1], z.as_slice()))?;
    let outputs = session.run(ort::inputs![io.input.as_str() => z])?;
    let image =
        outputs.get(&io.output).ok_or_else(|| EngineError::Output(format!("no output named {:?}", io.output)))?;
    let (_, values) = image.try_extract_tensor::<f32>()?;
    Ok(values.to_vec())
}

/// Refuses, at load time, a graph that does not match its manifest, so a wrong
/// export fails at startup with a reason instead of on every request.
fn check_graph(session: &Session, m: &Manifest) -> Result<(), String> {
    let size = i64::from(m.image_size);
    let (dim, channels) = (m.latent.dim as i64, i64::from(m.channels));
    if session.inputs().len() != 1 {
        return Err(format!(
            "the generator must have exactly one input, not {}: {}",
            session.inputs().len(),
            names(session.inputs())
        ));
    }
    let input = find(session.inputs(), &m.onnx.input, "input")?;
    check_shape(input, &m.onnx.input, [dim, 1, 1])?;
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
