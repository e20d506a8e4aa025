//! The rebalance run: how much moves when an agent joins or leaves. A
//! backlog is queued over N agents (endpoints disabled with
//! `queue_while_disabled`, as in `backlog`), then agent N+1 joins, and
//! once the map settles it is drained again. Rendezvous hashing should move
//! only the slots the joiner takes (or the leaver held): about 1/(N+1) of
//! the slots and of the queued events, and the other agents should only
//! lose slots on a join.

use std::time::{Duration, Instant};

use herald_proto::v1 as pb;
use serde::Serialize;

use crate::cluster::Cluster;
use crate::params::Params;
use crate::publish::{self, Plan};
use crate::receiver::Receiver;
use crate::report::Machine;

/// One move: what share of the slots and of the queue changed agent.
#[derive(Debug, Clone, Serialize)]
pub struct Move {
    /// Slots that changed owner / all slots.
    pub slots_share: f64,
    /// Queued events that changed agent / all queued events.
    pub queued_share: f64,
    /// From the change to a settled map with no handoff left, s.
    pub secs: f64,
    /// Slots per agent after the move.
    pub slots_after: Vec<u32>,
}

/// What a rebalance run measured.
#[derive(Debug, Clone, Serialize)]
pub struct RebalanceReport {
    /// Scenario name.
    pub scenario: String,
    /// Where it ran.
    pub machine: Machine,
    /// Agents before the join.
    pub agents: usize,
    /// Events queued.
    pub events: u64,
    /// Endpoints they were spread over.
    pub endpoints: u64,
    /// The bound the issue sets: 1 / (agents + 1) + 2 %.
    pub bound: f64,
    /// Agent N+1 joins.
    pub join: Move,
    /// Only the joiner gained slots; the others only lost some.
    pub join_only_to_joiner: bool,
    /// Agent N+1 is drained.
    pub leave: Move,
}

impl RebalanceReport {
    /// Whether both moves stayed within the bound.
    pub fn within_bound(&self) -> bool {
        let ok = |m: &Move| m.slots_share <= self.bound && m.queued_share <= self.bound;
        ok(&self.join) && ok(&self.leave) && self.join_only_to_joiner
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let line = |what: &str, m: &Move| {
            format!(
                "{what:<8} slots moved {:.2} %, queued events moved {:.2} % in {:.2} s; slots per agent after: {:?}\n",
                m.slots_share * 100.0,
                m.queued_share * 100.0,
                m.secs,
                m.slots_after
            )
        };
        format!(
            "scenario {} ({} agents, {} events queued over {} endpoints; bound {:.2} %)\n{}{}only the joiner gained slots: {}\n",
            self.scenario,
            self.agents,
            self.events,
            self.endpoints,
            self.bound * 100.0,
            line("join", &self.join),
            line("leave", &self.leave),
            self.join_only_to_joiner
        )
    }
}

/// Runs `p` (`agents` before the join, `events`, `endpoints`).
pub async fn run(name: &str, p: &Params) -> anyhow::Result<RebalanceReport> {
    let receiver = Receiver::start(Duration::ZERO).await?;
    let mut cluster = crate::backlog::queueing_cluster(p.agents, p, &receiver).await?;
    let plan = Plan {
        rate: None,
        ..Plan::of(p)
    };
    eprintln!("herald-bench: queueing {} events", p.events);
    publish::run(&cluster.transport(), &plan).await?;
    let before = cluster.wait_settled_view(Duration::from_secs(60)).await?;

    eprintln!("herald-bench: agent {} joins", p.agents + 1);
    let t = Instant::now();
    cluster.add_agent().await?;
    let joined = cluster.wait_settled_view(Duration::from_secs(600)).await?;
    let joined_secs = t.elapsed().as_secs_f64();
    let old: Vec<&str> = before.agents.iter().map(|a| a.id.as_str()).collect();
    let joiner = joined
        .agents
        .iter()
        .find(|a| !old.contains(&a.id.as_str()))
        .ok_or_else(|| anyhow::anyhow!("the new agent is not in the cluster view"))?
        .clone();
    let only_to_joiner = before.agents.iter().all(|b| {
        joined
            .agents
            .iter()
            .find(|a| a.id == b.id)
            .is_some_and(|a| a.slots <= b.slots)
    });
    let join = Move {
        slots_share: f64::from(joiner.slots) / f64::from(joined.slot_count.max(1)),
        queued_share: share(joiner.queue_depth, &joined),
        secs: joined_secs,
        slots_after: joined.agents.iter().map(|a| a.slots).collect(),
    };

    eprintln!("herald-bench: draining agent {}", p.agents + 1);
    let t = Instant::now();
    cluster
        .api
        .cluster
        .drain_agent(pb::DrainAgentRequest {
            agent_id: joiner.id.clone(),
        })
        .await?;
    let left = drained(&mut cluster, &joiner.id).await?;
    let leave = Move {
        slots_share: f64::from(joiner.slots) / f64::from(left.slot_count.max(1)),
        queued_share: share(joiner.queue_depth, &joined),
        secs: t.elapsed().as_secs_f64(),
        slots_after: left.agents.iter().map(|a| a.slots).collect(),
    };
    Ok(RebalanceReport {
        scenario: name.to_string(),
        machine: Machine::here(),
        agents: p.agents,
        events: p.events,
        endpoints: p.endpoints,
        bound: 1.0 / (p.agents + 1) as f64 + 0.02,
        join,
        join_only_to_joiner: only_to_joiner,
        leave,
    })
}

/// `depth` / the events queued over every agent of `view`.
fn share(depth: Option<u64>, view: &pb::Cluster) -> f64 {
    let total: u64 = view.agents.iter().filter_map(|a| a.queue_depth).sum();
    depth.unwrap_or(0) as f64 / total.max(1) as f64
}

/// Waits until `id` owns no slot and no handoff is left.
async fn drained(cluster: &mut Cluster, id: &str) -> anyhow::Result<pb::Cluster> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let c = cluster
            .api
            .cluster
            .get_cluster(pb::GetClusterRequest {})
            .await?
            .into_inner();
        let held = c.agents.iter().find(|a| a.id == id).map_or(0, |a| a.slots);
        if held == 0 && c.handoffs_in_progress == 0 {
            return Ok(c);
        }
        anyhow::ensure!(Instant::now() < deadline, "the drain did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
