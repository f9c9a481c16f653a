//! The registry currently served. Requests take a snapshot (an `Arc`) and keep it
//! for their whole life, so a hot reload swapping in a new registry never changes
//! a model under a request that is using it; the old engines stop when the last
//! request holding them ends.

use std::sync::{Arc, PoisonError, RwLock};

use crate::registry::Registry;

pub struct Live {
    current: RwLock<Arc<Registry>>,
}

impl Live {
    pub fn new(registry: Registry) -> Live {
        Live { current: RwLock::new(Arc::new(registry)) }
    }

    pub fn snapshot(&self) -> Arc<Registry> {
        // The lock only guards a pointer copy: a poisoned lock still holds a valid Arc.
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Atomically replaces the served registry.
    pub fn swap(&self, registry: Registry) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(registry);
    }
}
