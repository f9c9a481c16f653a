//! Hot reload: poll the models folder and swap in new, changed and removed models
//! without a restart.
//!
//! Rules (the README repeats them):
//! - a folder is (re)loaded once its fingerprint (files, sizes, mtimes) is the same
//!   on two polls in a row, so a model still being copied is not read half-written;
//! - a new or changed model is loaded fully, test inference included, before it is
//!   swapped in; a broken one is refused with a logged reason, the previous version
//!   (if any) keeps serving, and the same broken files are not retried until they
//!   change again;
//! - a removed folder unloads its model, unless no model would be left: then the
//!   server keeps what it has (and says so in the log) until a model appears;
//! - the default model follows the start-up rule: `--model` while it is loaded,
//!   else `demo`, else the first name;
//! - only regular files are read (a FIFO or device named like a model file is refused),
//!   and a load that hangs anyway shows in `/readyz` and the log, and never holds up shutdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::fingerprint::{self, Fingerprint};
use crate::live::{Live, STUCK_AFTER};
use crate::registry::{model_folders, Loaded, Loader, Registry, Skipped};

pub struct Reloader {
    loader: Loader,
    dir: PathBuf,
    wanted: Option<String>,
    live: Arc<Live>,
    /// Changed folders seen on the last poll, waiting to be seen unchanged once more.
    pending: BTreeMap<String, Fingerprint>,
    /// Folders whose current files failed to load: not retried until they change.
    refused: BTreeMap<String, Fingerprint>,
    /// The folder could not be read on the last poll (logged once, not every poll).
    folder_error: bool,
}

/// What one poll changed (for logs and tests).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub loaded: Vec<String>,
    pub refused: Vec<String>,
    pub unloaded: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.loaded.is_empty() && self.refused.is_empty() && self.unloaded.is_empty()
    }
}

impl Reloader {
    /// `skipped` are the folders that failed at start-up: they are already reported,
    /// so they count as refused until they change.
    pub fn new(loader: Loader, dir: PathBuf, wanted: Option<String>, live: Arc<Live>, skipped: &[Skipped]) -> Self {
        let refused = skipped.iter().map(|s| (s.name.clone(), s.fingerprint.clone())).collect();
        Reloader { loader, dir, wanted, live, pending: BTreeMap::new(), refused, folder_error: false }
    }

    /// One look at the models folder; swaps in a new registry if anything changed.
    pub fn poll(&mut self) -> Changes {
        let mut changes = Changes::default();
        let folders = match model_folders(&self.dir) {
            Ok(f) => {
                self.folder_error = false;
                f
            }
            Err(e) => {
                if !self.folder_error {
                    tracing::warn!(error = %e, "hot reload: keeping the loaded models");
                }
                self.folder_error = true;
                return changes;
            }
        };
        let current = self.live.snapshot();
        let mut models = current.loaded().clone();
        for (name, path) in &folders {
            // A folder being replaced may vanish between listing and reading.
            let Ok(now) = fingerprint::of(path) else { continue };
            if models.get(name).is_some_and(|l| l.fingerprint == now) || self.refused.get(name) == Some(&now) {
                self.pending.remove(name);
                continue;
            }
            if self.pending.get(name) != Some(&now) {
                self.pending.insert(name.clone(), now);
                continue;
            }
            self.pending.remove(name);
            let replacing = models.contains_key(name);
            let loading = self.live.loading(name);
            let loaded = self.loader.engine(name, path);
            drop(loading);
            match loaded {
                Ok(loaded) => {
                    self.refused.remove(name);
                    log_loaded(name, &loaded, replacing);
                    self.loader.metrics.reloads.with_label_values(&[name.as_str(), "loaded"]).inc();
                    models.insert(name.clone(), loaded);
                    changes.loaded.push(name.clone());
                }
                Err((error, fingerprint)) => {
                    let keeping = if replacing { "the previous version keeps serving" } else { "not loaded" };
                    tracing::warn!(model = %name, error = %error, "hot reload: model {name} refused; {keeping}");
                    self.loader.metrics.reloads.with_label_values(&[name.as_str(), "refused"]).inc();
                    self.refused.insert(name.clone(), fingerprint);
                    changes.refused.push(name.clone());
                }
            }
        }
        let present: Vec<&String> = folders.iter().map(|(n, _)| n).collect();
        self.pending.retain(|n, _| present.contains(&n));
        self.refused.retain(|n, _| present.contains(&n));
        let gone: Vec<String> = models.keys().filter(|n| !present.contains(n)).cloned().collect();
        if !gone.is_empty() && gone.len() == models.len() {
            tracing::warn!(
                models = %gone.join(", "),
                "hot reload: the models folder has no model left; keeping {} until one appears",
                gone.join(", ")
            );
        } else {
            for name in gone {
                models.remove(&name);
                tracing::info!(model = %name, "hot reload: model {name} unloaded (its folder is gone)");
                self.loader.metrics.reloads.with_label_values(&[name.as_str(), "unloaded"]).inc();
                changes.unloaded.push(name);
            }
        }
        if !changes.loaded.is_empty() || !changes.unloaded.is_empty() {
            let next = Registry::from_models(models, self.wanted.as_deref());
            let (before, after) = (default_name(&current), default_name(&next));
            if before != after {
                tracing::info!("hot reload: default model is now {after}");
            }
            self.live.swap(next);
        }
        changes
    }
}

fn default_name(r: &Registry) -> String {
    r.default_model().map_or_else(|| "none".to_string(), |e| e.name().to_string())
}

fn log_loaded(name: &str, loaded: &Loaded, replacing: bool) {
    let m = loaded.engine.manifest();
    let what = if replacing { "reloaded" } else { "loaded" };
    tracing::info!(
        model = %name,
        sha256 = %m.onnx.sha256,
        "hot reload: model {name} {what}: {}x{}, {} channel(s), latent {}",
        m.image_size,
        m.image_size,
        m.channels,
        m.latent.dim
    );
}

/// How long shutdown waits for the polling thread to finish a load in progress.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// How often the watcher looks for a load that has hung, to log it.
const STUCK_CHECK: Duration = Duration::from_secs(10);

/// The polling thread, and a second one that logs a load that hangs (the polling thread
/// cannot: it is the one waiting). Both stop when dropped, with at most [`STOP_WAIT`] for
/// the polling thread, so a load that hangs never keeps the process from exiting.
pub struct Watcher {
    /// Dropped to ask the threads to stop.
    stops: Vec<Sender<()>>,
    /// Disconnected once the polling thread has ended.
    polling_done: Receiver<()>,
    polling: Option<JoinHandle<()>>,
    monitor: Option<JoinHandle<()>>,
}

impl Watcher {
    pub fn spawn(mut reloader: Reloader, interval: Duration) -> std::io::Result<Watcher> {
        let live = reloader.live.clone();
        let mut watcher = Self::spawn_polling(interval, move || {
            reloader.poll();
        })?;
        let (stop, stop_asked) = channel::<()>();
        let monitor = std::thread::Builder::new().name("model-reload-monitor".into()).spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stop_asked.recv_timeout(STUCK_CHECK) {
                live.stuck(STUCK_AFTER); // logs a hung load, once
            }
        })?;
        watcher.stops.push(stop);
        watcher.monitor = Some(monitor);
        Ok(watcher)
    }

    /// Calls `poll` every `interval` on a thread of its own until dropped.
    pub fn spawn_polling(interval: Duration, mut poll: impl FnMut() + Send + 'static) -> std::io::Result<Watcher> {
        let (stop, stop_asked) = channel::<()>();
        let (done, polling_done) = channel::<()>();
        let polling = std::thread::Builder::new().name("model-reload".into()).spawn(move || {
            let _done = done; // dropped, and so seen, however the thread ends
            while let Err(RecvTimeoutError::Timeout) = stop_asked.recv_timeout(interval) {
                poll();
            }
        })?;
        Ok(Watcher { stops: vec![stop], polling_done, polling: Some(polling), monitor: None })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stops.clear();
        if let Some(m) = self.monitor.take() {
            let _ = m.join();
        }
        match self.polling_done.recv_timeout(STOP_WAIT) {
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!("hot reload: a model load has not finished; stopping without waiting for it")
            }
            _ => {
                if let Some(t) = self.polling.take() {
                    let _ = t.join();
                }
            }
        }
    }
}
