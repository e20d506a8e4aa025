//! Herald's gRPC contracts, generated from `proto/herald/v1/*.proto`.
#![allow(missing_docs, clippy::all)]

/// Package `herald.v1`.
pub mod v1 {
    tonic::include_proto!("herald.v1");
}
