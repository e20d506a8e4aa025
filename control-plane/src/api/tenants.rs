//! TenantService.

use herald_proto::v1 as pb;
use herald_proto::v1::tenant_service_server::TenantService;
use herald_shared::model::TenantRecord;
use herald_shared::time::now_ms;
use tonic::{Request, Response, Status};

use super::Api;
use crate::convert;
use crate::error::Error;
use crate::store::{CreateConflict, keys};
use crate::validate;

/// The etcd key of a tenant, relative to the prefix.
pub fn key(id: &str) -> String {
    format!("{}{id}", keys::TENANTS)
}

#[tonic::async_trait]
impl TenantService for Api {
    async fn create_tenant(
        &self,
        req: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let r = req.into_inner();
        validate::name("id", &r.id)?;
        validate::text("name", &r.name)?;
        let rec = TenantRecord {
            name: if r.name.is_empty() {
                r.id.clone()
            } else {
                r.name
            },
            id: r.id,
            created_at_ms: now_ms(),
        };
        let rev = match self.store().create(&key(&rec.id), &rec, None).await {
            Ok(rev) => rev,
            Err(CreateConflict::Store(e)) => return Err(e.into()),
            Err(_) => {
                return Err(
                    Error::AlreadyExists(format!("tenant '{}' already exists", rec.id)).into(),
                );
            }
        };
        self.settle(rev).await?;
        Ok(Response::new(convert::tenant(&rec, rev)))
    }

    async fn get_tenant(
        &self,
        req: Request<pb::GetTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        let id = req.into_inner().id;
        validate::name("id", &id)?;
        let v = self
            .store()
            .get::<TenantRecord>(&key(&id))
            .await?
            .ok_or_else(|| Error::NotFound(format!("tenant '{id}' not found")))?;
        Ok(Response::new(convert::tenant(&v.value, v.revision)))
    }

    async fn list_tenants(
        &self,
        req: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        // A key limited to tenants lists only those (the access layer
        // leaves this one call to the handler).
        let principal = req.extensions().get::<crate::access::Principal>().cloned();
        let all = self.store().list::<TenantRecord>(keys::TENANTS).await?;
        let tenants = all
            .iter()
            .filter(|v| {
                principal
                    .as_ref()
                    .is_some_and(|p| p.key.may_act_for(&v.value.id))
            })
            .map(|v| convert::tenant(&v.value, v.revision))
            .collect();
        Ok(Response::new(pb::ListTenantsResponse { tenants }))
    }

    async fn delete_tenant(
        &self,
        req: Request<pb::DeleteTenantRequest>,
    ) -> Result<Response<pb::DeleteTenantResponse>, Status> {
        let id = req.into_inner().id;
        validate::name("id", &id)?;
        let endpoints = format!("{}{id}/", keys::ENDPOINTS);
        let Some((rev, deleted)) = self.store().delete_with(&key(&id), &[&endpoints]).await? else {
            return Err(Error::NotFound(format!("tenant '{id}' not found")).into());
        };
        self.settle(rev).await?;
        // One of the deleted keys is the tenant itself.
        Ok(Response::new(pb::DeleteTenantResponse {
            endpoints_deleted: (deleted - 1).max(0) as u32,
        }))
    }
}
