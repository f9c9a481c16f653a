//! Structured logs with `tracing`, on stderr: text lines for people or JSON lines
//! for collectors. The filter comes from `--log`/`CANARD_LOG`, else `RUST_LOG`,
//! else `info` (ONNX Runtime's own chatter held at `warn`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

const DEFAULT_FILTER: &str = "info,ort=warn";

pub fn init(filter: Option<&str>, format: LogFormat) -> Result<(), String> {
    let from_env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let spec = filter.map(str::to_string).or(from_env).unwrap_or_else(|| DEFAULT_FILTER.to_string());
    let filter = EnvFilter::try_new(&spec).map_err(|e| format!("bad log filter {spec:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| format!("cannot start logging: {e}"))
}
