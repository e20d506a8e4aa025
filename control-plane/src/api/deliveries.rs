//! DeliveryService: the delivery log (read from the agents), resends,
//! recovery, test events and endpoint statistics.

use std::sync::Arc;

use herald_proto::v1 as pb;
use herald_proto::v1::delivery_service_server::DeliveryService;
use herald_shared::ids::{random_delivery_id, random_event_id};

use herald_shared::time::now_ms;
use tonic::{Request, Response, Status};

use super::Api;
use crate::error::{Error, Result};
use crate::validate;
use crate::validate::limits::{MAX_LIST_FILTERS, MAX_PAGE_TOKEN};
use crate::view::EndpointEntry;

/// Page size when the caller sets none.
const DEFAULT_PAGE: u32 = 50;
/// Largest page.
const MAX_PAGE: u32 = 500;
/// Event type of the built-in test event.
pub const PING_TYPE: &str = "herald.ping";
/// Most endpoints a lookup by event id asks about (one call each).
const MAX_EVENT_LOOKUPS: usize = 1000;
/// Deliveries re-queued per routing call while recovering.
const RECOVER_BATCH: usize = 100;

/// The page token of a cursor: opaque to callers.
fn page_token(c: &pb::DeliveryCursor) -> String {
    format!("v1:{}:{}", c.created_at_ms, c.delivery_id)
}

fn parse_page_token(t: &str) -> Result<Option<pb::DeliveryCursor>> {
    if t.is_empty() {
        return Ok(None);
    }
    let bad = || Error::invalid("page_token", "is not a token this API returned");
    if t.len() > MAX_PAGE_TOKEN {
        return Err(bad());
    }
    let mut parts = t.splitn(3, ':');
    let (Some("v1"), Some(ms), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let created_at_ms = ms.parse().map_err(|_| bad())?;
    if herald_shared::ids::validate_name(id).is_err() {
        return Err(bad());
    }
    Ok(Some(pb::DeliveryCursor {
        created_at_ms,
        delivery_id: id.to_string(),
    }))
}

/// Checks a list request; returns its page size and cursor.
fn check_list(r: &pb::ListDeliveriesRequest) -> Result<(usize, Option<pb::DeliveryCursor>)> {
    validate::count("statuses", r.statuses.len(), MAX_LIST_FILTERS)?;
    validate::count("event_types", r.event_types.len(), MAX_LIST_FILTERS)?;
    for (i, s) in r.statuses.iter().enumerate() {
        match pb::DeliveryStatus::try_from(*s) {
            Ok(pb::DeliveryStatus::Unspecified) | Err(_) => {
                return Err(Error::invalid(
                    format!("statuses[{i}]"),
                    format!("{s} is not a delivery status (PENDING, RETRYING, SUCCEEDED, FAILED)"),
                ));
            }
            Ok(_) => {}
        }
    }
    for (i, p) in r.event_types.iter().enumerate() {
        validate::pattern(&format!("event_types[{i}]"), p)?;
    }
    validate::text("resource_id", &r.resource_id)?;
    if r.since_ms < 0 {
        return Err(Error::invalid("since_ms", "must not be negative"));
    }
    if r.until_ms < 0 {
        return Err(Error::invalid("until_ms", "must not be negative"));
    }
    if r.since_ms > 0 && r.until_ms > 0 && r.since_ms >= r.until_ms {
        return Err(Error::invalid("until_ms", "must be after since_ms"));
    }
    let size = match r.page_size {
        0 => DEFAULT_PAGE,
        n if n <= MAX_PAGE => n,
        n => {
            return Err(Error::invalid(
                "page_size",
                format!("{n} is over {MAX_PAGE}"),
            ));
        }
    };
    Ok((size as usize, parse_page_token(&r.page_token)?))
}

impl Api {
    /// The tenant must exist; so must the endpoint, when one is named.
    fn check_scope(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
    ) -> Result<Option<Arc<EndpointEntry>>> {
        validate::name("tenant_id", tenant_id)?;
        if !endpoint_id.is_empty() {
            validate::name("endpoint_id", endpoint_id)?;
        }
        self.view().read(|v| {
            if !v.tenants.contains_key(tenant_id) {
                return Err(Error::NotFound(format!("tenant '{tenant_id}' not found")));
            }
            if endpoint_id.is_empty() {
                return Ok(None);
            }
            v.endpoints
                .get(tenant_id)
                .and_then(|eps| eps.get(endpoint_id))
                .cloned()
                .map(Some)
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "endpoint '{endpoint_id}' of tenant '{tenant_id}' not found"
                    ))
                })
        })
    }

    /// The deliveries of one event, found by id: a delivery's id derives
    /// from (endpoint, event), so each endpoint in scope is one lookup, not
    /// a scan of the log.
    async fn deliveries_of_event(
        &self,
        r: &pb::ListDeliveriesRequest,
        scoped: Option<Arc<EndpointEntry>>,
    ) -> Result<Vec<pb::DeliverySummary>> {
        let endpoints: Vec<String> = match scoped {
            Some(ep) => vec![ep.record.id.clone()],
            None => self.view().read(|v| {
                v.endpoints
                    .get(&r.tenant_id)
                    .map(|eps| eps.keys().cloned().collect())
                    .unwrap_or_default()
            }),
        };
        if endpoints.len() > MAX_EVENT_LOOKUPS {
            return Err(Error::invalid(
                "event_id",
                format!(
                    "the tenant has over {MAX_EVENT_LOOKUPS} endpoints: name the endpoint_id too"
                ),
            ));
        }
        let mut lookups = tokio::task::JoinSet::new();
        for ep in endpoints {
            let (api, tenant) = (self.clone(), r.tenant_id.clone());
            let id = herald_shared::ids::delivery_id_for(&ep, &r.event_id);
            lookups.spawn(async move { api.inner.log.get(&tenant, &id).await });
        }
        let mut out = Vec::new();
        while let Some(done) = lookups.join_next().await {
            match done.map_err(|e| Error::Unavailable(format!("lookup failed: {e}")))? {
                Ok(d) => out.extend(d.summary),
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| {
            (b.created_at_ms, &b.delivery_id).cmp(&(a.created_at_ms, &a.delivery_id))
        });
        Ok(out)
    }

    /// An endpoint that exists and takes deliveries now.
    fn deliverable_endpoint(
        &self,
        tenant_id: &str,
        endpoint_id: &str,
    ) -> Result<Arc<EndpointEntry>> {
        if endpoint_id.is_empty() {
            return Err(Error::invalid("endpoint_id", "must not be empty"));
        }
        let ep = self
            .check_scope(tenant_id, endpoint_id)?
            .ok_or_else(|| Error::invalid("endpoint_id", "must not be empty"))?;
        if !ep.record.accepts_events() {
            return Err(Error::FailedPrecondition(format!(
                "endpoint '{endpoint_id}' is disabled; enable it first"
            )));
        }
        Ok(ep)
    }

    /// A new delivery carrying `original`'s event, linked to it.
    fn resend_of(ep: &EndpointEntry, original: pb::DeliveryDetail, now: i64) -> pb::Delivery {
        let s = original.summary.unwrap_or_default();
        pb::Delivery {
            endpoint_id: ep.record.id.clone(),
            slot: ep.slot,
            // Same event id: a receiver that deduplicates treats it as the
            // same event, which is what makes a resend safe.
            event_id: s.event_id,
            event_type: s.event_type,
            tenant_id: s.tenant_id,
            payload_json: original.payload_json,
            resource: s.resource,
            actor: original.actor,
            occurred_at_ms: original.occurred_at_ms,
            published_at_ms: now,
            delivery_id: random_delivery_id(),
            resend_of: s.delivery_id,
            test: s.test,
            late_backlog: false,
            // A resend or test starts a trace of its own.
            traceparent: String::new(),
            tracestate: String::new(),
        }
    }
}

#[tonic::async_trait]
impl DeliveryService for Api {
    async fn list_deliveries(
        &self,
        req: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let mut r = req.into_inner();
        let scoped = self.check_scope(&r.tenant_id, &r.endpoint_id)?;
        let (size, cursor) = check_list(&r)?;
        if !r.event_id.is_empty() {
            validate::name("event_id", &r.event_id)?;
            let deliveries = self.deliveries_of_event(&r, scoped).await?;
            return Ok(Response::new(pb::ListDeliveriesResponse {
                deliveries,
                next_page_token: String::new(),
            }));
        }
        r.page_token.clear();
        let page = self.inner.log.list(r, cursor, size).await?;
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: page.deliveries,
            next_page_token: page.next.as_ref().map(page_token).unwrap_or_default(),
        }))
    }

    async fn get_delivery(
        &self,
        req: Request<pb::GetDeliveryRequest>,
    ) -> Result<Response<pb::DeliveryDetail>, Status> {
        let r = req.into_inner();
        self.check_scope(&r.tenant_id, "")?;
        validate::name("delivery_id", &r.delivery_id)?;
        Ok(Response::new(
            self.inner.log.get(&r.tenant_id, &r.delivery_id).await?,
        ))
    }

    async fn resend_delivery(
        &self,
        req: Request<pb::ResendDeliveryRequest>,
    ) -> Result<Response<pb::ResendDeliveryResponse>, Status> {
        let r = req.into_inner();
        self.check_scope(&r.tenant_id, "")?;
        validate::name("delivery_id", &r.delivery_id)?;
        let original = self.inner.log.get(&r.tenant_id, &r.delivery_id).await?;
        let endpoint_id = original
            .summary
            .as_ref()
            .map(|s| s.endpoint_id.clone())
            .unwrap_or_default();
        let ep = self.deliverable_endpoint(&r.tenant_id, &endpoint_id)?;
        let d = Self::resend_of(&ep, original, now_ms());
        let delivery_id = d.delivery_id.clone();
        self.inner.router.deliver(vec![d]).await?;
        tracing::info!(original = %r.delivery_id, %delivery_id, "delivery resent");
        Ok(Response::new(pb::ResendDeliveryResponse { delivery_id }))
    }

    async fn recover_deliveries(
        &self,
        req: Request<pb::RecoverDeliveriesRequest>,
    ) -> Result<Response<pb::RecoverDeliveriesResponse>, Status> {
        let r = req.into_inner();
        let ep = self.deliverable_endpoint(&r.tenant_id, &r.endpoint_id)?;
        if r.since_ms <= 0 {
            return Err(Error::invalid(
                "since_ms",
                "is required: recover failed deliveries since when?",
            )
            .into());
        }
        // Collect every failed delivery first (newest first), then queue
        // them again oldest first, so the endpoint gets them in their
        // original order.
        let filter = pb::ListDeliveriesRequest {
            tenant_id: r.tenant_id.clone(),
            endpoint_id: r.endpoint_id.clone(),
            statuses: vec![pb::DeliveryStatus::Failed as i32],
            since_ms: r.since_ms,
            ..Default::default()
        };
        let mut failed = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .inner
                .log
                .list(filter.clone(), cursor, MAX_PAGE as usize)
                .await?;
            failed.extend(page.deliveries.into_iter().map(|d| d.delivery_id));
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        failed.reverse();
        let mut resent = 0u32;
        for chunk in failed.chunks(RECOVER_BATCH) {
            let now = now_ms();
            let mut batch = Vec::with_capacity(chunk.len());
            for id in chunk {
                let original = self.inner.log.get(&r.tenant_id, id).await?;
                batch.push(Self::resend_of(&ep, original, now));
            }
            let n = batch.len() as u32;
            self.inner.router.deliver(batch).await?;
            resent += n;
        }
        tracing::info!(endpoint = %r.endpoint_id, resent, "failed deliveries recovered");
        Ok(Response::new(pb::RecoverDeliveriesResponse { resent }))
    }

    async fn send_test_event(
        &self,
        req: Request<pb::SendTestEventRequest>,
    ) -> Result<Response<pb::SendTestEventResponse>, Status> {
        let r = req.into_inner();
        let ep = self.deliverable_endpoint(&r.tenant_id, &r.endpoint_id)?;
        let now = now_ms();
        let (event_type, payload_json) = if r.event_type.is_empty() {
            (
                PING_TYPE.to_string(),
                format!(r#"{{"message":"test event from Herald","sent_at_ms":{now}}}"#),
            )
        } else {
            validate::name("event_type", &r.event_type)?;
            let example = self.view().read(|v| {
                v.event_types
                    .get(&r.event_type)
                    .map(|t| t.example_json.clone())
            });
            match example {
                None => {
                    return Err(Error::invalid(
                        "event_type",
                        format!("unknown event type '{}'", r.event_type),
                    )
                    .into());
                }
                Some(e) if e.is_empty() => (r.event_type.clone(), "{}".to_string()),
                Some(e) => (r.event_type.clone(), e),
            }
        };
        let d = pb::Delivery {
            endpoint_id: ep.record.id.clone(),
            slot: ep.slot,
            event_id: random_event_id(),
            event_type,
            tenant_id: r.tenant_id.clone(),
            payload_json,
            occurred_at_ms: now,
            published_at_ms: now,
            delivery_id: random_delivery_id(),
            test: true,
            ..Default::default()
        };
        let (delivery_id, event_id) = (d.delivery_id.clone(), d.event_id.clone());
        self.inner.router.deliver(vec![d]).await?;
        Ok(Response::new(pb::SendTestEventResponse {
            delivery_id,
            event_id,
        }))
    }

    async fn get_endpoint_stats(
        &self,
        req: Request<pb::GetEndpointStatsRequest>,
    ) -> Result<Response<pb::EndpointStats>, Status> {
        let r = req.into_inner();
        if r.endpoint_id.is_empty() {
            return Err(Error::invalid("endpoint_id", "must not be empty").into());
        }
        self.check_scope(&r.tenant_id, &r.endpoint_id)?;
        Ok(Response::new(self.inner.log.stats(&r.endpoint_id).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_junk() {
        let c = pb::DeliveryCursor {
            created_at_ms: 1_700_000_000_123,
            delivery_id: "dlv_0123456789abcdef01234567".into(),
        };
        assert_eq!(parse_page_token(&page_token(&c)).unwrap(), Some(c));
        assert_eq!(parse_page_token("").unwrap(), None);
        for bad in ["x", "v1:abc:dlv_1", "v2:1:dlv_1", "v1:1:a/b", "v1:1"] {
            let e = parse_page_token(bad).unwrap_err();
            assert!(e.to_string().starts_with("page_token: "), "{bad}: {e}");
        }
    }

    #[test]
    fn list_checks_name_the_field() {
        let base = pb::ListDeliveriesRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        };
        let cases = [
            (
                pb::ListDeliveriesRequest {
                    statuses: vec![0],
                    ..base.clone()
                },
                "statuses[0]",
            ),
            (
                pb::ListDeliveriesRequest {
                    statuses: vec![1, 9],
                    ..base.clone()
                },
                "statuses[1]",
            ),
            (
                pb::ListDeliveriesRequest {
                    event_types: vec!["a b".into()],
                    ..base.clone()
                },
                "event_types[0]",
            ),
            (
                pb::ListDeliveriesRequest {
                    since_ms: -1,
                    ..base.clone()
                },
                "since_ms",
            ),
            (
                pb::ListDeliveriesRequest {
                    since_ms: 5,
                    until_ms: 5,
                    ..base.clone()
                },
                "until_ms",
            ),
            (
                pb::ListDeliveriesRequest {
                    page_size: 501,
                    ..base.clone()
                },
                "page_size",
            ),
            (
                pb::ListDeliveriesRequest {
                    page_token: "zz".into(),
                    ..base.clone()
                },
                "page_token",
            ),
        ];
        for (r, field) in cases {
            let e = check_list(&r).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("{field}: ")),
                "{field}: {e}"
            );
        }
        assert_eq!(check_list(&base).unwrap().0, 50);
    }
}
