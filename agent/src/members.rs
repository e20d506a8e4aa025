//! Who may call the agent's own services. With cluster TLS on, `Ingest`,
//! `Handoff` and the log queries answer only callers that presented a
//! certificate from the cluster CA (control planes, other agents); health
//! and reflection stay open. An API key, whatever its scopes, is not a
//! certificate: a publisher cannot call `Ingest`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// Services only cluster members may call.
const MEMBER_SERVICES: &[&str] = &["/herald.v1.AgentIngest/", "/herald.v1.AgentQuery/"];

/// The layer; `required` is whether cluster TLS is on.
#[derive(Clone)]
pub struct MembersOnly {
    required: bool,
}

impl MembersOnly {
    /// Checks callers when `required`; lets every call through otherwise.
    pub fn new(required: bool) -> Self {
        MembersOnly { required }
    }
}

impl<S> tower_layer::Layer<S> for MembersOnly {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            inner,
            required: self.required,
        }
    }
}

/// A service behind [`MembersOnly`].
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    required: bool,
}

/// Whether a call to `path` from a caller that is (or is not) a member
/// may proceed.
pub fn admits(required: bool, path: &str, member: bool) -> bool {
    !required || member || !MEMBER_SERVICES.iter().any(|s| path.starts_with(s))
}

impl<S> tower_service::Service<http::Request<Body>> for Guarded<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let member = herald_proto::serving::is_member(
            req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>(),
        );
        if admits(self.required, req.uri().path(), member) {
            let fut = self.inner.call(req);
            return Box::pin(fut);
        }
        let status = tonic::Status::unauthenticated(
            "only cluster members may call this: present a certificate from the cluster CA",
        );
        Box::pin(std::future::ready(Ok(status.into_http())))
    }
}

/// A shared, cheap handle on the cluster TLS settings.
pub type Tls = Option<Arc<herald_proto::serving::ClusterTls>>;

#[cfg(test)]
mod tests {
    use super::admits;

    #[test]
    fn only_members_reach_member_services_when_required() {
        for path in [
            "/herald.v1.AgentIngest/Ingest",
            "/herald.v1.AgentQuery/GetDelivery",
        ] {
            assert!(!admits(true, path, false));
            assert!(admits(true, path, true));
            assert!(admits(false, path, false));
        }
        assert!(admits(true, "/grpc.health.v1.Health/Check", false));
    }
}
