//! Identifiers: what a valid name looks like, and how event ids are made.

use sha2::{Digest, Sha256};

/// Longest tenant id or event type name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// Why a name was refused; the caller adds the field name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("must not be empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("must be at most {MAX_NAME_LEN} characters")]
    TooLong,
    /// The name holds a character outside the allowed set.
    #[error("may only contain letters, digits, '_', '-' and '.' (found {0:?})")]
    BadChar(char),
    /// The name starts or ends with '.', or has two dots in a row.
    #[error("must not start or end with '.' or contain '..'")]
    BadDots,
}

/// Checks a tenant id, endpoint id or event type name: ASCII letters,
/// digits, `_`, `-` and `.`, no empty dot-separated part. Such names are
/// safe inside etcd keys, which use `/` as separator.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(NameError::BadChar(c));
    }
    if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return Err(NameError::BadDots);
    }
    Ok(())
}

/// The event id of a publish with an idempotency key: a pure function of
/// (tenant, key), so a publisher's retry yields the same id everywhere and
/// each agent can drop what it already holds without shared state.
pub fn event_id_for_key(tenant_id: &str, idempotency_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(tenant_id.as_bytes());
    h.update([0u8]);
    h.update(idempotency_key.as_bytes());
    let digest = h.finalize();
    format!("evt_{}", hex(&digest[..16]))
}

/// A fresh random event id, for a publish without an idempotency key.
pub fn random_event_id() -> String {
    format!("evt_{}", hex(&rand::random::<[u8; 16]>()))
}

/// The delivery id of an event for an endpoint: a pure function of the
/// pair, so a re-sent publish (or a handed-over queue) maps to the same
/// delivery on any agent.
pub fn delivery_id_for(endpoint_id: &str, event_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(endpoint_id.as_bytes());
    h.update([0u8]);
    h.update(event_id.as_bytes());
    format!("dlv_{}", hex(&h.finalize()[..12]))
}

/// A fresh random delivery id, for a resend or a test event.
pub fn random_delivery_id() -> String {
    format!("dlv_{}", hex(&rand::random::<[u8; 12]>()))
}

/// A fresh random endpoint id.
pub fn new_endpoint_id() -> String {
    format!("ep_{}", hex(&rand::random::<[u8; 12]>()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("invoice.activated").is_ok());
        assert!(validate_name("Account.Create").is_ok());
        assert!(validate_name("acme-corp_1").is_ok());
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name("a/b"), Err(NameError::BadChar('/')));
        assert_eq!(validate_name("a..b"), Err(NameError::BadDots));
        assert_eq!(validate_name(".a"), Err(NameError::BadDots));
        assert_eq!(validate_name(&"x".repeat(129)), Err(NameError::TooLong));
    }

    #[test]
    fn event_id_is_deterministic_per_tenant_and_key() {
        let a = event_id_for_key("acme", "k1");
        assert_eq!(a, event_id_for_key("acme", "k1"));
        assert_ne!(a, event_id_for_key("acme", "k2"));
        assert_ne!(a, event_id_for_key("globex", "k1"));
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(event_id_for_key("ab", "c"), event_id_for_key("a", "bc"));
        assert_ne!(random_event_id(), random_event_id());
    }

    #[test]
    fn delivery_id_is_deterministic_per_endpoint_and_event() {
        let a = delivery_id_for("ep_1", "evt_1");
        assert_eq!(a, delivery_id_for("ep_1", "evt_1"));
        assert_ne!(a, delivery_id_for("ep_2", "evt_1"));
        assert_ne!(a, delivery_id_for("ep_1", "evt_2"));
        assert!(a.starts_with("dlv_") && a.len() == 28, "{a}");
        assert!(validate_name(&a).is_ok());
        assert_ne!(random_delivery_id(), random_delivery_id());
    }
}
