//! Throttling (D7): chunks of events per request, spacing between
//! requests, and a rate limit, with order kept across chunks and retries.

use std::time::Duration;

use herald_proto::v1 as pb;
use herald_tests::cluster::{Clients, Cluster};
use herald_tests::receiver::{Received, Receiver};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// Creates a disabled endpoint that queues while disabled, so a whole
/// burst is waiting when it is enabled.
async fn queued_endpoint(
    api: &mut Clients,
    rx: &Receiver,
    spec: pb::EndpointSpec,
) -> anyhow::Result<pb::Endpoint> {
    throttled_endpoint(
        api,
        rx,
        pb::EndpointSpec {
            enabled: false,
            queue_while_disabled: true,
            event_types: vec!["*".into()],
            ..spec
        },
    )
    .await
}

/// Creates endpoint "throttled" of tenant `acme` at `rx` with `spec`.
async fn throttled_endpoint(
    api: &mut Clients,
    rx: &Receiver,
    spec: pb::EndpointSpec,
) -> anyhow::Result<pb::Endpoint> {
    Ok(api
        .endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            spec: Some(pb::EndpointSpec {
                name: "throttled".into(),
                url: rx.url("/hook"),
                ..spec
            }),
        })
        .await?
        .into_inner()
        .endpoint
        .expect("endpoint"))
}

/// Publishes `{"seq": n}` for n in `seqs`, 100 per batch call.
async fn publish_burst(api: &mut Clients, seqs: std::ops::Range<u64>) -> anyhow::Result<()> {
    let all: Vec<u64> = seqs.collect();
    for part in all.chunks(100) {
        let events = part
            .iter()
            .map(|n| pb::PublishRequest {
                tenant_id: "acme".into(),
                event_type: "order.created".into(),
                payload_json: json!({ "seq": n }).to_string(),
                idempotency_key: format!("k{n}"),
                ..Default::default()
            })
            .collect();
        let out = api
            .publish
            .publish_batch(pb::PublishBatchRequest { events })
            .await?
            .into_inner();
        for r in out.results {
            anyhow::ensure!(r.code == "OK", "publish failed: {} {}", r.code, r.message);
        }
    }
    Ok(())
}

/// The `data.seq` of every event in a chunked request, in body order.
fn seqs(r: &Received) -> Vec<u64> {
    r.json()
        .as_array()
        .expect("a chunked body is a JSON array")
        .iter()
        .map(|e| e["data"]["seq"].as_u64().expect("seq"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_goes_out_in_spaced_chunks_in_order() -> anyhow::Result<()> {
    let (mut c, rx) = Cluster::with_receiver("order.created").await?;
    let ep = queued_endpoint(
        &mut c.api,
        &rx,
        pb::EndpointSpec {
            chunk_size: 100,
            chunk_delay_ms: 1000,
            ..Default::default()
        },
    )
    .await?;
    publish_burst(&mut c.api, 0..250).await?;
    c.api.enable(&ep).await?;
    let got = rx.wait_for(3, WAIT).await;
    // Nothing more comes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got_after = rx.received();
    assert_eq!(got_after.len(), 3, "three requests in all");
    let sizes: Vec<usize> = got.iter().map(|r| seqs(r).len()).collect();
    assert_eq!(sizes, [100, 100, 50]);
    let all: Vec<u64> = got.iter().flat_map(seqs).collect();
    assert_eq!(
        all,
        (0..250).collect::<Vec<_>>(),
        "queue order, across chunks"
    );
    for pair in got.windows(2) {
        let gap = pair[1].at - pair[0].at;
        // Spacing is enforced where requests start; arrival adds jitter.
        assert!(gap >= Duration::from_millis(950), "arrivals {gap:?} apart");
    }
    // The agent's own send times, from the attempt log: 1 s apart at least.
    let log = c.api.deliveries_of("acme", &ep.id).await?;
    assert_eq!(log.len(), 250);
    let mut starts: Vec<i64> = Vec::new();
    for d in &log {
        anyhow::ensure!(d.status == pb::DeliveryStatus::Succeeded as i32);
        let detail = c.api.delivery("acme", &d.delivery_id).await?;
        starts.push(detail.attempts[0].started_at_ms);
    }
    starts.sort();
    starts.dedup();
    let gaps: Vec<Duration> = got.windows(2).map(|p| p[1].at - p[0].at).collect();
    eprintln!("chunk sizes {sizes:?}, send starts {starts:?}, arrival gaps {gaps:?}");
    assert_eq!(
        starts.len(),
        3,
        "each chunk is one attempt for all its events"
    );
    // Spacing holds on the monotonic clock where each request is released;
    // the log's start time is wall-clock whole milliseconds taken just
    // after, so two starts 1000.0 ms apart can read 999 (truncation).
    assert!(starts.windows(2).all(|w| w[1] - w[0] >= 999), "{starts:?}");
    // Each request is signed as one message with an id of its own.
    let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 3);
    assert!(
        got.iter()
            .all(|r| r.header("webhook-id").starts_with("chunk_"))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_chunk_is_retried_whole_before_the_next() -> anyhow::Result<()> {
    let (mut c, rx) = Cluster::with_receiver("order.created").await?;
    let ep = queued_endpoint(
        &mut c.api,
        &rx,
        pb::EndpointSpec {
            chunk_size: 10,
            retry: Some(pb::RetryPolicy {
                delays_ms: vec![200, 200],
            }),
            ..Default::default()
        },
    )
    .await?;
    publish_burst(&mut c.api, 0..35).await?;
    rx.script(&[(500, None), (200, None), (503, None)]);
    c.api.enable(&ep).await?;
    let got = rx.wait_for(6, WAIT).await;
    let chunks: Vec<Vec<u64>> = got.iter().map(seqs).collect();
    let accepted: Vec<u64> = got.iter().filter(|r| r.accepted()).flat_map(seqs).collect();
    assert_eq!(accepted, (0..35).collect::<Vec<_>>(), "each once, in order");
    assert_eq!(chunks[0], chunks[1], "the failed chunk is sent again as is");
    assert_eq!(chunks[2], chunks[3]);
    assert_eq!(chunks.len(), 6);
    assert_eq!(chunks[5], (30..35).collect::<Vec<_>>());
    // Every event's log shows the chunk's attempts (successes are committed
    // just after the answer, so wait for all of them).
    let first = c
        .api
        .wait_for_status("acme", &ep.id, pb::DeliveryStatus::Succeeded, 35, WAIT)
        .await?;
    let d = first
        .iter()
        .find(|d| d.attempts == 2)
        .expect("events of a retried chunk show 2 attempts");
    assert_eq!(d.status, pb::DeliveryStatus::Succeeded as i32);
    assert_eq!(first.iter().filter(|d| d.attempts == 2).count(), 20);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_holds_over_ten_seconds() -> anyhow::Result<()> {
    let (mut c, rx) = Cluster::with_receiver("order.created").await?;
    let ep = queued_endpoint(
        &mut c.api,
        &rx,
        pb::EndpointSpec {
            rate_limit_per_sec: 5,
            ordering: pb::Ordering::Unordered as i32,
            max_in_flight: 20,
            ..Default::default()
        },
    )
    .await?;
    publish_burst(&mut c.api, 0..80).await?;
    c.api.enable(&ep).await?;
    let first = rx.wait_for(1, WAIT).await[0].at;
    tokio::time::sleep_until((first + Duration::from_secs(10)).into()).await;
    let in_window = rx
        .received()
        .iter()
        .filter(|r| r.at < first + Duration::from_secs(10))
        .count();
    eprintln!("rate limit 5/s: {in_window} requests in the first 10 s");
    // 5 per second for 10 s is 50; within 10 %.
    assert!(
        (45..=55).contains(&in_window),
        "{in_window} requests in the first 10 s"
    );
    Ok(())
}

/// Spacing counts from when a request really starts. With every
/// concurrency permit taken, a throttled endpoint's request waits past its
/// reserved start; the next one must still wait the whole delay after it,
/// not just until its own reservation.
#[tokio::test(flavor = "multi_thread")]
async fn spacing_holds_when_requests_wait_for_a_permit() -> anyhow::Result<()> {
    spacing_holds_behind_a_held_permit(pb::Ordering::Ordered, 0).await
}

/// The same for an unordered endpoint, whose requests reserve their
/// starts side by side: the one reserved after the late one is refused at
/// its reservation and goes a whole delay after the late start.
#[tokio::test(flavor = "multi_thread")]
async fn spacing_holds_for_unordered_requests_that_wait_for_a_permit() -> anyhow::Result<()> {
    spacing_holds_behind_a_held_permit(pb::Ordering::Unordered, 3).await
}

async fn spacing_holds_behind_a_held_permit(
    ordering: pb::Ordering,
    max_in_flight: u32,
) -> anyhow::Result<()> {
    const DELAY_MS: u32 = 2000;
    let mut c = Cluster::start_with(&["--max-concurrency", "1"]).await?;
    c.api.event_type("order.created").await?;
    c.api.event_type("report.built").await?;
    c.api.tenant("acme").await?;
    let (rx, slow) = (Receiver::start().await, Receiver::start().await);
    let throttled = throttled_endpoint(
        &mut c.api,
        &rx,
        pb::EndpointSpec {
            enabled: true,
            event_types: vec!["order.created".into()],
            chunk_size: 1,
            chunk_delay_ms: DELAY_MS,
            ordering: ordering as i32,
            max_in_flight,
            ..Default::default()
        },
    )
    .await?;
    c.api
        .endpoint("acme", &slow.url("/slow"), &["report.built"])
        .await?;

    c.api.publish_seqs(0..1).await?;
    let first = rx.wait_for(1, WAIT).await;
    anyhow::ensure!(first.len() == 1, "the first event arrives");
    // The slow endpoint's request takes the only permit and keeps it.
    slow.hold();
    c.api
        .publish("acme", "report.built", json!({}), "slow")
        .await?;
    anyhow::ensure!(slow.wait_held(1, WAIT).await > 0, "slow request held");
    c.api.publish_seqs(1..3).await?;
    // Event 1's reserved start (DELAY_MS after event 0) passes while it
    // waits for the permit; release it a quarter of a delay later.
    let release_at = first[0].at + Duration::from_millis(u64::from(DELAY_MS) * 5 / 4);
    tokio::time::sleep_until(release_at.into()).await;
    assert_eq!(rx.received().len(), 1, "nothing is sent without a permit");
    slow.release();
    let got = rx.wait_for(3, WAIT).await;
    assert_eq!(got.len(), 3);
    let mut seqs: Vec<_> = got
        .iter()
        .map(|r| r.json()["data"]["seq"].as_u64())
        .collect();
    if ordering == pb::Ordering::Unordered {
        seqs.sort();
    }
    assert_eq!(seqs, [Some(0), Some(1), Some(2)]);
    let gap = got[2].at - got[1].at;
    assert!(
        gap >= Duration::from_millis(u64::from(DELAY_MS) - 50),
        "the third request came {gap:?} after the second, which waited for a permit"
    );
    // The agent's own start times agree (whole wall-clock milliseconds).
    let log = c.api.deliveries_of("acme", &throttled.id).await?;
    let mut starts = Vec::new();
    for d in &log {
        let detail = c.api.delivery("acme", &d.delivery_id).await?;
        starts.push(detail.attempts[0].started_at_ms);
    }
    starts.sort();
    assert!(
        starts
            .windows(2)
            .all(|w| w[1] - w[0] >= i64::from(DELAY_MS) - 1),
        "{starts:?}"
    );
    Ok(())
}
