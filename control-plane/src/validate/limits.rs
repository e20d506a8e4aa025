//! Every limit the API edge enforces, in one place. The README's table of
//! limits is rendered from [`table`], and a test keeps the two equal.
//!
//! The limits are chosen so that whatever is accepted fits in one etcd
//! request (1.5 MiB by default; the largest spec these limits allow
//! encodes to well under [`MAX_STORED_SPEC`]) and can be built into an
//! HTTP request by an agent.

use herald_shared::ids::MAX_NAME_LEN;

/// Longest free-text field (names, descriptions, resource and actor ids).
pub const MAX_TEXT: usize = 1024;
/// Longest type field of a resource or actor.
pub const MAX_KIND: usize = 128;
/// Largest custom data, schema or example JSON.
pub const MAX_JSON_FIELD: usize = 64 * 1024;
/// Longest idempotency key.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;
/// Longest skip key (publish) or entry of `skip_keys` (endpoint).
pub const MAX_SKIP_KEY: usize = 128;
/// Most names in `changed_fields`, `on_field_change` or `load_only`.
pub const MAX_PATHS: usize = 100;
/// Longest dotted field path (enforced by the filter module).
pub const MAX_PATH: usize = 256;
/// Latest `occurred_at_ms`: 9999-12-31T23:59:59.999Z, the last instant an
/// RFC 3339 timestamp (four-digit year) can say.
pub const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;
/// What the envelope adds to a payload at most: ids, type, timestamp,
/// tenant, resource and actor, JSON-escaped. A delivered body is at most
/// payload + this + custom data.
pub const MAX_ENVELOPE_OVERHEAD: usize = 8 * 1024;
/// Most events in one PublishBatch.
pub const MAX_BATCH: usize = 100;

/// Longest endpoint URL.
pub const MAX_URL: usize = 2048;
/// Most event types or patterns one endpoint subscribes to.
pub const MAX_EVENT_TYPES: usize = 256;
/// Most custom headers of one endpoint.
pub const MAX_HEADERS: usize = 100;
/// Longest custom header name.
pub const MAX_HEADER_NAME: usize = 128;
/// Longest custom header value.
pub const MAX_HEADER_VALUE: usize = 8192;
/// Largest sum of custom header names and values of one endpoint.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most labels of one endpoint.
pub const MAX_LABELS: usize = 64;
/// Longest label key.
pub const MAX_LABEL_KEY: usize = 128;
/// Longest label value.
pub const MAX_LABEL_VALUE: usize = 256;
/// Most skip keys of one endpoint.
pub const MAX_SKIP_KEYS: usize = 100;
/// Most conditions of one endpoint: its filters and those of every rule.
pub const MAX_FILTERS: usize = 50;
/// Most scoped filter rules of one endpoint.
pub const MAX_FILTER_RULES: usize = 20;
/// Most event type names or patterns one filter rule names.
pub const MAX_RULE_EVENT_TYPES: usize = 32;
/// Longest filter value (JSON text).
pub const MAX_FILTER_VALUE: usize = 4096;
/// Longest Basic auth username or password.
pub const MAX_BASIC: usize = 256;
/// Longest JWT secret.
pub const MAX_JWT_SECRET: usize = 512;
/// Largest JSON of an endpoint's own JWT claims.
pub const MAX_JWT_CLAIMS: usize = 4096;
/// Largest encoded endpoint record: a backstop under etcd's request limit
/// (the limits above keep a spec far below it).
pub const MAX_STORED_SPEC: usize = 1024 * 1024;

/// Most endpoints per ListEndpoints page (tenants per ListTenants page).
pub const MAX_ENDPOINT_PAGE: usize = 1000;
/// Endpoints per ListEndpoints page (tenants per ListTenants page) when
/// the caller says nothing.
pub const DEFAULT_ENDPOINT_PAGE: usize = 500;
/// Most statuses or event type patterns in one ListDeliveries filter.
pub const MAX_LIST_FILTERS: usize = 100;
/// Longest page token.
pub const MAX_PAGE_TOKEN: usize = 256;

/// The README's table of limits: (request and field, limit) rows.
pub fn table() -> Vec<(&'static str, String)> {
    let name = format!(
        "1..={MAX_NAME_LEN} bytes of `A-Z a-z 0-9 _ - .`, no leading, trailing or double dot"
    );
    vec![
        (
            "any id or name: tenant, endpoint, event type, event, delivery, agent",
            name,
        ),
        (
            "event type pattern (endpoint `event_types`, list filter)",
            format!("1..={MAX_NAME_LEN} bytes of the name characters and `*`"),
        ),
        (
            "free text: tenant name, endpoint name and description, event type group and description",
            format!("at most {MAX_TEXT} bytes"),
        ),
        (
            "event type `display_name`",
            format!("at most {MAX_KIND} bytes, no control characters"),
        ),
        (
            "`schema_json`, `example_json`, `custom_data_json`",
            format!("JSON, at most {MAX_JSON_FIELD} bytes (custom data: an object)"),
        ),
        (
            "Publish `payload_json`, `previous_payload_json`",
            "a JSON object of at most `--max-payload-bytes` (default 262144)".into(),
        ),
        (
            "Publish `resource.type`, `actor.type`",
            format!("1..={MAX_KIND} bytes (actor: may be empty), no control characters"),
        ),
        (
            "Publish `resource.id`, `actor.id`, `actor.name`",
            format!("1..={MAX_TEXT} bytes (name: may be empty), no control characters"),
        ),
        (
            "Publish `idempotency_key`",
            format!("at most {MAX_IDEMPOTENCY_KEY} bytes"),
        ),
        (
            "Publish `skip_key`; endpoint `skip_keys`",
            format!("at most {MAX_SKIP_KEY} bytes; at most {MAX_SKIP_KEYS} keys"),
        ),
        (
            "Publish `changed_fields`; endpoint `on_field_change`, `load_only`",
            format!("at most {MAX_PATHS} dotted paths of 1..={MAX_PATH} bytes"),
        ),
        (
            "Publish `occurred_at_ms`",
            format!("0 (now) ..= {MAX_TIMESTAMP_MS} (9999-12-31T23:59:59.999Z)"),
        ),
        ("PublishBatch `events`", format!("1..={MAX_BATCH}")),
        (
            "delivered body, per event",
            format!("payload + custom data + at most {MAX_ENVELOPE_OVERHEAD} bytes of envelope"),
        ),
        (
            "endpoint `url`",
            format!(
                "`https://` (or `http://` with `--allow-http`) URL of at most {MAX_URL} bytes with a host (a DNS name of at most 253 bytes, labels of 1 to 63, or an IP address); no credentials, fragment, port 0, spaces, control characters or backslashes"
            ),
        ),
        (
            "endpoint `event_types`",
            format!("1..={MAX_EVENT_TYPES} names or patterns"),
        ),
        (
            "endpoint `headers`",
            format!(
                "at most {MAX_HEADERS}; names: RFC 9110 tokens of at most {MAX_HEADER_NAME} bytes, not set by Herald nor hop-by-hop; values: visible ASCII, space and tab, no leading or trailing space, at most {MAX_HEADER_VALUE} bytes; at most {MAX_HEADER_BYTES} bytes in all"
            ),
        ),
        (
            "endpoint `labels`",
            format!(
                "at most {MAX_LABELS}; keys 1..={MAX_LABEL_KEY} bytes, values at most {MAX_LABEL_VALUE} bytes, no control characters"
            ),
        ),
        (
            "endpoint `filters`",
            format!(
                "at most {MAX_FILTERS}; path 1..={MAX_PATH} bytes, value JSON of at most {MAX_FILTER_VALUE} bytes"
            ),
        ),
        (
            "endpoint `filter_rules`",
            format!(
                "at most {MAX_FILTER_RULES}; each names at most {MAX_RULE_EVENT_TYPES} event types or patterns and has at least one condition in `all_of` or `any_of`, each checked as a filter; at most {MAX_FILTERS} conditions in all, counting `filters`"
            ),
        ),
        (
            "endpoint `retry.delays_ms`",
            format!(
                "at most {} delays of at most {} ms",
                herald_shared::retry::MAX_RETRIES,
                herald_shared::retry::MAX_DELAY_MS
            ),
        ),
        (
            "endpoint `body_signature.header`",
            "as a header name, and not one `headers` sets".to_string(),
        ),
        (
            "endpoint `auth.basic`",
            format!(
                "username 1..={MAX_BASIC} bytes without `:`; password at most {MAX_BASIC} bytes; no control characters"
            ),
        ),
        (
            "endpoint `auth.jwt.claims_json`",
            format!(
                "a JSON object of at most {MAX_JWT_CLAIMS} bytes; no registered JWT claim (iss, sub, aud, exp, nbf, iat, jti) nor one Herald sets"
            ),
        ),
        (
            "endpoint `auth.jwt.secret`, RotateSecret JWT `secret`",
            format!(
                "empty (generated) or {}..={MAX_JWT_SECRET} bytes, no control characters",
                super::MIN_JWT_SECRET
            ),
        ),
        (
            "ListDeliveries `statuses`, `event_types`",
            format!("at most {MAX_LIST_FILTERS} each"),
        ),
        (
            "ListDeliveries `page_size`; `page_token`",
            format!("at most 500; a token this API returned (at most {MAX_PAGE_TOKEN} bytes)"),
        ),
        (
            "ListEndpoints and ListTenants `page_size`; `page_token`",
            format!(
                "at most {MAX_ENDPOINT_PAGE} (0: {DEFAULT_ENDPOINT_PAGE}); a token this API returned"
            ),
        ),
    ]
}

/// [`table`] as the markdown the README holds.
pub fn markdown() -> String {
    let mut out = String::from("| Field | Limit |\n|---|---|\n");
    for (field, limit) in table() {
        out.push_str(&format!("| {field} | {limit} |\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_readme_lists_every_limit() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        let table = super::markdown();
        assert!(
            readme.contains(&table),
            "README.md's table of limits is out of date; it should read:\n\n{table}"
        );
    }
}
