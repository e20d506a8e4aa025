//! One delivery attempt over HTTP: render the envelope, sign it, send it,
//! classify the answer.

use std::time::Duration;

use herald_proto::v1 as pb;
use herald_shared::envelope::{ActorRef, Envelope, ResourceRef, rfc3339_ms};
use herald_shared::signing;
use serde_json::value::RawValue;

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

/// Builds the shared HTTP client: pooled keep-alive connections, no
/// redirects (a redirect could point anywhere), bounded connect time.
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .user_agent(concat!("Herald/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The request body for one delivery to `ep`.
pub fn body(ep: &pb::DeliveryEndpoint, d: &pb::Delivery) -> Vec<u8> {
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

/// Sends one attempt, classifies the result and records what was sent and
/// received; at most `body_limit` bytes of the response body are kept.
pub async fn attempt(
    client: &reqwest::Client,
    ep: &pb::DeliveryEndpoint,
    d: &pb::Delivery,
    body_limit: usize,
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
    let request = match build_request(client, ep, d, started_at_ms / 1000) {
        Ok(r) => r,
        Err(e) => return failed(record, pb::ErrorKind::Other, e),
    };
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

/// The signed request for one attempt.
fn build_request(
    client: &reqwest::Client,
    ep: &pb::DeliveryEndpoint,
    d: &pb::Delivery,
    timestamp: i64,
) -> Result<reqwest::Request, String> {
    let body = if ep.use_get { Vec::new() } else { body(ep, d) };
    let signature = signing::signature_header(&ep.signing_secrets, &d.event_id, timestamp, &body)
        .map_err(|e| format!("signing: {e}"))?;
    let mut req = if ep.use_get {
        client.get(&ep.url)
    } else {
        client
            .post(&ep.url)
            .header("content-type", "application/json")
            .body(body)
    };
    for (k, v) in &ep.headers {
        req = req.header(k, v);
    }
    req.header("webhook-id", &d.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .timeout(Duration::from_millis(u64::from(ep.timeout_ms.max(100))))
        .build()
        // reqwest's text would hold the URL; say only what kind of problem it was.
        .map_err(|e| format!("cannot build the request: {}", classify(&e).1))
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
    let kind = if e.is_timeout() {
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
    let label = match kind {
        pb::ErrorKind::Timeout => "timeout",
        pb::ErrorKind::Tls => "tls",
        pb::ErrorKind::Dns => "dns",
        pb::ErrorKind::Connect => "connect",
        _ => "request",
    };
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

    #[test]
    fn logged_urls_carry_no_password() {
        assert_eq!(
            loggable_url("https://user:pw@example.com/hook?x=1"),
            "https://example.com/hook?x=1"
        );
        assert_eq!(loggable_url("not a url"), "");
    }
}
