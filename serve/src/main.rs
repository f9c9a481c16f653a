//! `canard-serve`: load ONNX Runtime and the models, then serve HTTP until Ctrl-C
//! or SIGTERM (actix stops gracefully on both).

use std::path::PathBuf;
use std::process::ExitCode;

use actix_web::{web, App, HttpServer};
use anyhow::Context;
use canard_serve::engine::EngineOptions;
use canard_serve::registry::Registry;
use canard_serve::{ort_lib, routes};
use clap::Parser;

#[derive(Debug, Parser)]
#[command(version, about = "Serves PNG images from canard's exported generators over HTTP.")]
struct Args {
    /// Folder holding one sub-folder per model (model.json + ONNX file).
    #[arg(long, env = "CANARD_MODELS", default_value = "models")]
    models: PathBuf,
    /// Model used when a request names none; it must load [default: demo, else the first by name].
    #[arg(long, env = "CANARD_MODEL")]
    model: Option<String>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CANARD_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    /// The ONNX Runtime library (libonnxruntime.so) [env: ORT_DYLIB_PATH; default: searched
    /// beside the executable, then in .deps/onnxruntime/ of the current folder and the
    /// executable's ancestors]
    #[arg(long)]
    ort_lib: Option<PathBuf>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("canard-serve: error: {}", describe(&e));
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
    let explicit = args.ort_lib.or(from_env);
    let ort = ort_lib::load(explicit.as_deref())?;
    eprintln!("canard-serve: ONNX Runtime loaded from {ort}");

    let opts = EngineOptions::default();
    let (registry, skipped) = Registry::load(&ort.env, &args.models, args.model.as_deref(), opts)?;
    for s in &skipped {
        eprintln!("canard-serve: skipping model folder {}: {}", s.dir.display(), s.error);
    }
    for engine in registry.models() {
        let m = engine.manifest();
        eprintln!(
            "canard-serve: model {} loaded: {}x{}, {} channel(s), latent {}, {} ({} intra-op threads)",
            engine.name(),
            m.image_size,
            m.image_size,
            m.channels,
            m.latent.dim,
            engine.execution_provider(),
            opts.intra_threads
        );
    }
    eprintln!("canard-serve: default model: {}", registry.default_model().name());

    let data = web::Data::new(registry);
    let server = HttpServer::new(move || {
        App::new().app_data(data.clone()).configure(routes::configure).default_service(web::to(routes::not_found))
    })
    .bind(&args.bind)
    .with_context(|| format!("cannot listen on {} (expected HOST:PORT, e.g. 127.0.0.1:8080)", args.bind))?;
    for addr in server.addrs() {
        eprintln!("canard-serve: listening on http://{addr}");
    }
    if let Some(addr) = server.addrs().first() {
        eprintln!("canard-serve: try: curl -s 'http://{addr}/generate?seed=42' > 42.png");
    }
    actix_web::rt::System::new().block_on(server.run()).context("server stopped with an error")
}
