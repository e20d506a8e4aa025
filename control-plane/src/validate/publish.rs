//! A publish request, checked before it is matched: everything in it must
//! fit the envelope an agent builds, within the documented bounds.

use herald_proto::v1 as pb;
use herald_shared::filter::Path;

use super::limits::*;
use super::{count, display_text, name};
use crate::error::{Error, Result};

/// A publish that passed the checks, with its JSON parsed.
#[derive(Debug)]
pub struct CheckedPublish {
    /// The payload.
    pub payload: serde_json::Value,
    /// The payload before the change, when given.
    pub previous: Option<serde_json::Value>,
}

/// Checks every field of a publish; `max_payload` is
/// `--max-payload-bytes`. Whether the tenant and event type exist is the
/// caller's to check against its view.
pub fn publish(r: &pb::PublishRequest, max_payload: usize) -> Result<CheckedPublish> {
    name("tenant_id", &r.tenant_id)?;
    if r.event_type.is_empty() {
        return Err(Error::invalid("event_type", "must not be empty"));
    }
    name("event_type", &r.event_type)?;
    let payload = object("payload_json", &r.payload_json, max_payload)?;
    let previous = if r.previous_payload_json.is_empty() {
        None
    } else {
        Some(object(
            "previous_payload_json",
            &r.previous_payload_json,
            max_payload,
        )?)
    };
    count("changed_fields", r.changed_fields.len(), MAX_PATHS)?;
    for (i, f) in r.changed_fields.iter().enumerate() {
        Path::parse(f)
            .map_err(|e| Error::invalid(format!("changed_fields[{i}]"), e.to_string()))?;
    }
    if r.skip_key.len() > MAX_SKIP_KEY {
        return Err(Error::invalid(
            "skip_key",
            format!("must be at most {MAX_SKIP_KEY} bytes"),
        ));
    }
    if r.idempotency_key.len() > MAX_IDEMPOTENCY_KEY {
        return Err(Error::invalid(
            "idempotency_key",
            format!("must be at most {MAX_IDEMPOTENCY_KEY} bytes"),
        ));
    }
    envelope_fields(r)?;
    if r.occurred_at_ms < 0 {
        return Err(Error::invalid("occurred_at_ms", "must not be negative"));
    }
    if r.occurred_at_ms > MAX_TIMESTAMP_MS {
        return Err(Error::invalid(
            "occurred_at_ms",
            format!(
                "{} is after {MAX_TIMESTAMP_MS} (year 9999)",
                r.occurred_at_ms
            ),
        ));
    }
    Ok(CheckedPublish { payload, previous })
}

/// Resource and actor: bounded and free of control characters, so the
/// envelope around a payload stays within [`MAX_ENVELOPE_OVERHEAD`].
fn envelope_fields(r: &pb::PublishRequest) -> Result<()> {
    if let Some(res) = &r.resource {
        display_text("resource.type", &res.r#type, MAX_KIND, true)?;
        display_text("resource.id", &res.id, MAX_TEXT, true)?;
    }
    if let Some(a) = &r.actor {
        display_text("actor.type", &a.r#type, MAX_KIND, false)?;
        display_text("actor.id", &a.id, MAX_TEXT, true)?;
        display_text("actor.name", &a.name, MAX_TEXT, false)?;
    }
    Ok(())
}

/// A JSON object of at most `limit` bytes, parsed.
fn object(field: &str, text: &str, limit: usize) -> Result<serde_json::Value> {
    if text.is_empty() {
        return Err(Error::invalid(
            field,
            "must not be empty (send {} for no data)",
        ));
    }
    if text.len() > limit {
        return Err(Error::invalid(
            field,
            format!("is {} bytes, over the limit of {limit}", text.len()),
        ));
    }
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::invalid(field, format!("is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(Error::invalid(field, "must be a JSON object"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> pb::PublishRequest {
        pb::PublishRequest {
            tenant_id: "acme".into(),
            event_type: "invoice.paid".into(),
            payload_json: r#"{"a":1}"#.into(),
            ..Default::default()
        }
    }

    fn field_of(r: &pb::PublishRequest) -> String {
        match publish(r, 1000) {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn payload_checks() {
        assert!(publish(&req(), 100).is_ok());
        for bad in ["", "[1]", "{", "3"] {
            let r = pb::PublishRequest {
                payload_json: bad.into(),
                ..req()
            };
            assert_eq!(field_of(&r), "payload_json");
        }
        let at = format!(r#"{{"a":"{}"}}"#, "x".repeat(992));
        assert_eq!(at.len(), 1000);
        assert!(
            publish(
                &pb::PublishRequest {
                    payload_json: at.clone(),
                    ..req()
                },
                1000
            )
            .is_ok()
        );
        let over = pb::PublishRequest {
            payload_json: format!("{at} "),
            ..req()
        };
        assert_eq!(field_of(&over), "payload_json");
        let prev = pb::PublishRequest {
            previous_payload_json: format!("{at} "),
            ..req()
        };
        assert_eq!(field_of(&prev), "previous_payload_json");
    }

    #[test]
    fn resource_and_actor_are_bounded() {
        let actor = |name: String| pb::PublishRequest {
            actor: Some(pb::Actor {
                r#type: "user".into(),
                id: "u1".into(),
                name,
            }),
            ..req()
        };
        assert!(publish(&actor("x".repeat(MAX_TEXT)), 1000).is_ok());
        assert_eq!(field_of(&actor("x".repeat(MAX_TEXT + 1))), "actor.name");
        assert_eq!(field_of(&actor("x".repeat(1_000_000))), "actor.name");
        assert_eq!(field_of(&actor("a\u{1b}[2J".into())), "actor.name");
        let resource = |kind: String| pb::PublishRequest {
            resource: Some(pb::Resource {
                r#type: kind,
                id: "r1".into(),
            }),
            ..req()
        };
        assert!(publish(&resource("x".repeat(MAX_KIND)), 1000).is_ok());
        assert_eq!(
            field_of(&resource("x".repeat(MAX_KIND + 1))),
            "resource.type"
        );
        assert_eq!(field_of(&resource(String::new())), "resource.type");
    }

    #[test]
    fn occurred_at_stays_within_rfc_3339() {
        let at = |ms| pb::PublishRequest {
            occurred_at_ms: ms,
            ..req()
        };
        assert!(publish(&at(MAX_TIMESTAMP_MS), 1000).is_ok());
        assert_eq!(
            herald_shared::envelope::rfc3339_ms(MAX_TIMESTAMP_MS),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(field_of(&at(MAX_TIMESTAMP_MS + 1)), "occurred_at_ms");
        assert_eq!(field_of(&at(i64::MAX)), "occurred_at_ms");
        assert_eq!(field_of(&at(-1)), "occurred_at_ms");
    }

    #[test]
    fn lists_and_keys_are_bounded() {
        let fields = |n| pb::PublishRequest {
            changed_fields: vec!["a.b".into(); n],
            ..req()
        };
        assert!(publish(&fields(MAX_PATHS), 1000).is_ok());
        assert_eq!(field_of(&fields(MAX_PATHS + 1)), "changed_fields");
        let key = |n| pb::PublishRequest {
            idempotency_key: "k".repeat(n),
            ..req()
        };
        assert!(publish(&key(MAX_IDEMPOTENCY_KEY), 1000).is_ok());
        assert_eq!(field_of(&key(MAX_IDEMPOTENCY_KEY + 1)), "idempotency_key");
    }
}
