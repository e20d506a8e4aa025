//! `herald delivery ...`: the delivery log and resends; also the
//! `herald endpoint test` and `herald endpoint stats` requests, which the
//! same gRPC service answers.

mod view;

use crate::connect::Ch;
use anyhow::{Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use herald_proto::v1::{
    DeliveryStatus, DeliverySummary, GetDeliveryRequest, GetEndpointStatsRequest,
    ListDeliveriesRequest, RecoverDeliveriesRequest, ResendDeliveryRequest, SendTestEventRequest,
    delivery_service_client::DeliveryServiceClient,
};
use serde_json::{Value, json};

use crate::output::Format;

/// A delivery status to filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Status {
    /// Queued; not attempted yet.
    Pending,
    /// Queued; an attempt failed and another is scheduled.
    Retrying,
    /// Delivered.
    Succeeded,
    /// Every attempt of the retry schedule failed.
    Failed,
}

impl From<Status> for DeliveryStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Pending => DeliveryStatus::Pending,
            Status::Retrying => DeliveryStatus::Retrying,
            Status::Succeeded => DeliveryStatus::Succeeded,
            Status::Failed => DeliveryStatus::Failed,
        }
    }
}

/// Delivery subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Lists a tenant's deliveries, newest first, one page at a time.
    List(ListArgs),
    /// Shows one delivery with its payload and every attempt.
    Get {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Delivery id.
        delivery_id: String,
    },
    /// Queues a new delivery with the same content (and event id); prints
    /// its id.
    Resend {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Id of the delivery to resend.
        delivery_id: String,
    },
    /// Resends every delivery of an endpoint that failed for good since a
    /// time; prints how many were queued again.
    Recover {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Endpoint id.
        #[arg(long)]
        endpoint: String,
        /// Failed deliveries created at or after this time (ms since the
        /// epoch).
        #[arg(long)]
        since_ms: i64,
    },
}

/// Arguments of `herald delivery list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Tenant id.
    #[arg(long)]
    tenant: String,
    /// Only this endpoint's deliveries.
    #[arg(long)]
    endpoint: Option<String>,
    /// Only deliveries in this status; repeatable (any of them matches).
    #[arg(long = "status", value_enum)]
    statuses: Vec<Status>,
    /// Only this event type name or pattern ("invoice.*"); repeatable.
    #[arg(long = "event-type")]
    event_types: Vec<String>,
    /// Only events about this resource id.
    #[arg(long)]
    resource_id: Option<String>,
    /// The deliveries of this event: the webhook-id the receiver saw.
    #[arg(long)]
    event_id: Option<String>,
    /// Only deliveries created at or after this time, in ms since the epoch
    /// (0 = unbounded).
    #[arg(long, default_value_t = 0)]
    since_ms: i64,
    /// Only deliveries created before this time, in ms since the epoch
    /// (0 = unbounded).
    #[arg(long, default_value_t = 0)]
    until_ms: i64,
    /// Deliveries per page (0 = server default, 50; at most 500).
    #[arg(long, default_value_t = 0)]
    page_size: u32,
    /// Page to fetch: the next page token printed by the previous list.
    #[arg(long)]
    page_token: Option<String>,
    /// Fetch every page, following next page tokens until the last.
    #[arg(long)]
    all: bool,
}

/// Runs one delivery subcommand.
pub async fn run(channel: Ch, out: Format, cmd: Cmd) -> Result<()> {
    let mut client = DeliveryServiceClient::new(channel);
    match cmd {
        Cmd::List(args) => list(&mut client, out, args).await?,
        Cmd::Get {
            tenant,
            delivery_id,
        } => {
            let req = GetDeliveryRequest {
                tenant_id: tenant,
                delivery_id,
            };
            let d = client.get_delivery(req).await?.into_inner();
            let attempts: Vec<_> = d.attempts.iter().map(view::attempt_row).collect();
            out.emit_tables(
                &view::detail_json(&d),
                &[
                    (&["FIELD", "VALUE"], view::detail_rows(&d)),
                    (&view::ATTEMPT_HEADERS, attempts),
                ],
            );
        }
        Cmd::Resend {
            tenant,
            delivery_id,
        } => {
            let req = ResendDeliveryRequest {
                tenant_id: tenant,
                delivery_id: delivery_id.clone(),
            };
            let id = client.resend_delivery(req).await?.into_inner().delivery_id;
            out.emit(
                &json!({ "delivery_id": id, "resend_of": delivery_id }),
                &["DELIVERY ID", "RESEND OF"],
                &[vec![id.clone(), delivery_id]],
            );
        }
        Cmd::Recover {
            tenant,
            endpoint,
            since_ms,
        } => {
            let req = RecoverDeliveriesRequest {
                tenant_id: tenant,
                endpoint_id: endpoint.clone(),
                since_ms,
            };
            let n = client.recover_deliveries(req).await?.into_inner().resent;
            out.emit_message(
                &json!({ "endpoint_id": endpoint, "resent": n }),
                &format!("resent {n} failed deliveries of endpoint {endpoint}"),
            );
        }
    }
    Ok(())
}

/// Lists one page, or every page with `--all`, then the next page token.
async fn list(client: &mut DeliveryServiceClient<Ch>, out: Format, a: ListArgs) -> Result<()> {
    let mut req = ListDeliveriesRequest {
        tenant_id: a.tenant,
        endpoint_id: a.endpoint.unwrap_or_default(),
        statuses: a
            .statuses
            .into_iter()
            .map(|s| DeliveryStatus::from(s) as i32)
            .collect(),
        event_types: a.event_types,
        resource_id: a.resource_id.unwrap_or_default(),
        event_id: a.event_id.unwrap_or_default(),
        since_ms: a.since_ms,
        until_ms: a.until_ms,
        page_size: a.page_size,
        page_token: a.page_token.unwrap_or_default(),
    };
    let mut deliveries: Vec<DeliverySummary> = Vec::new();
    let next = loop {
        let page = client.list_deliveries(req.clone()).await?.into_inner();
        deliveries.extend(page.deliveries);
        let next = page.next_page_token;
        if !a.all || next.is_empty() {
            break next;
        }
        if next == req.page_token {
            bail!("the server returned the same page token twice: {next:?}");
        }
        req.page_token = next;
    };
    let json = json!({
        "deliveries": Value::Array(deliveries.iter().map(view::summary_json).collect()),
        "next_page_token": next,
    });
    let rows: Vec<_> = deliveries.iter().map(view::list_row).collect();
    out.emit(&json, &view::LIST_HEADERS, &rows);
    if out == Format::Table && !next.is_empty() {
        println!("next page: {next}");
    }
    Ok(())
}

/// `herald endpoint test`: queues a test event for an endpoint and prints
/// the delivery and event ids.
pub async fn send_test(
    channel: Ch,
    out: Format,
    tenant: String,
    endpoint: String,
    event_type: Option<String>,
) -> Result<()> {
    let req = SendTestEventRequest {
        tenant_id: tenant,
        endpoint_id: endpoint,
        event_type: event_type.unwrap_or_default(),
    };
    let resp = DeliveryServiceClient::new(channel)
        .send_test_event(req)
        .await?
        .into_inner();
    out.emit(
        &json!({ "delivery_id": resp.delivery_id, "event_id": resp.event_id }),
        &["DELIVERY ID", "EVENT ID"],
        &[vec![resp.delivery_id.clone(), resp.event_id.clone()]],
    );
    Ok(())
}

/// `herald endpoint stats`: prints an endpoint's delivery counters.
pub async fn stats(channel: Ch, out: Format, tenant: String, endpoint: String) -> Result<()> {
    let req = GetEndpointStatsRequest {
        tenant_id: tenant,
        endpoint_id: endpoint,
    };
    let s = DeliveryServiceClient::new(channel)
        .get_endpoint_stats(req)
        .await?
        .into_inner();
    out.emit(
        &view::stats_json(&s),
        &["FIELD", "VALUE"],
        &view::stats_rows(&s),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_and_map() {
        let parse = |s| Status::from_str(s, false).map(DeliveryStatus::from);
        assert_eq!(parse("pending"), Ok(DeliveryStatus::Pending));
        assert_eq!(parse("retrying"), Ok(DeliveryStatus::Retrying));
        assert_eq!(parse("succeeded"), Ok(DeliveryStatus::Succeeded));
        assert_eq!(parse("failed"), Ok(DeliveryStatus::Failed));
        assert!(parse("unspecified").is_err());
    }

    #[test]
    fn status_flags_match_printed_names() {
        for s in Status::value_variants() {
            let flag = s.to_possible_value().unwrap();
            assert_eq!(view::status_name((*s).into()), flag.get_name());
        }
    }
}
