//! AgentControl: the long-lived stream to each agent. The agent says Hello;
//! we send its slot assignment and the config of every endpoint in its
//! slots, then forward changes as the view sees them.

use std::collections::HashSet;
use std::pin::Pin;

use herald_proto::v1 as pb;
use herald_proto::v1::agent_control_server::AgentControl;
use herald_proto::v1::control_message::Kind;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::Api;
use crate::convert;
use crate::view::Change;

type Outbound = mpsc::Sender<Result<pb::ControlMessage, Status>>;

#[tonic::async_trait]
impl AgentControl for Api {
    type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::ControlMessage, Status>> + Send>>;

    async fn session(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = req.into_inner();
        let hello = match inbound.next().await {
            Some(Ok(pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Hello(h)),
            })) => h,
            Some(Err(s)) => return Err(s),
            _ => {
                return Err(Status::invalid_argument(
                    "kind: the first message must be hello",
                ));
            }
        };
        if herald_shared::ids::validate_name(&hello.agent_id).is_err() {
            return Err(Status::invalid_argument("hello.agent_id: not a valid id"));
        }
        let (tx, rx) = mpsc::channel(1024);
        let api = self.clone();
        tokio::spawn(async move {
            tracing::info!(agent = %hello.agent_id, addr = %hello.ingest_addr, "agent session opened");
            let sessions = &crate::metrics::get().agent_sessions;
            sessions.add(1);
            api.run_session(&hello.agent_id, inbound, tx).await;
            sessions.add(-1);
            tracing::info!(agent = %hello.agent_id, "agent session closed");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

impl Api {
    async fn run_session(
        &self,
        agent_id: &str,
        mut inbound: Streaming<pb::AgentMessage>,
        tx: Outbound,
    ) {
        let mut changes = self.view().subscribe();
        let mut owned = HashSet::new();
        let reports = self.publish_reports_in_order();
        if self.sync_agent(agent_id, &mut owned, &tx).await.is_err() {
            return;
        }
        loop {
            let sent = tokio::select! {
                msg = inbound.next() => match msg {
                    Some(Ok(pb::AgentMessage { kind: Some(pb::agent_message::Kind::DisableEndpoint(d)) })) => {
                        let api = self.clone();
                        tokio::spawn(async move {
                            if let Err(e) = api.auto_disable(d).await {
                                tracing::warn!(error = %e, "cannot disable endpoint; the agent will ask again");
                            }
                        });
                        Ok(())
                    }
                    Some(Ok(pb::AgentMessage { kind: Some(pb::agent_message::Kind::OperationalEvent(e)) })) => {
                        // In the order the agent saw them.
                        if reports.try_send(e).is_err() {
                            tracing::warn!("too many operational events queued; one is dropped");
                        }
                        Ok(())
                    }
                    Some(Ok(pb::AgentMessage { kind: Some(pb::agent_message::Kind::HandoffComplete(h)) })) => {
                        let (store, agent) = (self.store().clone(), agent_id.to_string());
                        tokio::spawn(async move {
                            if let Err(e) = crate::slots::complete_handoff(&store, &agent, &h.slots, &h.from_agent_id).await {
                                tracing::warn!(error = %e, "cannot record a finished handoff; the agent will report again");
                            }
                        });
                        Ok(())
                    }
                    Some(Ok(pb::AgentMessage { kind: Some(pb::agent_message::Kind::LeftoversMarked(_)) })) => {
                        let (store, agent) = (self.store().clone(), agent_id.to_string());
                        tokio::spawn(async move {
                            if let Err(e) = crate::slots::clear_abandoned(&store, &agent).await {
                                tracing::warn!(error = %e, "cannot record marked leftovers; the agent will report again");
                            }
                        });
                        Ok(())
                    }
                    Some(Ok(_heartbeat)) => Ok(()),
                    _ => return, // agent went away
                },
                change = changes.recv() => match change {
                    Ok(Change::EndpointPut(e)) if owned.contains(&e.slot) => {
                        send(&tx, Kind::EndpointUpsert(pb::EndpointUpsert { endpoint: Some(convert::delivery_endpoint(&e)) })).await
                    }
                    Ok(Change::EndpointDeleted { id, slot }) if owned.contains(&slot) => {
                        send(&tx, Kind::EndpointRemoved(pb::EndpointRemoved { endpoint_id: id, slot })).await
                    }
                    Ok(Change::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.sync_agent(agent_id, &mut owned, &tx).await
                    }
                    Ok(_) => Ok(()),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tx.closed() => return,
                // This replica is stopping: end the stream, so the agent
                // moves to another one.
                _ = self.inner.stopping.cancelled() => return,
            };
            if sent.is_err() {
                return;
            }
        }
    }

    /// Sends the agent's assignment and every endpoint in its slots.
    async fn sync_agent(
        &self,
        agent_id: &str,
        owned: &mut HashSet<u32>,
        tx: &Outbound,
    ) -> Result<(), ()> {
        let (assignment, endpoints) = self.view().read(|v| {
            let assignment = match &v.slot_map {
                Some((m, _)) => pb::SlotAssignment {
                    epoch: m.epoch,
                    slot_count: m.slot_count,
                    slots: m.slots_of(agent_id),
                    incoming: m
                        .incoming_of(agent_id)
                        .into_iter()
                        .map(|(slot, from_agent_id)| pb::IncomingHandoff {
                            slot,
                            from_agent_id,
                        })
                        .collect(),
                    outgoing: m.outgoing_of(agent_id),
                    member: m.agents.iter().any(|a| a.id == agent_id),
                    leftovers_late: m.abandoned.contains_key(agent_id),
                    owner_addrs: (0..m.slot_count)
                        .map(|s| {
                            m.owner(s)
                                .map(|a| a.ingest_addr.clone())
                                .unwrap_or_default()
                        })
                        .collect(),
                },
                None => pb::SlotAssignment {
                    slot_count: herald_shared::slot::SLOT_COUNT,
                    ..Default::default()
                },
            };
            let set: HashSet<u32> = assignment.slots.iter().copied().collect();
            (assignment, v.endpoints_in_slots(&set))
        });
        *owned = assignment.slots.iter().copied().collect();
        send(tx, Kind::Assignment(assignment)).await?;
        for e in endpoints {
            send(
                tx,
                Kind::EndpointUpsert(pb::EndpointUpsert {
                    endpoint: Some(convert::delivery_endpoint(&e)),
                }),
            )
            .await?;
        }
        Ok(())
    }
}

async fn send(tx: &Outbound, kind: Kind) -> Result<(), ()> {
    tx.send(Ok(pb::ControlMessage { kind: Some(kind) }))
        .await
        .map_err(|_| ())
}
