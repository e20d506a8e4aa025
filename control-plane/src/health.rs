//! gRPC health (`grpc.health.v1`): the replica is SERVING while it can
//! reach etcd, NOT_SERVING otherwise.

use tokio_util::sync::CancellationToken;
use tonic_health::server::HealthReporter;

/// Keeps the overall status in line with etcd's reachability.
pub async fn run(etcd: etcd_client::Client, health: HealthReporter, cancel: CancellationToken) {
    let probe = || {
        let mut etcd = etcd.clone();
        async move { etcd.status().await.is_ok() }
    };
    herald_proto::serving::report_health(health, probe, cancel.cancelled_owned()).await;
}
