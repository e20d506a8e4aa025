//! The in-memory view of the cluster's config, rebuilt from etcd by the
//! watch loop and read by every request. Nothing here writes to etcd.
//!
//! Invariant: `View::revision` is the etcd revision whose state the view
//! reflects; it only grows while a watch runs, and a reload replaces the
//! whole view at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use herald_shared::model::{AgentRecord, EndpointRecord, EventTypeRecord, SlotMap, TenantRecord};
use herald_shared::{pattern, slot};
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
    /// Endpoints by tenant, then by id. Change it only through
    /// [`View::put_endpoint`] and [`View::remove_endpoint`], which keep
    /// `subscriptions` in step.
    pub endpoints: HashMap<String, BTreeMap<String, Arc<EndpointEntry>>>,
    /// Per tenant, which endpoints take which event type.
    subscriptions: HashMap<String, Subscriptions>,
    /// Live agents by id.
    pub agents: BTreeMap<String, AgentRecord>,
    /// The slot map and its revision, once one was written.
    pub slot_map: Option<(SlotMap, i64)>,
    /// API keys by id.
    pub api_keys: HashMap<String, Arc<crate::access::ApiKeyRecord>>,
}

/// A tenant's subscription index, so a publish looks at the endpoints that
/// may want its type instead of every endpoint of the tenant.
#[derive(Debug, Default)]
struct Subscriptions {
    /// Exact event type name → endpoint ids.
    exact: HashMap<String, BTreeSet<String>>,
    /// Endpoints with at least one `*` pattern (checked one by one).
    patterns: BTreeSet<String>,
}

impl Subscriptions {
    fn add(&mut self, rec: &EndpointRecord) {
        for t in &rec.event_types {
            if pattern::is_wildcard(t) {
                self.patterns.insert(rec.id.clone());
            } else {
                self.exact
                    .entry(t.clone())
                    .or_default()
                    .insert(rec.id.clone());
            }
        }
    }

    fn remove(&mut self, rec: &EndpointRecord) {
        self.patterns.remove(&rec.id);
        for t in &rec.event_types {
            if let Some(ids) = self.exact.get_mut(t) {
                ids.remove(&rec.id);
                if ids.is_empty() {
                    self.exact.remove(t);
                }
            }
        }
    }
}

impl View {
    /// Adds or replaces an endpoint of `tenant`.
    pub fn put_endpoint(&mut self, tenant: &str, entry: Arc<EndpointEntry>) {
        let subs = self.subscriptions.entry(tenant.to_string()).or_default();
        let eps = self.endpoints.entry(tenant.to_string()).or_default();
        if let Some(old) = eps.insert(entry.record.id.clone(), entry.clone()) {
            subs.remove(&old.record);
        }
        subs.add(&entry.record);
    }

    /// Removes an endpoint of `tenant`; returns it.
    pub fn remove_endpoint(&mut self, tenant: &str, id: &str) -> Option<Arc<EndpointEntry>> {
        let eps = self.endpoints.get_mut(tenant)?;
        let entry = eps.remove(id)?;
        if eps.is_empty() {
            self.endpoints.remove(tenant);
            self.subscriptions.remove(tenant);
        } else if let Some(subs) = self.subscriptions.get_mut(tenant) {
            subs.remove(&entry.record);
        }
        Some(entry)
    }

    /// The endpoints of `tenant` subscribed to `event_type`, by id: those
    /// naming it exactly, and those whose patterns match it.
    pub fn subscribers(&self, tenant: &str, event_type: &str) -> Vec<&Arc<EndpointEntry>> {
        let (Some(subs), Some(eps)) = (self.subscriptions.get(tenant), self.endpoints.get(tenant))
        else {
            return Vec::new();
        };
        let exact = subs.exact.get(event_type);
        let ids: BTreeSet<&String> = exact
            .into_iter()
            .flatten()
            .chain(subs.patterns.iter())
            .collect();
        ids.into_iter()
            .filter_map(|id| eps.get(id))
            .filter(|e| e.record.subscribes_to(event_type))
            .collect()
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(id: &str, types: &[&str]) -> Arc<EndpointEntry> {
        Arc::new(endpoint_entry(
            EndpointRecord {
                id: id.into(),
                event_types: types.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            },
            1,
        ))
    }

    fn ids(v: &View, tenant: &str, ty: &str) -> Vec<String> {
        v.subscribers(tenant, ty)
            .into_iter()
            .map(|e| e.record.id.clone())
            .collect()
    }

    #[test]
    fn the_index_finds_exact_and_pattern_subscribers_and_follows_updates() {
        let mut v = View::default();
        v.put_endpoint("acme", ep("ep_c", &["invoice.paid"]));
        v.put_endpoint("acme", ep("ep_a", &["invoice.*"]));
        v.put_endpoint("acme", ep("ep_b", &["order.created", "invoice.paid"]));
        v.put_endpoint("other", ep("ep_z", &["*"]));
        assert_eq!(ids(&v, "acme", "invoice.paid"), ["ep_a", "ep_b", "ep_c"]);
        assert_eq!(ids(&v, "acme", "invoice.sent"), ["ep_a"]);
        assert_eq!(ids(&v, "acme", "order.created"), ["ep_b"]);
        assert_eq!(ids(&v, "acme", "user.created"), Vec::<String>::new());
        assert_eq!(ids(&v, "other", "invoice.paid"), ["ep_z"]);

        // An update that changes the types drops the old entries.
        v.put_endpoint("acme", ep("ep_b", &["order.created"]));
        v.put_endpoint("acme", ep("ep_a", &["invoice.sent"]));
        assert_eq!(ids(&v, "acme", "invoice.paid"), ["ep_c"]);
        assert_eq!(ids(&v, "acme", "invoice.sent"), ["ep_a"]);

        assert!(v.remove_endpoint("acme", "ep_c").is_some());
        assert!(v.remove_endpoint("acme", "ep_c").is_none());
        assert_eq!(ids(&v, "acme", "invoice.paid"), Vec::<String>::new());
        v.remove_endpoint("acme", "ep_a");
        v.remove_endpoint("acme", "ep_b");
        assert!(v.endpoints.is_empty() || !v.endpoints.contains_key("acme"));
        assert!(
            !v.subscriptions.contains_key("acme"),
            "no index left behind"
        );
    }
}
