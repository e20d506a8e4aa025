//! The publishers: N events through `PublishService`, event n to endpoint
//! n % E (type `t{n % E}.created`), each endpoint owned by one publisher so
//! that its events are published one after another and their order is
//! defined. With a batch size above 1 a publisher sends its next events in
//! one `PublishBatch` call, whose deliveries are stored in request order.

use std::time::{Duration, Instant};

use herald_proto::v1 as pb;
use herald_tests::cluster::Clients;
use tonic::Code;

use crate::cluster::TENANT;

/// The most events `PublishBatch` takes in one call.
pub const MAX_BATCH: usize = 100;

/// What to publish and how fast.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Number of events.
    pub events: u64,
    /// Number of endpoints (event n goes to endpoint n % endpoints).
    pub endpoints: u64,
    /// Concurrent publishers (at most one per endpoint is useful).
    pub concurrency: usize,
    /// Events per call: 1 uses `Publish`, more use `PublishBatch`.
    pub batch: usize,
    /// Events per second over all publishers; None: as fast as possible.
    pub rate: Option<f64>,
    /// Size of each payload (`{"seq":n,"pad":"xx…"}`), bytes.
    pub payload_bytes: usize,
}

impl Plan {
    /// Publishers that get work: endpoint j belongs to publisher j % this.
    pub fn publishers(&self) -> usize {
        self.concurrency.clamp(1, self.endpoints.max(1) as usize)
    }
}

/// What the publishers saw.
#[derive(Debug)]
pub struct Outcome {
    /// When each event's first publish call started, indexed by event.
    pub started: Vec<Instant>,
    /// Calls made (a batch is one call).
    pub calls: u64,
    /// First call start to last call end.
    pub elapsed: Duration,
    /// Calls that failed and were retried (UNAVAILABLE and the like).
    pub retries: u64,
}

/// Gives up on a call after this many failures.
const MAX_ATTEMPTS: u64 = 20;

/// Publishes the plan; every event carries idempotency key `e{n}`, so a
/// retried call never duplicates.
pub async fn run(api: &Clients, plan: &Plan) -> anyhow::Result<Outcome> {
    let publishers = plan.publishers();
    let batch = plan.batch.clamp(1, MAX_BATCH);
    let pad = "x".repeat(plan.payload_bytes);
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..publishers {
        let (mut api, plan, pad) = (api.clone(), plan.clone(), pad.clone());
        tasks.spawn(async move {
            let mut started = Vec::new();
            let (mut calls, mut retries) = (0, 0);
            // Events of the endpoints this publisher owns, in order.
            let mine: Vec<u64> = (0..plan.events)
                .filter(|n| (n % plan.endpoints) as usize % publishers == p)
                .collect();
            for chunk in mine.chunks(batch) {
                if let Some(rate) = plan.rate {
                    let due = t0 + Duration::from_secs_f64(chunk[0] as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let at = Instant::now();
                let reqs: Vec<pb::PublishRequest> =
                    chunk.iter().map(|&n| request(&plan, &pad, n)).collect();
                retries += if batch == 1 {
                    publish_one(&mut api, reqs.into_iter().next().expect("one event")).await?
                } else {
                    publish_batch(&mut api, reqs).await?
                };
                calls += 1;
                started.extend(chunk.iter().map(|&n| (n, at)));
            }
            anyhow::Ok((started, calls, retries, Instant::now()))
        });
    }
    let mut started = vec![t0; plan.events as usize];
    let (mut calls, mut retries) = (0, 0);
    let mut last_end = t0;
    while let Some(r) = tasks.join_next().await {
        let (mine, c, r, end) = r??;
        for (n, at) in mine {
            started[n as usize] = at;
        }
        calls += c;
        retries += r;
        last_end = last_end.max(end);
    }
    Ok(Outcome {
        started,
        calls,
        elapsed: last_end - t0,
        retries,
    })
}

/// The request for event `n`.
fn request(plan: &Plan, pad: &str, n: u64) -> pb::PublishRequest {
    pb::PublishRequest {
        tenant_id: TENANT.into(),
        event_type: format!("t{}.created", n % plan.endpoints),
        payload_json: payload(n, plan.payload_bytes, pad),
        idempotency_key: format!("e{n}"),
        ..Default::default()
    }
}

/// Whether a failure is worth a retry with the same keys.
fn retryable(code: Code) -> bool {
    !matches!(
        code,
        Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition
    )
}

/// One event, retried on failure; returns how many calls failed.
async fn publish_one(api: &mut Clients, req: pb::PublishRequest) -> anyhow::Result<u64> {
    let mut failed = 0;
    loop {
        match api.publish.publish(req.clone()).await {
            Ok(r) => {
                let matched = r.into_inner().endpoints_matched;
                anyhow::ensure!(
                    matched == 1,
                    "{} matched {matched} endpoints, not 1",
                    req.idempotency_key
                );
                return Ok(failed);
            }
            Err(status) if retryable(status.code()) && failed + 1 < MAX_ATTEMPTS => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => anyhow::bail!("publish of {} failed: {status}", req.idempotency_key),
        }
    }
}

/// A batch, retried whole while any event in it is UNAVAILABLE (the keys
/// make stored ones duplicates the agent drops); returns failed calls.
async fn publish_batch(api: &mut Clients, events: Vec<pb::PublishRequest>) -> anyhow::Result<u64> {
    let req = pb::PublishBatchRequest { events };
    let mut failed = 0;
    loop {
        let error = match api.publish.publish_batch(req.clone()).await {
            Ok(r) => {
                let results = r.into_inner().results;
                match results.iter().find(|r| r.code != "OK") {
                    None => {
                        if let Some(r) = results.iter().find(|r| r.endpoints_matched != 1) {
                            anyhow::bail!(
                                "{} matched {} endpoints, not 1",
                                r.event_id,
                                r.endpoints_matched
                            );
                        }
                        return Ok(failed);
                    }
                    Some(bad) if bad.code == "UNAVAILABLE" => {
                        format!("{}: {}", bad.code, bad.message)
                    }
                    Some(bad) => {
                        anyhow::bail!("publish batch refused: {} {}", bad.code, bad.message)
                    }
                }
            }
            Err(status) if retryable(status.code()) => status.to_string(),
            Err(status) => anyhow::bail!("publish batch refused: {status}"),
        };
        failed += 1;
        anyhow::ensure!(
            failed < MAX_ATTEMPTS,
            "publish batch failed {failed} times: {error}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `{"seq":n,"pad":"xx…"}` of `size` bytes (longer only when `size` is
/// smaller than the JSON around the pad); `pad` holds at least `size` x's.
pub fn payload(n: u64, size: usize, pad: &str) -> String {
    let frame = format!(r#"{{"seq":{n},"pad":""}}"#).len();
    let pad = &pad[..size.saturating_sub(frame).min(pad.len())];
    format!(r#"{{"seq":{n},"pad":"{pad}"}}"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_asked_size() {
        let pad = "x".repeat(256);
        assert_eq!(payload(7, 256, &pad).len(), 256);
        assert_eq!(payload(123_456, 256, &pad).len(), 256);
        let tiny = payload(7, 1, &pad);
        assert_eq!(tiny, r#"{"seq":7,"pad":""}"#);
    }

    #[test]
    fn each_endpoint_has_one_publisher() {
        let plan = Plan {
            events: 10,
            endpoints: 3,
            concurrency: 8,
            batch: 1,
            rate: None,
            payload_bytes: 0,
        };
        assert_eq!(plan.publishers(), 3);
    }
}
