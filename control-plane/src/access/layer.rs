//! The tower layer in front of every service: finds the RPC's rule,
//! authenticates the key, checks its scope and, for a key limited to
//! tenants, the tenants the request names. Handlers never see a refused
//! call. The request body is read only for limited keys, and only for
//! the unary calls that name a tenant.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::decide::{self, Principal, Refusal};
use super::rules::{self, Rule, TenantArg};
use crate::view::ViewHandle;

/// Largest request read to find its tenant (above the gRPC decode limit).
const MAX_READ: usize = 8 << 20;

/// Wraps services with access control.
#[derive(Clone)]
pub struct AccessLayer {
    state: Arc<State>,
}

struct State {
    view: ViewHandle,
    enabled: bool,
    members_by_certificate: bool,
}

impl AccessLayer {
    /// Checks keys against `view`'s; with `enabled` false, lets every call
    /// through as admin (development only). With
    /// `members_by_certificate` (cluster TLS on), the calls of scope
    /// `cluster:agent` need a cluster certificate instead of a key.
    pub fn new(view: ViewHandle, enabled: bool, members_by_certificate: bool) -> Self {
        AccessLayer {
            state: Arc::new(State {
                view,
                enabled,
                members_by_certificate,
            }),
        }
    }
}

impl<S> tower_layer::Layer<S> for AccessLayer {
    type Service = Access<S>;

    fn layer(&self, inner: S) -> Access<S> {
        Access {
            inner,
            state: self.state.clone(),
        }
    }
}

/// A service behind [`AccessLayer`].
#[derive(Clone)]
pub struct Access<S> {
    inner: S,
    state: Arc<State>,
}

impl<S> tower_service::Service<http::Request<Body>> for Access<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        // The clone is not ready; the ready one serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            match state.admit(req).await {
                Ok(req) => inner.call(req).await,
                Err(refusal) => {
                    count(&refusal);
                    Ok(refusal.status().into_http())
                }
            }
        })
    }
}

impl State {
    /// The request, with its [`Principal`], when the call may proceed.
    async fn admit(&self, mut req: http::Request<Body>) -> Result<http::Request<Body>, Refusal> {
        let path = req.uri().path();
        let rule = rules::find(path);
        // Cluster members prove who they are by certificate, whether or
        // not keys are checked.
        if self.members_by_certificate
            && let Some(rule) = rule
            && rule.scope == super::Scope::ClusterAgent
        {
            let info = req.extensions().get::<TlsConnectInfo<TcpConnectInfo>>();
            if !herald_proto::serving::is_member(info) {
                return Err(Refusal::NotMember);
            }
            req.extensions_mut().insert(Principal::member());
            return Ok(req);
        }
        if !self.enabled {
            req.extensions_mut().insert(Principal::unauthenticated());
            return Ok(req);
        }
        if rules::is_open(path) {
            return Ok(req);
        }
        let rule = rule.ok_or_else(|| Refusal::NoRule(path.to_string()))?;
        let header = match req.headers().get(http::header::AUTHORIZATION) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| Refusal::Malformed)?),
        };
        let now = herald_shared::time::now_ms();
        let principal = self
            .view
            .read(|v| decide::authenticate(header, &v.api_keys, now))?;
        let check_tenants = decide::authorize(&principal.key, rule)?;
        if check_tenants {
            req = check_named_tenants(req, rule, &principal).await?;
        }
        if rule.scope.audited() {
            tracing::info!(key_id = %principal.key.id, rpc = rule.path, "audited call");
        }
        req.extensions_mut().insert(principal);
        Ok(req)
    }
}

/// Reads the request to find the tenants it names, checks each, and gives
/// the request back whole.
async fn check_named_tenants(
    req: http::Request<Body>,
    rule: &Rule,
    principal: &Principal,
) -> Result<http::Request<Body>, Refusal> {
    let (parts, body) = req.into_parts();
    let bytes = http_body_util::Limited::new(body, MAX_READ)
        .collect()
        .await
        .map_err(|_| Refusal::Unreadable)?
        .to_bytes();
    for tenant in named_tenants(&bytes, rule.tenant)? {
        // An empty tenant is the handler's to refuse, naming the field.
        if !tenant.is_empty() {
            decide::tenant(&principal.key, rule, &tenant)?;
        }
    }
    Ok(http::Request::from_parts(
        parts,
        Body::new(http_body_util::Full::new(bytes)),
    ))
}

#[derive(Clone, PartialEq, prost::Message)]
struct FirstField {
    #[prost(string, tag = "1")]
    tenant: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Events {
    #[prost(message, repeated, tag = "1")]
    events: Vec<FirstField>,
}

/// The tenants a unary gRPC request names: one length-prefixed,
/// uncompressed message (`rules` checks field 1 is the tenant).
fn named_tenants(frame: &Bytes, arg: TenantArg) -> Result<Vec<String>, Refusal> {
    use prost::Message as _;
    let [0, a, b, c, d, message @ ..] = &frame[..] else {
        return Err(Refusal::Unreadable);
    };
    let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
    if message.len() != len {
        return Err(Refusal::Unreadable);
    }
    match arg {
        TenantArg::EachEvent => Events::decode(message)
            .map(|e| e.events.into_iter().map(|f| f.tenant).collect())
            .map_err(|_| Refusal::Unreadable),
        _ => FirstField::decode(message)
            .map(|f| vec![f.tenant])
            .map_err(|_| Refusal::Unreadable),
    }
}

fn count(refusal: &Refusal) {
    herald_shared::process::metrics()
        .counter(
            "herald_auth_refusals_total",
            "Calls refused by access control, by reason.",
            &[("reason", refusal.reason())],
        )
        .inc();
}

#[cfg(test)]
mod tests {

    use super::*;

    fn frame(m: &impl prost::Message) -> Bytes {
        let body = m.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out.into()
    }

    #[test]
    fn reads_the_tenant_of_each_request_shape() {
        use herald_proto::v1 as pb;
        let p = pb::PublishRequest {
            tenant_id: "acme".into(),
            payload_json: "{}".into(),
            ..Default::default()
        };
        assert_eq!(
            named_tenants(&frame(&p), TenantArg::First).unwrap(),
            ["acme"]
        );
        let b = pb::PublishBatchRequest {
            events: vec![
                p.clone(),
                pb::PublishRequest {
                    tenant_id: "globex".into(),
                    ..p
                },
            ],
        };
        assert_eq!(
            named_tenants(&frame(&b), TenantArg::EachEvent).unwrap(),
            ["acme", "globex"]
        );
        let t = pb::GetTenantRequest { id: "acme".into() };
        assert_eq!(
            named_tenants(&frame(&t), TenantArg::First).unwrap(),
            ["acme"]
        );
        let mut compressed = frame(&t).to_vec();
        compressed[0] = 1;
        assert_eq!(
            named_tenants(&compressed.into(), TenantArg::First),
            Err(Refusal::Unreadable)
        );
        let truncated = frame(&t).slice(..6);
        assert_eq!(
            named_tenants(&truncated, TenantArg::First),
            Err(Refusal::Unreadable)
        );
        assert_eq!(
            named_tenants(&Bytes::new(), TenantArg::First),
            Err(Refusal::Unreadable)
        );
    }
}
