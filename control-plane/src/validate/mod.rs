//! Validation at the API edge: every check names the field it refuses and
//! says why, so a caller can fix the request without reading our code.

mod endpoint;
pub mod http;
pub mod limits;
mod publish;

pub use endpoint::endpoint_spec;
pub use http::url;
pub use publish::{CheckedPublish, publish};

use herald_proto::v1 as pb;
use herald_shared::ids::validate_name;
use herald_shared::model::EventTypeRecord;
use herald_shared::pattern;

use crate::error::{Error, Result};
use limits::{MAX_JSON_FIELD, MAX_JWT_SECRET, MAX_TEXT};

/// Default number of deliveries failed in a row before auto-disable.
pub const DEFAULT_DISABLE_AFTER: u32 = 5;
/// Default concurrency of an unordered endpoint.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 10;
/// Highest concurrency of an unordered endpoint.
pub const MAX_IN_FLIGHT: u32 = 100;
/// Default per-attempt timeout.
pub const DEFAULT_TIMEOUT_MS: u32 = 15_000;
/// Longest per-attempt timeout an endpoint may ask for: ten minutes, for
/// handlers that work before they answer (seed 004 gives them 5 to 10).
pub const MAX_TIMEOUT_MS: u32 = 600_000;
/// Most events in one request.
pub const MAX_CHUNK_SIZE: u32 = 100;
/// Longest spacing between two requests to one endpoint.
pub const MAX_CHUNK_DELAY_MS: u32 = 3_600_000;
/// Highest per-endpoint request rate an endpoint may set.
pub const MAX_RATE_PER_SEC: u32 = 10_000;
/// Default lifetime of a receiver JWT.
pub const DEFAULT_JWT_TTL_SECS: u32 = 300;
/// Shortest JWT secret, in bytes.
pub const MIN_JWT_SECRET: usize = 32;

/// A required identifier-like name.
pub fn name(field: &str, value: &str) -> Result<()> {
    validate_name(value).map_err(|e| Error::invalid(field, e.to_string()))
}

/// The page size of a list by id (ListEndpoints, ListTenants): 0 means
/// the default; and its token, the last id of the previous page.
pub fn id_page(page_size: u32, page_token: &str) -> Result<usize> {
    use limits::{DEFAULT_ENDPOINT_PAGE, MAX_ENDPOINT_PAGE};
    let size = match page_size {
        0 => DEFAULT_ENDPOINT_PAGE,
        n if n as usize <= MAX_ENDPOINT_PAGE => n as usize,
        n => {
            return Err(Error::invalid(
                "page_size",
                format!("{n} is over the limit of {MAX_ENDPOINT_PAGE}"),
            ));
        }
    };
    if !page_token.is_empty() {
        name("page_token", page_token)?;
    }
    Ok(size)
}

/// Optional free text of bounded length.
pub fn text(field: &str, value: &str) -> Result<()> {
    if value.len() > MAX_TEXT {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_TEXT} bytes"),
        ));
    }
    Ok(())
}

/// Optional JSON text; when `object_only`, it must be an object.
pub fn json(field: &str, value: &str, object_only: bool) -> Result<()> {
    if value.is_empty() {
        return Ok(());
    }
    if value.len() > MAX_JSON_FIELD {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_JSON_FIELD} bytes"),
        ));
    }
    let v: serde_json::Value = serde_json::from_str(value)
        .map_err(|e| Error::invalid(field, format!("is not valid JSON: {e}")))?;
    if object_only && !v.is_object() {
        return Err(Error::invalid(field, "must be a JSON object"));
    }
    Ok(())
}

/// The fields of an event type.
pub fn event_type(rec: &EventTypeRecord) -> Result<()> {
    name("name", &rec.name)?;
    reserved("name", &rec.name)?;
    text("group", &rec.group)?;
    display_text("display_name", &rec.display_name, limits::MAX_KIND, false)?;
    text("description", &rec.description)?;
    json("schema_json", &rec.schema_json, true)?;
    json("example_json", &rec.example_json, false)
}

/// Refuses the names of Herald's own event types, which only Herald
/// creates and publishes.
pub fn reserved(field: &str, name: &str) -> Result<()> {
    if herald_shared::operational::is_operational(name) {
        return Err(Error::invalid(
            field,
            format!("'{name}': the herald. prefix is reserved for Herald's own events"),
        ));
    }
    Ok(())
}

/// A JWT secret: at least 32 bytes (HS256 wants a key as long as its
/// hash), printable. Empty passes when `empty_ok`.
pub fn jwt_secret(field: &str, value: &str, empty_ok: bool) -> Result<()> {
    if value.is_empty() && empty_ok {
        return Ok(());
    }
    if value.len() < MIN_JWT_SECRET || value.len() > MAX_JWT_SECRET {
        return Err(Error::invalid(
            field,
            format!(
                "must be {MIN_JWT_SECRET} to {MAX_JWT_SECRET} bytes (HS256 needs a 256-bit key)"
            ),
        ));
    }
    if value.bytes().any(|c| c.is_ascii_control()) {
        return Err(Error::invalid(field, "must not hold control characters"));
    }
    Ok(())
}

/// A caller-chosen signing key: `whsec_` + base64 of 24 to 64 bytes, or an
/// Ed25519 private key `whsk_` + base64 of a 32-byte seed.
pub fn signing_secret(field: &str, value: &str) -> Result<()> {
    if herald_shared::signing::is_private_key(value) {
        return herald_shared::signing::public_key(value)
            .map(|_| ())
            .map_err(|_| {
                Error::invalid(
                    field,
                    "must be 'whsk_' followed by base64 of a 32-byte seed",
                )
            });
    }
    match herald_shared::signing::key_len(value) {
        Some(n) if (24..=64).contains(&n) => Ok(()),
        Some(n) => Err(Error::invalid(
            field,
            format!("holds {n} key bytes; 24 to 64 are needed"),
        )),
        None => Err(Error::invalid(
            field,
            "must be 'whsec_' followed by base64, or 'whsk_' and an Ed25519 seed",
        )),
    }
}

/// Shortest shared secret of the user's own.
pub const MIN_SHARED_SECRET: usize = 24;
/// Longest shared secret of the user's own.
pub const MAX_SHARED_SECRET: usize = 256;

/// Whether `value` is meant as a shared secret of the user's own (for the
/// body HMAC) rather than a Standard Webhooks key.
pub fn is_shared_secret(value: &str) -> bool {
    !value.starts_with("whsec_") && !value.starts_with("whsk_")
}

/// A shared secret the user chose (seeds 002, 003): 24 to 256 visible
/// ASCII characters; the body HMAC is keyed by exactly this text.
pub fn shared_secret(field: &str, value: &str) -> Result<()> {
    if value.len() < MIN_SHARED_SECRET || value.len() > MAX_SHARED_SECRET {
        return Err(Error::invalid(
            field,
            format!(
                "a secret of your own must be {MIN_SHARED_SECRET} to {MAX_SHARED_SECRET} characters"
            ),
        ));
    }
    if !value.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(Error::invalid(
            field,
            "a secret of your own holds visible ASCII only (no spaces)",
        ));
    }
    Ok(())
}

/// The signing scheme a spec asks for: None when unspecified.
pub fn scheme(field: &str, value: i32) -> Result<Option<bool>> {
    match pb::SignatureScheme::try_from(value) {
        Ok(pb::SignatureScheme::Unspecified) => Ok(None),
        Ok(pb::SignatureScheme::HmacSha256) => Ok(Some(false)),
        Ok(pb::SignatureScheme::Ed25519) => Ok(Some(true)),
        Err(_) => Err(Error::invalid(
            field,
            format!("unknown scheme {value} (HMAC_SHA256 or ED25519)"),
        )),
    }
}

/// An event type pattern (or name) in a list, as `field[i]`.
pub fn pattern(field: &str, value: &str) -> Result<()> {
    pattern::validate(value).map_err(|e| Error::invalid(field, e.to_string()))
}

/// Free text that goes into a delivered body: bounded, no control
/// characters; `required` refuses it empty.
pub fn display_text(field: &str, value: &str, max: usize, required: bool) -> Result<()> {
    if required && value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not hold control characters"));
    }
    Ok(())
}

/// At most `max` items in a repeated field.
pub fn count(field: &str, len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(Error::invalid(
            field,
            format!("lists {len} items, over the limit of {max}"),
        ));
    }
    Ok(())
}

/// The catalog an endpoint spec is checked against.
pub type Catalog = std::collections::HashMap<String, EventTypeRecord>;
