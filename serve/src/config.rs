//! The command line. Every flag can also be set by a `CANARD_*` environment
//! variable (the flag wins); the README's table lists them all.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::app::CorsOrigins;
use crate::device::Device;
use crate::engine::EngineOptions;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Parser)]
#[command(version, about = "Serves pictures from canard's exported generators over HTTP.")]
pub struct Args {
    /// Folder holding one sub-folder per model (model.json + ONNX file); polled for changes.
    #[arg(long, env = "CANARD_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// Model used when a request names none; it must load [default: demo, else the first by name].
    #[arg(long, env = "CANARD_MODEL")]
    pub model: Option<String>,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CANARD_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// The ONNX Runtime library (libonnxruntime.so) [also ORT_DYLIB_PATH; default: searched
    /// beside the executable, then in .deps/onnxruntime/ of the current folder and the
    /// executable's ancestors]
    #[arg(long, env = "CANARD_ORT_LIB")]
    pub ort_lib: Option<PathBuf>,
    /// Execution provider: 'cuda' (or refuse to start), 'cpu', or 'auto': CUDA when this build has
    /// the cuda feature and it works, else the CPU with a warning.
    #[arg(long, env = "CANARD_DEVICE", value_enum, default_value_t = Device::Auto)]
    pub device: Device,
    /// HTTP worker threads [default: one per CPU core].
    #[arg(long, env = "CANARD_WORKERS", value_parser = positive)]
    pub workers: Option<usize>,
    /// ONNX Runtime intra-op threads per model [default: one per CPU core].
    #[arg(long, env = "CANARD_INTRA_THREADS", value_parser = positive)]
    pub intra_threads: Option<usize>,
    /// Most images in one ONNX Runtime run.
    #[arg(long, env = "CANARD_MAX_BATCH", default_value_t = 64, value_parser = positive)]
    pub max_batch: usize,
    /// Under load, how long (ms) to wait after a batch's first request for more. 0 by default: with
    /// clients that wait for their answers, requests already queue up while a batch runs, and
    /// waiting only adds latency (BENCHMARKS.md); a wait helps many independent clients.
    #[arg(long, env = "CANARD_BATCH_WAIT_MS", default_value_t = 0.0, value_parser = wait_ms)]
    pub batch_wait_ms: f64,
    /// Requests that may wait per model; beyond that, 503 with Retry-After.
    #[arg(long, env = "CANARD_QUEUE", default_value_t = 256, value_parser = positive)]
    pub queue: usize,
    /// Seconds between looks at the models folder for new, changed or removed models; 0: never.
    #[arg(long, env = "CANARD_RELOAD_INTERVAL", default_value_t = 2.0, value_parser = interval_s)]
    pub reload_interval: f64,
    /// Origins whose pages may read the answers: '*', 'none' or a comma-separated list.
    #[arg(long, env = "CANARD_CORS_ORIGINS", default_value = "*")]
    pub cors_origins: CorsOrigins,
    /// Seconds a new connection has to send its first request's headers; a slower client
    /// (one that sends nothing, or trickles bytes) gets 408 and is disconnected.
    #[arg(long, env = "CANARD_REQUEST_TIMEOUT", default_value_t = 5.0, value_parser = request_timeout_s)]
    pub request_timeout: f64,
    /// Seconds an idle connection stays open after an answer, waiting for the next request
    /// (which must then arrive whole within --request-timeout); 0: close after every answer.
    #[arg(long, env = "CANARD_KEEP_ALIVE", default_value_t = 5.0, value_parser = keep_alive_s)]
    pub keep_alive: f64,
    /// On SIGTERM, seconds to let in-flight requests finish before stopping (SIGINT, i.e. Ctrl-C,
    /// and SIGQUIT stop at once: actix's rule).
    #[arg(long, env = "CANARD_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,
    /// Log filter, e.g. 'debug' or 'info,canard_serve=debug' [also RUST_LOG; default: info].
    #[arg(long, env = "CANARD_LOG")]
    pub log: Option<String>,
    /// Log line format.
    #[arg(long, env = "CANARD_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Args {
    pub fn engine_options(&self) -> EngineOptions {
        let defaults = EngineOptions::default();
        EngineOptions {
            intra_threads: self.intra_threads.unwrap_or(defaults.intra_threads),
            max_batch: self.max_batch,
            max_wait: Duration::from_secs_f64(self.batch_wait_ms / 1000.0),
            queue: self.queue,
            device: self.device,
        }
    }

    /// actix's `client_request_timeout`.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.request_timeout)
    }

    /// `None`: no keep-alive, the connection closes after each answer.
    pub fn keep_alive(&self) -> Option<Duration> {
        (self.keep_alive > 0.0).then(|| Duration::from_secs_f64(self.keep_alive))
    }

    /// `None`: hot reload is off.
    pub fn reload_every(&self) -> Option<Duration> {
        (self.reload_interval > 0.0).then(|| Duration::from_secs_f64(self.reload_interval))
    }
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

/// A duration of `unit`s (`scale` of them per second), `0` or from 1 ms to `max`. A
/// smaller value would round to zero on the way to a `Duration`, where `0` means
/// something else (actix reads a zero timeout as "no limit").
fn duration(s: &str, max: f64, unit: &str, scale: f64) -> Result<f64, String> {
    match s.parse::<f64>() {
        // -0 as well, made a plain 0.
        Ok(0.0) => Ok(0.0),
        Ok(v) if v / scale >= 0.001 && v <= max => Ok(v),
        _ => Err(format!("{s:?} is not 0 or a number of {unit} from {} to {max}", 0.001 * scale)),
    }
}

fn wait_ms(s: &str) -> Result<f64, String> {
    duration(s, 1000.0, "milliseconds", 1000.0)
}

fn interval_s(s: &str) -> Result<f64, String> {
    duration(s, 86_400.0, "seconds", 1.0)
}

/// Above 0 (actix reads 0 as "no limit", which would let slow clients hold connections forever).
fn request_timeout_s(s: &str) -> Result<f64, String> {
    match duration(s, 3600.0, "seconds", 1.0) {
        Ok(v) if v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds from 0.001 to 3600 (0 is not allowed)")),
    }
}

fn keep_alive_s(s: &str) -> Result<f64, String> {
    duration(s, 3600.0, "seconds", 1.0)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn every_flag_has_a_canard_environment_variable() {
        let cmd = Args::command();
        for arg in cmd.get_arguments().filter(|a| a.get_long().is_some_and(|l| l != "help" && l != "version")) {
            let long = arg.get_long().unwrap_or_default();
            let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
            assert_eq!(env, format!("CANARD_{}", long.to_uppercase().replace('-', "_")), "--{long}");
        }
    }

    #[test]
    fn parses_and_validates() {
        let a = Args::try_parse_from(["canard-serve", "--batch-wait-ms", "1.5", "--queue", "3"]).unwrap();
        let o = a.engine_options();
        assert_eq!((o.max_wait, o.queue, o.max_batch), (Duration::from_micros(1500), 3, 64));
        assert_eq!(a.reload_every(), Some(Duration::from_secs(2)));
        assert_eq!(a.cors_origins, CorsOrigins::Any);
        assert_eq!((a.device, o.device), (Device::Auto, Device::Auto));
        let a = Args::try_parse_from(["canard-serve", "--device", "cpu"]).unwrap();
        assert_eq!(a.engine_options().device, Device::Cpu);
        assert_eq!((a.request_timeout(), a.keep_alive()), (Duration::from_secs(5), Some(Duration::from_secs(5))));
        let a = Args::try_parse_from(["canard-serve", "--reload-interval", "0"]).unwrap();
        assert_eq!(a.reload_every(), None);
        let a = Args::try_parse_from(["canard-serve", "--request-timeout", "0.5", "--keep-alive", "0"]).unwrap();
        assert_eq!((a.request_timeout(), a.keep_alive()), (Duration::from_millis(500), None));
        for bad in [
            &["--queue", "0"][..],
            &["--batch-wait-ms", "-1"],
            &["--batch-wait-ms", "NaN"],
            &["--cors-origins", "example.org"],
            &["--log-format", "xml"],
            &["--device", "gpu"],
            &["--request-timeout", "0"],
            &["--request-timeout", "-1"],
            &["--keep-alive", "-1"],
            &["--keep-alive", "inf"],
        ] {
            assert!(Args::try_parse_from(["canard-serve"].iter().chain(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn durations_that_would_round_to_zero_are_refused_naming_the_setting() {
        for flag in ["--request-timeout", "--keep-alive", "--reload-interval", "--batch-wait-ms"] {
            let tiny = if flag == "--batch-wait-ms" { "0.0009" } else { "0.0000009" };
            for value in ["1e-10", tiny] {
                let err = Args::try_parse_from(["canard-serve", flag, value]).unwrap_err().to_string();
                assert!(err.contains(flag) && err.contains(" from "), "{flag} {value}: {err}");
            }
            let smallest = if flag == "--batch-wait-ms" { "1" } else { "0.001" };
            assert!(Args::try_parse_from(["canard-serve", flag, smallest]).is_ok(), "{flag} {smallest}");
        }
        let a = Args::try_parse_from(["canard-serve", "--request-timeout", "0.001", "--keep-alive", "0"]).unwrap();
        assert_eq!((a.request_timeout(), a.keep_alive()), (Duration::from_millis(1), None));
    }
}
