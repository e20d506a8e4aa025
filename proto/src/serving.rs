//! What every Herald gRPC server adds beside its own services: gRPC server
//! reflection and a health status kept in line with a probe.

use std::future::Future;
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// The reflection service, describing `herald.v1` and health.
pub fn reflection() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::Error,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
}

/// Every 2 s, sets the overall health status ("") to SERVING when `probe`
/// says so (within 2 s) and NOT_SERVING otherwise, until `stop` resolves.
pub async fn report_health<P, F>(
    health: HealthReporter,
    mut probe: P,
    stop: impl Future<Output = ()>,
) where
    P: FnMut() -> F,
    F: Future<Output = bool>,
{
    let looping = async {
        loop {
            let ok = tokio::time::timeout(Duration::from_secs(2), probe())
                .await
                .unwrap_or(false);
            let status = if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status("", status).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    tokio::select! {
        _ = stop => {}
        _ = looping => {}
    }
}
