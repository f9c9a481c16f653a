//! The process as an orchestrator sees it: SIGTERM lets the requests in flight
//! finish, within `--shutdown-timeout`, while SIGINT (Ctrl-C) stops at once;
//! `--log-format json` writes nothing but JSON lines.

mod support;

use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use support::server::{command, Response, Server};
use support::write_model;

/// Big enough to take a while to resize and encode (a 3×3 grid of 1024² pictures),
/// so that several of them are still running when the signal comes.
const HEAVY: &str = "/generate?seeds=1-9&size=1024";
/// The pictures one [`HEAVY`] request generates.
const HEAVY_IMAGES: usize = 9;

/// `n` clients each sending [`HEAVY`] at once: joined, each gives its answer (or
/// the error that cut it) and when it ended. All `n` connect first and send
/// together, and this returns once the server has generated every request's
/// pictures, so that every request is in the server's hands before the test
/// signals it (waiting for a count of open connections instead raced with the
/// first answers closing theirs).
fn heavy_clients(server: &Server, n: usize) -> Vec<std::thread::JoinHandle<(std::io::Result<Response>, Instant)>> {
    let generated = "canard_images_generated_total{model=\"demo\"}";
    let want = server.metric(generated) + (HEAVY_IMAGES * n) as f64;
    let connected = Arc::new(Barrier::new(n + 1));
    let clients: Vec<_> = (0..n)
        .map(|_| {
            let addr = server.addr;
            let connected = Arc::clone(&connected);
            std::thread::spawn(move || {
                let stream = TcpStream::connect(addr);
                connected.wait();
                let req = format!("GET {HEAVY} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
                let res = stream.and_then(|s| support::server::request_on(s, req.as_bytes()));
                (res, Instant::now())
            })
        })
        .collect();
    connected.wait();
    // Until every request's pictures are generated: each is then in a handler, resizing and
    // encoding, which takes far longer. (A fixed sleep once sufficed, but a client thread
    // not yet scheduled at the signal would find its connection closed unanswered.)
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.metric(generated) < want {
        assert!(
            Instant::now() < deadline,
            "the {n} requests were not all generated within 60 s: {} of {want} images; {} clients ended",
            server.metric(generated),
            clients.iter().filter(|c| c.is_finished()).count()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    clients
}

#[test]
fn sigterm_lets_requests_in_flight_finish_then_exits() {
    let root = tempfile::tempdir().unwrap();
    write_model(root.path(), "demo", 8, |_| {});
    let mut server = Server::start(command(root.path(), &["--reload-interval", "0", "--shutdown-timeout", "60"]));
    let one = server.ok(HEAVY);

    let clients = heavy_clients(&server, 6);
    let signalled = Instant::now();
    server.terminate();

    let mut after = 0;
    for client in clients {
        let (res, ended) = client.join().unwrap();
        let res = res.expect("every request in flight gets its answer");
        assert_eq!(res.status, 200, "{}", res.text());
        assert_eq!(res.body, one, "the whole picture");
        after += usize::from(ended > signalled);
    }
    assert!(after > 0, "no request was still running at SIGTERM: the test proved nothing");
    let status = server.wait_exit(Duration::from_secs(60)).expect("the server exits once drained");
    assert!(status.success(), "{status}\n{}", server.log());
    assert!(server.log().contains("SIGTERM received; starting graceful shutdown"), "{}", server.log());
}

/// Starts a server with `--shutdown-timeout timeout_s`, gives it far more work than
/// fits in a second, sends `signal`: how long it took to exit, and whether every
/// request was answered.
fn stop_while_busy(signal: &str, timeout_s: &str) -> (Duration, bool) {
    let root = tempfile::tempdir().unwrap();
    write_model(root.path(), "demo", 8, |_| {});
    let mut server = Server::start(command(root.path(), &["--reload-interval", "0", "--shutdown-timeout", timeout_s]));
    server.ok(HEAVY);
    let n = 24;
    let clients = heavy_clients(&server, n);
    let signalled = Instant::now();
    server.signal(signal);
    let status = server.wait_exit(Duration::from_secs(90)).expect("the server exits");
    let took = signalled.elapsed();
    let answered = clients
        .into_iter()
        .filter_map(|c| c.join().ok())
        .filter(|(r, _)| matches!(r, Ok(r) if r.status == 200))
        .count();
    assert!(status.success(), "{status}\n{}", server.log());
    (took, answered == n)
}

#[test]
fn sigterm_stops_waiting_after_the_shutdown_timeout() {
    let (took, all) = stop_while_busy("TERM", "1");
    // One second, plus stopping (generous for a loaded machine); waiting for every request
    // would take far longer.
    assert!(took < Duration::from_secs(15), "exited {took:?} after SIGTERM");
    assert!(!all, "every request finished within {took:?}: make them heavier");
}

/// actix stops at once on SIGINT (Ctrl-C), without the grace period.
#[test]
fn sigint_stops_at_once() {
    let (took, all) = stop_while_busy("INT", "60");
    assert!(took < Duration::from_secs(15), "exited {took:?} after SIGINT");
    assert!(!all, "every request finished within {took:?}: make them heavier");
}

#[test]
fn json_logs_are_one_json_object_per_line() {
    let root = tempfile::tempdir().unwrap();
    write_model(root.path(), "demo", 8, |_| {});
    // A broken folder: its warning is logged too.
    write_model(root.path(), "broken", 8, |m| m.onnx.sha256 = "0".repeat(64));
    let mut server =
        Server::start(command(root.path(), &["--reload-interval", "0", "--log-format", "json", "--log", "debug"]));
    server.ok("/generate?seed=1");
    assert_eq!(server.get("/generate?seed=x").status, 400);
    server.terminate();
    server.wait_exit(Duration::from_secs(60)).expect("the server exits");

    let log = server.log();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 5, "{lines:?}");
    let mut levels = Vec::new();
    for line in &lines {
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(json["fields"]["message"].is_string(), "{line}");
        levels.push(json["level"].as_str().unwrap_or_else(|| panic!("no level: {line}")).to_string());
    }
    for level in ["INFO", "WARN", "DEBUG"] {
        assert!(levels.iter().any(|l| l == level), "no {level} line in {lines:?}");
    }
    assert!(lines.iter().any(|l| l.contains("skipping model folder") && l.contains("broken")), "{lines:?}");
}

/// A FIFO named like a model file, present at start-up: the server skips that model by
/// name, listens, serves the others, and stops on SIGTERM (it once waited on the FIFO
/// forever, logging nothing).
#[test]
fn a_fifo_model_file_at_start_up_is_skipped_and_shutdown_still_works() {
    let root = tempfile::tempdir().unwrap();
    write_model(root.path(), "demo", 8, |_| {});
    let pipe = write_model(root.path(), "pipe", 8, |_| {});
    std::fs::remove_file(pipe.join("generator.onnx")).unwrap();
    let c = std::ffi::CString::new(pipe.join("generator.onnx").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let mut server = Server::start(command(root.path(), &["--reload-interval", "1"]));
    server.ok("/generate?seed=1");
    assert_eq!(server.get("/readyz").status, 200);
    let log = server.log();
    assert!(log.contains("skipping model folder") && log.contains("FIFO"), "{log}");
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(30)).expect("the server exits after SIGTERM");
    assert!(status.success(), "{status}\n{}", server.log());
}
