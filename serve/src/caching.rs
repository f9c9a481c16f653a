//! HTTP caching for pictures. A picture is a pure function of the model file, the
//! request's parameters and how the server computes it, so a request that names its
//! seeds gets an `ETag` (a hash of all three, see [`entity_tag`]) and may be cached
//! for a year; `If-None-Match` then costs no inference. Random-seed requests are
//! `no-store`.

use actix_web::http::header::{CacheControl, CacheDirective, EntityTag, Header, IfNoneMatch};
use actix_web::HttpRequest;
use canard_shared::manifest::sha256_hex;
use canard_shared::Manifest;

use crate::device::Provider;

/// Bumped whenever rendering changes its bytes for equal inputs (encoder settings,
/// grid padding, …), so caches do not keep pictures the server no longer makes.
const RENDER_VERSION: &str = "canard-render-1";

/// How a model's pictures are computed, beyond the model file and the parameters.
/// Each part can change the generator's output by a rounding, hence a pixel level:
/// the execution provider (CPU and CUDA kernels differ), ONNX Runtime's build (its
/// kernels change between releases) and, on the CPU, the instruction set ONNX
/// Runtime picked its kernels for (AVX-512 and AVX2 sum in different orders).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compute {
    pub provider: Provider,
    /// ONNX Runtime's build description and the CPU's kernel family.
    pub runtime: String,
}

impl Compute {
    /// This process's, for a session on `provider`. ONNX Runtime must be loaded.
    pub fn here(provider: Provider) -> Compute {
        Compute { provider, runtime: format!("{} | {}", ort::info(), cpu_kernels()) }
    }
}

/// The instruction-set level ONNX Runtime's CPU kernels (MLAS) dispatch on.
fn cpu_kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "x86_64 avx512f"
        } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            "x86_64 avx2 fma"
        } else if std::arch::is_x86_feature_detected!("avx") {
            "x86_64 avx"
        } else {
            "x86_64"
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH
    }
}

/// The `ETag` of a picture of `manifest`'s model computed as `compute` says, with
/// the normalised parameters `key` (e.g. `generate seeds=1,2 truncation=1 format=png
/// size=32`). Equal tags mean equal bytes on the CPU, where ONNX Runtime computes
/// the same way every run, so the tag is strong there. On CUDA it is weak (the same
/// picture, not promised to be the same bytes): cuDNN picks its convolution
/// algorithms by timing them (ONNX Runtime's default exhaustive search), and some of
/// them add in a non-deterministic order.
pub fn entity_tag(manifest: &Manifest, compute: &Compute, key: &str) -> EntityTag {
    // The output range is in the manifest, not the ONNX file, and changes pixels.
    let text = format!(
        "{RENDER_VERSION}\n{}\n{:?}\n{}\n{}\n{key}",
        manifest.onnx.sha256,
        manifest.output_range,
        compute.provider.name(),
        compute.runtime
    );
    let hash = sha256_hex(text.as_bytes())[..32].to_string();
    match compute.provider {
        Provider::Cpu => EntityTag::new_strong(hash),
        Provider::Cuda => EntityTag::new_weak(hash),
    }
}

/// Whether the request's `If-None-Match` already names `tag` (weak comparison, as
/// RFC 9110 prescribes for `If-None-Match`). A malformed header never matches.
pub fn not_modified(req: &HttpRequest, tag: &EntityTag) -> bool {
    match IfNoneMatch::parse(req) {
        Ok(IfNoneMatch::Any) => true,
        Ok(IfNoneMatch::Items(tags)) => tags.iter().any(|t| t.weak_eq(tag)),
        Err(_) => false,
    }
}

/// For pictures with explicit seeds.
pub fn immutable() -> CacheControl {
    CacheControl(vec![
        CacheDirective::Public,
        CacheDirective::MaxAge(31_536_000),
        CacheDirective::Extension("immutable".into(), None),
    ])
}

/// For random pictures: never served again from a cache.
pub fn no_store() -> CacheControl {
    CacheControl(vec![CacheDirective::NoStore])
}

#[cfg(test)]
mod tests {
    use actix_web::http::header;
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn tags_depend_on_the_model_and_the_key_and_requests_match_them() {
        let m: Manifest = serde_json::from_value(serde_json::json!({
            "format_version": 1, "name": "demo", "arch": "dcgan", "image_size": 8, "channels": 3,
            "latent": { "dim": 8, "distribution": "standard_normal", "algorithm": "splitmix64-box-muller-v1" },
            "onnx": { "file": "generator.onnx", "sha256": "a".repeat(64), "opset": 17, "input": "z", "output": "image" },
            "output_range": [-1.0, 1.0],
            "training": { "dataset": "", "dataset_images": 0, "epochs": 0, "steps": 0, "batch_size": 0,
                "images_seen": 0, "seconds": 0.0, "seed": 0, "exported_at": 0 },
        }))
        .unwrap();
        let cpu = Compute { provider: Provider::Cpu, runtime: "ORT Build Info: 1.31.1 | x86_64 avx2 fma".into() };
        let a = entity_tag(&m, &cpu, "generate seeds=1");
        assert!(!a.weak);
        assert_eq!(a, entity_tag(&m, &cpu, "generate seeds=1"));
        assert_ne!(a, entity_tag(&m, &cpu, "generate seeds=2"));
        let mut other = m.clone();
        other.onnx.sha256 = "0".repeat(64);
        assert_ne!(a, entity_tag(&other, &cpu, "generate seeds=1"));

        // The same model and parameters computed another way may give other bytes.
        let cuda = Compute { provider: Provider::Cuda, ..cpu.clone() };
        let on_cuda = entity_tag(&m, &cuda, "generate seeds=1");
        assert!(on_cuda.weak && on_cuda.tag() != a.tag(), "{on_cuda} {a}");
        let other_runtime = Compute { runtime: "ORT Build Info: 1.32.0 | x86_64 avx512f".into(), ..cpu.clone() };
        assert_ne!(a.tag(), entity_tag(&m, &other_runtime, "generate seeds=1").tag());

        let req = |v: &str| TestRequest::default().insert_header((header::IF_NONE_MATCH, v)).to_http_request();
        assert!(not_modified(&req(&a.to_string()), &a));
        assert!(not_modified(&req(&format!("\"x\", W/{a}")), &a));
        assert!(not_modified(&req("*"), &a));
        assert!(!not_modified(&req("\"x\""), &a));
        assert!(!not_modified(&req("garbage"), &a));
        assert!(!not_modified(&TestRequest::default().to_http_request(), &a));
        assert_eq!(immutable().to_string(), "public, max-age=31536000, immutable");
    }
}
