//! An endpoint spec, checked field by field and turned into the record
//! stored in etcd. Each part of the spec has its own function.

use std::collections::BTreeMap;

use herald_proto::v1 as pb;
use herald_shared::filter::Rules;
use herald_shared::model::{
    AuthRecord, BodySignatureRecord, EndpointRecord, FilterRecord, FilterRuleRecord, Method,
};
use herald_shared::{pattern, retry};

use super::limits::*;
use super::{Catalog, count, display_text, http, json, jwt_secret, text};
use super::{
    DEFAULT_DISABLE_AFTER, DEFAULT_JWT_TTL_SECS, DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT_MS,
    MAX_CHUNK_DELAY_MS, MAX_CHUNK_SIZE, MAX_IN_FLIGHT, MAX_RATE_PER_SEC, MAX_TIMEOUT_MS,
};
use crate::error::{Error, Result};

/// Checks an endpoint spec against the catalog and returns a record with
/// the spec's fields set (ids, secrets and times are the caller's). Exact
/// event type names must exist (a typo would otherwise silently receive
/// nothing); patterns may match types created later.
pub fn endpoint_spec(
    spec: Option<pb::EndpointSpec>,
    allow_http: bool,
    catalog: &Catalog,
) -> Result<EndpointRecord> {
    let spec = spec.ok_or_else(|| Error::invalid("spec", "is required"))?;
    if spec.name.trim().is_empty() {
        return Err(Error::invalid("spec.name", "must not be empty"));
    }
    text("spec.name", &spec.name)?;
    text("spec.description", &spec.description)?;
    http::url("spec.url", &spec.url, allow_http)?;
    let method = method(spec.method)?;
    subscriptions(&spec.event_types, catalog)?;
    let headers = headers(&spec.headers)?;
    json("spec.custom_data_json", &spec.custom_data_json, true)?;
    labels(&spec.labels)?;
    let shape = shape(&spec, method)?;
    let (filters, filter_rules) = rules(&spec, catalog)?;
    let body_signature = body_signature(spec.body_signature.as_ref(), &headers)?;
    let auth = auth(spec.auth.and_then(|a| a.kind))?;
    let retry_schedule_ms = match spec.retry {
        None => None,
        Some(r) => {
            let delays: Vec<u64> = r.delays_ms.into_iter().map(u64::from).collect();
            retry::validate(&delays)
                .map_err(|e| Error::invalid("spec.retry.delays_ms", e.to_string()))?;
            Some(delays)
        }
    };
    let record = EndpointRecord {
        name: spec.name,
        omit_standard_signature: spec.omit_standard_signature,
        body_signature,
        auth,
        chunk_size: shape.chunk_size,
        chunk_delay_ms: spec.chunk_delay_ms,
        rate_limit_per_sec: spec.rate_limit_per_sec,
        insecure_tls: spec.insecure_tls,
        max_in_flight: shape.max_in_flight,
        disable_after_failures: shape.disable_after_failures,
        queue_while_disabled: spec.queue_while_disabled,
        skip_keys: spec.skip_keys,
        filters,
        filter_rules,
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
        timeout_ms: shape.timeout_ms,
        labels: spec.labels.into_iter().collect(),
        ..EndpointRecord::default()
    };
    // A backstop: the limits above keep a spec far below etcd's request
    // limit, and an oversized one must never reach etcd (which would
    // answer UNAVAILABLE, telling the caller to retry).
    let size = crate::store::encode(&record).len();
    if size > MAX_STORED_SPEC {
        return Err(Error::invalid(
            "spec",
            format!("encodes to {size} bytes, over the limit of {MAX_STORED_SPEC}"),
        ));
    }
    Ok(record)
}

fn method(value: i32) -> Result<Method> {
    match pb::HttpMethod::try_from(value) {
        Ok(pb::HttpMethod::Unspecified | pb::HttpMethod::Post) => Ok(Method::Post),
        Ok(pb::HttpMethod::Get) => Ok(Method::Get),
        Err(_) => Err(Error::invalid(
            "spec.method",
            format!("unknown method {value}"),
        )),
    }
}

fn subscriptions(event_types: &[String], catalog: &Catalog) -> Result<()> {
    if event_types.is_empty() {
        return Err(Error::invalid(
            "spec.event_types",
            "must list at least one event type or pattern ('*' for all)",
        ));
    }
    count("spec.event_types", event_types.len(), MAX_EVENT_TYPES)?;
    for (i, p) in event_types.iter().enumerate() {
        let field = format!("spec.event_types[{i}]");
        super::pattern(&field, p)?;
        if !pattern::is_wildcard(p) && !catalog.contains_key(p) {
            return Err(Error::invalid(field, format!("unknown event type '{p}'")));
        }
    }
    Ok(())
}

/// Custom headers, lowercased: RFC 9110 names and values, none that Herald
/// sets, bounded in count and in total size.
fn headers(given: &std::collections::HashMap<String, String>) -> Result<BTreeMap<String, String>> {
    count("spec.headers", given.len(), MAX_HEADERS)?;
    let mut total = 0;
    let mut headers = BTreeMap::new();
    // Sorted, so the error names the same header whatever the map's order.
    let mut sorted: Vec<_> = given.iter().collect();
    sorted.sort();
    for (k, v) in sorted {
        let field = format!("spec.headers[{k}]");
        let lower = http::header_name(&field, k)?;
        http::header_value(&field, v)?;
        total += k.len() + v.len();
        if headers.insert(lower, v.clone()).is_some() {
            return Err(Error::invalid(
                field,
                "is given twice (names are case-insensitive)",
            ));
        }
    }
    if total > MAX_HEADER_BYTES {
        return Err(Error::invalid(
            "spec.headers",
            format!("hold {total} bytes of names and values, over the limit of {MAX_HEADER_BYTES}"),
        ));
    }
    Ok(headers)
}

fn labels(labels: &std::collections::HashMap<String, String>) -> Result<()> {
    count("spec.labels", labels.len(), MAX_LABELS)?;
    for (k, v) in labels {
        let field = format!("spec.labels[{k}]");
        display_text(&field, k, MAX_LABEL_KEY, true)?;
        display_text(&field, v, MAX_LABEL_VALUE, false)?;
    }
    Ok(())
}

/// How an endpoint's deliveries are paced and bounded.
struct Shape {
    timeout_ms: u32,
    disable_after_failures: u32,
    max_in_flight: u32,
    chunk_size: u32,
}

fn shape(spec: &pb::EndpointSpec, method: Method) -> Result<Shape> {
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
    Ok(Shape {
        timeout_ms,
        disable_after_failures,
        max_in_flight: max_in_flight(spec.ordering, spec.max_in_flight)?,
        chunk_size,
    })
}

fn max_in_flight(ordering: i32, asked: u32) -> Result<u32> {
    match (pb::Ordering::try_from(ordering), asked) {
        (Ok(pb::Ordering::Unspecified | pb::Ordering::Ordered), 0) => Ok(0),
        (Ok(pb::Ordering::Unspecified | pb::Ordering::Ordered), _) => Err(Error::invalid(
            "spec.max_in_flight",
            "applies only to UNORDERED endpoints",
        )),
        (Ok(pb::Ordering::Unordered), 0) => Ok(DEFAULT_MAX_IN_FLIGHT),
        (Ok(pb::Ordering::Unordered), n) if n <= MAX_IN_FLIGHT => Ok(n),
        (Ok(pb::Ordering::Unordered), n) => Err(Error::invalid(
            "spec.max_in_flight",
            format!("{n} is over {MAX_IN_FLIGHT}"),
        )),
        (Err(_), _) => Err(Error::invalid(
            "spec.ordering",
            format!("unknown ordering {ordering}"),
        )),
    }
}

/// Skip keys, filters, rules, on-field-change and load-only; returns the
/// filters and rules as stored. They are parsed as the publish path will
/// parse them, so a bad one fails here.
fn rules(
    spec: &pb::EndpointSpec,
    catalog: &Catalog,
) -> Result<(Vec<FilterRecord>, Vec<FilterRuleRecord>)> {
    count("spec.skip_keys", spec.skip_keys.len(), MAX_SKIP_KEYS)?;
    for (i, k) in spec.skip_keys.iter().enumerate() {
        if k.is_empty() || k.len() > MAX_SKIP_KEY {
            return Err(Error::invalid(
                format!("spec.skip_keys[{i}]"),
                format!("must be 1 to {MAX_SKIP_KEY} bytes"),
            ));
        }
    }
    count(
        "spec.on_field_change",
        spec.on_field_change.len(),
        MAX_PATHS,
    )?;
    count("spec.load_only", spec.load_only.len(), MAX_PATHS)?;
    let filters = filter_list("spec.filters", &spec.filters)?;
    count(
        "spec.filter_rules",
        spec.filter_rules.len(),
        MAX_FILTER_RULES,
    )?;
    let mut filter_rules = Vec::with_capacity(spec.filter_rules.len());
    for (i, r) in spec.filter_rules.iter().enumerate() {
        filter_rules.push(filter_rule(&format!("spec.filter_rules[{i}]"), r, catalog)?);
    }
    // One budget for every condition keeps the largest spec storable.
    let conditions = filters.len()
        + filter_rules
            .iter()
            .map(|r| r.all_of.len() + r.any_of.len())
            .sum::<usize>();
    if conditions > MAX_FILTERS {
        return Err(Error::invalid(
            "spec.filter_rules",
            format!("has {conditions} conditions with spec.filters; at most {MAX_FILTERS} in all"),
        ));
    }
    let probe = EndpointRecord {
        filters: filters.clone(),
        filter_rules: filter_rules.clone(),
        on_field_change: spec.on_field_change.clone(),
        load_only: spec.load_only.clone(),
        ..EndpointRecord::default()
    };
    Rules::from_record(&probe)
        .map_err(|(field, e)| Error::invalid(format!("spec.{field}"), e.to_string()))?;
    Ok((filters, filter_rules))
}

/// One scoped rule: its event types as subscriptions are checked (names
/// must be in the catalog, patterns well formed) and its conditions.
fn filter_rule(field: &str, r: &pb::FilterRule, catalog: &Catalog) -> Result<FilterRuleRecord> {
    count(
        &format!("{field}.event_types"),
        r.event_types.len(),
        MAX_RULE_EVENT_TYPES,
    )?;
    for (i, p) in r.event_types.iter().enumerate() {
        let field = format!("{field}.event_types[{i}]");
        super::pattern(&field, p)?;
        if !pattern::is_wildcard(p) && !catalog.contains_key(p) {
            return Err(Error::invalid(field, format!("unknown event type '{p}'")));
        }
    }
    if r.all_of.is_empty() && r.any_of.is_empty() {
        return Err(Error::invalid(
            field,
            "needs at least one condition in all_of or any_of",
        ));
    }
    Ok(FilterRuleRecord {
        event_types: r.event_types.clone(),
        all_of: filter_list(&format!("{field}.all_of"), &r.all_of)?,
        any_of: filter_list(&format!("{field}.any_of"), &r.any_of)?,
    })
}

/// A list of conditions, bounded in count and value size, with known
/// operators.
fn filter_list(field: &str, given: &[pb::Filter]) -> Result<Vec<FilterRecord>> {
    count(field, given.len(), MAX_FILTERS)?;
    given
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if f.value_json.len() > MAX_FILTER_VALUE {
                return Err(Error::invalid(
                    format!("{field}[{i}].value_json"),
                    format!("must be at most {MAX_FILTER_VALUE} bytes"),
                ));
            }
            let op = crate::convert::filter_op_name(f.op).ok_or_else(|| {
                Error::invalid(
                    format!("{field}[{i}].op"),
                    format!(
                        "{} is not an operator (EQ, NE, IN, NOT_IN, GT, GTE, LT, LTE, CONTAINS, EXISTS)",
                        f.op
                    ),
                )
            })?;
            Ok(FilterRecord {
                path: f.path.clone(),
                op: op.to_string(),
                value_json: f.value_json.clone(),
            })
        })
        .collect()
}

fn body_signature(
    given: Option<&pb::BodySignature>,
    headers: &BTreeMap<String, String>,
) -> Result<Option<BodySignatureRecord>> {
    let Some(b) = given else {
        return Ok(None);
    };
    let field = "spec.body_signature.header";
    let header = http::header_name(field, &b.header)?;
    if headers.contains_key(&header) {
        return Err(Error::invalid(
            field,
            "names a header spec.headers already sets",
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
    Ok(Some(BodySignatureRecord { header, base64 }))
}

fn auth(kind: Option<pb::receiver_auth::Kind>) -> Result<Option<AuthRecord>> {
    match kind {
        None => Ok(None),
        Some(pb::receiver_auth::Kind::Basic(b)) => {
            if b.username.is_empty()
                || b.username.len() > MAX_BASIC
                || b.username.contains(':')
                || b.username.chars().any(char::is_control)
            {
                return Err(Error::invalid(
                    "spec.auth.basic.username",
                    format!("must be 1 to {MAX_BASIC} bytes without ':' or control characters"),
                ));
            }
            if b.password.len() > MAX_BASIC || b.password.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "spec.auth.basic.password",
                    format!("must be at most {MAX_BASIC} bytes without control characters"),
                ));
            }
            Ok(Some(AuthRecord::Basic {
                username: b.username,
                password: b.password,
            }))
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
            jwt_claims(&j.claims_json)?;
            Ok(Some(AuthRecord::Jwt {
                secret: j.secret,
                ttl_secs,
                claims_json: j.claims_json,
            }))
        }
    }
}

/// An endpoint's own JWT claims: a JSON object of at most
/// [`MAX_JWT_CLAIMS`] bytes whose names are neither registered claims nor
/// Herald's.
fn jwt_claims(text: &str) -> Result<()> {
    const FIELD: &str = "spec.auth.jwt.claims_json";
    if text.is_empty() {
        return Ok(());
    }
    if text.len() > MAX_JWT_CLAIMS {
        return Err(Error::invalid(
            FIELD,
            format!("must be at most {MAX_JWT_CLAIMS} bytes"),
        ));
    }
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::invalid(FIELD, format!("is not valid JSON: {e}")))?;
    let Some(map) = v.as_object() else {
        return Err(Error::invalid(FIELD, "must be a JSON object"));
    };
    if let Some(k) = map
        .keys()
        .find(|k| herald_shared::model::JWT_RESERVED_CLAIMS.contains(&k.as_str()))
    {
        return Err(Error::invalid(
            FIELD,
            format!("'{k}' is a registered JWT claim or one Herald sets"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use herald_shared::model::EventTypeRecord;

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
        s.timeout_ms = 600_001;
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
