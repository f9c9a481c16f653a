//! How good is a generator? Numbers computed from pictures, comparable across runs.

pub mod swd;

pub use swd::{sliced_wasserstein, ImageSet, Pixels, SwdError, SwdReport};
