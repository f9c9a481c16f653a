//! Hot reload: new, changed, broken and removed model folders, with the server
//! answering throughout and every refusal logged with its reason.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use canard_serve::app::AppState;
use canard_serve::live::Live;
use canard_serve::metrics::Metrics;
use canard_serve::registry::Loader;
use canard_serve::reload::{Changes, Reloader, Watcher};
use futures_util::FutureExt;
use serde_json::Value;
use support::{hv, options, runtime, write_model};

/// Every log line of this test binary (the reload thread logs from its own thread,
/// so the subscriber must be the global one).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

fn setup(root: &std::path::Path) -> (Reloader, actix_web::web::Data<AppState>) {
    logs();
    write_model(root, "demo", 8, |_| {});
    let metrics = Arc::new(Metrics::new());
    let loader = Loader::new(&runtime().env, options(), metrics.clone());
    let (reg, skipped) = loader.load_all(root, None).unwrap();
    let live = Arc::new(Live::new(reg));
    let reloader = Reloader::new(loader, root.to_path_buf(), None, live.clone(), &skipped);
    (reloader, AppState::new(live, metrics))
}

/// A change is taken once it looks the same on two polls in a row.
fn settle(r: &mut Reloader) -> Changes {
    let first = r.poll();
    assert!(first.is_empty(), "nothing is loaded on the first sight of a change: {first:?}");
    r.poll()
}

fn names(c: &[String]) -> Vec<&str> {
    c.iter().map(String::as_str).collect()
}

#[actix_web::test]
async fn new_changed_broken_and_removed_models() {
    let root = tempfile::tempdir().unwrap();
    let (mut reloader, state) = setup(root.path());
    let app = app!(state.clone());
    assert!(reloader.poll().is_empty(), "nothing changed");

    let (h1, b1) = get!(&app, "/generate?seed=1");
    let tag1 = hv(&h1, "etag");

    // A new folder appears.
    write_model(root.path(), "fresh", 4, |_| {});
    assert_eq!(names(&settle(&mut reloader).loaded), ["fresh"]);
    let list: Value = serde_json::from_slice(&get!(&app, "/models").1).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(hv(&get!(&app, "/generate?seed=1&model=fresh").0, "x-model"), "fresh");

    // A corrupt model is refused, logged, and the old one keeps serving.
    std::fs::write(root.path().join("demo/generator.onnx"), b"garbage").unwrap();
    let changes = settle(&mut reloader);
    assert_eq!(names(&changes.refused), ["demo"]);
    assert!(changes.loaded.is_empty());
    let (h, b) = get!(&app, "/generate?seed=1");
    assert_eq!((hv(&h, "etag"), b), (tag1.clone(), b1.clone()), "the previous demo still answers");
    let log = logged();
    assert!(log.contains("model demo refused") && log.contains("SHA-256") && log.contains("keeps serving"), "{log}");
    assert!(reloader.poll().is_empty() && reloader.poll().is_empty(), "the same broken files are not retried");
    let refused = state.metrics.reloads.with_label_values(&["demo", "refused"]).get();
    assert_eq!(refused, 1);

    // A fixed, different model replaces it: new pictures, new ETag.
    write_model(root.path(), "demo", 6, |_| {});
    assert_eq!(names(&settle(&mut reloader).loaded), ["demo"]);
    let (h2, b2) = get!(&app, "/generate?seed=1");
    assert_ne!(hv(&h2, "etag"), tag1);
    assert_ne!(b2, b1);
    let m: Value = serde_json::from_slice(&get!(&app, "/models/demo").1).unwrap();
    assert_eq!(m["latent"]["dim"], 6);

    // A removed folder unloads its model...
    std::fs::remove_dir_all(root.path().join("fresh")).unwrap();
    assert_eq!(names(&reloader.poll().unloaded), ["fresh"]);
    let res = actix_web::test::call_service(
        &app,
        actix_web::test::TestRequest::get().uri("/generate?seed=1&model=fresh").to_request(),
    )
    .await;
    assert_eq!(res.status().as_u16(), 404);
    // ...unless it is the last one.
    std::fs::remove_dir_all(root.path().join("demo")).unwrap();
    assert!(reloader.poll().unloaded.is_empty());
    get!(&app, "/generate?seed=1");
    assert!(logged().contains("no model left"));
    get!(&app, "/readyz");
}

/// A request that has taken its model when the reload swaps in a new version
/// finishes on the version it took: its answer is the old model's picture.
#[actix_web::test]
async fn a_request_in_flight_during_a_reload_finishes_on_the_old_model() {
    let root = tempfile::tempdir().unwrap();
    let (mut reloader, state) = setup(root.path());
    let app = app!(state);
    let uri = "/generate?seeds=1-64&size=64";
    let (old_headers, old) = get!(&app, uri);

    let req = actix_web::test::TestRequest::get().uri(uri).to_request();
    let mut in_flight = Box::pin(actix_web::test::call_service(&app, req));
    // Polled once: the request has taken the registry and queued on the old engine.
    assert!(in_flight.as_mut().now_or_never().is_none(), "a 64-picture request cannot be done in one poll");

    write_model(root.path(), "demo", 6, |_| {});
    assert_eq!(names(&settle(&mut reloader).loaded), ["demo"]);
    let (new_headers, new) = get!(&app, uri);
    assert_ne!(new, old, "the reload took effect");
    assert_ne!(hv(&new_headers, "etag"), hv(&old_headers, "etag"));

    let res = in_flight.await;
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(hv(res.headers(), "etag"), hv(&old_headers, "etag"));
    assert!(actix_web::test::read_body(res).await.to_vec() == old, "the old model's picture");
}

#[actix_web::test]
async fn the_watcher_thread_picks_up_a_new_model_by_itself() {
    let root = tempfile::tempdir().unwrap();
    let (reloader, state) = setup(root.path());
    let app = app!(state);
    let _watcher = Watcher::spawn(reloader, Duration::from_millis(20)).unwrap();
    write_model(root.path(), "later", 4, |_| {});
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let res =
            actix_web::test::call_service(&app, actix_web::test::TestRequest::get().uri("/models/later").to_request())
                .await;
        if res.status().is_success() {
            break;
        }
        assert!(Instant::now() < deadline, "the new model never appeared");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(logged().contains("model later loaded"));
}

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", path.display());
}

/// A FIFO named like the model's ONNX file is refused by name, at once: reading it would
/// wait forever for a writer and stop every later reload. Later changes still load.
#[actix_web::test]
async fn a_fifo_in_place_of_a_model_file_is_refused_without_blocking_the_reload() {
    let root = tempfile::tempdir().unwrap();
    let (mut reloader, state) = setup(root.path());
    let app = app!(state);
    let pipe = write_model(root.path(), "pipe", 4, |_| {});
    std::fs::remove_file(pipe.join("generator.onnx")).unwrap();
    mkfifo(&pipe.join("generator.onnx"));

    // On a thread with a deadline: the old reader blocked here for good.
    let polled = std::thread::spawn(move || {
        let first = reloader.poll();
        let second = reloader.poll();
        (reloader, first, second)
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while !polled.is_finished() {
        assert!(Instant::now() < deadline, "the reload blocked on the FIFO");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (mut reloader, first, second) = polled.join().unwrap();
    assert!(first.is_empty(), "{first:?}");
    assert_eq!(names(&second.refused), ["pipe"]);
    let log = logged();
    assert!(log.contains("model pipe refused") && log.contains("FIFO"), "{log}");

    // The reload goes on: another model appears and is served; /readyz stays ready.
    write_model(root.path(), "after", 4, |_| {});
    assert_eq!(names(&settle(&mut reloader).loaded), ["after"]);
    assert_eq!(hv(&get!(&app, "/generate?seed=1&model=after").0, "x-model"), "after");
    get!(&app, "/readyz");
}

/// A poll that never returns (a load hanging on a dead mount, say) does not keep the
/// watcher, and so the process, from stopping: dropping it gives up after a few seconds.
#[test]
fn stopping_does_not_wait_for_a_load_that_hangs() {
    logs();
    let (entered, hung) = std::sync::mpsc::channel();
    let watcher = Watcher::spawn_polling(Duration::from_millis(10), move || {
        let _ = entered.send(());
        std::thread::sleep(Duration::from_secs(3600));
    })
    .unwrap();
    hung.recv_timeout(Duration::from_secs(30)).expect("the poll started");
    let t = Instant::now();
    drop(watcher);
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(4) && took < Duration::from_secs(20), "{took:?}");
    assert!(logged().contains("a model load has not finished"));
}
