//! The access decision, as pure functions: a bearer header, the keys and a
//! rule in; the caller's principal or the refusal out.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Code, Status};

use super::rules::{Rule, TenantArg};
use super::{ApiKeyRecord, Scope, key};

/// Who is calling: put in each request's extensions for the handlers that
/// need it (ListTenants, AccessService, and the write log).
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key's record (its `id` goes in logs and `created_by`).
    pub key: Arc<ApiKeyRecord>,
}

impl Principal {
    /// A principal that may do everything: authentication is off.
    pub fn unauthenticated() -> Self {
        Self::keyless("none", "authentication off", Scope::Admin)
    }

    /// A cluster member, known by its certificate.
    pub fn member() -> Self {
        Self::keyless("member", "cluster certificate", Scope::ClusterAgent)
    }

    fn keyless(id: &str, name: &str, scope: Scope) -> Self {
        Principal {
            key: Arc::new(ApiKeyRecord {
                version: super::record::VERSION,
                id: id.into(),
                name: name.into(),
                scopes: vec![scope],
                tenants: Vec::new(),
                expires_at_ms: 0,
                created_at_ms: 0,
                created_by: String::new(),
                secret_sha256: String::new(),
            }),
        }
    }
}

/// Why a call was refused. Its text never holds the key's secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No `authorization` header.
    Missing,
    /// Not `Bearer hk_<id>_<secret>`.
    Malformed,
    /// No such key, or the secret does not match.
    Unknown,
    /// The key expired.
    Expired,
    /// The key lacks the scope.
    Scope(Scope),
    /// The key is limited to tenants and the call is not about one.
    LimitedKey(Scope),
    /// The key may not act for this tenant, and the call should not learn
    /// whether it exists.
    HiddenTenant(String),
    /// The key may not create this tenant.
    ForeignTenant(String),
    /// The request could not be read to find its tenant.
    Unreadable,
    /// No rule: the path is not an RPC of ours.
    NoRule(String),
    /// A member-only call without a cluster certificate.
    NotMember,
}

impl Refusal {
    /// The label of the refusals metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Unknown => "unknown",
            Refusal::Expired => "expired",
            Refusal::Scope(_) => "scope",
            Refusal::LimitedKey(_) => "limited_key",
            Refusal::HiddenTenant(_) | Refusal::ForeignTenant(_) => "tenant",
            Refusal::Unreadable => "unreadable",
            Refusal::NoRule(_) => "no_rule",
            Refusal::NotMember => "not_member",
        }
    }

    /// The status the caller gets.
    pub fn status(&self) -> Status {
        let (code, text) = match self {
            Refusal::Missing => (
                Code::Unauthenticated,
                "an API key is required: send 'authorization: Bearer hk_...'".to_string(),
            ),
            Refusal::Malformed => (
                Code::Unauthenticated,
                "the authorization header is not 'Bearer hk_<id>_<secret>'".to_string(),
            ),
            Refusal::Unknown => (
                Code::Unauthenticated,
                "the API key is not valid (unknown, revoked, or a wrong secret)".to_string(),
            ),
            Refusal::Expired => (Code::Unauthenticated, "the API key has expired".to_string()),
            Refusal::Scope(s) => (
                Code::PermissionDenied,
                format!("this call needs scope '{s}', which the API key does not hold"),
            ),
            Refusal::LimitedKey(s) => (
                Code::PermissionDenied,
                format!("this call needs scope '{s}' on a key not limited to tenants"),
            ),
            Refusal::HiddenTenant(t) => (Code::NotFound, format!("tenant '{t}' not found")),
            Refusal::ForeignTenant(t) => (
                Code::PermissionDenied,
                format!("the API key may not act for tenant '{t}'"),
            ),
            Refusal::Unreadable => (
                Code::InvalidArgument,
                "the request could not be decoded".to_string(),
            ),
            Refusal::NoRule(p) => (Code::Unimplemented, format!("no such method {p}")),
            Refusal::NotMember => (
                Code::Unauthenticated,
                "only cluster members may call this: present a certificate from the cluster CA"
                    .to_string(),
            ),
        };
        Status::new(code, text)
    }
}

/// The key a bearer header names, checked: it exists, its secret matches
/// and it has not expired.
pub fn authenticate(
    header: Option<&str>,
    keys: &HashMap<String, Arc<ApiKeyRecord>>,
    now_ms: i64,
) -> Result<Principal, Refusal> {
    let header = header.ok_or(Refusal::Missing)?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or(Refusal::Malformed)?;
    let (id, secret) = key::parse(token.trim()).ok_or(Refusal::Malformed)?;
    let record = keys.get(id).ok_or(Refusal::Unknown)?;
    if !key::matches(secret, &record.secret_sha256) {
        return Err(Refusal::Unknown);
    }
    if record.expires_at_ms != 0 && now_ms >= record.expires_at_ms {
        return Err(Refusal::Expired);
    }
    Ok(Principal {
        key: record.clone(),
    })
}

/// Whether the key may make a call under `rule`, before its tenant is
/// known. `Ok(true)`: the tenants the request names must be checked with
/// [`tenant`].
pub fn authorize(key: &ApiKeyRecord, rule: &Rule) -> Result<bool, Refusal> {
    if !key.grants(rule.scope) {
        return Err(Refusal::Scope(rule.scope));
    }
    match rule.tenant {
        TenantArg::Global if key.limited() => Err(Refusal::LimitedKey(rule.scope)),
        TenantArg::First | TenantArg::Creates | TenantArg::EachEvent => Ok(key.limited()),
        TenantArg::Global | TenantArg::Shared | TenantArg::Listed => Ok(false),
    }
}

/// Whether the key may act for `tenant` in a call under `rule`.
pub fn tenant(key: &ApiKeyRecord, rule: &Rule, tenant: &str) -> Result<(), Refusal> {
    if key.may_act_for(tenant) {
        return Ok(());
    }
    Err(match rule.tenant {
        TenantArg::Creates => Refusal::ForeignTenant(tenant.to_string()),
        _ => Refusal::HiddenTenant(tenant.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::super::rules::find;
    use super::*;

    fn keyed(
        scopes: &[Scope],
        tenants: &[&str],
        expires_at_ms: i64,
    ) -> (String, HashMap<String, Arc<ApiKeyRecord>>) {
        let k = key::generate();
        let rec = ApiKeyRecord {
            version: 1,
            id: k.id.clone(),
            name: "k".into(),
            scopes: scopes.to_vec(),
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            expires_at_ms,
            created_at_ms: 0,
            created_by: "test".into(),
            secret_sha256: k.hash,
        };
        (
            format!("Bearer {}", k.text),
            HashMap::from([(k.id, Arc::new(rec))]),
        )
    }

    #[test]
    fn authentication_refusals() {
        let (header, keys) = keyed(&[Scope::Publish], &[], 1000);
        assert!(authenticate(Some(&header), &keys, 999).is_ok());
        assert_eq!(
            authenticate(Some(&header), &keys, 1000).unwrap_err(),
            Refusal::Expired
        );
        assert_eq!(authenticate(None, &keys, 0).unwrap_err(), Refusal::Missing);
        assert_eq!(
            authenticate(Some("Basic x"), &keys, 0).unwrap_err(),
            Refusal::Malformed
        );
        assert_eq!(
            authenticate(Some(&header[..header.len() - 1]), &keys, 0).unwrap_err(),
            Refusal::Malformed
        );
        let (other, _) = keyed(&[Scope::Publish], &[], 0);
        assert_eq!(
            authenticate(Some(&other), &keys, 0).unwrap_err(),
            Refusal::Unknown
        );
        // Same id, wrong secret.
        let forged = format!("{}{}", &header[..header.len() - 43], "A".repeat(43));
        assert_eq!(
            authenticate(Some(&forged), &keys, 0).unwrap_err(),
            Refusal::Unknown
        );
        for r in [
            Refusal::Missing,
            Refusal::Malformed,
            Refusal::Unknown,
            Refusal::Expired,
        ] {
            assert_eq!(r.status().code(), Code::Unauthenticated);
            assert!(!r.status().message().contains(&header[7..]));
        }
    }

    #[test]
    fn scope_and_tenant_decisions() {
        let publish = find("/herald.v1.PublishService/Publish").unwrap();
        let drain = find("/herald.v1.ClusterService/DrainAgent").unwrap();
        let catalog = find("/herald.v1.CatalogService/ListEventTypes").unwrap();
        let create_tenant = find("/herald.v1.TenantService/CreateTenant").unwrap();
        let (_, keys) = keyed(&[Scope::Publish, Scope::ConfigWrite], &["acme"], 0);
        let k = keys.values().next().unwrap();
        assert_eq!(authorize(k, publish), Ok(true));
        assert_eq!(tenant(k, publish, "acme"), Ok(()));
        assert_eq!(
            tenant(k, publish, "globex"),
            Err(Refusal::HiddenTenant("globex".into()))
        );
        assert_eq!(
            tenant(k, create_tenant, "globex"),
            Err(Refusal::ForeignTenant("globex".into()))
        );
        assert_eq!(
            authorize(k, drain),
            Err(Refusal::Scope(Scope::ClusterWrite))
        );
        assert_eq!(authorize(k, catalog), Ok(false), "catalog reads are shared");
        let s = Refusal::Scope(Scope::ClusterWrite).status();
        assert_eq!(s.code(), Code::PermissionDenied);
        assert!(s.message().contains("cluster:write"));

        let (_, keys) = keyed(&[Scope::Admin], &["acme"], 0);
        let limited_admin = keys.values().next().unwrap();
        assert_eq!(
            authorize(limited_admin, drain),
            Err(Refusal::LimitedKey(Scope::ClusterWrite))
        );
        let (_, keys) = keyed(&[Scope::Admin], &[], 0);
        let admin = keys.values().next().unwrap();
        assert_eq!(authorize(admin, drain), Ok(false));
        assert_eq!(
            authorize(admin, publish),
            Ok(false),
            "an unlimited key needs no tenant check"
        );
    }
}
