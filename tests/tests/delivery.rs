//! End to end on real parts: publish through the gRPC API, receive a signed
//! webhook on a real HTTP receiver, durably across kill -9.

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use herald_tests::cluster::{Cluster, ControlPlane};
use herald_tests::process::free_port;
use herald_tests::receiver::{Received, Receiver};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

/// Standard Webhooks verification written from the specification, not with
/// Herald's signing code: HMAC-SHA256 keyed by the base64-decoded part of
/// `whsec_...` over "{webhook-id}.{webhook-timestamp}.{body}", base64, with
/// `v1,` before it; the header may hold several space-separated signatures.
fn verify_standard_webhooks(secret: &str, r: &Received) -> bool {
    let key = B64
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .expect("secret is base64");
    let signed = format!(
        "{}.{}.",
        r.header("webhook-id"),
        r.header("webhook-timestamp")
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("hmac key");
    mac.update(signed.as_bytes());
    mac.update(&r.body);
    let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    r.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

/// The `seq` field of each delivery's data, in arrival order.
fn seqs(received: &[Received]) -> Vec<u64> {
    received
        .iter()
        .map(|r| r.json()["data"]["seq"].as_u64().expect("seq in data"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn publish_delivers_a_signed_envelope() -> anyhow::Result<()> {
    let (mut c, receiver, created) =
        Cluster::with_endpoint("invoice.activated", "/hooks", &["invoice.*"]).await?;
    let secret = created.signing_secret.clone();
    assert!(secret.starts_with("whsec_"));

    let reply = c
        .api
        .publish
        .publish(herald_proto::v1::PublishRequest {
            tenant_id: "acme".into(),
            event_type: "invoice.activated".into(),
            payload_json: r#"{"invoice":"in_1","amount":4200}"#.into(),
            idempotency_key: "k-1".into(),
            resource: Some(herald_proto::v1::Resource {
                r#type: "invoice".into(),
                id: "in_1".into(),
            }),
            actor: Some(herald_proto::v1::Actor {
                r#type: "user".into(),
                id: "u_7".into(),
                name: "Ada".into(),
            }),
            occurred_at_ms: 1_795_444_200_000,
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_eq!(reply.endpoints_matched, 1);

    let got = receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(got.len(), 1, "one delivery");
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.uri.path(), "/hooks");
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(r.header("webhook-id"), reply.event_id);
    let ts: i64 = r.header("webhook-timestamp").parse()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    assert!((now - ts).abs() < 60, "timestamp is current");
    assert!(
        verify_standard_webhooks(&secret, r),
        "signature verifies per the spec"
    );
    // A different secret must not verify: the check above is not vacuous.
    assert!(!verify_standard_webhooks(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        r
    ));

    let body = r.json();
    assert_eq!(body["id"], reply.event_id.as_str());
    assert_eq!(body["type"], "invoice.activated");
    assert_eq!(body["tenant_id"], "acme");
    assert_eq!(body["timestamp"], "2026-11-23T14:30:00.000Z");
    assert_eq!(body["resource"], json!({"type": "invoice", "id": "in_1"}));
    assert_eq!(
        body["actor"],
        json!({"type": "user", "id": "u_7", "name": "Ada"})
    );
    assert_eq!(body["data"], json!({"invoice": "in_1", "amount": 4200}));

    // The secret is shown once: reads never return it.
    let listed = format!(
        "{:?}",
        c.api
            .endpoints
            .list_endpoints(herald_proto::v1::ListEndpointsRequest {
                tenant_id: "acme".into(),
                ..Default::default()
            })
            .await?
            .into_inner()
    );
    assert!(
        !listed.contains(&secret[6..]),
        "list response leaks the secret"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_events_arrive_once_each_in_order() -> anyhow::Result<()> {
    let (mut c, receiver, _) = Cluster::with_endpoint("order.created", "/", &["*"]).await?;
    let matched = c.api.publish_seqs(0..1000).await?;
    assert!(
        matched.iter().all(|m| *m == 1),
        "every publish matched the endpoint"
    );
    let got = receiver.wait_for(1000, Duration::from_secs(60)).await;
    // Give a duplicate the chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = if receiver.received().len() > got.len() {
        receiver.received()
    } else {
        got
    };
    assert_eq!(
        seqs(&got),
        (0..1000).collect::<Vec<_>>(),
        "each event once, in publish order"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_events_survive_kill_9_of_the_agent() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    // The receiver is down: nothing listens on its port yet.
    let port = free_port();
    c.api.event_type("order.created").await?;
    c.api.tenant("acme").await?;
    c.api
        .endpoint(
            "acme",
            &format!("http://127.0.0.1:{port}/"),
            &["order.created"],
        )
        .await?;
    let matched = c.api.publish_seqs(0..500).await?;
    assert!(
        matched.iter().all(|m| *m == 1),
        "every publish answered OK and matched"
    );
    c.agent.kill9();
    let receiver = Receiver::start_on(port).await;
    c.agent.restart()?;

    let got = receiver.wait_for(500, Duration::from_secs(60)).await;
    let seqs = seqs(&got);
    let distinct: HashSet<_> = seqs.iter().collect();
    eprintln!(
        "received {} requests, {} distinct events, {} duplicates",
        seqs.len(),
        distinct.len(),
        seqs.len() - distinct.len()
    );
    assert_eq!(distinct.len(), 500, "every event delivered");
    // First arrivals are in publish order.
    let mut seen = HashSet::new();
    let firsts: Vec<u64> = seqs.iter().copied().filter(|s| seen.insert(*s)).collect();
    assert_eq!(firsts, (0..500).collect::<Vec<_>>(), "delivered in order");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn same_idempotency_key_is_one_event() -> anyhow::Result<()> {
    let (mut c, receiver, _) = Cluster::with_endpoint("order.created", "/", &["*"]).await?;
    c.api.tenant("globex").await?;

    let first = c
        .api
        .publish("acme", "order.created", json!({"seq": 0}), "same-key")
        .await?;
    let again = c
        .api
        .publish("acme", "order.created", json!({"seq": 0}), "same-key")
        .await?;
    assert_eq!(
        first.event_id, again.event_id,
        "a retry returns the first event's id"
    );
    let other_tenant = c
        .api
        .publish("globex", "order.created", json!({"seq": 9}), "same-key")
        .await?;
    assert_ne!(other_tenant.event_id, first.event_id, "keys are per tenant");
    // An ordered endpoint delivers in publish order, so once this sentinel
    // arrived a duplicate of the first would have arrived before it.
    c.api
        .publish("acme", "order.created", json!({"seq": 1}), "sentinel")
        .await?;
    let got = receiver.wait_for(2, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        seqs(&receiver.received()),
        [0, 1],
        "the repeated publish enqueued nothing ({} received)",
        got.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_replica_routes_to_an_endpoint_created_through_the_first() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    let cp2 = ControlPlane::start(&c.etcd, &[])?;
    let mut api2 = cp2.clients().await?;
    let receiver = Receiver::start().await;
    c.api.event_type("order.created").await?;
    c.api.tenant("acme").await?;
    c.api
        .endpoint("acme", &receiver.url("/"), &["order.*"])
        .await?;
    let created = std::time::Instant::now();

    // The second replica learns of the tenant and the endpoint through its
    // etcd watch; until then it may answer NOT_FOUND or match nothing.
    let reply = loop {
        let r = api2
            .publish("acme", "order.created", json!({"seq": 0}), "via-2")
            .await;
        let late = created.elapsed() > Duration::from_secs(1);
        match r {
            Ok(r) if r.endpoints_matched == 1 || late => break r,
            Err(s) if s.code() != tonic::Code::NotFound || late => return Err(s.into()),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    assert_eq!(
        reply.endpoints_matched, 1,
        "replica 2 saw the endpoint within a second"
    );
    let got = receiver.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(seqs(&got), [0]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn new_endpoints_start_disabled_and_match_nothing() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    c.api.event_type("order.created").await?;
    c.api.tenant("acme").await?;
    let created = c
        .api
        .endpoints
        .create_endpoint(herald_proto::v1::CreateEndpointRequest {
            tenant_id: "acme".into(),
            spec: Some(herald_proto::v1::EndpointSpec {
                name: "off".into(),
                url: "http://127.0.0.1:9/".into(),
                event_types: vec!["*".into()],
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    assert!(
        !created
            .endpoint
            .and_then(|e| e.spec)
            .is_some_and(|s| s.enabled)
    );
    let r = c
        .api
        .publish("acme", "order.created", json!({}), "k")
        .await?;
    assert_eq!(r.endpoints_matched, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_tenant_stops_its_queues() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    let port = free_port(); // the receiver is down while events queue up
    c.api.event_type("order.created").await?;
    c.api.tenant("acme").await?;
    c.api
        .endpoint("acme", &format!("http://127.0.0.1:{port}/"), &["*"])
        .await?;
    let matched = c.api.publish_seqs(0..20).await?;
    assert!(matched.iter().all(|m| *m == 1));
    let deleted = c
        .api
        .tenants
        .delete_tenant(herald_proto::v1::DeleteTenantRequest { id: "acme".into() })
        .await?
        .into_inner();
    assert_eq!(deleted.endpoints_deleted, 1);
    // Give the removal time to reach the agent, then bring the receiver up:
    // nothing of the deleted tenant may arrive, even across an agent restart.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let receiver = Receiver::start_on(port).await;
    c.agent.kill9();
    c.agent.restart()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        receiver.received().len(),
        0,
        "a deleted tenant's events were delivered"
    );
    Ok(())
}
