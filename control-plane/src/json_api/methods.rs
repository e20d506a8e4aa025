//! The public RPCs the JSON API serves, each by calling the gRPC service
//! in-process: the same access check, validation and handler as a gRPC
//! call, with the request and the answer in the protobuf JSON mapping.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use herald_proto::v1 as pb;
use http::uri::PathAndQuery;
use tonic::metadata::MetadataMap;

use super::Services;

use super::status::{Answer, error};

/// Declares the table of methods: a dispatch function and the list of
/// paths, from one list, so the two cannot differ.
macro_rules! methods {
    ($( $svc:literal => { $( $m:literal : $req:ty => $resp:ty ),* $(,)? } )*) => {
        /// Every method served, as `package.Service/Method`.
        pub const PATHS: &[&str] = &[ $( $( concat!($svc, "/", $m), )* )* ];

        /// Calls the method at `path` (`package.Service/Method`); `None`
        /// for one the API does not serve.
        pub fn dispatch(
            path: &str,
            services: Services,
            metadata: MetadataMap,
            body: Bytes,
        ) -> Option<Pin<Box<dyn Future<Output = Answer> + Send>>> {
            Some(match path {
                $( $( concat!($svc, "/", $m) => Box::pin(unary::<$req, $resp>(
                    services,
                    concat!("/", $svc, "/", $m),
                    metadata,
                    body,
                )), )* )*
                _ => return None,
            })
        }
    };
}

methods! {
    "herald.v1.CatalogService" => {
        "CreateEventType": pb::CreateEventTypeRequest => pb::EventType,
        "GetEventType": pb::GetEventTypeRequest => pb::EventType,
        "ListEventTypes": pb::ListEventTypesRequest => pb::ListEventTypesResponse,
        "UpdateEventType": pb::UpdateEventTypeRequest => pb::EventType,
        "ArchiveEventType": pb::ArchiveEventTypeRequest => pb::EventType,
    }
    "herald.v1.TenantService" => {
        "CreateTenant": pb::CreateTenantRequest => pb::Tenant,
        "GetTenant": pb::GetTenantRequest => pb::Tenant,
        "ListTenants": pb::ListTenantsRequest => pb::ListTenantsResponse,
        "DeleteTenant": pb::DeleteTenantRequest => pb::DeleteTenantResponse,
    }
    "herald.v1.EndpointService" => {
        "CreateEndpoint": pb::CreateEndpointRequest => pb::CreateEndpointResponse,
        "GetEndpoint": pb::GetEndpointRequest => pb::Endpoint,
        "ListEndpoints": pb::ListEndpointsRequest => pb::ListEndpointsResponse,
        "UpdateEndpoint": pb::UpdateEndpointRequest => pb::Endpoint,
        "DeleteEndpoint": pb::DeleteEndpointRequest => pb::DeleteEndpointResponse,
        "RotateSecret": pb::RotateSecretRequest => pb::RotateSecretResponse,
        "GetEndpointSecret": pb::GetEndpointSecretRequest => pb::GetEndpointSecretResponse,
    }
    "herald.v1.PublishService" => {
        "Publish": pb::PublishRequest => pb::PublishResponse,
        "PublishBatch": pb::PublishBatchRequest => pb::PublishBatchResponse,
    }
    "herald.v1.DeliveryService" => {
        "ListDeliveries": pb::ListDeliveriesRequest => pb::ListDeliveriesResponse,
        "GetDelivery": pb::GetDeliveryRequest => pb::DeliveryDetail,
        "ResendDelivery": pb::ResendDeliveryRequest => pb::ResendDeliveryResponse,
        "RecoverDeliveries": pb::RecoverDeliveriesRequest => pb::RecoverDeliveriesResponse,
        "SendTestEvent": pb::SendTestEventRequest => pb::SendTestEventResponse,
        "GetEndpointStats": pb::GetEndpointStatsRequest => pb::EndpointStats,
    }
    "herald.v1.ClusterService" => {
        "GetCluster": pb::GetClusterRequest => pb::Cluster,
        "DrainAgent": pb::DrainAgentRequest => pb::DrainAgentResponse,
    }
    "herald.v1.AccessService" => {
        "CreateApiKey": pb::CreateApiKeyRequest => pb::CreateApiKeyResponse,
        "ListApiKeys": pb::ListApiKeysRequest => pb::ListApiKeysResponse,
        "RevokeApiKey": pb::RevokeApiKeyRequest => pb::RevokeApiKeyResponse,
    }
}

/// One unary call: JSON body → request, the gRPC call, answer → JSON. An
/// empty body is the empty request.
async fn unary<Req, Resp>(
    services: Services,
    path: &'static str,
    metadata: MetadataMap,
    body: Bytes,
) -> Answer
where
    Req: prost::Message + serde::de::DeserializeOwned + Default + Send + Sync + 'static,
    Resp: prost::Message + serde::Serialize + Default + Send + Sync + 'static,
{
    let req: Req = if body.iter().all(u8::is_ascii_whitespace) {
        Req::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return error(&tonic::Status::invalid_argument(format!(
                    "body: not a {} in JSON: {e}",
                    std::any::type_name::<Req>()
                        .rsplit("::")
                        .next()
                        .unwrap_or("request")
                )));
            }
        }
    };
    let mut grpc = tonic::client::Grpc::new(services);
    if let Err(e) = grpc.ready().await {
        return error(&tonic::Status::unavailable(format!("not ready: {e}")));
    }
    let mut request = tonic::Request::new(req);
    *request.metadata_mut() = metadata;
    let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
    match grpc
        .unary(request, PathAndQuery::from_static(path), codec)
        .await
    {
        Ok(resp) => super::status::ok(&resp.into_inner()),
        Err(s) => error(&s),
    }
}

#[cfg(test)]
mod tests {
    /// Every RPC with an access rule, but the agents' stream, is served.
    #[test]
    fn every_public_rpc_is_served() {
        for rule in crate::access::rules::RULES {
            let path = rule.path.trim_start_matches('/');
            if path.starts_with("herald.v1.AgentControl/") {
                continue;
            }
            assert!(
                super::PATHS.contains(&path),
                "{path} is not in the JSON API"
            );
        }
        assert_eq!(super::PATHS.len(), crate::access::rules::RULES.len() - 1);
    }
}
