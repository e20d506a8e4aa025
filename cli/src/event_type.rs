//! `herald event-type ...`: the event type catalog.

use crate::connect::Ch;
use anyhow::Result;
use clap::Subcommand;
use herald_proto::v1::{
    ArchiveEventTypeRequest, CreateEventTypeRequest, EventType, GetEventTypeRequest,
    ListEventTypesRequest, UpdateEventTypeRequest, catalog_service_client::CatalogServiceClient,
};
use serde_json::{Value, json};

use crate::output::{Format, json_text};

/// Event type subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Creates an event type.
    Create {
        /// Dotted name, e.g. "invoice.activated".
        #[arg(long)]
        name: String,
        /// Group the type is listed under, e.g. "invoice".
        #[arg(long)]
        group: Option<String>,
        /// A name for people, e.g. "Invoice Activated".
        #[arg(long)]
        display_name: Option<String>,
        /// Human description.
        #[arg(long)]
        description: Option<String>,
        /// JSON Schema of the payload, as JSON text (documentation for
        /// receivers; publishing does not check it).
        #[arg(long)]
        schema_json: Option<String>,
        /// Example payload as JSON text.
        #[arg(long)]
        example_json: Option<String>,
    },
    /// Lists event types.
    List {
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
        /// Include archived types.
        #[arg(long)]
        include_archived: bool,
    },
    /// Shows one event type.
    Get {
        /// Event type name.
        #[arg(long)]
        name: String,
    },
    /// Changes an event type's group, description, schema or example; the
    /// others stay (the CLI handles the revision).
    Update {
        /// Event type name.
        #[arg(long)]
        name: String,
        /// Group.
        #[arg(long)]
        group: Option<String>,
        /// A name for people.
        #[arg(long)]
        display_name: Option<String>,
        /// Description.
        #[arg(long)]
        description: Option<String>,
        /// JSON Schema of the payload, as JSON text.
        #[arg(long)]
        schema_json: Option<String>,
        /// Example payload as JSON text.
        #[arg(long)]
        example_json: Option<String>,
    },
    /// Archives an event type (publishing it is refused afterwards).
    Archive {
        /// Event type name.
        #[arg(long)]
        name: String,
    },
}

const HEADERS: [&str; 5] = ["NAME", "DISPLAY NAME", "GROUP", "ARCHIVED", "DESCRIPTION"];

fn row(t: &EventType) -> Vec<String> {
    vec![
        t.name.clone(),
        t.display_name.clone(),
        t.group.clone(),
        t.archived.to_string(),
        t.description.clone(),
    ]
}

fn to_json(t: &EventType) -> Value {
    json!({
        "name": t.name,
        "group": t.group,
        "display_name": t.display_name,
        "description": t.description,
        "schema": json_text(&t.schema_json),
        "example": json_text(&t.example_json),
        "archived": t.archived,
        "revision": t.revision,
    })
}

fn emit_one(out: Format, t: &EventType) {
    out.emit(&to_json(t), &HEADERS, &[row(t)]);
}

/// Runs one event type subcommand.
pub async fn run(channel: Ch, out: Format, cmd: Cmd) -> Result<()> {
    let mut client = CatalogServiceClient::new(channel);
    match cmd {
        Cmd::Create {
            name,
            group,
            display_name,
            description,
            schema_json,
            example_json,
        } => {
            let req = CreateEventTypeRequest {
                name,
                group: group.unwrap_or_default(),
                display_name: display_name.unwrap_or_default(),
                description: description.unwrap_or_default(),
                schema_json: schema_json.unwrap_or_default(),
                example_json: example_json.unwrap_or_default(),
            };
            emit_one(out, &client.create_event_type(req).await?.into_inner());
        }
        Cmd::List {
            group,
            include_archived,
        } => {
            let req = ListEventTypesRequest {
                group: group.unwrap_or_default(),
                include_archived,
            };
            let types = client.list_event_types(req).await?.into_inner().event_types;
            let json = Value::Array(types.iter().map(to_json).collect());
            let rows: Vec<_> = types.iter().map(row).collect();
            out.emit(&json, &HEADERS, &rows);
        }
        Cmd::Get { name } => {
            let req = GetEventTypeRequest { name };
            emit_one(out, &client.get_event_type(req).await?.into_inner());
        }
        Cmd::Update {
            name,
            group,
            display_name,
            description,
            schema_json,
            example_json,
        } => {
            let mut last = None;
            // Read, change, write at the revision read; again if another
            // write came in between.
            for _ in 0..5 {
                let current = client
                    .get_event_type(GetEventTypeRequest { name: name.clone() })
                    .await?
                    .into_inner();
                let req = UpdateEventTypeRequest {
                    name: name.clone(),
                    group: group.clone().unwrap_or(current.group),
                    display_name: display_name.clone().unwrap_or(current.display_name),
                    description: description.clone().unwrap_or(current.description),
                    schema_json: schema_json.clone().unwrap_or(current.schema_json),
                    example_json: example_json.clone().unwrap_or(current.example_json),
                    expected_revision: current.revision,
                };
                match client.update_event_type(req).await {
                    Ok(t) => {
                        emit_one(out, &t.into_inner());
                        return Ok(());
                    }
                    Err(s) if s.code() == tonic::Code::FailedPrecondition => last = Some(s),
                    Err(s) => return Err(s.into()),
                }
            }
            return Err(last
                .map(anyhow::Error::from)
                .unwrap_or_else(|| anyhow::anyhow!("update lost every race")));
        }
        Cmd::Archive { name } => {
            let req = ArchiveEventTypeRequest { name };
            emit_one(out, &client.archive_event_type(req).await?.into_inner());
        }
    }
    Ok(())
}
