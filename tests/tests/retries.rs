//! Retry schedules on real parts: a receiver that misbehaves on purpose.
//!
//! These check *when* attempts happen, so they compare arrival times with
//! the schedule, with the ±10 % jitter and generous slack for a busy machine.

use std::time::Duration;

use herald_tests::cluster::Cluster;
use herald_tests::receiver::{Received, Receiver};
use serde_json::json;

fn seqs(received: &[Received]) -> Vec<u64> {
    received
        .iter()
        .map(|r| r.json()["data"]["seq"].as_u64().expect("seq"))
        .collect()
}

fn gap(a: &Received, b: &Received) -> Duration {
    b.at.duration_since(a.at)
}

async fn setup(schedule_ms: Vec<u32>) -> anyhow::Result<(Cluster, Receiver)> {
    let mut c = Cluster::start().await?;
    let receiver = Receiver::start().await;
    c.api.event_type("order.created").await?;
    c.api.tenant("acme").await?;
    c.api
        .endpoint_with_retry("acme", &receiver.url("/"), &["*"], schedule_ms)
        .await?;
    Ok((c, receiver))
}

#[tokio::test(flavor = "multi_thread")]
async fn fails_twice_then_succeeds_on_schedule() -> anyhow::Result<()> {
    let (mut c, receiver) = setup(vec![1000, 2000]).await?;
    receiver.script(&[(500, None), (502, None)]);
    c.api
        .publish("acme", "order.created", json!({"seq": 0}), "k")
        .await?;
    let got = receiver.wait_for(3, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 3, "three attempts");
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one message id across retries"
    );
    let (g1, g2) = (gap(&got[0], &got[1]), gap(&got[1], &got[2]));
    assert!(
        g1 >= Duration::from_millis(880) && g1 <= Duration::from_millis(2000),
        "first retry after ~1 s, was {g1:?}"
    );
    assert!(
        g2 >= Duration::from_millis(1780) && g2 <= Duration::from_millis(3200),
        "second retry after ~2 s, was {g2:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 3, "no attempt after the success");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn head_of_line_waits_for_final_failure_then_moves_on() -> anyhow::Result<()> {
    // Two retries: three attempts, then the delivery has failed for good.
    let (mut c, receiver) = setup(vec![100, 100]).await?;
    receiver.script(&[(500, None), (500, None), (500, None)]);
    c.api
        .publish("acme", "order.created", json!({"seq": 0}), "k0")
        .await?;
    c.api
        .publish("acme", "order.created", json!({"seq": 1}), "k1")
        .await?;
    receiver.wait_for(4, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        seqs(&receiver.received()),
        [0, 0, 0, 1],
        "event 1 is attempted only after event 0 finally failed, and 0 is not retried past its schedule"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured() -> anyhow::Result<()> {
    let (mut c, receiver) = setup(vec![100]).await?;
    receiver.script(&[(503, Some(2))]);
    c.api
        .publish("acme", "order.created", json!({"seq": 0}), "k")
        .await?;
    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2);
    let g = gap(&got[0], &got[1]);
    assert!(
        g >= Duration::from_millis(1900),
        "Retry-After: 2 beats the 100 ms schedule, was {g:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_schedule_continues_the_schedule() -> anyhow::Result<()> {
    let (mut c, receiver) = setup(vec![3000, 3000]).await?;
    receiver.script(&[(500, None)]);
    c.api
        .publish("acme", "order.created", json!({"seq": 0}), "k")
        .await?;
    let first = receiver.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(first.len(), 1);
    // The failure is recorded before the agent waits; give the commit a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.agent.kill9();
    c.agent.restart()?;
    let got = receiver.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2, "delivered after the restart");
    let g = gap(&got[0], &got[1]);
    eprintln!("gap between attempts across the restart: {g:?}");
    // Starting the schedule over would attempt at once after the restart.
    assert!(
        g >= Duration::from_millis(2650),
        "the stored schedule was kept, gap {g:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.received().len(),
        2,
        "delivered once after the retry"
    );
    // The log and the counters lost nothing across the kill.
    let ep = c
        .api
        .endpoints
        .list_endpoints(herald_proto::v1::ListEndpointsRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .endpoints
        .remove(0)
        .id;
    let done = c
        .api
        .wait_for_status(
            "acme",
            &ep,
            herald_proto::v1::DeliveryStatus::Succeeded,
            1,
            Duration::from_secs(10),
        )
        .await?;
    let d = c.api.delivery("acme", &done[0].delivery_id).await?;
    let log: Vec<_> = d
        .attempts
        .iter()
        .map(|a| (a.number, a.response_status))
        .collect();
    assert_eq!(
        log,
        [(1, 500), (2, 200)],
        "both attempts, numbered across the restart"
    );
    let st = c.api.stats("acme", &ep).await?;
    assert_eq!(
        (
            st.events,
            st.attempts,
            st.successes,
            st.failures,
            st.queue_depth
        ),
        (1, 2, 1, 0, 0)
    );
    assert_eq!(st.last_failure.map(|f| f.status_code), Some(500));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unordered_endpoint_is_not_held_by_a_failing_event() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    let receiver = Receiver::start().await;
    c.api.event_type("order.created").await?;
    c.api.tenant("acme").await?;
    c.api
        .endpoints
        .create_endpoint(herald_proto::v1::CreateEndpointRequest {
            tenant_id: "acme".into(),
            spec: Some(herald_proto::v1::EndpointSpec {
                name: "unordered".into(),
                url: receiver.url("/"),
                enabled: true,
                event_types: vec!["*".into()],
                retry: Some(herald_proto::v1::RetryPolicy {
                    delays_ms: vec![300; 4],
                }),
                ordering: herald_proto::v1::Ordering::Unordered as i32,
                max_in_flight: 4,
                ..Default::default()
            }),
        })
        .await?;
    receiver.fail_seq(0);
    c.api.publish_seqs(0..6).await?;
    // 5 attempts of event 0 (its schedule) and one of each other event.
    let got = receiver.wait_for(10, Duration::from_secs(20)).await;
    let order = seqs(&got);
    assert_eq!(
        order.iter().filter(|s| **s == 0).count(),
        5,
        "event 0 retried on its own: {order:?}"
    );
    let mut others: Vec<u64> = order.iter().copied().filter(|s| *s != 0).collect();
    others.sort_unstable();
    assert_eq!(others, [1, 2, 3, 4, 5], "every other event delivered once");
    let last_zero = order.iter().rposition(|s| *s == 0).expect("event 0 seen");
    let last_other = order.iter().rposition(|s| *s != 0).expect("others seen");
    assert!(
        last_other < last_zero,
        "the others did not wait for event 0's schedule: {order:?}"
    );
    Ok(())
}
