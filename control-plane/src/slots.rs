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
use herald_shared::time::now_ms;
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
    dead_wait: Duration,
    cancel: CancellationToken,
) {
    let dead_wait_ms = dead_wait.as_millis() as i64;
    loop {
        // Wake when a dead agent's wait ends, to let its slots go on.
        let until_deadline = next_deadline(&view)
            .map(|d| Duration::from_millis((d - now_ms()).max(0) as u64 + 10))
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = changed.notified() => {}
            _ = tokio::time::sleep(until_deadline) => {}
            r = is_leader.changed() => if r.is_err() { return },
        }
        if !*is_leader.borrow() {
            continue;
        }
        if let Err(e) = plan_once(&store, &view, dead_wait_ms).await {
            tracing::warn!(error = %e, "slot planning failed; will retry");
            tokio::time::sleep(Duration::from_millis(500)).await;
            changed.notify_one();
        }
    }
}

/// The map the agent set calls for, if it differs from the current one.
///
/// Owners are the rendezvous assignment over agents not draining (over all
/// of them if every one drains). A slot whose owner changes is marked as a
/// handoff from the old owner: while it lives (a join, a drain) until it
/// has handed its queue over; when it died, until it comes back (and
/// takes its slots back, with what its replacements parked) or until
/// `dead_wait_ms` has passed, after which newer events go first and its
/// leftovers follow when it returns. The epoch grows when ownership or
/// membership changes.
pub fn desired(
    current: Option<&SlotMap>,
    agents: Vec<AgentRecord>,
    now_ms: i64,
    dead_wait_ms: i64,
) -> Option<SlotMap> {
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
    // Agents that died still holding slots: wait for them a while; when the
    // wait runs out, remember that their leftovers are late.
    let mut abandoned = current.map(|m| m.abandoned.clone()).unwrap_or_default();
    let mut dead: BTreeMap<String, i64> = BTreeMap::new();
    for (id, until) in current.map(|m| m.dead.clone()).unwrap_or_default() {
        if live(&id) {
            continue;
        }
        if until > now_ms {
            dead.insert(id, until);
        } else {
            abandoned.insert(id, now_ms);
        }
    }
    // An agent gone for a week is not coming back with its queues.
    abandoned.retain(|_, since| now_ms - *since < 7 * 24 * 3600 * 1000);
    if let Some(cur) = current {
        for a in &cur.agents {
            if !live(&a.id) && !cur.slots_of(&a.id).is_empty() && !cur.dead.contains_key(&a.id) {
                dead.insert(a.id.clone(), now_ms + dead_wait_ms);
            }
        }
    }
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
        from.retain(|f| f != new_owner && (live(f) || dead.contains_key(f)));
        if !from.is_empty() {
            handoffs.insert(s, from);
        }
    }
    dead.retain(|id, _| handoffs.values().any(|f| f.contains(id)));
    if let Some(cur) = current
        && cur.agents == agents
        && cur.owners == owners
        && cur.handoffs == handoffs
        && cur.dead == dead
        && cur.abandoned == abandoned
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
        dead,
        abandoned,
    })
}

/// `agent_id` has marked its leftovers late: forget that it was abandoned.
pub async fn clear_abandoned(store: &Store, agent_id: &str) -> Result<()> {
    edit_map(store, |map| map.abandoned.remove(agent_id).is_some()).await?;
    Ok(())
}

/// When the planner must look again: the earliest wait for a dead agent.
fn next_deadline(view: &ViewHandle) -> Option<i64> {
    view.read(|v| {
        v.slot_map
            .as_ref()
            .and_then(|(m, _)| m.dead.values().min().copied())
    })
}

async fn plan_once(store: &Store, view: &ViewHandle, dead_wait_ms: i64) -> Result<()> {
    let (next, revision) = view.read(|v| {
        let agents = v.agents.values().cloned().collect();
        let current = v.slot_map.as_ref();
        (
            desired(current.map(|(m, _)| m), agents, now_ms(), dead_wait_ms),
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
    let mut changed = 0;
    let written = edit_map(store, |map| {
        changed = 0;
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
        changed > 0
    })
    .await?;
    if written {
        tracing::info!(slots = changed, from, to = agent_id, "handoffs complete");
    }
    Ok(())
}

/// Applies `edit` to the stored slot map and writes it back by
/// compare-and-put, reading again when another writer got there first.
/// `edit` says whether it changed anything; true if a change was written.
async fn edit_map(store: &Store, mut edit: impl FnMut(&mut SlotMap) -> bool) -> Result<bool> {
    for _ in 0..50 {
        let Some(cur) = store.get::<SlotMap>(keys::SLOT_MAP).await? else {
            return Ok(false);
        };
        let mut map = cur.value;
        if !edit(&mut map) {
            return Ok(false);
        }
        if store
            .compare_and_put(keys::SLOT_MAP, &map, cur.revision)
            .await?
        {
            return Ok(true);
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
    fn a_dead_owner_is_waited_for_until_it_returns_or_times_out() {
        let m1 = desired(None, vec![agent("a"), agent("b")], 0, 1000).unwrap();
        let b_slots = m1.slots_of("b");
        // b dies: a owns everything but waits for b's queues.
        let m2 = desired(Some(&m1), vec![agent("a")], 100, 1000).unwrap();
        assert_eq!(m2.dead.get("b"), Some(&1100));
        assert_eq!(m2.incoming_of("a").len(), b_slots.len());
        assert!(desired(Some(&m2), vec![agent("a")], 500, 1000).is_none());
        // b comes back in time: it takes its slots back, and first gets
        // what a parked for them meanwhile.
        let m3 = desired(Some(&m2), vec![agent("a"), agent("b")], 600, 1000).unwrap();
        assert_eq!(m3.slots_of("b"), b_slots);
        assert!(m3.dead.is_empty());
        assert!(m3.handoffs.values().all(|f| f == &["a".to_string()]));
        // Or it does not: after the wait, a delivers on its own, and b's
        // leftovers are late when it comes back.
        let m4 = desired(Some(&m2), vec![agent("a")], 1200, 1000).unwrap();
        assert!(m4.handoffs.is_empty() && m4.dead.is_empty());
        assert_eq!(m4.epoch, m2.epoch, "ownership did not change");
        assert!(m4.abandoned.contains_key("b"));
        let m5 = desired(Some(&m4), vec![agent("a"), agent("b")], 1300, 1000).unwrap();
        assert!(
            m5.abandoned.contains_key("b"),
            "until b says it marked them"
        );
    }

    #[test]
    fn moved_slots_wait_for_live_old_owners_only() {
        let m1 = desired(None, vec![agent("a")], 0, 1000).unwrap();
        assert!(m1.handoffs.is_empty(), "nothing to hand over at first");
        let m2 = desired(Some(&m1), vec![agent("a"), agent("b")], 0, 1000).unwrap();
        let moved = m2.slots_of("b");
        assert!(!moved.is_empty());
        assert_eq!(m2.handoffs.len(), moved.len());
        assert!(m2.handoffs.values().all(|f| f == &["a".to_string()]));
        assert_eq!(m2.outgoing_of("a"), moved);
        // Draining b: its slots go back to a, which first gets b's queues;
        // a's own pending handoff to b is dropped (a owns those slots again).
        let mut b = agent("b");
        b.draining = true;
        let m3 = desired(Some(&m2), vec![agent("a"), b.clone()], 0, 1000).unwrap();
        assert_eq!(m3.slots_of("b"), Vec::<u32>::new());
        assert_eq!(m3.epoch, m2.epoch + 1);
        assert!(m3.handoffs.values().all(|f| f == &["b".to_string()]));
        assert_eq!(m3.outgoing_of("b"), moved);
        // b dies while draining (it owned nothing): nobody waits for it.
        let m4 = desired(Some(&m3), vec![agent("a")], 0, 1000).unwrap();
        assert!(m4.handoffs.is_empty());
        assert!(m4.dead.is_empty());
        // Only the handoffs changed: the epoch stays.
        let mut m5 = m2.clone();
        m5.handoffs.clear();
        assert!(desired(Some(&m5), vec![agent("a"), agent("b")], 0, 1000).is_none());
    }

    #[test]
    fn epoch_grows_only_on_change() {
        let m1 = desired(None, vec![agent("a")], 0, 1000).unwrap();
        assert_eq!(m1.epoch, 1);
        assert!(desired(Some(&m1), vec![agent("a")], 0, 1000).is_none());
        let m2 = desired(Some(&m1), vec![agent("a"), agent("b")], 0, 1000).unwrap();
        assert_eq!(m2.epoch, 2);
        // A restarted agent with a new address is a change too.
        let mut moved = agent("a");
        moved.ingest_addr = "a:2".into();
        assert_eq!(
            desired(Some(&m2), vec![moved, agent("b")], 0, 1000)
                .unwrap()
                .epoch,
            3
        );
    }
}
