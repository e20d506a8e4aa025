//! Store micro-benchmark: what the agent's durable store costs per delivery,
//! without HTTP, gRPC or the control plane.
//!
//! `cargo bench -p herald-agent --bench store [-- EVENTS [ENDPOINTS [CONCURRENCY]]]`
//!
//! Two phases on a fresh store in a temp dir, run back to back:
//! - **live**: CONCURRENCY publisher tasks each insert one delivery at a
//!   time (to endpoint n % ENDPOINTS) and wake that endpoint's worker,
//!   which takes it from its queue and records its success; like an agent
//!   under publish load.
//! - **drain**: the same number of deliveries are inserted first (in batches
//!   of 100), then read and marked succeeded endpoint by endpoint, like an
//!   agent draining a backlog.
//!
//! Then the time to reopen a store holding EVENTS queued deliveries.
//!
//! For each it prints deliveries per second and the process's CPU time per
//! delivery (all threads), and the ratio of live to drain rate. Figures from
//! one run are comparable with each other; across runs, compare ratios.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald_agent::store::Store;
use herald_proto::v1 as pb;
use tokio::sync::Notify;

fn cpu() -> Duration {
    // utime + stime of the whole process, from /proc (ticks of 10 ms).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Bytes the process has written to files and sockets (`wchar`).
fn written() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn delivery(n: u64, endpoints: u64, pad: &str) -> pb::Delivery {
    pb::Delivery {
        endpoint_id: format!("ep_{:05}", n % endpoints),
        tenant_id: "bench".into(),
        event_id: format!("evt_{n:010}"),
        event_type: "t.created".into(),
        payload_json: format!(r#"{{"seq":{n},"pad":"{pad}"}}"#),
        slot: (n % endpoints) as u32,
        ..Default::default()
    }
}

fn success() -> pb::Attempt {
    pb::Attempt {
        started_at_ms: herald_shared::time::now_ms(),
        response_status: 200,
        duration_ms: 1,
        ..Default::default()
    }
}

struct Phase {
    name: &'static str,
    events: u64,
    wall: Duration,
    cpu: Duration,
    written: u64,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.events as f64 / self.wall.as_secs_f64()
    }

    fn print(&self) {
        println!(
            "{:<6} {:>8} deliveries  {:>9.0}/s  {:>6.1} µs CPU  {:>5.1} KiB written each",
            self.name,
            self.events,
            self.rate(),
            self.cpu.as_secs_f64() * 1e6 / self.events as f64,
            self.written as f64 / 1024.0 / self.events as f64
        );
    }
}

/// One endpoint's worker, as the dispatcher runs it: reads its queue (in
/// memory; the records from the log) after the last position it took.
async fn worker(store: Store, ep: String, wake: Arc<Notify>, left: Arc<AtomicU64>) {
    let mut after = 0;
    while left.load(Ordering::Acquire) > 0 {
        let batch = store.pending(&ep, after, 64).expect("read");
        if batch.is_empty() {
            // Woken by the publishers, or now and then to see if all is done.
            let _ = tokio::time::timeout(Duration::from_millis(50), wake.notified()).await;
            continue;
        }
        for item in batch {
            after = item.position;
            store.record_success(item.seq, success()).await;
            left.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

async fn live(
    name: &'static str,
    store: &Store,
    events: u64,
    endpoints: u64,
    concurrency: u64,
) -> Phase {
    let next = Arc::new(AtomicU64::new(0));
    let left = Arc::new(AtomicU64::new(events));
    let pad = "x".repeat(200);
    let wakes: Arc<Vec<Arc<Notify>>> =
        Arc::new((0..endpoints).map(|_| Arc::new(Notify::new())).collect());
    let workers: Vec<_> = (0..endpoints)
        .map(|e| {
            tokio::spawn(worker(
                store.clone(),
                format!("ep_{e:05}"),
                wakes[e as usize].clone(),
                left.clone(),
            ))
        })
        .collect();
    let (t0, c0, w0) = (Instant::now(), cpu(), written());
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (store, next, pad, wakes) = (store.clone(), next.clone(), pad.clone(), wakes.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= events {
                    return;
                }
                store
                    .insert(vec![delivery(n, endpoints, &pad)])
                    .await
                    .expect("insert");
                wakes[(n % endpoints) as usize].notify_one();
            }
        }));
    }
    for t in tasks.into_iter().chain(workers) {
        t.await.expect("task");
    }
    store.sync().await.expect("sync");
    Phase {
        name,
        events,
        wall: t0.elapsed(),
        cpu: cpu() - c0,
        written: written() - w0,
    }
}

/// Stores `events` deliveries in batches of 100: a backlog.
async fn fill(store: &Store, events: u64, endpoints: u64) {
    let pad = "x".repeat(200);
    for chunk in (0..events).collect::<Vec<_>>().chunks(100) {
        let ds = chunk
            .iter()
            .map(|n| delivery(*n, endpoints, &pad))
            .collect();
        store.insert(ds).await.expect("insert");
    }
}

async fn drain(store: &Store, events: u64, endpoints: u64) -> Phase {
    fill(store, events, endpoints).await;
    let (t0, c0, w0) = (Instant::now(), cpu(), written());
    let mut tasks = Vec::new();
    for e in 0..endpoints {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let ep = format!("ep_{e:05}");
            let mut after = 0;
            loop {
                let q = store.pending(&ep, after, 64).expect("read");
                if q.is_empty() {
                    return;
                }
                for item in q {
                    after = item.position;
                    store.record_success(item.seq, success()).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    store.sync().await.expect("sync");
    Phase {
        name: "drain",
        events,
        wall: t0.elapsed(),
        cpu: cpu() - c0,
        written: written() - w0,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; take the numbers only.
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let events = args.first().copied().unwrap_or(20_000);
    let endpoints = args.get(1).copied().unwrap_or(1_000);
    let concurrency = args.get(2).copied().unwrap_or(32);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        println!(
            "store bench: {events} deliveries, {endpoints} endpoints, {concurrency} concurrent"
        );
        let l = live("live", &store, events, endpoints, concurrency).await;
        l.print();
        let dir2 = tempfile::tempdir().expect("temp dir");
        let store2 = Store::open(dir2.path()).expect("open");
        let d = drain(&store2, events, endpoints).await;
        d.print();
        // Restart on a backlog: the time to replay the log.
        let dir3 = tempfile::tempdir().expect("temp dir");
        fill(&Store::open(dir3.path()).expect("open"), events, endpoints).await;
        let t0 = Instant::now();
        let reopened = loop {
            // The writer lets go of the store once the last handle drops.
            match Store::open(dir3.path()) {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        };
        println!(
            "reopen with {} queued: {:.0} ms",
            reopened.queue_len().expect("len"),
            t0.elapsed().as_secs_f64() * 1e3
        );
        println!("live / drain rate: {:.3}", l.rate() / d.rate());
    });
}
