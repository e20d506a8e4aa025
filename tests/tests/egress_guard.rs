//! The SSRF guard (D8): an agent refuses to deliver to non-public
//! addresses, whatever form the URL gives them in, and records why; an
//! operator's CIDR allowlist opens them.
//!
//! The refused targets are never connected to: the agent checks the
//! address before connecting (that is what is under test), and each
//! endpoint gets a single attempt with no retries.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_proto::v1 as pb;
use herald_tests::cluster::Cluster;
use herald_tests::receiver::Receiver;
use serde_json::json;

/// (name, URL) for every target; `{port}` is the loopback receiver's.
fn targets(port: u16) -> Vec<(&'static str, String)> {
    [
        ("localhost-name", "http://localhost:{port}/t"),
        ("loopback", "http://127.0.0.1:{port}/t"),
        ("loopback-short", "http://127.1:{port}/t"),
        ("loopback-hex", "http://0x7f000001:{port}/t"),
        ("loopback-decimal", "http://2130706433:{port}/t"),
        ("mapped-loopback", "http://[::ffff:127.0.0.1]:{port}/t"),
        ("v6-loopback", "http://[::1]:{port}/t"),
        ("unspecified", "http://0.0.0.0:{port}/t"),
        ("v6-unspecified", "http://[::]:{port}/t"),
        ("metadata", "http://169.254.169.254/latest/meta-data/"),
        ("metadata-azure", "http://168.63.129.16/"),
        ("metadata-v6", "http://[fd00:ec2::254]/"),
        ("metadata-nat64", "http://[64:ff9b::a9fe:a9fe]/"),
        ("private-10", "http://10.1.2.3/"),
        ("private-172", "http://172.16.5.4/"),
        ("private-192", "http://192.168.1.1/"),
        ("cgnat", "http://100.64.0.1/"),
        ("ula", "http://[fd00::1]/"),
        ("link-local-v6", "http://[fe80::1]/"),
        ("multicast", "http://224.0.0.1/"),
        ("broadcast", "http://255.255.255.255/"),
        ("benchmarking", "http://198.18.0.1/"),
        ("documentation", "http://203.0.113.5/"),
        ("6to4-loopback", "http://[2002:7f00:1::]/"),
    ]
    .into_iter()
    .map(|(n, u)| (n, u.replace("{port}", &port.to_string())))
    .collect()
}

/// Runs every target once on an agent with `agent_flags`; returns, per
/// target, the final status and the error kind of its one attempt, and
/// the paths the receiver saw.
async fn run_table(
    agent_flags: &[&str],
) -> anyhow::Result<(BTreeMap<&'static str, (i32, i32, String)>, Vec<String>)> {
    let mut c = Cluster::start_with(agent_flags).await?;
    let rx = Receiver::start().await;
    c.api.event_type("order.created").await?;
    c.api.tenant("acme").await?;
    let mut ids = BTreeMap::new();
    for (name, url) in targets(rx.addr.port()) {
        let ep = c
            .api
            .endpoints
            .create_endpoint(pb::CreateEndpointRequest {
                tenant_id: "acme".into(),
                spec: Some(pb::EndpointSpec {
                    name: name.into(),
                    url,
                    enabled: true,
                    event_types: vec!["*".into()],
                    retry: Some(pb::RetryPolicy { delays_ms: vec![] }),
                    timeout_ms: 2000,
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .endpoint
            .expect("endpoint");
        ids.insert(name, ep.id);
    }
    c.api
        .publish("acme", "order.created", json!({"seq": 0}), "one")
        .await?;
    let mut out = BTreeMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for (name, id) in &ids {
        let d = loop {
            let list = c.api.deliveries_of("acme", id).await?;
            if let Some(d) = list.into_iter().find(|d| {
                d.status == pb::DeliveryStatus::Succeeded as i32
                    || d.status == pb::DeliveryStatus::Failed as i32
            }) {
                break d;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "{name} never finished"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let detail = c.api.delivery("acme", &d.delivery_id).await?;
        anyhow::ensure!(detail.attempts.len() == 1, "{name}: one attempt");
        let a = &detail.attempts[0];
        out.insert(*name, (d.status, a.error_kind, a.error.clone()));
    }
    let paths = rx
        .received()
        .iter()
        .map(|r| r.uri.path().to_string())
        .collect();
    Ok((out, paths))
}

#[tokio::test(flavor = "multi_thread")]
async fn non_public_targets_are_refused_without_the_allowlist() -> anyhow::Result<()> {
    // An allowlist that covers none of the targets.
    let (table, paths) = run_table(&["--allow-cidr=192.0.2.0/24"]).await?;
    assert!(table.len() >= 20);
    for (name, (status, kind, error)) in &table {
        assert_eq!(*status, pb::DeliveryStatus::Failed as i32, "{name}");
        assert_eq!(
            *kind,
            pb::ErrorKind::Blocked as i32,
            "{name} must be refused, got {error}"
        );
        assert!(error.starts_with("blocked: "), "{name}: {error}");
    }
    assert!(paths.is_empty(), "nothing reached the receiver: {paths:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_allowlist_opens_loopback_and_nothing_else() -> anyhow::Result<()> {
    let (table, paths) = run_table(&["--allow-cidr=127.0.0.0/8"]).await?;
    let reached = [
        "localhost-name",
        "loopback",
        "loopback-short",
        "loopback-hex",
        "loopback-decimal",
        "mapped-loopback",
    ];
    for (name, (status, kind, error)) in &table {
        if reached.contains(name) {
            assert_eq!(
                *status,
                pb::DeliveryStatus::Succeeded as i32,
                "{name}: {error}"
            );
        } else {
            assert_eq!(*kind, pb::ErrorKind::Blocked as i32, "{name}: {error}");
        }
    }
    assert_eq!(paths.len(), reached.len(), "{paths:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn insecure_tls_is_per_endpoint() -> anyhow::Result<()> {
    let mut c = Cluster::start().await?;
    let tls = herald_tests::tls::TlsReceiver::start().await?;
    c.api.event_type("order.created").await?;
    c.api.tenant("acme").await?;
    let mut ids = Vec::new();
    for insecure in [false, true] {
        let ep = c
            .api
            .endpoints
            .create_endpoint(pb::CreateEndpointRequest {
                tenant_id: "acme".into(),
                spec: Some(pb::EndpointSpec {
                    name: format!("insecure={insecure}"),
                    url: tls.url("/hook"),
                    enabled: true,
                    event_types: vec!["*".into()],
                    retry: Some(pb::RetryPolicy { delays_ms: vec![] }),
                    insecure_tls: insecure,
                    ..Default::default()
                }),
            })
            .await?
            .into_inner()
            .endpoint
            .expect("endpoint");
        ids.push(ep.id);
    }
    c.api
        .publish("acme", "order.created", json!({"seq": 0}), "one")
        .await?;
    let strict = c
        .api
        .wait_for_status(
            "acme",
            &ids[0],
            pb::DeliveryStatus::Failed,
            1,
            Duration::from_secs(20),
        )
        .await?;
    let detail = c.api.delivery("acme", &strict[0].delivery_id).await?;
    assert_eq!(
        detail.attempts[0].error_kind,
        pb::ErrorKind::Tls as i32,
        "a self-signed certificate is refused: {}",
        detail.attempts[0].error
    );
    c.api
        .wait_for_status(
            "acme",
            &ids[1],
            pb::DeliveryStatus::Succeeded,
            1,
            Duration::from_secs(20),
        )
        .await?;
    assert_eq!(
        tls.served(),
        1,
        "only the insecure_tls endpoint got through"
    );
    Ok(())
}
