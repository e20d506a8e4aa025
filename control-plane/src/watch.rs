//! Keeps the [`ViewHandle`] current: one read of the whole prefix, then a
//! watch from the next revision. On any watch error (including compaction)
//! it reloads from scratch; nobody polls.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use herald_shared::model::SlotMap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::store::{Store, keys};
use crate::view::{Change, View, ViewHandle, endpoint_entry};

/// Runs until `cancel` fires. `slots_changed` is poked whenever the agent
/// set or the slot map may have changed, so the slot planner re-plans.
pub async fn run(
    store: Store,
    view: ViewHandle,
    slots_changed: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = sync(&store, &view, &slots_changed) => r,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "etcd watch ended; reloading");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Reads everything under the prefix into a fresh view, in pages at one
/// revision (a consistent snapshot, however large).
async fn load(store: &Store) -> Result<View> {
    let prefix = store.prefix().to_string();
    let mut fresh = View::default();
    fresh.revision = store
        .scan("", |key, value, revision| {
            if let Some(rel) = key.strip_prefix(&prefix) {
                apply_put(store, &mut fresh, rel, value, revision);
            }
        })
        .await?;
    Ok(fresh)
}

async fn sync(store: &Store, view: &ViewHandle, slots_changed: &Notify) -> Result<()> {
    let mut client = store.client();
    let prefix = store.prefix().to_string();
    let fresh = load(store).await?;
    let revision = fresh.revision;
    view.replace(fresh);
    slots_changed.notify_one();
    tracing::debug!(revision, "config view loaded");

    let mut stream = client
        .watch(
            prefix.as_str(),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1)
                    .with_progress_notify(),
            ),
        )
        .await?;
    while let Some(resp) = stream.message().await? {
        if resp.canceled() {
            return Err(Error::Unavailable(format!(
                "watch canceled (compacted at {})",
                resp.compact_revision()
            )));
        }
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        let mut poke_slots = false;
        view.apply(revision, |v| {
            let mut changes = Vec::new();
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key());
                let Some(rel) = key.strip_prefix(&prefix) else {
                    continue;
                };
                poke_slots |= rel.starts_with(keys::AGENTS) || rel == keys::SLOT_MAP;
                let change = match ev.event_type() {
                    EventType::Put => apply_put(store, v, rel, kv.value(), kv.mod_revision()),
                    EventType::Delete => apply_delete(v, rel),
                };
                changes.extend(change);
            }
            changes
        });
        if poke_slots {
            slots_changed.notify_one();
        }
    }
    Err(Error::Unavailable("watch stream closed".into()))
}

/// Applies one put to the view; returns the change agents must hear of.
fn apply_put(
    store: &Store,
    v: &mut View,
    rel: &str,
    value: &[u8],
    revision: i64,
) -> Option<Change> {
    if let Some(name) = rel.strip_prefix(keys::EVENT_TYPES) {
        let rec = decode_logged(store, rel, value)?;
        v.event_types.insert(name.to_string(), rec);
    } else if let Some(id) = rel.strip_prefix(keys::TENANTS) {
        let rec = decode_logged(store, rel, value)?;
        v.tenants.insert(id.to_string(), rec);
    } else if let Some(rest) = rel.strip_prefix(keys::ENDPOINTS) {
        let (tenant, id) = rest.split_once('/')?;
        let rec: herald_shared::model::EndpointRecord = decode_logged(store, rel, value)?;
        if rec.id != id {
            tracing::warn!(
                key = rel,
                "skipping an endpoint whose id differs from its key"
            );
            return None;
        }
        let entry = Arc::new(endpoint_entry(rec, revision));
        v.put_endpoint(tenant, entry.clone());
        return Some(Change::EndpointPut(entry));
    } else if let Some(id) = rel.strip_prefix(keys::AGENTS) {
        let rec = decode_logged(store, rel, value)?;
        v.agents.insert(id.to_string(), rec);
    } else if let Some(id) = rel.strip_prefix(keys::API_KEYS) {
        let rec = decode_logged(store, rel, value)?;
        v.api_keys.insert(id.to_string(), Arc::new(rec));
    } else if rel == keys::SLOT_MAP {
        let map: SlotMap = decode_logged(store, rel, value)?;
        v.slot_map = Some((map, revision));
        return Some(Change::Resync);
    }
    None
}

fn apply_delete(v: &mut View, rel: &str) -> Option<Change> {
    if let Some(name) = rel.strip_prefix(keys::EVENT_TYPES) {
        v.event_types.remove(name);
    } else if let Some(id) = rel.strip_prefix(keys::TENANTS) {
        v.tenants.remove(id);
    } else if let Some(rest) = rel.strip_prefix(keys::ENDPOINTS) {
        let (tenant, id) = rest.split_once('/')?;
        let entry = v.remove_endpoint(tenant, id)?;
        return Some(Change::EndpointDeleted {
            id: id.to_string(),
            slot: entry.slot,
        });
    } else if let Some(id) = rel.strip_prefix(keys::AGENTS) {
        v.agents.remove(id);
    } else if let Some(id) = rel.strip_prefix(keys::API_KEYS) {
        v.api_keys.remove(id);
    } else if rel == keys::SLOT_MAP {
        v.slot_map = None;
        return Some(Change::Resync);
    }
    None
}

fn decode_logged<T: serde::de::DeserializeOwned + crate::sealing::Stored>(
    store: &Store,
    rel: &str,
    value: &[u8],
) -> Option<T> {
    store
        .decode(rel, value)
        .map_err(|e| tracing::warn!(key = rel, error = %e, "skipping undecodable record"))
        .ok()
}
