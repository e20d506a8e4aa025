//! The slot planner: keeps the slot map in etcd equal to the rendezvous
//! assignment of slots over the live agents that are not draining, and
//! records which slots must first be handed over by their previous owner.
//!
//! Only the leader plans. Each write is a compare-and-put on the map's
//! revision, so even two replicas that both believe they lead (briefly,
//! around a lease expiry) cannot split the map, and the epoch only grows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use herald_shared::model::{AgentRecord, SlotMap};
use herald_shared::slot;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::store::{Store, keys};
use crate::view::ViewHandle;

/// Runs until `cancel` fires, re-planning each time `changed` is notified
/// or this replica becomes the leader.
pub async fn run(
    store: Store,
    view: ViewHandle,
    changed: Arc<Notify>,
    mut is_leader: watch::Receiver<bool>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = changed.notified() => {}
            r = is_leader.changed() => if r.is_err() { return },
        }
        if !*is_leader.borrow() {
            continue;
        }
        if let Err(e) = plan_once(&store, &view).await {
            tracing::warn!(error = %e, "slot planning failed; will retry");
            tokio::time::sleep(Duration::from_millis(500)).await;
            changed.notify_one();
        }
    }
}

/// The map the agent set calls for, if it differs from the current one.
///
/// Owners are the rendezvous assignment over agents not draining (over all
/// of them if every one drains). A slot whose owner changes while the old
/// owner is still alive is marked as a handoff from it; handoffs from agents
/// that are gone are dropped (their leftovers come back late, after a
/// restart). The epoch grows when ownership or membership changes.
pub fn desired(current: Option<&SlotMap>, agents: Vec<AgentRecord>) -> Option<SlotMap> {
    let mut candidates: Vec<usize> = (0..agents.len()).filter(|i| !agents[*i].draining).collect();
    if candidates.is_empty() {
        candidates = (0..agents.len()).collect();
    }
    let ids: Vec<String> = candidates.iter().map(|i| agents[*i].id.clone()).collect();
    let owners: Vec<u16> = slot::assign(&ids, slot::SLOT_COUNT)
        .into_iter()
        .map(|i| candidates[usize::from(i)] as u16)
        .collect();
    let live = |id: &str| agents.iter().any(|a| a.id == id);
    let mut handoffs: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (s, owner) in owners.iter().enumerate() {
        let s = s as u32;
        let new_owner = agents[usize::from(*owner)].id.as_str();
        let mut from: Vec<String> = current
            .and_then(|m| m.handoffs.get(&s).cloned())
            .unwrap_or_default();
        if let Some(old) = current.and_then(|m| m.owner(s))
            && old.id != new_owner
            && !from.contains(&old.id)
        {
            from.push(old.id.clone());
        }
        from.retain(|f| f != new_owner && live(f));
        if !from.is_empty() {
            handoffs.insert(s, from);
        }
    }
    if let Some(cur) = current
        && cur.agents == agents
        && cur.owners == owners
        && cur.handoffs == handoffs
    {
        return None;
    }
    let epoch = match current {
        Some(cur) if cur.agents == agents && cur.owners == owners => cur.epoch,
        Some(cur) => cur.epoch + 1,
        None => 1,
    };
    Some(SlotMap {
        epoch,
        slot_count: slot::SLOT_COUNT,
        agents,
        owners,
        handoffs,
    })
}

async fn plan_once(store: &Store, view: &ViewHandle) -> Result<()> {
    let (next, revision) = view.read(|v| {
        let agents = v.agents.values().cloned().collect();
        let current = v.slot_map.as_ref();
        (
            desired(current.map(|(m, _)| m), agents),
            current.map(|(_, r)| *r).unwrap_or(0),
        )
    });
    let Some(next) = next else { return Ok(()) };
    if store
        .compare_and_put(keys::SLOT_MAP, &next, revision)
        .await?
    {
        tracing::info!(
            epoch = next.epoch,
            agents = next.agents.len(),
            handoffs = next.handoffs.len(),
            "slot map updated"
        );
    }
    // Lost the race: the winner's map arrives through the watch, which
    // notifies us again.
    Ok(())
}

/// Records that `agent_id` received all of `slots` from `from`: drops
/// those handoffs from the map (same epoch: ownership does not change). Any
/// replica may call it; compare-and-put makes it safe against the planner.
pub async fn complete_handoff(
    store: &Store,
    agent_id: &str,
    slots: &[u32],
    from: &str,
) -> Result<()> {
    for _ in 0..50 {
        let Some(cur) = store.get::<SlotMap>(keys::SLOT_MAP).await? else {
            return Ok(());
        };
        let mut map = cur.value;
        let mut changed = 0;
        for slot in slots {
            // A slot that moved on is the new plan's business.
            if map.owner(*slot).is_none_or(|a| a.id != agent_id) {
                continue;
            }
            let Some(list) = map.handoffs.get_mut(slot) else {
                continue;
            };
            let before = list.len();
            list.retain(|f| f != from);
            changed += before - list.len();
            if list.is_empty() {
                map.handoffs.remove(slot);
            }
        }
        if changed == 0 {
            return Ok(());
        }
        if store
            .compare_and_put(keys::SLOT_MAP, &map, cur.revision)
            .await?
        {
            tracing::info!(slots = changed, from, to = agent_id, "handoffs complete");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(crate::error::Error::Unavailable(
        "the slot map kept changing; the agent will report again".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_shared::model::AgentRecord;

    fn agent(id: &str) -> AgentRecord {
        AgentRecord {
            id: id.into(),
            ingest_addr: format!("{id}:1"),
            ..Default::default()
        }
    }

    #[test]
    fn moved_slots_wait_for_live_old_owners_only() {
        let m1 = desired(None, vec![agent("a")]).unwrap();
        assert!(m1.handoffs.is_empty(), "nothing to hand over at first");
        let m2 = desired(Some(&m1), vec![agent("a"), agent("b")]).unwrap();
        let moved = m2.slots_of("b");
        assert!(!moved.is_empty());
        assert_eq!(m2.handoffs.len(), moved.len());
        assert!(m2.handoffs.values().all(|f| f == &["a".to_string()]));
        assert_eq!(m2.outgoing_of("a"), moved);
        // Draining b: its slots go back to a, which first gets b's queues;
        // a's own pending handoff to b is dropped (a owns those slots again).
        let mut b = agent("b");
        b.draining = true;
        let m3 = desired(Some(&m2), vec![agent("a"), b.clone()]).unwrap();
        assert_eq!(m3.slots_of("b"), Vec::<u32>::new());
        assert_eq!(m3.epoch, m2.epoch + 1);
        assert!(m3.handoffs.values().all(|f| f == &["b".to_string()]));
        assert_eq!(m3.outgoing_of("b"), moved);
        // b dies: nobody waits for it.
        let m4 = desired(Some(&m3), vec![agent("a")]).unwrap();
        assert!(m4.handoffs.is_empty());
        // Only the handoffs changed: the epoch stays.
        let mut m5 = m2.clone();
        m5.handoffs.clear();
        assert!(desired(Some(&m5), vec![agent("a"), agent("b")]).is_none());
    }

    #[test]
    fn epoch_grows_only_on_change() {
        let m1 = desired(None, vec![agent("a")]).unwrap();
        assert_eq!(m1.epoch, 1);
        assert!(desired(Some(&m1), vec![agent("a")]).is_none());
        let m2 = desired(Some(&m1), vec![agent("a"), agent("b")]).unwrap();
        assert_eq!(m2.epoch, 2);
        // A restarted agent with a new address is a change too.
        let mut moved = agent("a");
        moved.ingest_addr = "a:2".into();
        assert_eq!(
            desired(Some(&m2), vec![moved, agent("b")]).unwrap().epoch,
            3
        );
    }
}
