//! Property test of the API edge (issue 15): for generated requests, full
//! of the inputs careless and hostile clients send,
//! - accepted ⇒ the record fits in one etcd request, and the agent's own
//!   builder makes an HTTP request of it whose body stays within the
//!   documented bound and whose timestamp is RFC 3339;
//! - refused ⇒ INVALID_ARGUMENT naming a field of the request.
//!
//! `PROPTEST_CASES=20000 cargo test -p herald-control-plane --test
//! validators` runs it longer; the default keeps it to a few seconds.

use std::collections::HashMap;
use std::sync::OnceLock;

use herald_control_plane::error::Error;
use herald_control_plane::validate::{self, limits::*};
use herald_proto::v1 as pb;
use herald_shared::model::{AuthRecord, EventTypeRecord, Method};
use proptest::prelude::*;

/// etcd's default `--max-request-bytes` (1.5 MiB), less room for the key
/// and the transaction around the value.
const ETCD_MAX_VALUE: usize = 1_572_864 - 4096;
const MAX_PAYLOAD: usize = 4096;

fn catalog() -> HashMap<String, EventTypeRecord> {
    HashMap::from([("invoice.paid".to_string(), EventTypeRecord::default())])
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder().build().expect("client")
    })
}

/// Text a hostile client would send: short runs of troublesome characters,
/// or long runs sized around the limits.
fn text() -> impl Strategy<Value = String> {
    let chars = prop::sample::select(vec![
        'a', 'Z', '0', '.', '-', '_', '*', ' ', '\t', '\r', '\n', '\0', '\u{1}', '\u{1b}',
        '\u{7f}', 'é', '€', ':', '/', '\\', '"', '{', '}', '@', '#', '?', '%',
    ]);
    let sizes = prop::sample::select(vec![
        0usize, 1, 127, 128, 129, 255, 256, 257, 1023, 1024, 1025, 4096, 4097, 8192, 8193, 65_536,
        65_537, 100_001,
    ]);
    prop_oneof![
        4 => prop::collection::vec(chars, 0..12).prop_map(|v| v.into_iter().collect()),
        1 => sizes.prop_map(|n| "x".repeat(n)),
    ]
}

/// Usually a valid value, sometimes a hostile one: every field is hostile
/// in some cases, and a good share of cases is accepted whole.
fn mostly<T: std::fmt::Debug + Clone + 'static>(
    good: impl Strategy<Value = T> + 'static,
    hostile: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    prop_oneof![9 => good, 1 => hostile].boxed()
}

fn json_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("{}".to_string()),
        Just(r#"{"a":{"b":[1,2]},"s":"x\"y"}"#.to_string()),
        Just("[1]".to_string()),
        Just("{".to_string()),
        Just("3".to_string()),
        text().prop_map(|t| serde_json::json!({ "t": t }).to_string()),
    ]
}

fn url() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "https://",
        "http://",
        "ftp://",
        "https:/",
        "https:",
        "https:///",
        " https://",
        "HTTPS://",
        "https:\\\\",
    ]);
    let host = prop::sample::select(vec![
        "example.com",
        "",
        "ex ample.com",
        "[::1]",
        "127.0.0.1",
        "a\\@b.com",
        "u:p@example.com",
        "xn--bcher-kva.example",
        "bücher.example",
    ]);
    let port = prop::sample::select(vec!["", ":0", ":443", ":8443", ":65536", ":x"]);
    let path = prop::sample::select(vec![
        "", "/", "/hook", "/a b", "/a\r\nb", "/x?y=1", "/x#frag", "/%0d%0a", " ", "/\t",
    ]);
    (scheme, host, port, path).prop_map(|(s, h, p, x)| format!("{s}{h}{p}{x}"))
}

fn header_map() -> impl Strategy<Value = HashMap<String, String>> {
    let name = prop_oneof![
        4 => prop::sample::select(vec![
            "X-Api-Key", "x-tenant", "Keep-Alive", "proxy-authorization", "Proxy-Authenticate",
            "trailer", "TE", "Connection", "Upgrade", "webhook-id", "Content-Type", "a b", "é",
            "", "x:y",
        ]).prop_map(String::from),
        1 => text(),
    ];
    // One hostile name or one hostile value beside a good header.
    let one = prop_oneof![
        (name, Just("v".to_string())),
        (Just("X-Custom".to_string()), text()),
    ];
    prop_oneof![
        3 => one.prop_map(|(k, v)| HashMap::from([("X-Good".to_string(), "1".to_string()), (k, v)])),
        1 => (prop::sample::select(vec![99usize, 100, 101, 300]), prop::sample::select(vec![10usize, 600, 700, 8192]))
            .prop_map(|(n, len)| (0..n).map(|i| (format!("x-h{i}"), "v".repeat(len))).collect()),
    ]
}

fn spec() -> impl Strategy<Value = pb::EndpointSpec> {
    let event_types = prop_oneof![
        prop::collection::vec(
            prop_oneof![
                Just("invoice.paid".to_string()),
                Just("user.*".to_string()),
                Just("*".to_string()),
                Just("unknown.type".to_string()),
                text(),
                text().prop_map(|t| format!("{t}*")),
            ],
            0..4
        ),
        (255usize..=257).prop_map(|n| vec!["*".to_string(); n]),
    ];
    let labels = prop::collection::hash_map(text(), text(), 0..3);
    let filter = || {
        (text(), 0i32..12, json_text()).prop_map(|(path, op, value_json)| pb::Filter {
            path,
            op,
            value_json,
        })
    };
    let filter_rule = (
        prop::collection::vec(text(), 0..3),
        prop::collection::vec(filter(), 0..2),
        prop::collection::vec(filter(), 0..3),
    )
        .prop_map(|(event_types, all_of, any_of)| pb::FilterRule {
            event_types,
            all_of,
            any_of,
        });
    let auth = prop_oneof![
        Just(None),
        (text(), text()).prop_map(|(username, password)| Some(pb::ReceiverAuth {
            kind: Some(pb::receiver_auth::Kind::Basic(pb::BasicAuth {
                username,
                password
            })),
        })),
        (text(), 0u32..100_000, json_text()).prop_map(|(secret, ttl_secs, claims_json)| Some(
            pb::ReceiverAuth {
                kind: Some(pb::receiver_auth::Kind::Jwt(pb::JwtAuth {
                    secret,
                    ttl_secs,
                    claims_json,
                })),
            }
        )),
    ];
    let body_signature = prop::option::of(
        (text(), 0i32..4).prop_map(|(header, encoding)| pb::BodySignature { header, encoding }),
    );
    let numbers = (
        prop::sample::select(vec![0u32, 99, 100, 600_000, 600_001]),
        prop::sample::select(vec![0u32, 1, 100, 101]),
        0i32..4,
        prop::sample::select(vec![0u32, 5, 100, 101]),
        0i32..3,
    );
    (
        (
            mostly(Just("orders hook".to_string()), text()),
            mostly(Just("https://example.com/hook".to_string()), url()),
            mostly(Just(vec!["invoice.paid".to_string()]), event_types),
            mostly(
                Just(HashMap::from([(
                    "X-Api-Key".to_string(),
                    "k 1".to_string(),
                )])),
                header_map(),
            ),
            mostly(Just(r#"{"k":"v"}"#.to_string()), json_text()),
            mostly(Just(HashMap::new()), labels),
        ),
        (
            mostly(Just(vec![]), prop::collection::vec(text(), 0..3)),
            mostly(
                Just(vec![pb::Filter {
                    path: "a.b".into(),
                    op: 1,
                    value_json: "1".into(),
                }]),
                prop::collection::vec(filter(), 0..3),
            ),
            mostly(Just(vec![]), prop::collection::vec(text(), 0..3)),
            mostly(Just(None), auth),
            mostly(Just(None), body_signature),
            mostly(Just((0, 0, 0, 0, 0)), numbers),
            mostly(Just(vec![]), prop::collection::vec(filter_rule, 0..3)),
        ),
    )
        .prop_map(
            |(
                (name, url, event_types, headers, custom_data_json, labels),
                (skip_keys, filters, load_only, auth, body_signature, numbers, filter_rules),
            )| {
                let (timeout_ms, chunk_size, ordering, max_in_flight, method) = numbers;
                pb::EndpointSpec {
                    name,
                    url,
                    event_types,
                    headers,
                    custom_data_json,
                    labels,
                    skip_keys,
                    filters,
                    filter_rules,
                    load_only,
                    auth,
                    body_signature,
                    timeout_ms,
                    chunk_size,
                    ordering,
                    max_in_flight,
                    method,
                    ..Default::default()
                }
            },
        )
}

fn biggest_filter(path: String) -> pb::Filter {
    pb::Filter {
        path,
        op: pb::FilterOp::Eq as i32,
        value_json: format!("\"{}\"", "x".repeat(MAX_FILTER_VALUE - 2)),
    }
}

fn publish_request() -> impl Strategy<Value = pb::PublishRequest> {
    // One hostile field at a time, the others good.
    let resource = prop_oneof![
        Just(None),
        text().prop_map(|t| Some(pb::Resource {
            r#type: t,
            id: "r1".into()
        })),
        text().prop_map(|t| Some(pb::Resource {
            r#type: "invoice".into(),
            id: t
        })),
    ];
    let actor = prop_oneof![
        text().prop_map(|t| Some(pb::Actor {
            r#type: t,
            id: "u1".into(),
            name: String::new()
        })),
        text().prop_map(|t| Some(pb::Actor {
            r#type: "user".into(),
            id: t,
            name: String::new()
        })),
        text().prop_map(|t| Some(pb::Actor {
            r#type: "user".into(),
            id: "u1".into(),
            name: t
        })),
    ];
    let occurred = prop::sample::select(vec![
        0i64,
        -1,
        1_700_000_000_000,
        MAX_TIMESTAMP_MS,
        MAX_TIMESTAMP_MS + 1,
        i64::MAX,
    ]);
    let some_resource = Some(pb::Resource {
        r#type: "invoice".into(),
        id: "in_1".into(),
    });
    let some_actor = Some(pb::Actor {
        r#type: "user".into(),
        id: "u_1".into(),
        name: "Ann \"A\"".into(),
    });
    (
        mostly(Just("acme".to_string()), text()),
        mostly(Just("invoice.paid".to_string()), text()),
        mostly(Just(r#"{"a":{"b":1}}"#.to_string()), json_text()),
        mostly(Just(String::new()), text()),
        mostly(Just(some_resource), resource),
        mostly(Just(some_actor), actor),
        mostly(Just(0), occurred),
        (
            mostly(Just(String::new()), text()),
            mostly(Just(vec![]), prop::collection::vec(text(), 0..3)),
            mostly(Just(String::new()), json_text()),
        ),
    )
        .prop_map(
            |(
                tenant_id,
                event_type,
                payload_json,
                idempotency_key,
                resource,
                actor,
                occurred_at_ms,
                (skip_key, changed_fields, previous_payload_json),
            )| {
                pb::PublishRequest {
                    tenant_id,
                    event_type,
                    payload_json,
                    idempotency_key,
                    resource,
                    actor,
                    occurred_at_ms,
                    skip_key,
                    changed_fields,
                    previous_payload_json,
                }
            },
        )
}

/// A refusal must be INVALID_ARGUMENT naming a field the request has.
fn assert_names_a_field(e: &Error, fields: &[&str]) {
    match e {
        Error::InvalidArgument { field, .. } => assert!(
            fields.iter().any(|f| field == f
                || field.starts_with(&format!("{f}["))
                || field.starts_with(&format!("{f}."))),
            "refusal names '{field}', not a field of the request: {e}"
        ),
        other => panic!("refused with {other:?}, not INVALID_ARGUMENT"),
    }
}

/// The endpoint as an agent receives it, with the secrets the create call
/// would generate.
fn delivery_endpoint(rec: &herald_shared::model::EndpointRecord) -> pb::DeliveryEndpoint {
    pb::DeliveryEndpoint {
        id: "ep_1".into(),
        tenant_id: "acme".into(),
        url: rec.url.clone(),
        use_get: rec.method == Method::Get,
        enabled: true,
        headers: rec.headers.clone().into_iter().collect(),
        custom_data_json: rec.custom_data_json.clone(),
        timeout_ms: rec.timeout_ms,
        signing_secrets: vec![herald_shared::signing::generate_secret()],
        omit_standard_signature: rec.omit_standard_signature,
        body_signature: rec.body_signature.as_ref().map(|b| pb::BodySignature {
            header: b.header.clone(),
            encoding: if b.base64 { 2 } else { 1 },
        }),
        auth: rec.auth.as_ref().map(|a| pb::ReceiverAuth {
            kind: Some(match a {
                AuthRecord::Basic { username, password } => {
                    pb::receiver_auth::Kind::Basic(pb::BasicAuth {
                        username: username.clone(),
                        password: password.clone(),
                    })
                }
                AuthRecord::Jwt {
                    secret,
                    ttl_secs,
                    claims_json,
                } => pb::receiver_auth::Kind::Jwt(pb::JwtAuth {
                    claims_json: claims_json.clone(),
                    secret: if secret.is_empty() {
                        herald_shared::signing::generate_jwt_secret()
                    } else {
                        secret.clone()
                    },
                    ttl_secs: *ttl_secs,
                }),
            }),
        }),
        chunk_size: rec.chunk_size.max(1),
        ..Default::default()
    }
}

fn delivery(r: &pb::PublishRequest) -> pb::Delivery {
    pb::Delivery {
        endpoint_id: "ep_1".into(),
        event_id: "evt_1".into(),
        event_type: r.event_type.clone(),
        tenant_id: r.tenant_id.clone(),
        payload_json: r.payload_json.clone(),
        resource: r.resource.clone(),
        actor: r.actor.clone(),
        occurred_at_ms: if r.occurred_at_ms == 0 {
            1_700_000_000_000
        } else {
            r.occurred_at_ms
        },
        published_at_ms: 1_700_000_000_000,
        delivery_id: "dlv_1".into(),
        ..Default::default()
    }
}

fn good_publish() -> pb::PublishRequest {
    pb::PublishRequest {
        tenant_id: "acme".into(),
        event_type: "invoice.paid".into(),
        payload_json: r#"{"a":1}"#.into(),
        ..Default::default()
    }
}

/// Builds the request an agent would send, and checks its body.
fn assert_deliverable(ep: &pb::DeliveryEndpoint, r: &pb::PublishRequest) {
    let d = delivery(r);
    let req = herald_agent::http::build_request(
        client(),
        ep,
        &[&d],
        herald_agent::auth::History::default(),
        1_700_000_000_000,
        (String::new(), String::new()),
    )
    .unwrap_or_else(|e| panic!("accepted, but no request can be built: {e}"));
    assert_same_url(&ep.url, req.url());
    if ep.use_get {
        return;
    }
    let body = req.body().and_then(|b| b.as_bytes()).expect("a body");
    assert!(
        body.len() <= r.payload_json.len() + ep.custom_data_json.len() + MAX_ENVELOPE_OVERHEAD,
        "a body of {} bytes for a payload of {}",
        body.len(),
        r.payload_json.len()
    );
    let v: serde_json::Value = serde_json::from_slice(body).expect("the body is JSON");
    // A chunking endpoint gets an array of envelopes.
    let envelope = if v.is_array() { &v[0] } else { &v };
    let ts = envelope["timestamp"].as_str().expect("a timestamp");
    assert!(
        ts.len() == 24 && ts.as_bytes()[4] == b'-' && ts.ends_with('Z'),
        "timestamp {ts} is not RFC 3339"
    );
}

/// The URL an agent connects to is the one stored (up to the case of the
/// scheme and host, a default port and the root path's '/').
fn assert_same_url(stored: &str, used: &reqwest::Url) {
    assert_ne!(
        used.port_or_known_default(),
        Some(0),
        "{stored} connects to port 0"
    );
    if !stored.is_ascii() {
        return; // an IDN host is used as its punycode
    }
    let default_port = match used.scheme() {
        "https" => ":443",
        _ => ":80",
    };
    let host_end = stored.find("//").map_or(0, |i| i + 2);
    let host_end = host_end
        + stored[host_end..]
            .find(['/', '?'])
            .unwrap_or(stored.len() - host_end);
    let (authority, rest) = stored.split_at(host_end);
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    let rest = if rest.is_empty() || rest.starts_with('?') {
        format!("/{rest}")
    } else {
        rest.to_string()
    };
    assert!(
        used.as_str()
            .eq_ignore_ascii_case(&format!("{authority}{rest}")),
        "stored {stored:?}, used {:?}",
        used.as_str()
    );
}

/// RFC 9110 §7.6.1: meaningless end to end, so never sent on a
/// receiver's behalf.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// An accepted endpoint sets no hop-by-hop header, and each pattern can
/// match some event type name.
fn assert_sane_subscriptions(rec: &herald_shared::model::EndpointRecord) {
    for h in rec.headers.keys() {
        assert!(
            !HOP_BY_HOP.contains(&h.as_str()),
            "hop-by-hop header {h} accepted"
        );
    }
    for p in &rec.event_types {
        assert!(
            p.replace('*', "").len() <= herald_shared::ids::MAX_NAME_LEN,
            "pattern of {} bytes can match no event type name",
            p.len()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn an_accepted_spec_is_storable_and_deliverable(spec in spec()) {
        match validate::endpoint_spec(Some(spec), true, &catalog()) {
            Err(e) => assert_names_a_field(&e, &["spec"]),
            Ok(rec) => {
                assert_sane_subscriptions(&rec);
                let stored = herald_control_plane::store::encode(&rec).len();
                prop_assert!(stored <= ETCD_MAX_VALUE, "{stored} bytes cannot go into etcd");
                assert_deliverable(&delivery_endpoint(&rec), &good_publish());
            }
        }
    }

    #[test]
    fn an_accepted_publish_is_deliverable_within_the_bound(r in publish_request()) {
        let fields = [
            "tenant_id", "event_type", "payload_json", "previous_payload_json", "changed_fields",
            "skip_key", "idempotency_key", "resource", "actor", "occurred_at_ms",
        ];
        match validate::publish(&r, MAX_PAYLOAD) {
            Err(e) => assert_names_a_field(&e, &fields),
            Ok(_) => {
                                let ep = pb::DeliveryEndpoint {
                    url: "https://example.com/hook".into(),
                    custom_data_json: r#"{"k":"v"}"#.into(),
                    signing_secrets: vec![herald_shared::signing::generate_secret()],
                    ..Default::default()
                };
                assert_deliverable(&ep, &r);
            }
        }
    }
}

/// The largest spec the limits allow, every list and map full to its
/// limit with values at theirs: accepted, and well inside etcd's limit.
#[test]
fn the_largest_spec_fits_in_etcd() {
    let long = |n: usize, i: usize| format!("{i:04}{}", "x".repeat(n - 4));
    let value_len = MAX_HEADER_BYTES / MAX_HEADERS - 8;
    let spec = pb::EndpointSpec {
        name: "x".repeat(MAX_TEXT),
        description: "x".repeat(MAX_TEXT),
        url: format!("https://example.com/{}", "x".repeat(MAX_URL - 20)),
        event_types: (0..MAX_EVENT_TYPES)
            .map(|i| format!("{}*", long(127, i)))
            .collect(),
        headers: (0..MAX_HEADERS)
            .map(|i| (format!("x-h{i:04}"), "v".repeat(value_len)))
            .collect(),
        custom_data_json: format!(
            r#"{{"a":"{}"}}"#,
            "\"".repeat(0) + &"x".repeat(MAX_JSON_FIELD - 8)
        ),
        labels: (0..MAX_LABELS)
            .map(|i| (long(MAX_LABEL_KEY, i), "v".repeat(MAX_LABEL_VALUE)))
            .collect(),
        skip_keys: (0..MAX_SKIP_KEYS).map(|i| long(MAX_SKIP_KEY, i)).collect(),
        // The conditions' budget, shared between filters and rules.
        filters: (0..MAX_FILTERS - MAX_FILTER_RULES)
            .map(|i| biggest_filter(long(MAX_PATH, i)))
            .collect(),
        filter_rules: (0..MAX_FILTER_RULES)
            .map(|i| pb::FilterRule {
                event_types: (0..MAX_RULE_EVENT_TYPES)
                    .map(|j| format!("{}*", long(127, i * 100 + j)))
                    .collect(),
                any_of: vec![biggest_filter(long(MAX_PATH, i))],
                ..Default::default()
            })
            .collect(),
        on_field_change: (0..MAX_PATHS).map(|i| long(MAX_PATH, i)).collect(),
        load_only: (0..MAX_PATHS).map(|i| long(MAX_PATH, i)).collect(),
        ..Default::default()
    };
    let rec = validate::endpoint_spec(Some(spec), false, &catalog()).expect("accepted");
    let stored = herald_control_plane::store::encode(&rec).len();
    assert!(stored < ETCD_MAX_VALUE / 2, "{stored} bytes");
    assert_deliverable(&delivery_endpoint(&rec), &good_publish());
}
