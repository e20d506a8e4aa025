//! Leader election among control-plane replicas, through etcd: the leader
//! holds the `leader` key under its lease. Only the leader plans the slot
//! map; every replica serves the API. If the leader dies its lease expires
//! (after `--leader-ttl-secs`) and another replica takes over; agents keep
//! delivering on their assignment meanwhile.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, WatchOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Campaigns until `cancel` fires; `is_leader` tells the rest of the
/// process whether this replica leads now.
pub async fn run(
    mut client: Client,
    key: String,
    me: String,
    ttl_secs: i64,
    is_leader: watch::Sender<bool>,
    cancel: CancellationToken,
) {
    loop {
        let outcome = tokio::select! {
            _ = cancel.cancelled() => break,
            r = campaign(&mut client, &key, &me, ttl_secs, &is_leader, &cancel) => r,
        };
        is_leader.send_replace(false);
        if let Err(e) = outcome {
            tracing::warn!(error = %e, "leader election: etcd error; retrying");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
    }
    is_leader.send_replace(false);
}

/// One round: lead until the lease is lost, or wait until the key is free.
async fn campaign(
    client: &mut Client,
    key: &str,
    me: &str,
    ttl_secs: i64,
    is_leader: &watch::Sender<bool>,
    cancel: &CancellationToken,
) -> Result<(), etcd_client::Error> {
    let lease = client.lease_grant(ttl_secs, None).await?.id();
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            crate::store::encode(&me),
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key, None)]);
    let resp = client.kv_client().txn(txn).await?;
    if !resp.succeeded() {
        let _ = client.lease_revoke(lease).await;
        // Someone leads: wait until the key goes (or re-check now and then).
        let mut stream = client
            .watch(
                key,
                Some(
                    WatchOptions::new()
                        .with_start_revision(resp.header().map_or(0, |h| h.revision()) + 1),
                ),
            )
            .await?;
        let wait = async {
            while let Some(r) = stream.message().await? {
                if r.events()
                    .iter()
                    .any(|e| e.event_type() == EventType::Delete)
                {
                    break;
                }
            }
            Ok::<(), etcd_client::Error>(())
        };
        return tokio::select! {
            r = wait => r,
            _ = tokio::time::sleep(Duration::from_secs(ttl_secs.max(1) as u64)) => Ok(()),
        };
    }
    tracing::info!(replica = me, "elected leader");
    is_leader.send_replace(true);
    let (mut keeper, mut responses) = client.lease_keep_alive(lease).await?;
    let period = Duration::from_millis((ttl_secs as u64 * 1000 / 3).max(200));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                // Step down at once so another replica need not wait for the TTL.
                let _ = client.lease_revoke(lease).await;
                return Ok(());
            }
            _ = tokio::time::sleep(period) => {}
        }
        keeper.keep_alive().await?;
        match responses.message().await? {
            Some(r) if r.ttl() > 0 => {}
            _ => {
                tracing::warn!(replica = me, "leader lease lost; stepping down");
                return Ok(());
            }
        }
    }
}
