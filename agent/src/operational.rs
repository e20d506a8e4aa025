//! The operational events an agent reports (see
//! `herald_shared::operational`): built here from what the agent saw, sent
//! to the control plane on the control stream, published there.

use herald_proto::v1 as pb;
use herald_shared::operational::{self as op, EndpointRef, Exhausted, Failing, Failure};

use crate::store::Queued;

/// Who an event is about.
pub fn endpoint_ref(ep: &pb::DeliveryEndpoint) -> EndpointRef {
    EndpointRef {
        tenant_id: ep.tenant_id.clone(),
        id: ep.id.clone(),
        name: ep.name.clone(),
        url: ep.url.clone(),
    }
}

/// A failed attempt of `delivery_id`, in short; `error` is the agent's
/// account of it.
pub fn failure(delivery_id: &str, a: &pb::Attempt, error: &str) -> Failure {
    Failure {
        delivery_id: delivery_id.to_string(),
        at_ms: a.started_at_ms,
        status_code: a.response_status,
        error: error.to_string(),
    }
}

/// The failure as the disable request carries it.
pub fn summary(f: &Failure) -> pb::AttemptSummary {
    pb::AttemptSummary {
        delivery_id: f.delivery_id.clone(),
        at_ms: f.at_ms,
        status_code: f.status_code,
        error: f.error.clone(),
        ..Default::default()
    }
}

/// `herald.delivery.exhausted` for a delivery that failed for good; none
/// for a delivery of an operational event, so that an endpoint receiving
/// them cannot feed itself a stream of events about its own failures.
pub fn exhausted(
    ep: &pb::DeliveryEndpoint,
    q: &Queued,
    attempts: u32,
    a: &pb::Attempt,
    error: &str,
) -> Option<pb::AgentMessage> {
    if op::is_operational(&q.delivery.event_type) {
        return None;
    }
    let e = Exhausted {
        event_id: q.delivery.event_id.clone(),
        event_type: q.delivery.event_type.clone(),
        attempts,
        last: failure(&q.delivery.delivery_id, a, error),
    };
    Some(message(
        ep,
        op::DELIVERY_EXHAUSTED,
        op::exhausted(&endpoint_ref(ep), &e),
        format!("exhausted:{}", q.delivery.delivery_id),
    ))
}

/// `herald.endpoint.failing` for a crossing of the threshold.
pub fn failing(ep: &pb::DeliveryEndpoint, f: &Failing) -> pb::AgentMessage {
    message(
        ep,
        op::ENDPOINT_FAILING,
        op::failing(&endpoint_ref(ep), f),
        format!("failing:{}:{}", ep.id, f.at_ms),
    )
}

/// `herald.endpoint.recovered` when a failing endpoint succeeds again.
pub fn recovered(ep: &pb::DeliveryEndpoint, f: &Failing) -> pb::AgentMessage {
    message(
        ep,
        op::ENDPOINT_RECOVERED,
        op::recovered(&endpoint_ref(ep), f),
        format!("recovered:{}:{}", ep.id, f.at_ms),
    )
}

fn message(
    ep: &pb::DeliveryEndpoint,
    event_type: &str,
    payload: serde_json::Value,
    key: String,
) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::OperationalEvent(
            pb::OperationalEvent {
                tenant_id: ep.tenant_id.clone(),
                endpoint_id: ep.id.clone(),
                event_type: event_type.to_string(),
                payload_json: payload.to_string(),
                idempotency_key: key,
            },
        )),
    }
}
