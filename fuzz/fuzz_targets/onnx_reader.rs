//! `generator.onnx` as arbitrary bytes through canard-train's loader
//! (`canard_train::export::reader::read_generator`, what `eval`, `sample` and
//! `interpolate` use: prost's decoder, then the initializers loaded into the candle
//! generator and the graph checked against the exporter's), and, when a file is
//! accepted and small enough to run quickly, through the forward pass.
//!
//! Asserts, beyond "never panics" (and no unbounded allocation: libFuzzer's
//! `-rss_limit_mb` / `-malloc_limit_mb` catch those):
//! - an error names the file;
//! - an accepted generator is what it claims: `image_len()` is its shape's, and
//!   re-exporting it gives a file that loads to the same shape;
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
    let shape = g.shape;
    assert_eq!(g.image_len(), shape.channels * shape.image_size * shape.image_size);
    let bytes = canard_train::export::onnx::generator_to_onnx(&g.g, &shape, "again").unwrap();
    let again = read_generator(&bytes, FILE, &Device::Cpu).unwrap_or_else(|e| panic!("a re-export is refused: {e}"));
    assert_eq!(again.shape, shape);

    let widths = canard_train::nn::dcgan::generator_widths(&shape); // fastgan's are of this order too
    let mut side = 1u128;
    let (mut work, mut values) = (0u128, 0u128);
    for pair in widths.windows(2) {
        side = if side == 1 { 4 } else { side * 2 };
        work += (pair[0] * pair[1] * 16) as u128 * side * side;
        values = values.max(pair[1] as u128 * side * side);
    }
    if work * 2 > MAX_WORK || values * 2 > MAX_VALUES {
        return;
    }
    let out = g.generate(&[0, u64::MAX], None).unwrap_or_else(|e| panic!("an accepted generator fails to run: {e}"));
    assert_eq!(out.len(), 2 * g.image_len());
    assert!(out.iter().all(|v| v.is_nan() || (-1.0..=1.0).contains(v)));
}
