//! Wire types (`herald.v1`) ⇄ the store's records. The only place in the
//! store that knows the protobuf messages.

use herald_proto::v1 as pb;

use super::index::{Entry, Index};
use super::record::*;

/// A delivery from Ingest or a handoff, as stored.
pub fn delivery_rec(d: pb::Delivery) -> DeliveryRec {
    let (has_resource, has_actor) = (d.resource.is_some(), d.actor.is_some());
    let (resource_type, resource_id) = d.resource.map(|r| (r.r#type, r.id)).unwrap_or_default();
    let (actor_type, actor_id, actor_name) = d
        .actor
        .map(|a| (a.r#type, a.id, a.name))
        .unwrap_or_default();
    DeliveryRec {
        delivery_id: d.delivery_id,
        endpoint_id: d.endpoint_id,
        tenant_id: d.tenant_id,
        slot: d.slot,
        event_id: d.event_id,
        event_type: d.event_type,
        payload_json: d.payload_json,
        has_resource,
        resource_type,
        resource_id,
        has_actor,
        actor_type,
        actor_id,
        actor_name,
        occurred_at_ms: d.occurred_at_ms,
        published_at_ms: d.published_at_ms,
        resend_of: d.resend_of,
        test: d.test,
        late_backlog: d.late_backlog,
        traceparent: d.traceparent,
        tracestate: d.tracestate,
    }
}

/// A stored delivery as the wire (and the HTTP code) knows it.
pub fn delivery(r: DeliveryRec) -> pb::Delivery {
    let resource = r.has_resource.then_some(pb::Resource {
        r#type: r.resource_type,
        id: r.resource_id,
    });
    let actor = r.has_actor.then_some(pb::Actor {
        r#type: r.actor_type,
        id: r.actor_id,
        name: r.actor_name,
    });
    pb::Delivery {
        endpoint_id: r.endpoint_id,
        slot: r.slot,
        event_id: r.event_id,
        event_type: r.event_type,
        tenant_id: r.tenant_id,
        payload_json: r.payload_json,
        resource,
        actor,
        occurred_at_ms: r.occurred_at_ms,
        published_at_ms: r.published_at_ms,
        delivery_id: r.delivery_id,
        resend_of: r.resend_of,
        test: r.test,
        late_backlog: r.late_backlog,
        traceparent: r.traceparent,
        tracestate: r.tracestate,
    }
}

fn sorted_pairs(m: std::collections::HashMap<String, String>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = m.into_iter().collect();
    v.sort();
    v
}

/// An attempt from the HTTP code, as stored.
pub fn attempt_log(a: pb::Attempt) -> AttemptLog {
    AttemptLog {
        number: a.number,
        started_at_ms: a.started_at_ms,
        duration_ms: a.duration_ms,
        method: a.method,
        url: a.url,
        request_headers: sorted_pairs(a.request_headers),
        response_status: a.response_status,
        response_headers: sorted_pairs(a.response_headers),
        response_body: a.response_body,
        response_body_truncated: a.response_body_truncated,
        error_kind: u8::try_from(a.error_kind).unwrap_or(0),
        error: a.error,
    }
}

/// A stored attempt as the API shows it.
pub fn attempt(a: AttemptLog) -> pb::Attempt {
    pb::Attempt {
        number: a.number,
        started_at_ms: a.started_at_ms,
        duration_ms: a.duration_ms,
        method: a.method,
        url: a.url,
        request_headers: a.request_headers.into_iter().collect(),
        response_status: a.response_status,
        response_headers: a.response_headers.into_iter().collect(),
        response_body: a.response_body,
        response_body_truncated: a.response_body_truncated,
        error_kind: i32::from(a.error_kind),
        error: a.error,
    }
}

/// The wire status of a stored one.
pub fn status(s: Status) -> pb::DeliveryStatus {
    match s {
        Status::Pending => pb::DeliveryStatus::Pending,
        Status::Retrying => pb::DeliveryStatus::Retrying,
        Status::Succeeded => pb::DeliveryStatus::Succeeded,
        Status::Failed => pb::DeliveryStatus::Failed,
    }
}

/// The state a handed delivery arrives with.
pub fn handed_state(item: &pb::HandedDelivery) -> DeliveryState {
    let status = match pb::DeliveryStatus::try_from(item.status) {
        Ok(pb::DeliveryStatus::Retrying) => Status::Retrying,
        _ => Status::Pending,
    };
    DeliveryState {
        status,
        attempts: item.attempts,
        next_attempt_at_ms: item.next_attempt_at_ms,
        finished_at_ms: 0,
        last_status_code: item.last_status_code,
        position: 0,
    }
}

/// The list row of a delivery.
pub fn summary(ix: &Index, e: &Entry, d: &DeliveryRec) -> pb::DeliverySummary {
    pb::DeliverySummary {
        delivery_id: e.id.to_string(),
        tenant_id: ix.syms.name(e.tenant).to_string(),
        endpoint_id: ix.syms.name(e.endpoint).to_string(),
        event_id: d.event_id.clone(),
        event_type: ix.syms.name(e.event_type).to_string(),
        resource: d.has_resource.then(|| pb::Resource {
            r#type: d.resource_type.clone(),
            id: d.resource_id.clone(),
        }),
        status: status(e.state.status) as i32,
        attempts: e.state.attempts,
        created_at_ms: e.created_ms,
        next_attempt_at_ms: e.state.next_attempt_at_ms,
        finished_at_ms: e.state.finished_at_ms,
        last_status_code: e.state.last_status_code,
        resend_of: d.resend_of.clone(),
        test: d.test,
        late_backlog: e.late,
    }
}

/// The counters as the API shows them.
pub fn stats(endpoint_id: &str, c: &Counters, queue_depth: u64) -> pb::EndpointStats {
    let brief = |b: &Option<AttemptBrief>| {
        b.as_ref().map(|b| pb::AttemptSummary {
            delivery_id: b.delivery.map(|id| id.to_string()).unwrap_or_default(),
            at_ms: b.at_ms,
            status_code: b.status_code,
            error_kind: i32::from(b.error_kind),
            error: b.error.clone(),
            response_body: b.response_body.clone(),
            duration_ms: b.duration_ms,
        })
    };
    pb::EndpointStats {
        endpoint_id: endpoint_id.to_string(),
        events: c.events,
        attempts: c.attempts,
        successes: c.successes,
        failures: c.failures,
        // Every attempt either got a 2xx (a success) or did not.
        failed_attempts: c.attempts.saturating_sub(c.successes),
        failures_since_last_success: c.failures_since_last_success,
        deliveries_failed_in_a_row: c.deliveries_failed_in_a_row,
        last_event_at_ms: c.last_event_at_ms,
        next_attempt_at_ms: 0,
        last_success: brief(&c.last_success),
        last_failure: brief(&c.last_failure),
        queue_depth,
    }
}
