//! Authenticated cluster traffic (issue 16): with certificates from a
//! cluster CA, control plane ↔ agent streams, Ingest, the log queries and
//! agent ↔ agent handoffs are mutual TLS; nobody without a member
//! certificate reaches them, API key or not; the whole delivery path,
//! handoffs included, still works.

use std::time::{Duration, Instant};

use herald_proto::v1 as pb;
use herald_proto::v1::agent_ingest_client::AgentIngestClient;
use herald_tests::cluster::{Agent, Clients, ControlPlane, Etcd};
use herald_tests::pki::{Issued, Pki};
use herald_tests::receiver::Receiver;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

fn member_env(pki: &Pki, me: &Issued) -> Vec<(String, String)> {
    vec![
        (
            "HERALD_CLUSTER_CERT".into(),
            me.cert.to_string_lossy().into_owned(),
        ),
        (
            "HERALD_CLUSTER_KEY".into(),
            me.key.to_string_lossy().into_owned(),
        ),
        (
            "HERALD_CLUSTER_CA".into(),
            pki.ca.to_string_lossy().into_owned(),
        ),
    ]
}

fn start_agent(etcd: &Etcd, cp: &ControlPlane, env: &[(String, String)]) -> anyhow::Result<Agent> {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Agent::start_with_env(etcd, &[cp], &[], &env)
}

async fn channel(addr: &str, tls: ClientTlsConfig) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect()
        .await?)
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_traffic_is_mutual_tls_and_delivery_still_works() -> anyhow::Result<()> {
    let pki = Pki::new("cluster")?;
    let etcd = Etcd::start()?;
    let cp_cert = pki.issue("control-plane")?;
    let env = member_env(&pki, &cp_cert);
    let args: Vec<&str> = vec![
        "--cluster-cert",
        &env[0].1,
        "--cluster-key",
        &env[1].1,
        "--cluster-ca",
        &env[2].1,
        "--metrics-listen=127.0.0.1:0",
    ];
    let cp = ControlPlane::start_tls(&etcd, &cp_cert, &args)?;
    let metrics = cp
        .proc
        .seen_line("herald-control-plane metrics on ")
        .expect("metrics");
    let first = start_agent(&etcd, &cp, &member_env(&pki, &pki.issue("agent-1")?))?;
    let mut api = Clients::connect_tls(&cp.url, Some(&etcd.admin_key), &pki.ca).await?;
    wait_agents(&mut api, 1).await?;

    // Deliveries queue on the first agent while the receiver refuses them;
    // a second agent joins and takes half the slots by handoff, agent to
    // agent over mutual TLS; then everything arrives, each endpoint in order.
    api.event_type("order.created").await?;
    api.tenant("acme").await?;
    let receiver = Receiver::start().await;
    receiver.set_status(503);
    let mut paths = Vec::new();
    for i in 0..16 {
        let path = format!("/ep{i}");
        api.endpoint("acme", &receiver.url(&path), &["order.created"])
            .await?;
        paths.push(path);
    }
    for seq in 0..5 {
        api.publish(
            "acme",
            "order.created",
            serde_json::json!({ "seq": seq }),
            "",
        )
        .await?;
    }
    let second = start_agent(&etcd, &cp, &member_env(&pki, &pki.issue("agent-2")?))?;
    wait_agents(&mut api, 2).await?;
    receiver.set_status(200);
    let deadline = Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = receiver.received();
        if got.iter().filter(|r| r.accepted()).count() >= 16 * 5 {
            break got;
        }
        assert!(Instant::now() < deadline, "not everything arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by_path = herald_tests::ordering::seqs_by_path(&got);
    herald_tests::ordering::assert_in_order(&by_path);
    assert_eq!(by_path.len(), 16);
    assert!(
        by_path.values().all(|seqs| seqs.contains(&4)),
        "{by_path:?}"
    );

    // Without a member certificate, nobody reaches an agent's services:
    // not a client that trusts the CA, not one with an admin API key.
    let trusting =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca)?));
    let mut ingest = AgentIngestClient::new(channel(&second.addr, trusting.clone()).await?);
    let mut req = tonic::Request::new(pb::IngestRequest::default());
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", etcd.admin_key).parse()?,
    );
    let s = ingest
        .ingest(req)
        .await
        .expect_err("ingest without a certificate");
    assert_eq!(s.code(), tonic::Code::Unauthenticated, "{}", s.message());
    // Plain text is not spoken at all.
    let plain = Channel::from_shared(format!("http://{}", first.addr))?
        .connect()
        .await?;
    assert!(
        AgentIngestClient::new(plain)
            .ingest(pb::IngestRequest::default())
            .await
            .is_err()
    );
    // A certificate from another CA fails the handshake.
    let rogue_ca = Pki::new("rogue")?;
    let rogue = rogue_ca.issue("rogue")?;
    let rogue_tls = trusting.identity(Identity::from_pem(
        std::fs::read(&rogue.cert)?,
        std::fs::read(&rogue.key)?,
    ));
    let refused = match channel(&first.addr, rogue_tls).await {
        Err(_) => true,
        Ok(ch) => AgentIngestClient::new(ch)
            .ingest(pb::IngestRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a rogue certificate reached Ingest");
    // Health stays open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        channel(
            &first.addr,
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca)?)),
        )
        .await?,
    );
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?;

    // An agent without a member certificate, even with the admin key, gets
    // no control stream (no endpoint configuration, no secrets).
    let ca_only = vec![(
        "HERALD_CONTROL_PLANE_CA".to_string(),
        pki.ca.to_string_lossy().into_owned(),
    )];
    let _outsider = start_agent(&etcd, &cp, &ca_only)?;
    herald_tests::metrics::wait_for_series(
        &metrics,
        "herald_auth_refusals_total{reason=\"not_member\"}",
        Duration::from_secs(15),
    )
    .await?;
    drop(second);
    Ok(())
}

/// Waits until the slot map spreads the slots over `n` agents and no
/// handoff is in progress.
async fn wait_agents(api: &mut Clients, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = api
            .cluster
            .get_cluster(pb::GetClusterRequest {})
            .await?
            .into_inner();
        let owning = c.agents.iter().filter(|a| a.slots > 0).count();
        if owning == n && c.handoffs_in_progress == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{owning} agents own slots, {} handoffs",
            c.handoffs_in_progress
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
