//! Membership: the agent keeps `agents/{id}` alive in etcd under a lease.
//! If the agent dies the lease expires, the key goes, and the control plane
//! reassigns its slots. A draining agent marks its record, so its slots
//! move (with their queues) while it still lives. On graceful stop the
//! lease is revoked at once.

use std::time::Duration;

use etcd_client::{Client, PutOptions};
use herald_shared::model::AgentRecord;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Registers and keeps the registration alive until `cancel` fires, then
/// revokes it. Re-registers after any etcd failure.
pub async fn run(
    mut client: Client,
    key: String,
    mut record: AgentRecord,
    ttl_secs: i64,
    mut draining: watch::Receiver<bool>,
    cancel: CancellationToken,
) {
    loop {
        record.draining = *draining.borrow_and_update();
        let value = serde_json::to_vec(&record).unwrap_or_default();
        let mut lease = None;
        let result = async {
            let grant = client.lease_grant(ttl_secs, None).await?;
            lease = Some(grant.id());
            client
                .put(
                    key.as_str(),
                    value.clone(),
                    Some(PutOptions::new().with_lease(grant.id())),
                )
                .await?;
            tracing::info!(key = %key, ttl_secs, "registered in etcd");
            let (mut keeper, mut responses) = client.lease_keep_alive(grant.id()).await?;
            let period = Duration::from_millis((ttl_secs as u64 * 1000 / 3).max(200));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok::<bool, etcd_client::Error>(true),
                    _ = tokio::time::sleep(period) => {}
                    Ok(()) = draining.changed() => {
                        record.draining = *draining.borrow_and_update();
                        tracing::info!(draining = record.draining, "updating registration");
                        client
                            .put(
                                key.as_str(),
                                serde_json::to_vec(&record).unwrap_or_default(),
                                Some(PutOptions::new().with_lease(grant.id())),
                            )
                            .await?;
                    }
                }
                keeper.keep_alive().await?;
                match responses.message().await? {
                    Some(r) if r.ttl() > 0 => {}
                    _ => return Ok(false), // lease gone: register again
                }
            }
        }
        .await;
        match result {
            Ok(true) => {
                if let Some(id) = lease {
                    let _ = client.lease_revoke(id).await;
                }
                return;
            }
            Ok(false) => tracing::warn!("lease expired; registering again"),
            Err(e) => tracing::warn!(error = %e, "etcd registration failed; retrying"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
