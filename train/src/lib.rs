//! canard-train: folder → tensors → DCGAN training → checkpoint → ONNX + manifest.

pub mod atomic;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod export;
pub mod losses;
pub mod model;
pub mod report;
pub mod trainer;

pub use trainer::{train, TrainConfig, TrainOutcome};
