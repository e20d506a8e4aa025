//! What the control plane told this agent: its slots at an epoch and the
//! config of each endpoint in them. Lives in memory; after a restart the
//! agent waits for the control plane to send it again before delivering.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use herald_proto::v1 as pb;
use tokio::sync::watch;

use crate::error::{Error, Result};

#[derive(Default)]
struct Inner {
    epoch: u64,
    slots: HashSet<u32>,
    endpoints: HashMap<String, Arc<pb::DeliveryEndpoint>>,
}

/// Shared assignment and endpoint config. Cheap to clone.
#[derive(Clone)]
pub struct AgentState {
    inner: Arc<RwLock<Inner>>,
    /// Bumped on every change, so waiters can re-check.
    version: watch::Sender<u64>,
}

impl Default for AgentState {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentState {
    /// Empty: epoch 0, no slots, no endpoints.
    pub fn new() -> Self {
        AgentState {
            inner: Arc::default(),
            version: watch::channel(0).0,
        }
    }

    fn write(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.inner.write().unwrap_or_else(|p| p.into_inner()));
        self.version.send_modify(|v| *v += 1);
    }

    fn read<R>(&self, f: impl FnOnce(&Inner) -> R) -> R {
        f(&self.inner.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Takes a new assignment.
    pub fn set_assignment(&self, epoch: u64, slots: &[u32]) {
        self.write(|s| {
            s.epoch = epoch;
            s.slots = slots.iter().copied().collect();
        });
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.read(|s| s.epoch)
    }

    /// Creates or replaces an endpoint's config.
    pub fn upsert(&self, ep: pb::DeliveryEndpoint) {
        self.write(|s| {
            s.endpoints.insert(ep.id.clone(), Arc::new(ep));
        });
    }

    /// Forgets an endpoint.
    pub fn remove(&self, id: &str) {
        self.write(|s| {
            s.endpoints.remove(id);
        });
    }

    /// An endpoint's config, if known.
    pub fn endpoint(&self, id: &str) -> Option<Arc<pb::DeliveryEndpoint>> {
        self.read(|s| s.endpoints.get(id).cloned())
    }

    /// Fencing: accepts work only when routed by our epoch to a slot we own.
    pub fn check_owner(&self, epoch: u64, slot: u32) -> Result<()> {
        self.read(|s| {
            if epoch != s.epoch {
                return Err(Error::Fenced(format!(
                    "routed by epoch {epoch} but this agent is at epoch {}",
                    s.epoch
                )));
            }
            if !s.slots.contains(&slot) {
                return Err(Error::Fenced(format!(
                    "slot {slot} is not owned by this agent at epoch {epoch}"
                )));
            }
            Ok(())
        })
    }

    /// A receiver that changes whenever the state does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing() {
        let s = AgentState::new();
        s.set_assignment(3, &[1, 2]);
        assert!(s.check_owner(3, 1).is_ok());
        assert!(matches!(s.check_owner(2, 1), Err(Error::Fenced(_))));
        assert!(matches!(s.check_owner(4, 1), Err(Error::Fenced(_))));
        assert!(matches!(s.check_owner(3, 7), Err(Error::Fenced(_))));
    }
}
