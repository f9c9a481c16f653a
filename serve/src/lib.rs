//! canard-serve: serves images from canard's exported ONNX generators over HTTP.
//!
//! - [`ort_lib`]: finds and loads the ONNX Runtime library;
//! - [`registry`]: the models folder → loaded [`engine::Engine`]s by name;
//! - [`engine`] and [`batcher`]: one inference thread per model, batching requests;
//! - [`query`], [`routes`], [`render`], [`error`]: the HTTP side.

pub mod batcher;
pub mod engine;
pub mod error;
pub mod ort_lib;
pub mod query;
pub mod registry;
pub mod render;
pub mod routes;
