//! Support for canard's end-to-end tests: the workspace's binaries, the ONNX Runtime
//! library, a free port, a minimal HTTP client and a server that stops with the test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// Builds `bin` of `package` (same profile as the tests) and returns its path. Cargo
/// releases its lock while tests run, so this works from inside `cargo test`.
pub fn cargo_bin(package: &str, bin: &str) -> PathBuf {
    let target = std::env::current_exe()
        .expect("test executable path")
        .parent() // deps/
        .and_then(Path::parent) // debug/ or release/
        .expect("test executable lives in target/<profile>/deps")
        .to_path_buf();
    let release = target.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args(["build", "--quiet", "-p", package, "--bin", bin]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "cargo build -p {package} --bin {bin} failed");
    let path = target.join(bin);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Trains a tiny model (4 steps on the built-in shapes, 32 px) with the `canard-train`
/// binary into `dir/runs` and `dir/models`, and returns the model folder.
pub fn train_tiny(dir: &Path, name: &str) -> PathBuf {
    let out = Command::new(cargo_bin("canard-train", "canard-train"))
        .args(["--data", "builtin:shapes", "--name", name, "--image-size", "32", "--steps", "4", "--batch-size", "16"])
        .args(["--ngf", "8", "--ndf", "8", "--seed", "3", "--eval-images", "64"])
        .arg("--runs-dir")
        .arg(dir.join("runs"))
        .arg("--models-dir")
        .arg(dir.join("models"))
        .output()
        .expect("canard-train runs");
    assert!(out.status.success(), "canard-train failed:\n{}", String::from_utf8_lossy(&out.stderr));
    dir.join("models").join(name)
}

/// The ONNX Runtime library: `ORT_DYLIB_PATH`, or the one `scripts/setup-ort.sh` installs.
pub fn ort_dylib() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return PathBuf::from(p);
    }
    let p = workspace_root().join(".deps/onnxruntime/libonnxruntime.so");
    assert!(p.exists(), "ONNX Runtime is not installed: run scripts/setup-ort.sh (or `make setup`) first");
    p
}

/// Initialises ONNX Runtime in this process once, from [`ort_dylib`].
pub fn ort_environment() -> ort::environment::Environment {
    static ENV: std::sync::OnceLock<ort::environment::Environment> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        ort::init_from(ort_dylib())
            .expect("ONNX Runtime loads")
            .with_name("canard-tests")
            .build()
            .expect("environment builds")
    })
    .clone()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port").local_addr().expect("local addr").port()
}

/// An HTTP response, as far as the tests need one.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// `GET path` over HTTP/1.1 with `Connection: close`.
pub fn get(port: u16, path: &str) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Ok(Response { status, headers, body })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let len = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if len == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + len]);
        b = &b[eol + 2 + len + 2..];
    }
    out
}

/// A running `canard-serve`, killed when dropped.
pub struct Server {
    pub port: u16,
    child: Child,
}

impl Server {
    /// Starts `canard-serve` on a free port with `args` and waits until `/healthz` answers.
    /// The port is free when picked but may be taken before the server binds it: a server
    /// that exits without answering is started again on another port, up to three times.
    pub fn start(args: &[&str]) -> Server {
        let mut exits = Vec::new();
        while exits.len() < 3 {
            match Server::try_start(args) {
                Ok(server) => return server,
                Err(status) => exits.push(status.to_string()),
            }
        }
        panic!("canard-serve exited before answering, three times: {exits:?}");
    }

    /// One start: the server once `/healthz` answers, or its exit status if it ends first.
    fn try_start(args: &[&str]) -> Result<Server, std::process::ExitStatus> {
        let bin = cargo_bin("canard-serve", "canard-serve");
        let port = free_port();
        let bind = format!("127.0.0.1:{port}");
        let mut child = Command::new(bin)
            .args(args)
            .args(["--bind", &bind])
            .env("ORT_DYLIB_PATH", ort_dylib())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("canard-serve starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = get(port, "/healthz") {
                if r.status == 200 {
                    return Ok(Server { port, child });
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(status);
            }
            assert!(Instant::now() < deadline, "canard-serve did not answer /healthz within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn get(&self, path: &str) -> Response {
        get(self.port, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
