//! EndpointService.

use herald_proto::v1 as pb;
use herald_proto::v1::endpoint_service_server::EndpointService;
use herald_shared::ids::new_endpoint_id;
use herald_shared::model::{AuthRecord, EndpointRecord, ExpiringSecretRecord};
use herald_shared::signing::{
    generate_jwt_secret, generate_private_key, generate_secret, is_private_key,
};
use herald_shared::time::now_ms;
use tonic::{Request, Response, Status};

use super::{Api, expected_revision};
use crate::convert;
use crate::error::{Error, Result};
use crate::store::{CreateConflict, keys};
use crate::validate;

fn key(tenant: &str, id: &str) -> String {
    format!("{}{tenant}/{id}", keys::ENDPOINTS)
}

impl Api {
    fn checked_spec(&self, spec: Option<pb::EndpointSpec>) -> Result<EndpointRecord> {
        self.view()
            .read(|v| validate::endpoint_spec(spec, self.config().allow_http, &v.event_types))
    }

    async fn load_endpoint(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<crate::store::Versioned<EndpointRecord>> {
        validate::name("tenant_id", tenant)?;
        validate::name("id", id)?;
        self.store().get(&key(tenant, id)).await?.ok_or_else(|| {
            Error::NotFound(format!("endpoint '{id}' of tenant '{tenant}' not found"))
        })
    }
}

impl Api {
    /// An agent asks to disable an endpoint (410 Gone, or too many
    /// deliveries failed in a row). Done only if the endpoint is still at the
    /// revision the agent saw: a config change since then (say, an operator
    /// re-enabling it) wins, and the agent will ask again if it must.
    pub(crate) async fn auto_disable(&self, req: pb::DisableEndpoint) -> Result<()> {
        let current = self.load_endpoint(&req.tenant_id, &req.endpoint_id).await?;
        if !current.value.enabled || current.revision != req.revision {
            return Ok(());
        }
        let now = now_ms();
        let rec = EndpointRecord {
            enabled: false,
            disabled_reason: req.reason.clone(),
            disabled_at_ms: now,
            updated_at_ms: now,
            ..current.value
        };
        let key = key(&rec.tenant_id, &rec.id);
        if self
            .store()
            .update(&key, &rec, current.revision)
            .await?
            .is_some()
        {
            tracing::warn!(endpoint = %rec.id, tenant = %rec.tenant_id, reason = %req.reason, "endpoint disabled");
            self.publish_disabled(&rec, "herald", &req.reason, now, req.last_failure.as_ref())
                .await;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl EndpointService for Api {
    async fn create_endpoint(
        &self,
        req: Request<pb::CreateEndpointRequest>,
    ) -> Result<Response<pb::CreateEndpointResponse>, Status> {
        let r = req.into_inner();
        validate::name("tenant_id", &r.tenant_id)?;
        let ed25519 = validate::scheme(
            "spec.signature_scheme",
            r.spec.as_ref().map_or(0, |s| s.signature_scheme),
        )?
        .unwrap_or(false);
        let mut spec = self.checked_spec(r.spec)?;
        let secret = if ed25519 {
            generate_private_key()
        } else {
            generate_secret()
        };
        let mut jwt_secret = String::new();
        if let Some(AuthRecord::Jwt { secret, .. }) = &mut spec.auth
            && secret.is_empty()
        {
            *secret = generate_jwt_secret();
            jwt_secret = secret.clone();
        }
        let now = now_ms();
        let rec = EndpointRecord {
            id: new_endpoint_id(),
            tenant_id: r.tenant_id,
            signing_secrets: vec![secret.clone()],
            created_at_ms: now,
            updated_at_ms: now,
            ..spec
        };
        let tenant_key = super::tenants::key(&rec.tenant_id);
        let rev = match self
            .store()
            .create(&key(&rec.tenant_id, &rec.id), &rec, Some(&tenant_key))
            .await
        {
            Ok(rev) => rev,
            Err(CreateConflict::Store(e)) => return Err(e.into()),
            Err(CreateConflict::MissingRequired) => {
                return Err(
                    Error::NotFound(format!("tenant '{}' not found", rec.tenant_id)).into(),
                );
            }
            Err(CreateConflict::Exists) => {
                return Err(Error::AlreadyExists(format!(
                    "endpoint id '{}' collided; retry",
                    rec.id
                ))
                .into());
            }
        };
        self.settle(rev).await?;
        tracing::info!(endpoint = %rec.id, tenant = %rec.tenant_id, "endpoint created");
        Ok(Response::new(pb::CreateEndpointResponse {
            endpoint: Some(convert::endpoint(&rec, rev)),
            signing_secret: secret,
            jwt_secret,
        }))
    }

    async fn get_endpoint(
        &self,
        req: Request<pb::GetEndpointRequest>,
    ) -> Result<Response<pb::Endpoint>, Status> {
        let r = req.into_inner();
        let v = self.load_endpoint(&r.tenant_id, &r.id).await?;
        Ok(Response::new(convert::endpoint(&v.value, v.revision)))
    }

    async fn get_endpoint_secret(
        &self,
        req: Request<pb::GetEndpointSecretRequest>,
    ) -> Result<Response<pb::GetEndpointSecretResponse>, Status> {
        let r = req.into_inner();
        let v = self.load_endpoint(&r.tenant_id, &r.id).await?;
        Ok(Response::new(convert::endpoint_secrets(
            &v.value,
            herald_shared::time::now_ms(),
        )))
    }

    async fn list_endpoints(
        &self,
        req: Request<pb::ListEndpointsRequest>,
    ) -> Result<Response<pb::ListEndpointsResponse>, Status> {
        let r = req.into_inner();
        let tenant = r.tenant_id;
        validate::name("tenant_id", &tenant)?;
        let size = validate::id_page(r.page_size, &r.page_token)?;
        // Like every other call naming a tenant: one that does not exist is
        // NOT_FOUND, not an empty list.
        if self
            .store()
            .get::<herald_shared::model::TenantRecord>(&super::tenants::key(&tenant))
            .await?
            .is_none()
        {
            return Err(Error::NotFound(format!("tenant '{tenant}' not found")).into());
        }
        let (page, more) = self
            .store()
            .list_page::<EndpointRecord>(
                &format!("{}{tenant}/", keys::ENDPOINTS),
                &r.page_token,
                size,
            )
            .await?;
        let next_page_token = match page.last() {
            Some((id, _)) if more => id.clone(),
            _ => String::new(),
        };
        let endpoints = page
            .iter()
            .map(|(_, v)| convert::endpoint(&v.value, v.revision))
            .collect();
        Ok(Response::new(pb::ListEndpointsResponse {
            endpoints,
            next_page_token,
        }))
    }

    async fn update_endpoint(
        &self,
        req: Request<pb::UpdateEndpointRequest>,
    ) -> Result<Response<pb::Endpoint>, Status> {
        let r = req.into_inner();
        let expected = expected_revision(r.expected_revision)?;
        let asked = validate::scheme(
            "spec.signature_scheme",
            r.spec.as_ref().map_or(0, |s| s.signature_scheme),
        )?;
        let mut spec = self.checked_spec(r.spec)?;
        let old = self.load_endpoint(&r.tenant_id, &r.id).await?.value;
        let (was_enabled, old_reason) = (old.enabled, old.disabled_reason.clone());
        if asked.is_some_and(|ed| ed != old.signs_with_ed25519()) {
            return Err(Error::invalid(
                "spec.signature_scheme",
                "changes only through RotateSecret (with its scheme), which hands out the new key",
            )
            .into());
        }
        keep_auth_secret(&mut spec.auth, old.auth)?;
        // A secret of the user's own signs only the body HMAC: the spec may
        // not turn the Standard Webhooks signature on, or the body HMAC off.
        if old
            .signing_secrets
            .iter()
            .any(|s| validate::is_shared_secret(s))
        {
            body_hmac_only(
                "spec.omit_standard_signature",
                spec.omit_standard_signature,
                spec.body_signature.is_some(),
            )?;
        }
        let now = now_ms();
        let rec = EndpointRecord {
            id: old.id,
            tenant_id: old.tenant_id,
            signing_secrets: old.signing_secrets,
            previous_secrets: old
                .previous_secrets
                .into_iter()
                .filter(|p| p.expires_at_ms > now)
                .collect(),
            created_at_ms: old.created_at_ms,
            updated_at_ms: now_ms(),
            // Enabling clears why Herald disabled it; otherwise the reason stays.
            disabled_reason: if spec.enabled {
                String::new()
            } else {
                old.disabled_reason
            },
            disabled_at_ms: if spec.enabled { 0 } else { old.disabled_at_ms },
            ..spec
        };
        let Some(rev) = self
            .store()
            .update(&key(&rec.tenant_id, &rec.id), &rec, expected)
            .await?
        else {
            // Gone, or changed since the caller read it.
            self.load_endpoint(&r.tenant_id, &r.id).await?;
            return Err(Error::FailedPrecondition(format!(
                "endpoint '{}' changed since revision {expected}; read it again",
                r.id
            ))
            .into());
        };
        self.settle(rev).await?;
        match (was_enabled, rec.enabled) {
            (false, true) => self.publish_enabled(&rec, &old_reason).await,
            (true, false) => {
                let reason = "disabled through the API";
                self.publish_disabled(&rec, "api", reason, rec.updated_at_ms, None)
                    .await
            }
            _ => {}
        }
        Ok(Response::new(convert::endpoint(&rec, rev)))
    }

    async fn delete_endpoint(
        &self,
        req: Request<pb::DeleteEndpointRequest>,
    ) -> Result<Response<pb::DeleteEndpointResponse>, Status> {
        let r = req.into_inner();
        validate::name("tenant_id", &r.tenant_id)?;
        validate::name("id", &r.id)?;
        let Some((rev, _)) = self
            .store()
            .delete_with(&key(&r.tenant_id, &r.id), &[])
            .await?
        else {
            return Err(Error::NotFound(format!(
                "endpoint '{}' of tenant '{}' not found",
                r.id, r.tenant_id
            ))
            .into());
        };
        self.settle(rev).await?;
        Ok(Response::new(pb::DeleteEndpointResponse {}))
    }

    async fn rotate_secret(
        &self,
        req: Request<pb::RotateSecretRequest>,
    ) -> Result<Response<pb::RotateSecretResponse>, Status> {
        let r = req.into_inner();
        let kind = pb::SecretKind::try_from(r.kind)
            .map_err(|_| Error::invalid("kind", format!("unknown secret kind {}", r.kind)))?;
        let jwt = kind == pb::SecretKind::Jwt;
        let overlap_ms = match (jwt, r.overlap_secs) {
            (true, Some(_)) => {
                return Err(Error::invalid(
                    "overlap_secs",
                    "applies to signing secrets only: a request carries one JWT",
                )
                .into());
            }
            (_, None) => i64::from(DEFAULT_OVERLAP_SECS) * 1000,
            (false, Some(s)) if s <= MAX_OVERLAP_SECS => i64::from(s) * 1000,
            (false, Some(s)) => {
                return Err(Error::invalid(
                    "overlap_secs",
                    format!("{s} is over {MAX_OVERLAP_SECS} (30 days)"),
                )
                .into());
            }
        };
        let scheme = validate::scheme("scheme", r.scheme)?;
        if jwt && scheme.is_some() {
            return Err(Error::invalid("scheme", "applies to signing secrets only").into());
        }
        // A caller's secret is checked now; a generated one is made from the
        // record read below (its scheme, unless the request names one).
        let mut new_secret = match (jwt, r.secret.is_empty()) {
            (_, true) => None,
            (false, false) if validate::is_shared_secret(&r.secret) => {
                validate::shared_secret("secret", &r.secret)?;
                if scheme == Some(true) {
                    return Err(Error::invalid("secret", "is not an Ed25519 key").into());
                }
                Some(r.secret)
            }
            (false, false) => {
                validate::signing_secret("secret", &r.secret)?;
                if scheme.is_some_and(|ed| ed != is_private_key(&r.secret)) {
                    return Err(
                        Error::invalid("secret", "is not a key of the scheme asked for").into(),
                    );
                }
                Some(r.secret)
            }
            (true, false) => {
                validate::jwt_secret("secret", &r.secret, false)?;
                Some(r.secret)
            }
        };
        // A concurrent update wins the race; read again and redo ours on it.
        for _ in 0..5 {
            let current = self.load_endpoint(&r.tenant_id, &r.id).await?;
            let mut rec = current.value;
            let now = now_ms();
            rec.updated_at_ms = now;
            rec.previous_secrets.retain(|p| p.expires_at_ms > now);
            if let Some(s) = &new_secret
                && !jwt
                && validate::is_shared_secret(s)
            {
                body_hmac_only(
                    "secret",
                    rec.omit_standard_signature,
                    rec.body_signature.is_some(),
                )?;
            }
            let new_secret = new_secret
                .get_or_insert_with(|| match (jwt, scheme.unwrap_or(rec.signs_with_ed25519())) {
                    (true, _) => generate_jwt_secret(),
                    (false, true) => generate_private_key(),
                    (false, false) => generate_secret(),
                })
                .clone();
            if jwt {
                let Some(AuthRecord::Jwt { secret, .. }) = &mut rec.auth else {
                    return Err(Error::FailedPrecondition(format!(
                        "endpoint '{}' does not use JWT auth",
                        rec.id
                    ))
                    .into());
                };
                *secret = new_secret.clone();
            } else {
                if overlap_ms == 0 {
                    // A regenerate after a leak: nothing old signs any more.
                    rec.previous_secrets.clear();
                } else {
                    rec.previous_secrets
                        .extend(
                            rec.signing_secrets
                                .drain(..)
                                .map(|secret| ExpiringSecretRecord {
                                    secret,
                                    expires_at_ms: now + overlap_ms,
                                }),
                        );
                }
                rec.signing_secrets = vec![new_secret.clone()];
            }
            let key = key(&rec.tenant_id, &rec.id);
            if let Some(rev) = self.store().update(&key, &rec, current.revision).await? {
                self.settle(rev).await?;
                tracing::info!(endpoint = %rec.id, tenant = %rec.tenant_id, jwt, overlap_ms, "secret rotated");
                return Ok(Response::new(pb::RotateSecretResponse {
                    endpoint: Some(convert::endpoint(&rec, rev)),
                    secret: new_secret,
                }));
            }
        }
        Err(Error::Unavailable(format!("endpoint '{}' keeps changing; retry", r.id)).into())
    }
}

/// How long a rotated-out signing secret keeps signing by default.
const DEFAULT_OVERLAP_SECS: u32 = 86_400;
/// Longest overlap a rotation may ask for.
const MAX_OVERLAP_SECS: u32 = 30 * 86_400;

/// A shared secret of the user's own (not a `whsec_` key) can key only the
/// body HMAC: the endpoint must omit the Standard Webhooks signature and
/// send a body signature.
fn body_hmac_only(field: &str, omit_standard: bool, body_signature: bool) -> Result<()> {
    if omit_standard && body_signature {
        return Ok(());
    }
    Err(Error::invalid(
        field,
        "a secret of your own keys only the body HMAC: the endpoint needs \
         omit_standard_signature and a body_signature (or rotate to a generated whsec_ secret)",
    ))
}

/// Secrets are write-only: an update that leaves one empty keeps the stored
/// one of the same kind.
fn keep_auth_secret(new: &mut Option<AuthRecord>, old: Option<AuthRecord>) -> Result<()> {
    match (new, old) {
        (
            Some(AuthRecord::Basic { password, .. }),
            Some(AuthRecord::Basic { password: old, .. }),
        ) if password.is_empty() => *password = old,
        (Some(AuthRecord::Jwt { secret, .. }), Some(AuthRecord::Jwt { secret: old, .. }))
            if secret.is_empty() =>
        {
            *secret = old
        }
        (Some(AuthRecord::Jwt { secret, .. }), _) if secret.is_empty() => {
            return Err(Error::invalid(
                "spec.auth.jwt.secret",
                "is required when switching to JWT auth (at least 32 bytes)",
            ));
        }
        _ => {}
    }
    Ok(())
}
