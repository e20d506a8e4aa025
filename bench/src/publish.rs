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
    /// The plan of a run's settings.
    pub fn of(p: &crate::params::Params) -> Plan {
        Plan {
            events: p.events,
            endpoints: p.endpoints,
            concurrency: p.concurrency,
            batch: p.batch_size,
            rate: p.rate,
            payload_bytes: p.payload_bytes,
        }
    }

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

/// The control plane's JSON API, for `--http` runs: the same calls as
/// gRPC, as a publisher without a gRPC stack makes them.
#[derive(Clone)]
pub struct HttpApi {
    base: String,
    key: String,
    client: reqwest::Client,
}

impl HttpApi {
    /// The API at `base` (`http://host:port`) with `key`.
    pub fn new(base: String, key: String) -> Self {
        HttpApi {
            base,
            key,
            client: reqwest::Client::new(),
        }
    }

    /// POSTs `req` to `method`; the answer, or the error's code and message.
    async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        req: &Req,
    ) -> anyhow::Result<Result<Resp, (String, String)>> {
        let resp = self
            .client
            .post(format!(
                "{}/api/herald.v1.PublishService/{method}",
                self.base
            ))
            .header("authorization", format!("Bearer {}", self.key))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(req)?)
            .send()
            .await?;
        let ok = resp.status().is_success();
        let body = resp.bytes().await?;
        if ok {
            return Ok(Ok(serde_json::from_slice(&body)?));
        }
        let e: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        Ok(Err((
            e["code"].as_str().unwrap_or("unknown").to_string(),
            e["message"].as_str().unwrap_or("").to_string(),
        )))
    }
}

/// How the publishers reach the control plane.
#[derive(Clone)]
pub struct Transport {
    /// gRPC clients (always there: setup uses them).
    pub grpc: Clients,
    /// The JSON API, when the run publishes over HTTP.
    pub http: Option<HttpApi>,
}

/// Publishes the plan; every event carries idempotency key `e{n}`, so a
/// retried call never duplicates.
pub async fn run(api: &Transport, plan: &Plan) -> anyhow::Result<Outcome> {
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
                retries += match (&api.http, batch) {
                    (Some(http), 1) => {
                        publish_one_http(http, reqs.into_iter().next().expect("one event")).await?
                    }
                    (Some(http), _) => publish_batch_http(http, reqs).await?,
                    (None, 1) => {
                        publish_one(&mut api.grpc, reqs.into_iter().next().expect("one event"))
                            .await?
                    }
                    (None, _) => publish_batch(&mut api.grpc, reqs).await?,
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

/// Whether a JSON API error (by its Connect code name) is worth a retry.
fn retryable_name(code: &str) -> bool {
    !matches!(
        code,
        "invalid_argument" | "not_found" | "failed_precondition"
    )
}

/// [`publish_one`] over the JSON API.
async fn publish_one_http(http: &HttpApi, req: pb::PublishRequest) -> anyhow::Result<u64> {
    let mut failed = 0;
    loop {
        match http.call::<_, pb::PublishResponse>("Publish", &req).await? {
            Ok(r) => {
                anyhow::ensure!(
                    r.endpoints_matched == 1,
                    "{} matched {} endpoints, not 1",
                    req.idempotency_key,
                    r.endpoints_matched
                );
                return Ok(failed);
            }
            Err((code, _)) if retryable_name(&code) && failed + 1 < MAX_ATTEMPTS => {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err((code, message)) => {
                anyhow::bail!(
                    "publish of {} failed: {code} {message}",
                    req.idempotency_key
                )
            }
        }
    }
}

/// [`publish_batch`] over the JSON API.
async fn publish_batch_http(
    http: &HttpApi,
    events: Vec<pb::PublishRequest>,
) -> anyhow::Result<u64> {
    let req = pb::PublishBatchRequest { events };
    let mut failed = 0;
    loop {
        let error = match http
            .call::<_, pb::PublishBatchResponse>("PublishBatch", &req)
            .await?
        {
            Ok(r) => match r.results.iter().find(|r| r.code != "OK") {
                None => return Ok(failed),
                Some(bad) if bad.code == "UNAVAILABLE" => format!("{}: {}", bad.code, bad.message),
                Some(bad) => anyhow::bail!("publish batch refused: {} {}", bad.code, bad.message),
            },
            Err((code, message)) if retryable_name(&code) => format!("{code}: {message}"),
            Err((code, message)) => anyhow::bail!("publish batch refused: {code} {message}"),
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
