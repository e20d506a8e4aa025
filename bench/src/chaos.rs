//! `herald-bench chaos`: the failure run, on demand (minutes; not part of
//! the test command). 3 etcd members, 2 control-plane replicas, 3 agents,
//! ordered endpoints, events published at a fixed rate to a receiver that
//! fails a share of requests at random; meanwhile an agent is killed -9
//! every few seconds and restarted after 1 to 6 s (so both sides of the 5 s
//! lease TTL occur), the leading control plane is killed once, an etcd
//! member is killed once, and an agent is drained (SIGTERM) and started
//! again once. Every choice comes from `--seed`. The run fails if an event
//! is lost or delivered out of order; it reports duplicates beside the
//! kills that can cause them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_proto::v1 as pb;
use herald_tests::cluster::{Agent, Clients, ControlPlane, Etcd};
use herald_tests::ordered_publisher::OrderedPublisher;
use herald_tests::ordering;
use herald_tests::receiver::Receiver;
use serde::Serialize;

/// The chaos run's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosOpts {
    /// Seeds every random choice (victims, restart delays, failed requests).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Events in all.
    #[arg(long, default_value_t = 30_000)]
    pub events: u64,
    /// Ordered endpoints.
    #[arg(long, default_value_t = 100)]
    pub endpoints: u64,
    /// Events per second over all publishers.
    #[arg(long, default_value_t = 250.0)]
    pub rate: f64,
    /// Share of requests the receiver answers 500.
    #[arg(long, default_value_t = 0.2)]
    pub fail_share: f64,
    /// An agent is killed -9 this often.
    #[arg(long, default_value_t = 10)]
    pub kill_every_secs: u64,
}

/// What happened.
#[derive(Debug, Serialize)]
pub struct ChaosReport {
    pub seed: u64,
    pub events: u64,
    pub endpoints: u64,
    /// Agents killed -9 (each restarted).
    pub agent_kills: u64,
    /// Restarts that came after the 5 s lease had expired.
    pub restarts_after_lease: u64,
    pub leader_kills: u64,
    pub etcd_member_kills: u64,
    pub drains: u64,
    pub publish_retries: u64,
    pub missing: u64,
    /// Out-of-order and duplicate counts from the receiver's accepted
    /// requests (a 500 is not a delivery).
    pub duplicates: usize,
    pub seconds: f64,
}

/// xorshift64: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const PUBLISHERS: u64 = 4;

async fn leader_index(apis: &mut [Clients; 2]) -> anyhow::Result<usize> {
    let a = apis[0]
        .cluster
        .get_cluster(pb::GetClusterRequest {})
        .await?
        .into_inner();
    Ok(if a.leader_id == a.replica_id { 0 } else { 1 })
}

/// Runs the scenario.
pub async fn run(o: &ChaosOpts) -> anyhow::Result<ChaosReport> {
    let mut rng = Rng(o.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let receiver = Receiver::start().await;
    let mut etcd = Etcd::start_cluster(3)?;
    let mut cps = [
        Some(ControlPlane::start(&etcd, &[])?),
        Some(ControlPlane::start(&etcd, &[])?),
    ];
    let cp_refs: Vec<&ControlPlane> = cps.iter().flatten().collect();
    let mut agents = Vec::new();
    for _ in 0..3 {
        agents.push(Agent::start(&etcd, &cp_refs, &[])?);
    }
    let mut apis = [cp_refs[0].clients().await?, cp_refs[1].clients().await?];
    drop(cp_refs);
    apis[0].tenant("acme").await?;
    for i in 0..o.endpoints {
        let t = format!("t{i}.created");
        apis[0].event_type(&t).await?;
        apis[0]
            .endpoint("acme", &receiver.url(&format!("/ep{i}")), &[&t])
            .await?;
    }
    receiver.fail_share(o.fail_share, rng.next());
    let per_ep = o.events / o.endpoints;
    let total = per_ep * o.endpoints;
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|k| {
            let p = OrderedPublisher {
                k,
                publishers: PUBLISHERS,
                endpoints: o.endpoints,
                per_endpoint: per_ep,
                every: Some(Duration::from_secs_f64(PUBLISHERS as f64 / o.rate)),
                max_retries: 20_000,
            };
            p.spawn(apis.clone(), done.clone())
        })
        .collect();

    let mut r = ChaosReport {
        seed: o.seed,
        events: total,
        endpoints: o.endpoints,
        agent_kills: 0,
        restarts_after_lease: 0,
        leader_kills: 0,
        etcd_member_kills: 0,
        drains: 0,
        publish_retries: 0,
        missing: 0,
        duplicates: 0,
        seconds: 0.0,
    };
    let progress = |done: &AtomicU64| done.load(Ordering::SeqCst) * 100 / total.max(1);
    let mut next_kill = Instant::now() + Duration::from_secs(o.kill_every_secs);
    while done.load(Ordering::SeqCst) < total {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let pct = progress(&done);
        if r.leader_kills == 0 && pct >= 30 {
            let leader = leader_index(&mut apis).await.unwrap_or(0);
            eprintln!(
                "chaos: killing the leader, replica {} ({pct} %)",
                leader + 1
            );
            if let Some(mut cp) = cps[leader].take() {
                cp.proc.kill9();
            }
            r.leader_kills += 1;
        }
        if r.etcd_member_kills == 0 && pct >= 50 {
            let victim = rng.below(3) as usize;
            eprintln!("chaos: killing etcd member {victim} ({pct} %)");
            etcd.kill_member(victim);
            r.etcd_member_kills += 1;
        }
        if r.drains == 0 && pct >= 70 {
            let victim = rng.below(agents.len() as u64) as usize;
            eprintln!("chaos: draining agent {victim} ({pct} %)");
            anyhow::ensure!(
                agents[victim].terminate(Duration::from_secs(60)),
                "agent {victim} did not drain"
            );
            agents[victim].restart()?;
            r.drains += 1;
        }
        if Instant::now() >= next_kill {
            next_kill += Duration::from_secs(o.kill_every_secs);
            let victim = rng.below(agents.len() as u64) as usize;
            let down_ms = 1_000 + rng.below(5_001);
            eprintln!("chaos: kill -9 agent {victim}, back in {down_ms} ms ({pct} %)");
            agents[victim].kill9();
            tokio::time::sleep(Duration::from_millis(down_ms)).await;
            agents[victim].restart()?;
            r.agent_kills += 1;
            r.restarts_after_lease += u64::from(down_ms > 5_000);
        }
    }
    for p in publishers {
        r.publish_retries += p.await??;
    }
    eprintln!("chaos: all {total} published in {:?}", started.elapsed());
    let waited = ordering::wait_all(&receiver, o.endpoints, per_ep, Duration::from_secs(300)).await;
    let got = ordering::seqs_by_path(&receiver.received());
    r.missing = (0..o.endpoints)
        .map(|i| {
            let seqs = got.get(&format!("/ep{i}"));
            (0..per_ep)
                .filter(|s| !seqs.is_some_and(|v| v.contains(s)))
                .count() as u64
        })
        .sum();
    r.seconds = started.elapsed().as_secs_f64();
    if waited.is_ok() {
        // Panics (fails the run) on the first event out of order: a new
        // event before an older one (a repeat is a duplicate).
        r.duplicates = ordering::assert_first_arrivals_in_order(&got);
    }
    drop(agents);
    Ok(r)
}

impl ChaosReport {
    /// Human-readable lines.
    pub fn text(&self) -> String {
        format!(
            "chaos seed {}: {} events to {} ordered endpoints in {:.0} s\n\
             agent kills {} ({} restarted after the lease expired), leader kills {}, etcd member kills {}, drains {}\n\
             missing {}  out of order 0  duplicates {}  publish retries {}\n",
            self.seed,
            self.events,
            self.endpoints,
            self.seconds,
            self.agent_kills,
            self.restarts_after_lease,
            self.leader_kills,
            self.etcd_member_kills,
            self.drains,
            self.missing,
            self.duplicates,
            self.publish_retries
        )
    }
}
