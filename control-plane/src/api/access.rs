//! AccessService: create, list and revoke API keys. The access layer has
//! checked the caller holds `admin` before any of these run.

use herald_proto::v1 as pb;
use herald_proto::v1::access_service_server::AccessService;
use herald_shared::time::now_ms;
use tonic::{Request, Response, Status};

use super::Api;
use crate::access::{ApiKeyRecord, Principal, Scope, key, record};
use crate::error::{Error, Result};
use crate::store::{CreateConflict, Store, keys};
use crate::validate;

/// Most tenants one key may be limited to.
const MAX_KEY_TENANTS: usize = 100;

/// The etcd key of an API key, relative to the prefix.
fn etcd_key(id: &str) -> String {
    format!("{}{id}", keys::API_KEYS)
}

/// Checks a create request; the record to store (hash and id still to set).
fn checked(r: pb::CreateApiKeyRequest, created_by: &str, now: i64) -> Result<ApiKeyRecord> {
    validate::display_text("name", &r.name, 128, true)?;
    if r.scopes.is_empty() {
        return Err(Error::invalid("scopes", "must list at least one scope"));
    }
    let mut scopes = Vec::with_capacity(r.scopes.len());
    for (i, s) in r.scopes.iter().enumerate() {
        let scope = Scope::parse(s).ok_or_else(|| {
            let known: Vec<&str> = Scope::ALL.iter().map(|s| s.name()).collect();
            Error::invalid(
                format!("scopes[{i}]"),
                format!("'{s}' is not a scope ({})", known.join(", ")),
            )
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    validate::count("tenants", r.tenants.len(), MAX_KEY_TENANTS)?;
    for (i, t) in r.tenants.iter().enumerate() {
        validate::name(&format!("tenants[{i}]"), t)?;
    }
    if r.expires_at_ms < 0 || (r.expires_at_ms != 0 && r.expires_at_ms <= now) {
        return Err(Error::invalid(
            "expires_at_ms",
            "must be in the future (0: never expires)",
        ));
    }
    Ok(ApiKeyRecord {
        version: record::VERSION,
        id: String::new(),
        name: r.name,
        scopes,
        tenants: r.tenants,
        expires_at_ms: r.expires_at_ms,
        created_at_ms: now,
        created_by: created_by.to_string(),
        secret_sha256: String::new(),
    })
}

fn to_wire(r: &ApiKeyRecord) -> pb::ApiKey {
    pb::ApiKey {
        id: r.id.clone(),
        name: r.name.clone(),
        scopes: r.scopes.iter().map(|s| s.name().to_string()).collect(),
        tenants: r.tenants.clone(),
        expires_at_ms: r.expires_at_ms,
        created_at_ms: r.created_at_ms,
        created_by: r.created_by.clone(),
    }
}

/// Stores `rec` under a fresh key; the key's text.
async fn store_new(store: &Store, mut rec: ApiKeyRecord) -> Result<(String, ApiKeyRecord, i64)> {
    let generated = key::generate();
    rec.id = generated.id;
    rec.secret_sha256 = generated.hash;
    match store.create(&etcd_key(&rec.id), &rec, None).await {
        Ok(rev) => Ok((generated.text, rec, rev)),
        Err(CreateConflict::Store(e)) => Err(e),
        // 64 random bits collided: vanishingly rare; the caller retries.
        Err(_) => Err(Error::Unavailable("key id collision; retry".into())),
    }
}

/// Creates the bootstrap admin key `text` if no key with its id exists.
/// Returns whether it was created.
pub async fn bootstrap(store: &Store, text: &str) -> Result<bool> {
    let (id, secret) =
        key::parse(text).ok_or_else(|| Error::invalid("bootstrap key", "is not an API key"))?;
    let rec = ApiKeyRecord {
        version: record::VERSION,
        id: id.to_string(),
        name: format!("bootstrap-{id}"),
        scopes: vec![Scope::Admin],
        tenants: Vec::new(),
        expires_at_ms: 0,
        created_at_ms: now_ms(),
        created_by: "bootstrap".into(),
        secret_sha256: key::hash(secret),
    };
    match store.create(&etcd_key(id), &rec, None).await {
        Ok(_) => Ok(true),
        Err(CreateConflict::Store(e)) => Err(e),
        Err(_) => Ok(false),
    }
}

/// Creates a new admin key (for `--create-admin-key`); its text.
pub async fn create_admin(store: &Store) -> Result<String> {
    let now = now_ms();
    let req = pb::CreateApiKeyRequest {
        name: format!("admin-{now}"),
        scopes: vec![Scope::Admin.name().into()],
        ..Default::default()
    };
    let (text, _, _) = store_new(store, checked(req, "create-admin-key", now)?).await?;
    Ok(text)
}

#[tonic::async_trait]
impl AccessService for Api {
    async fn create_api_key(
        &self,
        req: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let by = req
            .extensions()
            .get::<Principal>()
            .map(|p| p.key.id.clone())
            .unwrap_or_default();
        let rec = checked(req.into_inner(), &by, now_ms())?;
        let taken = self
            .view()
            .read(|v| v.api_keys.values().any(|k| k.name == rec.name));
        if taken {
            return Err(Error::AlreadyExists(format!("a key named '{}' exists", rec.name)).into());
        }
        let (text, rec, rev) = store_new(self.store(), rec).await?;
        self.settle(rev).await?;
        tracing::info!(key_id = %rec.id, created_by = %by, "API key created");
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key: Some(to_wire(&rec)),
            key: text,
        }))
    }

    async fn list_api_keys(
        &self,
        _req: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let mut api_keys: Vec<pb::ApiKey> = self
            .view()
            .read(|v| v.api_keys.values().map(|k| to_wire(k)).collect());
        api_keys.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Ok(Response::new(pb::ListApiKeysResponse { api_keys }))
    }

    async fn revoke_api_key(
        &self,
        req: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let by = req
            .extensions()
            .get::<Principal>()
            .map(|p| p.key.id.clone())
            .unwrap_or_default();
        let id = req.into_inner().id;
        validate::name("id", &id)?;
        let Some((rev, _)) = self.store().delete_with(&etcd_key(&id), &[]).await? else {
            return Err(Error::NotFound(format!("API key '{id}' not found")).into());
        };
        self.settle(rev).await?;
        tracing::info!(key_id = %id, revoked_by = %by, "API key revoked");
        Ok(Response::new(pb::RevokeApiKeyResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(scopes: &[&str]) -> pb::CreateApiKeyRequest {
        pb::CreateApiKeyRequest {
            name: "ci".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn field(r: Result<ApiKeyRecord>) -> String {
        match r {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn create_requests_are_checked_naming_the_field() {
        assert!(
            checked(req(&["publish", "publish"]), "k", 10)
                .unwrap()
                .scopes
                == [Scope::Publish]
        );
        assert_eq!(field(checked(req(&[]), "k", 10)), "scopes");
        assert_eq!(
            field(checked(req(&["publish", "root"]), "k", 10)),
            "scopes[1]"
        );
        let r = pb::CreateApiKeyRequest {
            name: String::new(),
            ..req(&["publish"])
        };
        assert_eq!(field(checked(r, "k", 10)), "name");
        let r = pb::CreateApiKeyRequest {
            tenants: vec!["a/b".into()],
            ..req(&["publish"])
        };
        assert_eq!(field(checked(r, "k", 10)), "tenants[0]");
        let r = pb::CreateApiKeyRequest {
            expires_at_ms: 10,
            ..req(&["publish"])
        };
        assert_eq!(field(checked(r, "k", 10)), "expires_at_ms");
        let r = pb::CreateApiKeyRequest {
            expires_at_ms: 11,
            ..req(&["publish"])
        };
        assert!(checked(r, "k", 10).is_ok());
    }
}
