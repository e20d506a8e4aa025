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
        let r = req.into_inner();
        let size = validate::id_page(r.page_size, &r.page_token)?;
        let (mut tenants, mut after) = (Vec::new(), r.page_token);
        // A key limited to some tenants skips the others, so a page is
        // read until it is full or etcd has no more.
        loop {
            let (page, more) = self
                .store()
                .list_page::<TenantRecord>(keys::TENANTS, &after, size - tenants.len())
                .await?;
            if let Some((id, _)) = page.last() {
                after = id.clone();
            }
            tenants.extend(
                page.iter()
                    .filter(|(_, v)| {
                        principal
                            .as_ref()
                            .is_some_and(|p| p.key.may_act_for(&v.value.id))
                    })
                    .map(|(_, v)| convert::tenant(&v.value, v.revision)),
            );
            if !more {
                after.clear();
                break;
            }
            if tenants.len() == size {
                break;
            }
        }
        Ok(Response::new(pb::ListTenantsResponse {
            tenants,
            next_page_token: after,
        }))
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
