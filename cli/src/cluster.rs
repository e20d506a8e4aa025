//! `herald cluster ...`: the leader, the slot map and the agents; draining
//! an agent.

use std::collections::{BTreeMap, HashMap};

use crate::connect::Ch;
use anyhow::Result;
use clap::Subcommand;
use herald_proto::v1::{
    AgentInfo, Cluster, DrainAgentRequest, GetClusterRequest,
    cluster_service_client::ClusterServiceClient,
};
use serde_json::{Value, json};

use crate::output::{Format, time};

/// Cluster subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Shows the leader, the slot map's epoch, handoffs in progress and
    /// every live agent with its slots and queue depth.
    Show,
    /// Moves every slot (and its queues) off an agent, so it can be stopped
    /// without waiting; the agent stays registered and idle.
    Drain {
        /// Agent id, as `herald cluster show` lists it.
        agent_id: String,
    },
}

/// Column headers of the agent table.
const AGENT_HEADERS: [&str; 8] = [
    "ID", "ADDRESS", "SLOTS", "DRAINING", "INCOMING", "OUTGOING", "QUEUE", "STARTED",
];

/// One agent as a row under [`AGENT_HEADERS`].
fn agent_row(a: &AgentInfo) -> Vec<String> {
    vec![
        a.id.clone(),
        a.ingest_addr.clone(),
        a.slots.to_string(),
        a.draining.to_string(),
        a.incoming_handoffs.to_string(),
        a.outgoing_handoffs.to_string(),
        queue_cell(a.queue_depth),
        time(a.started_at_ms),
    ]
}

/// A queue depth for a table cell: `?` when the agent did not answer.
fn queue_cell(depth: Option<u64>) -> String {
    depth.map_or_else(|| "?".into(), |d| d.to_string())
}

/// The agents awaited after dying, by id, each with until when:
/// `a1 until <time>, a2 until <time>`, or `-` for none.
fn awaited_text(awaited: &HashMap<String, i64>) -> String {
    let mut ids: Vec<_> = awaited.iter().collect();
    ids.sort();
    if ids.is_empty() {
        return "-".into();
    }
    let parts: Vec<_> = ids
        .into_iter()
        .map(|(id, until)| format!("{id} until {}", time(*until)))
        .collect();
    parts.join(", ")
}

/// The cluster's own fields as FIELD/VALUE rows.
fn cluster_rows(c: &Cluster) -> Vec<Vec<String>> {
    let leader = match c.leader_id.as_str() {
        "" => "-".to_string(),
        id => id.to_string(),
    };
    let fields = [
        ("leader", leader),
        ("replica", c.replica_id.clone()),
        ("epoch", c.epoch.to_string()),
        ("slots", c.slot_count.to_string()),
        ("handoffs in progress", c.handoffs_in_progress.to_string()),
        (
            "awaited dead agents",
            awaited_text(&c.awaited_dead_agents_until_ms),
        ),
    ];
    fields
        .into_iter()
        .map(|(k, v)| vec![k.to_string(), v])
        .collect()
}

fn agent_json(a: &AgentInfo) -> Value {
    json!({
        "id": a.id,
        "ingest_addr": a.ingest_addr,
        "draining": a.draining,
        "started_at_ms": a.started_at_ms,
        "slots": a.slots,
        "incoming_handoffs": a.incoming_handoffs,
        "outgoing_handoffs": a.outgoing_handoffs,
        "queue_depth": a.queue_depth,
    })
}

/// The whole cluster as JSON.
fn cluster_json(c: &Cluster) -> Value {
    let awaited: BTreeMap<_, _> = c.awaited_dead_agents_until_ms.iter().collect();
    json!({
        "leader_id": c.leader_id,
        "replica_id": c.replica_id,
        "epoch": c.epoch,
        "slot_count": c.slot_count,
        "agents": c.agents.iter().map(agent_json).collect::<Vec<_>>(),
        "handoffs_in_progress": c.handoffs_in_progress,
        "awaited_dead_agents_until_ms": awaited,
    })
}

/// Runs one cluster subcommand.
pub async fn run(channel: Ch, out: Format, cmd: Cmd) -> Result<()> {
    let mut client = ClusterServiceClient::new(channel);
    match cmd {
        Cmd::Show => {
            let mut c = client.get_cluster(GetClusterRequest {}).await?.into_inner();
            c.agents.sort_by(|a, b| a.id.cmp(&b.id));
            let agents: Vec<_> = c.agents.iter().map(agent_row).collect();
            out.emit_tables(
                &cluster_json(&c),
                &[
                    (&["FIELD", "VALUE"], cluster_rows(&c)),
                    (&AGENT_HEADERS, agents),
                ],
            );
        }
        Cmd::Drain { agent_id } => {
            client
                .drain_agent(DrainAgentRequest {
                    agent_id: agent_id.clone(),
                })
                .await?;
            out.emit_message(
                &json!({ "draining": agent_id }),
                &format!("draining agent {agent_id}: its slots and queues move to other agents"),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, queue_depth: Option<u64>) -> AgentInfo {
        AgentInfo {
            id: id.into(),
            ingest_addr: "http://10.0.0.1:7001".into(),
            draining: true,
            started_at_ms: 0,
            slots: 128,
            incoming_handoffs: 2,
            outgoing_handoffs: 1,
            queue_depth,
        }
    }

    #[test]
    fn queue_cells() {
        assert_eq!(queue_cell(None), "?");
        assert_eq!(queue_cell(Some(0)), "0");
        assert_eq!(queue_cell(Some(42)), "42");
    }

    #[test]
    fn agent_rows_follow_headers() {
        let row = agent_row(&agent("a1", None));
        assert_eq!(row.len(), AGENT_HEADERS.len());
        assert_eq!(
            row,
            [
                "a1",
                "http://10.0.0.1:7001",
                "128",
                "true",
                "2",
                "1",
                "?",
                "-"
            ]
        );
        assert_eq!(agent_row(&agent("a2", Some(7)))[6], "7");
    }

    #[test]
    fn awaited_agents_are_sorted_with_times() {
        assert_eq!(awaited_text(&HashMap::new()), "-");
        let until = 1_700_000_000_000;
        let awaited = HashMap::from([("b".to_string(), until), ("a".to_string(), until)]);
        let t = time(until);
        assert_eq!(awaited_text(&awaited), format!("a until {t}, b until {t}"));
    }

    #[test]
    fn cluster_rows_and_json() {
        let c = Cluster {
            leader_id: String::new(),
            replica_id: "cp-1".into(),
            epoch: 9,
            slot_count: 256,
            agents: vec![agent("a1", None), agent("a2", Some(3))],
            handoffs_in_progress: 4,
            awaited_dead_agents_until_ms: HashMap::from([("a3".to_string(), 5)]),
        };
        let rows = cluster_rows(&c);
        assert_eq!(rows[0], ["leader", "-"]);
        assert_eq!(rows[1], ["replica", "cp-1"]);
        assert_eq!(rows[4], ["handoffs in progress", "4"]);
        assert_eq!(rows[5][1], format!("a3 until {}", time(5)));

        let j = cluster_json(&c);
        assert_eq!(j["leader_id"], "");
        assert_eq!(j["epoch"], 9);
        assert_eq!(j["agents"][0]["queue_depth"], Value::Null);
        assert_eq!(j["agents"][1]["queue_depth"], 3);
        assert_eq!(j["awaited_dead_agents_until_ms"]["a3"], 5);
    }
}
