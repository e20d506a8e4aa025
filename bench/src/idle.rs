//! The idle-endpoints run: memory per endpoint in the control plane and the
//! agents, from their RSS before and after creating many endpoints that
//! never get an event.

use std::time::{Duration, Instant};

use crate::cluster::{self, Cluster};
use crate::params::Params;
use crate::procstat;
use crate::receiver::Receiver;
use crate::report::{IdleReport, IdleUse, Machine};

/// The one event type every idle endpoint takes (never published), so the
/// figure is the endpoints' own cost and not the catalog's.
const IDLE_TYPE: &str = "idle.created";

/// Runs `p` (only `endpoints`, `agents` and `setup_concurrency` matter).
pub async fn run(name: &str, p: &Params) -> anyhow::Result<IdleReport> {
    let receiver = Receiver::start(Duration::ZERO).await?;
    let mut cluster = Cluster::start(p.agents).await?;
    cluster.api.tenant(cluster::TENANT).await?;
    cluster.api.event_type(IDLE_TYPE).await?;
    // The whole path once, so the baseline is a cluster that has worked.
    cluster.warm_up(&receiver).await?;
    let before = settled(&cluster).await;

    eprintln!("herald-bench: creating {} idle endpoints", p.endpoints);
    let t0 = Instant::now();
    let n = p.endpoints as usize;
    cluster::create_endpoints(
        &cluster.api,
        &receiver,
        n,
        p.setup_concurrency,
        &cluster::Shape {
            event_type: Some(IDLE_TYPE.into()),
            ..Default::default()
        },
    )
    .await?;
    let created_per_sec = p.endpoints as f64 / t0.elapsed().as_secs_f64();
    // The agents get the configs over their control streams after the API
    // answered; wait until their memory stops growing.
    let after = settled(&cluster).await;

    // What an operator restarting a control plane waits for.
    eprintln!("herald-bench: starting a second control plane");
    let t = Instant::now();
    let cp2 = cluster
        .start_control_plane(Duration::from_secs(600))
        .await?;
    let cp_start_secs = t.elapsed().as_secs_f64();
    let cp_start_rss_kib = procstat::sample(cp2.pid()).rss_kib;
    drop(cp2);
    let etcd_disk_kib = crate::backlog::dir_kib(cluster.etcd.dir());

    let processes = before
        .iter()
        .zip(&after)
        .map(|((name, b), (_, a))| IdleUse {
            name: name.clone(),
            rss_before_kib: *b,
            rss_after_kib: *a,
            bytes_per_endpoint: (*a as f64 - *b as f64) * 1024.0 / p.endpoints.max(1) as f64,
        })
        .collect();
    Ok(IdleReport {
        scenario: name.to_string(),
        machine: Machine::here(),
        endpoints: p.endpoints,
        created_per_sec,
        processes,
        cp_start_secs,
        cp_start_rss_kib,
        etcd_disk_kib,
    })
}

/// Each process's RSS (KiB) once no process's RSS moved by more than 1 %
/// over a second (at most 60 s of waiting).
async fn settled(cluster: &Cluster) -> Vec<(String, u64)> {
    let read = || -> Vec<(String, u64)> {
        cluster
            .processes()
            .into_iter()
            .map(|w| (w.name, procstat::sample(w.pid).rss_kib))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = read();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = read();
        let still = now
            .iter()
            .zip(&last)
            .all(|((_, a), (_, b))| a.abs_diff(*b) * 100 <= (*b).max(1));
        if still || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}
