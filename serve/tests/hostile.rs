//! Hostile clients against a real `canard-serve` over TCP: path traversal in model
//! names (with decoy models and files beside the models folder, and inotify proving
//! that nothing outside it is ever opened), huge and repeated query strings,
//! oversized headers, slow clients, and thousands of idle connections.
//!
//! Each test starts its own server with short `--request-timeout`/`--keep-alive`.

mod support;

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::server::{command, cut, parse, request, Response, Server};
use support::write_model;

/// `GET target` (sent byte for byte, nothing normalised) with `Connection: close`.
fn get_raw(addr: SocketAddr, target: &[u8]) -> Response {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: canard\r\nConnection: close\r\n\r\n");
    request(addr, &req).unwrap_or_else(|e| panic!("GET {}: {e}", cut(&String::from_utf8_lossy(target))))
}

/// A 4xx answer whose body is `{"error": "..."}`, short whatever was sent.
fn assert_json_4xx(res: &Response, what: &str) -> String {
    assert!((400..500).contains(&res.status), "{what}: {} {}", res.status, cut(&res.text()));
    assert_eq!(res.header("content-type"), Some("application/json"), "{what}: {res:?}");
    let msg = res.error();
    assert!(res.body.len() < 1000, "{what}: the answer stays short, got {} bytes: {}", res.body.len(), cut(&msg));
    msg
}

// ---- inotify: which files and folders were opened ----

/// Every open or read of a file or folder inside the watched folders (not below them).
struct Opens {
    fd: i32,
    dirs: HashMap<i32, PathBuf>,
}

impl Opens {
    fn watch(dirs: &[PathBuf]) -> Opens {
        // SAFETY: plain system calls on a descriptor this struct owns.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(fd >= 0, "inotify_init1: {}", std::io::Error::last_os_error());
        let mut watched = HashMap::new();
        for dir in dirs {
            let c = CString::new(dir.as_os_str().as_bytes()).unwrap();
            let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN | libc::IN_ACCESS) };
            assert!(wd >= 0, "inotify_add_watch {}: {}", dir.display(), std::io::Error::last_os_error());
            watched.insert(wd, dir.clone());
        }
        Opens { fd, dirs: watched }
    }

    /// The paths opened or read since the last call (a folder itself: its own path).
    fn take(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            let mut at = 0;
            while at < n as usize {
                // struct inotify_event { int wd; uint32_t mask, cookie, len; char name[len]; }
                let wd = i32::from_ne_bytes(buf[at..at + 4].try_into().unwrap());
                let len = u32::from_ne_bytes(buf[at + 12..at + 16].try_into().unwrap()) as usize;
                let name = &buf[at + 16..at + 16 + len];
                let name = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap_or_default()).into_owned();
                let dir = self.dirs.get(&wd).cloned().unwrap_or_default();
                out.push(if name.is_empty() { dir } else { dir.join(name) });
                at += 16 + len;
            }
        }
        out
    }
}

impl Drop for Opens {
    fn drop(&mut self) {
        unsafe { libc::close(self.fd) };
    }
}

/// `%`-escapes every byte of `s` (so `/` and `.` reach the parser escaped).
fn escape_all(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

#[test]
fn model_names_never_reach_the_filesystem() {
    // root/etc/passwd        a decoy reached by model=../../etc/passwd
    // root/srv/decoy/        a valid model beside the models folder
    // root/srv/models/demo/  the only model served
    let root = tempfile::tempdir().unwrap();
    let root = root.path().canonicalize().unwrap();
    let (etc, srv) = (root.join("etc"), root.join("srv"));
    let models = srv.join("models");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0:decoy:/root:/bin/sh\n").unwrap();
    let decoy = write_model(&srv, "decoy", 8, |_| {});
    let demo = write_model(&models, "demo", 8, |_| {});

    let opens = Opens::watch(&[root.clone(), etc.clone(), srv.clone(), decoy.clone(), models.clone(), demo.clone()]);
    // Hot reload on and fast, so its polling runs between the requests too.
    let server = Server::start(command(&models, &["--reload-interval", "0.05", "--workers", "1"]));
    let seen_at_start = opens.take();
    assert!(
        seen_at_start.iter().any(|p| p.starts_with(&demo)),
        "the watch sees the model being read: {seen_at_start:?}"
    );

    let abs_decoy = decoy.display().to_string();
    let abs_passwd = etc.join("passwd").display().to_string();
    let long = "a".repeat(4000);
    let mut model_names: Vec<String> = [
        "../decoy",
        "../../etc/passwd",
        "..%2Fdecoy",
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2fdecoy",
        "%252e%252e%252fdecoy",
        "%252e%252e%252f%252e%252e%252fetc%252fpasswd",
        "..%255c..%255cdecoy",
        "/etc/passwd",
        "..\\decoy",
        "..%5Cdecoy",
        "..%5C..%5Cetc%5Cpasswd",
        "demo/../../decoy",
        "demo%2F..%2F..%2Fdecoy",
        "demo%00",
        "%00../decoy",
        "decoy%00.onnx",
        "decoy",
        ".",
        "..",
        "models",
        "demo/",
        "./demo",
        "%2e",
        &long,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    model_names.push(abs_decoy.clone());
    model_names.push(escape_all(&abs_decoy));
    model_names.push(abs_passwd.clone());
    model_names.push(escape_all(&abs_passwd));

    let mut targets: Vec<String> = Vec::new();
    for name in &model_names {
        targets.push(format!("/generate?seed=1&model={name}"));
        targets.push(format!("/interpolate?from=1&to=2&model={name}"));
        if !name.contains('/') {
            targets.push(format!("/models/{name}"));
        }
    }
    for path in [
        "/models/..%2Fdecoy",
        "/models/..%2F..%2Fetc%2Fpasswd",
        "/models/../decoy",
        "/models/%2e%2e",
        "/models/%252e%252e%252fdecoy",
        "/../../etc/passwd",
        "/..%2F..%2Fetc%2Fpasswd",
        "/generate/../../etc/passwd",
        "/models/demo/../../decoy/model.json",
        "/decoy/model.json",
        "//etc/passwd",
    ] {
        targets.push(path.to_string());
    }
    targets.push(format!("/models/{}", "a".repeat(60_000)));
    targets.push(format!("/{}", "b".repeat(60_000)));
    targets.push(format!("/generate?seed=1&model={}", "../".repeat(1300)));

    for target in &targets {
        let res = get_raw(server.addr, target.as_bytes());
        let msg = assert_json_4xx(&res, &cut(target));
        assert_ne!(res.header("x-model"), Some("decoy"), "{}", cut(target));
        assert!(!msg.contains("root:x:0:0"), "{}: {msg}", cut(target));
    }
    // A raw NUL byte never gets past the HTTP parser: a bare 400 (no body to make JSON of).
    for target in [&b"/generate?model=demo\0"[..], b"/models/\0../decoy", b"/\0"] {
        let res = get_raw(server.addr, target);
        assert_eq!(res.status, 400, "{target:?}: {res:?}");
    }
    // The server is unharmed and still serves its one model.
    assert_eq!(server.get("/generate?seed=1").header("x-model"), Some("demo"));
    let names: serde_json::Value = serde_json::from_slice(&server.ok("/healthz")).unwrap();
    assert_eq!(names["models"], serde_json::json!(["demo"]));

    // Nothing outside the models folder was opened, at start or since (the reload
    // thread's polls of the models folder are the only expected opens).
    let outside: Vec<PathBuf> =
        seen_at_start.into_iter().chain(opens.take()).filter(|p| !p.starts_with(&models)).collect();
    assert!(outside.is_empty(), "opened outside {}: {outside:?}", models.display());
    // The watch would have seen it: reading the decoys shows up.
    std::fs::read(decoy.join("model.json")).unwrap();
    std::fs::read(etc.join("passwd")).unwrap();
    let seen = opens.take();
    assert!(seen.contains(&decoy.join("model.json")) && seen.contains(&etc.join("passwd")), "{seen:?}");
    assert!(!server.log().contains("decoy"), "the decoy never reaches the log:\n{}", server.log());
}

#[test]
fn huge_and_repeated_query_strings_are_400_with_a_reason() {
    let root = tempfile::tempdir().unwrap();
    write_model(root.path(), "demo", 8, |_| {});
    let server = Server::start(command(root.path(), &["--reload-interval", "0"]));
    let cases: Vec<(String, &str)> = vec![
        (format!("/generate?seed=1&model={}", "x".repeat(9000)), "at most 8192"),
        (format!("/generate?seed=1&truncation=0.{}", "5".repeat(60_000)), "at most 8192"),
        (format!("/interpolate?from=1&to=2&{}", "&".repeat(60_000)), "at most 8192"),
        (format!("/generate?{}", "model=demo&".repeat(300)), "model is given 300 times"),
        (format!("/generate?{}", "model=demo&".repeat(800)), "at most 8192"),
        (format!("/generate?{}", "seed=1&".repeat(500)), "seed is given 500 times"),
        (format!("/generate?{}", "s%65ed=1&".repeat(100)), "seed is given 100 times"),
        (format!("/interpolate?from=1&to=2&{}", "steps=2&".repeat(100)), "steps is given 100 times"),
        (format!("/generate?seeds={}", vec!["1"; 1000].join(",")), "at most 64"),
        (format!("/generate?seeds=0-{}", u64::MAX), "at most 64"),
        (format!("/generate?{}=1", "k".repeat(3000)), "unknown parameter"),
    ];
    for (target, needle) in &cases {
        let res = get_raw(server.addr, target.as_bytes());
        assert_eq!(res.status, 400, "{}", cut(target));
        let msg = assert_json_4xx(&res, &cut(target));
        assert!(msg.contains(needle), "{}: {msg}", cut(target));
    }
    // Empty segments are allowed, and so many of them are harmless.
    assert_eq!(get_raw(server.addr, format!("/generate?{}seed=1", "&".repeat(4000)).as_bytes()).status, 200);
    // Beyond what the HTTP layer takes, actix refuses the request itself, without a
    // body: a request target over 64 KiB (the `http` crate's limit) is a 400, a head
    // over 128 KiB (what actix buffers) a 431.
    let res = get_raw(server.addr, format!("/generate?seed=1&model={}", "y".repeat(70_000)).as_bytes());
    assert_eq!(res.status, 400, "{res:?}");
    let res = get_raw(server.addr, format!("/generate?seed=1&model={}", "y".repeat(200_000)).as_bytes());
    assert_eq!(res.status, 431, "{res:?}");
    server.ok("/generate?seed=1");
}

#[test]
fn oversized_headers_are_refused_and_the_server_keeps_serving() {
    let root = tempfile::tempdir().unwrap();
    write_model(root.path(), "demo", 8, |_| {});
    let server = Server::start(command(root.path(), &["--reload-interval", "0"]));
    let before = server.ok("/generate?seed=3");
    let send = |extra: &str| {
        let raw = format!("GET /generate?seed=3 HTTP/1.1\r\nHost: canard\r\n{extra}Connection: close\r\n\r\n");
        request(server.addr, raw.as_bytes()).unwrap()
    };

    // One 64 KiB header, and 64 KiB spread over 40 headers: 431 with a JSON reason.
    for extra in [
        format!("X-Junk: {}\r\n", "j".repeat(64 * 1024)),
        format!("Cookie: {}\r\n", "c=1; ".repeat(13 * 1024)),
        (0..40).map(|i| format!("X-Junk-{i}: {}\r\n", "j".repeat(1600))).collect(),
    ] {
        let res = send(&extra);
        assert_eq!(res.status, 431, "{} bytes of headers: {}", extra.len(), cut(&res.text()));
        let msg = assert_json_4xx(&res, "64 KiB of headers");
        assert!(msg.contains("headers") && msg.contains("at most 32768"), "{msg}");
    }
    // 32 KiB in all is fine, one byte more is not: `name: value\r\n` each, with the
    // 14 bytes of `Host: canard` and 19 of `Connection: close`.
    let pad = |n: usize| format!("X-Pad: {}\r\n", "p".repeat(n));
    assert_eq!(send(&pad(32 * 1024 - 14 - 19 - 9)).body, before);
    assert_eq!(send(&pad(32 * 1024 - 14 - 19 - 9 + 1)).status, 431);
    // A big cookie and a proxy's forwarding headers are fine.
    let proxied = "X-Forwarded-For: 203.0.113.7\r\nX-Real-IP: 203.0.113.7\r\nX-Forwarded-Proto: https\r\n";
    assert_eq!(send(&format!("Cookie: {}\r\n{proxied}", "c".repeat(8 * 1024))).body, before);
    // Beyond the HTTP parser's own limits, more than 96 headers or a head over
    // 128 KiB, actix answers 431 itself, without a body.
    let many: String = (0..100).map(|i| format!("X-{i}: 1\r\n")).collect();
    for extra in [many, format!("X-Junk: {}\r\n", "j".repeat(200 * 1024))] {
        let res = send(&extra);
        assert_eq!((res.status, res.body.len()), (431, 0), "{} bytes of headers", extra.len());
    }
    // Still serving, the same picture.
    assert_eq!(server.ok("/generate?seed=3"), before);
    let metrics = String::from_utf8(server.ok("/metrics")).unwrap();
    assert!(metrics.contains(r#"canard_http_requests_total{route="unmatched",status="431"} 4"#), "{metrics}");
}

/// What a slow client saw: the answer (if any) and when the server closed the connection.
struct Outcome {
    answer: Option<Response>,
    closed_after: Option<Duration>,
}

/// Reads from `s` until the server closes it (or `limit` passes); times from `start`.
fn until_closed(mut s: TcpStream, start: Instant, limit: Duration) -> Outcome {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if start.elapsed() > limit {
                    return Outcome { answer: parse(&got), closed_after: None };
                }
            }
            Err(_) => break, // reset: closed too
        }
    }
    Outcome { answer: parse(&got), closed_after: Some(start.elapsed()) }
}

/// Sends a keep-alive `GET /healthz` on `s` and reads its whole answer.
fn one_keep_alive_request(s: &mut TcpStream) {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: canard\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while parse(&got).is_none_or(|r| {
        r.header("content-length").and_then(|l| l.parse::<usize>().ok()).is_none_or(|l| r.body.len() < l)
    }) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the answer: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(parse(&got).unwrap().status, 200);
}

/// `--keep-alive 0`: a request that asks to keep its connection still gets it closed
/// after the answer.
#[test]
fn without_keep_alive_every_answer_closes_its_connection() {
    let root = tempfile::tempdir().unwrap();
    write_model(root.path(), "demo", 8, |_| {});
    let server = Server::start(command(root.path(), &["--reload-interval", "0", "--keep-alive", "0"]));
    let mut s = TcpStream::connect(server.addr).unwrap();
    let start = Instant::now();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: canard\r\nConnection: keep-alive\r\n\r\n").unwrap();
    let seen = until_closed(s, start, Duration::from_secs(10));
    assert_eq!(seen.answer.map(|r| r.status), Some(200));
    assert!(seen.closed_after.is_some_and(|t| t < Duration::from_secs(2)), "still open after 10 s");
}

#[test]
fn slow_clients_are_timed_out_while_others_are_served() {
    let root = tempfile::tempdir().unwrap();
    write_model(root.path(), "demo", 8, |_| {});
    let server =
        Server::start(command(root.path(), &["--reload-interval", "0", "--request-timeout", "1", "--keep-alive", "1"]));
    let addr = server.addr;
    // Bounds below are loose (0.4–8 s for a 1 s timeout): actix checks its timers against a
    // clock it refreshes every 500 ms, and a loaded CI machine adds seconds.
    let limit = Duration::from_secs(20);
    let full = b"GET /healthz HTTP/1.1\r\nHost: canard\r\nConnection: close\r\n\r\n";

    // 1. The request line and headers one byte every 100 ms (5 s in all).
    let trickle = std::thread::spawn(move || {
        let s = TcpStream::connect(addr).unwrap();
        let start = Instant::now();
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let mut sent = 0;
            for b in full {
                if w.write_all(&[*b]).is_err() {
                    break;
                }
                sent += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            sent
        });
        let outcome = until_closed(s, start, limit);
        (outcome, writer.join().unwrap())
    });
    // 2. Headers begun and never finished.
    let unfinished = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let start = Instant::now();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: canard\r\nX-Slow: ").unwrap();
        until_closed(s, start, limit)
    });
    // 3. Connected, and nothing sent at all.
    let silent = std::thread::spawn(move || {
        let s = TcpStream::connect(addr).unwrap();
        until_closed(s, Instant::now(), limit)
    });
    // 4. One answered request, then idle on the kept-alive connection.
    let idle = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        one_keep_alive_request(&mut s);
        until_closed(s, Instant::now(), limit)
    });
    // 5. One answered request, then a second one begun and never finished: actix only
    //    times the first request's head, so this is the slow client it does not catch.
    let second = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        one_keep_alive_request(&mut s);
        let start = Instant::now();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: ").unwrap();
        until_closed(s, start, limit)
    });

    // Meanwhile everyone else is served promptly.
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        let res = server.get(&format!("/generate?seed={served}"));
        assert_eq!(res.status, 200);
        assert!(t.elapsed() < Duration::from_secs(2), "a normal request took {:?}", t.elapsed());
        served += 1;
    }
    assert!(served >= 3, "{served} requests in 3 s");

    let (trickled, sent) = trickle.join().unwrap();
    let closed = trickled.closed_after.expect("the trickling client is disconnected");
    assert!(sent < full.len() && closed < Duration::from_secs(8), "closed after {closed:?}, {sent} bytes sent");
    assert_eq!(trickled.answer.map(|r| r.status), Some(408));

    let unfinished = unfinished.join().unwrap();
    let closed = unfinished.closed_after.expect("the unfinished request is disconnected");
    assert!((Duration::from_millis(400)..Duration::from_secs(8)).contains(&closed), "{closed:?}");
    assert_eq!(unfinished.answer.map(|r| r.status), Some(408));

    let silent = silent.join().unwrap();
    let closed = silent.closed_after.expect("the silent client is disconnected");
    assert!((Duration::from_millis(400)..Duration::from_secs(8)).contains(&closed), "{closed:?}");

    let idle = idle.join().unwrap();
    let closed = idle.closed_after.expect("the idle kept-alive connection is closed");
    assert!((Duration::from_millis(400)..Duration::from_secs(8)).contains(&closed), "{closed:?}");

    let second = second.join().unwrap();
    let closed = second.closed_after.expect("the unfinished second request is disconnected");
    // --keep-alive + --request-timeout, and the watchdog's granularity.
    assert!((Duration::from_millis(400)..Duration::from_secs(8)).contains(&closed), "{closed:?}");
    assert_eq!(server.metric("canard_stalled_connections_closed_total"), 1.0);
    server.ok("/healthz");
}

/// Raises this process's soft limit on open files to `want` (or the hard limit);
/// the server started afterwards inherits it.
fn raise_fd_limit(want: u64) -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_cur < want {
        lim.rlim_cur = want.min(lim.rlim_max);
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0, "{}", std::io::Error::last_os_error());
    }
    lim.rlim_cur
}

#[test]
fn thousands_of_idle_connections_are_held_cheaply_then_closed() {
    const IDLE: usize = 2000;
    let limit = raise_fd_limit(IDLE as u64 + 1024);
    assert!(limit >= IDLE as u64 + 1024, "the hard limit on open files ({limit}) is too low for {IDLE} connections");
    let root = tempfile::tempdir().unwrap();
    write_model(root.path(), "demo", 8, |_| {});
    // A request timeout long enough to open and measure 2,000 connections on a loaded machine.
    let server = Server::start(command(
        root.path(),
        &["--reload-interval", "0", "--request-timeout", "10", "--keep-alive", "1"],
    ));
    let before = server.ok("/generate?seed=5");
    let (rss_before, fds_before) = (server.rss_kib(), server.open_fds());

    let opened = Instant::now();
    let idle: Vec<TcpStream> =
        (0..IDLE).map(|i| TcpStream::connect(server.addr).unwrap_or_else(|e| panic!("connection {i}: {e}"))).collect();
    // Every one accepted and held by the server...
    let deadline = Instant::now() + Duration::from_secs(6);
    while server.open_fds() + 5 < fds_before + IDLE && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let fds_during = server.open_fds();
    // (Less a few: the answer to the first request may have been closing.)
    assert!(fds_during + 5 >= fds_before + IDLE, "{fds_during} open, {fds_before} before {IDLE} connections");
    // ...while a normal client is still served, promptly and the same.
    let t = Instant::now();
    assert_eq!(server.ok("/generate?seed=5"), before);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?} with {IDLE} idle connections", t.elapsed());
    let rss_during = server.rss_kib();
    assert!(opened.elapsed() < Duration::from_secs(9), "all measured before the request timeout");
    let grown_mib = rss_during.saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 200, "RSS grew by {grown_mib} MiB for {IDLE} idle connections");

    // After --request-timeout the server has closed every one of them.
    let deadline = opened + Duration::from_secs(10 + 10);
    while server.open_fds() > fds_before + 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let fds_after = server.open_fds();
    assert!(fds_after <= fds_before + 10, "{fds_after} still open ({fds_before} before)");
    let mut still_open = 0;
    for mut s in idle {
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 256];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue, // the 408
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    still_open += 1;
                    break;
                }
                Err(_) => break,
            }
        }
    }
    assert_eq!(still_open, 0, "connections the server never closed");
    assert_eq!(server.ok("/generate?seed=5"), before);
    eprintln!(
        "{IDLE} idle connections: RSS {} → {} MiB, fds {fds_before} → {fds_during} → {fds_after}",
        rss_before / 1024,
        rss_during / 1024
    );
}
