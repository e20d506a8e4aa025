//! Deliveries, attempts and endpoint statistics as JSON values and table
//! rows.

use herald_proto::v1::{
    Attempt, AttemptSummary, DeliveryDetail, DeliveryStatus, DeliverySummary, EndpointStats,
    ErrorKind,
};
use serde_json::{Value, json};

use crate::output::{json_text, time};

/// The lowercase name of a delivery status, e.g. `retrying`.
pub fn status_name(s: DeliveryStatus) -> String {
    short_name(s.as_str_name(), "DELIVERY_STATUS_")
}

/// The lowercase name of an error kind, e.g. `timeout`.
pub fn error_kind_name(k: ErrorKind) -> String {
    short_name(k.as_str_name(), "ERROR_KIND_")
}

fn short_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_lowercase()
}

/// An error kind for a table cell: `-` for none.
fn error_kind_cell(k: ErrorKind) -> String {
    match k {
        ErrorKind::None => "-".into(),
        k => error_kind_name(k),
    }
}

/// A status code for a table cell: `-` for 0 (no answer).
fn code_cell(code: u32) -> String {
    match code {
        0 => "-".into(),
        c => c.to_string(),
    }
}

/// Text on one line for a table cell: line breaks and tabs become spaces.
pub fn flat(text: &str) -> String {
    text.replace(['\r', '\n', '\t'], " ")
}

/// At most `max` characters of `text` on one line, with `...` when cut.
pub fn excerpt(text: &str, max: usize) -> String {
    let text = flat(text.trim());
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}

/// JSON text compacted onto one line; other text flattened.
fn compact_json(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => v.to_string(),
        Err(_) => flat(text),
    }
}

/// One delivery summary as JSON.
pub fn summary_json(d: &DeliverySummary) -> Value {
    json!({
        "delivery_id": d.delivery_id,
        "tenant_id": d.tenant_id,
        "endpoint_id": d.endpoint_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "resource": d.resource.as_ref().map(|r| json!({ "type": r.r#type, "id": r.id })),
        "status": status_name(d.status()),
        "attempts": d.attempts,
        "created_at_ms": d.created_at_ms,
        "next_attempt_at_ms": d.next_attempt_at_ms,
        "finished_at_ms": d.finished_at_ms,
        "last_status_code": d.last_status_code,
        "resend_of": d.resend_of,
        "test": d.test,
    })
}

/// Column headers of the delivery list.
pub const LIST_HEADERS: [&str; 7] = [
    "ID",
    "ENDPOINT",
    "EVENT TYPE",
    "STATUS",
    "ATTEMPTS",
    "CREATED",
    "LAST STATUS",
];

/// One delivery as a row under [`LIST_HEADERS`].
pub fn list_row(d: &DeliverySummary) -> Vec<String> {
    vec![
        d.delivery_id.clone(),
        d.endpoint_id.clone(),
        d.event_type.clone(),
        status_name(d.status()),
        d.attempts.to_string(),
        time(d.created_at_ms),
        code_cell(d.last_status_code),
    ]
}

/// One attempt as JSON, with everything captured.
fn attempt_json(a: &Attempt) -> Value {
    json!({
        "number": a.number,
        "started_at_ms": a.started_at_ms,
        "duration_ms": a.duration_ms,
        "method": a.method,
        "url": a.url,
        "request_headers": a.request_headers,
        "response_status": a.response_status,
        "response_headers": a.response_headers,
        "response_body": a.response_body,
        "response_body_truncated": a.response_body_truncated,
        "error_kind": error_kind_name(a.error_kind()),
        "error": a.error,
    })
}

/// A whole delivery detail as JSON.
pub fn detail_json(d: &DeliveryDetail) -> Value {
    json!({
        "summary": summary_json(&d.summary.clone().unwrap_or_default()),
        "payload": json_text(&d.payload_json),
        "actor": d.actor.as_ref().map(|a| json!({ "type": a.r#type, "id": a.id, "name": a.name })),
        "occurred_at_ms": d.occurred_at_ms,
        "attempts": d.attempts.iter().map(attempt_json).collect::<Vec<_>>(),
    })
}

/// One delivery detail as FIELD/VALUE rows, ending with its payload.
pub fn detail_rows(d: &DeliveryDetail) -> Vec<Vec<String>> {
    let s = d.summary.clone().unwrap_or_default();
    let resource = s
        .resource
        .as_ref()
        .map(|r| format!("{}/{}", r.r#type, r.id))
        .unwrap_or_default();
    let actor = d
        .actor
        .as_ref()
        .map(|a| format!("{}/{}", a.r#type, a.id))
        .unwrap_or_default();
    let fields = [
        ("id", s.delivery_id.clone()),
        ("tenant", s.tenant_id.clone()),
        ("endpoint", s.endpoint_id.clone()),
        ("event id", s.event_id.clone()),
        ("event type", s.event_type.clone()),
        ("resource", resource),
        ("actor", actor),
        ("status", status_name(s.status())),
        ("attempts", s.attempts.to_string()),
        ("last status", code_cell(s.last_status_code)),
        ("occurred", time(d.occurred_at_ms)),
        ("created", time(s.created_at_ms)),
        ("next attempt", time(s.next_attempt_at_ms)),
        ("finished", time(s.finished_at_ms)),
        ("resend of", s.resend_of.clone()),
        ("test", s.test.to_string()),
        ("payload", compact_json(&d.payload_json)),
    ];
    fields
        .into_iter()
        .map(|(k, v)| vec![k.to_string(), v])
        .collect()
}

/// Column headers of a delivery's attempts.
pub const ATTEMPT_HEADERS: [&str; 6] = [
    "#",
    "STARTED",
    "DURATION MS",
    "STATUS",
    "ERROR KIND",
    "ERROR",
];

/// One attempt as a row under [`ATTEMPT_HEADERS`].
pub fn attempt_row(a: &Attempt) -> Vec<String> {
    vec![
        a.number.to_string(),
        time(a.started_at_ms),
        a.duration_ms.to_string(),
        code_cell(a.response_status),
        error_kind_cell(a.error_kind()),
        flat(&a.error),
    ]
}

fn attempt_summary_json(a: &AttemptSummary) -> Value {
    json!({
        "delivery_id": a.delivery_id,
        "at_ms": a.at_ms,
        "status_code": a.status_code,
        "error_kind": error_kind_name(a.error_kind()),
        "error": a.error,
        "response_body": a.response_body,
        "duration_ms": a.duration_ms,
    })
}

/// Endpoint statistics as JSON.
pub fn stats_json(s: &EndpointStats) -> Value {
    json!({
        "endpoint_id": s.endpoint_id,
        "events": s.events,
        "attempts": s.attempts,
        "successes": s.successes,
        "failures": s.failures,
        "failed_attempts": s.failed_attempts,
        "failures_since_last_success": s.failures_since_last_success,
        "deliveries_failed_in_a_row": s.deliveries_failed_in_a_row,
        "last_event_at_ms": s.last_event_at_ms,
        "next_attempt_at_ms": s.next_attempt_at_ms,
        "last_success": s.last_success.as_ref().map(attempt_summary_json),
        "last_failure": s.last_failure.as_ref().map(attempt_summary_json),
        "queue_depth": s.queue_depth,
    })
}

/// Characters of a response body shown in an attempt summary.
const BODY_EXCERPT: usize = 80;

/// An attempt outcome on one line: when, status, duration, error kind,
/// error and the start of the body; `-` when there was none.
pub fn attempt_summary_text(a: Option<&AttemptSummary>) -> String {
    let Some(a) = a.filter(|a| a.at_ms != 0) else {
        return "-".into();
    };
    let mut parts = vec![time(a.at_ms)];
    if !a.delivery_id.is_empty() {
        parts.push(a.delivery_id.clone());
    }
    parts.push(match a.status_code {
        0 => "no answer".into(),
        c => format!("status {c}"),
    });
    parts.push(format!("{} ms", a.duration_ms));
    if a.error_kind() != ErrorKind::None {
        parts.push(error_kind_name(a.error_kind()));
    }
    if !a.error.is_empty() {
        parts.push(format!("error: {}", flat(&a.error)));
    }
    if !a.response_body.trim().is_empty() {
        parts.push(format!("body: {}", excerpt(&a.response_body, BODY_EXCERPT)));
    }
    parts.join(", ")
}

/// Endpoint statistics as FIELD/VALUE rows.
pub fn stats_rows(s: &EndpointStats) -> Vec<Vec<String>> {
    let fields = [
        ("endpoint", s.endpoint_id.clone()),
        ("events", s.events.to_string()),
        ("attempts", s.attempts.to_string()),
        ("successes", s.successes.to_string()),
        ("failures", s.failures.to_string()),
        ("failed attempts", s.failed_attempts.to_string()),
        (
            "failures since last success",
            s.failures_since_last_success.to_string(),
        ),
        (
            "deliveries failed in a row",
            s.deliveries_failed_in_a_row.to_string(),
        ),
        ("queue depth", s.queue_depth.to_string()),
        ("last event", time(s.last_event_at_ms)),
        ("next attempt", time(s.next_attempt_at_ms)),
        (
            "last success",
            attempt_summary_text(s.last_success.as_ref()),
        ),
        (
            "last failure",
            attempt_summary_text(s.last_failure.as_ref()),
        ),
    ];
    fields
        .into_iter()
        .map(|(k, v)| vec![k.to_string(), v])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names() {
        assert_eq!(status_name(DeliveryStatus::Retrying), "retrying");
        assert_eq!(status_name(DeliveryStatus::Unspecified), "unspecified");
        assert_eq!(error_kind_name(ErrorKind::Tls), "tls");
        assert_eq!(error_kind_cell(ErrorKind::None), "-");
        assert_eq!(code_cell(0), "-");
        assert_eq!(code_cell(503), "503");
    }

    #[test]
    fn excerpts_cut_on_characters() {
        assert_eq!(excerpt("  ok\n", 10), "ok");
        assert_eq!(excerpt("a\nbcdef", 3), "a b...");
        assert_eq!(excerpt("ééé", 2), "éé...");
        assert_eq!(excerpt("abc", 3), "abc");
    }

    #[test]
    fn payload_is_compacted() {
        assert_eq!(compact_json("{\n  \"a\": 1\n}"), r#"{"a":1}"#);
        assert_eq!(compact_json("not\njson"), "not json");
    }

    #[test]
    fn attempt_summaries() {
        assert_eq!(attempt_summary_text(None), "-");
        assert_eq!(attempt_summary_text(Some(&AttemptSummary::default())), "-");
        let failure = AttemptSummary {
            at_ms: 1_700_000_000_000,
            status_code: 500,
            error_kind: ErrorKind::Status as i32,
            error: "HTTP 500".into(),
            response_body: "oops\nbroken".into(),
            duration_ms: 12,
            delivery_id: "dlv_1".into(),
        };
        let text = attempt_summary_text(Some(&failure));
        assert!(text.starts_with(&time(failure.at_ms)), "{text}");
        assert!(
            text.ends_with("dlv_1, status 500, 12 ms, status, error: HTTP 500, body: oops broken"),
            "{text}"
        );
        let timeout = AttemptSummary {
            at_ms: 1,
            error_kind: ErrorKind::Timeout as i32,
            ..Default::default()
        };
        assert!(
            attempt_summary_text(Some(&timeout)).ends_with("no answer, 0 ms, timeout"),
            "timeout summary"
        );
    }

    #[test]
    fn list_rows_follow_headers() {
        let d = DeliverySummary {
            delivery_id: "d1".into(),
            endpoint_id: "ep".into(),
            event_type: "invoice.paid".into(),
            status: DeliveryStatus::Failed as i32,
            attempts: 3,
            last_status_code: 0,
            ..Default::default()
        };
        let row = list_row(&d);
        assert_eq!(row.len(), LIST_HEADERS.len());
        assert_eq!(row, ["d1", "ep", "invoice.paid", "failed", "3", "-", "-"]);
        assert_eq!(summary_json(&d)["status"], "failed");
        assert_eq!(summary_json(&d)["resource"], Value::Null);
    }
}
