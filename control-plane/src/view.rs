//! The in-memory view of the cluster's config, rebuilt from etcd by the
//! watch loop and read by every request. Nothing here writes to etcd.
//!
//! Invariant: `View::revision` is the etcd revision whose state the view
//! reflects; it only grows while a watch runs, and a reload replaces the
//! whole view at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use herald_shared::model::{AgentRecord, EndpointRecord, EventTypeRecord, SlotMap, TenantRecord};
use herald_shared::slot;
use tokio::sync::{broadcast, watch};

/// An endpoint as the view holds it.
#[derive(Debug, Clone)]
pub struct EndpointEntry {
    /// The stored record.
    pub record: EndpointRecord,
    /// Its etcd `mod_revision`.
    pub revision: i64,
    /// Its slot.
    pub slot: u32,
    /// Its content rules, parsed.
    pub rules: herald_shared::filter::Rules,
}

/// The config as of one etcd revision.
#[derive(Debug, Default)]
pub struct View {
    /// The etcd revision reflected.
    pub revision: i64,
    /// Event types by name.
    pub event_types: HashMap<String, EventTypeRecord>,
    /// Tenants by id.
    pub tenants: HashMap<String, TenantRecord>,
    /// Endpoints by tenant, then by id.
    pub endpoints: HashMap<String, BTreeMap<String, Arc<EndpointEntry>>>,
    /// Live agents by id.
    pub agents: BTreeMap<String, AgentRecord>,
    /// The slot map and its revision, once one was written.
    pub slot_map: Option<(SlotMap, i64)>,
}

impl View {
    /// Every endpoint whose slot is in `slots`.
    pub fn endpoints_in_slots(
        &self,
        slots: &std::collections::HashSet<u32>,
    ) -> Vec<Arc<EndpointEntry>> {
        self.endpoints
            .values()
            .flat_map(|m| m.values())
            .filter(|e| slots.contains(&e.slot))
            .cloned()
            .collect()
    }

    /// The slot map's epoch, 0 before the first map.
    pub fn epoch(&self) -> u64 {
        self.slot_map.as_ref().map(|(m, _)| m.epoch).unwrap_or(0)
    }
}

/// A change to the view, for agent sessions to forward.
#[derive(Debug, Clone)]
pub enum Change {
    /// An endpoint was created or updated.
    EndpointPut(Arc<EndpointEntry>),
    /// An endpoint was deleted.
    EndpointDeleted {
        /// Its id.
        id: String,
        /// Its slot.
        slot: u32,
    },
    /// The slot map changed, or the whole view was reloaded: recompute
    /// everything derived from it.
    Resync,
}

/// Shared handle to the view. Cheap to clone.
#[derive(Clone)]
pub struct ViewHandle {
    view: Arc<RwLock<View>>,
    applied: watch::Sender<i64>,
    changes: broadcast::Sender<Change>,
}

impl Default for ViewHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl ViewHandle {
    /// An empty view at revision 0.
    pub fn new() -> Self {
        ViewHandle {
            view: Arc::new(RwLock::new(View::default())),
            applied: watch::channel(0).0,
            changes: broadcast::channel(4096).0,
        }
    }

    /// Runs `f` on the current view. Keep `f` short: writers wait.
    pub fn read<R>(&self, f: impl FnOnce(&View) -> R) -> R {
        let guard = self.view.read().unwrap_or_else(|p| p.into_inner());
        f(&guard)
    }

    /// Applies `f` to the view (the watch loop only), then announces
    /// `revision` and the changes `f` returned.
    pub fn apply(&self, revision: i64, f: impl FnOnce(&mut View) -> Vec<Change>) {
        let changes = {
            let mut guard = self.view.write().unwrap_or_else(|p| p.into_inner());
            let changes = f(&mut guard);
            guard.revision = guard.revision.max(revision);
            changes
        };
        for c in changes {
            // No receivers is fine: no agent is connected.
            let _ = self.changes.send(c);
        }
        self.applied.send_if_modified(|r| {
            let grew = revision > *r;
            *r = (*r).max(revision);
            grew
        });
    }

    /// Replaces the whole view (after a reload).
    pub fn replace(&self, new: View) {
        let revision = new.revision;
        *self.view.write().unwrap_or_else(|p| p.into_inner()) = new;
        let _ = self.changes.send(Change::Resync);
        self.applied.send_replace(revision);
    }

    /// Subscribes to changes made after this call.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Waits until the view reflects at least `revision`, so a caller that
    /// just wrote sees its own write. False on timeout.
    pub async fn wait_for(&self, revision: i64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits for the next applied revision, or the timeout.
    pub async fn changed(&self, timeout: Duration) {
        let mut rx = self.applied.subscribe();
        let _ = tokio::time::timeout(timeout, rx.changed()).await;
    }
}

/// Builds an endpoint entry from its record.
pub fn endpoint_entry(record: EndpointRecord, revision: i64) -> EndpointEntry {
    let slot = slot::slot_for(&record.id, slot::SLOT_COUNT);
    // Checked at the API edge; a stored record that fails here was written
    // by something else, and its rules are skipped rather than the endpoint.
    let rules = herald_shared::filter::Rules::from_record(&record).unwrap_or_else(|(field, e)| {
        tracing::warn!(endpoint = %record.id, field, error = %e, "ignoring bad endpoint rules");
        Default::default()
    });
    EndpointEntry {
        record,
        revision,
        slot,
        rules,
    }
}
