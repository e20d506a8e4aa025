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

impl Api {
    /// Checks a publish and builds one delivery per matching endpoint.
    /// Herald's own event types are refused unless `own` (Herald publishes
    /// them itself).
    fn plan_publish(
        &self,
        r: pb::PublishRequest,
        own: bool,
    ) -> Result<(String, Vec<pb::Delivery>)> {
        let checked = validate::publish(&r, self.config().max_payload_bytes)?;
        if !own && herald_shared::operational::is_operational(&r.event_type) {
            return Err(Error::invalid(
                "event_type",
                format!(
                    "'{}': the herald. types are Herald's own events, published by Herald only",
                    r.event_type
                ),
            ));
        }
        let (payload, previous) = (checked.payload, checked.previous);
        let change = herald_shared::filter::Change {
            previous: previous.as_ref(),
            changed_fields: &r.changed_fields,
        };
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
                        && e.rules.admit(&r.event_type, &payload, change)
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

use crate::validate::limits::MAX_BATCH;

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
            match matching.in_scope(|| self.plan_publish(r, false)) {
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
            tracing::info_span!("herald.match").in_scope(|| self.plan_publish(r, false))?;
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

    /// Publishes one of Herald's own events; the endpoints matched.
    pub(crate) async fn publish_internal(&self, r: pb::PublishRequest) -> Result<u32> {
        let (_, mut deliveries) = self.plan_publish(r, true)?;
        let matched = deliveries.len() as u32;
        if !deliveries.is_empty() {
            stamp_trace(&mut deliveries);
            self.route(deliveries).await?;
        }
        Ok(matched)
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
