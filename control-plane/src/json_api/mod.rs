//! The HTTP listener (`--http-listen`): the JSON API at
//! `POST /api/{package.Service}/{Method}`, its OpenAPI document at
//! `/openapi.json`, and the operator console at `/` ([`console`]).
//!
//! One implementation, not two: each JSON call becomes a gRPC call to the
//! same services, through the same access layer, made in-process on the
//! services as a tower service (no socket, no HTTP/2 framing), so
//! validation, messages naming the field, access control, metrics and
//! traces are those of gRPC. Bodies use the
//! protobuf JSON mapping (pbjson); errors are Connect's `{code, message}`
//! with the HTTP status of the code ([`status`]).

pub mod console;
pub mod methods;
pub mod openapi;
pub mod serve;
pub mod status;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

/// The gRPC services as one tower service (behind the access layer).
pub type Services = tower::util::BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    std::convert::Infallible,
>;

/// Largest JSON body.
const MAX_BODY: usize = 16 << 20;

/// Headers passed on to the gRPC call.
const FORWARDED: [&str; 3] = ["authorization", "traceparent", "tracestate"];

/// What the HTTP handlers share.
#[derive(Clone)]
pub struct Gateway {
    /// The gRPC services, called in-process.
    services: Services,
    /// The OpenAPI document, rendered once.
    openapi: Arc<String>,
}

impl Gateway {
    /// A gateway calling `services`.
    pub fn new(services: Services) -> Self {
        Gateway {
            services,
            openapi: Arc::new(openapi::document().to_string()),
        }
    }

    /// The routes of the HTTP listener.
    pub fn router(self) -> Router {
        Router::new()
            .route("/api/{service}/{method}", post(call))
            .route("/openapi.json", get(openapi_json))
            .merge(console::routes())
            // Above what the gRPC side takes (4 MiB of protobuf, which
            // JSON makes larger), so the gRPC limit is the one that speaks.
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .with_state(self)
    }
}

async fn call(
    State(g): State<Gateway>,
    Path((service, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("{service}/{method}");
    match methods::dispatch(&path, g.services.clone(), metadata(&headers), body) {
        Some(answer) => answer.await,
        None => status::error(&tonic::Status::unimplemented(format!(
            "no method {path}; see /openapi.json"
        ))),
    }
}

async fn openapi_json(State(g): State<Gateway>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        g.openapi.as_str().to_owned(),
    )
        .into_response()
}

/// The headers a gRPC call carries as metadata.
fn metadata(headers: &HeaderMap) -> MetadataMap {
    let mut md = MetadataMap::new();
    for name in FORWARDED {
        if let Some(v) = headers
            .get(name)
            .and_then(|v| MetadataValue::try_from(v.as_bytes()).ok())
        {
            md.insert(MetadataKey::from_static(name), v);
        }
    }
    md
}
