//! Time spent in each kind of CPU work: what `examples/profile_step.rs` reports for
//! BENCHMARKS.md. A clock read per call (tens of nanoseconds), against calls that take
//! tens of microseconds or more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Matrix products (the convolutions' arithmetic).
    Gemm,
    /// Unfolding image patches into columns.
    Im2col,
    /// Folding columns back into images.
    Col2im,
    /// Moving channels between NCHW and channel-major order.
    Layout,
    /// BatchNorm or LayerNorm with its activation, forward and backward.
    Norm,
}

impl Work {
    /// Whether its time is summed over the threads that each do a share of it (each
    /// product and unfolding runs on one thread), rather than wall time (normalisation is timed
    /// around its parallel passes).
    pub fn per_thread(self) -> bool {
        self != Work::Norm
    }
}

pub const ALL: [Work; 5] = [Work::Gemm, Work::Im2col, Work::Col2im, Work::Layout, Work::Norm];

static NANOS: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];
static FLOP: AtomicU64 = AtomicU64::new(0);

/// Runs `f`, adding its duration to `work`'s total.
#[inline]
pub fn timed<R>(work: Work, f: impl FnOnce() -> R) -> R {
    let start = Instant::now();
    let r = f();
    NANOS[work as usize].fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    r
}

/// Counts floating-point operations done by matrix products.
pub fn add_flop(n: u64) {
    FLOP.fetch_add(n, Ordering::Relaxed);
}

/// The totals since the last call, in seconds per kind (see [`Work::per_thread`]), and the products' FLOP; resets them.
pub fn take() -> ([(Work, f64); 5], u64) {
    let secs = ALL.map(|w| (w, NANOS[w as usize].swap(0, Ordering::Relaxed) as f64 * 1e-9));
    (secs, FLOP.swap(0, Ordering::Relaxed))
}
