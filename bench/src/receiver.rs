//! The built-in webhook receiver: answers 200 (after an optional delay) on
//! a keep-alive HTTP/1.1 server and records when each delivery arrived and
//! which sequence number it carried, per endpoint path.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use serde::Deserialize;

/// One delivery of a benchmark event to `/ep{endpoint}`.
#[derive(Debug, Clone, Copy)]
pub struct Arrival {
    /// The endpoint index from the path.
    pub endpoint: u32,
    /// The envelope's `data.seq` (the event's index in the run).
    pub seq: u64,
    /// When the request reached the handler.
    pub at: Instant,
}

/// Only the field the receiver needs from an envelope.
#[derive(Deserialize)]
struct Envelope {
    data: Data,
}

/// A body: one envelope, or a chunk (a JSON array of them).
#[derive(Deserialize)]
#[serde(untagged)]
enum Body {
    One(Envelope),
    Chunk(Vec<Envelope>),
}

#[derive(Deserialize)]
struct Data {
    seq: u64,
}

#[derive(Default)]
struct Shared {
    arrivals: Mutex<Vec<Arrival>>,
    /// Requests to `/ceiling` (the bare client), parsed like deliveries.
    ceiling: AtomicU64,
    /// Requests to `/warmup`.
    warmup: AtomicU64,
    /// Requests to `/ep{i}` (a chunk is one request for many deliveries).
    delivery_requests: AtomicU64,
    /// Requests that were not understood (unknown path, no `data.seq`).
    malformed: AtomicU64,
    /// Body bytes of the deliveries, to size the bare client's bodies alike.
    delivery_body_bytes: AtomicU64,
    delay: Duration,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts on a loopback port the OS picks, answering each request after
    /// `delay`.
    pub async fn start(delay: Duration) -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            delay,
            ..Default::default()
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { addr, shared, task })
    }

    /// URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// How many deliveries to `/ep{i}` arrived so far (duplicates included).
    pub fn delivered(&self) -> usize {
        self.shared.arrivals.lock().expect("lock").len()
    }

    /// Every delivery to `/ep{i}` so far, in arrival order.
    pub fn arrivals(&self) -> Vec<Arrival> {
        self.shared.arrivals.lock().expect("lock").clone()
    }

    /// Mean body size of the deliveries so far (0 when none).
    pub fn mean_delivery_body(&self) -> usize {
        let n = self.delivered() as u64;
        let bytes = self.shared.delivery_body_bytes.load(Ordering::Relaxed);
        bytes.checked_div(n).unwrap_or(0) as usize
    }

    /// Requests that carried deliveries so far.
    pub fn delivery_requests(&self) -> u64 {
        self.shared.delivery_requests.load(Ordering::Relaxed)
    }

    /// Requests the bare client made so far.
    pub fn ceiling_requests(&self) -> u64 {
        self.shared.ceiling.load(Ordering::Relaxed)
    }

    /// Requests to `/warmup` so far.
    pub fn warmups(&self) -> u64 {
        self.shared.warmup.load(Ordering::Relaxed)
    }

    /// Requests that were neither a delivery nor a ceiling or warm-up call.
    pub fn malformed(&self) -> u64 {
        self.shared.malformed.load(Ordering::Relaxed)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(s): State<Arc<Shared>>, uri: Uri, body: Bytes) -> StatusCode {
    let at = Instant::now();
    // The same parse for deliveries and the bare client, so both pay it.
    let seqs: Option<Vec<u64>> = serde_json::from_slice::<Body>(&body).ok().map(|b| match b {
        Body::One(e) => vec![e.data.seq],
        Body::Chunk(all) => all.into_iter().map(|e| e.data.seq).collect(),
    });
    let path = uri.path();
    match (path, seqs) {
        ("/warmup", _) => {
            s.warmup.fetch_add(1, Ordering::Relaxed);
        }
        ("/ceiling", Some(_)) => {
            s.ceiling.fetch_add(1, Ordering::Relaxed);
        }
        (p, Some(seqs)) => match p.strip_prefix("/ep").and_then(|i| i.parse().ok()) {
            Some(endpoint) => {
                s.delivery_body_bytes
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
                s.delivery_requests.fetch_add(1, Ordering::Relaxed);
                s.arrivals
                    .lock()
                    .expect("lock")
                    .extend(seqs.into_iter().map(|seq| Arrival { endpoint, seq, at }));
            }
            None => {
                s.malformed.fetch_add(1, Ordering::Relaxed);
            }
        },
        _ => {
            s.malformed.fetch_add(1, Ordering::Relaxed);
        }
    }
    if !s.delay.is_zero() {
        tokio::time::sleep(s.delay).await;
    }
    StatusCode::OK
}
