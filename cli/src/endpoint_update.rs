//! `herald endpoint update|enable|disable`: change an endpoint's settings.
//! The CLI reads the endpoint, changes what the flags name and writes it
//! back with the revision it read; if another write came in between, it
//! reads again and retries, so the caller never handles revisions.

use anyhow::{Result, bail};
use clap::ValueEnum;
use herald_proto::v1::endpoint_service_client::EndpointServiceClient;
use herald_proto::v1::{
    BasicAuth, BodySignature, Endpoint, EndpointSpec, Filter, FilterOp, FilterRule,
    GetEndpointRequest, JwtAuth, Ordering, ReceiverAuth, RetryPolicy, SignatureEncoding,
    UpdateEndpointRequest, receiver_auth,
};

use crate::connect::Ch;
use crate::endpoint::parse_header;

/// How many times a write is retried after losing a race.
const ATTEMPTS: usize = 5;

/// Delivery order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OrderingArg {
    /// One request at a time, in publish order.
    Ordered,
    /// Up to --max-in-flight at once.
    Unordered,
}

/// Flags of `endpoint update`: each one given replaces that setting; the
/// others stay as they are. Repeatable flags replace the whole list.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// Tenant id.
    #[arg(long)]
    tenant: String,
    /// Endpoint id.
    #[arg(long)]
    id: String,
    /// Name.
    #[arg(long)]
    name: Option<String>,
    /// Description.
    #[arg(long)]
    description: Option<String>,
    /// Delivery URL.
    #[arg(long)]
    url: Option<String>,
    /// Event type names or patterns (replace the list).
    #[arg(long = "event-type")]
    event_types: Vec<String>,
    /// Extra request headers as `key=value` (replace the set).
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Remove every extra header.
    #[arg(long, conflicts_with = "headers")]
    clear_headers: bool,
    /// Labels as `key=value` (replace the set).
    #[arg(long = "label", value_parser = parse_header)]
    labels: Vec<(String, String)>,
    /// JSON object added to every delivery as custom_data ("" removes it).
    #[arg(long)]
    custom_data_json: Option<String>,
    /// Per-attempt timeout in ms.
    #[arg(long)]
    timeout_ms: Option<u32>,
    /// Keep queueing events while disabled.
    #[arg(long)]
    queue_while_disabled: Option<bool>,
    /// Retry delays in ms, comma-separated ("" for no retries).
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    retry_delays_ms: Option<Vec<u32>>,
    /// Deliveries failed in a row before Herald disables the endpoint.
    #[arg(long)]
    disable_after_failures: Option<u32>,
    /// Delivery order.
    #[arg(long, value_enum)]
    ordering: Option<OrderingArg>,
    /// Requests in flight at once (unordered only).
    #[arg(long)]
    max_in_flight: Option<u32>,
    /// Skip keys (replace the list).
    #[arg(long = "skip-key")]
    skip_keys: Vec<String>,
    /// Filters as `path op json`, e.g. `status eq "paid"` (replace the
    /// list); op is eq, ne, in, not_in, gt, gte, lt, lte, contains or
    /// exists.
    #[arg(long = "filter", value_parser = parse_filter)]
    filters: Vec<Filter>,
    /// Remove every filter.
    #[arg(long, conflicts_with = "filters")]
    clear_filters: bool,
    /// A rule for some event types, as JSON (replace the list), e.g.
    /// `{"event_types": ["Contact.*"], "all_of": ["country eq \"FR\""],
    /// "any_of": ["tier eq \"gold\"", "revenue gte 1000000"]}`.
    #[arg(long = "filter-rule", value_parser = parse_filter_rule)]
    filter_rules: Vec<FilterRule>,
    /// Remove every filter rule.
    #[arg(long, conflicts_with = "filter_rules")]
    clear_filter_rules: bool,
    /// Deliver updates only when one of these fields changed (replace).
    #[arg(long = "on-field-change")]
    on_field_change: Vec<String>,
    /// Deliver only these payload fields (replace).
    #[arg(long = "load-only")]
    load_only: Vec<String>,
    /// Events per request.
    #[arg(long)]
    chunk_size: Option<u32>,
    /// Least ms between two requests.
    #[arg(long)]
    chunk_delay_ms: Option<u32>,
    /// Most requests per second (0: no limit).
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Accept any TLS certificate.
    #[arg(long)]
    insecure_tls: Option<bool>,
    /// HTTP Basic auth as `user:password`.
    #[arg(long, value_parser = crate::endpoint::parse_basic, conflicts_with_all = ["jwt_secret", "no_auth"])]
    basic_auth: Option<(String, String)>,
    /// Bearer JWT signed with this secret (at least 32 bytes).
    #[arg(long, conflicts_with = "no_auth")]
    jwt_secret: Option<String>,
    /// Remove receiver authentication.
    #[arg(long)]
    no_auth: bool,
    /// Header of a body HMAC ("" removes it).
    #[arg(long)]
    body_signature_header: Option<String>,
    /// Leave out (true) or send (false) the Standard Webhooks headers.
    #[arg(long)]
    omit_standard_signature: Option<bool>,
}

/// Parses `path op json`.
pub fn parse_filter(s: &str) -> Result<Filter, String> {
    let mut parts = s.splitn(3, ' ');
    let (Some(path), Some(op)) = (parts.next(), parts.next()) else {
        return Err(format!("expected 'path op json', got {s:?}"));
    };
    let op = FilterOp::from_str_name(&format!("FILTER_OP_{}", op.to_uppercase()))
        .filter(|op| *op != FilterOp::Unspecified)
        .ok_or_else(|| format!("unknown operator {op:?}"))?;
    Ok(Filter {
        path: path.to_string(),
        op: op as i32,
        value_json: parts.next().unwrap_or("").to_string(),
    })
}

/// `path op json`, the inverse of [`parse_filter`].
pub fn filter_text(f: &Filter) -> String {
    let op = FilterOp::try_from(f.op).unwrap_or(FilterOp::Unspecified);
    let op = op.as_str_name().trim_start_matches("FILTER_OP_");
    format!("{} {} {}", f.path, op.to_lowercase(), f.value_json)
        .trim_end()
        .to_string()
}

/// Parses a rule: JSON with `event_types`, `all_of` and `any_of`, the
/// conditions as `path op json` strings.
fn parse_filter_rule(s: &str) -> Result<FilterRule, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Given {
        #[serde(default)]
        event_types: Vec<String>,
        #[serde(default)]
        all_of: Vec<String>,
        #[serde(default)]
        any_of: Vec<String>,
    }
    let g: Given = serde_json::from_str(s).map_err(|e| format!("not a filter rule: {e}"))?;
    let list = |v: Vec<String>| {
        v.iter()
            .map(|c| parse_filter(c))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(FilterRule {
        event_types: g.event_types,
        all_of: list(g.all_of)?,
        any_of: list(g.any_of)?,
    })
}

/// A rule as the JSON `--filter-rule` takes.
pub fn filter_rule_json(r: &FilterRule) -> serde_json::Value {
    serde_json::json!({
        "event_types": r.event_types,
        "all_of": r.all_of.iter().map(filter_text).collect::<Vec<_>>(),
        "any_of": r.any_of.iter().map(filter_text).collect::<Vec<_>>(),
    })
}

impl UpdateArgs {
    /// The tenant and endpoint named.
    pub fn target(&self) -> (String, String) {
        (self.tenant.clone(), self.id.clone())
    }

    /// Changes `s` as the flags say.
    fn apply(&self, s: &mut EndpointSpec) {
        let set = |dst: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                dst.clone_from(v);
            }
        };
        set(&mut s.name, &self.name);
        set(&mut s.description, &self.description);
        set(&mut s.url, &self.url);
        set(&mut s.custom_data_json, &self.custom_data_json);
        let replace = |dst: &mut Vec<String>, v: &Vec<String>| {
            if !v.is_empty() {
                dst.clone_from(v);
            }
        };
        replace(&mut s.event_types, &self.event_types);
        replace(&mut s.skip_keys, &self.skip_keys);
        replace(&mut s.on_field_change, &self.on_field_change);
        replace(&mut s.load_only, &self.load_only);
        if self.clear_headers || !self.headers.is_empty() {
            s.headers = self.headers.iter().cloned().collect();
        }
        if !self.labels.is_empty() {
            s.labels = self.labels.iter().cloned().collect();
        }
        if self.clear_filters || !self.filters.is_empty() {
            s.filters.clone_from(&self.filters);
        }
        if self.clear_filter_rules || !self.filter_rules.is_empty() {
            s.filter_rules.clone_from(&self.filter_rules);
        }
        let num = |dst: &mut u32, v: Option<u32>| {
            if let Some(v) = v {
                *dst = v;
            }
        };
        num(&mut s.timeout_ms, self.timeout_ms);
        num(&mut s.disable_after_failures, self.disable_after_failures);
        num(&mut s.max_in_flight, self.max_in_flight);
        num(&mut s.chunk_size, self.chunk_size);
        num(&mut s.chunk_delay_ms, self.chunk_delay_ms);
        num(&mut s.rate_limit_per_sec, self.rate_limit);
        if let Some(v) = self.queue_while_disabled {
            s.queue_while_disabled = v;
        }
        if let Some(v) = self.insecure_tls {
            s.insecure_tls = v;
        }
        if let Some(v) = self.omit_standard_signature {
            s.omit_standard_signature = v;
        }
        if let Some(d) = &self.retry_delays_ms {
            s.retry = Some(RetryPolicy {
                delays_ms: d.clone(),
            });
        }
        if let Some(o) = self.ordering {
            s.ordering = match o {
                OrderingArg::Ordered => Ordering::Ordered,
                OrderingArg::Unordered => Ordering::Unordered,
            } as i32;
            if o == OrderingArg::Ordered {
                s.max_in_flight = 0;
            }
        }
        self.apply_auth(s);
    }

    fn apply_auth(&self, s: &mut EndpointSpec) {
        if self.no_auth {
            s.auth = None;
        } else if let Some((username, password)) = &self.basic_auth {
            let kind = receiver_auth::Kind::Basic(BasicAuth {
                username: username.clone(),
                password: password.clone(),
            });
            s.auth = Some(ReceiverAuth { kind: Some(kind) });
        } else if let Some(secret) = &self.jwt_secret {
            let kind = receiver_auth::Kind::Jwt(JwtAuth {
                secret: secret.clone(),
                ttl_secs: 0,
                ..Default::default()
            });
            s.auth = Some(ReceiverAuth { kind: Some(kind) });
        }
        match self.body_signature_header.as_deref() {
            None => {}
            Some("") => s.body_signature = None,
            Some(h) => {
                s.body_signature = Some(BodySignature {
                    header: h.to_string(),
                    encoding: SignatureEncoding::Hex as i32,
                })
            }
        }
    }
}

/// Reads the endpoint, changes its spec with `change` and writes it back
/// at the revision read; retries when another write came in between.
pub async fn modify(
    channel: Ch,
    tenant: &str,
    id: &str,
    change: impl Fn(&mut EndpointSpec),
) -> Result<Endpoint> {
    let mut client = EndpointServiceClient::new(channel);
    for _ in 0..ATTEMPTS {
        let current = client
            .get_endpoint(GetEndpointRequest {
                tenant_id: tenant.to_string(),
                id: id.to_string(),
            })
            .await?
            .into_inner();
        let mut spec = current.spec.clone().unwrap_or_default();
        change(&mut spec);
        let req = UpdateEndpointRequest {
            tenant_id: tenant.to_string(),
            id: id.to_string(),
            spec: Some(spec),
            expected_revision: current.revision,
        };
        match client.update_endpoint(req).await {
            Ok(r) => return Ok(r.into_inner()),
            // Stale revision: someone wrote in between; read again.
            Err(s)
                if s.code() == tonic::Code::FailedPrecondition
                    && s.message().contains("changed since revision") => {}
            Err(s) => return Err(s.into()),
        }
    }
    bail!("the endpoint kept changing; {ATTEMPTS} attempts lost the race")
}

/// `endpoint update`.
pub async fn update(channel: Ch, args: UpdateArgs) -> Result<Endpoint> {
    let (tenant, id) = args.target();
    modify(channel, &tenant, &id, |s| args.apply(s)).await
}
