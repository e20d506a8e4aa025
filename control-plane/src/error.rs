//! The control plane's error type and its one mapping to `tonic::Status`.

use tonic::{Code, Status};

/// Everything a control-plane operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; names the field and the reason.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The offending field, dotted for nested ones (`spec.url`).
        field: String,
        /// Why it was refused.
        reason: String,
    },
    /// The named thing does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The thing to create exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// The stored record changed since the caller read it, or the state
    /// does not allow the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller's key may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// A dependency (etcd, an agent) cannot be reached; safe to retry.
    #[error("{0}")]
    Unavailable(String),
    /// An agent holds as many undelivered deliveries as it may; retry
    /// later, with the same idempotency key.
    #[error("{0}")]
    ResourceExhausted(String),
    /// etcd answered with an error.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// A record in etcd could not be decoded.
    #[error("corrupt record at {key}: {reason}")]
    Corrupt {
        /// The etcd key.
        key: String,
        /// The decoding error.
        reason: String,
    },
}

impl Error {
    /// An INVALID_ARGUMENT naming `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument { .. } => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Unavailable(_) | Error::Etcd(_) => Code::Unavailable,
            Error::ResourceExhausted(_) => Code::ResourceExhausted,
            Error::Corrupt { .. } => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        if matches!(e, Error::Etcd(_) | Error::Corrupt { .. }) {
            tracing::warn!(error = %e, "request failed");
        }
        Status::new(e.code(), e.to_string())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
