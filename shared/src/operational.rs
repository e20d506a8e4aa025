//! Herald's own events ("operational events"): what happened to an
//! endpoint or a delivery, published by Herald and delivered, signed and
//! logged, like any other event. Their types start with `herald.` and are
//! reserved: users cannot create, change or publish them.
//!
//! Who gets them: endpoints of the affected tenant, and of the operators'
//! tenant when the control plane names one (`--operator-tenant`), that
//! subscribe with a pattern starting with `herald.` (`herald.*`, or a
//! type's name). A catch-all `*` does not reach them, so existing
//! endpoints do not start receiving Herald's events unasked.
//!
//! They never loop: a delivery of an operational event that fails for good
//! produces no `herald.delivery.exhausted`, and `herald.endpoint.failing`
//! fires once per crossing of the threshold, not per failure.

use serde_json::{Value, json};

/// The prefix of every operational event type.
pub const PREFIX: &str = "herald.";
/// An endpoint was disabled, by Herald (410 Gone, failures in a row) or
/// through the API.
pub const ENDPOINT_DISABLED: &str = "herald.endpoint.disabled";
/// An endpoint was enabled again.
pub const ENDPOINT_ENABLED: &str = "herald.endpoint.enabled";
/// A delivery failed for good: its retry schedule is spent.
pub const DELIVERY_EXHAUSTED: &str = "herald.delivery.exhausted";
/// An endpoint's failure rate over the window crossed the threshold.
pub const ENDPOINT_FAILING: &str = "herald.endpoint.failing";
/// A failing endpoint succeeds again.
pub const ENDPOINT_RECOVERED: &str = "herald.endpoint.recovered";

/// Every operational type with its description, as the catalog lists it.
pub const TYPES: [(&str, &str); 5] = [
    (
        ENDPOINT_DISABLED,
        "An endpoint was disabled: by Herald (410 Gone, or deliveries failed in a row) or through the API; says why and the last failure.",
    ),
    (ENDPOINT_ENABLED, "An endpoint was enabled again."),
    (
        DELIVERY_EXHAUSTED,
        "A delivery failed for good: every attempt of its retry schedule failed.",
    ),
    (
        ENDPOINT_FAILING,
        "An endpoint's share of failed attempts over the agent's window crossed the operator's threshold.",
    ),
    (
        ENDPOINT_RECOVERED,
        "An endpoint reported failing succeeds again: an attempt succeeded and its failed share is under half the threshold.",
    ),
];

/// Whether `event_type` is one of Herald's own (reserved) types.
pub fn is_operational(event_type: &str) -> bool {
    event_type.starts_with(PREFIX)
}

/// Whether a subscription pattern reaches operational events: only one
/// that names the prefix does.
pub fn opts_in(pattern: &str) -> bool {
    pattern.starts_with(PREFIX)
}

/// The endpoint an operational event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointRef {
    /// Its tenant.
    pub tenant_id: String,
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its URL.
    pub url: String,
}

impl EndpointRef {
    fn json(&self) -> Value {
        json!({
            "tenant_id": self.tenant_id,
            "id": self.id,
            "name": self.name,
            "url": self.url,
        })
    }
}

/// A failed attempt, in short.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failure {
    /// The delivery attempted ("" when unknown).
    pub delivery_id: String,
    /// When the attempt started, ms since the epoch.
    pub at_ms: i64,
    /// The HTTP status, 0 when there was no answer.
    pub status_code: u32,
    /// What went wrong.
    pub error: String,
}

impl Failure {
    fn json(&self) -> Value {
        json!({
            "delivery_id": self.delivery_id,
            "at": crate::envelope::rfc3339_ms(self.at_ms),
            "status_code": self.status_code,
            "error": self.error,
        })
    }
}

/// `herald.endpoint.disabled`: `by` is `herald` or `api`.
pub fn disabled(
    ep: &EndpointRef,
    by: &str,
    reason: &str,
    at_ms: i64,
    last_failure: Option<&Failure>,
) -> Value {
    json!({
        "endpoint": ep.json(),
        "disabled_by": by,
        "reason": reason,
        "disabled_at": crate::envelope::rfc3339_ms(at_ms),
        "last_failure": last_failure.map(Failure::json),
    })
}

/// `herald.endpoint.enabled`: `previous_reason` is why it had been
/// disabled ("" when not known).
pub fn enabled(ep: &EndpointRef, at_ms: i64, previous_reason: &str) -> Value {
    json!({
        "endpoint": ep.json(),
        "enabled_at": crate::envelope::rfc3339_ms(at_ms),
        "previously_disabled_because": previous_reason,
    })
}

/// What a delivery that failed for good was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exhausted {
    /// The event it carried.
    pub event_id: String,
    /// That event's type.
    pub event_type: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last of them (its delivery id is the delivery's).
    pub last: Failure,
}

/// `herald.delivery.exhausted`.
pub fn exhausted(ep: &EndpointRef, e: &Exhausted) -> Value {
    json!({
        "endpoint": ep.json(),
        "delivery_id": e.last.delivery_id,
        "event_id": e.event_id,
        "event_type": e.event_type,
        "attempts": e.attempts,
        "last_failure": e.last.json(),
    })
}

/// The failure-rate window when an endpoint crossed the threshold (or,
/// for [`recovered`], came back under it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Failing {
    /// Attempts in the window.
    pub attempts: u64,
    /// Failed attempts in the window.
    pub failed: u64,
    /// The window.
    pub window_secs: u64,
    /// The threshold crossed.
    pub threshold_percent: u32,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// `herald.endpoint.failing`.
pub fn failing(ep: &EndpointRef, f: &Failing) -> Value {
    window(ep, f, "crossed_at")
}

/// `herald.endpoint.recovered`.
pub fn recovered(ep: &EndpointRef, f: &Failing) -> Value {
    window(ep, f, "recovered_at")
}

fn window(ep: &EndpointRef, f: &Failing, at_field: &str) -> Value {
    let rate = if f.attempts == 0 {
        0.0
    } else {
        f.failed as f64 / f.attempts as f64
    };
    let mut v = json!({
        "endpoint": ep.json(),
        "failure_rate": (rate * 1000.0).round() / 1000.0,
        "attempts": f.attempts,
        "failed_attempts": f.failed,
        "window_secs": f.window_secs,
        "threshold_percent": f.threshold_percent,
    });
    v[at_field] = crate::envelope::rfc3339_ms(f.at_ms).into();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_patterns_naming_the_prefix_opt_in() {
        assert!(opts_in("herald.*"));
        assert!(opts_in(ENDPOINT_DISABLED));
        assert!(!opts_in("*"));
        assert!(!opts_in("h*"));
        assert!(TYPES.iter().all(|(t, _)| is_operational(t)));
        assert!(!is_operational("heraldic.event"));
    }

    #[test]
    fn payloads_say_which_endpoint_and_why() {
        let ep = EndpointRef {
            tenant_id: "acme".into(),
            id: "ep_1".into(),
            name: "orders".into(),
            url: "https://example.com/hook".into(),
        };
        let f = Failure {
            delivery_id: "dlv_1".into(),
            at_ms: 0,
            status_code: 410,
            error: "HTTP 410".into(),
        };
        let v = disabled(&ep, "herald", "the receiver answered 410 Gone", 0, Some(&f));
        assert_eq!(v["endpoint"]["id"], "ep_1");
        assert_eq!(v["last_failure"]["status_code"], 410);
        assert_eq!(v["disabled_at"], "1970-01-01T00:00:00.000Z");
        let v = failing(
            &ep,
            &Failing {
                attempts: 3,
                failed: 2,
                ..Default::default()
            },
        );
        assert_eq!(v["failure_rate"], 0.667);
        assert_eq!(v["crossed_at"], "1970-01-01T00:00:00.000Z");
        let v = recovered(
            &ep,
            &Failing {
                attempts: 10,
                failed: 2,
                at_ms: 1000,
                ..Default::default()
            },
        );
        assert_eq!(v["failure_rate"], 0.2);
        assert_eq!(v["recovered_at"], "1970-01-01T00:00:01.000Z");
        assert!(v.get("crossed_at").is_none());
    }
}
