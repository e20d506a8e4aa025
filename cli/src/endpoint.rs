//! `herald endpoint ...`: a tenant's webhook endpoints.

use std::collections::HashMap;

use crate::connect::Ch;
use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use herald_proto::v1::{
    BasicAuth, BodySignature, CreateEndpointRequest, DeleteEndpointRequest, Endpoint, EndpointSpec,
    GetEndpointRequest, GetEndpointSecretRequest, GetEndpointSecretResponse, HttpMethod, JwtAuth,
    ListEndpointsRequest, ReceiverAuth, RotateSecretRequest, SecretKind, SignatureEncoding,
    SignatureScheme, endpoint_service_client::EndpointServiceClient, receiver_auth,
};
use serde_json::{Value, json};

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
        #[command(flatten)]
        opts: DeliveryOpts,
    },
    /// Replaces the endpoint's signing secret (the previous one keeps
    /// signing beside it for the overlap) or its JWT secret; prints the new
    /// secret, shown only here.
    RotateSecret {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Endpoint id.
        endpoint_id: String,
        /// Rotate the JWT secret instead of the signing secret.
        #[arg(long)]
        jwt: bool,
        /// Seconds the previous signing secret keeps signing (default: a
        /// day; 0 stops it at once, as after a leak).
        #[arg(long)]
        overlap_secs: Option<u32>,
        /// Use this secret instead of a generated one.
        #[arg(long)]
        secret: Option<String>,
        /// Switch the signing scheme (with the overlap, both are sent).
        #[arg(long, value_enum)]
        scheme: Option<Scheme>,
    },
    /// Prints the endpoint's secrets: the signing secret, rotated-out ones
    /// still signing, and the receiver auth secret (needs a key with the
    /// secrets:read scope).
    Secret {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Endpoint id.
        endpoint_id: String,
    },
    /// Changes settings: each flag given replaces one; the others stay.
    Update(Box<crate::endpoint_update::UpdateArgs>),
    /// Turns an endpoint on (also after Herald disabled it); clears why it
    /// was disabled.
    Enable {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Endpoint id.
        #[arg(long)]
        id: String,
    },
    /// Turns an endpoint off; its events are dropped, or queued with
    /// queue-while-disabled.
    Disable {
        /// Tenant id.
        #[arg(long)]
        tenant: String,
        /// Endpoint id.
        #[arg(long)]
        id: String,
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

/// A webhook-signature scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scheme {
    /// v1: HMAC-SHA256 with a shared secret (whsec_).
    Hmac,
    /// v1a: Ed25519; receivers verify with the public key (whpk_).
    Ed25519,
}

impl Scheme {
    fn proto(self) -> i32 {
        match self {
            Scheme::Hmac => SignatureScheme::HmacSha256 as i32,
            Scheme::Ed25519 => SignatureScheme::Ed25519 as i32,
        }
    }
}

/// How requests are signed, authenticated and throttled.
#[derive(Debug, clap::Args)]
pub struct DeliveryOpts {
    /// Signature scheme of webhook-signature (default hmac).
    #[arg(long, value_enum)]
    signature_scheme: Option<Scheme>,
    /// Leave out the Standard Webhooks headers (webhook-id,
    /// webhook-timestamp, webhook-signature).
    #[arg(long)]
    no_standard_signature: bool,
    /// Also send an HMAC-SHA256 of the body (keyed by the signing secret's
    /// text) in this header, as "X-Signature".
    #[arg(long)]
    body_signature_header: Option<String>,
    /// The body HMAC in base64 instead of hex.
    #[arg(long, requires = "body_signature_header")]
    body_signature_base64: bool,
    /// HTTP Basic auth as `user:password`.
    #[arg(long, value_parser = parse_basic, conflicts_with = "jwt")]
    basic_auth: Option<(String, String)>,
    /// Send "Authorization: Bearer <JWT>" signed HS256 with a secret Herald
    /// generates (printed once), or with --jwt-secret.
    #[arg(long)]
    jwt: bool,
    /// The JWT secret (at least 32 bytes); implies --jwt.
    #[arg(long)]
    jwt_secret: Option<String>,
    /// Events per request, 1 to 100 (above 1 the body is a JSON array).
    #[arg(long, default_value_t = 1)]
    chunk_size: u32,
    /// Least ms between the starts of two requests.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u32,
    /// Most requests per second (0: no limit).
    #[arg(long, default_value_t = 0)]
    rate_limit: u32,
    /// Accept any TLS certificate (self-signed receivers in development).
    #[arg(long)]
    insecure_tls: bool,
}

impl DeliveryOpts {
    fn apply(self, spec: &mut EndpointSpec) {
        spec.signature_scheme = self.signature_scheme.map_or(0, Scheme::proto);
        spec.omit_standard_signature = self.no_standard_signature;
        spec.body_signature = self.body_signature_header.map(|header| BodySignature {
            header,
            encoding: if self.body_signature_base64 {
                SignatureEncoding::Base64
            } else {
                SignatureEncoding::Hex
            } as i32,
        });
        let kind = if let Some((username, password)) = self.basic_auth {
            Some(receiver_auth::Kind::Basic(BasicAuth { username, password }))
        } else if self.jwt || self.jwt_secret.is_some() {
            Some(receiver_auth::Kind::Jwt(JwtAuth {
                secret: self.jwt_secret.unwrap_or_default(),
                ttl_secs: 0,
                ..Default::default()
            }))
        } else {
            None
        };
        spec.auth = kind.map(|k| ReceiverAuth { kind: Some(k) });
        spec.chunk_size = self.chunk_size;
        spec.chunk_delay_ms = self.chunk_delay_ms;
        spec.rate_limit_per_sec = self.rate_limit;
        spec.insecure_tls = self.insecure_tls;
    }
}

/// Parses `user:password`.
pub fn parse_basic(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok((u.to_string(), p.to_string())),
        _ => Err("expected user:password".into()),
    }
}

/// How the endpoint signs and authenticates, in words (no secrets).
fn security(s: &EndpointSpec) -> String {
    let mut parts = Vec::new();
    if !s.omit_standard_signature {
        let scheme = if s.signature_scheme() == SignatureScheme::Ed25519 {
            "v1a ed25519"
        } else {
            "v1 hmac"
        };
        parts.push(format!("standard-webhooks({scheme})"));
    }
    if let Some(b) = &s.body_signature {
        let enc = if b.encoding() == SignatureEncoding::Base64 {
            "base64"
        } else {
            "hex"
        };
        parts.push(format!("body-hmac({}, {enc})", b.header));
    }
    match s.auth.as_ref().and_then(|a| a.kind.as_ref()) {
        Some(receiver_auth::Kind::Basic(b)) => parts.push(format!("basic({})", b.username)),
        Some(receiver_auth::Kind::Jwt(j)) => parts.push(format!("jwt(ttl {}s)", j.ttl_secs)),
        None => {}
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(" + ")
    }
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
        "filters": s.filters.iter().map(crate::endpoint_update::filter_text).collect::<Vec<_>>(),
        "filter_rules": s.filter_rules.iter().map(crate::endpoint_update::filter_rule_json).collect::<Vec<_>>(),
        "security": security(&s),
        "chunk_size": s.chunk_size,
        "chunk_delay_ms": s.chunk_delay_ms,
        "rate_limit_per_sec": s.rate_limit_per_sec,
        "insecure_tls": s.insecure_tls,
        "previous_secret_expires_at_ms": e.previous_secret_expires_at_ms,
        "signing_public_keys": e.signing_public_keys,
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
        ("security", security(&s)),
        (
            "throttle",
            format!(
                "chunk {} · delay {} ms · {} req/s",
                s.chunk_size.max(1),
                s.chunk_delay_ms,
                if s.rate_limit_per_sec == 0 {
                    "unlimited".to_string()
                } else {
                    s.rate_limit_per_sec.to_string()
                }
            ),
        ),
        ("insecure tls", s.insecure_tls.to_string()),
        ("public keys", e.signing_public_keys.join(" ")),
        (
            "previous secret until",
            if e.previous_secret_expires_at_ms > 0 {
                time(e.previous_secret_expires_at_ms)
            } else {
                "-".into()
            },
        ),
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
pub async fn run(channel: Ch, out: Format, cmd: Cmd) -> Result<()> {
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
            opts,
        } => {
            let mut spec = EndpointSpec {
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
            opts.apply(&mut spec);
            let req = CreateEndpointRequest {
                tenant_id: tenant,
                spec: Some(spec),
            };
            let resp = client.create_endpoint(req).await?.into_inner();
            let ep = resp.endpoint.unwrap_or_default();
            let secret = resp.signing_secret;
            let mut json = json!({ "endpoint": to_json(&ep), "signing_secret": secret });
            let mut rows = detail_rows(&ep);
            rows.push(vec!["signing secret".into(), secret]);
            if !resp.jwt_secret.is_empty() {
                json["jwt_secret"] = json!(resp.jwt_secret);
                rows.push(vec!["jwt secret".into(), resp.jwt_secret]);
            }
            out.emit(&json, &["FIELD", "VALUE"], &rows);
        }
        Cmd::Update(args) => {
            let ep = crate::endpoint_update::update(channel, *args).await?;
            out.emit(&to_json(&ep), &["FIELD", "VALUE"], &detail_rows(&ep));
        }
        Cmd::Enable { tenant, id } => {
            let ep =
                crate::endpoint_update::modify(channel, &tenant, &id, |s| s.enabled = true).await?;
            out.emit(&to_json(&ep), &["FIELD", "VALUE"], &detail_rows(&ep));
        }
        Cmd::Disable { tenant, id } => {
            let ep = crate::endpoint_update::modify(channel, &tenant, &id, |s| s.enabled = false)
                .await?;
            out.emit(&to_json(&ep), &["FIELD", "VALUE"], &detail_rows(&ep));
        }
        Cmd::List { tenant } => {
            // Every page, in id order.
            let mut eps = Vec::new();
            let mut page_token = String::new();
            loop {
                let req = ListEndpointsRequest {
                    tenant_id: tenant.clone(),
                    page_token,
                    ..Default::default()
                };
                let page = client.list_endpoints(req).await?.into_inner();
                eps.extend(page.endpoints);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
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
        Cmd::RotateSecret {
            tenant,
            endpoint_id,
            jwt,
            overlap_secs,
            secret,
            scheme,
        } => {
            let req = RotateSecretRequest {
                tenant_id: tenant,
                id: endpoint_id,
                kind: if jwt {
                    SecretKind::Jwt
                } else {
                    SecretKind::Signing
                } as i32,
                secret: secret.unwrap_or_default(),
                overlap_secs,
                scheme: scheme.map_or(0, Scheme::proto),
            };
            let resp = client.rotate_secret(req).await?.into_inner();
            let ep = resp.endpoint.unwrap_or_default();
            let json = json!({ "endpoint": to_json(&ep), "secret": resp.secret });
            let mut rows = detail_rows(&ep);
            rows.push(vec!["new secret".into(), resp.secret]);
            out.emit(&json, &["FIELD", "VALUE"], &rows);
        }
        Cmd::Secret {
            tenant,
            endpoint_id,
        } => {
            let req = GetEndpointSecretRequest {
                tenant_id: tenant,
                id: endpoint_id,
            };
            let s = client.get_endpoint_secret(req).await?.into_inner();
            out.emit(&secrets_json(&s), &["FIELD", "VALUE"], &secrets_rows(&s));
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

/// `endpoint secret --output json`.
fn secrets_json(s: &GetEndpointSecretResponse) -> Value {
    json!({
        "signing_secret": s.signing_secret,
        "previous_signing_secrets": s.previous_signing_secrets.iter().map(|p| json!({
            "secret": p.secret,
            "expires_at_ms": p.expires_at_ms,
        })).collect::<Vec<_>>(),
        "jwt_secret": s.jwt_secret,
        "basic_password": s.basic_password,
    })
}

/// `endpoint secret` as a table: only the secrets the endpoint has.
fn secrets_rows(s: &GetEndpointSecretResponse) -> Vec<Vec<String>> {
    let mut rows = vec![vec!["signing secret".into(), s.signing_secret.clone()]];
    for p in &s.previous_signing_secrets {
        rows.push(vec![
            format!("previous (until {})", time(p.expires_at_ms)),
            p.secret.clone(),
        ]);
    }
    if !s.jwt_secret.is_empty() {
        rows.push(vec!["jwt secret".into(), s.jwt_secret.clone()]);
    }
    if !s.basic_password.is_empty() {
        rows.push(vec!["basic password".into(), s.basic_password.clone()]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_show_only_what_the_endpoint_has() {
        let s = GetEndpointSecretResponse {
            signing_secret: "whsec_new".into(),
            previous_signing_secrets: vec![herald_proto::v1::ExpiringSecret {
                secret: "whsec_old".into(),
                expires_at_ms: 0,
            }],
            jwt_secret: String::new(),
            basic_password: "pw".into(),
        };
        let rows = secrets_rows(&s);
        let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(rows[1][1], "whsec_old");
        assert_eq!(rows[2], ["basic password", "pw"]);
        assert_eq!(
            secrets_json(&s)["previous_signing_secrets"][0]["secret"],
            "whsec_old"
        );
    }

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
