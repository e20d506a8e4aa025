//! The agent's error type and its mapping to `tonic::Status`.

use tonic::{Code, Status};

/// Everything an agent operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed (disk full, corruption, I/O).
    #[error("{0}")]
    Store(#[from] crate::store::LogError),
    /// The store's writer has stopped (the agent is shutting down).
    #[error("store writer stopped")]
    WriterGone,
    /// Work routed by another epoch, or for a slot this agent does not own.
    #[error("{0}")]
    Fenced(String),
    /// New work would take the undelivered deliveries held past the
    /// agent's limit.
    #[error(
        "this agent holds {held} undelivered deliveries, its limit (--max-undelivered {limit}); publish again with the same idempotency key once its endpoints catch up"
    )]
    Full {
        /// Undelivered deliveries held now.
        held: u64,
        /// The limit.
        limit: u64,
    },
    /// A malformed request; names the field.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The offending field.
        field: String,
        /// Why it was refused.
        reason: String,
    },
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Store(_) => Code::Internal,
            Error::WriterGone => Code::Unavailable,
            Error::Fenced(_) => Code::FailedPrecondition,
            Error::Full { .. } => Code::ResourceExhausted,
            Error::InvalidArgument { .. } => Code::InvalidArgument,
        };
        if code == Code::Internal {
            tracing::error!(error = %e, "request failed");
        }
        Status::new(code, e.to_string())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
