//! A control plane stops gracefully (issue 19): on SIGTERM it says
//! NOT_SERVING, ends its agents' sessions (they move to another replica),
//! finishes in-flight publishes and exits within seconds, with an agent
//! connected and publishes running; nothing published is lost.

use std::time::{Duration, Instant};

use herald_tests::cluster::{Agent, Clients, ControlPlane, Etcd};
use herald_tests::receiver::Receiver;

#[tokio::test(flavor = "multi_thread")]
async fn a_control_plane_stops_within_seconds_with_an_agent_and_publishes() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let mut first = ControlPlane::start(&etcd, &[])?;
    let second = ControlPlane::start(&etcd, &[])?;
    // The agent's session is on the first replica (tried first).
    let _agent = Agent::start(&etcd, &[&first, &second], &[])?;
    let mut api = first.clients().await?;
    api.event_type("order.created").await?;
    api.tenant("acme").await?;
    let receiver = Receiver::start().await;
    api.endpoint("acme", &receiver.url("/e"), &["order.created"])
        .await?;

    // One publisher, in order, to the first replica until it stops
    // answering, then to the second, retrying each event with its key.
    let urls = [first.url.clone(), second.url.clone()];
    let key = etcd.admin_key.clone();
    let total = 300u64;
    let publisher = tokio::spawn(async move {
        let mut target = 0;
        let mut api = Clients::connect(&urls[0], Some(&key)).await?;
        for seq in 0..total {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let r = api
                    .publish(
                        "acme",
                        "order.created",
                        serde_json::json!({ "seq": seq }),
                        &format!("k{seq}"),
                    )
                    .await;
                match r {
                    Ok(_) => break,
                    Err(_) if Instant::now() < deadline => {
                        target = 1;
                        if let Ok(c) = Clients::connect(&urls[target], Some(&key)).await {
                            api = c;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => anyhow::bail!("event {seq} never published: {e}"),
                }
            }
        }
        anyhow::Ok(target)
    });
    // Stop the first replica once publishing is under way.
    while receiver.received().len() < 50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = Instant::now();
    let exited = first.proc.terminate(Duration::from_secs(15));
    let took = asked.elapsed();
    assert!(
        exited,
        "the control plane did not exit on SIGTERM within 15 s"
    );
    assert!(took < Duration::from_secs(5), "stopping took {took:?}");
    println!("control plane stopped in {took:?}");
    assert_eq!(
        publisher.await??,
        1,
        "the publisher moved to the second replica"
    );

    // Every event arrives, in order.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let by_path = herald_tests::ordering::seqs_by_path(&receiver.received());
        let seqs = by_path.get("/e").cloned().unwrap_or_default();
        if seqs
            .iter()
            .filter(|s| **s < total)
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == total as usize
        {
            herald_tests::ordering::assert_in_order(&by_path);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {total} events arrived",
            seqs.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
