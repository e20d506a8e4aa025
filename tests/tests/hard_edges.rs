//! The hard edges of the API (issue 15): each limit holds at its boundary
//! on both sides against real etcd, what is accepted at the limits is
//! delivered, and each kind of input that used to slip through is refused
//! with INVALID_ARGUMENT naming the field, or NOT_FOUND for a tenant that
//! does not exist. The control plane's `validators` property test covers
//! the space between.

use std::collections::HashMap;
use std::time::Duration;

use herald_proto::v1 as pb;
use herald_tests::cluster::{Clients, Cluster};
use tonic::Code;

fn assert_status<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, starts: &str) {
    let s = r.expect_err("expected an error status");
    assert_eq!(s.code(), code, "{starts}: {}", s.message());
    assert!(
        s.message().starts_with(starts),
        "message {:?} should start with {starts:?}",
        s.message()
    );
}

fn base(url: &str) -> pb::EndpointSpec {
    pb::EndpointSpec {
        name: "edge".into(),
        url: url.into(),
        event_types: vec!["order.created".into()],
        ..Default::default()
    }
}

async fn create(api: &mut Clients, spec: pb::EndpointSpec) -> Result<pb::Endpoint, tonic::Status> {
    api.endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            spec: Some(spec),
        })
        .await
        .map(|r| r.into_inner().endpoint.expect("endpoint"))
}

fn headers(n: usize, value_len: usize) -> HashMap<String, String> {
    (0..n)
        .map(|i| (format!("x-h{i:03}"), "v".repeat(value_len)))
        .collect()
}

/// 9999-12-31T23:59:59.999Z, the last instant RFC 3339 can write.
const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

#[tokio::test(flavor = "multi_thread")]
async fn limits_hold_on_both_sides_and_what_is_accepted_is_delivered() -> anyhow::Result<()> {
    let (mut c, receiver) = Cluster::with_receiver("order.created").await?;
    let url = receiver.url("/edge");
    let api = &mut c.api;

    // The largest spec: every list full, stored in real etcd and read back.
    let full = pb::EndpointSpec {
        headers: headers(100, 600),
        custom_data_json: format!(r#"{{"k":"{}"}}"#, "x".repeat(64 * 1024 - 8)),
        labels: (0..64)
            .map(|i| (format!("l{i:03}"), "v".repeat(256)))
            .collect(),
        filters: (0..50)
            .map(|i| pb::Filter {
                path: format!("f{i}"),
                op: pb::FilterOp::Ne as i32,
                value_json: format!("\"{}\"", "x".repeat(4094)),
            })
            .collect(),
        event_types: std::iter::once("order.created".to_string())
            .chain((1..256).map(|i| format!("p{i}.*")))
            .collect(),
        skip_keys: (0..100).map(|i| format!("k{i}")).collect(),
        ..base(&url)
    };
    let ep = create(api, full.clone()).await?;
    let got = api
        .endpoints
        .get_endpoint(pb::GetEndpointRequest {
            tenant_id: "acme".into(),
            id: ep.id.clone(),
        })
        .await?
        .into_inner();
    let spec = got.spec.expect("spec");
    assert_eq!(spec.headers.len(), 100);
    assert_eq!(spec.filters.len(), 50);
    assert_eq!(spec.event_types.len(), 256);

    // One past each limit is refused, naming the field.
    let over: Vec<(pb::EndpointSpec, &str)> = vec![
        (
            pb::EndpointSpec {
                headers: headers(101, 10),
                ..base(&url)
            },
            "spec.headers: lists 101 items",
        ),
        (
            pb::EndpointSpec {
                headers: headers(100, 8192),
                ..base(&url)
            },
            "spec.headers: hold ",
        ),
        (
            pb::EndpointSpec {
                headers: headers(1, 8193),
                ..base(&url)
            },
            "spec.headers[x-h000]: value must be at most 8192",
        ),
        (
            pb::EndpointSpec {
                labels: (0..65).map(|i| (format!("l{i}"), "v".into())).collect(),
                ..base(&url)
            },
            "spec.labels: lists 65 items",
        ),
        (
            pb::EndpointSpec {
                filters: vec![full.filters[0].clone(); 51],
                ..base(&url)
            },
            "spec.filters: lists 51 items",
        ),
        (
            pb::EndpointSpec {
                filters: vec![pb::Filter {
                    value_json: format!("\"{}\"", "x".repeat(4095)),
                    ..full.filters[0].clone()
                }],
                ..base(&url)
            },
            "spec.filters[0].value_json: must be at most 4096",
        ),
        (
            pb::EndpointSpec {
                event_types: vec!["*".into(); 257],
                ..base(&url)
            },
            "spec.event_types: lists 257 items",
        ),
        (
            pb::EndpointSpec {
                custom_data_json: format!(r#"{{"k":"{}"}}"#, "x".repeat(64 * 1024 - 7)),
                ..base(&url)
            },
            "spec.custom_data_json: must be at most 65536",
        ),
    ];
    for (spec, want) in over {
        assert_status(create(api, spec).await, Code::InvalidArgument, want);
    }

    // Delivered at the limits: a payload of exactly --max-payload-bytes,
    // resource and actor at theirs, the last RFC 3339 instant, 64 KiB of
    // custom data and 60 custom headers (the test receiver, like many
    // servers, takes at most 100 header fields in all).
    let ep = create(
        api,
        pb::EndpointSpec {
            headers: headers(60, 500),
            custom_data_json: full.custom_data_json.clone(),
            enabled: true,
            ..base(&url)
        },
    )
    .await?;
    let payload = format!(r#"{{"x":"{}"}}"#, "a".repeat(262_144 - 8));
    assert_eq!(payload.len(), 262_144);
    let publish = pb::PublishRequest {
        tenant_id: "acme".into(),
        event_type: "order.created".into(),
        payload_json: payload.clone(),
        resource: Some(pb::Resource {
            r#type: "t".repeat(128),
            id: "r".repeat(1024),
        }),
        actor: Some(pb::Actor {
            r#type: "t".repeat(128),
            id: "i".repeat(1024),
            name: "\"".repeat(1024),
        }),
        occurred_at_ms: MAX_TIMESTAMP_MS,
        ..Default::default()
    };
    let sent = api.publish.publish(publish.clone()).await?.into_inner();
    assert_eq!(sent.endpoints_matched, 1, "{}", ep.id);
    let got = receiver.wait_for(1, Duration::from_secs(20)).await;
    let body = &got[0].body;
    assert!(got[0].accepted());
    assert!(
        body.len() <= payload.len() + full.custom_data_json.len() + 8 * 1024,
        "a body of {} bytes",
        body.len()
    );
    let v = got[0].json();
    assert_eq!(v["timestamp"], "9999-12-31T23:59:59.999Z");
    assert_eq!(got[0].header("x-h059"), "v".repeat(500));

    // One past: the payload, the actor's name, the timestamp.
    let over: Vec<(pb::PublishRequest, &str)> = vec![
        (
            pb::PublishRequest {
                payload_json: format!("{payload} "),
                ..publish.clone()
            },
            "payload_json: is 262145 bytes",
        ),
        (
            pb::PublishRequest {
                actor: Some(pb::Actor {
                    r#type: "user".into(),
                    id: "u".into(),
                    name: "n".repeat(1025),
                }),
                ..publish.clone()
            },
            "actor.name: must be at most 1024",
        ),
        (
            pb::PublishRequest {
                occurred_at_ms: MAX_TIMESTAMP_MS + 1,
                ..publish.clone()
            },
            "occurred_at_ms: ",
        ),
    ];
    for (p, want) in over {
        assert_status(api.publish.publish(p).await, Code::InvalidArgument, want);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn what_used_to_slip_through_is_refused_naming_the_field() -> anyhow::Result<()> {
    let (mut c, receiver) = Cluster::with_receiver("order.created").await?;
    let url = receiver.url("/edge");
    let api = &mut c.api;
    let header = |k: &str, v: &str| pb::EndpointSpec {
        headers: [(k.to_string(), v.to_string())].into(),
        ..base(&url)
    };
    let mut cases: Vec<(pb::EndpointSpec, String)> = Vec::new();
    for v in ["a\u{1}b", "a\u{1b}[2J", "a\u{7f}"] {
        cases.push((
            header("x-a", v),
            "spec.headers[x-a]: value holds byte".into(),
        ));
    }
    for k in [
        "keep-alive",
        "Proxy-Authorization",
        "proxy-authenticate",
        "trailer",
    ] {
        cases.push((
            header(k, "v"),
            format!("spec.headers[{k}]: is set by Herald or is hop-by-hop"),
        ));
    }
    for bad in [
        "http://127.0.0.1:0/edge".to_string(),
        "http:///x".to_string(),
        format!(" {url}"),
        format!("{url} "),
        format!("{url}\r\nx-injected: 1"),
    ] {
        cases.push((
            pb::EndpointSpec {
                url: bad,
                ..base(&url)
            },
            "spec.url: ".into(),
        ));
    }
    cases.push((
        pb::EndpointSpec {
            event_types: vec![format!("{}*", "a".repeat(100_000))],
            ..base(&url)
        },
        "spec.event_types[0]: must be at most 128".into(),
    ));
    // Too large for one etcd request: INVALID_ARGUMENT, never UNAVAILABLE.
    cases.push((
        pb::EndpointSpec {
            custom_data_json: format!(r#"{{"k":"{}"}}"#, "x".repeat(2 << 20)),
            ..base(&url)
        },
        "spec.custom_data_json: must be at most".into(),
    ));
    for (spec, want) in cases {
        assert_status(create(api, spec).await, Code::InvalidArgument, &want);
    }
    let publish = pb::PublishRequest {
        tenant_id: "acme".into(),
        event_type: "order.created".into(),
        payload_json: "{}".into(),
        actor: Some(pb::Actor {
            r#type: "user".into(),
            id: "u".into(),
            name: "n".repeat(1_000_000),
        }),
        ..Default::default()
    };
    assert_status(
        api.publish.publish(publish.clone()).await,
        Code::InvalidArgument,
        "actor.name: ",
    );
    let far = pb::PublishRequest {
        actor: None,
        occurred_at_ms: i64::MAX / 2,
        ..publish
    };
    assert_status(
        api.publish.publish(far).await,
        Code::InvalidArgument,
        "occurred_at_ms: ",
    );
    assert!(receiver.received().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_naming_a_missing_tenant_answers_not_found() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    c.api.event_type("order.created").await?;
    let api = &mut c.api;
    let t = || "nobody".to_string();
    let spec = Some(base("https://hooks.example.com/in"));
    let nf = |r: Result<(), tonic::Status>, call: &str| {
        let s = r.expect_err(call);
        assert_eq!(s.code(), Code::NotFound, "{call}: {}", s.message());
    };
    nf(
        api.tenants
            .get_tenant(pb::GetTenantRequest { id: t() })
            .await
            .map(drop),
        "GetTenant",
    );
    nf(
        api.tenants
            .delete_tenant(pb::DeleteTenantRequest { id: t() })
            .await
            .map(drop),
        "DeleteTenant",
    );
    let e = &mut api.endpoints;
    nf(
        e.create_endpoint(pb::CreateEndpointRequest {
            tenant_id: t(),
            spec: spec.clone(),
        })
        .await
        .map(drop),
        "CreateEndpoint",
    );
    nf(
        e.list_endpoints(pb::ListEndpointsRequest {
            tenant_id: t(),
            ..Default::default()
        })
        .await
        .map(drop),
        "ListEndpoints",
    );
    nf(
        e.get_endpoint(pb::GetEndpointRequest {
            tenant_id: t(),
            id: "ep_x".into(),
        })
        .await
        .map(drop),
        "GetEndpoint",
    );
    nf(
        e.update_endpoint(pb::UpdateEndpointRequest {
            tenant_id: t(),
            id: "ep_x".into(),
            spec,
            expected_revision: 1,
        })
        .await
        .map(drop),
        "UpdateEndpoint",
    );
    nf(
        e.delete_endpoint(pb::DeleteEndpointRequest {
            tenant_id: t(),
            id: "ep_x".into(),
        })
        .await
        .map(drop),
        "DeleteEndpoint",
    );
    nf(
        e.rotate_secret(pb::RotateSecretRequest {
            tenant_id: t(),
            id: "ep_x".into(),
            ..Default::default()
        })
        .await
        .map(drop),
        "RotateSecret",
    );
    let publish = pb::PublishRequest {
        tenant_id: t(),
        event_type: "order.created".into(),
        payload_json: "{}".into(),
        ..Default::default()
    };
    nf(
        api.publish.publish(publish.clone()).await.map(drop),
        "Publish",
    );
    let batch = api
        .publish
        .publish_batch(pb::PublishBatchRequest {
            events: vec![publish],
        })
        .await?
        .into_inner();
    assert_eq!(
        batch.results[0].code, "NOT_FOUND",
        "PublishBatch: {:?}",
        batch.results[0]
    );
    let d = &mut api.deliveries;
    nf(
        d.list_deliveries(pb::ListDeliveriesRequest {
            tenant_id: t(),
            ..Default::default()
        })
        .await
        .map(drop),
        "ListDeliveries",
    );
    nf(
        d.get_delivery(pb::GetDeliveryRequest {
            tenant_id: t(),
            delivery_id: "dlv_x".into(),
        })
        .await
        .map(drop),
        "GetDelivery",
    );
    nf(
        d.resend_delivery(pb::ResendDeliveryRequest {
            tenant_id: t(),
            delivery_id: "dlv_x".into(),
        })
        .await
        .map(drop),
        "ResendDelivery",
    );
    nf(
        d.recover_deliveries(pb::RecoverDeliveriesRequest {
            tenant_id: t(),
            endpoint_id: "ep_x".into(),
            since_ms: 1,
        })
        .await
        .map(drop),
        "RecoverDeliveries",
    );
    nf(
        d.send_test_event(pb::SendTestEventRequest {
            tenant_id: t(),
            endpoint_id: "ep_x".into(),
            ..Default::default()
        })
        .await
        .map(drop),
        "SendTestEvent",
    );
    nf(
        d.get_endpoint_stats(pb::GetEndpointStatsRequest {
            tenant_id: t(),
            endpoint_id: "ep_x".into(),
        })
        .await
        .map(drop),
        "GetEndpointStats",
    );
    Ok(())
}
