//! OpenTelemetry traces (X1): one publish, traced from the publisher's
//! `traceparent` through matching, routing and the durable enqueue to
//! every delivery attempt, across an agent crash between two attempts;
//! exported by OTLP/gRPC to a real TraceService in the test. And a
//! collector that is down costs delivery nothing.

use std::time::{Duration, Instant};

use herald_proto::v1 as pb;
use herald_tests::cluster::{Agent, ControlPlane, Etcd};
use herald_tests::otlp::{OtlpReceiver, Span};
use herald_tests::receiver::Receiver;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const SERVER: i32 = 2;
const CLIENT: i32 = 3;
const STATUS_ERROR: i32 = 2;

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name} span: {spans:#?}");
    found[0]
}

/// etcd, then a control plane and an agent both started with `env`.
fn start_cluster(env: &[(&str, &str)]) -> anyhow::Result<(Etcd, ControlPlane, Agent)> {
    let etcd = Etcd::start()?;
    let cp = ControlPlane::start_with_env(&etcd, &[], env)?;
    let agent = Agent::start_with_env(&etcd, &[&cp], &[], env)?;
    Ok((etcd, cp, agent))
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_from_publish_to_every_attempt_across_a_restart() -> anyhow::Result<()> {
    let otlp = OtlpReceiver::start().await?;
    let endpoint = otlp.endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        // Export quickly, so the first attempt's span is out before the kill.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let (_etcd, cp, mut agent) = start_cluster(&env)?;
    let mut api = cp.clients().await?;
    let rx = Receiver::start().await;
    api.event_type("order.created").await?;
    api.tenant("acme").await?;
    let ep = api
        .endpoint_with_retry("acme", &rx.url("/hook"), &["order.created"], vec![2000])
        .await?
        .endpoint
        .expect("endpoint");
    rx.script(&[(500, None)]);

    let trace_id = random_hex(16);
    let caller_span = random_hex(8);
    let mut req = tonic::Request::new(pb::PublishRequest {
        tenant_id: "acme".into(),
        event_type: "order.created".into(),
        payload_json: json!({"seq": 0}).to_string(),
        idempotency_key: "traced".into(),
        ..Default::default()
    });
    req.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{caller_span}-01").parse()?,
    );
    let event_id = api.publish.publish(req).await?.into_inner().event_id;

    // The first attempt (500) is exported; then the agent crashes.
    let spans = otlp
        .wait_until(WAIT, |s| s.iter().any(|s| s.name == "POST"))
        .await;
    assert!(
        spans.iter().any(|s| s.name == "POST"),
        "first attempt exported"
    );
    assert_eq!(rx.received().len(), 1);
    agent.kill9();
    agent.restart()?;

    let got = rx.wait_for(2, WAIT).await;
    assert_eq!(got.len(), 2, "the retry after the restart");
    assert!(got[1].accepted());
    let spans = otlp
        .wait_until(WAIT, |s| s.iter().filter(|s| s.name == "POST").count() == 2)
        .await;
    let ours: Vec<Span> = spans
        .iter()
        .filter(|s| s.trace_id == trace_id)
        .cloned()
        .collect();

    let publish = one(&ours, "herald.v1.PublishService/Publish");
    assert_eq!(publish.service, "herald-control-plane");
    assert_eq!(publish.kind, SERVER);
    assert_eq!(publish.parent_span_id, caller_span, "continues the caller");
    assert_eq!(publish.attr("rpc.system"), Some("grpc"));
    assert_eq!(publish.attr("rpc.method"), Some("Publish"));
    assert_eq!(publish.attr("herald.event_id"), Some(event_id.as_str()));
    assert_eq!(publish.attr("herald.endpoints_matched"), Some("1"));

    let matching = one(&ours, "herald.match");
    let route = one(&ours, "herald.route");
    assert_eq!(matching.parent_span_id, publish.span_id);
    assert_eq!(route.parent_span_id, publish.span_id);

    let enqueue = one(&ours, "herald.enqueue");
    assert_eq!(enqueue.service, "herald-agent");
    assert_eq!(enqueue.kind, SERVER);
    assert_eq!(
        enqueue.parent_span_id, route.span_id,
        "across the Ingest call"
    );

    let mut attempts: Vec<&Span> = ours.iter().filter(|s| s.name == "POST").collect();
    assert_eq!(
        attempts.len(),
        2,
        "both attempts are in the publish's trace"
    );
    attempts.sort_by_key(|s| s.attr("herald.attempt").map(str::to_string));
    let port = rx.addr.port().to_string();
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a.service, "herald-agent");
        assert_eq!(a.kind, CLIENT);
        assert_eq!(
            a.parent_span_id, publish.span_id,
            "attempt {i}: a child of the publish, from the stored context"
        );
        assert_eq!(a.attr("http.request.method"), Some("POST"));
        assert_eq!(a.attr("url.full"), Some(rx.url("/hook").as_str()));
        assert_eq!(a.attr("server.address"), Some("127.0.0.1"));
        assert_eq!(a.attr("server.port"), Some(port.as_str()));
        assert_eq!(a.attr("herald.event_id"), Some(event_id.as_str()));
        assert_eq!(a.attr("herald.endpoint_id"), Some(ep.id.as_str()));
        assert_eq!(a.attr("herald.tenant_id"), Some("acme"));
        assert_eq!(a.attr("herald.chunk_size"), Some("1"));
        assert_eq!(a.attr("herald.attempt"), Some((i + 1).to_string().as_str()));
        // The receiver saw this attempt's own context.
        assert_eq!(
            got[i].header("traceparent"),
            format!("00-{trace_id}-{}-01", a.span_id)
        );
    }
    assert_eq!(attempts[0].attr("http.response.status_code"), Some("500"));
    assert_eq!(attempts[0].attr("error.type"), Some("500"));
    assert_eq!(attempts[0].status_code, STATUS_ERROR);
    assert_eq!(attempts[1].attr("http.response.status_code"), Some("200"));
    assert_eq!(attempts[1].attr("error.type"), None);
    assert_ne!(attempts[1].status_code, STATUS_ERROR);
    Ok(())
}

/// Under load the control plane merges concurrent publishes' shares into
/// one Ingest call. Every publish must still reach its enqueue: the merged
/// call's enqueue span continues one publish's routing span and links the
/// publish span of every other.
#[tokio::test(flavor = "multi_thread")]
async fn every_publish_reaches_its_enqueue_when_calls_are_merged() -> anyhow::Result<()> {
    let otlp = OtlpReceiver::start().await?;
    let endpoint = otlp.endpoint();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let (_etcd, cp, _agent) = start_cluster(&env)?;
    let mut api = cp.clients().await?;
    let rx = Receiver::start().await;
    api.event_type("order.created").await?;
    api.tenant("acme").await?;
    api.endpoint("acme", &rx.url("/hook"), &["order.created"])
        .await?;

    // 32 publishers at once, 8 publishes each, each in a trace of its own.
    let (publishers, each) = (32, 8);
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..publishers {
        let mut client = api.publish.clone();
        tasks.spawn(async move {
            let mut traces = Vec::new();
            for i in 0..each {
                let trace_id = random_hex(16);
                let mut req = tonic::Request::new(pb::PublishRequest {
                    tenant_id: "acme".into(),
                    event_type: "order.created".into(),
                    payload_json: json!({ "p": p, "i": i }).to_string(),
                    idempotency_key: format!("merge-{p}-{i}"),
                    ..Default::default()
                });
                req.metadata_mut().insert(
                    "traceparent",
                    format!("00-{trace_id}-{}-01", random_hex(8)).parse()?,
                );
                client.publish(req).await?;
                traces.push(trace_id);
            }
            anyhow::Ok(traces)
        });
    }
    let mut traces = Vec::new();
    while let Some(t) = tasks.join_next().await {
        traces.extend(t??);
    }
    let n = publishers * each;
    assert_eq!(rx.wait_for(n, WAIT).await.len(), n);
    let spans = otlp
        .wait_until(WAIT, |s| s.iter().filter(|s| s.name == "POST").count() >= n)
        .await;

    let enqueues: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "herald.enqueue")
        .collect();
    assert!(
        enqueues.iter().any(|e| !e.links.is_empty()),
        "{} enqueue spans for {n} publishes, none merged",
        enqueues.len()
    );
    for trace_id in &traces {
        let ours: Vec<Span> = spans
            .iter()
            .filter(|s| &s.trace_id == trace_id)
            .cloned()
            .collect();
        let publish = one(&ours, "herald.v1.PublishService/Publish");
        let route = one(&ours, "herald.route");
        let parented = enqueues
            .iter()
            .filter(|e| &e.trace_id == trace_id && e.parent_span_id == route.span_id)
            .count();
        let linked = enqueues
            .iter()
            .filter(|e| {
                e.links
                    .iter()
                    .any(|(t, s)| t == trace_id && s == &publish.span_id)
            })
            .count();
        assert_eq!(
            parented + linked,
            1,
            "trace {trace_id}: one enqueue, as child ({parented}) or link ({linked})"
        );
        assert_eq!(
            ours.iter().filter(|s| s.name == "POST").count(),
            1,
            "trace {trace_id}: its delivery attempt"
        );
    }
    Ok(())
}

/// Publish latencies (ms) of `n` sequential publishes, and whether every
/// event arrived.
async fn publish_latencies(env: &[(&str, &str)], n: u64) -> anyhow::Result<(Vec<f64>, bool)> {
    let (_etcd, cp, _agent) = start_cluster(env)?;
    let mut api = cp.clients().await?;
    let rx = Receiver::start().await;
    api.event_type("order.created").await?;
    api.tenant("acme").await?;
    api.endpoint("acme", &rx.url("/hook"), &["order.created"])
        .await?;
    api.publish_seqs(0..5).await?; // warm up connections
    let mut ms = Vec::new();
    for seq in 5..5 + n {
        let t = Instant::now();
        api.publish(
            "acme",
            "order.created",
            json!({ "seq": seq }),
            &format!("k{seq}"),
        )
        .await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let all = rx.wait_for(5 + n as usize, WAIT).await.len() == 5 + n as usize;
    ms.sort_by(f64::total_cmp);
    Ok((ms, all))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_collector_that_is_down_costs_delivery_nothing() -> anyhow::Result<()> {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?;
    let dead = format!("http://{}", closed.local_addr()?);
    drop(closed);
    let n = 100;
    let (off, all_off) = publish_latencies(&[], n).await?;
    let (down, all_down) = publish_latencies(
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", dead.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ],
        n,
    )
    .await?;
    assert!(all_off && all_down, "every event arrived, collector or not");
    let p = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q) as usize];
    eprintln!(
        "publish latency ms, tracing off: p50 {:.2} p90 {:.2} max {:.2}; collector down: p50 {:.2} p90 {:.2} max {:.2}",
        p(&off, 0.5),
        p(&off, 0.9),
        p(&off, 1.0),
        p(&down, 0.5),
        p(&down, 0.9),
        p(&down, 1.0)
    );
    // Spans are exported from a background thread: a dead collector must
    // not show in the publish path. The bound is loose on purpose (the
    // machine is shared); an exporter on the hot path would cost a
    // connection attempt or a timeout per publish and blow it.
    assert!(
        p(&down, 0.5) <= p(&off, 0.5) * 2.0 + 5.0,
        "median with the collector down {:.2} ms vs {:.2} ms with tracing off",
        p(&down, 0.5),
        p(&off, 0.5)
    );
    Ok(())
}
