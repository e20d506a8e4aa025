//! `herald endpoint ...`: a tenant's webhook endpoints.

use std::collections::HashMap;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use herald_proto::v1::{
    CreateEndpointRequest, DeleteEndpointRequest, Endpoint, EndpointSpec, GetEndpointRequest,
    HttpMethod, ListEndpointsRequest, endpoint_service_client::EndpointServiceClient,
};
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::delivery;
use crate::output::{Format, json_text, time};

/// HTTP method used for deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// POST with the JSON envelope as body.
    Post,
    /// GET without a body.
    Get,
}

/// Endpoint subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Creates an endpoint; prints it with its signing secret (shown once).
    Create {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Endpoint name.
        #[arg(long)]
        name: String,
        /// Delivery URL.
        #[arg(long)]
        url: String,
        /// Event type name or pattern ("invoice.*", "*"); repeatable.
        #[arg(long = "event-type", required = true)]
        event_types: Vec<String>,
        /// Enable the endpoint (new endpoints start disabled otherwise).
        #[arg(long)]
        enabled: bool,
        /// HTTP method.
        #[arg(long, value_enum, default_value_t = Method::Post)]
        method: Method,
        /// Extra request header as `key=value`; repeatable.
        #[arg(long = "header", value_parser = parse_header)]
        headers: Vec<(String, String)>,
        /// JSON object added to every delivery as custom_data.
        #[arg(long)]
        custom_data_json: Option<String>,
        /// Per-attempt timeout in ms (0 = server default).
        #[arg(long, default_value_t = 0)]
        timeout_ms: u32,
        /// While the endpoint is disabled, keep queueing new events for it
        /// (delivered in order once it is enabled again).
        #[arg(long)]
        queue_while_disabled: bool,
    },
    /// Lists a tenant's endpoints.
    List {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
    },
    /// Shows one endpoint.
    Get {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Endpoint id.
        #[arg(long)]
        id: String,
    },
    /// Deletes one endpoint.
    Delete {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Endpoint id.
        #[arg(long)]
        id: String,
    },
    /// Queues a test event for an enabled endpoint now; prints the delivery
    /// and event ids.
    Test {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Endpoint id.
        endpoint_id: String,
        /// Event type in the catalog whose example payload is sent
        /// (default: the built-in "herald.ping").
        #[arg(long)]
        event_type: Option<String>,
    },
    /// Shows an endpoint's delivery counters and its last success and
    /// failure.
    Stats {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Endpoint id.
        endpoint_id: String,
    },
}

/// Parses a `key=value` header argument; the key must not be empty.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

fn method_name(spec: &EndpointSpec) -> &'static str {
    match spec.method() {
        HttpMethod::Get => "get",
        HttpMethod::Post | HttpMethod::Unspecified => "post",
    }
}

fn sorted(map: &HashMap<String, String>) -> Vec<(&String, &String)> {
    let mut v: Vec<_> = map.iter().collect();
    v.sort();
    v
}

fn to_json(e: &Endpoint) -> Value {
    let s = e.spec.clone().unwrap_or_default();
    json!({
        "id": e.id,
        "tenant_id": e.tenant_id,
        "name": s.name,
        "description": s.description,
        "url": s.url,
        "method": method_name(&s),
        "enabled": s.enabled,
        "event_types": s.event_types,
        "headers": s.headers,
        "custom_data": json_text(&s.custom_data_json),
        "timeout_ms": s.timeout_ms,
        "queue_while_disabled": s.queue_while_disabled,
        "labels": s.labels,
        "created_at_ms": e.created_at_ms,
        "updated_at_ms": e.updated_at_ms,
        "revision": e.revision,
    })
}

const LIST_HEADERS: [&str; 6] = ["ID", "NAME", "ENABLED", "METHOD", "URL", "EVENT TYPES"];

fn list_row(e: &Endpoint) -> Vec<String> {
    let s = e.spec.clone().unwrap_or_default();
    vec![
        e.id.clone(),
        s.name.clone(),
        s.enabled.to_string(),
        method_name(&s).to_string(),
        s.url.clone(),
        s.event_types.join(","),
    ]
}

/// One endpoint as FIELD/VALUE rows.
fn detail_rows(e: &Endpoint) -> Vec<Vec<String>> {
    let s = e.spec.clone().unwrap_or_default();
    let headers: Vec<String> = sorted(&s.headers)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let fields = [
        ("id", e.id.clone()),
        ("tenant", e.tenant_id.clone()),
        ("name", s.name.clone()),
        ("url", s.url.clone()),
        ("method", method_name(&s).to_string()),
        ("enabled", s.enabled.to_string()),
        ("event types", s.event_types.join(",")),
        ("headers", headers.join(" ")),
        ("custom data", s.custom_data_json.clone()),
        ("timeout ms", s.timeout_ms.to_string()),
        ("queue while disabled", s.queue_while_disabled.to_string()),
        ("created", time(e.created_at_ms)),
        ("updated", time(e.updated_at_ms)),
        ("revision", e.revision.to_string()),
    ];
    fields
        .into_iter()
        .map(|(k, v)| vec![k.to_string(), v])
        .collect()
}

/// Runs one endpoint subcommand.
pub async fn run(channel: Channel, out: Format, cmd: Cmd) -> Result<()> {
    let mut client = EndpointServiceClient::new(channel.clone());
    match cmd {
        Cmd::Create {
            tenant,
            name,
            url,
            event_types,
            enabled,
            method,
            headers,
            custom_data_json,
            timeout_ms,
            queue_while_disabled,
        } => {
            let spec = EndpointSpec {
                name,
                url,
                method: match method {
                    Method::Post => HttpMethod::Post,
                    Method::Get => HttpMethod::Get,
                } as i32,
                enabled,
                event_types,
                headers: headers.into_iter().collect(),
                custom_data_json: custom_data_json.unwrap_or_default(),
                timeout_ms,
                queue_while_disabled,
                ..Default::default()
            };
            let req = CreateEndpointRequest {
                tenant_id: tenant,
                spec: Some(spec),
            };
            let resp = client.create_endpoint(req).await?.into_inner();
            let ep = resp.endpoint.unwrap_or_default();
            let secret = resp.signing_secret;
            let json = json!({ "endpoint": to_json(&ep), "signing_secret": secret });
            let mut rows = detail_rows(&ep);
            rows.push(vec!["signing secret".into(), secret]);
            out.emit(&json, &["FIELD", "VALUE"], &rows);
        }
        Cmd::List { tenant } => {
            let req = ListEndpointsRequest { tenant_id: tenant };
            let eps = client.list_endpoints(req).await?.into_inner().endpoints;
            let json = Value::Array(eps.iter().map(to_json).collect());
            let rows: Vec<_> = eps.iter().map(list_row).collect();
            out.emit(&json, &LIST_HEADERS, &rows);
        }
        Cmd::Get { tenant, id } => {
            let req = GetEndpointRequest {
                tenant_id: tenant,
                id,
            };
            let ep = client.get_endpoint(req).await?.into_inner();
            out.emit(&to_json(&ep), &["FIELD", "VALUE"], &detail_rows(&ep));
        }
        Cmd::Delete { tenant, id } => {
            let req = DeleteEndpointRequest {
                tenant_id: tenant,
                id: id.clone(),
            };
            client.delete_endpoint(req).await?;
            out.emit_message(&json!({ "deleted": id }), &format!("deleted endpoint {id}"));
        }
        Cmd::Test {
            tenant,
            endpoint_id,
            event_type,
        } => delivery::send_test(channel, out, tenant, endpoint_id, event_type).await?,
        Cmd::Stats {
            tenant,
            endpoint_id,
        } => delivery::stats(channel, out, tenant, endpoint_id).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse() {
        assert_eq!(
            parse_header("X-Team=billing"),
            Ok(("X-Team".into(), "billing".into()))
        );
        assert_eq!(parse_header("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_header("k="), Ok(("k".into(), String::new())));
        assert!(parse_header("novalue").is_err());
        assert!(parse_header("=v").is_err());
    }
}
