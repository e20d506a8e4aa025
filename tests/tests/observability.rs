//! Operability on real processes: Prometheus metrics whose counters match
//! what the test did, gRPC health checks and gRPC reflection.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald_tests::cluster::{Agent, ControlPlane, Etcd};
use herald_tests::receiver::Receiver;
use serde_json::json;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

/// Scrapes `addr` and parses the text format strictly: every line is a
/// comment or `name{labels} value`. Returns series → value.
async fn scrape(addr: &str) -> anyhow::Result<BTreeMap<String, f64>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).await?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no HTTP body"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    anyhow::ensure!(head.contains("text/plain; version=0.0.4"), "{head}");
    let mut out = BTreeMap::new();
    for line in body.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| anyhow::anyhow!("not a sample: {line:?}"))?;
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        anyhow::ensure!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            anyhow::ensure!(series.ends_with('}'), "bad labels in {line:?}");
        }
        let v: f64 = value
            .parse()
            .map_err(|e| anyhow::anyhow!("bad value in {line:?}: {e}"))?;
        out.insert(series.to_string(), v);
    }
    Ok(out)
}

async fn serving(url: &str) -> anyhow::Result<bool> {
    let ch = tonic::transport::Channel::from_shared(url.to_string())?
        .connect()
        .await?;
    let mut h = HealthClient::new(ch);
    let r = h
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    Ok(r.status == ServingStatus::Serving as i32)
}

async fn wait_serving(url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !serving(url).await? {
        anyhow::ensure!(Instant::now() < deadline, "{url} never became SERVING");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_health_and_reflection() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let cp = ControlPlane::start(&etcd, &["--metrics-listen=127.0.0.1:0"])?;
    let agent = Agent::start(&etcd, &[&cp], &["--metrics-listen=127.0.0.1:0"])?;
    let cp_metrics = cp
        .proc
        .seen_line("herald-control-plane metrics on ")
        .ok_or_else(|| anyhow::anyhow!("no metrics address printed"))?;
    let agent_metrics = agent
        .proc
        .as_ref()
        .and_then(|p| p.seen_line("herald-agent metrics on "))
        .ok_or_else(|| anyhow::anyhow!("no agent metrics address printed"))?;

    // Health: both serve once etcd is reachable (and, for the agent, its
    // control stream is open).
    wait_serving(&cp.url).await?;
    wait_serving(&format!("http://{}", agent.addr)).await?;

    // Reflection lists Herald's services and health.
    let ch = tonic::transport::Channel::from_shared(cp.url.clone())?
        .connect()
        .await?;
    let mut refl = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter([req]))
        .await?
        .into_inner();
    let resp = stream
        .message()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no reflection answer"))?;
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        anyhow::bail!("unexpected reflection answer");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "herald.v1.PublishService",
        "herald.v1.EndpointService",
        "herald.v1.DeliveryService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }

    // Metrics count what happens: 5 publishes delivered, 2 refused.
    let receiver = Receiver::start().await;
    let mut api = cp.clients().await?;
    api.event_type("order.created").await?;
    api.tenant("acme").await?;
    api.endpoint("acme", &receiver.url("/"), &["*"]).await?;
    api.publish_seqs(0..5).await?;
    for _ in 0..2 {
        let e = api
            .publish("acme", "no.such.type", json!({}), "")
            .await
            .expect_err("unknown type");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }
    receiver.wait_for(5, Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let a = loop {
        let a = scrape(&agent_metrics).await?;
        // Successes are committed just after the answer: wait for the queue too.
        if a.get("herald_deliveries_total{outcome=\"succeeded\"}") == Some(&5.0)
            && a.get("herald_queue_depth") == Some(&0.0)
        {
            break a;
        }
        anyhow::ensure!(Instant::now() < deadline, "agent metrics: {a:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let c = scrape(&cp_metrics).await?;
    let get = |m: &BTreeMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(-1.0);
    assert_eq!(get(&c, "herald_publishes_total{code=\"OK\"}"), 5.0);
    assert_eq!(
        get(&c, "herald_publishes_total{code=\"INVALID_ARGUMENT\"}"),
        2.0
    );
    assert_eq!(get(&c, "herald_publish_deliveries_total"), 5.0);
    assert_eq!(get(&c, "herald_publish_duration_seconds_count"), 7.0);
    assert_eq!(get(&c, "herald_endpoints"), 1.0);
    assert_eq!(get(&c, "herald_is_leader"), 1.0);
    assert_eq!(get(&c, "herald_agent_sessions"), 1.0);
    // Sequential publishes: one Ingest call each, none merged.
    assert_eq!(get(&c, "herald_ingest_calls_total"), 5.0);
    assert_eq!(get(&c, "herald_ingest_shares_total"), 5.0);
    assert_eq!(get(&a, "herald_ingested_total"), 5.0);
    assert_eq!(get(&a, "herald_attempts_total{result=\"success\"}"), 5.0);
    assert_eq!(get(&a, "herald_attempts_total{result=\"failure\"}"), 0.0);
    assert_eq!(get(&a, "herald_attempt_duration_seconds_count"), 5.0);
    assert_eq!(
        get(&a, "herald_publish_to_first_attempt_seconds_count"),
        5.0
    );
    assert_eq!(get(&a, "herald_slots_owned"), 1024.0);
    assert_eq!(get(&a, "herald_queue_depth"), 0.0);
    assert_eq!(get(&a, "herald_control_streams_total"), 1.0);
    // The 5 inserts were committed before their publishes returned; each
    // commit folds at least one write.
    let commits = get(&a, "herald_store_commit_duration_seconds_count");
    let writes = get(&a, "herald_store_commit_writes_sum");
    assert!(writes >= 5.0, "{writes} writes committed");
    assert!(
        commits >= 1.0 && commits <= writes,
        "{commits} commits for {writes} writes"
    );
    assert_eq!(get(&a, "herald_store_commit_writes_count"), commits);
    Ok(())
}
