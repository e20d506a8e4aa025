//! A real HTTP receiver for tests: records every request and answers with
//! a status the test controls, and a body `request {n}: answered {status}`
//! (n counts requests from 1).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    /// HTTP method.
    pub method: Method,
    /// Path and query.
    pub uri: Uri,
    /// Request headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Bytes,
    /// When it arrived.
    pub at: Instant,
    /// The status the receiver answered with.
    pub answered: u16,
}

impl Received {
    /// Whether the receiver accepted it (answered 2xx).
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.answered)
    }
}

impl Received {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("body is JSON")
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    status: AtomicU16,
    /// Answers for the next requests, before `status` applies again:
    /// (status, Retry-After seconds).
    script: Mutex<std::collections::VecDeque<(u16, Option<u64>)>>,
    /// Requests whose envelope has this `data.seq` get 500.
    failing_seq: Mutex<Option<u64>>,
    /// How long to wait before answering, in ms.
    delay_ms: AtomicU64,
    /// While true, requests wait (unanswered and unrecorded) for release.
    hold: tokio::sync::watch::Sender<bool>,
    /// Requests waiting for release.
    held: AtomicUsize,
    /// (share of requests answered 500, state of the generator choosing
    /// them): a receiver that fails at random, reproducibly for a seed.
    flaky: Mutex<Option<(f64, u64)>>,
    /// A `Location` header on every answer (for redirects).
    location: Mutex<Option<String>>,
    /// Bytes of padding (`.`) after every answer's body.
    pad: AtomicUsize,
    /// Requests being answered (held, delayed or not) now, and the most at
    /// once since the start.
    in_progress: AtomicUsize,
    peak: AtomicUsize,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts on a port the OS picks, answering 200.
    pub async fn start() -> Receiver {
        Self::start_on(0).await
    }

    /// Starts on `port` (0: any), answering 200.
    pub async fn start_on(port: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        let shared = Arc::new(Shared {
            status: AtomicU16::new(200),
            ..Default::default()
        });
        let app = axum::Router::new()
            .fallback(record)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, shared, task }
    }

    /// URL of a path on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Makes every following request get `status`.
    pub fn set_status(&self, status: u16) {
        self.shared.status.store(status, Ordering::SeqCst);
    }

    /// The next requests get these answers, in order: (status, optional
    /// Retry-After seconds); then `set_status`'s status again.
    pub fn script(&self, answers: &[(u16, Option<u64>)]) {
        self.shared
            .script
            .lock()
            .expect("lock")
            .extend(answers.iter().copied());
    }

    /// Waits this long before answering each request.
    pub fn set_delay(&self, d: Duration) {
        self.shared
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Makes requests wait, unanswered, until [`Receiver::release`]: an
    /// attempt stays in progress as long as the test needs.
    pub fn hold(&self) {
        self.shared.hold.send_replace(true);
    }

    /// Lets held requests (and every later one) through.
    pub fn release(&self) {
        self.shared.hold.send_replace(false);
    }

    /// Requests waiting for release now.
    pub fn held(&self) -> usize {
        self.shared.held.load(Ordering::SeqCst)
    }

    /// Answers 500 to about `share` of the requests from now on, chosen by
    /// a generator seeded with `seed` (the same seed, the same choices for
    /// the same sequence of requests).
    pub fn fail_share(&self, share: f64, seed: u64) {
        *self.shared.flaky.lock().expect("lock") = Some((share, seed | 1));
    }

    /// Answers 500 to every delivery of the event whose `data.seq` is `seq`.
    pub fn fail_seq(&self, seq: u64) {
        *self.shared.failing_seq.lock().expect("lock") = Some(seq);
    }

    /// Adds a `Location: url` header to every following answer (with a
    /// 3xx status, a redirect).
    pub fn set_location(&self, url: &str) {
        *self.shared.location.lock().expect("lock") = Some(url.to_string());
    }

    /// Pads every following answer's body with `n` more bytes.
    pub fn set_body_padding(&self, n: usize) {
        self.shared.pad.store(n, Ordering::SeqCst);
    }

    /// The most requests this receiver was answering at once.
    pub fn peak_in_progress(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().expect("lock").clone()
    }

    /// Waits until at least `n` requests arrived; returns them.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= n || Instant::now() >= deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until at least `n` requests are held; returns how many are.
    pub async fn wait_held(&self, n: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let held = self.held();
            if held >= n || Instant::now() >= deadline {
                return held;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn record(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, String) {
    let now = shared.in_progress.fetch_add(1, Ordering::SeqCst) + 1;
    shared.peak.fetch_max(now, Ordering::SeqCst);
    // Counted out even when the client gives up and the answer is dropped.
    struct Done<'a>(&'a AtomicUsize);
    impl Drop for Done<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _done = Done(&shared.in_progress);
    answer(&shared, method, uri, headers, body).await
}

async fn answer(
    shared: &Shared,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, String) {
    let mut hold = shared.hold.subscribe();
    if *hold.borrow_and_update() {
        shared.held.fetch_add(1, Ordering::SeqCst);
        let _ = hold.wait_for(|held| !held).await;
        shared.held.fetch_sub(1, Ordering::SeqCst);
    }
    let delay = shared.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let seq = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["data"]["seq"].as_u64());
    let flaky = shared
        .flaky
        .lock()
        .expect("lock")
        .as_mut()
        .is_some_and(|(share, x)| {
            // xorshift64
            *x ^= *x << 13;
            *x ^= *x >> 7;
            *x ^= *x << 17;
            (*x >> 11) as f64 / (1u64 << 53) as f64 <= *share
        });
    let (status, retry_after) =
        if flaky || (seq.is_some() && seq == *shared.failing_seq.lock().expect("lock")) {
            (500, None)
        } else {
            shared
                .script
                .lock()
                .expect("lock")
                .pop_front()
                .unwrap_or((shared.status.load(Ordering::SeqCst), None))
        };
    let n = {
        let mut received = shared.received.lock().expect("lock");
        received.push(Received {
            method,
            uri,
            headers,
            body,
            at: Instant::now(),
            answered: status,
        });
        received.len()
    };
    let mut out = HeaderMap::new();
    if let Some(secs) = retry_after {
        out.insert("retry-after", secs.into());
    }
    out.insert("x-receiver", "test".parse().expect("header value"));
    if let Some(url) = shared.location.lock().expect("lock").as_deref() {
        out.insert("location", url.parse().expect("header value"));
    }
    // The body names the request, so a test can match log entries to requests.
    let mut text = format!("request {n}: answered {status}");
    text.push_str(&".".repeat(shared.pad.load(Ordering::SeqCst)));
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        out,
        text,
    )
}
