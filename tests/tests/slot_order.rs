//! One order per slot across owners, on real processes, with every crash
//! point chosen by the test: a receiver that holds requests keeps an
//! attempt in progress (so a handoff cannot finish) for as long as the
//! test needs, and each step waits for the slot map to say what happened.

use std::time::{Duration, Instant};

use herald_proto::v1 as pb;
use herald_proto::v1::agent_query_client::AgentQueryClient;
use herald_tests::cluster::{Agent, Clients, Cluster};
use herald_tests::ordering::{self, seqs_by_path};
use herald_tests::receiver::Receiver;
use serde_json::json;

const ENDPOINTS: u64 = 20;

/// An ordered endpoint at `/ep{i}` of tenant `acme`, subscribed to its
/// own type `t{i}.created`: enabled with the longest timeout (so an attempt
/// the receiver holds stays in progress), or disabled and queueing.
async fn create_endpoint(
    api: &mut Clients,
    receiver: &Receiver,
    i: u64,
    enabled: bool,
) -> anyhow::Result<pb::Endpoint> {
    let t = format!("t{i}.created");
    api.event_type(&t).await?;
    let created = api
        .endpoints
        .create_endpoint(pb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            spec: Some(pb::EndpointSpec {
                name: format!("ep{i}"),
                url: receiver.url(&format!("/ep{i}")),
                enabled,
                queue_while_disabled: !enabled,
                event_types: vec![t],
                timeout_ms: 60_000,
                retry: Some(pb::RetryPolicy {
                    delays_ms: vec![200; 20],
                }),
                ..Default::default()
            }),
        })
        .await?
        .into_inner();
    created
        .endpoint
        .ok_or_else(|| anyhow::anyhow!("no endpoint in the reply"))
}

/// Publishes sequence `seq` to endpoints `0..n`, retrying while slots move.
async fn publish_round(api: &mut Clients, n: u64, seq: u64) -> anyhow::Result<()> {
    for i in 0..n {
        let t = format!("t{i}.created");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match api
                .publish("acme", &t, json!({ "seq": seq }), &format!("k{i}-{seq}"))
                .await
            {
                Ok(_) => break,
                Err(s) if s.code() == tonic::Code::Unavailable && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(s) => anyhow::bail!("publish {i}/{seq}: {s}"),
            }
        }
    }
    Ok(())
}

async fn cluster(api: &mut Clients) -> anyhow::Result<pb::Cluster> {
    Ok(api
        .cluster
        .get_cluster(pb::GetClusterRequest {})
        .await?
        .into_inner())
}

/// Polls the cluster view until `ok` holds.
async fn wait_cluster(
    api: &mut Clients,
    what: &str,
    ok: impl Fn(&pb::Cluster) -> bool,
) -> anyhow::Result<pb::Cluster> {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let c = cluster(api).await?;
        if ok(&c) {
            return Ok(c);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "waited in vain for {what}: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn agent_id(a: &Agent) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(a.data_dir().join("agent_id"))?
        .trim()
        .to_string())
}

fn slots_of(c: &pb::Cluster, id: &str) -> u32 {
    c.agents.iter().find(|a| a.id == id).map_or(0, |a| a.slots)
}

/// How many deliveries of tenant `acme` the agent at `addr` holds.
async fn held_by(addr: &str) -> anyhow::Result<usize> {
    let mut q = AgentQueryClient::connect(format!("http://{addr}")).await?;
    let r = q
        .list_deliveries(pb::AgentListDeliveriesRequest {
            filter: Some(pb::ListDeliveriesRequest {
                tenant_id: "acme".into(),
                ..Default::default()
            }),
            before: None,
            limit: 1000,
        })
        .await?
        .into_inner();
    Ok(r.deliveries.len())
}

/// The gap the README used to list. A slot moves from A to B; B parks new
/// work for it (W_B) while A cannot finish the handoff; B dies; A, owner
/// again while it waits for B, parks newer work (W_A); B returns and A
/// hands it everything. Every endpoint must still get its events in
/// publish order: A's old queue, then W_B, then W_A.
#[tokio::test(flavor = "multi_thread")]
async fn work_parked_by_an_owner_that_died_mid_handoff_keeps_its_place() -> anyhow::Result<()> {
    let receiver = Receiver::start().await;
    let mut c = Cluster::start().await?;
    c.api.tenant("acme").await?;
    for i in 0..ENDPOINTS {
        create_endpoint(&mut c.api, &receiver, i, true).await?;
    }
    let a_id = agent_id(&c.agent)?;

    // Seq 0 reaches every endpoint and is held there: each worker has an
    // attempt in progress. Seqs 1-2 queue behind it on A.
    receiver.hold();
    publish_round(&mut c.api, ENDPOINTS, 0).await?;
    let held = receiver
        .wait_held(ENDPOINTS as usize, Duration::from_secs(20))
        .await;
    anyhow::ensure!(held >= ENDPOINTS as usize, "attempts in progress: {held}");
    for seq in 1..3 {
        publish_round(&mut c.api, ENDPOINTS, seq).await?;
    }

    // B joins and is given about half the slots; A cannot hand them over
    // while their attempts are held, so B parks what it gets: seqs 3-4.
    let mut b = Agent::start(&c.etcd, &[&c.cp], &[])?;
    let b_id = agent_id(&b)?;
    let joined = wait_cluster(&mut c.api, "B owning slots, handoffs open", |cl| {
        slots_of(cl, &b_id) > 0 && cl.handoffs_in_progress > 0
    })
    .await?;
    let b_addr = joined
        .agents
        .iter()
        .find(|a| a.id == b_id)
        .map(|a| a.ingest_addr.clone())
        .unwrap_or_default();
    for seq in 3..5 {
        publish_round(&mut c.api, ENDPOINTS, seq).await?;
    }
    let parked_on_b = held_by(&b_addr).await?;
    assert!(parked_on_b > 0, "some endpoints' new work went to B");

    // B dies holding that parked work. Once its lease expires A owns every
    // slot again but waits for B; it parks what comes meanwhile: seqs 5-6.
    b.kill9();
    wait_cluster(&mut c.api, "A owning all slots, waiting for B", |cl| {
        slots_of(cl, &a_id) == cl.slot_count && cl.awaited_dead_agents_until_ms.contains_key(&b_id)
    })
    .await?;
    for seq in 5..7 {
        publish_round(&mut c.api, ENDPOINTS, seq).await?;
    }

    // B returns within the wait and takes its slots back: A must hand it
    // its queue and its parked work, and B merge them with its own.
    b.restart()?;
    wait_cluster(&mut c.api, "B owning slots again", |cl| {
        slots_of(cl, &b_id) > 0
    })
    .await?;
    receiver.release();
    ordering::wait_all(&receiver, ENDPOINTS, 7, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dups = ordering::assert_in_order(&seqs_by_path(&receiver.received()));
    eprintln!(
        "{parked_on_b} deliveries parked on B when it died; every endpoint in order, {dups} duplicates"
    );
    c.agent.kill9();
    b.kill9();
    Ok(())
}

/// Whether `endpoint_id`'s slot goes A → B → C when A and then B die: A
/// owns it among all three, B among the two left.
fn follows_the_chain(endpoint_id: &str, a: &str, b: &str, c: &str) -> bool {
    use herald_shared::slot::{SLOT_COUNT, assign, slot_for};
    let slot = slot_for(endpoint_id, SLOT_COUNT) as usize;
    let three = [a.to_string(), b.to_string(), c.to_string()];
    let two = [b.to_string(), c.to_string()];
    assign(&three, SLOT_COUNT)[slot] == 0 && assign(&two, SLOT_COUNT)[slot] == 0
}

/// The chaos run's case: a slot's owner A dies; B, its next owner, parks
/// newer events for it and dies; C parks the next ones; A returns and gets
/// C's batch before B's (B is still down), then B's when B returns. The
/// stamps put it all back in publish order. Endpoints are created until
/// several follow exactly that chain, so the case is there on every run.
#[tokio::test(flavor = "multi_thread")]
async fn a_slot_passed_through_a_chain_of_dying_owners_keeps_one_order() -> anyhow::Result<()> {
    let receiver = Receiver::start().await;
    let mut c = Cluster::start().await?;
    let mut b = Agent::start(&c.etcd, &[&c.cp], &[])?;
    let mut third = Agent::start(&c.etcd, &[&c.cp], &[])?;
    let (a_id, b_id, c_id) = (agent_id(&c.agent)?, agent_id(&b)?, agent_id(&third)?);
    wait_cluster(&mut c.api, "three agents settled", |cl| {
        cl.agents.iter().filter(|a| a.slots > 0).count() == 3 && cl.handoffs_in_progress == 0
    })
    .await?;
    // Queued, not delivered, until the end: nothing is attempted while
    // the slots move, so only the handoffs decide the order.
    c.api.tenant("acme").await?;
    let mut endpoints = Vec::new();
    let mut in_chain = 0;
    while in_chain < 4 {
        anyhow::ensure!(endpoints.len() < 300, "the chain never came up");
        let ep = create_endpoint(&mut c.api, &receiver, endpoints.len() as u64, false).await?;
        in_chain += usize::from(follows_the_chain(&ep.id, &a_id, &b_id, &c_id));
        endpoints.push(ep);
    }
    let n = endpoints.len() as u64;
    let mut seq = 0;
    let mut round = |api: &mut Clients| {
        seq += 1;
        let s = seq - 1;
        let mut api = api.clone();
        async move { publish_round(&mut api, n, s).await }
    };
    round(&mut c.api).await?;
    round(&mut c.api).await?;

    c.agent.kill9();
    wait_cluster(&mut c.api, "A's slots given away, A waited for", |cl| {
        slots_of(cl, &a_id) == 0 && cl.awaited_dead_agents_until_ms.contains_key(&a_id)
    })
    .await?;
    round(&mut c.api).await?;
    round(&mut c.api).await?;

    b.kill9();
    wait_cluster(
        &mut c.api,
        "C owning everything, A and B waited for",
        |cl| {
            slots_of(cl, &c_id) == cl.slot_count
                && cl.awaited_dead_agents_until_ms.contains_key(&a_id)
                && cl.awaited_dead_agents_until_ms.contains_key(&b_id)
        },
    )
    .await?;
    round(&mut c.api).await?;
    round(&mut c.api).await?;

    c.agent.restart()?;
    wait_cluster(&mut c.api, "A owning slots again", |cl| {
        slots_of(cl, &a_id) > 0
    })
    .await?;
    round(&mut c.api).await?;
    round(&mut c.api).await?;

    b.restart()?;
    wait_cluster(&mut c.api, "every handoff done", |cl| {
        slots_of(cl, &b_id) > 0
            && cl.handoffs_in_progress == 0
            && cl.awaited_dead_agents_until_ms.is_empty()
    })
    .await?;
    round(&mut c.api).await?;
    for ep in &endpoints {
        c.api.enable(ep).await?;
    }
    ordering::wait_all(&receiver, n, seq, Duration::from_secs(60)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dups = ordering::assert_in_order(&seqs_by_path(&receiver.received()));
    eprintln!(
        "{n} endpoints ({in_chain} through the chain A → B → C → A), {seq} events each: in order, {dups} duplicates"
    );
    assert_eq!(dups, 0, "nothing was attempted before the end");
    c.agent.kill9();
    b.kill9();
    third.kill9();
    Ok(())
}
