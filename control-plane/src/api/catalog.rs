//! CatalogService: event types.

use herald_proto::v1 as pb;
use herald_proto::v1::catalog_service_server::CatalogService;
use herald_shared::model::EventTypeRecord;
use herald_shared::time::now_ms;
use tonic::{Request, Response, Status};

use super::{Api, expected_revision};
use crate::convert;
use crate::error::{Error, Result};
use crate::store::{CreateConflict, Versioned, keys};
use crate::validate;

pub(crate) fn key(name: &str) -> String {
    format!("{}{name}", keys::EVENT_TYPES)
}

impl Api {
    async fn load_event_type(&self, name: &str) -> Result<Versioned<EventTypeRecord>> {
        validate::name("name", name)?;
        self.store()
            .get(&key(name))
            .await?
            .ok_or_else(|| Error::NotFound(format!("event type '{name}' not found")))
    }

    async fn save_event_type(&self, rec: &EventTypeRecord, expected: i64) -> Result<pb::EventType> {
        let Some(rev) = self.store().update(&key(&rec.name), rec, expected).await? else {
            return Err(Error::FailedPrecondition(format!(
                "event type '{}' changed since revision {expected}; read it again",
                rec.name
            )));
        };
        self.settle(rev).await?;
        Ok(convert::event_type(rec, rev))
    }
}

#[tonic::async_trait]
impl CatalogService for Api {
    async fn create_event_type(
        &self,
        req: Request<pb::CreateEventTypeRequest>,
    ) -> Result<Response<pb::EventType>, Status> {
        let r = req.into_inner();
        let rec = EventTypeRecord {
            name: r.name,
            group: r.group,
            display_name: r.display_name,
            description: r.description,
            schema_json: r.schema_json,
            example_json: r.example_json,
            archived: false,
            created_at_ms: now_ms(),
        };
        validate::event_type(&rec)?;
        let rev = match self.store().create(&key(&rec.name), &rec, None).await {
            Ok(rev) => rev,
            Err(CreateConflict::Store(e)) => return Err(e.into()),
            Err(_) => {
                return Err(Error::AlreadyExists(format!(
                    "event type '{}' already exists",
                    rec.name
                ))
                .into());
            }
        };
        self.settle(rev).await?;
        Ok(Response::new(convert::event_type(&rec, rev)))
    }

    async fn get_event_type(
        &self,
        req: Request<pb::GetEventTypeRequest>,
    ) -> Result<Response<pb::EventType>, Status> {
        let v = self.load_event_type(&req.into_inner().name).await?;
        Ok(Response::new(convert::event_type(&v.value, v.revision)))
    }

    async fn list_event_types(
        &self,
        req: Request<pb::ListEventTypesRequest>,
    ) -> Result<Response<pb::ListEventTypesResponse>, Status> {
        let r = req.into_inner();
        let all = self
            .store()
            .list::<EventTypeRecord>(keys::EVENT_TYPES)
            .await?;
        let event_types = all
            .iter()
            .filter(|v| r.include_archived || !v.value.archived)
            .filter(|v| r.group.is_empty() || v.value.group == r.group)
            .map(|v| convert::event_type(&v.value, v.revision))
            .collect();
        Ok(Response::new(pb::ListEventTypesResponse { event_types }))
    }

    async fn update_event_type(
        &self,
        req: Request<pb::UpdateEventTypeRequest>,
    ) -> Result<Response<pb::EventType>, Status> {
        let r = req.into_inner();
        let fields = EventTypeRecord {
            name: r.name,
            group: r.group,
            display_name: r.display_name,
            description: r.description,
            schema_json: r.schema_json,
            example_json: r.example_json,
            ..EventTypeRecord::default()
        };
        validate::event_type(&fields)?;
        let expected = expected_revision(r.expected_revision)?;
        let current = self.load_event_type(&fields.name).await?.value;
        let rec = EventTypeRecord {
            archived: current.archived,
            created_at_ms: current.created_at_ms,
            ..fields
        };
        Ok(Response::new(self.save_event_type(&rec, expected).await?))
    }

    async fn archive_event_type(
        &self,
        req: Request<pb::ArchiveEventTypeRequest>,
    ) -> Result<Response<pb::EventType>, Status> {
        let name = req.into_inner().name;
        validate::reserved("name", &name)?;
        let current = self.load_event_type(&name).await?;
        if current.value.archived {
            return Ok(Response::new(convert::event_type(
                &current.value,
                current.revision,
            )));
        }
        let rec = EventTypeRecord {
            archived: true,
            ..current.value
        };
        Ok(Response::new(
            self.save_event_type(&rec, current.revision).await?,
        ))
    }
}
