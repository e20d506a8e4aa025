//! The JSON body of a delivery: one envelope per event.

use serde::Serialize;
use serde_json::value::RawValue;

/// What the event is about.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ResourceRef<'a> {
    /// Resource type, for example "invoice".
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// Resource id.
    pub id: &'a str,
}

/// Who triggered the event.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ActorRef<'a> {
    /// Actor type, for example "user" or "system".
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// Actor id.
    pub id: &'a str,
    /// Display name.
    #[serde(skip_serializing_if = "str::is_empty")]
    pub name: &'a str,
}

/// `{id, type, timestamp, tenant_id, resource, actor, data, custom_data}`.
/// `data` and `custom_data` are embedded as the JSON text they were given,
/// so the body holds the publisher's bytes without a reparse.
#[derive(Debug, Serialize)]
pub struct Envelope<'a> {
    /// Event id; also the `webhook-id` header.
    pub id: &'a str,
    /// Event type name.
    #[serde(rename = "type")]
    pub event_type: &'a str,
    /// When the event occurred, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// Tenant the event belongs to.
    pub tenant_id: &'a str,
    /// The resource, when the publisher named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef<'a>>,
    /// The actor, when the publisher named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<ActorRef<'a>>,
    /// The payload (a JSON object).
    pub data: &'a RawValue,
    /// The endpoint's custom data, when it has some.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_data: Option<&'a RawValue>,
}

impl Envelope<'_> {
    /// The envelope as JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing borrowed strings and already-valid raw JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Formats milliseconds since the epoch as RFC 3339 UTC, e.g.
/// `2026-11-23T14:30:00.123Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_795_444_200_000), "2026-11-23T14:30:00.000Z");
    }

    #[test]
    fn envelope_shape() {
        let data = RawValue::from_string(r#"{"amount":5}"#.into()).unwrap();
        let env = Envelope {
            id: "evt_1",
            event_type: "invoice.activated",
            timestamp: rfc3339_ms(0),
            tenant_id: "acme",
            resource: Some(ResourceRef {
                kind: "invoice",
                id: "in_1",
            }),
            actor: None,
            data: &data,
            custom_data: None,
        };
        let v: serde_json::Value = serde_json::from_slice(&env.to_bytes()).unwrap();
        assert_eq!(v["id"], "evt_1");
        assert_eq!(v["type"], "invoice.activated");
        assert_eq!(v["data"]["amount"], 5);
        assert_eq!(v["resource"]["type"], "invoice");
        assert!(v.get("actor").is_none());
    }
}
