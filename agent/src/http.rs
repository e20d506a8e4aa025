//! One delivery attempt over HTTP: render the envelope, sign it, send it,
//! classify the answer.

use std::sync::Arc;
use std::time::Duration;

use herald_proto::v1 as pb;
use herald_shared::envelope::{ActorRef, Envelope, ResourceRef, rfc3339_ms};
use herald_shared::signing;
use serde_json::value::RawValue;

use tracing::Instrument as _;

use crate::auth::History;
use crate::egress::{Guard, GuardedResolver};

/// Most response body bytes read (the rest is dropped with the connection).
const MAX_RESPONSE_BODY: usize = 64 * 1024;
/// What the attempt log shows instead of a secret header value.
pub const REDACTED: &str = "[redacted]";

/// How an attempt ended, for the retry logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx answer.
    Delivered {
        /// The status code.
        status: u16,
    },
    /// Anything else: a non-2xx status, a timeout, a connection error.
    Failed {
        /// The status code, when the receiver answered.
        status: Option<u16>,
        /// What went wrong.
        error: String,
        /// The receiver's `Retry-After` (on 429 and 503), in seconds form.
        retry_after: Option<Duration>,
    },
}

/// One attempt: its outcome and what the attempt log keeps of it.
#[derive(Debug, Clone)]
pub struct Attempted {
    /// For the retry logic.
    pub outcome: Outcome,
    /// For the attempt log (its `number` is left for the caller).
    pub record: pb::Attempt,
}

/// The agent's HTTP clients: pooled keep-alive connections, no redirects
/// (a redirect could point anywhere, the guard's checks included), no
/// proxy from the environment, bounded connect time, and every name
/// resolved through the egress guard. Cheap to clone.
#[derive(Clone)]
pub struct Clients {
    strict: reqwest::Client,
    /// For endpoints with `insecure_tls`: certificates are not verified.
    insecure: reqwest::Client,
    guard: Arc<Guard>,
}

impl Clients {
    /// Clients that deliver only where `guard` allows, keeping up to
    /// `max_idle` idle connections per host: as many as requests can be in
    /// flight, so a busy host's connections are reused, not churned.
    pub fn new(guard: Guard, max_idle: usize) -> reqwest::Result<Self> {
        let guard = Arc::new(guard);
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(Arc::new(GuardedResolver(guard.clone())))
                .danger_accept_invalid_certs(insecure)
                .connect_timeout(Duration::from_secs(5))
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(max_idle)
                .tcp_nodelay(true)
                .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")))
                .build()
        };
        Ok(Clients {
            strict: build(false)?,
            insecure: build(true)?,
            guard,
        })
    }

    fn for_endpoint(&self, ep: &pb::DeliveryEndpoint) -> &reqwest::Client {
        if ep.insecure_tls {
            &self.insecure
        } else {
            &self.strict
        }
    }
}

/// The request body for `chunk`: one envelope, or (when the endpoint takes
/// chunks) a JSON array of envelopes in queue order; empty for GET.
pub fn body(ep: &pb::DeliveryEndpoint, chunk: &[&pb::Delivery]) -> Vec<u8> {
    if ep.use_get {
        return Vec::new();
    }
    if ep.chunk_size <= 1
        && let [d] = chunk
    {
        return envelope(ep, d);
    }
    let mut out = Vec::with_capacity(chunk.iter().map(|d| d.payload_json.len() + 256).sum());
    out.push(b'[');
    for (i, d) in chunk.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&envelope(ep, d));
    }
    out.push(b']');
    out
}

/// The `webhook-id` of a request: the event id, or for a request carrying
/// several events an id derived from theirs (the same events, the same id).
pub fn message_id(chunk: &[&pb::Delivery]) -> String {
    match chunk {
        [d] => d.event_id.clone(),
        _ => {
            use sha2::Digest as _;
            let mut h = sha2::Sha256::new();
            for d in chunk {
                h.update(d.event_id.as_bytes());
                h.update(b"\n");
            }
            let digest = h.finalize();
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("chunk_{hex}")
        }
    }
}

/// One event's envelope.
fn envelope(ep: &pb::DeliveryEndpoint, d: &pb::Delivery) -> Vec<u8> {
    let data = RawValue::from_string(d.payload_json.clone()).unwrap_or_else(|e| {
        // The control plane validated it; a bad one here is a bug, not a reason to stall.
        tracing::error!(event = %d.event_id, error = %e, "stored payload is not JSON; sending null");
        RawValue::NULL.to_owned()
    });
    let custom = (!ep.custom_data_json.is_empty())
        .then(|| RawValue::from_string(ep.custom_data_json.clone()).ok())
        .flatten();
    Envelope {
        id: &d.event_id,
        event_type: &d.event_type,
        timestamp: rfc3339_ms(d.occurred_at_ms),
        tenant_id: &d.tenant_id,
        resource: d.resource.as_ref().map(|r| ResourceRef {
            kind: &r.r#type,
            id: &r.id,
        }),
        actor: d.actor.as_ref().map(|a| ActorRef {
            kind: &a.r#type,
            id: &a.id,
            name: &a.name,
        }),
        data: &data,
        custom_data: custom.as_deref(),
    }
    .to_bytes()
}

/// Sends one attempt carrying `chunk` (one event unless the endpoint takes
/// chunks), classifies the result and records what was sent and received;
/// at most `body_limit` bytes of the response body are kept.
///
/// The attempt is an OpenTelemetry client span (HTTP semantic conventions
/// plus Herald's attributes) whose parent is the trace context stored with
/// the chunk's first delivery, so it joins the publish's trace however
/// late it runs; the receiver gets its `traceparent`.
pub async fn attempt(
    clients: &Clients,
    ep: &pb::DeliveryEndpoint,
    chunk: &[&pb::Delivery],
    history: History,
    body_limit: usize,
    number: u32,
) -> Attempted {
    let method = if ep.use_get { "GET" } else { "POST" };
    let url = reqwest::Url::parse(&ep.url).ok();
    // The chunk's first delivery names the attempt and carries its trace.
    let head = chunk.first().copied();
    let event_id = head.map_or("", |d| d.event_id.as_str());
    let span = tracing::info_span!(
        "attempt",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        url.full = %loggable_url(&ep.url),
        server.address = url.as_ref().and_then(|u| u.host_str()).unwrap_or(""),
        server.port = url.as_ref().and_then(|u| u.port_or_known_default()).unwrap_or(0),
        http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        herald.event_id = %event_id,
        herald.endpoint_id = %ep.id,
        herald.tenant_id = %ep.tenant_id,
        herald.attempt = number,
        herald.chunk_size = chunk.len(),
        trace_id = tracing::field::Empty,
    );
    if let Some(d) = head {
        herald_shared::telemetry::continue_trace(&span, &d.traceparent, &d.tracestate);
    }
    let trace = herald_shared::telemetry::context_of(&span);
    let done = send(clients, ep, chunk, history, body_limit, trace)
        .instrument(span.clone())
        .await;
    if done.record.response_status > 0 {
        span.record("http.response.status_code", done.record.response_status);
    }
    if let Outcome::Failed { status, .. } = &done.outcome {
        let kind = match status {
            Some(code) => code.to_string(),
            None => error_kind_label(done.record.error_kind()).to_string(),
        };
        span.record("error.type", kind.as_str());
        span.record("otel.status_code", "ERROR");
    }
    done
}

/// [`attempt`] without its span; `trace` is the (traceparent, tracestate)
/// to send.
async fn send(
    clients: &Clients,
    ep: &pb::DeliveryEndpoint,
    chunk: &[&pb::Delivery],
    history: History,
    body_limit: usize,
    trace: (String, String),
) -> Attempted {
    let started_at_ms = herald_shared::time::now_ms();
    let started = std::time::Instant::now();
    let mut record = pb::Attempt {
        started_at_ms,
        method: if ep.use_get { "GET" } else { "POST" }.into(),
        url: loggable_url(&ep.url),
        ..Default::default()
    };
    let failed = |mut record: pb::Attempt, kind: pb::ErrorKind, error: String| {
        record.duration_ms = elapsed_ms(started);
        record.error_kind = kind as i32;
        record.error = error.clone();
        Attempted {
            outcome: Outcome::Failed {
                status: None,
                error,
                retry_after: None,
            },
            record,
        }
    };
    let client = clients.for_endpoint(ep);
    let request = match build_request(client, ep, chunk, history, started_at_ms, trace) {
        Ok(r) => r,
        Err(e) => return failed(record, pb::ErrorKind::Other, e),
    };
    if let Err(blocked) = clients.guard.check_url(request.url()) {
        return failed(record, pb::ErrorKind::Blocked, blocked.0);
    }
    record.request_headers = request
        .headers()
        .iter()
        .map(|(k, v)| {
            let secret = k == reqwest::header::AUTHORIZATION || ep.headers.contains_key(k.as_str());
            let value = if secret {
                REDACTED.to_string()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (k.as_str().to_string(), value)
        })
        .collect();

    let mut resp = match client.execute(request).await {
        Ok(r) => r,
        Err(e) => {
            let (kind, text) = classify(&e);
            return failed(record, kind, text);
        }
    };
    let status = resp.status().as_u16();
    record.response_status = u32::from(status);
    for (k, v) in resp.headers() {
        let v = String::from_utf8_lossy(v.as_bytes());
        record
            .response_headers
            .entry(k.as_str().to_string())
            .and_modify(|old| {
                old.push_str(", ");
                old.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    let retry_after = matches!(status, 429 | 503)
        .then(|| resp.headers().get("retry-after"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    // Read a bounded body (so the connection can be reused) and keep its start.
    let mut kept = Vec::new();
    let mut read = 0usize;
    while let Ok(Some(c)) = resp.chunk().await {
        read += c.len();
        let room = body_limit.saturating_sub(kept.len());
        kept.extend_from_slice(&c[..c.len().min(room)]);
        if read > MAX_RESPONSE_BODY {
            break;
        }
    }
    record.response_body_truncated = read > kept.len();
    record.response_body = String::from_utf8_lossy(&kept).into_owned();
    record.duration_ms = elapsed_ms(started);
    let outcome = if (200..300).contains(&status) {
        Outcome::Delivered { status }
    } else {
        record.error_kind = pb::ErrorKind::Status as i32;
        record.error = format!("status {status}");
        Outcome::Failed {
            status: Some(status),
            error: record.error.clone(),
            retry_after,
        }
    };
    Attempted { outcome, record }
}

/// The signed, authenticated request for one attempt made at `now_ms`.
/// Public for the API edge's property test: whatever the control plane
/// accepts, this must build.
pub fn build_request(
    client: &reqwest::Client,
    ep: &pb::DeliveryEndpoint,
    chunk: &[&pb::Delivery],
    history: History,
    now_ms: i64,
    (traceparent, tracestate): (String, String),
) -> Result<reqwest::Request, String> {
    let timestamp = now_ms / 1000;
    let body = body(ep, chunk);
    let msg_id = message_id(chunk);
    // The current secret, then the previous ones still inside their overlap.
    let secrets: Vec<String> = ep
        .signing_secrets
        .iter()
        .cloned()
        .chain(
            ep.previous_signing_secrets
                .iter()
                .filter(|p| p.expires_at_ms > now_ms)
                .map(|p| p.secret.clone()),
        )
        .collect();
    let mut req = if ep.use_get {
        client.get(&ep.url)
    } else {
        client
            .post(&ep.url)
            .header("content-type", "application/json")
    };
    for (k, v) in &ep.headers {
        req = req.header(k, v);
    }
    if !ep.omit_standard_signature {
        let signature = signing::signature_header(&secrets, &msg_id, timestamp, &body)
            .map_err(|e| format!("signing: {e}"))?;
        req = req
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature);
    }
    if let Some(b) = &ep.body_signature {
        let base64 = b.encoding == pb::SignatureEncoding::Base64 as i32;
        req = req.header(&b.header, signing::body_signature(&secrets, &body, base64));
    }
    if let Some(value) = crate::auth::header(ep, chunk, history, now_ms)? {
        req = req.header(reqwest::header::AUTHORIZATION, value);
    }
    if !traceparent.is_empty() {
        req = req.header("traceparent", traceparent);
        if !tracestate.is_empty() {
            req = req.header("tracestate", tracestate);
        }
    }
    if !ep.use_get {
        req = req.body(body);
    }
    req.timeout(Duration::from_millis(u64::from(ep.timeout_ms.max(100))))
        .build()
        // reqwest's text would hold the URL; say only what kind of problem it was.
        .map_err(|e| format!("cannot build the request: {}", classify(&e).1))
}

/// A short name of an error kind, for error texts and `error.type`.
fn error_kind_label(kind: pb::ErrorKind) -> &'static str {
    match kind {
        pb::ErrorKind::Timeout => "timeout",
        pb::ErrorKind::Tls => "tls",
        pb::ErrorKind::Dns => "dns",
        pb::ErrorKind::Connect => "connect",
        pb::ErrorKind::Blocked => "blocked",
        _ => "request",
    }
}

/// Whether `e` is a rustls error, possibly inside (nested) I/O errors, as
/// the TLS stack hands it up.
fn is_rustls(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.downcast_ref::<rustls::Error>().is_some() {
        return true;
    }
    match e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => is_rustls(inner),
        None => false,
    }
}

fn elapsed_ms(since: std::time::Instant) -> u32 {
    u32::try_from(since.elapsed().as_millis()).unwrap_or(u32::MAX)
}

/// The URL without user info, which may hold a password.
fn loggable_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => String::new(),
    }
}

/// `Retry-After` as delay-seconds. (The HTTP-date form is rare from
/// webhook receivers and is ignored: the schedule applies.)
fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The kind of a transport error and a description of it. The causes are
/// walked rather than `e` printed, as its text holds the URL and so may
/// leak a token in its query.
fn classify(e: &reqwest::Error) -> (pb::ErrorKind, String) {
    let mut text = String::new();
    let mut tls = false;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        tls |= is_rustls(s);
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&s.to_string());
        source = s.source();
    }
    let kind = if crate::egress::is_blocked(e) {
        pb::ErrorKind::Blocked
    } else if e.is_timeout() {
        pb::ErrorKind::Timeout
    } else if tls {
        pb::ErrorKind::Tls
    } else if text.contains("dns error") {
        pb::ErrorKind::Dns
    } else if e.is_connect() {
        pb::ErrorKind::Connect
    } else {
        pb::ErrorKind::Other
    };
    let label = error_kind_label(kind);
    if text.is_empty() {
        (kind, label.to_string())
    } else {
        (kind, format!("{label}: {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 5 "), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    /// A resolver that knows no name, as DNS answers NXDOMAIN: no packet
    /// leaves the machine.
    struct NoSuchName;

    impl reqwest::dns::Resolve for NoSuchName {
        fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
            let name = name.as_str().to_string();
            Box::pin(async move { Err(format!("no such name: {name}").into()) })
        }
    }

    /// D9: a name that does not resolve is a `dns` error, through the
    /// same reqwest error chain the agent's clients (their resolver is
    /// [`crate::egress::GuardedResolver`]) produce; the URL's query stays
    /// out of the text.
    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_a_dns_error() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(std::sync::Arc::new(NoSuchName))
            .build()
            .expect("client");
        let e = client
            .post("http://hooks.example.invalid/in?token=s3cret")
            .send()
            .await
            .expect_err("nothing resolves");
        let (kind, text) = classify(&e);
        assert_eq!(kind, pb::ErrorKind::Dns, "{text}");
        assert!(text.starts_with("dns: "), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
    }

    #[test]
    fn logged_urls_carry_no_password() {
        assert_eq!(
            loggable_url("https://user:pw@example.com/hook?x=1"),
            "https://example.com/hook?x=1"
        );
        assert_eq!(loggable_url("not a url"), "");
    }
}
