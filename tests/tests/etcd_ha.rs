//! Herald on a 3-member etcd cluster that loses a member: config writes,
//! publishing and delivery go on, in order.

use std::time::Duration;

use herald_tests::cluster::{Agent, ControlPlane, Etcd};
use herald_tests::receiver::Receiver;

#[tokio::test(flavor = "multi_thread")]
async fn losing_one_etcd_member_stops_nothing() -> anyhow::Result<()> {
    let mut etcd = Etcd::start_cluster(3)?;
    let cp = ControlPlane::start(&etcd, &[])?;
    let agent = Agent::start(&etcd, &[&cp], &[])?;
    let receiver = Receiver::start().await;
    let mut api = cp.clients().await?;
    api.event_type("order.created").await?;
    api.tenant("acme").await?;
    api.endpoint("acme", &receiver.url("/"), &["*"]).await?;
    let matched = api.publish_seqs(0..50).await?;
    assert!(matched.iter().all(|m| *m == 1));

    // The first member is the one every client lists first.
    etcd.kill_member(0);
    let matched = api.publish_seqs(50..100).await?;
    assert!(matched.iter().all(|m| *m == 1), "publishing goes on");
    // Config writes go on too: a second endpoint, which gets what follows.
    // If the lost member led the etcd cluster, writes answer UNAVAILABLE
    // (retry) until the others elect a leader; a client retries.
    let other = Receiver::start().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut retries = 0;
    loop {
        match api.endpoint("acme", &other.url("/"), &["*"]).await {
            Ok(_) => break,
            Err(e)
                if e.downcast_ref::<tonic::Status>()
                    .is_some_and(|s| s.code() == tonic::Code::Unavailable)
                    && std::time::Instant::now() < deadline =>
            {
                retries += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    }
    eprintln!("endpoint created after the member loss ({retries} UNAVAILABLE answers first)");
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.publish_seqs(100..110).await?;

    let got = receiver.wait_for(110, Duration::from_secs(30)).await;
    let seqs: Vec<u64> = got
        .iter()
        .map(|r| r.json()["data"]["seq"].as_u64().unwrap_or(u64::MAX))
        .collect();
    assert_eq!(seqs, (0..110).collect::<Vec<_>>(), "every event, in order");
    let got = other.wait_for(10, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 10, "the endpoint created after the loss works");
    drop(agent);
    Ok(())
}
