//! The ceiling: a bare reqwest client (keep-alive, no Herald) posting
//! bodies of the deliveries' size to the same receiver, at the same
//! concurrency, to show what the receiver and this machine can take.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

/// The bare client's result.
#[derive(Debug, Clone, Copy)]
pub struct Ceiling {
    /// Requests made.
    pub requests: u64,
    /// Concurrent request loops.
    pub concurrency: usize,
    /// Body size, bytes.
    pub body_bytes: usize,
    /// Wall time of all requests.
    pub elapsed: Duration,
}

impl Ceiling {
    /// Requests per second.
    pub fn per_sec(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// Posts `requests` envelope-shaped bodies of about `body_bytes` to `url`
/// from `concurrency` loops sharing one keep-alive connection pool.
pub async fn run(
    url: &str,
    requests: u64,
    concurrency: usize,
    body_bytes: usize,
) -> anyhow::Result<Ceiling> {
    let concurrency = concurrency.max(1);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .context("build the bare HTTP client")?;
    let body = bytes_body(body_bytes);
    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next, url, body) =
            (client.clone(), next.clone(), url.to_string(), body.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "receiver answered {}", r.status());
                // Read the (empty) body so the connection goes back to the pool.
                r.bytes().await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(Ceiling {
        requests,
        concurrency,
        body_bytes: body.len(),
        elapsed: t0.elapsed(),
    })
}

/// An envelope like Herald's, padded to `size` bytes, with `data.seq` so
/// the receiver parses it as it parses deliveries.
fn bytes_body(size: usize) -> Vec<u8> {
    let head = r#"{"id":"evt_ceiling","type":"t0.created","timestamp":"2026-01-01T00:00:00.000Z","tenant_id":"bench","data":{"seq":0,"pad":""#;
    let tail = r#""}}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(pad)).into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn body_has_the_asked_size_and_a_seq() {
        let b = super::bytes_body(400);
        assert_eq!(b.len(), 400);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["data"]["seq"], 0);
    }
}
