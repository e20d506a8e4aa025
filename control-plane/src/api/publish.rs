//! PublishService: validate, match subscriptions, hand to the owning agents.

use herald_proto::v1 as pb;
use herald_proto::v1::publish_service_server::PublishService;
use herald_shared::ids::{event_id_for_key, random_event_id};
use herald_shared::telemetry;
use herald_shared::time::now_ms;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use super::Api;
use crate::error::{Error, Result};
use crate::validate;

/// Longest idempotency key accepted.
const MAX_IDEMPOTENCY_KEY: usize = 256;

impl Api {
    /// Checks a publish and builds one delivery per matching endpoint.
    fn plan_publish(&self, r: pb::PublishRequest) -> Result<(String, Vec<pb::Delivery>)> {
        validate::name("tenant_id", &r.tenant_id)?;
        if r.event_type.is_empty() {
            return Err(Error::invalid("event_type", "must not be empty"));
        }
        validate::name("event_type", &r.event_type)?;
        let payload = check_payload(&r.payload_json, self.config().max_payload_bytes)?;
        let previous = if r.previous_payload_json.is_empty() {
            None
        } else {
            let v: serde_json::Value =
                serde_json::from_str(&r.previous_payload_json).map_err(|e| {
                    Error::invalid("previous_payload_json", format!("is not valid JSON: {e}"))
                })?;
            if !v.is_object() {
                return Err(Error::invalid(
                    "previous_payload_json",
                    "must be a JSON object",
                ));
            }
            Some(v)
        };
        for (i, f) in r.changed_fields.iter().enumerate() {
            herald_shared::filter::Path::parse(f)
                .map_err(|e| Error::invalid(format!("changed_fields[{i}]"), e.to_string()))?;
        }
        if r.skip_key.len() > 128 {
            return Err(Error::invalid("skip_key", "must be at most 128 bytes"));
        }
        let change = herald_shared::filter::Change {
            previous: previous.as_ref(),
            changed_fields: &r.changed_fields,
        };
        if r.idempotency_key.len() > MAX_IDEMPOTENCY_KEY {
            return Err(Error::invalid(
                "idempotency_key",
                format!("must be at most {MAX_IDEMPOTENCY_KEY} bytes"),
            ));
        }
        if let Some(res) = &r.resource {
            if res.r#type.is_empty() {
                return Err(Error::invalid(
                    "resource.type",
                    "must not be empty when resource is set",
                ));
            }
            if res.id.is_empty() {
                return Err(Error::invalid(
                    "resource.id",
                    "must not be empty when resource is set",
                ));
            }
            validate::text("resource.id", &res.id)?;
        }
        if let Some(a) = &r.actor
            && a.id.is_empty()
        {
            return Err(Error::invalid(
                "actor.id",
                "must not be empty when actor is set",
            ));
        }
        if r.occurred_at_ms < 0 {
            return Err(Error::invalid("occurred_at_ms", "must not be negative"));
        }

        let event_id = if r.idempotency_key.is_empty() {
            random_event_id()
        } else {
            event_id_for_key(&r.tenant_id, &r.idempotency_key)
        };
        let published_at_ms = now_ms();
        let targets = self.view().read(|v| -> Result<_> {
            if !v.tenants.contains_key(&r.tenant_id) {
                return Err(Error::NotFound(format!(
                    "tenant '{}' not found",
                    r.tenant_id
                )));
            }
            match v.event_types.get(&r.event_type) {
                None => {
                    return Err(Error::invalid(
                        "event_type",
                        format!("unknown event type '{}'", r.event_type),
                    ));
                }
                Some(t) if t.archived => {
                    return Err(Error::invalid(
                        "event_type",
                        format!("event type '{}' is archived", r.event_type),
                    ));
                }
                Some(_) => {}
            }
            Ok(v.subscribers(&r.tenant_id, &r.event_type)
                .into_iter()
                .filter(|e| {
                    e.record.accepts_events()
                        && (r.skip_key.is_empty() || !e.record.skip_keys.contains(&r.skip_key))
                        && e.rules.admit(&payload, change)
                })
                .map(|e| {
                    // load_only: this endpoint gets only the listed fields.
                    let body = if e.rules.load_only.is_empty() {
                        None
                    } else {
                        Some(
                            herald_shared::filter::project(&payload, &e.rules.load_only)
                                .to_string(),
                        )
                    };
                    (e.record.id.clone(), e.slot, body)
                })
                .collect::<Vec<_>>())
        })?;
        let deliveries = targets
            .into_iter()
            .map(|(endpoint_id, slot, body)| pb::Delivery {
                endpoint_id,
                slot,
                event_id: event_id.clone(),
                event_type: r.event_type.clone(),
                tenant_id: r.tenant_id.clone(),
                payload_json: body.unwrap_or_else(|| r.payload_json.clone()),
                resource: r.resource.clone(),
                actor: r.actor.clone(),
                occurred_at_ms: if r.occurred_at_ms == 0 {
                    published_at_ms
                } else {
                    r.occurred_at_ms
                },
                published_at_ms,
                // The agent derives it from (endpoint, event id).
                delivery_id: String::new(),
                resend_of: String::new(),
                test: false,
                late_backlog: false,
                // Set once the publish span is known (`stamp_trace`).
                traceparent: String::new(),
                tracestate: String::new(),
            })
            .collect();
        Ok((event_id, deliveries))
    }
}

/// The payload must be a JSON object no larger than `limit` bytes; returns it parsed.
fn check_payload(payload: &str, limit: usize) -> Result<serde_json::Value> {
    if payload.is_empty() {
        return Err(Error::invalid(
            "payload_json",
            "must not be empty (send {} for no data)",
        ));
    }
    if payload.len() > limit {
        return Err(Error::invalid(
            "payload_json",
            format!("is {} bytes, over the limit of {limit}", payload.len()),
        ));
    }
    let v: serde_json::Value = serde_json::from_str(payload)
        .map_err(|e| Error::invalid("payload_json", format!("is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(Error::invalid("payload_json", "must be a JSON object"));
    }
    Ok(v)
}

/// Most events in one PublishBatch.
const MAX_BATCH: usize = 100;

impl Api {
    /// Plans every event, routes all the valid ones in one go, and answers
    /// per event.
    async fn publish_batch_inner(
        &self,
        events: Vec<pb::PublishRequest>,
    ) -> Result<Vec<pb::PublishResult>> {
        if events.is_empty() {
            return Err(Error::invalid("events", "must not be empty"));
        }
        if events.len() > MAX_BATCH {
            return Err(Error::invalid(
                "events",
                format!("{} events, over the limit of {MAX_BATCH}", events.len()),
            ));
        }
        let mut results = Vec::with_capacity(events.len());
        let mut all = Vec::new();
        let mut planned = Vec::new();
        let matching = tracing::info_span!("herald.match", events = events.len());
        for (i, r) in events.into_iter().enumerate() {
            match matching.in_scope(|| self.plan_publish(r)) {
                Ok((event_id, deliveries)) => {
                    results.push(pb::PublishResult {
                        event_id,
                        endpoints_matched: deliveries.len() as u32,
                        code: "OK".into(),
                        message: String::new(),
                    });
                    all.extend(deliveries);
                    planned.push(i);
                }
                Err(e) => results.push(pb::PublishResult {
                    code: crate::metrics::code_name(e.code()).to_string(),
                    // Name the event: `events[3].payload_json: ...`.
                    message: format!("events[{i}].{e}"),
                    ..Default::default()
                }),
            }
        }
        stamp_trace(&mut all);
        if !all.is_empty()
            && let Err(e) = self.route(all).await
        {
            for i in planned {
                results[i] = pb::PublishResult {
                    code: crate::metrics::code_name(e.code()).to_string(),
                    message: e.to_string(),
                    ..Default::default()
                };
            }
        }
        Ok(results)
    }

    /// Plans and routes one publish; the event id and the endpoints matched.
    async fn publish_inner(&self, r: pb::PublishRequest) -> Result<(String, u32)> {
        let (event_id, mut deliveries) =
            tracing::info_span!("herald.match").in_scope(|| self.plan_publish(r))?;
        let span = tracing::Span::current();
        span.record("herald.event_id", event_id.as_str());
        span.record("herald.endpoints_matched", deliveries.len());
        let matched = deliveries.len() as u32;
        if !deliveries.is_empty() {
            stamp_trace(&mut deliveries);
            self.route(deliveries).await?;
        }
        Ok((event_id, matched))
    }

    /// Hands deliveries to their agents, in a span of its own.
    async fn route(&self, deliveries: Vec<pb::Delivery>) -> Result<()> {
        let span = tracing::info_span!("herald.route", deliveries = deliveries.len());
        self.inner.router.deliver(deliveries).instrument(span).await
    }
}

/// Stores the current (publish) span's trace context in each delivery, so
/// its attempts join the publish's trace whenever they happen.
fn stamp_trace(deliveries: &mut [pb::Delivery]) {
    let (traceparent, tracestate) = telemetry::context_of(&tracing::Span::current());
    if traceparent.is_empty() {
        return;
    }
    for d in deliveries {
        d.traceparent.clone_from(&traceparent);
        d.tracestate.clone_from(&tracestate);
    }
}

/// The server span of a PublishService call, continuing the caller's trace
/// from its `traceparent` metadata.
fn server_span<T>(req: &Request<T>, method: &'static str) -> tracing::Span {
    let span = tracing::info_span!(
        "publish",
        otel.name = method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = "herald.v1.PublishService",
        rpc.method = method.rsplit('/').next().unwrap_or(method),
        herald.event_id = tracing::field::Empty,
        herald.endpoints_matched = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let get = |k: &str| {
        req.metadata()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    telemetry::continue_trace(&span, get("traceparent"), get("tracestate"));
    span
}

#[tonic::async_trait]
impl PublishService for Api {
    async fn publish_batch(
        &self,
        req: Request<pb::PublishBatchRequest>,
    ) -> Result<Response<pb::PublishBatchResponse>, Status> {
        let span = server_span(&req, "herald.v1.PublishService/PublishBatch");
        let results = self
            .publish_batch_inner(req.into_inner().events)
            .instrument(span)
            .await?;
        for r in &results {
            crate::metrics::publish_done_named(&r.code);
            crate::metrics::get()
                .publish_deliveries
                .add(u64::from(r.endpoints_matched));
        }
        Ok(Response::new(pb::PublishBatchResponse { results }))
    }

    async fn publish(
        &self,
        req: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let started = std::time::Instant::now();
        let span = server_span(&req, "herald.v1.PublishService/Publish");
        let result = self
            .publish_inner(req.into_inner())
            .instrument(span.clone())
            .await;
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        let m = crate::metrics::get();
        m.publish_seconds.observe(started.elapsed().as_secs_f64());
        crate::metrics::publish_done(match &result {
            Ok(_) => tonic::Code::Ok,
            Err(e) => e.code(),
        });
        let (event_id, matched) = result?;
        m.publish_deliveries.add(u64::from(matched));
        tracing::debug!(%event_id, matched, "published");
        Ok(Response::new(pb::PublishResponse {
            event_id,
            endpoints_matched: matched,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_checks() {
        assert!(check_payload(r#"{"a":1}"#, 100).is_ok());
        for bad in ["", "[1]", "{", "3"] {
            let e = check_payload(bad, 100).unwrap_err();
            assert!(e.to_string().starts_with("payload_json: "), "{e}");
        }
        let e = check_payload(&format!(r#"{{"a":"{}"}}"#, "x".repeat(200)), 100).unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
    }
}
