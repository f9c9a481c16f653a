//! The models folder: broken folders are skipped, except the one asked for.

mod support;

use canard_serve::registry::{Registry, RegistryError};
use support::{options, runtime, write_model};

#[test]
fn loads_good_models_skips_broken_ones_and_picks_the_default() {
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    write_model(root.path(), "zeta", 8, |_| {});
    write_model(root.path(), "demo", 8, |_| {});
    let broken = write_model(root.path(), "alpha", 8, |m| m.onnx.sha256 = "0".repeat(64));
    std::fs::create_dir(root.path().join("not-a-model")).unwrap();
    std::fs::write(root.path().join("stray.txt"), b"x").unwrap();

    let (reg, skipped) = Registry::load(&rt.env, root.path(), None, options()).unwrap();
    assert_eq!(reg.names(), ["demo", "zeta"]);
    assert_eq!(reg.default_model().unwrap().name(), "demo");
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].dir, broken);
    assert!(skipped[0].error.to_string().contains("SHA-256"), "{}", skipped[0].error);
    assert_eq!(reg.get(Some("zeta")).unwrap().name(), "zeta");
    let unknown = reg.get(Some("nope")).err().unwrap().to_string();
    assert_eq!(unknown, r#"unknown model "nope"; loaded: demo, zeta"#);

    let (reg, _) = Registry::load(&rt.env, root.path(), Some("zeta"), options()).unwrap();
    assert_eq!(reg.default_model().unwrap().name(), "zeta");

    let err = Registry::load(&rt.env, root.path(), Some("alpha"), options()).err().unwrap();
    assert!(matches!(err, RegistryError::WantedBroken { .. }) && err.to_string().contains("SHA-256"), "{err}");
    let err = Registry::load(&rt.env, root.path(), Some("nope"), options()).err().unwrap().to_string();
    assert!(err.contains("\"nope\"") && err.contains("alpha, demo, zeta"), "{err}");
}

#[test]
fn without_demo_the_first_name_is_the_default_and_no_model_is_an_error() {
    let rt = runtime();
    let root = tempfile::tempdir().unwrap();
    let err = Registry::load(&rt.env, root.path(), None, options()).err().unwrap();
    assert!(matches!(err, RegistryError::Empty { .. }), "{err}");
    let err = Registry::load(&rt.env, &root.path().join("missing"), None, options()).err().unwrap();
    assert!(matches!(err, RegistryError::Folder { .. }) && err.to_string().contains("missing"), "{err}");

    write_model(root.path(), "b", 8, |_| {});
    write_model(root.path(), "a", 8, |_| {});
    let (reg, _) = Registry::load(&rt.env, root.path(), None, options()).unwrap();
    assert_eq!(reg.default_model().unwrap().name(), "a");
}
