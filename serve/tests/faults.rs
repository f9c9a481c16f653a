//! Faults on disk, against the real `canard-serve` binary:
//!
//! - while it serves with hot reload on, its model's files are truncated, replaced
//!   with garbage, deleted, or contradicted by the manifest: every time the last good
//!   model keeps serving the same bytes, and the log names the file and the cause;
//! - at start, each such folder is refused with its path and cause (the whole start
//!   when it is the `--model`, the folder alone otherwise);
//! - the ONNX Runtime library missing, empty, not ONNX Runtime, too old or broken:
//!   the server refuses to start with a message naming the path, and never panics.
//!
//! Already covered elsewhere, and not repeated here: the reloader in process
//! (tests/reload.rs: garbage refused, then a fixed model, a removed folder, the last
//! folder removed), broken folders skipped by the registry (tests/registry.rs),
//! graph/manifest contradictions at `Engine::load` (tests/engine.rs), a corrupt
//! `--model` and a missing library through the binary (tests/e2e.rs of canard-e2e).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use canard_shared::manifest::{sha256_hex, MANIFEST_FILE};
use support::server::{command, Server};
use support::{read_manifest, write_manifest, write_model};

const ONNX: &str = "generator.onnx";

/// One way to break a good model folder, and what the refusal must say.
struct Fault {
    what: &'static str,
    /// Breaks `dir` (holding a good model whose ONNX bytes are given).
    apply: fn(&Path, &[u8]),
    /// Each must be in the log line of the refusal.
    cause: &'static [&'static str],
    /// The file the refusal names, inside the model folder.
    file: &'static str,
}

fn set_onnx(dir: &Path, bytes: &[u8], fix_sha: bool) {
    std::fs::write(dir.join(ONNX), bytes).unwrap();
    if fix_sha {
        let mut m = read_manifest(dir);
        m.onnx.sha256 = sha256_hex(bytes);
        write_manifest(dir, &m);
    }
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut canard_shared::Manifest)) {
    let mut m = read_manifest(dir);
    edit(&mut m);
    write_manifest(dir, &m);
}

fn garbage(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7919 % 251) as u8).collect()
}

const SHA: &[&str] = &["SHA-256", "changed or truncated after export"];
const ORT: &[&str] = &["ONNX Runtime cannot load it"];

fn faults() -> Vec<Fault> {
    vec![
        Fault { what: "truncated ONNX", apply: |d, b| set_onnx(d, &b[..b.len() / 2], false), cause: SHA, file: ONNX },
        Fault {
            what: "truncated ONNX, manifest SHA-256 updated",
            apply: |d, b| set_onnx(d, &b[..b.len() / 2], true),
            cause: ORT,
            file: ONNX,
        },
        Fault {
            what: "empty ONNX, manifest SHA-256 updated",
            apply: |d, _| set_onnx(d, b"", true),
            cause: ORT,
            file: ONNX,
        },
        Fault { what: "garbage ONNX", apply: |d, b| set_onnx(d, &garbage(b.len()), false), cause: SHA, file: ONNX },
        Fault {
            what: "garbage ONNX, manifest SHA-256 updated",
            apply: |d, b| set_onnx(d, &garbage(b.len()), true),
            cause: ORT,
            file: ONNX,
        },
        Fault {
            what: "ONNX deleted",
            apply: |d, _| std::fs::remove_file(d.join(ONNX)).unwrap(),
            cause: &["cannot read", "No such file"],
            file: ONNX,
        },
        Fault {
            what: "manifest: wrong SHA-256",
            apply: |d, _| edit_manifest(d, |m| m.onnx.sha256 = "ab".repeat(32)),
            cause: SHA,
            file: ONNX,
        },
        Fault {
            what: "manifest: latent size 6, graph 8",
            apply: |d, _| edit_manifest(d, |m| m.latent.dim = 6),
            cause: &["\"z\" has shape"],
            file: ONNX,
        },
        Fault {
            what: "manifest: image size 16, graph 8",
            apply: |d, _| edit_manifest(d, |m| m.image_size = 16),
            cause: &["\"image\" has shape"],
            file: ONNX,
        },
        Fault {
            what: "manifest: 1 channel, graph 3",
            apply: |d, _| edit_manifest(d, |m| m.channels = 1),
            cause: &["\"image\" has shape"],
            file: ONNX,
        },
        Fault {
            what: "manifest: wrong output name",
            apply: |d, _| edit_manifest(d, |m| m.onnx.output = "picture".into()),
            cause: &["\"picture\"", "\"image\""],
            file: ONNX,
        },
        Fault {
            what: "manifest: ONNX file outside the folder",
            apply: |d, _| edit_manifest(d, |m| m.onnx.file = "../../generator.onnx".into()),
            cause: &["must be a file name inside the model folder"],
            file: MANIFEST_FILE,
        },
        Fault {
            what: "manifest: truncated JSON",
            apply: |d, _| {
                let text = std::fs::read(d.join(MANIFEST_FILE)).unwrap();
                std::fs::write(d.join(MANIFEST_FILE), &text[..text.len() / 2]).unwrap();
            },
            cause: &["is not a valid manifest"],
            file: MANIFEST_FILE,
        },
    ]
}

/// Rewrites only the files of `dir` that differ from `good` (name, bytes).
fn restore(dir: &Path, good: &[(PathBuf, Vec<u8>)]) {
    for (name, bytes) in good {
        if std::fs::read(dir.join(name)).ok().as_deref() != Some(bytes) {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    // The ONNX file first, so a restore never pairs a good manifest with a bad graph.
    [ONNX, MANIFEST_FILE].iter().map(|n| (PathBuf::from(n), std::fs::read(dir.join(n)).unwrap())).collect()
}

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_broken_model_on_disk_never_replaces_the_one_serving() {
    let root = tempfile::tempdir().unwrap();
    let models = root.path().join("models");
    std::fs::create_dir(&models).unwrap();
    // A valid ONNX file two levels up, for the manifest that points outside its folder.
    let dir = write_model(&models, "demo", 8, |_| {});
    std::fs::copy(dir.join(ONNX), root.path().join(ONNX)).unwrap();
    let good = files(&dir);
    let server = Server::start(command(&models, &["--reload-interval", "0.05"]));
    let picture = server.get("/generate?seed=7");
    assert_eq!(picture.status, 200);
    let etag = picture.header("etag").unwrap().to_string();
    let same = |when: &str| {
        let now = server.get("/generate?seed=7");
        assert_eq!((now.status, now.header("etag")), (200, Some(etag.as_str())), "{when}");
        assert_eq!(now.body, picture.body, "{when}: the same picture");
        assert_eq!(server.get("/readyz").status, 200, "{when}");
    };
    let refused = r#"canard_model_reloads_total{model="demo",result="refused"}"#;
    let reloaded = r#"canard_model_reloads_total{model="demo",result="loaded"}"#;

    for (i, fault) in faults().iter().enumerate() {
        let from = server.log_lines();
        (fault.apply)(&dir, &good[0].1);
        let mut needles = vec!["model demo refused", "the previous version keeps serving"];
        needles.extend(fault.cause);
        let line = server
            .wait_for_line(from, &needles, WAIT)
            .unwrap_or_else(|| panic!("{}: no refusal with {needles:?} in the log:\n{}", fault.what, server.log()));
        assert!(line.contains(&dir.join(fault.file).display().to_string()), "{}: the path: {line}", fault.what);
        assert!(line.contains("WARN"), "{line}");
        same(fault.what);
        assert!(server.metric(refused) >= (i + 1) as f64, "{}", fault.what);

        // Mended, it is loaded again (a new engine, the same pictures).
        let from = server.log_lines();
        restore(&dir, &good);
        server
            .wait_for_line(from, &["model demo reloaded"], WAIT)
            .unwrap_or_else(|| panic!("{}: not reloaded once mended:\n{}", fault.what, server.log()));
        same(&format!("{} mended", fault.what));
    }
    assert_eq!(server.metric(reloaded), faults().len() as f64);

    // Every file of the folder deleted: the last model keeps serving until one appears.
    let from = server.log_lines();
    for (name, _) in &good {
        std::fs::remove_file(dir.join(name)).unwrap();
    }
    server.wait_for_line(from, &["no model left", "keeping demo"], WAIT).expect("the emptied folder is noticed");
    std::thread::sleep(Duration::from_millis(300));
    same("files deleted");
    let from = server.log_lines();
    restore(&dir, &good);
    server.wait_for_line(from, &["model demo reloaded"], WAIT).expect("the model comes back");
    same("files back");
    assert!(!server.log().contains("panicked"), "{}", server.log());
}

#[test]
fn at_start_a_broken_model_is_refused_with_its_path_and_cause() {
    let root = tempfile::tempdir().unwrap();
    let all = root.path().join("all");
    std::fs::create_dir(&all).unwrap();
    write_model(&all, "good", 4, |_| {});
    let mut broken = Vec::new();
    for (i, fault) in faults().into_iter().enumerate() {
        // As the --model: the server does not start, and says which file and why.
        let alone = root.path().join(format!("alone-{i}"));
        let dir = write_model(&alone, "demo", 8, |_| {});
        let onnx = std::fs::read(dir.join(ONNX)).unwrap();
        if fault.file == MANIFEST_FILE || fault.what.contains("outside") {
            std::fs::copy(dir.join(ONNX), root.path().join(ONNX)).ok();
        }
        (fault.apply)(&dir, &onnx);
        let refused = match Server::spawn(command(&alone, &["--model", "demo", "--reload-interval", "0"])) {
            Ok(s) => panic!("{}: canard-serve started:\n{}", fault.what, s.log()),
            Err(r) => r,
        };
        assert!(!refused.status.success(), "{}", fault.what);
        let error = refused.log.lines().find(|l| l.contains("ERROR")).unwrap_or_else(|| panic!("{}", refused.log));
        assert!(error.contains(&dir.join(fault.file).display().to_string()), "{}: {error}", fault.what);
        assert!(fault.cause.iter().all(|c| error.contains(c)), "{}: {:?} in {error}", fault.what, fault.cause);
        assert!(!refused.log.contains("panicked"), "{}", refused.log);

        // Beside a good model: that folder alone is skipped, with the same reason.
        let dir = write_model(&all, &format!("broken-{i}"), 8, |_| {});
        (fault.apply)(&dir, &onnx);
        broken.push((dir, fault));
    }
    let server = Server::start(command(&all, &["--reload-interval", "0"]));
    let health: serde_json::Value = serde_json::from_slice(&server.ok("/healthz")).unwrap();
    assert_eq!(health["models"], serde_json::json!(["good"]));
    server.ok("/generate?seed=1");
    let log = server.log();
    for (dir, fault) in broken {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("skipping model folder {}:", dir.display())))
            .unwrap_or_else(|| panic!("{}: {} not reported:\n{log}", fault.what, dir.display()));
        assert!(line.contains(&dir.join(fault.file).display().to_string()), "{}: {line}", fault.what);
        assert!(fault.cause.iter().all(|c| line.contains(c)), "{}: {line}", fault.what);
        assert!(line.contains("WARN"), "{line}");
    }
}

// ---- the ONNX Runtime library ----

/// A shared library exporting `OrtGetApiBase` as ONNX Runtime does, built with
/// rustc: `base: false` returns NULL; otherwise a base whose version string is
/// `version` and whose `GetApi` returns NULL (no API of the version ort needs).
fn fake_ort(dir: &Path, name: &str, version: &str, base: bool) -> PathBuf {
    let src = dir.join(format!("{name}.rs"));
    let ret = if base { "&BASE" } else { "std::ptr::null()" };
    std::fs::write(
        &src,
        format!(
            r#"
#![allow(non_snake_case)]
#[repr(C)]
pub struct OrtApiBase {{
    GetApi: unsafe extern "C" fn(u32) -> *const u8,
    GetVersionString: unsafe extern "C" fn() -> *const std::os::raw::c_char,
}}
unsafe extern "C" fn get_api(_version: u32) -> *const u8 {{ std::ptr::null() }}
unsafe extern "C" fn version() -> *const std::os::raw::c_char {{ "{version}\0".as_ptr().cast() }}
static BASE: OrtApiBase = OrtApiBase {{ GetApi: get_api, GetVersionString: version }};
#[no_mangle]
pub extern "C" fn OrtGetApiBase() -> *const OrtApiBase {{ {ret} }}
"#
        ),
    )
    .unwrap();
    let out = dir.join(format!("{name}/libonnxruntime.so"));
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let status = Command::new(rustc())
        .args(["--edition", "2021", "--crate-type", "cdylib", "-C", "opt-level=1", "-A", "warnings", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .expect("rustc runs");
    assert!(status.success(), "rustc could not build the fake library {name}");
    out
}

/// rustc: `$RUSTC`, else beside `$CARGO` (what runs the tests), else on the PATH.
fn rustc() -> PathBuf {
    if let Some(r) = std::env::var_os("RUSTC") {
        return r.into();
    }
    std::env::var_os("CARGO")
        .map(|c| PathBuf::from(c).with_file_name("rustc"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "rustc".into())
}

/// A shared library that is certainly not ONNX Runtime.
fn system_library() -> PathBuf {
    ["/lib/x86_64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/aarch64-linux-gnu/libz.so.1"]
        .iter()
        .map(PathBuf::from)
        .chain(std::iter::once(PathBuf::from("/lib/x86_64-linux-gnu/libm.so.6")))
        .chain(std::iter::once(PathBuf::from("/lib/aarch64-linux-gnu/libm.so.6")))
        .find(|p| p.is_file())
        .expect("libz or libm in /lib")
}

#[test]
fn a_missing_or_wrong_onnx_runtime_library_is_refused_naming_the_path() {
    let root = tempfile::tempdir().unwrap();
    let models = root.path().join("models");
    write_model(&models, "demo", 8, |_| {});
    let lib = |sub: &str| {
        let p = root.path().join(sub).join("libonnxruntime.so");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    };
    let empty = lib("empty");
    std::fs::write(&empty, b"").unwrap();
    let text = lib("text");
    std::fs::write(&text, "not a library\n".repeat(300)).unwrap();
    let folder = lib("folder");
    std::fs::create_dir(&folder).unwrap();
    let cases: Vec<(&str, PathBuf, &[&str])> = vec![
        ("missing", root.path().join("nowhere/libonnxruntime.so"), &["not found", "make setup"]),
        ("empty file", empty, &["file too short"]),
        ("text file", text, &["invalid ELF header"]),
        ("a folder", folder, &["not a file"]),
        ("libz", system_library(), &["does not export `OrtGetApiBase`"]),
        ("too old", fake_ort(root.path(), "old", "1.16.3", true), &["expected version >= '1.", "got '1.16.3'"]),
        ("no API", fake_ort(root.path(), "noapi", "1.31.0", true), &["not a usable ONNX Runtime", "ORT API"]),
        ("null base", fake_ort(root.path(), "nullbase", "1.31.0", false), &["not a usable ONNX Runtime", "base"]),
    ];
    for (i, (what, path, cause)) in cases.iter().enumerate() {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_canard-serve"));
        cmd.env_clear().arg("--models").arg(&models).args(["--bind", "127.0.0.1:0", "--reload-interval", "0"]);
        // Half by environment variable, half by flag.
        if i % 2 == 0 {
            cmd.env("ORT_DYLIB_PATH", path);
        } else {
            cmd.arg("--ort-lib").arg(path);
        }
        let refused = match Server::spawn(cmd) {
            Ok(s) => panic!("{what}: canard-serve started with {}:\n{}", path.display(), s.log()),
            Err(r) => r,
        };
        assert!(!refused.status.success(), "{what}");
        assert!(!refused.log.contains("panicked"), "{what}: a panic:\n{}", refused.log);
        // The error and the lines it goes on over (one per place tried).
        let error = &refused.log[refused.log.find("ERROR").unwrap_or_else(|| panic!("{}", refused.log))..];
        assert!(error.contains("cannot load the ONNX Runtime library"), "{what}: {error}");
        assert!(error.contains(&path.display().to_string()), "{what}: the path: {error}");
        assert!(cause.iter().all(|c| error.contains(c)), "{what}: {cause:?} in {error}");
    }
}
