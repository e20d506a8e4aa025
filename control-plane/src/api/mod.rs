//! gRPC handlers. Thin: validate, call the store or the router, convert.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::delivery_log::DeliveryLog;
use crate::error::{Error, Result};
use crate::router::Router;
use crate::store::Store;
use crate::view::ViewHandle;

pub mod access;
pub mod agent_session;
pub mod catalog;
pub mod cluster;
pub mod deliveries;
pub mod endpoints;
pub mod operational;
pub mod publish;
pub mod tenants;

/// What the handlers work with.
pub struct Parts {
    /// etcd.
    pub store: Store,
    /// The in-memory config.
    pub view: ViewHandle,
    /// Publish routing.
    pub router: Router,
    /// Delivery log reader.
    pub log: DeliveryLog,
    /// This replica's id (as in the leader key).
    pub replica_id: String,
    /// Flags.
    pub config: Config,
    /// Fires when the replica stops: agent sessions end, so agents move to
    /// another replica and the server can finish.
    pub stopping: tokio_util::sync::CancellationToken,
}

/// Implements every public service and the agent stream.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Parts>,
}

impl Api {
    /// Wires the handlers to their dependencies.
    pub fn new(parts: Parts) -> Self {
        Api {
            inner: Arc::new(parts),
        }
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn view(&self) -> &ViewHandle {
        &self.inner.view
    }

    /// The flags it runs with.
    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    /// After a write at `revision`, waits until this replica's view has it,
    /// so the caller's next request here sees its own write.
    async fn settle(&self, revision: i64) -> Result<()> {
        if self.view().wait_for(revision, Duration::from_secs(5)).await {
            Ok(())
        } else {
            Err(Error::Unavailable(format!(
                "write stored at revision {revision} but this replica has not caught up; retry the read"
            )))
        }
    }
}

/// A required, existing-looking revision for optimistic concurrency.
fn expected_revision(r: i64) -> Result<i64> {
    if r <= 0 {
        return Err(Error::invalid(
            "expected_revision",
            "is required: pass the revision you read",
        ));
    }
    Ok(r)
}
