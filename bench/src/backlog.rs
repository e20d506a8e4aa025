//! Backlog runs: build up a queue of pending events while the endpoints
//! cannot take them, then let them drain.
//!
//! The endpoints are created disabled with `queue_while_disabled`, so the
//! events queue exactly as they would behind a receiver that is down (an
//! ordered endpoint's queue waits behind its failing head) without the
//! retry schedule deciding when the drain starts. "Receiver up" is then
//! enabling every endpoint. Throughout, the agent's RSS and the size of its
//! data directory are sampled once a second.
//!
//! - `backlog`: fill, (optionally kill -9 and restart the agent: time until
//!   delivery resumes), drain; drain rate, RSS over the drain, disk used.
//! - `handoff`: fill with one agent, start a second; time until half the
//!   slots and their queues moved; then drain, every event exactly once
//!   and in order.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::analysis::{self, Analysis};
use crate::cluster::{self, Cluster};
use crate::params::Params;
use crate::procstat;
use crate::publish::{self, Plan};
use crate::receiver::Receiver;
use crate::report::Machine;

/// One reading of the agents' memory and disk.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Point {
    /// Seconds since the run's fill started.
    pub t_secs: f64,
    /// Summed RSS of the agents, KiB.
    pub rss_kib: u64,
    /// Summed size of the agents' data directories, KiB.
    pub disk_kib: u64,
    /// Distinct deliveries arrived so far.
    pub delivered: usize,
}

/// What a backlog or handoff run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BacklogReport {
    /// Scenario name.
    pub scenario: String,
    /// Where it ran.
    pub machine: Machine,
    /// Events queued.
    pub events: u64,
    /// Endpoints they were spread over.
    pub endpoints: u64,
    /// Events per request.
    pub chunk_size: u32,
    /// Events stored per second while filling (PublishBatch).
    pub fill_per_sec: f64,
    /// Agents' data directories once the backlog was stored, MiB.
    pub disk_full_mib: f64,
    /// Agents' RSS once the backlog was stored, MiB.
    pub rss_full_mib: f64,
    /// After a kill -9 and restart: seconds from the restart until the
    /// first delivery (the endpoints were enabled before the restart).
    pub resume_after_restart_secs: Option<f64>,
    /// Handoff runs: seconds from starting the second agent until the slot
    /// map settled with every queue moved.
    pub handoff_secs: Option<f64>,
    /// Handoff runs: events queued on each agent after the handoff.
    pub queued_after_handoff: Vec<u64>,
    /// Events delivered per second over the drain.
    pub drain_per_sec: f64,
    /// Requests per second over the drain (below the events' rate when
    /// chunked).
    pub drain_requests_per_sec: f64,
    /// Agents' RSS over the drain, MiB: first, lowest, highest, last.
    pub drain_rss_mib: [f64; 4],
    /// Agents' RSS once the drain is under way (from 5 s after it started
    /// until the last delivery), MiB: lowest, highest. The step before it is
    /// the working set of delivering (batches, connections, buffers); this
    /// says whether memory then stays flat or grows as the backlog shrinks.
    pub steady_drain_rss_mib: [f64; 2],
    /// Agents' data directories after the drain, MiB.
    pub disk_after_mib: f64,
    /// Correctness over the whole run.
    pub analysis: Analysis,
    /// The samples, once a second.
    pub timeline: Vec<Point>,
}

impl BacklogReport {
    /// Human-readable lines.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let a = &self.analysis;
        let _ = writeln!(
            o,
            "scenario {}: {} events over {} endpoints, chunk {}; {} cores, {} build",
            self.scenario,
            self.events,
            self.endpoints,
            self.chunk_size,
            self.machine.cores,
            self.machine.profile
        );
        let _ = writeln!(
            o,
            "fill                 {:>10.1} events/s stored; then disk {:.1} MiB, agent RSS {:.1} MiB",
            self.fill_per_sec, self.disk_full_mib, self.rss_full_mib
        );
        if let Some(s) = self.resume_after_restart_secs {
            let _ = writeln!(o, "restart → first delivery {s:.2} s");
        }
        if let Some(s) = self.handoff_secs {
            let _ = writeln!(
                o,
                "handoff              {s:.2} s; queued per agent after it: {:?}",
                self.queued_after_handoff
            );
        }
        let _ = writeln!(
            o,
            "drain                {:>10.1} events/s ({:.1} requests/s)",
            self.drain_per_sec, self.drain_requests_per_sec
        );
        let [first, low, high, last] = self.drain_rss_mib;
        let _ = writeln!(
            o,
            "agent RSS over drain first {first:.1}  min {low:.1}  max {high:.1}  last {last:.1} MiB (max/min {:.2})",
            if low > 0.0 { high / low } else { 0.0 }
        );
        let [low, high] = self.steady_drain_rss_mib;
        let _ = writeln!(
            o,
            "agent RSS from 5 s into the drain to its end: min {low:.1}  max {high:.1} MiB (max/min {:.2})",
            if low > 0.0 { high / low } else { 0.0 }
        );
        let _ = writeln!(o, "disk after drain     {:.1} MiB", self.disk_after_mib);
        let _ = writeln!(
            o,
            "delivered {}  missing {}  duplicates {}  order violations {}  misrouted {}",
            a.delivered, a.missing, a.duplicates, a.order_violations, a.misrouted
        );
        o
    }
}

/// Total size of the files under `dir`, KiB.
/// Bytes under `dir`, KiB.
pub fn dir_kib(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(p) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    }
    walk(dir) / 1024
}

/// Samples the agents once a second into a shared timeline until dropped.
struct Sampler {
    timeline: Arc<Mutex<Vec<Point>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(
        targets: Arc<Mutex<Vec<(u32, std::path::PathBuf)>>>,
        receiver: Arc<Receiver>,
        t0: Instant,
    ) -> Sampler {
        let timeline = Arc::new(Mutex::new(Vec::new()));
        let out = timeline.clone();
        let task = tokio::spawn(async move {
            loop {
                let now: Vec<(u32, std::path::PathBuf)> = targets.lock().expect("lock").clone();
                let point = Point {
                    t_secs: t0.elapsed().as_secs_f64(),
                    rss_kib: now
                        .iter()
                        .map(|(pid, _)| procstat::sample(*pid).rss_kib)
                        .sum(),
                    disk_kib: now.iter().map(|(_, d)| dir_kib(d)).sum(),
                    delivered: receiver.delivered(),
                };
                out.lock().expect("lock").push(point);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Sampler { timeline, task }
    }

    fn points(&self) -> Vec<Point> {
        self.timeline.lock().expect("lock").clone()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn agent_targets(cluster: &Cluster) -> Vec<(u32, std::path::PathBuf)> {
    cluster
        .agents
        .iter()
        .filter_map(|a| a.pid().map(|pid| (pid, a.data_dir().to_path_buf())))
        .collect()
}

/// A cluster of `agents` whose `p.endpoints` endpoints (each with its own
/// event type) queue while disabled, warmed up.
pub async fn queueing_cluster(
    agents: usize,
    p: &Params,
    receiver: &Receiver,
) -> anyhow::Result<Cluster> {
    let mut cluster = Cluster::start(agents).await?;
    cluster.api.tenant(cluster::TENANT).await?;
    let n = p.endpoints as usize;
    eprintln!("herald-bench: creating {n} event types and queueing endpoints");
    cluster::create_event_types(&cluster.api, n, p.setup_concurrency).await?;
    let shape = cluster::Shape {
        chunk_size: p.chunk_size,
        queue_disabled: true,
        ..Default::default()
    };
    cluster::create_endpoints(&cluster.api, receiver, n, p.setup_concurrency, &shape).await?;
    cluster.warm_up(receiver).await?;
    Ok(cluster)
}

/// Runs `backlog` (`handoff` false) or `handoff`.
pub async fn run(name: &str, p: &Params, handoff: bool) -> anyhow::Result<BacklogReport> {
    let receiver = Arc::new(Receiver::start(Duration::from_millis(p.receiver_delay_ms)).await?);
    let mut cluster = queueing_cluster(1, p, &receiver).await?;

    let targets = Arc::new(Mutex::new(agent_targets(&cluster)));
    let t0 = Instant::now();
    let sampler = Sampler::start(targets.clone(), receiver.clone(), t0);
    let plan = Plan {
        rate: None,
        ..Plan::of(p)
    };
    eprintln!(
        "herald-bench: filling a backlog of {} events ({} publishers, batches of {})",
        p.events,
        plan.publishers(),
        p.batch_size
    );
    let published = publish::run(&cluster.transport(), &plan).await?;
    let fill_per_sec = p.events as f64 / published.elapsed.as_secs_f64().max(1e-9);
    let full = agent_targets(&cluster);
    let disk_full_mib = full.iter().map(|(_, d)| dir_kib(d)).sum::<u64>() as f64 / 1024.0;
    let rss_full_mib = full
        .iter()
        .map(|(pid, _)| procstat::sample(*pid).rss_kib)
        .sum::<u64>() as f64
        / 1024.0;
    eprintln!(
        "herald-bench: backlog stored at {fill_per_sec:.0} events/s, {disk_full_mib:.1} MiB on disk"
    );

    let mut handoff_secs = None;
    let mut queued_after_handoff = Vec::new();
    if handoff {
        eprintln!("herald-bench: starting a second agent");
        let started = Instant::now();
        cluster.add_agent().await?;
        *targets.lock().expect("lock") = agent_targets(&cluster);
        let view = cluster.wait_settled_view(Duration::from_secs(600)).await?;
        handoff_secs = Some(started.elapsed().as_secs_f64());
        queued_after_handoff = view
            .agents
            .iter()
            .map(|a| a.queue_depth.unwrap_or(0))
            .collect();
    }

    let mut resume_after_restart_secs = None;
    let drain_start;
    let requests_before = receiver.delivery_requests();
    if p.restart_agent {
        eprintln!("herald-bench: kill -9 the agent, enable the endpoints, restart it");
        cluster.agents[0].kill9();
        cluster::enable_all(&cluster.api, p.setup_concurrency).await?;
        let restarted = Instant::now();
        cluster.agents[0].restart()?;
        *targets.lock().expect("lock") = agent_targets(&cluster);
        drain_start = restarted;
        while receiver.delivered() == 0 {
            anyhow::ensure!(
                restarted.elapsed() < Duration::from_secs(120),
                "no delivery within 120 s of the restart"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        resume_after_restart_secs = Some(restarted.elapsed().as_secs_f64());
    } else {
        eprintln!("herald-bench: enabling the endpoints (receiver up)");
        drain_start = Instant::now();
        cluster::enable_all(&cluster.api, p.setup_concurrency).await?;
    }
    let drain_from = drain_start - t0;
    crate::load::wait_for_deliveries(
        &receiver,
        p.events as usize,
        Duration::from_secs(p.stall_secs),
    )
    .await;
    let drain_secs = (Instant::now() - drain_start).as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await; // a last sample, and late duplicates
    let timeline = sampler.points();
    drop(sampler);

    let arrivals = receiver.arrivals();
    let analysis = analysis::analyse(&arrivals, &published.started, p.endpoints);
    let last_arrival = analysis.last_arrival.unwrap_or_else(Instant::now);
    let drain_busy = (last_arrival - drain_start).as_secs_f64().max(1e-9);
    // Samples taken while a killed agent was down read 0: leave them out.
    let drain: Vec<&Point> = timeline
        .iter()
        .filter(|pt| pt.t_secs >= drain_from.as_secs_f64() && pt.rss_kib > 0)
        .collect();
    let mib = |k: u64| k as f64 / 1024.0;
    let drain_rss = drain.iter().map(|pt| pt.rss_kib);
    let drain_rss_mib = [
        drain.first().map_or(0.0, |pt| mib(pt.rss_kib)),
        mib(drain_rss.clone().min().unwrap_or(0)),
        mib(drain_rss.max().unwrap_or(0)),
        drain.last().map_or(0.0, |pt| mib(pt.rss_kib)),
    ];
    let steady_from = drain_from.as_secs_f64() + 5.0;
    let steady_to = (last_arrival - t0).as_secs_f64();
    let steady: Vec<u64> = drain
        .iter()
        .filter(|pt| pt.t_secs >= steady_from && pt.t_secs <= steady_to)
        .map(|pt| pt.rss_kib)
        .collect();
    let steady_drain_rss_mib = [
        mib(steady.iter().copied().min().unwrap_or(0)),
        mib(steady.iter().copied().max().unwrap_or(0)),
    ];
    let disk_after_mib = mib(agent_targets(&cluster)
        .iter()
        .map(|(_, d)| dir_kib(d))
        .sum());
    eprintln!("herald-bench: drained in {drain_secs:.1} s");
    Ok(BacklogReport {
        scenario: name.to_string(),
        machine: Machine::here(),
        events: p.events,
        endpoints: p.endpoints,
        chunk_size: p.chunk_size,
        fill_per_sec,
        disk_full_mib,
        rss_full_mib,
        resume_after_restart_secs,
        handoff_secs,
        queued_after_handoff,
        drain_per_sec: analysis.delivered as f64 / drain_busy,
        drain_requests_per_sec: (receiver.delivery_requests() - requests_before) as f64
            / drain_busy,
        drain_rss_mib,
        steady_drain_rss_mib,
        disk_after_mib,
        analysis,
        timeline,
    })
}
