//! `generator.onnx` as arbitrary bytes through canard-train's own protobuf reader
//! (`canard_train::export::reader::read_generator`, what `eval`, `sample` and
//! `interpolate` use), and, when a file is accepted and small enough to run
//! quickly, through the forward pass on candle.
//!
//! Asserts, beyond "never panics" (and no unbounded allocation: libFuzzer's
//! `-rss_limit_mb` / `-malloc_limit_mb` catch those):
//! - an error names the file;
//! - an accepted generator is the chain it claims: every layer's input width is the
//!   previous layer's output width, biases match, `nz`, `channels` and
//!   `image_size` are what the layers give;
//! - its forward pass gives exactly `image_len()` values per seed, each in [-1, 1]
//!   (the last op is Tanh) or NaN (NaN weights are not refused).
#![no_main]

use canard_train::export::reader::{read_generator, OnnxGenerator};
use candle_core::Device;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.onnx";
/// Multiply-adds and values per intermediate tensor above which the forward pass
/// is skipped: the reader accepts 65536-pixel sides, which are valid but slow.
const MAX_WORK: u128 = 4_000_000;
const MAX_VALUES: u128 = 1_000_000;

fuzz_target!(|data: &[u8]| {
    match read_generator(data, FILE, &Device::Cpu) {
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with(&format!("{FILE}: ")) && message.len() > FILE.len() + 2, "{message}");
        }
        Ok(g) => check(&g),
    }
});

fn check(g: &OnnxGenerator) {
    assert!(!g.layers.is_empty());
    assert!(g.nz >= 1 && g.channels >= 1 && g.image_size >= 1);
    let (mut c, mut side) = (g.nz, 1usize);
    let (mut work, mut values) = (0u128, 0u128);
    for l in &g.layers {
        let dims = l.weight.dims();
        assert_eq!(dims.len(), 4);
        let (c_in, c_out, k) = (dims[0], dims[1], dims[2]);
        assert_eq!(dims[3], k, "square kernels only");
        assert_eq!(c_in, c, "the chain's widths");
        assert_eq!(l.bias.dims(), [c_out]);
        assert!(l.stride >= 1);
        let next = (side - 1) * l.stride + k;
        assert!(next > 2 * l.padding, "the layer must give at least one pixel");
        work += (c_in * c_out * k * k) as u128 * (side * side) as u128;
        side = next - 2 * l.padding;
        values = values.max(c_out as u128 * (side * side) as u128);
        c = c_out;
    }
    assert_eq!((c, side), (g.channels, g.image_size));
    assert_eq!(g.image_len(), g.channels * g.image_size * g.image_size);

    if work * 2 > MAX_WORK || values * 2 > MAX_VALUES {
        return;
    }
    let out = g.generate(&[0, u64::MAX]).unwrap_or_else(|e| panic!("an accepted generator fails to run: {e}"));
    assert_eq!(out.len(), 2 * g.image_len());
    assert!(out.iter().all(|v| v.is_nan() || (-1.0..=1.0).contains(v)));
}
