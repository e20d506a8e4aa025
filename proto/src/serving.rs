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
    // Stopping: probes and load balancers stop sending calls here.
    health
        .set_service_status("", ServingStatus::NotServing)
        .await;
}

/// Mutual TLS among cluster members (control planes and agents): each
/// holds a certificate the cluster CA signed, presents it when it calls
/// another member, and checks the other side's against the CA.
#[derive(Clone)]
pub struct ClusterTls {
    identity: tonic::transport::Identity,
    ca: tonic::transport::Certificate,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterTls(<certificates>)")
    }
}

impl ClusterTls {
    /// Reads the member's PEM certificate and key and the cluster CA.
    pub fn load(
        cert: &std::path::Path,
        key: &std::path::Path,
        ca: &std::path::Path,
    ) -> std::io::Result<ClusterTls> {
        let read = |p: &std::path::Path| {
            std::fs::read(p)
                .map_err(|e| std::io::Error::new(e.kind(), format!("reading {}: {e}", p.display())))
        };
        Ok(ClusterTls {
            identity: tonic::transport::Identity::from_pem(read(cert)?, read(key)?),
            ca: tonic::transport::Certificate::from_pem(read(ca)?),
        })
    }

    /// A listener's TLS: `identity` (the member's own when None), and
    /// client certificates checked against the cluster CA. A client may
    /// present none (health probes, public API clients); member-only
    /// services then refuse it ([`is_member`]).
    pub fn server(
        &self,
        identity: Option<tonic::transport::Identity>,
    ) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(identity.unwrap_or_else(|| self.identity.clone()))
            .client_ca_root(self.ca.clone())
            .client_auth_optional(true)
    }

    /// A member calling another: the cluster CA, and its own certificate.
    pub fn client(&self) -> tonic::transport::ClientTlsConfig {
        tonic::transport::ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .identity(self.identity.clone())
    }

    /// The CA, for a client that verifies a member without presenting a
    /// certificate.
    pub fn ca(&self) -> tonic::transport::Certificate {
        self.ca.clone()
    }
}

/// Whether a call came over TLS with a client certificate. The listener
/// verified it against the cluster CA during the handshake ([`ClusterTls::server`]),
/// so a certificate here is a member's.
pub fn is_member(
    info: Option<
        &tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>,
    >,
) -> bool {
    info.and_then(|i| i.peer_certs())
        .is_some_and(|c| !c.is_empty())
}
