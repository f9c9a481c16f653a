//! How good is a generator? Numbers computed from pictures, comparable across runs.

pub mod nearest;
pub mod swd;

pub use nearest::{nearest, Nearest};
pub use swd::{sliced_wasserstein, ImageSet, SwdError, SwdReport};
