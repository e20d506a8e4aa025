//! Access control (issue 16): every RPC needs its scope, a key limited to
//! tenants sees nothing of the others, revocation reaches every replica
//! through the watch, and bad keys get a clear status. Real etcd, real
//! control planes and agents.

use std::time::{Duration, Instant};

use herald_proto::v1 as pb;
use herald_tests::cluster::{Clients, Cluster, ControlPlane};
use prost::Message as _;
use tonic::Code;

/// What the test expects each RPC to need (written independently of the
/// server's table, so a wrong entry there fails here).
fn needed(rpc: &str) -> &'static str {
    match rpc {
        "CreateEventType" | "UpdateEventType" | "ArchiveEventType" | "CreateTenant"
        | "DeleteTenant" | "CreateEndpoint" | "UpdateEndpoint" | "DeleteEndpoint"
        | "RotateSecret" => "config:write",
        "GetEventType" | "ListEventTypes" | "GetTenant" | "ListTenants" | "GetEndpoint"
        | "ListEndpoints" => "config:read",
        "Publish" | "PublishBatch" => "publish",
        "ListDeliveries" | "GetDelivery" | "GetEndpointStats" => "deliveries:read",
        "ResendDelivery" | "RecoverDeliveries" | "SendTestEvent" => "deliveries:write",
        "GetCluster" => "cluster:read",
        "DrainAgent" => "cluster:write",
        "CreateApiKey" | "ListApiKeys" | "RevokeApiKey" => "admin",
        "GetEndpointSecret" => "secrets:read",
        other => panic!("the test does not know RPC {other}: add it"),
    }
}

/// Every RPC of the public services, from the protos' descriptors.
fn public_rpcs() -> Vec<String> {
    let set = prost_types::FileDescriptorSet::decode(herald_proto::FILE_DESCRIPTOR_SET).unwrap();
    set.file
        .iter()
        .flat_map(|f| f.service.iter())
        .filter(|s| !s.name().starts_with("Agent"))
        .flat_map(|s| s.method.iter().map(|m| m.name().to_string()))
        .collect()
}

/// The ids the calls act on.
struct World {
    endpoint: String,
    delivery: String,
}

/// Calls `rpc` with requests that succeed when access allows them (or
/// fail for their own reasons, never for access).
async fn call(api: &mut Clients, rpc: &str, w: &World) -> Result<(), tonic::Status> {
    let t = || "acme".to_string();
    let ep = || w.endpoint.clone();
    match rpc {
        "CreateEventType" => api
            .catalog
            .create_event_type(pb::CreateEventTypeRequest {
                name: format!("x.{}", rand::random::<u32>()),
                ..Default::default()
            })
            .await
            .map(drop),
        "GetEventType" => api
            .catalog
            .get_event_type(pb::GetEventTypeRequest {
                name: "order.created".into(),
            })
            .await
            .map(drop),
        "ListEventTypes" => api
            .catalog
            .list_event_types(pb::ListEventTypesRequest::default())
            .await
            .map(drop),
        "UpdateEventType" => api
            .catalog
            .update_event_type(pb::UpdateEventTypeRequest {
                name: "order.nope".into(),
                expected_revision: 1,
                ..Default::default()
            })
            .await
            .map(drop),
        "ArchiveEventType" => api
            .catalog
            .archive_event_type(pb::ArchiveEventTypeRequest {
                name: "order.nope".into(),
            })
            .await
            .map(drop),
        "CreateTenant" => api
            .tenants
            .create_tenant(pb::CreateTenantRequest {
                id: "acme".into(),
                name: String::new(),
            })
            .await
            .map(drop),
        "GetTenant" => api
            .tenants
            .get_tenant(pb::GetTenantRequest { id: t() })
            .await
            .map(drop),
        "ListTenants" => api
            .tenants
            .list_tenants(pb::ListTenantsRequest::default())
            .await
            .map(drop),
        "DeleteTenant" => api
            .tenants
            .delete_tenant(pb::DeleteTenantRequest { id: "gone".into() })
            .await
            .map(drop),
        "CreateEndpoint" => api
            .endpoints
            .create_endpoint(pb::CreateEndpointRequest {
                tenant_id: t(),
                spec: None,
            })
            .await
            .map(drop),
        "GetEndpoint" => api
            .endpoints
            .get_endpoint(pb::GetEndpointRequest {
                tenant_id: t(),
                id: ep(),
            })
            .await
            .map(drop),
        "ListEndpoints" => api
            .endpoints
            .list_endpoints(pb::ListEndpointsRequest {
                tenant_id: t(),
                ..Default::default()
            })
            .await
            .map(drop),
        "UpdateEndpoint" => api
            .endpoints
            .update_endpoint(pb::UpdateEndpointRequest {
                tenant_id: t(),
                id: ep(),
                spec: None,
                expected_revision: 1,
            })
            .await
            .map(drop),
        "DeleteEndpoint" => api
            .endpoints
            .delete_endpoint(pb::DeleteEndpointRequest {
                tenant_id: t(),
                id: "ep_none".into(),
            })
            .await
            .map(drop),
        "RotateSecret" => api
            .endpoints
            .rotate_secret(pb::RotateSecretRequest {
                tenant_id: t(),
                id: "ep_none".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "GetEndpointSecret" => api
            .endpoints
            .get_endpoint_secret(pb::GetEndpointSecretRequest {
                tenant_id: t(),
                id: ep(),
            })
            .await
            .map(drop),
        "Publish" => api.publish.publish(publish("acme")).await.map(drop),
        "PublishBatch" => api
            .publish
            .publish_batch(pb::PublishBatchRequest {
                events: vec![publish("acme")],
            })
            .await
            .map(drop),
        "ListDeliveries" => api
            .deliveries
            .list_deliveries(pb::ListDeliveriesRequest {
                tenant_id: t(),
                ..Default::default()
            })
            .await
            .map(drop),
        "GetDelivery" => api
            .deliveries
            .get_delivery(pb::GetDeliveryRequest {
                tenant_id: t(),
                delivery_id: w.delivery.clone(),
            })
            .await
            .map(drop),
        "ResendDelivery" => api
            .deliveries
            .resend_delivery(pb::ResendDeliveryRequest {
                tenant_id: t(),
                delivery_id: w.delivery.clone(),
            })
            .await
            .map(drop),
        "RecoverDeliveries" => api
            .deliveries
            .recover_deliveries(pb::RecoverDeliveriesRequest {
                tenant_id: t(),
                endpoint_id: ep(),
                since_ms: 1,
            })
            .await
            .map(drop),
        "SendTestEvent" => api
            .deliveries
            .send_test_event(pb::SendTestEventRequest {
                tenant_id: t(),
                endpoint_id: ep(),
                ..Default::default()
            })
            .await
            .map(drop),
        "GetEndpointStats" => api
            .deliveries
            .get_endpoint_stats(pb::GetEndpointStatsRequest {
                tenant_id: t(),
                endpoint_id: ep(),
            })
            .await
            .map(drop),
        "GetCluster" => api
            .cluster
            .get_cluster(pb::GetClusterRequest {})
            .await
            .map(drop),
        "DrainAgent" => api
            .cluster
            .drain_agent(pb::DrainAgentRequest {
                agent_id: "agent-none".into(),
            })
            .await
            .map(drop),
        "CreateApiKey" => api
            .access
            .create_api_key(pb::CreateApiKeyRequest {
                name: format!("k{}", rand::random::<u32>()),
                scopes: vec!["publish".into()],
                ..Default::default()
            })
            .await
            .map(drop),
        "ListApiKeys" => api
            .access
            .list_api_keys(pb::ListApiKeysRequest {})
            .await
            .map(drop),
        "RevokeApiKey" => api
            .access
            .revoke_api_key(pb::RevokeApiKeyRequest {
                id: "0000000000000000".into(),
            })
            .await
            .map(drop),
        other => panic!("no call for {other}"),
    }
}

fn publish(tenant: &str) -> pb::PublishRequest {
    pb::PublishRequest {
        tenant_id: tenant.into(),
        event_type: "order.created".into(),
        payload_json: "{}".into(),
        ..Default::default()
    }
}

async fn key(
    admin: &mut Clients,
    name: &str,
    scopes: &[&str],
    tenants: &[&str],
) -> anyhow::Result<String> {
    Ok(admin
        .access
        .create_api_key(pb::CreateApiKeyRequest {
            name: name.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            tenants: tenants.iter().map(|s| s.to_string()).collect(),
            expires_at_ms: 0,
        })
        .await?
        .into_inner()
        .key)
}

fn is_access_refusal(s: &tonic::Status) -> bool {
    matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_needs_its_scope() -> anyhow::Result<()> {
    let (mut c, receiver) = Cluster::with_receiver("order.created").await?;
    let created = c
        .api
        .endpoint("acme", &receiver.url("/h"), &["order.created"])
        .await?;
    let endpoint = created.endpoint.expect("endpoint").id;
    c.api.publish.publish(publish("acme")).await?;
    let delivery = c
        .api
        .wait_for_status(
            "acme",
            &endpoint,
            pb::DeliveryStatus::Succeeded,
            1,
            Duration::from_secs(20),
        )
        .await?[0]
        .delivery_id
        .clone();
    let w = World { endpoint, delivery };
    let scopes = [
        "config:read",
        "config:write",
        "publish",
        "deliveries:read",
        "deliveries:write",
        "cluster:read",
        "cluster:write",
        "cluster:agent",
        "secrets:read",
    ];
    let mut with_scope = Vec::new();
    for s in scopes {
        let k = key(&mut c.api, &format!("only-{s}"), &[s], &[]).await?;
        with_scope.push((s, Clients::connect(&c.cp.url, Some(&k)).await?));
    }
    let mut anonymous = Clients::connect(&c.cp.url, None).await?;
    let rpcs = public_rpcs();
    assert!(rpcs.len() >= 28, "{rpcs:?}");
    for rpc in &rpcs {
        let need = needed(rpc);
        let s = call(&mut anonymous, rpc, &w).await.expect_err(rpc);
        assert_eq!(
            s.code(),
            Code::Unauthenticated,
            "{rpc} without a key: {}",
            s.message()
        );
        // The admin key may do everything.
        if let Err(s) = call(&mut c.api, rpc, &w).await {
            assert!(!is_access_refusal(&s), "{rpc} with admin: {s:?}");
        }
        for (scope, api) in with_scope.iter_mut() {
            let grants = *scope == need
                || (need.ends_with(":read") && *scope == need.replace(":read", ":write"));
            match call(api, rpc, &w).await {
                Err(s) if is_access_refusal(&s) => {
                    assert!(!grants, "{rpc} with {scope}: {s:?}");
                    assert_eq!(s.code(), Code::PermissionDenied, "{rpc} with {scope}");
                    assert!(
                        s.message().contains(&format!("'{need}'")),
                        "{rpc}: {}",
                        s.message()
                    );
                }
                _ => assert!(
                    grants,
                    "{rpc} succeeded with {scope}, which should not grant it"
                ),
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tenant_limited_key_sees_only_its_tenants() -> anyhow::Result<()> {
    let (mut c, receiver) = Cluster::with_receiver("order.created").await?;
    c.api.tenant("globex").await?;
    let acme_ep = c
        .api
        .endpoint("acme", &receiver.url("/acme"), &["order.created"])
        .await?
        .endpoint
        .unwrap()
        .id;
    let globex_ep = c
        .api
        .endpoint("globex", &receiver.url("/globex"), &["order.created"])
        .await?
        .endpoint
        .unwrap()
        .id;
    c.api.publish.publish(publish("globex")).await?;
    let globex_dlv = c
        .api
        .wait_for_status(
            "globex",
            &globex_ep,
            pb::DeliveryStatus::Succeeded,
            1,
            Duration::from_secs(20),
        )
        .await?[0]
        .delivery_id
        .clone();
    let k = key(
        &mut c.api,
        "acme-only",
        &[
            "config:write",
            "publish",
            "deliveries:write",
            "cluster:read",
        ],
        &["acme"],
    )
    .await?;
    let mut acme = Clients::connect(&c.cp.url, Some(&k)).await?;

    // Its own tenant: everything works.
    acme.publish.publish(publish("acme")).await?;
    let acme_dlv = acme
        .wait_for_status(
            "acme",
            &acme_ep,
            pb::DeliveryStatus::Succeeded,
            1,
            Duration::from_secs(20),
        )
        .await?[0]
        .delivery_id
        .clone();
    acme.deliveries
        .resend_delivery(pb::ResendDeliveryRequest {
            tenant_id: "acme".into(),
            delivery_id: acme_dlv,
        })
        .await?;
    let listed = acme
        .tenants
        .list_tenants(pb::ListTenantsRequest::default())
        .await?
        .into_inner()
        .tenants;
    assert_eq!(
        listed.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["acme"]
    );
    acme.catalog
        .list_event_types(pb::ListEventTypesRequest::default())
        .await?;

    // Another tenant's things answer as if they did not exist.
    let nf = |r: Result<(), tonic::Status>, what: &str| {
        let s = r.expect_err(what);
        assert_eq!(s.code(), Code::NotFound, "{what}: {}", s.message());
    };
    let g = || "globex".to_string();
    nf(
        acme.tenants
            .get_tenant(pb::GetTenantRequest { id: g() })
            .await
            .map(drop),
        "GetTenant",
    );
    nf(
        acme.tenants
            .delete_tenant(pb::DeleteTenantRequest { id: g() })
            .await
            .map(drop),
        "DeleteTenant",
    );
    nf(
        acme.endpoints
            .list_endpoints(pb::ListEndpointsRequest {
                tenant_id: g(),
                ..Default::default()
            })
            .await
            .map(drop),
        "ListEndpoints",
    );
    nf(
        acme.endpoints
            .get_endpoint(pb::GetEndpointRequest {
                tenant_id: g(),
                id: globex_ep.clone(),
            })
            .await
            .map(drop),
        "GetEndpoint",
    );
    nf(
        acme.endpoints
            .get_endpoint(pb::GetEndpointRequest {
                tenant_id: "acme".into(),
                id: globex_ep.clone(),
            })
            .await
            .map(drop),
        "GetEndpoint under acme",
    );
    nf(
        acme.endpoints
            .delete_endpoint(pb::DeleteEndpointRequest {
                tenant_id: g(),
                id: globex_ep.clone(),
            })
            .await
            .map(drop),
        "DeleteEndpoint",
    );
    nf(
        acme.publish.publish(publish("globex")).await.map(drop),
        "Publish",
    );
    nf(
        acme.publish
            .publish_batch(pb::PublishBatchRequest {
                events: vec![publish("acme"), publish("globex")],
            })
            .await
            .map(drop),
        "PublishBatch with a foreign event",
    );
    nf(
        acme.deliveries
            .list_deliveries(pb::ListDeliveriesRequest {
                tenant_id: g(),
                ..Default::default()
            })
            .await
            .map(drop),
        "ListDeliveries",
    );
    nf(
        acme.deliveries
            .get_delivery(pb::GetDeliveryRequest {
                tenant_id: g(),
                delivery_id: globex_dlv.clone(),
            })
            .await
            .map(drop),
        "GetDelivery",
    );
    nf(
        acme.deliveries
            .get_delivery(pb::GetDeliveryRequest {
                tenant_id: "acme".into(),
                delivery_id: globex_dlv.clone(),
            })
            .await
            .map(drop),
        "GetDelivery under acme",
    );
    nf(
        acme.deliveries
            .resend_delivery(pb::ResendDeliveryRequest {
                tenant_id: "acme".into(),
                delivery_id: globex_dlv.clone(),
            })
            .await
            .map(drop),
        "ResendDelivery under acme",
    );
    nf(
        acme.deliveries
            .resend_delivery(pb::ResendDeliveryRequest {
                tenant_id: g(),
                delivery_id: globex_dlv,
            })
            .await
            .map(drop),
        "ResendDelivery",
    );
    nf(
        acme.deliveries
            .get_endpoint_stats(pb::GetEndpointStatsRequest {
                tenant_id: "acme".into(),
                endpoint_id: globex_ep,
            })
            .await
            .map(drop),
        "GetEndpointStats under acme",
    );
    let acme_list = acme
        .deliveries
        .list_deliveries(pb::ListDeliveriesRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert!(acme_list.deliveries.iter().all(|d| d.tenant_id == "acme"));

    // What is not about one tenant needs an unlimited key.
    let pd = |r: Result<(), tonic::Status>, what: &str| {
        let s = r.expect_err(what);
        assert_eq!(s.code(), Code::PermissionDenied, "{what}: {}", s.message());
    };
    pd(
        acme.tenants
            .create_tenant(pb::CreateTenantRequest {
                id: "initech".into(),
                name: String::new(),
            })
            .await
            .map(drop),
        "CreateTenant",
    );
    pd(
        acme.catalog
            .create_event_type(pb::CreateEventTypeRequest {
                name: "x.y".into(),
                ..Default::default()
            })
            .await
            .map(drop),
        "CreateEventType",
    );
    pd(
        acme.cluster
            .get_cluster(pb::GetClusterRequest {})
            .await
            .map(drop),
        "GetCluster",
    );
    let got = receiver.received();
    assert!(
        got.iter()
            .all(|r| r.uri.path() != "/globex" || r.json()["tenant_id"] == "globex")
    );
    Ok(())
}

/// A key made through one replica reaches another through etcd's watch:
/// waits until `replica` knows it (a call is no longer refused as from an
/// unknown key).
async fn until_known(replica: &mut Clients) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        match replica
            .tenants
            .list_tenants(pb::ListTenantsRequest::default())
            .await
        {
            Err(s) if s.code() == Code::Unauthenticated => {
                anyhow::ensure!(
                    start.elapsed() < Duration::from_secs(5),
                    "the replica never learned the key"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            _ => return Ok(()),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_revoked_on_one_replica_stops_on_the_other() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    let cp2 = ControlPlane::start(&c.etcd, &[])?;
    let k = key(&mut c.api, "ci", &["config:read"], &[]).await?;
    let mut on2 = Clients::connect(&cp2.url, Some(&k)).await?;
    until_known(&mut on2).await?;
    on2.tenants
        .list_tenants(pb::ListTenantsRequest::default())
        .await?;
    let id = k.split('_').nth(1).unwrap().to_string();
    let listed = c
        .api
        .access
        .list_api_keys(pb::ListApiKeysRequest {})
        .await?
        .into_inner();
    assert!(listed.api_keys.iter().any(|a| a.id == id && a.name == "ci"));
    assert!(
        !format!("{listed:?}").contains(k.rsplit('_').next().unwrap()),
        "a secret in the list"
    );
    c.api
        .access
        .revoke_api_key(pb::RevokeApiKeyRequest { id })
        .await?;
    let revoked = Instant::now();
    loop {
        match on2
            .tenants
            .list_tenants(pb::ListTenantsRequest::default())
            .await
        {
            Err(s) if s.code() == Code::Unauthenticated => break,
            _ => {
                assert!(
                    revoked.elapsed() < Duration::from_secs(5),
                    "replica 2 still takes the key"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    println!("revocation reached replica 2 in {:?}", revoked.elapsed());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_keys_and_requests_get_clear_statuses() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    let good = key(&mut c.api, "good", &["config:read"], &[]).await?;
    let (id, secret) = good[3..].split_once('_').unwrap();
    let bad = [
        String::new(),
        "hk_".into(),
        good[..good.len() - 1].to_string(),
        format!("{good}x"),
        format!("hk_{id}_{}", "A".repeat(43)),
        format!("hk_0000000000000000_{secret}"),
        "x".repeat(8000),
        format!("Basic {good}"),
    ];
    for b in &bad {
        let ch = tonic::transport::Channel::from_shared(c.cp.url.clone())?
            .connect()
            .await?;
        let mut t = pb::tenant_service_client::TenantServiceClient::new(ch);
        let mut req = tonic::Request::new(pb::ListTenantsRequest::default());
        let header = if b.starts_with("Basic ") {
            b.clone()
        } else {
            format!("Bearer {b}")
        };
        req.metadata_mut().insert("authorization", header.parse()?);
        let s = t.list_tenants(req).await.expect_err(b);
        assert_eq!(s.code(), Code::Unauthenticated, "{b:.40}: {}", s.message());
        assert!(!s.message().contains(secret), "the secret in an error text");
    }
    // An expired key stops working.
    let expiring = c
        .api
        .access
        .create_api_key(pb::CreateApiKeyRequest {
            name: "short".into(),
            scopes: vec!["config:read".into()],
            tenants: vec![],
            expires_at_ms: herald_shared::time::now_ms() + 1500,
        })
        .await?
        .into_inner()
        .key;
    let mut short = Clients::connect(&c.cp.url, Some(&expiring)).await?;
    short
        .tenants
        .list_tenants(pb::ListTenantsRequest::default())
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match short
            .tenants
            .list_tenants(pb::ListTenantsRequest::default())
            .await
        {
            Err(s) if s.code() == Code::Unauthenticated => {
                assert!(s.message().contains("expired"), "{}", s.message());
                break;
            }
            _ => {
                assert!(Instant::now() < deadline, "the key never expired");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Bad create requests name the field; a duplicate name is ALREADY_EXISTS.
    let create = |name: &str, scopes: &[&str], expires_at_ms: i64| pb::CreateApiKeyRequest {
        name: name.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        tenants: vec![],
        expires_at_ms,
    };
    for (req, code, starts) in [
        (
            create("n1", &["root"], 0),
            Code::InvalidArgument,
            "scopes[0]: 'root' is not a scope",
        ),
        (create("n2", &[], 0), Code::InvalidArgument, "scopes: "),
        (create("", &["publish"], 0), Code::InvalidArgument, "name: "),
        (
            create("n3", &["publish"], 1),
            Code::InvalidArgument,
            "expires_at_ms: ",
        ),
        (
            create("good", &["publish"], 0),
            Code::AlreadyExists,
            "a key named 'good' exists",
        ),
    ] {
        let s = c.api.access.create_api_key(req).await.expect_err(starts);
        assert_eq!(s.code(), code, "{}", s.message());
        assert!(s.message().starts_with(starts), "{}", s.message());
    }
    let s = c
        .api
        .access
        .revoke_api_key(pb::RevokeApiKeyRequest {
            id: "0123456789abcdef".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(s.code(), Code::NotFound);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_counted_and_reflection_can_be_turned_off() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    let cp2 = ControlPlane::start(
        &c.etcd,
        &["--metrics-listen=127.0.0.1:0", "--no-reflection"],
    )?;
    let metrics = cp2
        .proc
        .seen_line("herald-control-plane metrics on ")
        .expect("metrics address");
    let mut anonymous = Clients::connect(&cp2.url, None).await?;
    let _ = anonymous
        .tenants
        .list_tenants(pb::ListTenantsRequest::default())
        .await;
    let publisher = key(&mut c.api, "pub", &["publish"], &[]).await?;
    let mut p = Clients::connect(&cp2.url, Some(&publisher)).await?;
    // Its last call is the one refusal for scope.
    until_known(&mut p).await?;
    let text = herald_tests::metrics::scrape(&metrics).await?;
    assert!(
        text.contains("herald_auth_refusals_total{reason=\"missing\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("herald_auth_refusals_total{reason=\"scope\"} 1"),
        "{text}"
    );
    assert!(!text.contains(&publisher[20..]), "a secret in the metrics");
    // Reflection is gone; health stays open without a key.
    let ch = tonic::transport::Channel::from_shared(cp2.url.clone())?
        .connect()
        .await?;
    let mut refl =
        tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(ch.clone());
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let s = refl
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .expect_err("reflection off");
    assert_eq!(s.code(), Code::Unimplemented, "{}", s.message());
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_needs_the_agent_scope_and_no_auth_needs_a_flag() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    let cp2 = ControlPlane::start(&c.etcd, &["--metrics-listen=127.0.0.1:0"])?;
    let metrics = cp2
        .proc
        .seen_line("herald-control-plane metrics on ")
        .expect("metrics address");
    // An agent whose key may publish but not run as an agent gets no
    // control stream, so no endpoint configuration and no secrets.
    let publisher = key(&mut c.api, "pub", &["publish"], &[]).await?;
    let _agent = herald_tests::cluster::Agent::start_with_env(
        &c.etcd,
        &[&cp2],
        &[],
        &[("HERALD_API_KEY", publisher.as_str())],
    )?;
    herald_tests::metrics::wait_for_series(
        &metrics,
        "herald_auth_refusals_total{reason=\"scope\"}",
        Duration::from_secs(15),
    )
    .await?;
    // With --insecure-no-auth, calls need no key.
    let open = ControlPlane::start(&c.etcd, &["--insecure-no-auth"])?;
    let mut anonymous = Clients::connect(&open.url, None).await?;
    anonymous
        .tenants
        .list_tenants(pb::ListTenantsRequest::default())
        .await?;
    Ok(())
}

/// Runs the `herald` CLI against `url`; (success, stdout, stderr).
fn cli(url: &str, key: Option<&str>, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let mut cmd = std::process::Command::new(herald_tests::process::bin("herald"));
    cmd.arg("--server")
        .arg(url)
        .args(args)
        .env_remove("HERALD_API_KEY");
    if let Some(k) = key {
        cmd.env("HERALD_API_KEY", k);
    }
    let out = cmd.output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_sends_the_key_and_manages_keys() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let url = c.cp.url.as_str();
    let (ok, _, err) = cli(url, None, &["tenant", "list"])?;
    assert!(!ok && err.contains("UNAUTHENTICATED"), "{err}");
    let admin = c.etcd.admin_key.as_str();
    let args = [
        "--output",
        "json",
        "api-key",
        "create",
        "--name",
        "ci",
        "--scope",
        "config:read",
        "--tenant",
        "acme",
    ];
    let (ok, out, err) = cli(url, Some(admin), &args)?;
    assert!(ok, "{err}");
    let created: serde_json::Value = serde_json::from_str(&out)?;
    let key = created["key"].as_str().expect("key").to_string();
    let id = created["id"].as_str().expect("id").to_string();
    assert!(key.starts_with(&format!("hk_{id}_")));
    let (ok, out, err) = cli(url, Some(&key), &["--output", "json", "tenant", "list"])?;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "[]");
    let (ok, _, err) = cli(url, Some(&key), &["tenant", "create", "--id", "acme"])?;
    assert!(
        !ok && err.contains("PERMISSION_DENIED") && err.contains("config:write"),
        "{err}"
    );
    let (ok, out, _) = cli(url, Some(admin), &["api-key", "list"])?;
    assert!(
        ok && out.contains(&id) && !out.contains(&key[20..]),
        "{out}"
    );
    let (ok, _, err) = cli(url, Some(admin), &["api-key", "revoke", "--id", &id])?;
    assert!(ok, "{err}");
    let (ok, _, err) = cli(url, Some(&key), &["tenant", "list"])?;
    assert!(!ok && err.contains("UNAUTHENTICATED"), "{err}");
    Ok(())
}

/// Secrets are shown at create and rotate, and after that only to a key
/// with `secrets:read` (or admin): config:write may rotate them but not
/// read them, and a key for another tenant finds no such endpoint.
#[tokio::test(flavor = "multi_thread")]
async fn endpoint_secrets_are_read_only_with_secrets_read() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    c.api.event_type("order.created").await?;
    c.api.tenant("acme").await?;
    c.api.tenant("other").await?;
    let created = c
        .api
        .endpoint("acme", "https://example.com/hook", &["order.created"])
        .await?;
    let ep = created.endpoint.expect("endpoint").id;
    let first = created.signing_secret;
    let ask = || pb::GetEndpointSecretRequest {
        tenant_id: "acme".into(),
        id: ep.clone(),
    };

    let writer = key(&mut c.api, "writer", &["config:write"], &[]).await?;
    let mut writer = Clients::connect(&c.cp.url, Some(&writer)).await?;
    let e = writer
        .endpoints
        .get_endpoint_secret(ask())
        .await
        .expect_err("config:write does not read secrets");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("secrets:read"), "{}", e.message());
    assert!(!e.message().contains(&first), "no secret in errors");

    let reader = key(&mut c.api, "reader", &["secrets:read"], &["acme"]).await?;
    let mut reader = Clients::connect(&c.cp.url, Some(&reader)).await?;
    let got = reader
        .endpoints
        .get_endpoint_secret(ask())
        .await?
        .into_inner();
    assert_eq!(got.signing_secret, first);
    assert!(got.previous_signing_secrets.is_empty());
    // The same key reads no configuration, and nothing of other tenants.
    let e = reader
        .endpoints
        .get_endpoint(pb::GetEndpointRequest {
            tenant_id: "acme".into(),
            id: ep.clone(),
        })
        .await
        .expect_err("secrets:read is not config:read");
    assert_eq!(e.code(), Code::PermissionDenied);
    // Another tenant's endpoint, that exists, is not found for this key.
    let theirs = c
        .api
        .endpoint("other", "https://example.com/theirs", &["order.created"])
        .await?;
    let e = reader
        .endpoints
        .get_endpoint_secret(pb::GetEndpointSecretRequest {
            tenant_id: "other".into(),
            id: theirs.endpoint.expect("endpoint").id,
        })
        .await
        .expect_err("another tenant");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(!e.message().contains(&theirs.signing_secret));

    // After a rotation with an overlap: the new secret, and the old one
    // with when it stops signing.
    let rotated = writer
        .endpoints
        .rotate_secret(pb::RotateSecretRequest {
            tenant_id: "acme".into(),
            id: ep.clone(),
            overlap_secs: Some(3600),
            ..Default::default()
        })
        .await?
        .into_inner();
    let got = reader
        .endpoints
        .get_endpoint_secret(ask())
        .await?
        .into_inner();
    assert_eq!(got.signing_secret, rotated.secret);
    assert_eq!(got.previous_signing_secrets.len(), 1);
    assert_eq!(got.previous_signing_secrets[0].secret, first);
    assert!(got.previous_signing_secrets[0].expires_at_ms > herald_shared::time::now_ms());
    // Lists and reads of the endpoint still show none of them.
    let listed = c
        .api
        .endpoints
        .list_endpoints(pb::ListEndpointsRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let text = format!("{listed:?}");
    assert!(!text.contains(&first) && !text.contains(&rotated.secret));
    Ok(())
}
