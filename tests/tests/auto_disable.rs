//! Auto-disable (D5): a 410 Gone disables an endpoint at once; N deliveries
//! in a row that failed for good disable it too. Its queue is kept, and
//! enabling it again delivers the rest in order.

use std::time::{Duration, Instant};

use herald_proto::v1 as pb;
use herald_tests::cluster::{Clients, Cluster};
use herald_tests::receiver::Received;

fn seqs(received: &[Received]) -> Vec<u64> {
    received
        .iter()
        .map(|r| r.json()["data"]["seq"].as_u64().expect("seq"))
        .collect()
}

async fn create(
    api: &mut Clients,
    url: &str,
    delays_ms: Vec<u32>,
    disable_after: u32,
) -> anyhow::Result<pb::Endpoint> {
    let spec = pb::EndpointSpec {
        name: "flaky".into(),
        url: url.into(),
        enabled: true,
        event_types: vec!["*".into()],
        retry: Some(pb::RetryPolicy { delays_ms }),
        disable_after_failures: disable_after,
        ..Default::default()
    };
    let created = api
        .endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            spec: Some(spec),
        })
        .await?
        .into_inner();
    created
        .endpoint
        .ok_or_else(|| anyhow::anyhow!("no endpoint in reply"))
}

async fn get(api: &mut Clients, id: &str) -> anyhow::Result<pb::Endpoint> {
    Ok(api
        .endpoints
        .get_endpoint(pb::GetEndpointRequest {
            tenant_id: "acme".into(),
            id: id.into(),
        })
        .await?
        .into_inner())
}

async fn wait_disabled(api: &mut Clients, id: &str) -> anyhow::Result<pb::Endpoint> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ep = get(api, id).await?;
        if !ep.spec.as_ref().is_some_and(|s| s.enabled) {
            return Ok(ep);
        }
        anyhow::ensure!(Instant::now() < deadline, "endpoint was not disabled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn enable(api: &mut Clients, ep: pb::Endpoint) -> anyhow::Result<pb::Endpoint> {
    let mut spec = ep.spec.clone().unwrap_or_default();
    spec.enabled = true;
    Ok(api
        .endpoints
        .update_endpoint(pb::UpdateEndpointRequest {
            tenant_id: "acme".into(),
            id: ep.id.clone(),
            spec: Some(spec),
            expected_revision: ep.revision,
        })
        .await?
        .into_inner())
}

/// Publishes events 0..n; returns those that matched the endpoint.
async fn publish_all(api: &mut Clients, n: u64) -> anyhow::Result<Vec<u64>> {
    let replies = api.publish_seqs(0..n).await?;
    Ok((0..n).filter(|s| replies[*s as usize] == 1).collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn gone_disables_at_once_and_enabling_resumes_in_order() -> anyhow::Result<()> {
    let (mut c, receiver) = Cluster::with_receiver("order.created").await?;
    let ep = create(&mut c.api, &receiver.url("/"), vec![100; 5], 0).await?;
    assert_eq!(
        ep.spec.as_ref().map(|s| s.disable_after_failures),
        Some(5),
        "documented default"
    );
    receiver.script(&[(410, None)]);
    // A disabled endpoint matches no new publishes, so an event published
    // after the disable is not queued for it: count what matched.
    let matched = publish_all(&mut c.api, 3).await?;
    let disabled = wait_disabled(&mut c.api, &ep.id).await?;
    assert!(
        disabled.disabled_reason.contains("410"),
        "reason: {:?}",
        disabled.disabled_reason
    );
    assert!(disabled.disabled_at_ms > 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        seqs(&receiver.received()),
        [0],
        "one attempt, no retries, nothing behind it"
    );

    let enabled = enable(&mut c.api, disabled).await?;
    assert_eq!(enabled.disabled_reason, "", "enabling clears the reason");
    let expected: Vec<u64> = [0].into_iter().chain(matched).collect();
    receiver
        .wait_for(expected.len(), Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seqs(&receiver.received()),
        expected,
        "the kept queue resumes in order"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn consecutive_final_failures_disable_and_keep_the_rest() -> anyhow::Result<()> {
    let (mut c, receiver) = Cluster::with_receiver("order.created").await?;
    // No retries: each failed attempt is a final failure; two in a row disable.
    let ep = create(&mut c.api, &receiver.url("/"), vec![], 2).await?;
    receiver.set_status(500);
    // A disabled endpoint matches no new publishes, so an event published
    // after the disable is not queued for it: count what matched.
    let matched = publish_all(&mut c.api, 4).await?;
    assert!(matched.starts_with(&[0, 1]), "queued before any failure");
    let disabled = wait_disabled(&mut c.api, &ep.id).await?;
    assert!(
        disabled
            .disabled_reason
            .starts_with("2 deliveries in a row failed for good"),
        "reason: {:?}",
        disabled.disabled_reason
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        seqs(&receiver.received()),
        [0, 1],
        "the rest is held while disabled"
    );

    receiver.set_status(200);
    enable(&mut c.api, disabled).await?;
    receiver
        .wait_for(matched.len(), Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        seqs(&receiver.received()),
        matched,
        "held events delivered in order"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_failure_count_survives_a_kill_9() -> anyhow::Result<()> {
    let (mut c, receiver) = Cluster::with_receiver("order.created").await?;
    let ep = create(&mut c.api, &receiver.url("/"), vec![], 2).await?;
    receiver.set_status(500);
    assert_eq!(publish_all(&mut c.api, 1).await?, [0]);
    receiver.wait_for(1, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while c
        .api
        .stats("acme", &ep.id)
        .await?
        .deliveries_failed_in_a_row
        < 1
    {
        anyhow::ensure!(Instant::now() < deadline, "first failure not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One failure so far. Kill the agent: a count held only in memory would
    // start over, and the next failure would not disable the endpoint.
    c.agent.kill9();
    c.agent.restart()?;
    c.api
        .publish("acme", "order.created", serde_json::json!({"seq": 1}), "k1")
        .await?;
    let disabled = wait_disabled(&mut c.api, &ep.id).await?;
    assert!(
        disabled
            .disabled_reason
            .starts_with("2 deliveries in a row failed for good"),
        "reason: {:?}",
        disabled.disabled_reason
    );
    let st = c.api.stats("acme", &ep.id).await?;
    assert_eq!((st.events, st.failures), (2, 2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_endpoint_can_queue_new_events() -> anyhow::Result<()> {
    let (mut c, receiver) = Cluster::with_receiver("order.created").await?;
    let mut spec = pb::EndpointSpec {
        name: "queueing".into(),
        url: receiver.url("/"),
        enabled: false,
        event_types: vec!["*".into()],
        queue_while_disabled: true,
        ..Default::default()
    };
    let queueing = c
        .api
        .endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            spec: Some(spec.clone()),
        })
        .await?
        .into_inner()
        .endpoint
        .ok_or_else(|| anyhow::anyhow!("no endpoint"))?;
    spec.queue_while_disabled = false;
    let skipping = c
        .api
        .endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            spec: Some(spec),
        })
        .await?
        .into_inner()
        .endpoint
        .ok_or_else(|| anyhow::anyhow!("no endpoint"))?;
    let matched = c.api.publish_seqs(0..3).await?;
    assert_eq!(matched, [1, 1, 1], "only the queueing endpoint matches");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        receiver.received().is_empty(),
        "nothing is sent while disabled"
    );
    let st = c.api.stats("acme", &queueing.id).await?;
    assert_eq!(st.queue_depth, 3);
    assert_eq!(c.api.stats("acme", &skipping.id).await?.events, 0);
    enable(&mut c.api, queueing).await?;
    receiver.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(
        seqs(&receiver.received()),
        [0, 1, 2],
        "in order once enabled"
    );
    Ok(())
}
