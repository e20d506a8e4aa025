//! Wiring: connect to etcd, start the watch and the slot planner, serve gRPC.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use herald_proto::v1::{
    access_service_server::AccessServiceServer, agent_control_server::AgentControlServer,
    catalog_service_server::CatalogServiceServer, cluster_service_server::ClusterServiceServer,
    delivery_service_server::DeliveryServiceServer, endpoint_service_server::EndpointServiceServer,
    publish_service_server::PublishServiceServer, tenant_service_server::TenantServiceServer,
};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::agent_clients::AgentClients;
use crate::api::{Api, Parts};
use crate::config::Config;
use crate::delivery_log::DeliveryLog;
use crate::router::Router;
use crate::store::Store;
use crate::view::ViewHandle;

/// Runs the control plane until `cancel` fires. `on_listening` is told the
/// bound address (useful with port 0).
pub async fn run(
    config: Config,
    cancel: CancellationToken,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    // Certificates first: a bad path fails at once, before anything starts.
    let cluster_tls = cluster_tls(&config)?;
    let ring = key_ring(&config)?;
    let client = etcd_client::Client::connect(&config.etcd_endpoints, None).await?;
    let store = Store::new(client, &config.etcd_prefix).with_ring(ring);
    bootstrap_access(&store, &config).await?;
    let view = ViewHandle::new();
    let slots_changed = Arc::new(Notify::new());

    tokio::spawn(crate::watch::run(
        store.clone(),
        view.clone(),
        slots_changed.clone(),
        cancel.clone(),
    ));
    let (is_leader, leading) = tokio::sync::watch::channel(false);
    let leading_for_metrics = leading.clone();
    let replica_id = format!("cp-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    tokio::spawn(crate::leader::run(
        store.client(),
        store.key(crate::store::keys::LEADER),
        replica_id.clone(),
        config.leader_ttl_secs,
        is_leader,
        cancel.clone(),
    ));
    tokio::spawn(crate::slots::run(
        store.clone(),
        view.clone(),
        slots_changed,
        leading,
        Duration::from_secs(config.dead_agent_wait_secs),
        cancel.clone(),
    ));
    // Serve only once the first load is in: before it, every publish would
    // find no tenants. A million endpoints take a while (BENCHMARKS.md).
    if !view.wait_for(1, CONFIG_LOAD_LIMIT).await {
        anyhow::bail!("could not load config from etcd within {CONFIG_LOAD_LIMIT:?}");
    }

    let clients = Arc::new(AgentClients::new(cluster_tls.clone()));
    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(crate::health::run(store.client(), health, cancel.clone()));
    if let Some(listen) = config.metrics_listen {
        let metrics = TcpListener::bind(listen).await?;
        println!("herald-control-plane metrics on {}", metrics.local_addr()?);
        let (view, leading) = (view.clone(), leading_for_metrics.clone());
        let refresh = Arc::new(move || crate::metrics::refresh(&view, *leading.borrow()));
        tokio::spawn(herald_shared::process::serve_metrics(
            metrics,
            refresh,
            cancel.clone(),
        ));
    }
    let reflection = (!config.no_reflection)
        .then(herald_proto::serving::reflection)
        .transpose()?;
    let access = crate::access::layer::AccessLayer::new(
        view.clone(),
        !config.insecure_no_auth,
        cluster_tls.is_some(),
    );
    let router = Router::new(
        view.clone(),
        clients.clone(),
        Duration::from_millis(config.publish_retry_ms),
    );
    let log = DeliveryLog::new(view.clone(), clients);
    let tls = server_tls(&config, cluster_tls.as_ref())?;
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let api = Api::new(Parts {
        store,
        view,
        router,
        log,
        replica_id,
        config,
        stopping: cancel.clone(),
    });
    api.ensure_operational_types().await?;
    start_http(&api, access.clone(), &cancel).await?;
    on_listening(addr);
    tracing::info!(%addr, "control plane serving");

    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    let serve = server
        .tcp_nodelay(true)
        .layer(access)
        .add_service(CatalogServiceServer::new(api.clone()))
        .add_service(TenantServiceServer::new(api.clone()))
        .add_service(EndpointServiceServer::new(api.clone()))
        .add_service(PublishServiceServer::new(api.clone()))
        .add_service(DeliveryServiceServer::new(api.clone()))
        .add_service(ClusterServiceServer::new(api.clone()))
        .add_service(health_service)
        .add_optional_service(reflection)
        .add_service(AccessServiceServer::new(api.clone()))
        .add_service(AgentControlServer::new(api))
        // Our own listener: tonic applies tcp_nodelay only to listeners it
        // binds, so set it here (Nagle added ~40 ms to small replies).
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            cancel.clone().cancelled_owned(),
        );
    // On stop: health says NOT_SERVING, agent sessions end, in-flight calls
    // finish; a call still running after the grace period does not hold the
    // process (so a rolling update never ends in SIGKILL).
    tokio::pin!(serve);
    tokio::select! {
        r = &mut serve => r?,
        _ = async {
            cancel.cancelled().await;
            tokio::time::sleep(STOP_GRACE).await;
        } => tracing::warn!("stopping with calls still in flight after {STOP_GRACE:?}"),
    }
    tracing::info!("control plane stopped");
    Ok(())
}

/// Starts the HTTP listener (the JSON API, its OpenAPI document and the
/// console) when `--http-listen` is set, with TLS when `--tls-cert` is.
async fn start_http(
    api: &Api,
    access: crate::access::layer::AccessLayer,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    let config = api.config();
    let Some(listen) = config.http_listen else {
        return Ok(());
    };
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::json_api::serve::tls_acceptor(cert, key)?),
        _ => None,
    };
    // The public services behind the same access layer, called as a tower
    // service: no socket, no HTTP/2 framing in between.
    let routes = tonic::service::Routes::new(CatalogServiceServer::new(api.clone()))
        .add_service(TenantServiceServer::new(api.clone()))
        .add_service(EndpointServiceServer::new(api.clone()))
        .add_service(PublishServiceServer::new(api.clone()))
        .add_service(DeliveryServiceServer::new(api.clone()))
        .add_service(ClusterServiceServer::new(api.clone()))
        .add_service(AccessServiceServer::new(api.clone()));
    let services = tower_layer::Layer::layer(&access, routes);
    let gateway = crate::json_api::Gateway::new(tower::util::BoxCloneSyncService::new(services));
    let http = TcpListener::bind(listen).await?;
    println!("herald-control-plane http on {}", http.local_addr()?);
    tokio::spawn(crate::json_api::serve::serve(
        http,
        gateway.router(),
        tls,
        cancel.clone(),
    ));
    Ok(())
}

/// How long a stopping control plane waits for in-flight calls.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Longest wait for the first load of the config from etcd.
const CONFIG_LOAD_LIMIT: Duration = Duration::from_secs(300);

/// Puts the bootstrap key in etcd (if given and absent), and warns when
/// access control is off.
async fn bootstrap_access(store: &Store, config: &Config) -> anyhow::Result<()> {
    if config.insecure_no_auth {
        tracing::warn!(
            "access control is OFF (--insecure-no-auth): anyone who reaches this port can do anything"
        );
    }
    let text = match (&config.bootstrap_key, &config.bootstrap_key_file) {
        (Some(k), _) => Some(k.0.clone()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
            let key: crate::access::key::KeyText = text
                .parse()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            Some(key.0)
        }
        (None, None) => None,
    };
    if let Some(text) = text
        && crate::api::access::bootstrap(store, &text).await?
    {
        tracing::info!("bootstrap admin key stored");
    }
    Ok(())
}

/// The TLS configuration of the gRPC API: `--tls-cert` and `--tls-key`
/// when given; with cluster TLS, client certificates from the cluster CA
/// are checked too (agents' control streams), and the API speaks TLS even
/// without `--tls-cert` (with the cluster certificate).
fn server_tls(
    config: &Config,
    cluster: Option<&herald_proto::serving::ClusterTls>,
) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))
    };
    let public = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tonic::transport::Identity::from_pem(
            read(cert)?,
            read(key)?,
        )),
        _ => None,
    };
    Ok(match (cluster, public) {
        (Some(c), public) => Some(c.server(public)),
        (None, Some(identity)) => Some(tonic::transport::ServerTlsConfig::new().identity(identity)),
        (None, None) => None,
    })
}

/// The cluster TLS settings, when `--cluster-cert` is given.
fn cluster_tls(config: &Config) -> anyhow::Result<Option<herald_proto::serving::ClusterTls>> {
    let (Some(cert), Some(key), Some(ca)) = (
        &config.cluster_cert,
        &config.cluster_key,
        &config.cluster_ca,
    ) else {
        return Ok(None);
    };
    Ok(Some(herald_proto::serving::ClusterTls::load(
        cert, key, ca,
    )?))
}

/// The key ring of `--secrets-key-file`; a warning when there is none.
pub fn key_ring(config: &Config) -> anyhow::Result<Option<Arc<crate::sealing::KeyRing>>> {
    let Some(path) = &config.secrets_key_file else {
        tracing::warn!(
            "endpoint secrets are stored in clear in etcd: pass --secrets-key-file to seal them"
        );
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let ring = crate::sealing::KeyRing::parse(&text)?;
    tracing::info!(key = ring.current_id(), "endpoint secrets sealed in etcd");
    Ok(Some(Arc::new(ring)))
}

/// Rewrites every endpoint record under the current key; how many.
pub async fn reseal(config: &Config) -> anyhow::Result<usize> {
    let ring = key_ring(config)?;
    let client = etcd_client::Client::connect(&config.etcd_endpoints, None).await?;
    let store = Store::new(client, &config.etcd_prefix).with_ring(ring);
    let mut done = 0;
    for entry in store
        .list::<herald_shared::model::EndpointRecord>(crate::store::keys::ENDPOINTS)
        .await?
    {
        let rel = format!(
            "{}{}/{}",
            crate::store::keys::ENDPOINTS,
            entry.value.tenant_id,
            entry.value.id
        );
        let (mut value, mut revision) = (entry.value, entry.revision);
        // A write in between (an update, an auto-disable) moves the
        // revision: read again and retry, so nothing is lost.
        loop {
            if store.compare_and_put(&rel, &value, revision).await? {
                done += 1;
                break;
            }
            let Some(now) = store
                .get::<herald_shared::model::EndpointRecord>(&rel)
                .await?
            else {
                break; // deleted meanwhile: nothing to reseal
            };
            (value, revision) = (now.value, now.revision);
        }
    }
    Ok(done)
}
