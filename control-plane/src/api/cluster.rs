//! ClusterService: the leader, the slot map and the agents (O8); draining
//! an agent.

use herald_proto::v1 as pb;
use herald_proto::v1::cluster_service_server::ClusterService;
use herald_shared::model::AgentRecord;
use tonic::{Request, Response, Status};

use super::Api;
use crate::error::{Error, Result};
use crate::store::keys;
use crate::validate;

impl Api {
    /// Each live agent's queue depth, as it answers (None if it does not).
    async fn queue_depths(&self, agents: &[AgentRecord]) -> Vec<Option<u64>> {
        let answers = self
            .inner
            .log
            .ask_all(|mut c| async move { c.get_agent_status(pb::AgentStatusRequest {}).await })
            .await
            .unwrap_or_default();
        agents
            .iter()
            .map(|a| {
                answers
                    .iter()
                    .find(|(addr, _)| *addr == a.ingest_addr)
                    .and_then(|(_, r)| r.as_ref().ok().map(|s| s.queue_depth))
            })
            .collect()
    }
}

#[tonic::async_trait]
impl ClusterService for Api {
    async fn get_cluster(
        &self,
        _req: Request<pb::GetClusterRequest>,
    ) -> Result<Response<pb::Cluster>, Status> {
        let leader_id = self
            .store()
            .get::<String>(keys::LEADER)
            .await?
            .map(|v| v.value)
            .unwrap_or_default();
        let (mut cluster, agents) = self.view().read(|v| {
            let agents: Vec<AgentRecord> = v.agents.values().cloned().collect();
            let mut c = pb::Cluster {
                leader_id,
                replica_id: self.inner.replica_id.clone(),
                slot_count: herald_shared::slot::SLOT_COUNT,
                ..Default::default()
            };
            let map = v.slot_map.as_ref().map(|(m, _)| m);
            if let Some(m) = map {
                c.epoch = m.epoch;
                c.slot_count = m.slot_count;
                c.handoffs_in_progress = m.handoffs.len() as u32;
                c.awaited_dead_agents_until_ms = m.dead.clone().into_iter().collect();
            }
            c.agents = agents
                .iter()
                .map(|a| pb::AgentInfo {
                    id: a.id.clone(),
                    ingest_addr: a.ingest_addr.clone(),
                    draining: a.draining,
                    started_at_ms: a.started_at_ms,
                    slots: map.map_or(0, |m| m.slots_of(&a.id).len() as u32),
                    incoming_handoffs: map.map_or(0, |m| m.incoming_of(&a.id).len() as u32),
                    outgoing_handoffs: map.map_or(0, |m| m.outgoing_of(&a.id).len() as u32),
                    queue_depth: None,
                })
                .collect();
            (c, agents)
        });
        for (info, depth) in cluster
            .agents
            .iter_mut()
            .zip(self.queue_depths(&agents).await)
        {
            info.queue_depth = depth;
        }
        Ok(Response::new(cluster))
    }

    async fn drain_agent(
        &self,
        req: Request<pb::DrainAgentRequest>,
    ) -> Result<Response<pb::DrainAgentResponse>, Status> {
        let id = req.into_inner().agent_id;
        validate::name("agent_id", &id)?;
        let rel = format!("{}{id}", keys::AGENTS);
        for _ in 0..5 {
            if self
                .store()
                .update_leased::<AgentRecord>(&rel, |a| a.draining = true)
                .await?
            {
                tracing::info!(agent = %id, "agent drained by an operator");
                return Ok(Response::new(pb::DrainAgentResponse {}));
            }
            if self.store().get::<AgentRecord>(&rel).await?.is_none() {
                break;
            }
        }
        Err(Error::NotFound(format!("agent '{id}' is not registered")).into())
    }
}
