//! What the control plane told this agent: its slots at an epoch, which of
//! them are still being handed over (and by whom), which it must hand on,
//! and the config of each endpoint in its slots. Lives in memory; after a
//! restart the agent waits for the control plane to send it again before
//! delivering.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use herald_proto::v1 as pb;
use tokio::sync::watch;

use crate::error::{Error, Result};

#[derive(Default)]
struct Inner {
    epoch: u64,
    slots: HashSet<u32>,
    /// Owned slots still being handed over: slot → agents yet to finish.
    incoming: HashMap<u32, HashSet<String>>,
    /// (slot, agent) handoffs finished under the current assignment.
    finished: HashSet<(u32, String)>,
    outgoing: Vec<u32>,
    owner_addrs: Vec<String>,
    member: bool,
    leftovers_late: bool,
    endpoints: HashMap<String, Arc<pb::DeliveryEndpoint>>,
}

/// Shared assignment and endpoint config. Cheap to clone.
#[derive(Clone)]
pub struct AgentState {
    inner: Arc<RwLock<Inner>>,
    /// Bumped on every change, so waiters can re-check.
    version: watch::Sender<u64>,
    /// Held (shared) by every store write that passed the ownership check,
    /// until it is committed; see [`AgentState::ingest_barrier`].
    ingest_gate: Arc<tokio::sync::RwLock<()>>,
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
            ingest_gate: Arc::default(),
        }
    }

    fn write(&self, f: impl FnOnce(&mut Inner)) {
        f(&mut self.inner.write().unwrap_or_else(|p| p.into_inner()));
        self.version.send_modify(|v| *v += 1);
    }

    fn read<R>(&self, f: impl FnOnce(&Inner) -> R) -> R {
        f(&self.inner.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Held by an ingest from its ownership check until its deliveries are
    /// committed.
    pub async fn ingest_guard(&self) -> tokio::sync::OwnedRwLockReadGuard<()> {
        self.ingest_gate.clone().read_owned().await
    }

    /// Returns once every ingest that checked ownership before this call
    /// has committed. A handoff round passes it before it reads the store,
    /// so a delivery accepted under the previous assignment cannot land in
    /// a slot after the slot was declared handed over.
    pub async fn ingest_barrier(&self) {
        drop(self.ingest_gate.write().await);
    }

    /// Takes a new assignment.
    pub fn set_assignment(&self, a: &pb::SlotAssignment) {
        self.write(|s| {
            s.epoch = a.epoch;
            s.slots = a.slots.iter().copied().collect();
            let listed: HashSet<(u32, String)> = a
                .incoming
                .iter()
                .map(|h| (h.slot, h.from_agent_id.clone()))
                .collect();
            // A handoff we finished stays finished until the map drops it.
            s.finished.retain(|f| listed.contains(f));
            s.incoming.clear();
            for (slot, from) in listed {
                if !s.finished.contains(&(slot, from.clone())) {
                    s.incoming.entry(slot).or_default().insert(from);
                }
            }
            s.outgoing = a.outgoing.clone();
            s.owner_addrs = a.owner_addrs.clone();
            s.member = a.member;
            s.leftovers_late = a.leftovers_late;
        });
    }

    /// Records that `from` handed over all of `slot`; true when nothing
    /// more is expected for the slot.
    pub fn finish_handoff(&self, slot: u32, from: &str) -> bool {
        let mut done = false;
        self.write(|s| {
            s.finished.insert((slot, from.to_string()));
            if let Some(waiting) = s.incoming.get_mut(&slot) {
                waiting.remove(from);
                if waiting.is_empty() {
                    s.incoming.remove(&slot);
                }
            }
            done = !s.incoming.contains_key(&slot);
        });
        done
    }

    /// Whether we own `slot` and have all of its queue: only then is
    /// anything in it delivered.
    pub fn deliverable(&self, slot: u32) -> bool {
        self.read(|s| s.slots.contains(&slot) && !s.incoming.contains_key(&slot))
    }

    /// Whether we own `slot` at all.
    pub fn owns(&self, slot: u32) -> bool {
        self.read(|s| s.slots.contains(&slot))
    }

    /// Owned slots still being handed over (new work for them is parked).
    pub fn parked_slots(&self) -> Vec<u32> {
        self.read(|s| s.incoming.keys().copied().collect())
    }

    /// Slots to hand on to their owners.
    pub fn outgoing(&self) -> Vec<u32> {
        self.read(|s| s.outgoing.clone())
    }

    /// The epoch, whether we own `slot`, and its owner's address, read
    /// together.
    pub fn slot_at_epoch(&self, slot: u32) -> (u64, bool, Option<String>) {
        self.read(|s| {
            let addr = s
                .owner_addrs
                .get(slot as usize)
                .filter(|a| !a.is_empty())
                .cloned();
            (s.epoch, s.slots.contains(&slot), addr)
        })
    }

    /// The epoch and the slots to hand on at that epoch, read together.
    pub fn outgoing_at_epoch(&self) -> (u64, Vec<u32>) {
        self.read(|s| (s.epoch, s.outgoing.clone()))
    }

    /// The ingest address of `slot`'s owner, if known.
    pub fn owner_addr(&self, slot: u32) -> Option<String> {
        self.read(|s| {
            s.owner_addrs
                .get(slot as usize)
                .filter(|a| !a.is_empty())
                .cloned()
        })
    }

    /// Whether the current map lists this agent.
    pub fn member(&self) -> bool {
        self.read(|s| s.member)
    }

    /// Whether what we held before our restart is late (we were given up).
    pub fn leftovers_late(&self) -> bool {
        self.read(|s| s.leftovers_late)
    }

    /// Number of owned slots.
    pub fn slot_count(&self) -> usize {
        self.read(|s| s.slots.len())
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
        s.set_assignment(&pb::SlotAssignment {
            epoch: 3,
            slots: vec![1, 2],
            ..Default::default()
        });
        assert!(s.check_owner(3, 1).is_ok());
        assert!(matches!(s.check_owner(2, 1), Err(Error::Fenced(_))));
        assert!(matches!(s.check_owner(4, 1), Err(Error::Fenced(_))));
        assert!(matches!(s.check_owner(3, 7), Err(Error::Fenced(_))));
    }

    #[test]
    fn handed_slots_wait_for_every_sender() {
        let s = AgentState::new();
        let a = pb::SlotAssignment {
            epoch: 1,
            slots: vec![1, 2],
            incoming: vec![
                pb::IncomingHandoff {
                    slot: 1,
                    from_agent_id: "x".into(),
                },
                pb::IncomingHandoff {
                    slot: 1,
                    from_agent_id: "y".into(),
                },
            ],
            ..Default::default()
        };
        s.set_assignment(&a);
        assert!(!s.deliverable(1));
        assert!(s.deliverable(2));
        assert_eq!(s.parked_slots(), [1]);
        assert!(!s.finish_handoff(1, "x"));
        assert!(s.finish_handoff(1, "y"));
        assert!(s.deliverable(1));
        // The same assignment again (the map not yet updated) keeps it done.
        s.set_assignment(&a);
        assert!(s.deliverable(1));
        // Once the map drops it, a later handoff of the slot waits again.
        s.set_assignment(&pb::SlotAssignment {
            incoming: vec![],
            ..a.clone()
        });
        s.set_assignment(&a);
        assert!(!s.deliverable(1));
    }
}
