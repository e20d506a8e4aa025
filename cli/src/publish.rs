//! `herald publish`: publishes one event, or every event of a JSON-lines
//! file (or stdin) in batches of 100.

use crate::connect::Ch;
use anyhow::{Context, Result};
use clap::Args;
use herald_proto::v1::{
    Actor, PublishRequest, Resource, publish_service_client::PublishServiceClient,
};
use serde_json::json;

use crate::output::Format;

/// Arguments of `herald publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Tenant id.
    #[arg(long, required_unless_present = "file")]
    tenant: Option<String>,
    /// Event type name.
    #[arg(long = "type", required_unless_present = "file")]
    event_type: Option<String>,
    /// The event's data: a JSON object.
    #[arg(long, required_unless_present = "file")]
    data: Option<String>,
    /// Publish every line of this file ("-": stdin) instead, each a JSON
    /// object `{"tenant", "type", "data", "idempotency_key", "resource":
    /// {"type", "id"}, "actor": {"type", "id", "name"}, "skip_key",
    /// "occurred_at_ms"}`, in order, 100 per call; progress on stderr.
    #[arg(long, conflicts_with_all = ["tenant", "event_type", "data"])]
    file: Option<std::path::PathBuf>,
    /// Idempotency key: the same (tenant, key) within 24 h is the same event.
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Type of the resource the event is about.
    #[arg(long, requires = "resource_id")]
    resource_type: Option<String>,
    /// Id of the resource the event is about.
    #[arg(long, requires = "resource_type")]
    resource_id: Option<String>,
    /// Id of the actor who triggered the event.
    #[arg(long)]
    actor_id: Option<String>,
    /// Type of the actor, e.g. "user" or "system".
    #[arg(long, requires = "actor_id")]
    actor_type: Option<String>,
    /// Endpoints that list this key in their skip_keys are not triggered.
    #[arg(long)]
    skip_key: Option<String>,
}

/// Publishes the event and prints its id and the number of endpoints matched.
pub async fn run(channel: Ch, out: Format, a: PublishArgs) -> Result<()> {
    if let Some(file) = &a.file {
        return crate::publish_file::run(channel, out, file).await;
    }
    let data = a.data.unwrap_or_default();
    serde_json::from_str::<serde_json::Value>(&data).context("--data is not valid JSON")?;
    let resource = match (a.resource_type, a.resource_id) {
        (Some(r#type), Some(id)) => Some(Resource { r#type, id }),
        _ => None,
    };
    let actor = a.actor_id.map(|id| Actor {
        r#type: a.actor_type.unwrap_or_default(),
        id,
        name: String::new(),
    });
    let req = PublishRequest {
        tenant_id: a.tenant.unwrap_or_default(),
        event_type: a.event_type.unwrap_or_default(),
        payload_json: data,
        idempotency_key: a.idempotency_key.unwrap_or_default(),
        resource,
        actor,
        occurred_at_ms: 0,
        skip_key: a.skip_key.unwrap_or_default(),
        ..Default::default()
    };
    let resp = PublishServiceClient::new(channel)
        .publish(req)
        .await?
        .into_inner();
    out.emit(
        &json!({ "event_id": resp.event_id, "endpoints_matched": resp.endpoints_matched }),
        &["EVENT ID", "ENDPOINTS MATCHED"],
        &[vec![
            resp.event_id.clone(),
            resp.endpoints_matched.to_string(),
        ]],
    );
    Ok(())
}
