//! Publishing Herald's own events (see `herald_shared::operational`): the
//! reserved types in the catalog, and events published into the affected
//! tenant and the operators' tenant through the ordinary publish path.

use herald_proto::v1 as pb;
use herald_shared::model::{EndpointRecord, EventTypeRecord};
use herald_shared::operational::{self as op, EndpointRef, Failure};
use herald_shared::time::now_ms;

use super::Api;
use crate::store::CreateConflict;

impl Api {
    /// Puts the operational event types in the catalog if they are not
    /// there (every replica does at start; the first one wins).
    pub async fn ensure_operational_types(&self) -> crate::error::Result<()> {
        for (name, description) in op::TYPES {
            let rec = EventTypeRecord {
                name: name.to_string(),
                group: "herald".into(),
                display_name: display_name(name),
                description: description.to_string(),
                created_at_ms: now_ms(),
                ..EventTypeRecord::default()
            };
            match self
                .store()
                .create(&super::catalog::key(name), &rec, None)
                .await
            {
                Ok(_) | Err(CreateConflict::Exists | CreateConflict::MissingRequired) => {}
                Err(CreateConflict::Store(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// Publishes an operational event about `tenant`'s endpoint to that
    /// tenant and to the operators' tenant, if one is set. Best effort: a
    /// failure is logged, never returned, as the change it reports is
    /// already stored.
    pub(crate) async fn publish_operational(
        &self,
        tenant: &str,
        endpoint_id: &str,
        event_type: &str,
        payload_json: String,
        key: &str,
    ) {
        let mut tenants = vec![tenant.to_string()];
        if let Some(ops) = &self.config().operator_tenant
            && ops != tenant
        {
            tenants.push(ops.clone());
        }
        for t in tenants {
            let r = pb::PublishRequest {
                tenant_id: t.clone(),
                event_type: event_type.to_string(),
                payload_json: payload_json.clone(),
                idempotency_key: format!("herald:{key}"),
                resource: Some(pb::Resource {
                    r#type: "endpoint".into(),
                    id: endpoint_id.to_string(),
                }),
                ..Default::default()
            };
            match self.publish_internal(r).await {
                Ok(matched) => {
                    tracing::info!(tenant = %t, endpoint = %endpoint_id, event_type, matched, "operational event published")
                }
                Err(e) => {
                    tracing::warn!(tenant = %t, endpoint = %endpoint_id, event_type, error = %e, "cannot publish an operational event")
                }
            }
        }
    }

    /// `herald.endpoint.disabled` for `rec`, disabled at `at_ms` by
    /// `by` (`herald` or `api`).
    pub(crate) async fn publish_disabled(
        &self,
        rec: &EndpointRecord,
        by: &str,
        reason: &str,
        at_ms: i64,
        last: Option<&pb::AttemptSummary>,
    ) {
        let last = last.map(|a| Failure {
            delivery_id: a.delivery_id.clone(),
            at_ms: a.at_ms,
            status_code: a.status_code,
            error: a.error.clone(),
        });
        let payload = op::disabled(&endpoint_ref(rec), by, reason, at_ms, last.as_ref());
        let key = format!("disabled:{}:{}:{at_ms}", rec.tenant_id, rec.id);
        self.publish_operational(
            &rec.tenant_id,
            &rec.id,
            op::ENDPOINT_DISABLED,
            payload.to_string(),
            &key,
        )
        .await;
    }

    /// `herald.endpoint.enabled` for `rec`; `previous_reason` says why it
    /// had been disabled.
    pub(crate) async fn publish_enabled(&self, rec: &EndpointRecord, previous_reason: &str) {
        let at = rec.updated_at_ms;
        let payload = op::enabled(&endpoint_ref(rec), at, previous_reason);
        let key = format!("enabled:{}:{}:{at}", rec.tenant_id, rec.id);
        self.publish_operational(
            &rec.tenant_id,
            &rec.id,
            op::ENDPOINT_ENABLED,
            payload.to_string(),
            &key,
        )
        .await;
    }

    /// A queue for one agent session's reports, published one at a time in
    /// their order until the session drops it.
    pub(crate) fn publish_reports_in_order(
        &self,
    ) -> tokio::sync::mpsc::Sender<pb::OperationalEvent> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let api = self.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                api.agent_reported(e).await;
            }
        });
        tx
    }

    /// An operational event an agent made. Only the types agents report
    /// are taken, for an endpoint that exists.
    pub(crate) async fn agent_reported(&self, e: pb::OperationalEvent) {
        if ![
            op::DELIVERY_EXHAUSTED,
            op::ENDPOINT_FAILING,
            op::ENDPOINT_RECOVERED,
        ]
        .contains(&e.event_type.as_str())
        {
            tracing::warn!(event_type = %e.event_type, "an agent reported an event type agents do not make; ignored");
            return;
        }
        let known = self.view().read(|v| {
            v.endpoints
                .get(&e.tenant_id)
                .is_some_and(|m| m.contains_key(&e.endpoint_id))
        });
        if !known {
            return; // deleted meanwhile
        }
        self.publish_operational(
            &e.tenant_id,
            &e.endpoint_id,
            &e.event_type,
            e.payload_json,
            &e.idempotency_key,
        )
        .await;
    }
}

fn endpoint_ref(rec: &EndpointRecord) -> EndpointRef {
    EndpointRef {
        tenant_id: rec.tenant_id.clone(),
        id: rec.id.clone(),
        name: rec.name.clone(),
        url: rec.url.clone(),
    }
}

/// "herald.endpoint.disabled" → "Endpoint disabled".
fn display_name(name: &str) -> String {
    let words = name
        .strip_prefix(op::PREFIX)
        .unwrap_or(name)
        .replace('.', " ");
    let mut c = words.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn display_names_read_as_words() {
        assert_eq!(
            super::display_name("herald.endpoint.disabled"),
            "Endpoint disabled"
        );
        assert_eq!(
            super::display_name("herald.delivery.exhausted"),
            "Delivery exhausted"
        );
    }
}
