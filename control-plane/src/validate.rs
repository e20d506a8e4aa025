//! Validation at the API edge: every check names the field it refuses and
//! says why, so a caller can fix the request without reading our code.

use std::collections::{BTreeMap, HashMap};

use herald_proto::v1 as pb;
use herald_shared::ids::validate_name;
use herald_shared::model::{
    AuthRecord, BodySignatureRecord, EndpointRecord, EventTypeRecord, Method,
};
use herald_shared::{pattern, retry};

use crate::error::{Error, Result};

/// Default number of deliveries failed in a row before auto-disable.
pub const DEFAULT_DISABLE_AFTER: u32 = 5;
/// Default concurrency of an unordered endpoint.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 10;
/// Highest concurrency of an unordered endpoint.
pub const MAX_IN_FLIGHT: u32 = 100;
/// Default per-attempt timeout.
pub const DEFAULT_TIMEOUT_MS: u32 = 15_000;
/// Longest per-attempt timeout an endpoint may ask for.
pub const MAX_TIMEOUT_MS: u32 = 60_000;
/// Most events in one request.
pub const MAX_CHUNK_SIZE: u32 = 100;
/// Longest spacing between two requests to one endpoint.
pub const MAX_CHUNK_DELAY_MS: u32 = 3_600_000;
/// Highest per-endpoint request rate an endpoint may set.
pub const MAX_RATE_PER_SEC: u32 = 10_000;
/// Default lifetime of a receiver JWT.
pub const DEFAULT_JWT_TTL_SECS: u32 = 300;
/// Shortest JWT secret, in bytes.
pub const MIN_JWT_SECRET: usize = 32;
/// Longest free-text field (names, descriptions).
pub const MAX_TEXT: usize = 1024;
/// Largest custom data, schema or example JSON.
pub const MAX_JSON_FIELD: usize = 64 * 1024;

/// Headers an endpoint may not set: Herald owns them (signing, auth,
/// tracing, framing).
const RESERVED_HEADERS: &[&str] = &[
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "authorization",
    "traceparent",
    "tracestate",
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "user-agent",
];

/// A required identifier-like name.
pub fn name(field: &str, value: &str) -> Result<()> {
    validate_name(value).map_err(|e| Error::invalid(field, e.to_string()))
}

/// Optional free text of bounded length.
pub fn text(field: &str, value: &str) -> Result<()> {
    if value.len() > MAX_TEXT {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_TEXT} bytes"),
        ));
    }
    Ok(())
}

/// Optional JSON text; when `object_only`, it must be an object.
pub fn json(field: &str, value: &str, object_only: bool) -> Result<()> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > MAX_JSON_FIELD {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_JSON_FIELD} bytes"),
        ));
    }
    let v: serde_json::Value = serde_json::from_str(value)
        .map_err(|e| Error::invalid(field, format!("is not valid JSON: {e}")))?;
    if object_only && !v.is_object() {
        return Err(Error::invalid(field, "must be a JSON object"));
    }
    Ok(())
}

/// The fields of an event type.
pub fn event_type(rec: &EventTypeRecord) -> Result<()> {
    name("name", &rec.name)?;
    text("group", &rec.group)?;
    text("description", &rec.description)?;
    json("schema_json", &rec.schema_json, true)?;
    json("example_json", &rec.example_json, false)
}

/// Checks an endpoint spec against the catalog and returns a record with
/// the spec's fields set (ids, secrets and times are the caller's). Exact
/// event type names must exist (a typo would otherwise silently receive
/// nothing); patterns may match types created later.
pub fn endpoint_spec(
    spec: Option<pb::EndpointSpec>,
    allow_http: bool,
    catalog: &HashMap<String, EventTypeRecord>,
) -> Result<EndpointRecord> {
    let spec = spec.ok_or_else(|| Error::invalid("spec", "is required"))?;
    if spec.name.trim().is_empty() {
        return Err(Error::invalid("spec.name", "must not be empty"));
    }
    text("spec.name", &spec.name)?;
    text("spec.description", &spec.description)?;
    url("spec.url", &spec.url, allow_http)?;
    let method = match pb::HttpMethod::try_from(spec.method) {
        Ok(pb::HttpMethod::Unspecified | pb::HttpMethod::Post) => Method::Post,
        Ok(pb::HttpMethod::Get) => Method::Get,
        Err(_) => {
            return Err(Error::invalid(
                "spec.method",
                format!("unknown method {}", spec.method),
            ));
        }
    };
    if spec.event_types.is_empty() {
        return Err(Error::invalid(
            "spec.event_types",
            "must list at least one event type or pattern ('*' for all)",
        ));
    }
    for (i, p) in spec.event_types.iter().enumerate() {
        let field = format!("spec.event_types[{i}]");
        pattern::validate(p).map_err(|e| Error::invalid(&field, e.to_string()))?;
        if !pattern::is_wildcard(p) && !catalog.contains_key(p) {
            return Err(Error::invalid(field, format!("unknown event type '{p}'")));
        }
    }
    let mut headers = BTreeMap::new();
    for (k, v) in spec.headers {
        let lower = k.to_ascii_lowercase();
        let field = format!("spec.headers[{k}]");
        if lower.is_empty() || !lower.bytes().all(is_token_byte) {
            return Err(Error::invalid(field, "is not a valid HTTP header name"));
        }
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(Error::invalid(
                field,
                "is set by Herald and cannot be overridden",
            ));
        }
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) || v.len() > 8192 {
            return Err(Error::invalid(
                field,
                "value must be one line of at most 8192 bytes",
            ));
        }
        headers.insert(lower, v);
    }
    json("spec.custom_data_json", &spec.custom_data_json, true)?;
    let timeout_ms = match spec.timeout_ms {
        0 => DEFAULT_TIMEOUT_MS,
        t if (100..=MAX_TIMEOUT_MS).contains(&t) => t,
        t => {
            return Err(Error::invalid(
                "spec.timeout_ms",
                format!("{t} is outside 100..={MAX_TIMEOUT_MS} (0 means {DEFAULT_TIMEOUT_MS})"),
            ));
        }
    };
    for (k, v) in &spec.labels {
        if k.is_empty() || k.len() > 128 || v.len() > 256 {
            return Err(Error::invalid(
                format!("spec.labels[{k}]"),
                "keys must be 1..=128 bytes and values at most 256",
            ));
        }
    }
    let retry_schedule_ms = match spec.retry {
        None => None,
        Some(r) => {
            let delays: Vec<u64> = r.delays_ms.into_iter().map(u64::from).collect();
            retry::validate(&delays)
                .map_err(|e| Error::invalid("spec.retry.delays_ms", e.to_string()))?;
            Some(delays)
        }
    };
    let disable_after_failures = match spec.disable_after_failures {
        0 => DEFAULT_DISABLE_AFTER,
        n if n <= 10_000 => n,
        n => {
            return Err(Error::invalid(
                "spec.disable_after_failures",
                format!("{n} is over 10000 (0 means {DEFAULT_DISABLE_AFTER})"),
            ));
        }
    };
    let max_in_flight = match (pb::Ordering::try_from(spec.ordering), spec.max_in_flight) {
        (Ok(pb::Ordering::Unspecified | pb::Ordering::Ordered), 0) => 0,
        (Ok(pb::Ordering::Unspecified | pb::Ordering::Ordered), _) => {
            return Err(Error::invalid(
                "spec.max_in_flight",
                "applies only to UNORDERED endpoints",
            ));
        }
        (Ok(pb::Ordering::Unordered), 0) => DEFAULT_MAX_IN_FLIGHT,
        (Ok(pb::Ordering::Unordered), n) if n <= MAX_IN_FLIGHT => n,
        (Ok(pb::Ordering::Unordered), n) => {
            return Err(Error::invalid(
                "spec.max_in_flight",
                format!("{n} is over {MAX_IN_FLIGHT}"),
            ));
        }
        (Err(_), _) => {
            return Err(Error::invalid(
                "spec.ordering",
                format!("unknown ordering {}", spec.ordering),
            ));
        }
    };
    for (i, k) in spec.skip_keys.iter().enumerate() {
        if k.is_empty() || k.len() > 128 {
            return Err(Error::invalid(
                format!("spec.skip_keys[{i}]"),
                "must be 1 to 128 bytes",
            ));
        }
    }
    let mut filters = Vec::with_capacity(spec.filters.len());
    for (i, f) in spec.filters.iter().enumerate() {
        let op = match pb::FilterOp::try_from(f.op) {
            Ok(pb::FilterOp::Eq) => "eq",
            Ok(pb::FilterOp::Ne) => "ne",
            Ok(pb::FilterOp::In) => "in",
            Ok(pb::FilterOp::Gt) => "gt",
            Ok(pb::FilterOp::Lt) => "lt",
            Ok(pb::FilterOp::Contains) => "contains",
            Ok(pb::FilterOp::Exists) => "exists",
            Ok(pb::FilterOp::Unspecified) | Err(_) => {
                return Err(Error::invalid(
                    format!("spec.filters[{i}].op"),
                    format!(
                        "{} is not an operator (EQ, NE, IN, GT, LT, CONTAINS, EXISTS)",
                        f.op
                    ),
                ));
            }
        };
        filters.push(herald_shared::model::FilterRecord {
            path: f.path.clone(),
            op: op.to_string(),
            value_json: f.value_json.clone(),
        });
    }
    let body_signature = match spec.body_signature {
        None => None,
        Some(b) => {
            let header = b.header.to_ascii_lowercase();
            let field = "spec.body_signature.header";
            if header.is_empty() || !header.bytes().all(is_token_byte) {
                return Err(Error::invalid(field, "is not a valid HTTP header name"));
            }
            if RESERVED_HEADERS.contains(&header.as_str()) || headers.contains_key(&header) {
                return Err(Error::invalid(
                    field,
                    "names a header Herald or spec.headers already sets",
                ));
            }
            let base64 = match pb::SignatureEncoding::try_from(b.encoding) {
                Ok(pb::SignatureEncoding::Unspecified | pb::SignatureEncoding::Hex) => false,
                Ok(pb::SignatureEncoding::Base64) => true,
                Err(_) => {
                    return Err(Error::invalid(
                        "spec.body_signature.encoding",
                        format!("unknown encoding {} (HEX or BASE64)", b.encoding),
                    ));
                }
            };
            Some(BodySignatureRecord { header, base64 })
        }
    };
    let auth = match spec.auth.and_then(|a| a.kind) {
        None => None,
        Some(pb::receiver_auth::Kind::Basic(b)) => {
            if b.username.is_empty() || b.username.len() > 256 || b.username.contains(':') {
                return Err(Error::invalid(
                    "spec.auth.basic.username",
                    "must be 1 to 256 bytes without ':'",
                ));
            }
            if b.password.len() > 256 || b.password.bytes().any(|c| c.is_ascii_control()) {
                return Err(Error::invalid(
                    "spec.auth.basic.password",
                    "must be at most 256 bytes without control characters",
                ));
            }
            Some(AuthRecord::Basic {
                username: b.username,
                password: b.password,
            })
        }
        Some(pb::receiver_auth::Kind::Jwt(j)) => {
            // Empty: generated on create, kept on update.
            jwt_secret("spec.auth.jwt.secret", &j.secret, true)?;
            let ttl_secs = match j.ttl_secs {
                0 => DEFAULT_JWT_TTL_SECS,
                t if t <= 86_400 => t,
                t => {
                    return Err(Error::invalid(
                        "spec.auth.jwt.ttl_secs",
                        format!("{t} is over 86400 (0 means {DEFAULT_JWT_TTL_SECS})"),
                    ));
                }
            };
            Some(AuthRecord::Jwt {
                secret: j.secret,
                ttl_secs,
            })
        }
    };
    let chunk_size = match spec.chunk_size {
        0 => 1,
        n if n <= MAX_CHUNK_SIZE => n,
        n => {
            return Err(Error::invalid(
                "spec.chunk_size",
                format!("{n} is outside 1..={MAX_CHUNK_SIZE} (0 means 1)"),
            ));
        }
    };
    if chunk_size > 1 && method == Method::Get {
        return Err(Error::invalid(
            "spec.chunk_size",
            "above 1 needs POST: a GET request carries no body",
        ));
    }
    if spec.chunk_delay_ms > MAX_CHUNK_DELAY_MS {
        return Err(Error::invalid(
            "spec.chunk_delay_ms",
            format!(
                "{} is over {MAX_CHUNK_DELAY_MS} (an hour)",
                spec.chunk_delay_ms
            ),
        ));
    }
    if spec.rate_limit_per_sec > MAX_RATE_PER_SEC {
        return Err(Error::invalid(
            "spec.rate_limit_per_sec",
            format!("{} is over {MAX_RATE_PER_SEC}", spec.rate_limit_per_sec),
        ));
    }
    // Parse the rules as the publish path will, so a bad one fails here.
    let probe = EndpointRecord {
        filters: filters.clone(),
        on_field_change: spec.on_field_change.clone(),
        load_only: spec.load_only.clone(),
        ..EndpointRecord::default()
    };
    herald_shared::filter::Rules::from_record(&probe)
        .map_err(|(field, e)| Error::invalid(format!("spec.{field}"), e.to_string()))?;
    Ok(EndpointRecord {
        name: spec.name,
        omit_standard_signature: spec.omit_standard_signature,
        body_signature,
        auth,
        chunk_size,
        chunk_delay_ms: spec.chunk_delay_ms,
        rate_limit_per_sec: spec.rate_limit_per_sec,
        insecure_tls: spec.insecure_tls,
        max_in_flight,
        disable_after_failures,
        queue_while_disabled: spec.queue_while_disabled,
        skip_keys: spec.skip_keys,
        filters,
        on_field_change: spec.on_field_change,
        load_only: spec.load_only,
        retry_schedule_ms,
        description: spec.description,
        url: spec.url,
        method,
        enabled: spec.enabled,
        event_types: spec.event_types,
        headers,
        custom_data_json: spec.custom_data_json,
        timeout_ms,
        labels: spec.labels.into_iter().collect(),
        ..EndpointRecord::default()
    })
}

/// A JWT secret: at least 32 bytes (HS256 wants a key as long as its
/// hash), printable. Empty passes when `empty_ok`.
pub fn jwt_secret(field: &str, value: &str, empty_ok: bool) -> Result<()> {
    if value.is_empty() && empty_ok {
        return Ok(());
    }
    if value.len() < MIN_JWT_SECRET || value.len() > 512 {
        return Err(Error::invalid(
            field,
            format!("must be {MIN_JWT_SECRET} to 512 bytes (HS256 needs a 256-bit key)"),
        ));
    }
    if value.bytes().any(|c| c.is_ascii_control()) {
        return Err(Error::invalid(field, "must not hold control characters"));
    }
    Ok(())
}

/// A caller-chosen signing key: `whsec_` + base64 of 24 to 64 bytes, or an
/// Ed25519 private key `whsk_` + base64 of a 32-byte seed.
pub fn signing_secret(field: &str, value: &str) -> Result<()> {
    if herald_shared::signing::is_private_key(value) {
        return herald_shared::signing::public_key(value)
            .map(|_| ())
            .map_err(|_| {
                Error::invalid(
                    field,
                    "must be 'whsk_' followed by base64 of a 32-byte seed",
                )
            });
    }
    match herald_shared::signing::key_len(value) {
        Some(n) if (24..=64).contains(&n) => Ok(()),
        Some(n) => Err(Error::invalid(
            field,
            format!("holds {n} key bytes; 24 to 64 are needed"),
        )),
        None => Err(Error::invalid(
            field,
            "must be 'whsec_' followed by base64, or 'whsk_' and an Ed25519 seed",
        )),
    }
}

/// The signing scheme a spec asks for: None when unspecified.
pub fn scheme(field: &str, value: i32) -> Result<Option<bool>> {
    match pb::SignatureScheme::try_from(value) {
        Ok(pb::SignatureScheme::Unspecified) => Ok(None),
        Ok(pb::SignatureScheme::HmacSha256) => Ok(Some(false)),
        Ok(pb::SignatureScheme::Ed25519) => Ok(Some(true)),
        Err(_) => Err(Error::invalid(
            field,
            format!("unknown scheme {value} (HMAC_SHA256 or ED25519)"),
        )),
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An absolute http(s) URL with a host and no credentials.
pub fn url(field: &str, value: &str, allow_http: bool) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > 2048 {
        return Err(Error::invalid(field, "must be at most 2048 bytes"));
    }
    let u = url::Url::parse(value)
        .map_err(|e| Error::invalid(field, format!("is not a valid URL: {e}")))?;
    match u.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(Error::invalid(
                field,
                "must use https (the operator has not allowed http)",
            ));
        }
        s => {
            return Err(Error::invalid(
                field,
                format!("scheme '{s}' is not http or https"),
            ));
        }
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(field, "must name a host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(Error::invalid(field, "must not carry credentials"));
    }
    if u.fragment().is_some() {
        return Err(Error::invalid(field, "must not have a fragment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> HashMap<String, EventTypeRecord> {
        HashMap::from([("invoice.paid".to_string(), EventTypeRecord::default())])
    }

    fn spec() -> pb::EndpointSpec {
        pb::EndpointSpec {
            name: "n".into(),
            url: "https://example.com/hook".into(),
            event_types: vec!["invoice.paid".into(), "user.*".into()],
            ..Default::default()
        }
    }

    fn field_of(r: Result<EndpointRecord>) -> String {
        match r {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_good_spec_with_defaults() {
        let s = endpoint_spec(Some(spec()), false, &catalog()).unwrap();
        assert_eq!(s.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(s.method, Method::Post);
        assert_eq!(s.retry_schedule_ms, None, "absent policy means the default");
        assert!(!s.enabled);
    }

    #[test]
    fn names_the_bad_field() {
        let c = catalog();
        let mut s = spec();
        s.url = "http://example.com".into();
        assert_eq!(
            field_of(endpoint_spec(Some(s.clone()), false, &c)),
            "spec.url"
        );
        assert!(endpoint_spec(Some(s), true, &c).is_ok());

        let mut s = spec();
        s.url = "ftp://x".into();
        assert_eq!(field_of(endpoint_spec(Some(s), true, &c)), "spec.url");

        let mut s = spec();
        s.event_types = vec!["invoice.unknown".into()];
        assert_eq!(
            field_of(endpoint_spec(Some(s), true, &c)),
            "spec.event_types[0]"
        );

        let mut s = spec();
        s.headers.insert("Webhook-Signature".into(), "x".into());
        assert_eq!(
            field_of(endpoint_spec(Some(s), true, &c)),
            "spec.headers[Webhook-Signature]"
        );

        let mut s = spec();
        s.custom_data_json = "[1]".into();
        assert_eq!(
            field_of(endpoint_spec(Some(s), true, &c)),
            "spec.custom_data_json"
        );

        let mut s = spec();
        s.timeout_ms = 61_000;
        assert_eq!(
            field_of(endpoint_spec(Some(s), true, &c)),
            "spec.timeout_ms"
        );

        let mut s = spec();
        s.max_in_flight = 5;
        assert_eq!(
            field_of(endpoint_spec(Some(s.clone()), true, &c)),
            "spec.max_in_flight"
        );
        s.ordering = pb::Ordering::Unordered as i32;
        assert_eq!(
            endpoint_spec(Some(s.clone()), true, &c)
                .unwrap()
                .max_in_flight,
            5
        );
        s.max_in_flight = 101;
        assert_eq!(
            field_of(endpoint_spec(Some(s), true, &c)),
            "spec.max_in_flight"
        );

        let mut s = spec();
        s.retry = Some(pb::RetryPolicy {
            delays_ms: vec![u32::MAX],
        });
        assert_eq!(
            field_of(endpoint_spec(Some(s), true, &c)),
            "spec.retry.delays_ms"
        );

        assert_eq!(field_of(endpoint_spec(None, true, &c)), "spec");
    }
}
