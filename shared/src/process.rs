//! Process plumbing shared by the binaries (feature `process`).

use tokio_util::sync::CancellationToken;

/// Cancels `cancel` on SIGTERM or Ctrl-C.
pub async fn cancel_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down");
    cancel.cancel();
}

/// The process-wide metrics registry.
pub fn metrics() -> &'static crate::metrics::Registry {
    static REGISTRY: std::sync::OnceLock<crate::metrics::Registry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(crate::metrics::Registry::new)
}

/// Serves `GET /metrics` (the process registry, Prometheus text format) on
/// `listener` until `cancel` fires; `refresh` runs before each render to
/// update gauges read from elsewhere.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    refresh: std::sync::Arc<dyn Fn() + Send + Sync>,
    cancel: CancellationToken,
) {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let refresh = refresh.clone();
            async move {
                refresh();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    metrics().render(),
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
    {
        tracing::warn!(error = %e, "metrics server stopped");
    }
}
