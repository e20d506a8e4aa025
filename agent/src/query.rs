//! AgentQuery: the control plane reads the delivery log and the endpoint
//! counters this agent holds. Reads run on the blocking pool, off the
//! delivery path.

use herald_proto::v1 as pb;
use herald_proto::v1::agent_query_server::AgentQuery;
use tonic::{Request, Response, Status};

use crate::error::Error;
use crate::store::Store;

/// Most deliveries one list call returns.
const MAX_LIMIT: usize = 1000;

/// The query service.
pub struct Query {
    /// The log lives here.
    pub store: Store,
    /// This agent's id.
    pub agent_id: String,
    /// For the epoch.
    pub state: crate::state::AgentState,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("query task failed: {e}")))?
        .map_err(Status::from)
}

fn required(field: &str, v: &str) -> Result<(), Status> {
    if v.is_empty() {
        return Err(Error::InvalidArgument {
            field: field.to_string(),
            reason: "must not be empty".into(),
        }
        .into());
    }
    Ok(())
}

#[tonic::async_trait]
impl AgentQuery for Query {
    async fn list_deliveries(
        &self,
        req: Request<pb::AgentListDeliveriesRequest>,
    ) -> Result<Response<pb::AgentListDeliveriesResponse>, Status> {
        let r = req.into_inner();
        let filter = r.filter.unwrap_or_default();
        required("filter.tenant_id", &filter.tenant_id)?;
        let limit = (r.limit as usize).clamp(1, MAX_LIMIT);
        let store = self.store.clone();
        let page = blocking(move || store.list(&filter, r.before.as_ref(), limit)).await?;
        Ok(Response::new(pb::AgentListDeliveriesResponse {
            deliveries: page.deliveries,
            scanned_to: page.scanned_to,
        }))
    }

    async fn get_delivery(
        &self,
        req: Request<pb::GetDeliveryRequest>,
    ) -> Result<Response<pb::DeliveryDetail>, Status> {
        let r = req.into_inner();
        required("tenant_id", &r.tenant_id)?;
        required("delivery_id", &r.delivery_id)?;
        let store = self.store.clone();
        let id = r.delivery_id.clone();
        match blocking(move || store.get(&r.tenant_id, &id)).await? {
            Some(d) => Ok(Response::new(d)),
            None => Err(Status::not_found(format!(
                "delivery '{}' is not held by this agent",
                r.delivery_id
            ))),
        }
    }

    async fn get_agent_status(
        &self,
        _req: Request<pb::AgentStatusRequest>,
    ) -> Result<Response<pb::AgentStatus>, Status> {
        let store = self.store.clone();
        let queue_depth = blocking(move || store.queue_len()).await?;
        Ok(Response::new(pb::AgentStatus {
            agent_id: self.agent_id.clone(),
            epoch: self.state.epoch(),
            queue_depth,
        }))
    }

    async fn get_endpoint_stats(
        &self,
        req: Request<pb::GetEndpointStatsRequest>,
    ) -> Result<Response<pb::EndpointStats>, Status> {
        let r = req.into_inner();
        required("endpoint_id", &r.endpoint_id)?;
        let store = self.store.clone();
        Ok(Response::new(
            blocking(move || store.stats(&r.endpoint_id)).await?,
        ))
    }
}
