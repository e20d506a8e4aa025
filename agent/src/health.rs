//! gRPC health (`grpc.health.v1`): the agent is SERVING while it reaches
//! etcd and has a control stream open, NOT_SERVING otherwise (it still
//! delivers on its last assignment then, but takes no config changes).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;
use tonic_health::server::HealthReporter;

/// Keeps the overall status up to date.
pub async fn run(
    etcd: etcd_client::Client,
    control_connected: Arc<AtomicBool>,
    health: HealthReporter,
    cancel: CancellationToken,
) {
    let probe = || {
        let mut etcd = etcd.clone();
        let connected = control_connected.load(Ordering::Relaxed);
        async move { connected && etcd.status().await.is_ok() }
    };
    herald_proto::serving::report_health(health, probe, cancel.cancelled_owned()).await;
}
