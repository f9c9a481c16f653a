//! Prometheus metrics, one registry per server (not the process-global one, so
//! tests in one process do not count each other's requests).
//!
//! Label values are bounded: `route` is the route's pattern (`/models/{name}`) or
//! `unmatched`, never the raw path; `model` is a loaded model's folder name.

use std::time::Duration;

use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry as PromRegistry, TextEncoder,
};

use crate::engine::Observer;
use crate::registry::Registry;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub struct Metrics {
    registry: PromRegistry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub batch_size: HistogramVec,
    pub images: IntCounterVec,
    pub queue_depth: IntGaugeVec,
    pub provider: IntGaugeVec,
    pub models_loaded: IntGauge,
    pub reloads: IntCounterVec,
    pub stalled_connections: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        // Every name, label and bucket list below is a valid constant, and each is
        // registered once into a fresh registry: none of these calls can fail.
        let registry = PromRegistry::new_custom(Some("canard".into()), None).expect("valid prefix");
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered, by route pattern and status code"),
            &["route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "time to answer, by route pattern")
                .buckets(exponential_buckets(0.0005, 2.0, 16).expect("valid buckets")),
            &["route"],
        )
        .expect("valid metric");
        let batch_size = HistogramVec::new(
            HistogramOpts::new("batch_size", "images per ONNX Runtime run, by model")
                .buckets(exponential_buckets(1.0, 2.0, 9).expect("valid buckets")),
            &["model"],
        )
        .expect("valid metric");
        let images = IntCounterVec::new(Opts::new("images_generated_total", "images generated, by model"), &["model"])
            .expect("valid metric");
        let queue_depth = IntGaugeVec::new(
            Opts::new("queue_depth", "requests waiting for the inference thread, by model"),
            &["model"],
        )
        .expect("valid metric");
        let provider = IntGaugeVec::new(
            Opts::new(
                "execution_provider",
                "1 for the ONNX Runtime execution provider each model runs on (CUDAExecutionProvider, CPUExecutionProvider)",
            ),
            &["model", "provider"],
        )
        .expect("valid metric");
        let models_loaded = IntGauge::new("models_loaded", "models being served").expect("valid metric");
        let reloads = IntCounterVec::new(
            Opts::new("model_reloads_total", "hot-reload events, by model and result (loaded, refused, unloaded)"),
            &["model", "result"],
        )
        .expect("valid metric");
        let stalled_connections = IntCounter::new(
            "stalled_connections_closed_total",
            "connections closed because a request's head stalled after an earlier request (see src/conn.rs)",
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(batch_size.clone()),
            Box::new(images.clone()),
            Box::new(queue_depth.clone()),
            Box::new(provider.clone()),
            Box::new(models_loaded.clone()),
            Box::new(reloads.clone()),
            Box::new(stalled_connections.clone()),
        ] {
            registry.register(c).expect("each metric is registered once");
        }
        Metrics {
            registry,
            requests,
            latency,
            batch_size,
            images,
            queue_depth,
            provider,
            models_loaded,
            reloads,
            stalled_connections,
        }
    }

    /// Handles for the engine of `model`.
    pub fn observer(&self, model: &str) -> Observer {
        Observer {
            batch_size: self.batch_size.with_label_values(&[model]),
            images: self.images.with_label_values(&[model]),
        }
    }

    pub fn record_request(&self, route: &str, status: u16, elapsed: Duration) {
        self.requests.with_label_values(&[route, status.to_string().as_str()]).inc();
        self.latency.with_label_values(&[route]).observe(elapsed.as_secs_f64());
    }

    /// The text exposition, with the gauges read from `registry` now.
    pub fn render(&self, registry: &Registry) -> String {
        // Reset first so unloaded models drop out of the gauges.
        self.queue_depth.reset();
        self.provider.reset();
        for engine in registry.models() {
            self.queue_depth.with_label_values(&[engine.name()]).set(engine.queue_depth() as i64);
            self.provider.with_label_values(&[engine.name(), engine.execution_provider()]).set(1);
        }
        self.models_loaded.set(registry.len() as i64);
        let mut out = Vec::new();
        // Encoding gathered families into a Vec only fails on a broken family, which
        // this registry cannot hold; an empty answer would show it.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}
