//! Backpressure: an agent holds at most `--max-undelivered` undelivered
//! deliveries (its indexes are in memory). Past that a publish is refused
//! with RESOURCE_EXHAUSTED, naming the limit, and nothing of it is stored;
//! once delivery catches up the same publish goes through.

use std::time::Duration;

use herald_proto::v1 as pb;
use herald_tests::cluster::Cluster;
use herald_tests::receiver::Receiver;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn a_full_agent_refuses_new_work_until_delivery_catches_up() -> anyhow::Result<()> {
    let mut c = Cluster::start_with(&["--max-undelivered", "2"]).await?;
    c.api.event_type("order.created").await?;
    c.api.tenant("acme").await?;
    let rx = Receiver::start().await;
    // Disabled but queueing: what is published waits, undelivered.
    let ep = c
        .api
        .endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            spec: Some(pb::EndpointSpec {
                name: "down".into(),
                url: rx.url("/hook"),
                enabled: false,
                queue_while_disabled: true,
                event_types: vec!["order.created".into()],
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .endpoint
        .expect("endpoint");
    c.api.publish_seqs(0..2).await?;

    let full = c
        .api
        .publish_seqs(2..3)
        .await
        .expect_err("the agent is full");
    assert_eq!(full.code(), tonic::Code::ResourceExhausted, "{full:?}");
    assert!(
        full.message().contains("--max-undelivered 2")
            && full.message().contains("same idempotency key"),
        "{}",
        full.message()
    );
    // A batch says so per event.
    let batch = c
        .api
        .publish
        .publish_batch(pb::PublishBatchRequest {
            events: vec![pb::PublishRequest {
                tenant_id: "acme".into(),
                event_type: "order.created".into(),
                payload_json: json!({ "seq": 2 }).to_string(),
                idempotency_key: "k2".into(),
                ..Default::default()
            }],
        })
        .await?
        .into_inner();
    assert_eq!(batch.results[0].code, "RESOURCE_EXHAUSTED");
    // Nothing of the refused event was stored.
    let log = c.api.deliveries_of("acme", &ep.id).await?;
    assert_eq!(log.len(), 2, "only the two accepted");

    c.api.enable(&ep).await?;
    let got = rx.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2);
    // Delivered deliveries make room: the same publish now goes through.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        match c.api.publish_seqs(2..3).await {
            Ok(matched) => {
                assert_eq!(matched, [1]);
                break;
            }
            // The successes are committed just after the receiver saw them.
            Err(e) if e.code() == tonic::Code::ResourceExhausted => {
                anyhow::ensure!(std::time::Instant::now() < deadline, "still full: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let got = rx.wait_for(3, WAIT).await;
    let seqs: Vec<_> = got
        .iter()
        .map(|r| r.json()["data"]["seq"].as_u64())
        .collect();
    assert_eq!(seqs, [Some(0), Some(1), Some(2)], "each once, in order");
    Ok(())
}
