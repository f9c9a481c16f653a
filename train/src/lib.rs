//! canard-train: folder → tensors → trainer (fastgan, DCGAN, WGAN, WGAN-GP) → checkpoints →
//! ONNX + manifest, and the tools to look at a model without the server.

pub mod alloc;
pub mod arch;
pub mod atomic;
pub mod augment;
pub mod checkpoint;
pub mod config;
pub mod cursor;
pub mod data;
pub mod device;
pub mod ema;
pub mod eval;
pub mod export;
pub mod guard;
pub mod length;
pub mod losses;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod report;
pub mod start_from;
pub mod step;
pub mod tools;
pub mod trainer;

pub use config::{Arch, Settings, TrainConfig};
pub use trainer::{train_with, Start, TrainOutcome};
