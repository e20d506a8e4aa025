//! One delivery attempt over HTTP: render the envelope, sign it, send it,
//! classify the answer.

use std::time::Duration;

use herald_proto::v1 as pb;
use herald_shared::envelope::{ActorRef, Envelope, ResourceRef, rfc3339_ms};
use herald_shared::signing;
use serde_json::value::RawValue;

/// Most response body bytes read (the rest is dropped with the connection).
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// How an attempt ended.
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

/// Sends one attempt and classifies the result.
pub async fn attempt(
    client: &reqwest::Client,
    ep: &pb::DeliveryEndpoint,
    d: &pb::Delivery,
) -> Outcome {
    let timestamp = herald_shared::time::now_ms() / 1000;
    let body = if ep.use_get { Vec::new() } else { body(ep, d) };
    let signature =
        match signing::signature_header(&ep.signing_secrets, &d.event_id, timestamp, &body) {
            Ok(s) => s,
            Err(e) => {
                return Outcome::Failed {
                    status: None,
                    error: format!("signing: {e}"),
                    retry_after: None,
                };
            }
        };
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
    req = req
        .header("webhook-id", &d.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .timeout(Duration::from_millis(u64::from(ep.timeout_ms.max(100))));

    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Failed {
                status: None,
                error: error_text(&e),
                retry_after: None,
            };
        }
    };
    let status = resp.status().as_u16();
    let retry_after = matches!(status, 429 | 503)
        .then(|| resp.headers().get("retry-after"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    // Read a bounded body so the connection can be reused.
    let mut read = 0usize;
    while let Ok(Some(c)) = resp.chunk().await {
        read += c.len();
        if read > MAX_RESPONSE_BODY {
            break;
        }
    }
    if (200..300).contains(&status) {
        Outcome::Delivered { status }
    } else {
        Outcome::Failed {
            status: Some(status),
            error: format!("status {status}"),
            retry_after,
        }
    }
}

/// `Retry-After` as delay-seconds. (The HTTP-date form is rare from
/// webhook receivers and is ignored: the schedule applies.)
fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn error_text(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    // Walk the causes rather than print `e`, whose text holds the URL and
    // so may leak a token in its query.
    let mut text = kind.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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
}
