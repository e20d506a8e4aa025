//! PublishService: validate, match subscriptions, hand to the owning agents.

use herald_proto::v1 as pb;
use herald_proto::v1::publish_service_server::PublishService;
use herald_shared::ids::{event_id_for_key, random_event_id};
use herald_shared::time::now_ms;
use tonic::{Request, Response, Status};

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
        check_payload(&r.payload_json, self.config().max_payload_bytes)?;
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
            Ok(v.endpoints
                .get(&r.tenant_id)
                .map(|eps| {
                    eps.values()
                        .filter(|e| {
                            e.record.accepts_events() && e.record.subscribes_to(&r.event_type)
                        })
                        .map(|e| (e.record.id.clone(), e.slot))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default())
        })?;
        let deliveries = targets
            .into_iter()
            .map(|(endpoint_id, slot)| pb::Delivery {
                endpoint_id,
                slot,
                event_id: event_id.clone(),
                event_type: r.event_type.clone(),
                tenant_id: r.tenant_id.clone(),
                payload_json: r.payload_json.clone(),
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
            })
            .collect();
        Ok((event_id, deliveries))
    }
}

/// The payload must be a JSON object no larger than `limit` bytes.
fn check_payload(payload: &str, limit: usize) -> Result<()> {
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
    Ok(())
}

#[tonic::async_trait]
impl PublishService for Api {
    async fn publish(
        &self,
        req: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let (event_id, deliveries) = self.plan_publish(req.into_inner())?;
        let matched = deliveries.len() as u32;
        if !deliveries.is_empty() {
            self.inner.router.deliver(deliveries).await?;
        }
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
