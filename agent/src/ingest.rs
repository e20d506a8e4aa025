//! AgentIngest: the control plane hands deliveries over; we check that we
//! own their slots at the sender's epoch, store them durably, then wake the
//! endpoints' workers.

use herald_proto::v1 as pb;
use herald_proto::v1::agent_ingest_server::AgentIngest;
use herald_shared::slot::{SLOT_COUNT, slot_for};
use tonic::{Request, Response, Status};

use crate::dispatcher::Dispatcher;
use crate::error::Error;
use crate::state::AgentState;
use crate::store::Store;

/// The ingest service.
pub struct Ingest {
    /// Durable queues.
    pub store: Store,
    /// Assignment, for fencing.
    pub state: AgentState,
    /// Wakes workers.
    pub dispatcher: Dispatcher,
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
        let r = req.into_inner();
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
            if d.slot != slot_for(&d.endpoint_id, SLOT_COUNT) {
                return Err(invalid(
                    format!("deliveries[{i}].slot"),
                    "does not match the endpoint id",
                )
                .into());
            }
            self.state.check_owner(r.epoch, d.slot)?;
        }
        let inserted = self.store.insert(r.deliveries).await?;
        for (ep, _) in &inserted.endpoints {
            self.dispatcher.wake(ep);
        }
        Ok(Response::new(pb::IngestResponse {
            stored: inserted.stored,
            duplicates: inserted.duplicates,
        }))
    }
}
