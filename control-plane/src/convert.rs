//! Conversions between stored records and protobuf messages. Secrets are
//! only copied into the agent-facing message, never into API replies.

use herald_proto::v1 as pb;
use herald_shared::model::{
    AuthRecord, EndpointRecord, EventTypeRecord, ExpiringSecretRecord, FilterRecord, Method,
    TenantRecord,
};

use crate::view::EndpointEntry;

/// Public view of an event type.
pub fn event_type(rec: &EventTypeRecord, revision: i64) -> pb::EventType {
    pb::EventType {
        name: rec.name.clone(),
        group: rec.group.clone(),
        display_name: rec.display_name.clone(),
        description: rec.description.clone(),
        schema_json: rec.schema_json.clone(),
        example_json: rec.example_json.clone(),
        archived: rec.archived,
        revision,
    }
}

/// Public view of a tenant.
pub fn tenant(rec: &TenantRecord, revision: i64) -> pb::Tenant {
    pb::Tenant {
        id: rec.id.clone(),
        name: rec.name.clone(),
        created_at_ms: rec.created_at_ms,
        revision,
    }
}

/// An endpoint's secrets (`GetEndpointSecret`): the current signing
/// secret, the rotated-out ones still signing at `now_ms`, and the
/// receiver auth secret.
pub fn endpoint_secrets(rec: &EndpointRecord, now_ms: i64) -> pb::GetEndpointSecretResponse {
    let (jwt_secret, basic_password) = match &rec.auth {
        Some(AuthRecord::Jwt { secret, .. }) => (secret.clone(), String::new()),
        Some(AuthRecord::Basic { password, .. }) => (String::new(), password.clone()),
        None => Default::default(),
    };
    pb::GetEndpointSecretResponse {
        signing_secret: rec.signing_secrets.first().cloned().unwrap_or_default(),
        previous_signing_secrets: rec
            .previous_secrets
            .iter()
            .filter(|p| p.expires_at_ms > now_ms)
            .map(expiring_secret)
            .collect(),
        jwt_secret,
        basic_password,
    }
}

fn expiring_secret(p: &ExpiringSecretRecord) -> pb::ExpiringSecret {
    pb::ExpiringSecret {
        secret: p.secret.clone(),
        expires_at_ms: p.expires_at_ms,
    }
}

/// Public view of an endpoint: everything but its secrets.
pub fn endpoint(rec: &EndpointRecord, revision: i64) -> pb::Endpoint {
    pb::Endpoint {
        id: rec.id.clone(),
        tenant_id: rec.tenant_id.clone(),
        spec: Some(pb::EndpointSpec {
            name: rec.name.clone(),
            description: rec.description.clone(),
            url: rec.url.clone(),
            method: match rec.method {
                Method::Post => pb::HttpMethod::Post,
                Method::Get => pb::HttpMethod::Get,
            } as i32,
            enabled: rec.enabled,
            event_types: rec.event_types.clone(),
            headers: rec.headers.clone().into_iter().collect(),
            custom_data_json: rec.custom_data_json.clone(),
            timeout_ms: rec.timeout_ms,
            labels: rec.labels.clone().into_iter().collect(),
            retry: Some(pb::RetryPolicy {
                delays_ms: delays_u32(&rec.retry_schedule()),
            }),
            disable_after_failures: rec.disable_after_failures,
            ordering: if rec.max_in_flight == 0 {
                pb::Ordering::Ordered
            } else {
                pb::Ordering::Unordered
            } as i32,
            max_in_flight: rec.max_in_flight,
            queue_while_disabled: rec.queue_while_disabled,
            skip_keys: rec.skip_keys.clone(),
            filters: filters(&rec.filters),
            filter_rules: rec
                .filter_rules
                .iter()
                .map(|r| pb::FilterRule {
                    event_types: r.event_types.clone(),
                    all_of: filters(&r.all_of),
                    any_of: filters(&r.any_of),
                })
                .collect(),
            on_field_change: rec.on_field_change.clone(),
            load_only: rec.load_only.clone(),
            omit_standard_signature: rec.omit_standard_signature,
            body_signature: body_signature(rec),
            // Secrets are write-only: the reply says which kind, not the value.
            auth: auth(rec, false),
            chunk_size: rec.chunk_size.max(1),
            chunk_delay_ms: rec.chunk_delay_ms,
            rate_limit_per_sec: rec.rate_limit_per_sec,
            insecure_tls: rec.insecure_tls,
            signature_scheme: if rec.signs_with_ed25519() {
                pb::SignatureScheme::Ed25519
            } else {
                pb::SignatureScheme::HmacSha256
            } as i32,
        }),
        // Public keys are not secrets: receivers need them to verify.
        signing_public_keys: rec
            .live_secrets(herald_shared::time::now_ms())
            .iter()
            .filter_map(|s| herald_shared::signing::public_key(s).ok())
            .collect(),
        previous_secret_expires_at_ms: rec
            .previous_secrets
            .iter()
            .map(|p| p.expires_at_ms)
            .filter(|t| *t > herald_shared::time::now_ms())
            .max()
            .unwrap_or(0),
        disabled_reason: rec.disabled_reason.clone(),
        disabled_at_ms: rec.disabled_at_ms,
        created_at_ms: rec.created_at_ms,
        updated_at_ms: rec.updated_at_ms,
        revision,
    }
}

/// What an agent needs to deliver to an endpoint, secrets included.
pub fn delivery_endpoint(e: &EndpointEntry) -> pb::DeliveryEndpoint {
    let r = &e.record;
    pb::DeliveryEndpoint {
        id: r.id.clone(),
        tenant_id: r.tenant_id.clone(),
        name: r.name.clone(),
        slot: e.slot,
        url: r.url.clone(),
        use_get: r.method == Method::Get,
        enabled: r.enabled,
        headers: r.headers.clone().into_iter().collect(),
        custom_data_json: r.custom_data_json.clone(),
        timeout_ms: r.timeout_ms,
        signing_secrets: r.signing_secrets.clone(),
        revision: e.revision,
        retry_delays_ms: delays_u32(&r.retry_schedule()),
        disable_after_failures: r.disable_after_failures,
        max_in_flight: r.max_in_flight,
        previous_signing_secrets: r.previous_secrets.iter().map(expiring_secret).collect(),
        omit_standard_signature: r.omit_standard_signature,
        body_signature: body_signature(r),
        auth: auth(r, true),
        chunk_size: r.chunk_size.max(1),
        chunk_delay_ms: r.chunk_delay_ms,
        rate_limit_per_sec: r.rate_limit_per_sec,
        insecure_tls: r.insecure_tls,
    }
}

/// Filter operators: the wire's and the stored names (which are
/// [`herald_shared::filter::Op`]'s, independent of the proto).
const FILTER_OPS: [(pb::FilterOp, &str); 10] = [
    (pb::FilterOp::Eq, "eq"),
    (pb::FilterOp::Ne, "ne"),
    (pb::FilterOp::In, "in"),
    (pb::FilterOp::NotIn, "not_in"),
    (pb::FilterOp::Gt, "gt"),
    (pb::FilterOp::Gte, "gte"),
    (pb::FilterOp::Lt, "lt"),
    (pb::FilterOp::Lte, "lte"),
    (pb::FilterOp::Contains, "contains"),
    (pb::FilterOp::Exists, "exists"),
];

/// The stored name of a wire operator; `None` for UNSPECIFIED or unknown.
pub fn filter_op_name(op: i32) -> Option<&'static str> {
    FILTER_OPS
        .iter()
        .find(|(w, _)| *w as i32 == op)
        .map(|(_, n)| *n)
}

fn filters(stored: &[FilterRecord]) -> Vec<pb::Filter> {
    stored
        .iter()
        .map(|f| pb::Filter {
            path: f.path.clone(),
            op: FILTER_OPS
                .iter()
                .find(|(_, n)| *n == f.op)
                .map_or(pb::FilterOp::Unspecified, |(w, _)| *w) as i32,
            value_json: f.value_json.clone(),
        })
        .collect()
}

fn body_signature(r: &EndpointRecord) -> Option<pb::BodySignature> {
    r.body_signature.as_ref().map(|b| pb::BodySignature {
        header: b.header.clone(),
        encoding: if b.base64 {
            pb::SignatureEncoding::Base64
        } else {
            pb::SignatureEncoding::Hex
        } as i32,
    })
}

/// The endpoint's receiver auth; its secret only `with_secret`.
fn auth(r: &EndpointRecord, with_secret: bool) -> Option<pb::ReceiverAuth> {
    let keep = |s: &String| {
        if with_secret {
            s.clone()
        } else {
            String::new()
        }
    };
    let kind = match r.auth.as_ref()? {
        AuthRecord::Basic { username, password } => pb::receiver_auth::Kind::Basic(pb::BasicAuth {
            username: username.clone(),
            password: keep(password),
        }),
        AuthRecord::Jwt {
            secret,
            ttl_secs,
            claims_json,
        } => pb::receiver_auth::Kind::Jwt(pb::JwtAuth {
            secret: keep(secret),
            ttl_secs: *ttl_secs,
            claims_json: claims_json.clone(),
        }),
    };
    Some(pb::ReceiverAuth { kind: Some(kind) })
}

/// Validated delays fit in u32 (at most a day in ms).
fn delays_u32(ms: &[u64]) -> Vec<u32> {
    ms.iter()
        .map(|d| u32::try_from(*d).unwrap_or(u32::MAX))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_show_the_current_and_the_still_signing_ones() {
        let rec = EndpointRecord {
            signing_secrets: vec!["whsec_new".into()],
            previous_secrets: vec![
                ExpiringSecretRecord {
                    secret: "whsec_gone".into(),
                    expires_at_ms: 100,
                },
                ExpiringSecretRecord {
                    secret: "whsec_old".into(),
                    expires_at_ms: 200,
                },
            ],
            auth: Some(AuthRecord::Basic {
                username: "u".into(),
                password: "pw".into(),
            }),
            ..Default::default()
        };
        let s = endpoint_secrets(&rec, 100);
        assert_eq!(s.signing_secret, "whsec_new");
        let previous: Vec<&str> = s
            .previous_signing_secrets
            .iter()
            .map(|p| p.secret.as_str())
            .collect();
        assert_eq!(previous, ["whsec_old"], "expired ones sign no more");
        assert_eq!(
            (s.basic_password.as_str(), s.jwt_secret.as_str()),
            ("pw", "")
        );
        // The public view carries none of them.
        let public = format!("{:?}", endpoint(&rec, 1));
        assert!(
            !public.contains("whsec_") && !public.contains("pw\""),
            "{public}"
        );
    }
}
