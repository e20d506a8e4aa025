//! Find deliveries by what the receiver saw (issue 18, item 4; seed 000):
//! the webhook-id (event id) lists that event's deliveries, one per
//! endpoint it matched, in the API and the CLI; a tenant-limited view and
//! an endpoint filter narrow it; an unknown event lists nothing.

use std::time::Duration;

use herald_proto::v1 as pb;
use herald_tests::cluster::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_are_found_by_event_id() -> anyhow::Result<()> {
    let (mut c, receiver) = Cluster::with_receiver("order.created").await?;
    let a = c
        .api
        .endpoint("acme", &receiver.url("/a"), &["order.created"])
        .await?
        .endpoint
        .unwrap()
        .id;
    let b = c
        .api
        .endpoint("acme", &receiver.url("/b"), &["order.created"])
        .await?
        .endpoint
        .unwrap()
        .id;
    let sent = c
        .api
        .publish("acme", "order.created", serde_json::json!({ "n": 1 }), "k1")
        .await?;
    c.api
        .publish("acme", "order.created", serde_json::json!({ "n": 2 }), "k2")
        .await?;
    let got = receiver.wait_for(4, Duration::from_secs(20)).await;
    let seen = got
        .iter()
        .find(|r| r.json()["data"]["n"] == 1)
        .unwrap()
        .header("webhook-id")
        .to_string();
    assert_eq!(seen, sent.event_id);

    let list = |endpoint_id: &str, event_id: &str| pb::ListDeliveriesRequest {
        tenant_id: "acme".into(),
        endpoint_id: endpoint_id.into(),
        event_id: event_id.into(),
        ..Default::default()
    };
    let found = c
        .api
        .deliveries
        .list_deliveries(list("", &seen))
        .await?
        .into_inner()
        .deliveries;
    let mut endpoints: Vec<_> = found.iter().map(|d| d.endpoint_id.clone()).collect();
    endpoints.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(endpoints, want);
    assert!(found.iter().all(|d| d.event_id == seen));
    let one = c
        .api
        .deliveries
        .list_deliveries(list(&b, &seen))
        .await?
        .into_inner()
        .deliveries;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].endpoint_id, b);
    let none = c
        .api
        .deliveries
        .list_deliveries(list("", "evt_00000000000000000000000000000000"))
        .await?
        .into_inner();
    assert!(none.deliveries.is_empty());
    let bad = c
        .api
        .deliveries
        .list_deliveries(list("", "evt/../x"))
        .await
        .expect_err("bad id");
    assert!(bad.message().starts_with("event_id: "), "{}", bad.message());

    // The CLI, as support would use it.
    let out = std::process::Command::new(herald_tests::process::bin("herald"))
        .args([
            "--server",
            &c.cp.url,
            "--output",
            "json",
            "delivery",
            "list",
            "--tenant",
            "acme",
            "--event-id",
            &seen,
        ])
        .env("HERALD_API_KEY", &c.etcd.admin_key)
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(
        listed["deliveries"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );
    Ok(())
}
