//! The configuration records Herald keeps in etcd, as JSON. The etcd
//! `mod_revision` of a record's key is its revision for optimistic
//! concurrency; it is not stored inside the record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An event type of the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventTypeRecord {
    /// Dotted name, the key.
    pub name: String,
    /// Group a console lists it under.
    pub group: String,
    /// A name for people ("Job Created"); the dotted name stays the key.
    /// Not written when empty, so records without one stay readable by
    /// earlier versions (which refuse unknown fields).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Free text.
    pub description: String,
    /// Optional JSON Schema, as JSON text.
    pub schema_json: String,
    /// Optional example payload, as JSON text.
    pub example_json: String,
    /// Archived types are refused by Publish.
    pub archived: bool,
    /// Creation time, ms since the epoch.
    pub created_at_ms: i64,
}

/// A tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantRecord {
    /// Caller-chosen id, the key.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Creation time, ms since the epoch.
    pub created_at_ms: i64,
}

/// HTTP method of a delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// The envelope in the body (the default).
    #[default]
    Post,
    /// No body; for receivers that only take a signed token.
    Get,
}

/// An endpoint with everything an agent needs to deliver to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EndpointRecord {
    /// Generated id (`ep_...`).
    pub id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Target URL.
    pub url: String,
    /// POST or GET.
    pub method: Method,
    /// Disabled endpoints are not delivered to (see `queue_while_disabled`).
    pub enabled: bool,
    /// Subscribed event type names and patterns.
    pub event_types: Vec<String>,
    /// Extra request headers.
    pub headers: BTreeMap<String, String>,
    /// JSON object text added to every delivery, or empty.
    pub custom_data_json: String,
    /// Per-attempt timeout in ms.
    pub timeout_ms: u32,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
    /// Retry delays in ms; `None` means [`crate::retry::DEFAULT_SCHEDULE_MS`].
    pub retry_schedule_ms: Option<Vec<u64>>,
    /// 0: ordered (the default); otherwise unordered with at most this many
    /// deliveries in flight.
    pub max_in_flight: u32,
    /// Deliveries failed for good in a row before Herald disables it.
    pub disable_after_failures: u32,
    /// While disabled, new events still queue for it (default: they skip it).
    pub queue_while_disabled: bool,
    /// Publishes with one of these skip keys do not trigger it.
    pub skip_keys: Vec<String>,
    /// Payload conditions, all of which must hold.
    pub filters: Vec<FilterRecord>,
    /// Conditions scoped by event type, each of which must hold for the
    /// event types it names.
    pub filter_rules: Vec<FilterRuleRecord>,
    /// Trigger only when one of these payload fields changed.
    pub on_field_change: Vec<String>,
    /// Deliver only these payload fields.
    pub load_only: Vec<String>,
    /// Why Herald disabled it; empty otherwise.
    pub disabled_reason: String,
    /// When Herald disabled it (ms), 0 otherwise.
    pub disabled_at_ms: i64,
    /// Standard Webhooks secrets, newest first. Never listed by the API.
    pub signing_secrets: Vec<String>,
    /// Earlier signing secrets that keep signing until they expire (a
    /// rotation's overlap window).
    pub previous_secrets: Vec<ExpiringSecretRecord>,
    /// Leave out the Standard Webhooks headers.
    pub omit_standard_signature: bool,
    /// Body HMAC header, if any.
    pub body_signature: Option<BodySignatureRecord>,
    /// Receiver authentication, with its secret.
    pub auth: Option<AuthRecord>,
    /// Events per request (1 to 100).
    pub chunk_size: u32,
    /// Least ms between the starts of two requests.
    pub chunk_delay_ms: u32,
    /// Most requests per second; 0: no limit.
    pub rate_limit_per_sec: u32,
    /// Accept any TLS certificate.
    pub insecure_tls: bool,
    /// Creation time, ms since the epoch.
    pub created_at_ms: i64,
    /// Last update time, ms since the epoch.
    pub updated_at_ms: i64,
}

/// A signing secret inside its rotation overlap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExpiringSecretRecord {
    /// The `whsec_...` secret.
    pub secret: String,
    /// When it stops signing, ms since the epoch.
    pub expires_at_ms: i64,
}

/// A body HMAC header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BodySignatureRecord {
    /// Header name, lower case.
    pub header: String,
    /// Base64 instead of hex.
    pub base64: bool,
}

/// JWT claim names an endpoint's own claims may not use: the registered
/// ones (RFC 7519 §4.1) and those Herald sets.
pub const JWT_RESERVED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "endpoint_id",
    "endpoint_name",
    "tenant_id",
    "event_id",
    "event_type",
    "event_count",
    "resource",
    "triggered_at",
    "last_success_at",
    "last_failure_at",
    "processing_timeout",
    "data",
];

/// How Herald authenticates to a receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AuthRecord {
    /// HTTP Basic.
    Basic {
        /// User name.
        username: String,
        /// Password (a secret).
        password: String,
    },
    /// Bearer JWT, HS256.
    Jwt {
        /// Signing secret (a secret).
        secret: String,
        /// Token lifetime in seconds.
        ttl_secs: u32,
        /// Static claims added to Herald's (a JSON object), or empty. Not
        /// written when empty, so earlier versions still read the record.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        claims_json: String,
    },
}

impl EndpointRecord {
    /// The signing secrets in force at `now_ms`: the current one, then the
    /// previous ones still inside their overlap window.
    pub fn live_secrets(&self, now_ms: i64) -> Vec<String> {
        let mut out = self.signing_secrets.clone();
        out.extend(
            self.previous_secrets
                .iter()
                .filter(|p| p.expires_at_ms > now_ms)
                .map(|p| p.secret.clone()),
        );
        out
    }

    /// Whether its current signing key is Ed25519 (`v1a`) rather than HMAC.
    pub fn signs_with_ed25519(&self) -> bool {
        self.signing_secrets
            .first()
            .is_some_and(|s| crate::signing::is_private_key(s))
    }

    /// The retry schedule in force.
    pub fn retry_schedule(&self) -> Vec<u64> {
        self.retry_schedule_ms
            .clone()
            .unwrap_or_else(|| crate::retry::DEFAULT_SCHEDULE_MS.to_vec())
    }

    /// Whether publishes should queue for this endpoint at all now.
    pub fn accepts_events(&self) -> bool {
        self.enabled || self.queue_while_disabled
    }

    /// Whether this endpoint wants events of type `name`. Herald's own
    /// events reach only patterns that name their prefix (`herald.*`), not
    /// a catch-all `*`.
    pub fn subscribes_to(&self, name: &str) -> bool {
        let own = crate::operational::is_operational(name);
        self.event_types
            .iter()
            .any(|p| (!own || crate::operational::opts_in(p)) && crate::pattern::matches(p, name))
    }
}

/// A payload condition as stored (see [`crate::filter::Filter`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilterRecord {
    /// Dotted path.
    pub path: String,
    /// Operator name: eq, ne, in, not_in, gt, gte, lt, lte, contains, exists.
    pub op: String,
    /// JSON value; empty for exists.
    pub value_json: String,
}

/// Conditions for some event types (see [`crate::filter::ScopedRule`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FilterRuleRecord {
    /// Event type names or patterns; empty: every type.
    pub event_types: Vec<String>,
    /// All must hold.
    pub all_of: Vec<FilterRecord>,
    /// At least one must hold, when not empty.
    pub any_of: Vec<FilterRecord>,
}

/// Where agents register, relative to the etcd prefix: `agents/{id}`.
pub const AGENTS_DIR: &str = "agents/";

/// A live agent, as it registers itself under its lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentRecord {
    /// Stable id, kept in the agent's data dir.
    pub id: String,
    /// Address of its ingest gRPC service (`host:port`).
    pub ingest_addr: String,
    /// When this incarnation started, ms since the epoch.
    pub started_at_ms: i64,
    /// Leaving: it owns no slots and hands its work to the others.
    pub draining: bool,
}

/// Which agent owns each slot, at an epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SlotMap {
    /// Bumped on every change; agents refuse work routed by another epoch.
    pub epoch: u64,
    /// Number of slots.
    pub slot_count: u32,
    /// Agents in the map.
    pub agents: Vec<AgentRecord>,
    /// For each slot, an index into `agents`; empty when no agents.
    pub owners: Vec<u16>,
    /// Slots whose owner must first receive the queues of these earlier
    /// owners (agent ids) before it delivers anything in them.
    pub handoffs: BTreeMap<u32, Vec<String>>,
    /// Agents that died holding slots, with how long (ms since the epoch)
    /// their slots' new owners wait for them to come back and hand over
    /// their queues before delivering newer events first.
    pub dead: BTreeMap<String, i64>,
    /// Agents whose wait ran out (id → when): newer events of their slots
    /// went first, so whatever they still hold is late. Cleared when the
    /// agent, back, has marked its leftovers.
    pub abandoned: BTreeMap<String, i64>,
}

impl SlotMap {
    /// The agent owning `slot`, if any.
    pub fn owner(&self, slot: u32) -> Option<&AgentRecord> {
        let i = *self.owners.get(slot as usize)?;
        self.agents.get(usize::from(i))
    }

    /// Slots `agent_id` owns but waits to be handed, with whom from.
    pub fn incoming_of(&self, agent_id: &str) -> Vec<(u32, String)> {
        self.handoffs
            .iter()
            .filter(|(s, _)| self.owner(**s).is_some_and(|a| a.id == agent_id))
            .flat_map(|(s, from)| from.iter().map(move |f| (*s, f.clone())))
            .collect()
    }

    /// Slots `agent_id` must hand to their owners.
    pub fn outgoing_of(&self, agent_id: &str) -> Vec<u32> {
        self.handoffs
            .iter()
            .filter(|(_, from)| from.iter().any(|f| f == agent_id))
            .map(|(s, _)| *s)
            .collect()
    }

    /// The slots owned by `agent_id`.
    pub fn slots_of(&self, agent_id: &str) -> Vec<u32> {
        self.owners
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                self.agents
                    .get(usize::from(**i))
                    .is_some_and(|a| a.id == agent_id)
            })
            .map(|(s, _)| s as u32)
            .collect()
    }
}
