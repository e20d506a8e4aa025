//! Herald's gRPC contracts, generated from `proto/herald/v1/*.proto`.
#![allow(missing_docs, clippy::all)]

/// Package `herald.v1`.
pub mod v1 {
    tonic::include_proto!("herald.v1");
    include!(concat!(env!("OUT_DIR"), "/herald.v1.serde.rs"));
}

pub mod serving;

/// Every `herald.v1` file, encoded, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("herald_descriptor");
