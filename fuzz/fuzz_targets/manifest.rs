//! `model.json` as arbitrary bytes, read the way `Manifest::load` reads it
//! (`serde_json::from_slice`, then `validate`), and through `Manifest::load`
//! itself from a folder when the bytes are valid.
//!
//! Asserts, beyond "never panics":
//! - an error renders to a message that names the file;
//! - a manifest that validates keeps every promise `validate` makes to its readers
//!   (plain names that stay inside the model folder, sizes and latent length in
//!   range, a finite increasing output range), and the server's image size
//!   arithmetic (`ImageSpec::len`) cannot overflow;
//! - a valid manifest written back (`to_json`, what the trainer writes and
//!   `/models` serves) reads back equal and still valid.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use canard_serve::render::ImageSpec;
use canard_shared::manifest::{is_plain_name, Manifest, MANIFEST_FILE};
use libfuzzer_sys::fuzz_target;

fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temporary folder")).path()
}

fuzz_target!(|data: &[u8]| {
    let manifest = match serde_json::from_slice::<Manifest>(data) {
        Ok(m) => m,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    if let Err(reason) = manifest.validate() {
        assert!(!reason.is_empty());
        // Only bounded excerpts of the input are quoted.
        assert!(reason.len() <= 1024, "{} bytes of reason", reason.len());
        return;
    }
    check_valid(&manifest);

    // The same bytes through the real entry point.
    std::fs::write(dir().join(MANIFEST_FILE), data).expect("write model.json");
    let loaded = Manifest::load(dir()).unwrap_or_else(|e| panic!("valid bytes refused by Manifest::load: {e}"));
    assert_eq!(loaded, manifest);

    let json = manifest.to_json();
    let again: Manifest =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("to_json does not read back: {e}\n{json}"));
    again.validate().unwrap_or_else(|e| panic!("to_json reads back invalid: {e}\n{json}"));
    // Equal but for the last bit of a float: serde_json's default float parsing
    // (without its `float_roundtrip` feature) may read even its own shortest
    // output one ulp off (found by this target: 1589.7566184467441).
    let (a, b) = (serde_json::to_value(&manifest).unwrap(), serde_json::to_value(&again).unwrap());
    assert!(close(&a, &b), "{json}\nreads back as\n{}", again.to_json());
});

/// Equal JSON values, numbers within an f32 ulp (output_range is f32).
fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Number(x), Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= f64::from(f32::EPSILON) * x.abs().max(y.abs())
        }
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y)),
        (Object(x), Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w))),
        _ => a == b,
    }
}

fn check_valid(m: &Manifest) {
    for name in [&m.name, &m.onnx.file] {
        assert!(is_plain_name(name) && !name.contains('/') && !name.contains('\\') && name != "..", "{name:?}");
        assert!(!name.starts_with('.'));
    }
    assert!((4..=4096).contains(&m.image_size));
    assert!(m.channels == 1 || m.channels == 3);
    assert!((1..=65536).contains(&m.latent.dim));
    assert_eq!(m.onnx.sha256.len(), 64);
    let [lo, hi] = m.output_range;
    assert!(lo.is_finite() && hi.is_finite() && lo < hi);
    let spec = ImageSpec::of(m);
    assert_eq!(spec.len(), m.channels as usize * (m.image_size as usize).pow(2));
}
