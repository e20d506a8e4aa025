//! Long-running handlers (issue 18, seed 004): an endpoint may wait up to
//! ten minutes for its receiver, and while one attempt waits, it holds only
//! its endpoint's queue and one of the agent's concurrency permits: other
//! endpoints keep their pace. (The test holds the slow receiver's answer
//! rather than waiting minutes: what matters is that the others do not
//! wait for it.)

use std::time::Duration;

use herald_proto::v1 as pb;
use herald_tests::cluster::Cluster;
use herald_tests::receiver::Receiver;

fn spec(url: String, timeout_ms: u32) -> pb::EndpointSpec {
    pb::EndpointSpec {
        name: "e".into(),
        url,
        event_types: vec!["order.created".into()],
        enabled: true,
        timeout_ms,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_attempt_holds_only_its_endpoint() -> anyhow::Result<()> {
    let (mut c, fast) = Cluster::with_receiver("order.created").await?;
    let slow = Receiver::start().await;
    let create = |s| pb::CreateEndpointRequest {
        tenant_id: "acme".into(),
        spec: Some(s),
    };
    // Ten minutes is the limit, on both sides.
    let e = c
        .api
        .endpoints
        .create_endpoint(create(spec(slow.url("/slow"), 600_001)))
        .await
        .expect_err("over ten minutes");
    assert!(
        e.message().starts_with("spec.timeout_ms: "),
        "{}",
        e.message()
    );
    c.api
        .endpoints
        .create_endpoint(create(spec(slow.url("/slow"), 600_000)))
        .await?;
    c.api
        .endpoints
        .create_endpoint(create(spec(fast.url("/fast"), 0)))
        .await?;

    // The slow receiver takes the first event and does not answer.
    slow.hold();
    c.api
        .publish(
            "acme",
            "order.created",
            serde_json::json!({ "seq": 0 }),
            "k0",
        )
        .await?;
    assert!(
        slow.wait_held(1, Duration::from_secs(20)).await > 0,
        "the slow receiver got nothing"
    );
    // Meanwhile the other endpoint gets every later event, in order.
    for seq in 1..=50u64 {
        c.api
            .publish(
                "acme",
                "order.created",
                serde_json::json!({ "seq": seq }),
                &format!("k{seq}"),
            )
            .await?;
    }
    let got = fast.wait_for(51, Duration::from_secs(30)).await;
    let by_path = herald_tests::ordering::seqs_by_path(&got);
    herald_tests::ordering::assert_in_order(&by_path);
    assert_eq!(by_path["/fast"].len(), 51);
    assert_eq!(
        slow.held(),
        1,
        "the slow endpoint's attempt is still waiting, and only one"
    );
    assert!(
        slow.received().is_empty(),
        "nothing answered at the slow endpoint yet"
    );

    // Its receiver answers at last: the same attempt succeeds, then its
    // queue goes on in order.
    slow.release();
    let got = slow.wait_for(51, Duration::from_secs(60)).await;
    let by_path = herald_tests::ordering::seqs_by_path(&got);
    herald_tests::ordering::assert_in_order(&by_path);
    assert_eq!(by_path["/slow"].len(), 51);
    Ok(())
}
