//! The registry currently served. Requests take a snapshot (an `Arc`) and keep it
//! for their whole life, so a hot reload swapping in a new registry never changes
//! a model under a request that is using it; the old engines stop when the last
//! request holding them ends. It also knows which model hot reload is loading, so a
//! load that hangs (a model folder on a dead network mount, say) shows in `/readyz`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::registry::Registry;

/// A hot-reload load taking longer than this is reported as stuck (`/readyz`, the log).
pub const STUCK_AFTER: Duration = Duration::from_secs(60);

pub struct Live {
    current: RwLock<Arc<Registry>>,
    /// The model hot reload is loading now, and since when.
    loading: Mutex<Option<(String, Instant)>>,
    /// Whether the current load was already logged as stuck.
    reported: AtomicBool,
}

/// A load in progress; dropping it (however the load ends) clears it.
pub struct Loading<'a>(&'a Live);

impl Drop for Loading<'_> {
    fn drop(&mut self) {
        *self.0.loading.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl Live {
    pub fn new(registry: Registry) -> Live {
        Live { current: RwLock::new(Arc::new(registry)), loading: Mutex::new(None), reported: AtomicBool::new(false) }
    }

    pub fn snapshot(&self) -> Arc<Registry> {
        // The lock only guards a pointer copy: a poisoned lock still holds a valid Arc.
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Atomically replaces the served registry.
    pub fn swap(&self, registry: Registry) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(registry);
    }

    /// Marks `name` as being loaded until the returned guard is dropped.
    pub fn loading(&self, name: &str) -> Loading<'_> {
        *self.loading.lock().unwrap_or_else(PoisonError::into_inner) = Some((name.to_string(), Instant::now()));
        self.reported.store(false, Ordering::Relaxed);
        Loading(self)
    }

    /// The model whose load has taken longer than `after`, and for how long; logged
    /// once per load the first time it is seen.
    pub fn stuck(&self, after: Duration) -> Option<(String, Duration)> {
        let guard = self.loading.lock().unwrap_or_else(PoisonError::into_inner);
        let (name, since) = guard.as_ref()?;
        let took = since.elapsed();
        if took < after {
            return None;
        }
        if !self.reported.swap(true, Ordering::Relaxed) {
            tracing::warn!(model = %name, "hot reload: loading model {name} has taken {}s and has not finished", took.as_secs());
        }
        Some((name.clone(), took))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_is_stuck_only_while_it_runs_past_the_limit() {
        let live = Live::new(Registry::default());
        assert_eq!(live.stuck(Duration::ZERO), None);
        {
            let _loading = live.loading("slow");
            assert_eq!(live.stuck(Duration::from_secs(3600)), None);
            assert_eq!(live.stuck(Duration::ZERO).map(|(n, _)| n).as_deref(), Some("slow"));
        }
        assert_eq!(live.stuck(Duration::ZERO), None, "the guard clears it when the load ends");
    }
}
