//! HTTP caching for pictures. A picture is a pure function of the model file and
//! the request's parameters, so a request that names its seeds gets an `ETag`
//! (a hash of the model's ONNX SHA-256 and the normalised parameters) and may be
//! cached for a year; `If-None-Match` then costs no inference. Random-seed
//! requests are `no-store`.

use actix_web::http::header::{CacheControl, CacheDirective, EntityTag, Header, IfNoneMatch};
use actix_web::HttpRequest;
use canard_shared::manifest::sha256_hex;
use canard_shared::Manifest;

/// Bumped whenever rendering changes its bytes for equal inputs (encoder settings,
/// grid padding, …), so caches do not keep pictures the server no longer makes.
const RENDER_VERSION: &str = "canard-render-1";

/// The strong ETag of a picture of `manifest`'s model with the normalised
/// parameters `key` (e.g. `generate seeds=1,2 truncation=1 format=png size=32`).
pub fn entity_tag(manifest: &Manifest, key: &str) -> EntityTag {
    // The output range is in the manifest, not the ONNX file, and changes pixels.
    let text = format!("{RENDER_VERSION}\n{}\n{:?}\n{key}", manifest.onnx.sha256, manifest.output_range);
    let hash = sha256_hex(text.as_bytes());
    EntityTag::new_strong(hash[..32].to_string())
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
        let a = entity_tag(&m, "generate seeds=1");
        assert_eq!(a, entity_tag(&m, "generate seeds=1"));
        assert_ne!(a, entity_tag(&m, "generate seeds=2"));
        let mut other = m.clone();
        other.onnx.sha256 = "0".repeat(64);
        assert_ne!(a, entity_tag(&other, "generate seeds=1"));

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
