//! Logs and traces for the binaries (feature `process`).
//!
//! Logs go to stderr through `tracing`, pretty or JSON, filtered by
//! `RUST_LOG`. Traces are exported by OTLP over gRPC only when the standard
//! variables ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set, or `OTEL_TRACES_EXPORTER=otlp`;
//! `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true` turn it off).
//! Spans then go through a batch processor on its own thread, so a slow or
//! absent collector never holds a request up; `OTEL_BSP_*`,
//! `OTEL_TRACES_SAMPLER` and `OTEL_SERVICE_NAME` apply as usual.
//!
//! W3C trace context crosses process boundaries as `traceparent` and
//! `tracestate` strings: in gRPC metadata, stored with each delivery, and
//! in the header sent to the receiver.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps the trace pipeline alive; flushes what is buffered when dropped.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(e) = p.shutdown()
        {
            eprintln!("trace export shutdown: {e}");
        }
    }
}

/// Whether the environment asks for OTLP trace export.
fn export_requested() -> bool {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return false;
    }
    match var("OTEL_TRACES_EXPORTER").as_deref() {
        Some("none") => false,
        Some(_) => true,
        None => {
            var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        }
    }
}

/// Sets up logging (`log_format` "json" or pretty) and, when asked for,
/// trace export under the service name `service` (unless
/// `OTEL_SERVICE_NAME` names another). Call inside the tokio runtime.
pub fn init(service: &'static str, log_format: &str) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = if log_format == "json" {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let mut problem = None;
    let provider = if export_requested() {
        match build_provider(service) {
            Ok(p) => Some(p),
            Err(e) => {
                problem = Some(e);
                None
            }
        }
    } else {
        None
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .init();
    if let Some(e) = problem {
        tracing::error!(error = %e, "trace export is off: cannot set up the OTLP exporter");
    }
    Telemetry { provider }
}

fn build_provider(service: &'static str) -> Result<SdkTracerProvider, String> {
    // Endpoint, headers, timeout and compression come from OTEL_EXPORTER_OTLP_*.
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// The W3C `traceparent` and `tracestate` of `span`, empty when it is not
/// traced (export off, or not sampled).
pub fn context_of(span: &tracing::Span) -> (String, String) {
    let cx = span.context();
    // The common case with export off: nothing to carry, nothing to build.
    if !cx.span().span_context().is_valid() {
        return (String::new(), String::new());
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    (
        carrier.remove("traceparent").unwrap_or_default(),
        carrier.remove("tracestate").unwrap_or_default(),
    )
}

/// Makes `span` a child of the W3C context in `traceparent` (and
/// `tracestate`), and records its trace id in the span's `trace_id` field
/// so every log line inside it carries the id. A malformed or empty
/// context leaves the span a root.
pub fn continue_trace(span: &tracing::Span, traceparent: &str, tracestate: &str) {
    if let Some(cx) = extract(traceparent, tracestate) {
        let _ = span.set_parent(cx);
    }
    let id = span.context().span().span_context().trace_id();
    if id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(id));
    }
}

/// Links `span` to the W3C context in `traceparent` (an OpenTelemetry span
/// link: related work, not its parent). For a span that serves several
/// traces at once, such as one call carrying many publishes. A malformed
/// or empty context adds nothing.
pub fn link(span: &tracing::Span, traceparent: &str, tracestate: &str) {
    if let Some(cx) = extract(traceparent, tracestate) {
        span.add_link(cx.span().span_context().clone());
    }
}

/// The remote context in a W3C `traceparent` (and `tracestate`); None when
/// it is empty or malformed.
fn extract(traceparent: &str, tracestate: &str) -> Option<opentelemetry::Context> {
    if traceparent.is_empty() {
        return None;
    }
    let carrier: HashMap<String, String> = HashMap::from([
        ("traceparent".to_string(), traceparent.to_string()),
        ("tracestate".to_string(), tracestate.to_string()),
    ]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// The trace id field of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`),
/// or "" when it has none.
pub fn trace_id_of(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Collects what the fmt layer writes.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn log_lines_inside_a_continued_span_carry_its_trace_id() {
        // A provider without an exporter: spans are made, not sent.
        let provider = SdkTracerProvider::builder().build();
        let buf = Buffer::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || writer.clone()),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let (child_parent, before) = tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("publish", trace_id = tracing::field::Empty);
            continue_trace(&span, &format!("00-{trace}-00f067aa0ba902b7-01"), "");
            span.in_scope(|| tracing::info!("inside"));
            tracing::info!("outside");
            let child = tracing::info_span!("attempt");
            child.set_parent(span.context()).ok();
            (context_of(&child).0, context_of(&span).0)
        });
        let out = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf-8");
        let inside = out
            .lines()
            .find(|l| l.contains("inside"))
            .expect("inside line");
        assert!(inside.contains(&format!("trace_id={trace}")), "{out}");
        let outside = out
            .lines()
            .find(|l| l.contains("outside"))
            .expect("outside line");
        assert!(!outside.contains("trace_id"), "{out}");
        assert!(before.starts_with(&format!("00-{trace}-")), "{before}");
        assert!(
            child_parent.starts_with(&format!("00-{trace}-")),
            "{child_parent}"
        );
        assert!(
            !child_parent.contains("00f067aa0ba902b7"),
            "the child has its own id"
        );
    }
}
