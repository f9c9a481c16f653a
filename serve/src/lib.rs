//! canard-serve: serves images from canard's exported ONNX generators over HTTP.
//!
//! - [`ort_lib`], [`device`]: find and load the ONNX Runtime library, and pick
//!   the execution provider (CUDA or CPU);
//! - [`registry`], [`live`], [`reload`], [`fingerprint`]: the models folder →
//!   loaded [`engine::Engine`]s by name, swapped atomically on hot reload;
//! - [`engine`], [`batcher`], [`latents`]: one inference thread per model,
//!   gathering concurrent requests into one ONNX Runtime run;
//! - [`query`], [`limits`], [`routes`], [`render`], [`encode`], [`caching`],
//!   [`error`], [`openapi`]: the HTTP side; [`app`] puts it together with CORS
//!   and [`metrics`];
//! - [`config`], [`logging`]: flags, environment and logs of the binary;
//!   [`conn`]: the watchdog that closes connections stalled in a request's head.

pub mod app;
pub mod batcher;
pub mod caching;
pub mod config;
pub mod conn;
pub mod device;
pub mod encode;
pub mod engine;
pub mod error;
pub mod fingerprint;
pub mod latents;
pub mod limits;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod openapi;
pub mod ort_lib;
pub mod query;
pub mod registry;
pub mod reload;
pub mod render;
pub mod routes;
