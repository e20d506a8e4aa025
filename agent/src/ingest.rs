//! AgentIngest: the control plane hands deliveries over; we check that we
//! own their slots at the sender's epoch, store them durably, then wake the
//! endpoints' workers. Other agents hand over the queues of slots we now
//! own; until every earlier owner has finished, new work for such a slot is
//! parked so that it is delivered after what was handed over.

use herald_proto::v1 as pb;
use herald_proto::v1::agent_ingest_server::AgentIngest;
use herald_shared::slot::{SLOT_COUNT, slot_for};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use crate::dispatcher::Dispatcher;
use crate::error::Error;
use crate::state::AgentState;
use crate::store::Store;

/// The ingest service. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    /// Durable queues.
    pub store: Store,
    /// Assignment, for fencing.
    pub state: AgentState,
    /// Wakes workers.
    pub dispatcher: Dispatcher,
    /// To tell the control plane a handoff finished.
    pub outbox: tokio::sync::mpsc::Sender<pb::AgentMessage>,
}

fn invalid(field: String, reason: &str) -> Error {
    Error::InvalidArgument {
        field,
        reason: reason.to_string(),
    }
}

#[tonic::async_trait]
impl AgentIngest for Ingest {
    async fn ingest(
        &self,
        req: Request<pb::IngestRequest>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        // The durable enqueue, in the trace of the publish that routed it.
        let span = tracing::info_span!(
            "enqueue",
            otel.name = "herald.enqueue",
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = "herald.v1.AgentIngest",
            rpc.method = "Ingest",
            deliveries = req.get_ref().deliveries.len(),
            trace_id = tracing::field::Empty,
        );
        let meta = |k: &str| {
            req.metadata()
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let parent = meta("traceparent");
        herald_shared::telemetry::continue_trace(&span, &parent, &meta("tracestate"));
        let r = req.into_inner();
        link_other_publishes(&span, &parent, &r.deliveries);
        self.ingest_inner(r).instrument(span).await
    }
    async fn handoff(
        &self,
        req: Request<pb::HandoffBatch>,
    ) -> Result<Response<pb::HandoffAck>, Status> {
        let r = req.into_inner();
        let _gate = self.state.ingest_guard().await;
        check_sender(&r.from_agent_id)?;
        for (i, item) in r.items.iter().enumerate() {
            let Some(d) = &item.delivery else {
                return Err(invalid(format!("items[{i}].delivery"), "is required").into());
            };
            if !crate::store::is_delivery_id(&d.delivery_id) {
                return Err(invalid(
                    format!("items[{i}].delivery.delivery_id"),
                    "must be dlv_ and 24 lowercase hex digits",
                )
                .into());
            }
            if d.slot != slot_for(&d.endpoint_id, SLOT_COUNT) {
                return Err(invalid(
                    format!("items[{i}].delivery.slot"),
                    "does not match the endpoint id",
                )
                .into());
            }
            self.check_owned(d.slot)?;
        }
        let parked = self.state.parked_slots();
        let inserted = self
            .store
            .insert_handed(self.state.epoch(), r.items, r.late, parked)
            .await?;
        self.handed_in(&r.from_agent_id, &inserted, r.late);
        self.finish_slots(&r.from_agent_id, r.done_slots).await?;
        Ok(Response::new(pb::HandoffAck {
            stored: inserted.stored,
            duplicates: inserted.duplicates,
        }))
    }

    type HandoffStreamStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::HandoffFrameAck, Status>> + Send>,
    >;

    async fn handoff_stream(
        &self,
        req: Request<tonic::Streaming<pb::HandoffFrame>>,
    ) -> Result<Response<Self::HandoffStreamStream>, Status> {
        let mut frames = req.into_inner();
        let me = self.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            // Each frame is stored (or refused) before the next is read, and
            // acked in order; the first refusal ends the stream.
            while let Some(frame) = frames.message().await.transpose() {
                let ack = match frame {
                    Ok(f) => me.handoff_frame(f).await,
                    Err(s) => Err(s),
                };
                let failed = ack.is_err();
                if tx.send(ack).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// A handoff names its sender by agent id.
fn check_sender(from_agent_id: &str) -> Result<(), Error> {
    herald_shared::ids::validate_name(from_agent_id)
        .map_err(|_| invalid("from_agent_id".into(), "is not a valid agent id"))
}

impl Ingest {
    /// Handed work is taken only for slots this agent owns.
    fn check_owned(&self, slot: u32) -> Result<(), Error> {
        if self.state.owns(slot) {
            return Ok(());
        }
        Err(Error::Fenced(format!(
            "slot {slot} is not owned by this agent; hand it to its owner"
        )))
    }

    /// Stores one frame of a handoff stream; a `done` frame finishes the slot.
    async fn handoff_frame(&self, f: pb::HandoffFrame) -> Result<pb::HandoffFrameAck, Status> {
        let _gate = self.state.ingest_guard().await;
        check_sender(&f.from_agent_id)?;
        if f.format != crate::store::RECORD_FORMAT {
            return Err(invalid(
                "format".into(),
                &format!(
                    "record format {} is not this agent's ({})",
                    f.format,
                    crate::store::RECORD_FORMAT
                ),
            )
            .into());
        }
        self.check_owned(f.slot)?;
        let parked = self.state.parked_slots();
        let inserted = self
            .store
            .insert_handed_records(self.state.epoch(), f.slot, &f.records, f.late, parked)
            .await?;
        self.handed_in(&f.from_agent_id, &inserted, f.late);
        if f.done {
            self.finish_slots(&f.from_agent_id, vec![f.slot]).await?;
        }
        Ok(pb::HandoffFrameAck {
            stored: inserted.stored,
            duplicates: inserted.duplicates,
        })
    }

    fn handed_in(&self, from: &str, inserted: &crate::store::Inserted, late: bool) {
        crate::metrics::get()
            .handed_in
            .add(u64::from(inserted.stored));
        for (ep, _) in &inserted.endpoints {
            self.dispatcher.wake(ep);
        }
        if inserted.stored > 0 {
            tracing::info!(
                from,
                stored = inserted.stored,
                late,
                "deliveries handed over"
            );
        }
    }

    /// `from` has handed over everything of `slots`: once no earlier owner
    /// of a slot is left, its parked work joins the queues in the slot's
    /// order; the control plane hears which handoffs completed.
    async fn finish_slots(&self, from: &str, slots: Vec<u32>) -> Result<(), Status> {
        let mut finished = Vec::new();
        for slot in slots {
            if !self.state.owns(slot) {
                continue;
            }
            if self.state.finish_handoff(slot, from) {
                for ep in self.store.unpark(slot).await? {
                    self.dispatcher.wake(&ep);
                }
            }
            finished.push(slot);
        }
        if !finished.is_empty() {
            let _ = self
                .outbox
                .send(pb::AgentMessage {
                    kind: Some(pb::agent_message::Kind::HandoffComplete(
                        pb::HandoffComplete {
                            slots: finished,
                            from_agent_id: from.to_string(),
                        },
                    )),
                })
                .await;
        }
        Ok(())
    }
}

/// A call may carry the shares of several publishes (the control plane
/// merges them): the enqueue span continues the first one's trace and
/// links each other publish, whose context its deliveries carry.
fn link_other_publishes(span: &tracing::Span, parent: &str, deliveries: &[pb::Delivery]) {
    use herald_shared::telemetry::{link, trace_id_of};
    let mut seen = std::collections::HashSet::from([trace_id_of(parent)]);
    for d in deliveries {
        let id = trace_id_of(&d.traceparent);
        if !id.is_empty() && seen.insert(id) {
            link(span, &d.traceparent, &d.tracestate);
        }
    }
}

impl Ingest {
    async fn ingest_inner(
        &self,
        r: pb::IngestRequest,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        // From the ownership check until the commit (see `ingest_barrier`).
        let _gate = self.state.ingest_guard().await;
        for (i, d) in r.deliveries.iter().enumerate() {
            if d.endpoint_id.is_empty() {
                return Err(
                    invalid(format!("deliveries[{i}].endpoint_id"), "must not be empty").into(),
                );
            }
            if d.event_id.is_empty() {
                return Err(
                    invalid(format!("deliveries[{i}].event_id"), "must not be empty").into(),
                );
            }
            if !d.delivery_id.is_empty() && !crate::store::is_delivery_id(&d.delivery_id) {
                return Err(invalid(
                    format!("deliveries[{i}].delivery_id"),
                    "must be empty or dlv_ and 24 lowercase hex digits",
                )
                .into());
            }
            if d.slot != slot_for(&d.endpoint_id, SLOT_COUNT) {
                return Err(invalid(
                    format!("deliveries[{i}].slot"),
                    "does not match the endpoint id",
                )
                .into());
            }
            self.state.check_owner(r.epoch, d.slot)?;
        }
        let parked = self.state.parked_slots();
        let inserted = self
            .store
            .insert_parking(r.epoch, r.deliveries, parked)
            .await?;
        let m = crate::metrics::get();
        m.ingested.add(u64::from(inserted.stored));
        m.ingest_duplicates.add(u64::from(inserted.duplicates));
        for (ep, _) in &inserted.endpoints {
            self.dispatcher.wake(ep);
        }
        Ok(Response::new(pb::IngestResponse {
            stored: inserted.stored,
            duplicates: inserted.duplicates,
        }))
    }
}
