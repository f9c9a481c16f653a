//! A real `canard-serve` process for tests that talk to it over TCP, started on port 0
//! and found by the address it logs (no port is picked and raced for), and a raw
//! HTTP/1.1 client that sends exactly the bytes it is given. Shared by the serve
//! crate's tests (slow or hostile clients, limits, reload, start-up refusals, devices)
//! and the end-to-end tests here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `BIN --models MODELS --ort-lib ORT --bind 127.0.0.1:0`, logging at info level as
/// text, with no `CANARD_*`/`ORT_DYLIB_PATH`/`RUST_LOG` from the test's environment;
/// `args` follow (so they may bind elsewhere or ask for other logs: a flag wins).
pub fn command(bin: &Path, ort: &Path, models: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(|k| k.starts_with("CANARD_") || k == "ORT_DYLIB_PATH" || k == "RUST_LOG") {
            cmd.env_remove(key);
        }
    }
    cmd.env("CANARD_LOG", "info")
        .env("CANARD_LOG_FORMAT", "text")
        .arg("--models")
        .arg(models)
        .arg("--ort-lib")
        .arg(ort)
        .args(["--bind", "127.0.0.1:0"])
        .args(args);
    cmd
}

/// A running server, its log (stderr) collected line by line; killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// How a start ended when the server did not listen: its exit status and its log.
#[derive(Debug)]
pub struct Refused {
    pub status: ExitStatus,
    pub log: String,
}

impl Server {
    /// Runs `cmd` (usually [`command`]); panics unless it listens.
    pub fn start(cmd: Command) -> Server {
        Server::spawn(cmd).unwrap_or_else(|r| panic!("canard-serve exited ({}):\n{}", r.status, r.log))
    }

    /// Runs `cmd` until it logs `listening on http://ADDR` (`Ok`) or exits (`Err`).
    pub fn spawn(mut cmd: Command) -> Result<Server, Refused> {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("canard-serve starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let addr = log.lock().unwrap().iter().find_map(|l| {
                // The address ends the text line, or the message string of a JSON line.
                let rest = l.split("listening on http://").nth(1)?;
                rest.split(|c: char| c == '"' || c.is_whitespace()).next()?.parse::<SocketAddr>().ok()
            });
            if let Some(addr) = addr {
                return Ok(Server { child, addr, log, reader: Some(reader) });
            }
            if let Ok(Some(status)) = child.try_wait() {
                let _ = reader.join(); // EOF after the exit: the whole log is in.
                let log = log.lock().unwrap().join("\n");
                return Err(Refused { status, log });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("canard-serve neither listened nor exited in 60 s:\n{}", log.lock().unwrap().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as an orchestrator stopping a replica does.
    pub fn terminate(&self) {
        self.signal("TERM");
    }

    /// Sends the signal `name` (`TERM`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").args([format!("-{name}"), self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// The exit status, once the process has ended within `within` (its whole log is then in).
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Lines logged so far.
    pub fn log_lines(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// Waits for a line after the first `from` lines that contains every one of `needles`.
    pub fn wait_for_line(&self, from: usize, needles: &[&str], within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let found =
                self.log.lock().unwrap()[from..].iter().find(|l| needles.iter().all(|n| l.contains(n))).cloned();
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET target` with `Connection: close`.
    pub fn get(&self, target: &str) -> Response {
        let req = format!("GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.addr);
        request(self.addr, req.as_bytes()).unwrap_or_else(|e| panic!("GET {}: {e}", cut(target)))
    }

    /// `GET target` that must answer 200: the body.
    pub fn ok(&self, target: &str) -> Vec<u8> {
        let res = self.get(target);
        assert_eq!(res.status, 200, "GET {}: {}", cut(target), res.text());
        res.body
    }

    /// The server's resident memory (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("the server runs");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// File descriptors the server holds open (sockets included).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).expect("the server runs").count()
    }

    /// The value of one sample of `/metrics`, e.g. `canard_models_loaded`; 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let text = String::from_utf8(self.ok("/metrics")).unwrap();
        text.lines()
            .filter_map(|l| l.rsplit_once(' '))
            .find(|(name, _)| *name == sample)
            .map_or(0.0, |(_, v)| v.parse().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer, as far as the tests need one.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics on anything else.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The `{"error": "..."}` message of a JSON error answer; panics on anything else.
    pub fn error(&self) -> String {
        assert_eq!(self.header("content-type"), Some("application/json"), "{self:?}");
        let json = self.json();
        json["error"].as_str().unwrap_or_else(|| panic!("no error message: {json}")).to_string()
    }
}

/// Sends `raw` as is on a new connection and reads the answer to the end of the
/// connection (so `raw` should ask for `Connection: close`, or be refused).
pub fn request(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Response> {
    request_on(TcpStream::connect(addr)?, raw)
}

/// [`request`] on a connection already open.
pub fn request_on(mut s: TcpStream, raw: &[u8]) -> std::io::Result<Response> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    // The server may answer and close before it has read everything (431, 400):
    // the answer is what counts, not whether the rest could be written.
    let _ = s.write_all(raw);
    let mut got = Vec::new();
    match s.read_to_end(&mut got) {
        Ok(_) => {}
        // A reset after a complete answer (the server closed with unread bytes).
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !got.is_empty() => {}
        Err(e) => return Err(e),
    }
    parse(&got).ok_or_else(|| std::io::Error::other(format!("no HTTP answer in {:?}", String::from_utf8_lossy(&got))))
}

/// One HTTP/1.1 answer at the start of `raw` (a `Content-Length` body, or the rest: canard-serve
/// streams no answers, so none is chunked).
pub fn parse(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut body = raw[end + 4..].to_vec();
    if let Some(len) = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        body.truncate(len.1.parse().ok()?);
    }
    Some(Response { status, headers, body })
}

/// At most 80 characters of `s`, for messages.
pub fn cut(s: &str) -> String {
    s.chars().take(80).collect()
}
