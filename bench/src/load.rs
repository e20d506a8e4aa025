//! A load run: cluster, endpoints, publishers, wait for the deliveries,
//! then the bare client on the same receiver; one report.

use std::time::{Duration, Instant};

use crate::analysis;
use crate::ceiling;
use crate::cluster::{self, Cluster};
use crate::params::Params;
use crate::procstat;
use crate::publish::{self, Plan};
use crate::receiver::Receiver;
use crate::report::{LoadReport, Machine, ProcessUse, Settings};

/// After the last expected delivery, how long to keep listening for
/// duplicates.
const SETTLE: Duration = Duration::from_millis(300);

/// Runs `p` as scenario `name`.
pub async fn run(name: &str, p: &Params) -> anyhow::Result<LoadReport> {
    let receiver = Receiver::start(Duration::from_millis(p.receiver_delay_ms)).await?;
    let mut cluster = Cluster::start(p.agents).await?;
    cluster.api.tenant(cluster::TENANT).await?;
    eprintln!(
        "herald-bench: creating {} event types and endpoints",
        p.endpoints
    );
    let n = p.endpoints as usize;
    cluster::create_event_types(&cluster.api, n, p.setup_concurrency).await?;
    let shape = cluster::Shape {
        chunk_size: p.chunk_size,
        ..Default::default()
    };
    cluster::create_endpoints(&cluster.api, &receiver, n, p.setup_concurrency, &shape).await?;
    // Last, so the agents have every endpoint's config when it arrives.
    cluster.warm_up(&receiver).await?;

    let plan = Plan::of(p);
    eprintln!(
        "herald-bench: publishing {} events with {} publishers",
        p.events,
        plan.publishers()
    );
    let before = cluster.sample();
    let me_before = procstat::sample(std::process::id());
    let published = publish::run(&cluster.transport(), &plan).await?;
    wait_for_deliveries(
        &receiver,
        p.events as usize,
        Duration::from_secs(p.stall_secs),
    )
    .await;
    tokio::time::sleep(SETTLE).await;
    let after = cluster.sample();
    let me_after = procstat::sample(std::process::id());

    let analysis = analysis::analyse(&receiver.arrivals(), &published.started, p.endpoints);
    let t0 = published
        .started
        .iter()
        .min()
        .copied()
        .unwrap_or_else(Instant::now);
    let delivery_secs = analysis
        .last_arrival
        .map_or(0.0, |last| (last - t0).as_secs_f64());
    let delivered_per_sec = rate(analysis.delivered, delivery_secs);

    let ceiling_concurrency = p.ceiling_concurrency.unwrap_or(plan.publishers());
    eprintln!(
        "herald-bench: bare client, {} requests, {ceiling_concurrency} concurrent",
        p.events
    );
    let me_before_ceiling = procstat::sample(std::process::id());
    let bare = ceiling::run(
        &receiver.url("/ceiling"),
        p.events.max(1),
        ceiling_concurrency,
        receiver.mean_delivery_body(),
    )
    .await?;
    let ceiling_cpu = procstat::sample(std::process::id()).cpu_secs - me_before_ceiling.cpu_secs;
    anyhow::ensure!(
        receiver.ceiling_requests() >= bare.requests,
        "the receiver counted {} bare requests of {}",
        receiver.ceiling_requests(),
        bare.requests
    );

    let mut processes: Vec<ProcessUse> = before
        .iter()
        .zip(&after)
        .map(|((w, b), (_, a))| ProcessUse::between(&w.name, b, a))
        .collect();
    processes.push(ProcessUse::between("herald-bench", &me_before, &me_after));
    let cpu_secs: f64 = processes.iter().map(|p| p.cpu_secs).sum();
    let cpu_us_per_event = per_us(cpu_secs, analysis.delivered as u64);
    Ok(LoadReport {
        scenario: name.to_string(),
        machine: Machine::here(),
        settings: Settings {
            events: p.events,
            endpoints: p.endpoints,
            concurrency: p.concurrency,
            publishers: plan.publishers(),
            batch_size: p.batch_size,
            rate: p.rate,
            payload_bytes: p.payload_bytes,
            receiver_delay_ms: p.receiver_delay_ms,
            agents: p.agents,
            chunk_size: p.chunk_size,
        },
        publish_calls_per_sec: rate(published.calls, published.elapsed.as_secs_f64()),
        published_per_sec: rate(p.events, published.elapsed.as_secs_f64()),
        publish_retries: published.retries,
        delivered_per_sec,
        analysis,
        malformed_requests: receiver.malformed(),
        ceiling_per_sec: bare.per_sec(),
        ceiling_concurrency: bare.concurrency,
        ceiling_body_bytes: bare.body_bytes,
        ratio: if bare.per_sec() > 0.0 {
            delivered_per_sec / bare.per_sec()
        } else {
            0.0
        },
        cpu_us_per_event,
        ceiling_cpu_us_per_request: per_us(ceiling_cpu, bare.requests as u64),
        processes,
    })
}

/// Seconds per item, in µs.
fn per_us(secs: f64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { secs * 1e6 / n as f64 }
}

/// Waits until `n` deliveries arrived, or none came for `stall`; says how
/// far it got every 10 s.
pub(crate) async fn wait_for_deliveries(receiver: &Receiver, n: usize, stall: Duration) {
    let mut seen = receiver.delivered();
    let mut last_progress = Instant::now();
    let mut reported = Instant::now();
    while seen < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let now = receiver.delivered();
        if now > seen {
            seen = now;
            last_progress = Instant::now();
        } else if last_progress.elapsed() >= stall {
            eprintln!(
                "herald-bench: {seen} of {n} deliveries arrived; none for {stall:?}, giving up"
            );
            return;
        }
        if reported.elapsed() >= Duration::from_secs(10) {
            eprintln!("herald-bench: {seen} of {n} delivered");
            reported = Instant::now();
        }
    }
}

/// `count / secs`, 0 for an empty interval.
fn rate(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}
