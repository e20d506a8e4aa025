//! Receiver authentication: the `Authorization` header an endpoint asks
//! for. Basic sends its user and password; JWT sends a short-lived HS256
//! token whose claims tell the receiver what triggered it, so a GET request
//! (which has no body) still carries the event's identity.

use herald_proto::v1 as pb;
use herald_shared::envelope::rfc3339_ms;
use serde::Serialize;
use serde_json::value::RawValue;

/// What the agent knows of an endpoint's past outcomes, for the JWT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct History {
    /// Last successful attempt, ms since the epoch.
    pub last_success_at_ms: Option<i64>,
    /// Last failed attempt, ms since the epoch.
    pub last_failure_at_ms: Option<i64>,
}

/// The JWT claims (the seed's handler claims, plus the event's identity).
#[derive(Debug, Serialize)]
struct Claims<'a> {
    endpoint_id: &'a str,
    endpoint_name: &'a str,
    tenant_id: &'a str,
    event_id: &'a str,
    event_type: &'a str,
    /// Events in the request (above 1 when chunked); the ids above are the first's.
    event_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<Resource<'a>>,
    triggered_at: String,
    last_success_at: Option<String>,
    last_failure_at: Option<String>,
    /// Seconds the receiver has before Herald gives up on the attempt.
    processing_timeout: u32,
    /// The endpoint's custom data, or null.
    data: Option<&'a RawValue>,
    iat: i64,
    exp: i64,
}

#[derive(Debug, Serialize)]
struct Resource<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
}

/// The `Authorization` value for an attempt at `now_ms`, if the endpoint
/// has receiver auth.
pub fn header(
    ep: &pb::DeliveryEndpoint,
    chunk: &[&pb::Delivery],
    history: History,
    now_ms: i64,
) -> Result<Option<String>, String> {
    let Some(kind) = ep.auth.as_ref().and_then(|a| a.kind.as_ref()) else {
        return Ok(None);
    };
    match kind {
        pb::receiver_auth::Kind::Basic(b) => {
            use base64::Engine as _;
            let pair = format!("{}:{}", b.username, b.password);
            Ok(Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )))
        }
        pb::receiver_auth::Kind::Jwt(j) => {
            let first = chunk.first().ok_or("no event to authenticate")?;
            let custom = (!ep.custom_data_json.is_empty())
                .then(|| RawValue::from_string(ep.custom_data_json.clone()).ok())
                .flatten();
            let iat = now_ms / 1000;
            let claims = Claims {
                endpoint_id: &ep.id,
                endpoint_name: &ep.name,
                tenant_id: &ep.tenant_id,
                event_id: &first.event_id,
                event_type: &first.event_type,
                event_count: chunk.len(),
                resource: first.resource.as_ref().map(|r| Resource {
                    kind: &r.r#type,
                    id: &r.id,
                }),
                triggered_at: rfc3339_ms(now_ms),
                last_success_at: history.last_success_at_ms.map(rfc3339_ms),
                last_failure_at: history.last_failure_at_ms.map(rfc3339_ms),
                processing_timeout: ep.timeout_ms.div_ceil(1000),
                data: custom.as_deref(),
                iat,
                exp: iat + i64::from(j.ttl_secs.max(1)),
            };
            let claims = with_own_claims(&claims, &j.claims_json)?;
            let token = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(j.secret.as_bytes()),
            )
            .map_err(|e| format!("cannot sign the JWT: {e}"))?;
            Ok(Some(format!("Bearer {token}")))
        }
    }
}

/// Herald's claims, then the endpoint's own static ones (checked at the
/// API edge: no name of Herald's; Herald's win if one slipped through).
fn with_own_claims(
    claims: &Claims<'_>,
    own_json: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let serde_json::Value::Object(mut map) =
        serde_json::to_value(claims).map_err(|e| format!("cannot build the JWT: {e}"))?
    else {
        return Err("cannot build the JWT".into());
    };
    if own_json.is_empty() {
        return Ok(map);
    }
    let own: serde_json::Map<String, serde_json::Value> = serde_json::from_str(own_json)
        .map_err(|_| "the endpoint's JWT claims are not an object".to_string())?;
    for (k, v) in own {
        map.entry(k).or_insert(v);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(kind: pb::receiver_auth::Kind) -> pb::DeliveryEndpoint {
        pb::DeliveryEndpoint {
            id: "ep_1".into(),
            name: "orders".into(),
            tenant_id: "acme".into(),
            timeout_ms: 15_000,
            custom_data_json: r#"{"purpose":"demo"}"#.into(),
            auth: Some(pb::ReceiverAuth { kind: Some(kind) }),
            ..Default::default()
        }
    }

    #[test]
    fn basic_is_user_colon_password_in_base64() {
        let e = ep(pb::receiver_auth::Kind::Basic(pb::BasicAuth {
            username: "Aladdin".into(),
            password: "open sesame".into(),
        }));
        // RFC 7617's example.
        assert_eq!(
            header(&e, &[], History::default(), 0).unwrap().unwrap(),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn no_auth_no_header() {
        let e = pb::DeliveryEndpoint::default();
        assert_eq!(header(&e, &[], History::default(), 0), Ok(None));
    }
}
