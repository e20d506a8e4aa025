//! `herald publish --file`: every line of a JSON-lines file, in order,
//! through PublishBatch (100 per call). Each event's own result is kept: a
//! bad line fails alone and is reported with its line number.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result, bail};
use herald_proto::v1::{
    Actor, PublishBatchRequest, PublishRequest, Resource,
    publish_service_client::PublishServiceClient,
};
use serde::Deserialize;
use serde_json::json;

use crate::connect::Ch;
use crate::output::Format;

/// Events per call (the server's limit).
const BATCH: usize = 100;

/// One line of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    tenant: String,
    #[serde(rename = "type")]
    event_type: String,
    data: serde_json::Value,
    #[serde(default)]
    idempotency_key: String,
    resource: Option<LineResource>,
    actor: Option<LineActor>,
    #[serde(default)]
    skip_key: String,
    #[serde(default)]
    occurred_at_ms: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineResource {
    #[serde(rename = "type")]
    kind: String,
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineActor {
    #[serde(rename = "type", default)]
    kind: String,
    id: String,
    #[serde(default)]
    name: String,
}

impl Line {
    fn request(self) -> PublishRequest {
        PublishRequest {
            tenant_id: self.tenant,
            event_type: self.event_type,
            payload_json: self.data.to_string(),
            idempotency_key: self.idempotency_key,
            resource: self.resource.map(|r| Resource {
                r#type: r.kind,
                id: r.id,
            }),
            actor: self.actor.map(|a| Actor {
                r#type: a.kind,
                id: a.id,
                name: a.name,
            }),
            occurred_at_ms: self.occurred_at_ms,
            skip_key: self.skip_key,
            ..Default::default()
        }
    }
}

/// Publishes the file; fails (after sending the rest) if any line failed.
pub async fn run(channel: Ch, out: Format, path: &Path) -> Result<()> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut client = PublishServiceClient::new(channel);
    let (mut published, mut failed, mut matched) = (0u64, Vec::new(), 0u64);
    let mut batch: Vec<(usize, PublishRequest)> = Vec::with_capacity(BATCH);
    for (i, line) in reader.lines().enumerate() {
        let number = i + 1;
        let line = line.with_context(|| format!("reading line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&line) {
            Ok(l) => batch.push((number, l.request())),
            Err(e) => failed.push(format!("line {number}: not an event: {e}")),
        }
        if batch.len() == BATCH {
            send(
                &mut client,
                &mut batch,
                &mut published,
                &mut matched,
                &mut failed,
            )
            .await?;
            eprintln!("published {published}");
        }
    }
    if !batch.is_empty() {
        send(
            &mut client,
            &mut batch,
            &mut published,
            &mut matched,
            &mut failed,
        )
        .await?;
    }
    for f in &failed {
        eprintln!("{f}");
    }
    out.emit(
        &json!({ "published": published, "endpoints_matched": matched, "failed": failed.len() }),
        &["PUBLISHED", "ENDPOINTS MATCHED", "FAILED"],
        &[vec![
            published.to_string(),
            matched.to_string(),
            failed.len().to_string(),
        ]],
    );
    if !failed.is_empty() {
        bail!(
            "{} of {} events failed",
            failed.len(),
            published as usize + failed.len()
        );
    }
    Ok(())
}

/// Sends one batch; records each event's result.
async fn send(
    client: &mut PublishServiceClient<Ch>,
    batch: &mut Vec<(usize, PublishRequest)>,
    published: &mut u64,
    matched: &mut u64,
    failed: &mut Vec<String>,
) -> Result<()> {
    let (numbers, events): (Vec<usize>, Vec<PublishRequest>) =
        std::mem::take(batch).into_iter().unzip();
    let results = client
        .publish_batch(PublishBatchRequest { events })
        .await?
        .into_inner()
        .results;
    for (number, r) in numbers.into_iter().zip(results) {
        if r.code == "OK" {
            *published += 1;
            *matched += u64::from(r.endpoints_matched);
        } else {
            // The server names the field as `events[i].field`; say the line.
            let message = r
                .message
                .split_once("].")
                .map_or(r.message.as_str(), |(_, m)| m);
            failed.push(format!("line {number}: {}: {message}", r.code));
        }
    }
    Ok(())
}
