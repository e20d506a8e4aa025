//! The slot planner: keeps the slot map in etcd equal to the rendezvous
//! assignment of slots over the live agents.
//!
//! Every replica runs it. The plan is a pure function of the agent set, and
//! each write is a compare-and-put on the map's revision, so replicas racing
//! converge on one map and the epoch only grows. (Leader election, which
//! lets one replica also drive handoffs, comes with multi-agent scaling.)

use std::sync::Arc;
use std::time::Duration;

use herald_shared::model::SlotMap;
use herald_shared::slot;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::{Store, keys};
use crate::view::ViewHandle;

/// Runs until `cancel` fires, re-planning each time `changed` is notified.
pub async fn run(store: Store, view: ViewHandle, changed: Arc<Notify>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = changed.notified() => {}
        }
        if let Err(e) = plan_once(&store, &view).await {
            tracing::warn!(error = %e, "slot planning failed; will retry");
            tokio::time::sleep(Duration::from_millis(500)).await;
            changed.notify_one();
        }
    }
}

/// The map the agent set calls for, if it differs from the current one.
pub fn desired(
    current: Option<&SlotMap>,
    agents: Vec<herald_shared::model::AgentRecord>,
) -> Option<SlotMap> {
    let ids: Vec<String> = agents.iter().map(|a| a.id.clone()).collect();
    let owners = slot::assign(&ids, slot::SLOT_COUNT);
    if let Some(cur) = current
        && cur.agents == agents
        && cur.owners == owners
    {
        return None;
    }
    Some(SlotMap {
        epoch: current.map(|m| m.epoch).unwrap_or(0) + 1,
        slot_count: slot::SLOT_COUNT,
        agents,
        owners,
    })
}

async fn plan_once(store: &Store, view: &ViewHandle) -> crate::error::Result<()> {
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
            "slot map updated"
        );
    }
    // Lost the race: the winner's map arrives through the watch, which
    // notifies us again.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_shared::model::AgentRecord;

    fn agent(id: &str) -> AgentRecord {
        AgentRecord {
            id: id.into(),
            ingest_addr: format!("{id}:1"),
            started_at_ms: 0,
        }
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
