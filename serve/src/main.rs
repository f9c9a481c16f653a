//! `canard-serve`: load ONNX Runtime and the models, then serve HTTP until SIGTERM
//! (actix then stops accepting and lets in-flight requests finish, for at most
//! `--shutdown-timeout` seconds) or Ctrl-C / SIGINT (actix stops at once).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use actix_web::HttpServer;
use anyhow::Context;
use canard_serve::app::{self, AppState};
use canard_serve::config::Args;
use canard_serve::device::{self, Device};
use canard_serve::live::Live;
use canard_serve::metrics::Metrics;
use canard_serve::registry::Loader;
use canard_serve::reload::{Reloader, Watcher};
use canard_serve::{conn, logging, ort_lib};
use clap::Parser;
use tracing::{info, warn};

fn main() -> ExitCode {
    limit_malloc_arenas();
    let args = Args::parse();
    if let Err(e) = logging::init(args.log.as_deref(), args.log_format) {
        eprintln!("canard-serve: error: {e}");
        return ExitCode::FAILURE;
    }
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("canard-serve: error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. Most messages here already quote their
/// cause, so a cause is only appended when its text is not there yet.
fn describe(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1).map(ToString::to_string) {
        if !msg.contains(&cause) {
            msg = format!("{msg}: {cause}");
        }
    }
    msg
}

fn run(args: Args) -> anyhow::Result<()> {
    // Read by hand, not by clap: an empty ORT_DYLIB_PATH means "not set", as it does
    // for ort itself, where clap would refuse the empty value.
    let from_env = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()).map(PathBuf::from);
    let explicit = args.ort_lib.clone().or(from_env);
    // `--device cuda` in a build without CUDA is refused before anything is loaded.
    device::check_built(args.device)?;
    let may_use_cuda = device::CUDA_BUILT && args.device != Device::Cpu;
    let ort = ort_lib::load_with(explicit.as_deref(), may_use_cuda)?;
    info!("ONNX Runtime loaded from {ort}");

    let mut opts = args.engine_options();
    let (resolved, fallback) = device::resolve(&ort.env, &ort.path, args.device)?;
    if let Some(warning) = fallback {
        warn!("{warning}");
    }
    opts.device = resolved;
    match (args.device, resolved) {
        (Device::Auto, Device::Cpu) if !device::CUDA_BUILT => {
            info!("--device auto: this canard-serve was built without the cuda feature: models run on the CPU")
        }
        (_, Device::Cpu) => info!("--device {}: models run on the CPU", args.device),
        _ => {
            info!("--device {}: the CUDA execution provider registered; models run on CUDA (see /healthz)", args.device)
        }
    }

    let metrics = Arc::new(Metrics::new());
    let loader = Loader::new(&ort.env, opts, metrics.clone());
    let (registry, skipped) = loader.load_all(&args.models, args.model.as_deref())?;
    for s in &skipped {
        warn!(model = %s.name, "skipping model folder {}: {}", s.dir.display(), s.error);
    }
    for engine in registry.models() {
        let m = engine.manifest();
        info!(
            model = engine.name(),
            provider = engine.execution_provider(),
            "model {} loaded: {}x{}, {} channel(s), latent {}, {} ({} intra-op threads)",
            engine.name(),
            m.image_size,
            m.image_size,
            m.channels,
            m.latent.dim,
            engine.execution_provider(),
            opts.intra_threads
        );
    }
    if let Some(default) = registry.default_model() {
        info!("default model: {}", default.name());
    }

    let live = Arc::new(Live::new(registry));
    let _watcher = match args.reload_every() {
        Some(every) => {
            let reloader = Reloader::new(loader, args.models.clone(), args.model.clone(), live.clone(), &skipped);
            info!("hot reload: watching {} every {:?}", args.models.display(), every);
            Some(Watcher::spawn(reloader, every).context("cannot start the hot-reload thread")?)
        }
        None => None,
    };

    let stalled = metrics.stalled_connections.clone();
    let state = AppState::new(live, metrics);
    let cors = args.cors_origins.clone();
    info!("CORS origins: {cors}");
    let mut server = HttpServer::new(move || app::build(state.clone(), &cors))
        .shutdown_timeout(args.shutdown_timeout)
        .client_request_timeout(args.request_timeout())
        .keep_alive(args.keep_alive());
    // Without keep-alive every connection carries one request, whose head actix times.
    if let Some(keep_alive) = args.keep_alive() {
        server = server.on_connect(conn::watchdog(keep_alive + args.request_timeout(), stalled));
    }
    if let Some(workers) = args.workers {
        server = server.workers(workers);
    }
    let server = server
        .bind(&args.bind)
        .with_context(|| format!("cannot listen on {} (expected HOST:PORT, e.g. 127.0.0.1:8080)", args.bind))?;
    for addr in server.addrs() {
        info!("listening on http://{addr}");
    }
    if let Some(addr) = server.addrs().first() {
        info!("try: curl -s 'http://{addr}/generate?seed=42' > 42.png");
    }
    actix_web::rt::System::new().block_on(server.run()).context("server stopped with an error")?;
    info!("stopped");
    Ok(())
}

/// Two glibc malloc arenas instead of up to eight per core. Every hot reload starts a new
/// inference thread, and under load each one got a fresh arena that kept its memory: a
/// 3-minute soak with 29 reloads at 64 connections grew 39 → 137 MiB, and 37 → 63 MiB with
/// two arenas (RELIABILITY.md). Not set when the
/// operator chose a value with MALLOC_ARENA_MAX.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
