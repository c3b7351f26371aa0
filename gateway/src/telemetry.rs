//! Logs, traces and metrics (docs/operations.md, "Monitoring").
//!
//! - Logs: structured lines on stderr (text or JSON), filtered by `[logging] filter` or `RUST_LOG`.
//! - Traces: exported over OTLP/HTTP (protobuf) when the standard `OTEL_*` variables name an
//!   endpoint. Off by default, and then no OpenTelemetry layer is installed at all. Incoming W3C
//!   `traceparent` headers are honoured (`adapters::http::metrics::observe`).
//! - Metrics: OpenTelemetry instruments (`metrics`), read by Prometheus at `/metrics` on the
//!   separate `[metrics] listen` address and/or pushed over OTLP. With neither, every instrument
//!   is a no-op.
//!
//! What never goes into a span, an attribute or a label: passwords, client secrets, codes, tokens,
//! cookies, query strings (they carry codes) and SQL statements (sea-orm's spans carry
//! `db.system` and `db.operation` only). Spans name routes by their pattern and dependency calls
//! by their operation.
pub mod metrics;

use crate::config::{Config, LogFormat};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Set when spans are exported: only then is `traceparent` worth parsing.
static TRACES_EXPORTED: AtomicBool = AtomicBool::new(false);

pub fn traces_exported() -> bool {
    TRACES_EXPORTED.load(Ordering::Relaxed)
}

/// What the standard OpenTelemetry variables ask for. Export is on only when an OTLP endpoint is
/// named (the specification's default of `localhost:4318` would make every install try to
/// export): `OTEL_EXPORTER_OTLP_ENDPOINT`, or the per-signal `..._TRACES_ENDPOINT` /
/// `..._METRICS_ENDPOINT`. `OTEL_SDK_DISABLED=true` and `OTEL_{TRACES,METRICS}_EXPORTER=none`
/// turn a signal off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OtelEnv {
    pub traces: bool,
    pub metrics: bool,
}

impl OtelEnv {
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Self {
        let set = |k: &str| get(k).is_some_and(|v| !v.trim().is_empty());
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Self::default();
        }
        let otlp_wanted = |k: &str| get(k).is_none_or(|v| v.split(',').any(|x| x.trim() == "otlp"));
        let any = set("OTEL_EXPORTER_OTLP_ENDPOINT");
        Self {
            traces: (any || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) && otlp_wanted("OTEL_TRACES_EXPORTER"),
            metrics: (any || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")) && otlp_wanted("OTEL_METRICS_EXPORTER"),
        }
    }
}

/// Keeps the exporters alive; dropping it flushes what is still buffered (at shutdown).
#[must_use = "dropping the guard stops the exporters"]
#[derive(Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(t) = self.tracer.take() {
            let _ = t.shutdown();
        }
        if let Some(m) = self.meter.take() {
            let _ = m.shutdown();
        }
    }
}

/// `service.name` is `relais` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` say otherwise.
fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let b = Resource::builder();
    let b = if named { b } else { b.with_service_name("relais") };
    b.with_attributes([opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))])
        .build()
}

/// Only OTLP over HTTP with protobuf bodies is built in.
fn check_protocol(problems: &mut Vec<String>) {
    for k in [
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    ] {
        if let Ok(v) = std::env::var(k)
            && v != "http/protobuf"
        {
            problems.push(format!("{k}={v} is not supported; using http/protobuf"));
        }
    }
}

/// Installs logging, and tracing/metrics export as configured. Call once, early; keep the guard
/// until the process ends.
pub fn init(cfg: &Config) -> Telemetry {
    let env = OtelEnv::read(|k| std::env::var(k).ok());
    let mut problems = Vec::new();
    if env.traces || env.metrics {
        check_protocol(&mut problems);
    }
    let mut guard = Telemetry::default();
    if env.traces {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
        {
            Ok(exporter) => {
                // The batch processor runs on its own thread; sampler and batch sizes come from
                // OTEL_TRACES_SAMPLER(_ARG) and OTEL_BSP_*.
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource())
                    .build();
                opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
                TRACES_EXPORTED.store(true, Ordering::Relaxed);
                guard.tracer = Some(provider);
            }
            Err(e) => problems.push(format!("OTLP trace exporter: {e}; traces are not exported")),
        }
    }
    let prometheus = cfg.metrics.listen.is_some();
    if prometheus || env.metrics {
        let mut b = SdkMeterProvider::builder().with_resource(resource());
        if prometheus {
            match opentelemetry_prometheus::exporter()
                .with_registry(metrics::registry().clone())
                .scope_info_enabled(false)
                .build()
            {
                Ok(reader) => b = b.with_reader(reader),
                Err(e) => problems.push(format!("Prometheus exporter: {e}")),
            }
        }
        if env.metrics {
            match opentelemetry_otlp::MetricExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .build()
            {
                // Interval from OTEL_METRIC_EXPORT_INTERVAL (default 60 s).
                Ok(exporter) => b = b.with_periodic_exporter(exporter),
                Err(e) => problems.push(format!("OTLP metric exporter: {e}; metrics are not pushed")),
            }
        }
        let provider = b.build();
        opentelemetry::global::set_meter_provider(provider.clone());
        metrics::enable();
        guard.meter = Some(provider);
    }

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.logging.filter));
    // Colour codes only for a person at a terminal: journald, files and log shippers would
    // store the escape sequences (and formatting them cost the token endpoint about 3 %).
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let fmt = match cfg.logging.format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text => fmt.boxed(),
    }
    .with_filter(filter);
    // Spans of Relais and of sea-orm's SQL calls; log events at info and above become span events.
    let ours = || {
        Targets::new()
            .with_target("relais", Level::INFO)
            .with_target("sea_orm", Level::INFO)
            .with_default(Level::WARN)
    };
    let otel = guard
        .tracer
        .as_ref()
        // No per-span source location, thread, target or busy/idle timing: they cost time on
        // every span and every enter/exit, and a login makes dozens of spans.
        .map(|p| {
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer("relais"))
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                .with_filter(ours())
        });
    let deps = metrics::enabled().then(|| metrics::DependencyTimer.with_filter(ours()));
    let _ = tracing_subscriber::registry().with(fmt).with(otel).with(deps).try_init();
    for p in problems {
        tracing::warn!(problem = %p, "telemetry");
    }
    tracing::info!(
        traces = env.traces && guard.tracer.is_some(),
        otlp_metrics = env.metrics,
        prometheus,
        "telemetry"
    );
    guard
}

#[cfg(test)]
mod tests {
    use super::OtelEnv;

    fn env(vars: &[(&str, &str)]) -> OtelEnv {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        OtelEnv::read(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn export_is_off_unless_an_endpoint_is_named() {
        assert_eq!(env(&[]), OtelEnv::default());
        assert_eq!(env(&[("OTEL_SERVICE_NAME", "relais")]), OtelEnv::default());
        let both = OtelEnv {
            traces: true,
            metrics: true,
        };
        assert_eq!(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]), both);
        assert_eq!(
            env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")]),
            OtelEnv {
                traces: true,
                metrics: false
            }
        );
        assert_eq!(
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_METRICS_EXPORTER", "none")]),
            OtelEnv {
                traces: true,
                metrics: false
            }
        );
        assert_eq!(
            env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_SDK_DISABLED", "true")]),
            OtelEnv::default()
        );
    }
}
