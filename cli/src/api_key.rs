//! `herald api-key ...`: API keys (needs an admin key).

use anyhow::Result;
use clap::Subcommand;
use herald_proto::v1::{
    ApiKey, CreateApiKeyRequest, ListApiKeysRequest, RevokeApiKeyRequest,
    access_service_client::AccessServiceClient,
};
use serde_json::{Value, json};

use crate::connect::Ch;
use crate::output::{Format, time};

/// API key subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Creates a key and prints it (once: Herald keeps only its hash).
    Create {
        /// A name unique among live keys.
        #[arg(long)]
        name: String,
        /// A scope; repeat for several: admin, config:read, config:write,
        /// publish, deliveries:read, deliveries:write, cluster:read,
        /// cluster:write, cluster:agent, secrets:read.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Limit the key to a tenant; repeat for several. None: every tenant.
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Days until the key stops working. None: it does not expire.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Lists live keys (never their secrets).
    List,
    /// Revokes a key: it stops working on every replica within a second.
    Revoke {
        /// The key's id (the part after `hk_`).
        #[arg(long)]
        id: String,
    },
}

const HEADERS: [&str; 6] = ["ID", "NAME", "SCOPES", "TENANTS", "EXPIRES", "CREATED"];

fn row(k: &ApiKey) -> Vec<String> {
    vec![
        k.id.clone(),
        k.name.clone(),
        k.scopes.join(","),
        if k.tenants.is_empty() {
            "*".into()
        } else {
            k.tenants.join(",")
        },
        if k.expires_at_ms == 0 {
            "never".into()
        } else {
            time(k.expires_at_ms)
        },
        time(k.created_at_ms),
    ]
}

fn to_json(k: &ApiKey) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "scopes": k.scopes,
        "tenants": k.tenants,
        "expires_at_ms": k.expires_at_ms,
        "created_at_ms": k.created_at_ms,
        "created_by": k.created_by,
    })
}

/// Runs one api-key subcommand.
pub async fn run(channel: Ch, out: Format, cmd: Cmd) -> Result<()> {
    let mut client = AccessServiceClient::new(channel);
    match cmd {
        Cmd::Create {
            name,
            scopes,
            tenants,
            expires_in_days,
        } => {
            let expires_at_ms = expires_in_days
                .map(|d| herald_shared::time::now_ms() + i64::from(d) * 86_400_000)
                .unwrap_or(0);
            let resp = client
                .create_api_key(CreateApiKeyRequest {
                    name,
                    scopes,
                    tenants,
                    expires_at_ms,
                })
                .await?
                .into_inner();
            let k = resp.api_key.unwrap_or_default();
            let mut json = to_json(&k);
            json["key"] = Value::String(resp.key.clone());
            out.emit_message(
                &json,
                &format!(
                    "{}\nkey (shown once; Herald keeps only its hash):\n{}",
                    crate::output::render_table(&HEADERS, &[row(&k)]),
                    resp.key
                ),
            );
        }
        Cmd::List => {
            let keys = client
                .list_api_keys(ListApiKeysRequest {})
                .await?
                .into_inner()
                .api_keys;
            let json = Value::Array(keys.iter().map(to_json).collect());
            let rows: Vec<_> = keys.iter().map(row).collect();
            out.emit(&json, &HEADERS, &rows);
        }
        Cmd::Revoke { id } => {
            client
                .revoke_api_key(RevokeApiKeyRequest { id: id.clone() })
                .await?;
            out.emit_message(&json!({ "revoked": id }), &format!("revoked {id}"));
        }
    }
    Ok(())
}
