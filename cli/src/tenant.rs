//! `herald tenant ...`: tenants.

use crate::connect::Ch;
use anyhow::Result;
use clap::Subcommand;
use herald_proto::v1::{
    CreateTenantRequest, DeleteTenantRequest, GetTenantRequest, ListTenantsRequest, Tenant,
    tenant_service_client::TenantServiceClient,
};
use serde_json::{Value, json};

use crate::output::{Format, time};

/// Tenant subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Creates a tenant.
    Create {
        /// Tenant id: letters, digits, '_', '-', '.'.
        #[arg(long)]
        id: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Shows one tenant.
    Get {
        /// Tenant id.
        #[arg(long)]
        id: String,
    },
    /// Lists tenants.
    List,
    /// Deletes a tenant and all of its endpoints.
    Delete {
        /// Tenant id.
        #[arg(long)]
        id: String,
    },
}

const HEADERS: [&str; 3] = ["ID", "NAME", "CREATED"];

fn row(t: &Tenant) -> Vec<String> {
    vec![t.id.clone(), t.name.clone(), time(t.created_at_ms)]
}

fn to_json(t: &Tenant) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "created_at_ms": t.created_at_ms,
        "revision": t.revision,
    })
}

/// Runs one tenant subcommand.
pub async fn run(channel: Ch, out: Format, cmd: Cmd) -> Result<()> {
    let mut client = TenantServiceClient::new(channel);
    match cmd {
        Cmd::Create { id, name } => {
            let t = client
                .create_tenant(CreateTenantRequest {
                    id,
                    name: name.unwrap_or_default(),
                })
                .await?
                .into_inner();
            out.emit(&to_json(&t), &HEADERS, &[row(&t)]);
        }
        Cmd::Get { id } => {
            let t = client
                .get_tenant(GetTenantRequest { id })
                .await?
                .into_inner();
            out.emit(&to_json(&t), &HEADERS, &[row(&t)]);
        }
        Cmd::List => {
            // Every page, in id order.
            let mut tenants = Vec::new();
            let mut page_token = String::new();
            loop {
                let req = ListTenantsRequest {
                    page_token,
                    ..Default::default()
                };
                let page = client.list_tenants(req).await?.into_inner();
                tenants.extend(page.tenants);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            let json = Value::Array(tenants.iter().map(to_json).collect());
            let rows: Vec<_> = tenants.iter().map(row).collect();
            out.emit(&json, &HEADERS, &rows);
        }
        Cmd::Delete { id } => {
            let n = client
                .delete_tenant(DeleteTenantRequest { id: id.clone() })
                .await?
                .into_inner()
                .endpoints_deleted;
            out.emit_message(
                &json!({ "deleted": id, "endpoints_deleted": n }),
                &format!("deleted tenant {id} ({n} endpoints)"),
            );
        }
    }
    Ok(())
}
