//! `herald receiver`: a sample webhook receiver that verifies Standard
//! Webhooks signatures and prints one line per delivery.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use clap::Args;
use herald_shared::signing;

/// Arguments of `herald receiver`.
#[derive(Debug, Args)]
pub struct ReceiverArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// The endpoint's signing secret ("whsec_..."), or for an ED25519
    /// endpoint its public key ("whpk_...").
    #[arg(long)]
    secret: String,
    /// Largest accepted difference between webhook-timestamp and now.
    #[arg(long, default_value_t = 300)]
    tolerance_secs: i64,
}

struct Config {
    secret: String,
    tolerance_secs: i64,
}

/// Serves until the process is stopped.
pub async fn run(args: ReceiverArgs) -> Result<()> {
    if !signing::is_valid_secret(&args.secret)
        && !args.secret.starts_with(signing::PUBLIC_KEY_PREFIX)
    {
        bail!("--secret must be 'whsec_' or 'whpk_' followed by base64");
    }
    let cfg = Arc::new(Config {
        secret: args.secret,
        tolerance_secs: args.tolerance_secs,
    });
    let app = Router::new().fallback(handle).with_state(cfg);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    say(&format!("receiver listening on {}", listener.local_addr()?));
    axum::serve(listener, app).await?;
    Ok(())
}

/// Prints a line to stdout and flushes it.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn handle(
    State(cfg): State<Arc<Config>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    if method != Method::POST && method != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED;
    }
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let id = h("webhook-id").unwrap_or("-");
    let now = herald_shared::time::now_ms() / 1000;
    let verdict = check(
        &cfg,
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
        &body,
        now,
    );
    match verdict {
        Ok(()) => {
            let (event_type, compact) = describe(&body);
            say(&format!(
                "delivery verified id={id} type={event_type} body={compact}"
            ));
            StatusCode::NO_CONTENT
        }
        Err(reason) => {
            say(&format!("delivery REJECTED id={id} reason={reason}"));
            StatusCode::UNAUTHORIZED
        }
    }
}

/// Verifies the signature headers of a delivery received at `now` (seconds).
fn check(
    cfg: &Config,
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), String> {
    let id = id.ok_or("missing webhook-id")?;
    let ts: i64 = timestamp
        .ok_or("missing webhook-timestamp")?
        .parse()
        .map_err(|_| "bad webhook-timestamp")?;
    let signature = signature.ok_or("missing webhook-signature")?;
    if (now - ts).abs() > cfg.tolerance_secs {
        return Err(format!("timestamp {ts} outside tolerance"));
    }
    signing::verify(&cfg.secret, id, ts, body, signature).map_err(|e| e.to_string())
}

/// The envelope's `type` (or `-`) and the body as compact JSON (or text).
fn describe(body: &[u8]) -> (String, String) {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) => (
            v.get("type")
                .and_then(|t| t.as_str())
                .unwrap_or("-")
                .to_string(),
            v.to_string(),
        ),
        Err(_) => ("-".into(), String::from_utf8_lossy(body).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_signature_and_tolerance() {
        let secret = signing::generate_secret();
        let cfg = Config {
            secret: secret.clone(),
            tolerance_secs: 300,
        };
        let body = br#"{"type":"invoice.paid","data":{}}"#;
        let sig = signing::sign(&secret, "evt_1", 1000, body).unwrap();
        let ok = |ts: &str, now| check(&cfg, Some("evt_1"), Some(ts), Some(&sig), body, now);
        assert_eq!(ok("1000", 1200), Ok(()));
        assert!(ok("1000", 1301).is_err());
        assert!(ok("1001", 1000).is_err());
        assert!(check(&cfg, Some("evt_1"), Some("1000"), None, body, 1000).is_err());
        assert_eq!(describe(body).0, "invoice.paid");
    }
}
