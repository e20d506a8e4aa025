//! Bad input and conflicts get a precise gRPC status naming the field, and
//! never take a process down.

use herald_proto::v1 as pb;
use herald_tests::cluster::{Cluster, ControlPlane};
use serde_json::json;
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

fn publish(tenant: &str, event_type: &str, payload: &str) -> pb::PublishRequest {
    pb::PublishRequest {
        tenant_id: tenant.into(),
        event_type: event_type.into(),
        payload_json: payload.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_rejects_bad_input_naming_the_field() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    c.api.event_type("order.created").await?;
    c.api.event_type("order.legacy").await?;
    c.api
        .catalog
        .archive_event_type(pb::ArchiveEventTypeRequest {
            name: "order.legacy".into(),
        })
        .await?;
    c.api.tenant("acme").await?;
    let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(300 * 1024));
    let p = &mut c.api.publish;

    assert_status(
        p.publish(publish("nobody", "order.created", "{}")).await,
        Code::NotFound,
        "tenant 'nobody' not found",
    );
    assert_status(
        p.publish(publish("", "order.created", "{}")).await,
        Code::InvalidArgument,
        "tenant_id: ",
    );
    assert_status(
        p.publish(publish("acme", "", "{}")).await,
        Code::InvalidArgument,
        "event_type: ",
    );
    assert_status(
        p.publish(publish("acme", "order.unknown", "{}")).await,
        Code::InvalidArgument,
        "event_type: unknown",
    );
    assert_status(
        p.publish(publish("acme", "order.legacy", "{}")).await,
        Code::InvalidArgument,
        "event_type: event type 'order.legacy' is archived",
    );
    assert_status(
        p.publish(publish("acme", "order.created", "")).await,
        Code::InvalidArgument,
        "payload_json: ",
    );
    assert_status(
        p.publish(publish("acme", "order.created", "{nope")).await,
        Code::InvalidArgument,
        "payload_json: is not valid JSON",
    );
    assert_status(
        p.publish(publish("acme", "order.created", "[1,2]")).await,
        Code::InvalidArgument,
        "payload_json: must be a JSON object",
    );
    assert_status(
        p.publish(publish("acme", "order.created", &big)).await,
        Code::InvalidArgument,
        "payload_json: is 307208 bytes, over the limit of 262144",
    );
    let mut with_bad_resource = publish("acme", "order.created", "{}");
    with_bad_resource.resource = Some(pb::Resource {
        r#type: "order".into(),
        id: String::new(),
    });
    assert_status(
        p.publish(with_bad_resource).await,
        Code::InvalidArgument,
        "resource.id: ",
    );
    let mut long_key = publish("acme", "order.created", "{}");
    long_key.idempotency_key = "k".repeat(300);
    assert_status(
        p.publish(long_key).await,
        Code::InvalidArgument,
        "idempotency_key: ",
    );

    // Still serving after all that.
    assert_eq!(
        c.api
            .publish("acme", "order.created", json!({}), "ok")
            .await?
            .endpoints_matched,
        0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn payload_limit_is_configurable() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let small = ControlPlane::start(&c.etcd, &["--max-payload-bytes=64"])?;
    let mut api = small.clients().await?;
    api.event_type("order.created").await?;
    api.tenant("acme").await?;
    let payload = format!(r#"{{"x":"{}"}}"#, "a".repeat(100));
    assert_status(
        api.publish
            .publish(publish("acme", "order.created", &payload))
            .await,
        Code::InvalidArgument,
        "payload_json: is 108 bytes, over the limit of 64",
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn config_rejects_bad_input_and_stale_revisions() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    c.api.event_type("order.created").await?;
    c.api.tenant("acme").await?;

    // Catalog and tenants.
    assert_status(
        c.api.event_type("order.created").await.map_err(to_status),
        Code::AlreadyExists,
        "event type 'order.created' already exists",
    );
    assert_status(
        c.api
            .catalog
            .create_event_type(pb::CreateEventTypeRequest {
                name: "bad name".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "name: ",
    );
    assert_status(
        c.api
            .catalog
            .create_event_type(pb::CreateEventTypeRequest {
                name: "x.y".into(),
                schema_json: "[]".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "schema_json: must be a JSON object",
    );
    assert_status(
        c.api.tenant("acme").await.map_err(to_status),
        Code::AlreadyExists,
        "tenant 'acme' already exists",
    );
    assert_status(
        c.api
            .tenants
            .create_tenant(pb::CreateTenantRequest {
                id: "a/b".into(),
                name: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "id: ",
    );

    // Endpoints.
    let spec = |url: &str, types: &[&str]| pb::EndpointSpec {
        name: "e".into(),
        url: url.into(),
        event_types: types.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let create = |tenant: &str, spec: pb::EndpointSpec| pb::CreateEndpointRequest {
        tenant_id: tenant.into(),
        spec: Some(spec),
    };
    let e = &mut c.api.endpoints;
    assert_status(
        e.create_endpoint(create("nobody", spec("https://x.test/", &["*"])))
            .await,
        Code::NotFound,
        "tenant 'nobody' not found",
    );
    assert_status(
        e.create_endpoint(create("acme", spec("not-a-url", &["*"])))
            .await,
        Code::InvalidArgument,
        "spec.url: is not a valid URL",
    );
    assert_status(
        e.create_endpoint(create("acme", spec("ftp://x.test/", &["*"])))
            .await,
        Code::InvalidArgument,
        "spec.url: scheme 'ftp'",
    );
    assert_status(
        e.create_endpoint(create("acme", spec("https://x.test/", &[])))
            .await,
        Code::InvalidArgument,
        "spec.event_types: ",
    );
    assert_status(
        e.create_endpoint(create("acme", spec("https://x.test/", &["order.nope"])))
            .await,
        Code::InvalidArgument,
        "spec.event_types[0]: unknown event type",
    );
    let mut bad_header = spec("https://x.test/", &["*"]);
    bad_header
        .headers
        .insert("webhook-signature".into(), "forged".into());
    assert_status(
        e.create_endpoint(create("acme", bad_header)).await,
        Code::InvalidArgument,
        "spec.headers[webhook-signature]: ",
    );
    let mut bad_timeout = spec("https://x.test/", &["*"]);
    bad_timeout.timeout_ms = 1_000_000;
    assert_status(
        e.create_endpoint(create("acme", bad_timeout)).await,
        Code::InvalidArgument,
        "spec.timeout_ms: ",
    );
    assert_status(
        e.create_endpoint(pb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            spec: None,
        })
        .await,
        Code::InvalidArgument,
        "spec: ",
    );

    // Optimistic concurrency: the second writer with the old revision loses.
    let ep = e
        .create_endpoint(create("acme", spec("https://x.test/", &["*"])))
        .await?
        .into_inner()
        .endpoint
        .expect("endpoint");
    let update = |rev: i64, name: &str| pb::UpdateEndpointRequest {
        tenant_id: "acme".into(),
        id: ep.id.clone(),
        spec: Some(pb::EndpointSpec {
            name: name.into(),
            ..spec("https://x.test/", &["*"])
        }),
        expected_revision: rev,
    };
    let updated = e
        .update_endpoint(update(ep.revision, "first"))
        .await?
        .into_inner();
    assert!(updated.revision > ep.revision);
    assert_status(
        e.update_endpoint(update(ep.revision, "second")).await,
        Code::FailedPrecondition,
        &format!(
            "endpoint '{}' changed since revision {}",
            ep.id, ep.revision
        ),
    );
    assert_status(
        e.update_endpoint(update(0, "third")).await,
        Code::InvalidArgument,
        "expected_revision: ",
    );
    let now = e
        .get_endpoint(pb::GetEndpointRequest {
            tenant_id: "acme".into(),
            id: ep.id.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(
        now.spec.map(|s| s.name).as_deref(),
        Some("first"),
        "the stale update changed nothing"
    );

    let t = c
        .api
        .catalog
        .get_event_type(pb::GetEventTypeRequest {
            name: "order.created".into(),
        })
        .await?
        .into_inner();
    let upd = |rev: i64| pb::UpdateEventTypeRequest {
        name: "order.created".into(),
        description: "d".into(),
        expected_revision: rev,
        ..Default::default()
    };
    c.api.catalog.update_event_type(upd(t.revision)).await?;
    assert_status(
        c.api.catalog.update_event_type(upd(t.revision)).await,
        Code::FailedPrecondition,
        "event type 'order.created' changed",
    );

    // Deleting a tenant removes its endpoints.
    let gone = c
        .api
        .tenants
        .delete_tenant(pb::DeleteTenantRequest { id: "acme".into() })
        .await?
        .into_inner();
    assert_eq!(gone.endpoints_deleted, 1);
    assert_status(
        c.api
            .endpoints
            .get_endpoint(pb::GetEndpointRequest {
                tenant_id: "acme".into(),
                id: ep.id.clone(),
            })
            .await,
        Code::NotFound,
        "endpoint",
    );
    // Listing the endpoints of a tenant that is gone (or never was) is
    // NOT_FOUND like every other call that names it, not an empty list.
    assert_status(
        c.api
            .endpoints
            .list_endpoints(pb::ListEndpointsRequest {
                tenant_id: "acme".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "tenant",
    );
    Ok(())
}

fn to_status(e: anyhow::Error) -> tonic::Status {
    e.downcast::<tonic::Status>()
        .unwrap_or_else(|e| tonic::Status::unknown(e.to_string()))
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoint_options_are_validated_naming_the_field() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    c.api.tenant("acme").await?;
    // (http without --allow-http is refused too; the harness allows it,
    // so the control plane's unit tests cover that case.)
    let base = pb::EndpointSpec {
        name: "e".into(),
        url: "https://hooks.example.com/in".into(),
        event_types: vec!["*".into()],
        ..Default::default()
    };
    let jwt = |secret: &str, ttl: u32| {
        Some(pb::ReceiverAuth {
            kind: Some(pb::receiver_auth::Kind::Jwt(pb::JwtAuth {
                secret: secret.into(),
                ttl_secs: ttl,
                ..Default::default()
            })),
        })
    };
    let basic = |user: &str| {
        Some(pb::ReceiverAuth {
            kind: Some(pb::receiver_auth::Kind::Basic(pb::BasicAuth {
                username: user.into(),
                password: "pw".into(),
            })),
        })
    };
    let body_sig = |header: &str, encoding: i32| {
        Some(pb::BodySignature {
            header: header.into(),
            encoding,
        })
    };
    let filter = |path: &str, op: i32, value: &str| {
        vec![pb::Filter {
            path: path.into(),
            op,
            value_json: value.into(),
        }]
    };
    let with_header = |k: &str| pb::EndpointSpec {
        headers: [(k.to_string(), "x".to_string())].into(),
        ..base.clone()
    };
    let cases: Vec<(pb::EndpointSpec, &str)> = vec![
        (
            pb::EndpointSpec {
                url: "https://".into(),
                ..base.clone()
            },
            "spec.url: is not a valid URL",
        ),
        (
            pb::EndpointSpec {
                url: "https://user:pw@hooks.example.com/".into(),
                ..base.clone()
            },
            "spec.url: must not carry credentials",
        ),
        (
            // No DNS name has a label this long: never deliverable.
            pb::EndpointSpec {
                url: format!("https://{}.example.com/", "a".repeat(64)),
                ..base.clone()
            },
            "spec.url: host name has a label of 64 bytes",
        ),
        (
            pb::EndpointSpec {
                chunk_size: 101,
                ..base.clone()
            },
            "spec.chunk_size: 101 is outside 1..=100",
        ),
        (
            pb::EndpointSpec {
                chunk_size: 10,
                method: pb::HttpMethod::Get as i32,
                ..base.clone()
            },
            "spec.chunk_size: above 1 needs POST",
        ),
        (
            pb::EndpointSpec {
                chunk_delay_ms: 3_600_001,
                ..base.clone()
            },
            "spec.chunk_delay_ms: ",
        ),
        (
            pb::EndpointSpec {
                rate_limit_per_sec: 10_001,
                ..base.clone()
            },
            "spec.rate_limit_per_sec: ",
        ),
        (
            pb::EndpointSpec {
                filters: filter("status", 42, "1"),
                ..base.clone()
            },
            "spec.filters[0].op: 42 is not an operator",
        ),
        (
            pb::EndpointSpec {
                filters: filter("a..b", pb::FilterOp::Eq as i32, "1"),
                ..base.clone()
            },
            "spec.filters[0].path: ",
        ),
        (
            pb::EndpointSpec {
                load_only: vec!["".into()],
                ..base.clone()
            },
            "spec.load_only[0]: ",
        ),
        (
            with_header("Authorization"),
            "spec.headers[Authorization]: is set by Herald",
        ),
        (
            with_header("webhook-timestamp"),
            "spec.headers[webhook-timestamp]: is set by Herald",
        ),
        (
            pb::EndpointSpec {
                body_signature: body_sig("webhook-signature", 0),
                ..base.clone()
            },
            "spec.body_signature.header: is set by Herald",
        ),
        (
            pb::EndpointSpec {
                body_signature: body_sig("bad header", 0),
                ..base.clone()
            },
            "spec.body_signature.header: is not a valid HTTP header name",
        ),
        (
            pb::EndpointSpec {
                body_signature: body_sig("x-sig", 9),
                ..base.clone()
            },
            "spec.body_signature.encoding: ",
        ),
        (
            pb::EndpointSpec {
                auth: jwt("too-short", 0),
                ..base.clone()
            },
            "spec.auth.jwt.secret: must be 32 to 512 bytes",
        ),
        (
            pb::EndpointSpec {
                auth: jwt(&"k".repeat(32), 90_000),
                ..base.clone()
            },
            "spec.auth.jwt.ttl_secs: ",
        ),
        (
            pb::EndpointSpec {
                auth: basic("a:b"),
                ..base.clone()
            },
            "spec.auth.basic.username: ",
        ),
        (
            pb::EndpointSpec {
                auth: basic(""),
                ..base.clone()
            },
            "spec.auth.basic.username: ",
        ),
    ];
    let api = &mut c.api;
    for (spec, want) in cases {
        assert_status(
            api.endpoints
                .create_endpoint(pb::CreateEndpointRequest {
                    tenant_id: "acme".into(),
                    spec: Some(spec),
                })
                .await,
            Code::InvalidArgument,
            want,
        );
    }
    // Switching to JWT on update needs a secret: there is none to keep.
    let ep = api
        .endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            spec: Some(base.clone()),
        })
        .await?
        .into_inner()
        .endpoint
        .expect("endpoint");
    assert_status(
        api.endpoints
            .update_endpoint(pb::UpdateEndpointRequest {
                tenant_id: "acme".into(),
                id: ep.id.clone(),
                spec: Some(pb::EndpointSpec {
                    auth: jwt("", 0),
                    ..base.clone()
                }),
                expected_revision: ep.revision,
            })
            .await,
        Code::InvalidArgument,
        "spec.auth.jwt.secret: is required when switching",
    );
    Ok(())
}
