//! The scale-out acceptance run: 3 agents and 2 control-plane replicas,
//! 200 ordered endpoints, 20,000 events published without pause while a
//! 4th agent joins, one agent drains, one is killed -9 and restarted, and
//! the leading control plane is killed -9. Every event must arrive, in
//! order per endpoint; duplicates are counted and reported.
//!
//! `HERALD_CHAOS_EVENTS` changes the number of events (default 20,000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_proto::v1 as pb;
use herald_tests::cluster::{Agent, Clients, ControlPlane, Etcd};
use herald_tests::ordered_publisher::OrderedPublisher;
use herald_tests::ordering;
use herald_tests::receiver::Receiver;

const ENDPOINTS: u64 = 200;
const PUBLISHERS: u64 = 4;

async fn wait_published(done: &AtomicU64, n: u64) {
    while done.load(Ordering::SeqCst) < n {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn replica_id(api: &mut Clients) -> anyhow::Result<pb::Cluster> {
    Ok(api
        .cluster
        .get_cluster(pb::GetClusterRequest {})
        .await?
        .into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_arrives_in_order_through_joins_drains_crashes_and_failover()
-> anyhow::Result<()> {
    let total: u64 = std::env::var("HERALD_CHAOS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let per_ep = total / ENDPOINTS;
    let receiver = Receiver::start().await;
    let etcd = Etcd::start()?;
    let mut cps = [
        Some(ControlPlane::start(&etcd, &[])?),
        Some(ControlPlane::start(&etcd, &[])?),
    ];
    let cp_refs: Vec<&ControlPlane> = cps.iter().flatten().collect();
    let mut agents = Vec::new();
    for _ in 0..3 {
        agents.push(Agent::start(&etcd, &cp_refs, &[])?);
    }
    let mut api = [cp_refs[0].clients().await?, cp_refs[1].clients().await?];
    api[0].tenant("acme").await?;
    for i in 0..ENDPOINTS {
        let t = format!("t{i}.created");
        api[0].event_type(&t).await?;
        api[0]
            .endpoint("acme", &receiver.url(&format!("/ep{i}")), &[&t])
            .await?;
    }
    // The second replica sees them through its watch.
    let deadline = Instant::now() + Duration::from_secs(10);
    while api[1]
        .endpoints
        .list_endpoints(pb::ListEndpointsRequest {
            tenant_id: "acme".into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .endpoints
        .len()
        < ENDPOINTS as usize
    {
        anyhow::ensure!(Instant::now() < deadline, "replica 2 did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|k| {
            let p = OrderedPublisher {
                k,
                publishers: PUBLISHERS,
                endpoints: ENDPOINTS,
                per_endpoint: per_ep,
                every: None,
                max_retries: 2_000,
            };
            p.spawn(api.clone(), done.clone())
        })
        .collect();

    wait_published(&done, total / 5).await;
    eprintln!("chaos: a 4th agent joins ({:?})", started.elapsed());
    agents.push(Agent::start(&etcd, &cp_refs, &[])?);

    wait_published(&done, 2 * total / 5).await;
    eprintln!("chaos: agent 2 drains ({:?})", started.elapsed());
    anyhow::ensure!(
        agents[1].terminate(Duration::from_secs(40)),
        "agent 2 did not drain and stop"
    );

    wait_published(&done, 3 * total / 5).await;
    eprintln!(
        "chaos: agent 3 is killed -9 and restarted ({:?})",
        started.elapsed()
    );
    agents[2].kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    agents[2].restart()?;

    wait_published(&done, 4 * total / 5).await;
    let cluster = replica_id(&mut api[0]).await?;
    let leader = if replica_id(&mut api[1]).await?.replica_id == cluster.leader_id {
        1
    } else {
        0
    };
    eprintln!(
        "chaos: the leader (replica {}, {}) is killed -9 ({:?})",
        leader + 1,
        cluster.leader_id,
        started.elapsed()
    );
    if let Some(mut cp) = cps[leader].take() {
        cp.proc.kill9();
    }

    let mut retries = 0;
    for p in publishers {
        retries += p.await??;
    }
    eprintln!(
        "chaos: {total} events published in {:?} ({retries} retries)",
        started.elapsed()
    );

    // Every event arrives, in order per endpoint.
    ordering::wait_all(&receiver, ENDPOINTS, per_ep, Duration::from_secs(120)).await?;
    let duplicates =
        ordering::assert_first_arrivals_in_order(&ordering::seqs_by_path(&receiver.received()));
    eprintln!(
        "chaos: all {total} events delivered in order to {ENDPOINTS} endpoints in {:?}; {duplicates} duplicates",
        started.elapsed()
    );

    // The surviving replica leads and shows 3 agents, none draining, and
    // (once the moves settle) no handoff in progress.
    let survivor = 1 - leader;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c = replica_id(&mut api[survivor]).await?;
        let settled = c.leader_id == c.replica_id
            && c.agents.len() == 3
            && c.handoffs_in_progress == 0
            && c.agents.iter().map(|a| a.slots).sum::<u32>() == c.slot_count;
        if settled {
            assert!(c.agents.iter().all(|a| a.queue_depth == Some(0)));
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "cluster did not settle: {c:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(agents);
    Ok(())
}
