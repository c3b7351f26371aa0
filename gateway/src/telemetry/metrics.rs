//! The metrics of Relais (docs/operations.md lists them with what to alert on).
//!
//! Instruments are OpenTelemetry's; `telemetry::init` installs a meter provider read by the
//! Prometheus registry below (served at `/metrics` on the metrics listener) and/or pushed over
//! OTLP. Until then (tests, CLI commands) `instruments()` is `None` and recording costs a branch.
//!
//! Sources:
//! - the audit trail (`MeteredAuditSink`): logins by method and outcome, token grants, lockouts,
//!   audit records. Counting what was audited keeps the metrics and the trail in agreement;
//! - the HTTP middleware (`adapters::http::metrics::observe`): request latency per route;
//! - dependency spans (`DependencyTimer`): SQL (sea-orm's spans), Redis and LDAP call latency;
//! - a poller (`spawn_poller`): dependency health and the audit chain length.
//!
//! Labels take values from closed sets only (route patterns, event kinds, known grant types),
//! never from a request, so no secret and no unbounded cardinality can reach them.
use crate::domain::audit::{AuditEvent, AuditRecord, Outcome};
use crate::domain::ports::{AuditSink, SessionStore, Storage, StoreError};
use crate::domain::records::AuditedWrite;
use async_trait::async_trait;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, ObservableGauge};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tracing::span;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

static ENABLED: AtomicBool = AtomicBool::new(false);
static REGISTRY: OnceLock<prometheus::Registry> = OnceLock::new();
static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
/// Newest audit sequence number seen by the poller (-1: not read yet).
static AUDIT_CHAIN_LENGTH: AtomicI64 = AtomicI64::new(-1);
/// 1 up, 0 down, -1 not checked yet: database, session store.
static DB_UP: AtomicI64 = AtomicI64::new(-1);
static SESSIONS_UP: AtomicI64 = AtomicI64::new(-1);
/// Each directory's last health check (name, 1/0), in configuration order.
static DIRECTORIES_UP: std::sync::Mutex<Vec<(String, i64)>> = std::sync::Mutex::new(Vec::new());

const SECONDS_BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether a meter provider is installed (metrics are read by Prometheus or pushed by OTLP).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The registry behind `/metrics`.
pub fn registry() -> &'static prometheus::Registry {
    REGISTRY.get_or_init(prometheus::Registry::new)
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    use prometheus::Encoder;
    let mut out = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&registry().gather(), &mut out) {
        tracing::warn!(error = %e, "could not encode metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

pub struct Instruments {
    logins: Counter<u64>,
    token_grants: Counter<u64>,
    lockouts: Counter<u64>,
    audit_records: Counter<u64>,
    http_duration: Histogram<f64>,
    dependency_duration: Histogram<f64>,
    dependency_errors: Counter<u64>,
    _gauges: Vec<ObservableGauge<i64>>,
}

fn instruments() -> Option<&'static Instruments> {
    if !enabled() {
        return None;
    }
    Some(INSTRUMENTS.get_or_init(|| {
        let m = opentelemetry::global::meter("relais");
        let gauge = |name: &'static str, help: &'static str, read: fn() -> Vec<(i64, Vec<KeyValue>)>| {
            m.i64_observable_gauge(name)
                .with_description(help)
                .with_callback(move |o| {
                    for (v, attrs) in read() {
                        if v >= 0 {
                            o.observe(v, &attrs);
                        }
                    }
                })
                .build()
        };
        Instruments {
            logins: m
                .u64_counter("relais.logins")
                .with_description("Login attempts by method (password, security_key, sso, ...) and outcome")
                .build(),
            token_grants: m
                .u64_counter("relais.token.grants")
                .with_description("Token endpoint answers by grant type and outcome")
                .build(),
            lockouts: m
                .u64_counter("relais.lockouts")
                .with_description("Logins refused by brute-force throttling, by scope (account, ip)")
                .build(),
            audit_records: m
                .u64_counter("relais.audit.records")
                .with_description("Audit records written, by event and outcome")
                .build(),
            http_duration: m
                .f64_histogram("relais.http.request.duration")
                .with_unit("s")
                .with_description("HTTP request latency by method, route pattern and status")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            dependency_duration: m
                .f64_histogram("relais.dependency.duration")
                .with_unit("s")
                .with_description("Latency of calls to dependencies (postgresql, sqlite, redis, ldap) by operation")
                .with_boundaries(SECONDS_BUCKETS.to_vec())
                .build(),
            dependency_errors: m
                .u64_counter("relais.dependency.errors")
                .with_description("Failed calls to dependencies")
                .build(),
            _gauges: vec![
                gauge("relais.audit.chain.length", "Sequence number of the newest audit record", || {
                    vec![(AUDIT_CHAIN_LENGTH.load(Ordering::Relaxed), vec![])]
                }),
                gauge(
                    "relais.dependency.up",
                    "1 when the dependency answered the last health check",
                    || {
                        let mut v = vec![
                            (DB_UP.load(Ordering::Relaxed), vec![KeyValue::new("dependency", "database")]),
                            (
                                SESSIONS_UP.load(Ordering::Relaxed),
                                vec![KeyValue::new("dependency", "session_store")],
                            ),
                        ];
                        for (name, up) in DIRECTORIES_UP.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                            v.push((
                                *up,
                                vec![KeyValue::new("dependency", "directory"), KeyValue::new("directory", name.clone())],
                            ));
                        }
                        v
                    },
                ),
            ],
        }
    }))
}

/// One HTTP request served. `route` is the matched pattern (never the path or the query).
pub fn http_request(method: &'static str, route: &str, status: u16, elapsed: Duration) {
    if let Some(i) = instruments() {
        i.http_duration.record(
            elapsed.as_secs_f64(),
            &[
                KeyValue::new("method", method),
                KeyValue::new("route", route.to_owned()),
                KeyValue::new("status", i64::from(status)),
            ],
        );
    }
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
    }
}

fn grant_type(g: Option<&str>) -> &'static str {
    match g {
        Some("authorization_code") => "authorization_code",
        Some("refresh_token") => "refresh_token",
        _ => "other",
    }
}

/// Counts one audited event.
pub fn audit(event: &AuditEvent) {
    let Some(i) = instruments() else { return };
    let kind = event.kind();
    let out = outcome(event.outcome());
    i.audit_records
        .add(1, &[KeyValue::new("event", kind), KeyValue::new("outcome", out)]);
    let login = |method: &'static str, outcome: &'static str| {
        i.logins
            .add(1, &[KeyValue::new("method", method), KeyValue::new("outcome", outcome)]);
    };
    match event {
        AuditEvent::LoginThrottled { scope, .. } => {
            login("password", "throttled");
            let scope = if scope == "ip" { "ip" } else { "account" };
            i.lockouts.add(1, &[KeyValue::new("scope", scope)]);
        }
        AuditEvent::LoginAccountRefused { .. } => login("password", "refused"),
        AuditEvent::LoginPassword { .. } => login("password", out),
        AuditEvent::Fido2Authentication { .. } => login("security_key", out),
        AuditEvent::SsoReused { .. } => login("sso", "success"),
        AuditEvent::TokenIssued { grant_type: g, .. } => i.token_grants.add(
            1,
            &[
                KeyValue::new("grant_type", grant_type(Some(g.as_str()))),
                KeyValue::new("outcome", "success"),
            ],
        ),
        AuditEvent::TokenRefused { grant_type: g, .. } => i.token_grants.add(
            1,
            &[
                KeyValue::new("grant_type", grant_type(g.as_deref())),
                KeyValue::new("outcome", "failure"),
            ],
        ),
        AuditEvent::CodeReplayed { .. } => i.token_grants.add(
            1,
            &[
                KeyValue::new("grant_type", "authorization_code"),
                KeyValue::new("outcome", "failure"),
            ],
        ),
        // Login methods added later (e.g. CPS cards) are audited as `login_<method>`.
        _ if kind.starts_with("login_") => login(kind.trim_start_matches("login_"), out),
        _ => {}
    }
}

/// The audit sink, counting what it wrote.
pub struct MeteredAuditSink(pub Arc<dyn AuditSink>);

#[async_trait]
impl AuditSink for MeteredAuditSink {
    async fn record_with(&self, record: AuditRecord, write: Option<AuditedWrite>) -> Result<(), StoreError> {
        if !enabled() {
            return self.0.record_with(record, write).await;
        }
        let event = record.event.clone();
        self.0.record_with(record, write).await?;
        audit(&event);
        Ok(())
    }

    async fn record_if_active(&self, account_id: uuid::Uuid, record: AuditRecord, write: Option<AuditedWrite>) -> Result<bool, StoreError> {
        let event = enabled().then(|| record.event.clone());
        let recorded = self.0.record_if_active(account_id, record, write).await?;
        if recorded && let Some(event) = event {
            audit(&event);
        }
        Ok(recorded)
    }
}

/// Checks the database and the session store, and reads the audit chain head, every `every`.
pub fn spawn_poller(
    storage: Arc<dyn Storage>,
    sessions: Arc<dyn SessionStore>,
    directories: Vec<Arc<crate::adapters::directory::Directory>>,
    timeout: Duration,
    every: Duration,
) {
    if !enabled() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let head = tokio::time::timeout(timeout, storage.audit_head()).await;
            DB_UP.store(matches!(head, Ok(Ok(_))) as i64, Ordering::Relaxed);
            if let Ok(Ok((seq, _))) = head {
                AUDIT_CHAIN_LENGTH.store(seq, Ordering::Relaxed);
            }
            let s = tokio::time::timeout(timeout, sessions.ping()).await;
            SESSIONS_UP.store(matches!(s, Ok(Ok(()))) as i64, Ordering::Relaxed);
            let mut dirs = Vec::with_capacity(directories.len());
            for d in &directories {
                let r = tokio::time::timeout(timeout, d.ping()).await;
                dirs.push((d.settings.name.clone(), matches!(r, Ok(Ok(()))) as i64));
            }
            *DIRECTORIES_UP.lock().unwrap_or_else(|e| e.into_inner()) = dirs;
        }
    });
}

/// Times dependency spans: sea-orm's SQL spans (`sea_orm.*`), the `sql` spans of SQL run
/// without sea-orm (the SQLite audit commit), and the `redis` and `ldap` spans of the
/// session-store and directory adapters. Installed only when metrics are on.
pub struct DependencyTimer;

struct Timing {
    start: Instant,
    dependency: &'static str,
    operation: String,
    failed: bool,
}

#[derive(Default)]
struct Fields {
    system: Option<String>,
    operation: Option<String>,
    failed: bool,
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "db.system" => self.system = Some(value.to_owned()),
            "db.operation" | "ldap.operation" => self.operation = Some(value.to_owned()),
            "otel.status_code" => self.failed = value == "ERROR",
            _ => {}
        }
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "db.system" | "db.operation" | "ldap.operation" | "otel.status_code") {
            self.record_str(field, format!("{value:?}").trim_matches('"'));
        }
    }
}

fn dependency_of(meta: &tracing::Metadata<'_>, system: Option<&str>) -> Option<&'static str> {
    if meta.target().starts_with("sea_orm") || meta.name() == "sql" {
        return Some(match system {
            Some("postgresql") => "postgresql",
            Some("sqlite") => "sqlite",
            _ => "sql",
        });
    }
    match meta.name() {
        "redis" => Some("redis"),
        "ldap" => Some("ldap"),
        _ => None,
    }
}

impl<S> tracing_subscriber::Layer<S> for DependencyTimer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let meta = attrs.metadata();
        if !(meta.target().starts_with("sea_orm") || matches!(meta.name(), "sql" | "redis" | "ldap")) {
            return;
        }
        let mut f = Fields::default();
        attrs.record(&mut f);
        let Some(dependency) = dependency_of(meta, f.system.as_deref()) else {
            return;
        };
        // Operations are closed sets (SELECT/INSERT/..., Redis commands, connect/bind/search);
        // sea-orm's transaction spans have none and are named by their span name.
        let operation = f
            .operation
            .unwrap_or_else(|| meta.name().trim_start_matches("sea_orm.").to_owned())
            .chars()
            .take(32)
            .collect();
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Timing {
                start: Instant::now(),
                dependency,
                operation,
                failed: f.failed,
            });
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(t) = ext.get_mut::<Timing>() {
            let mut f = Fields::default();
            values.record(&mut f);
            t.failed |= f.failed;
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(t) = span.extensions_mut().remove::<Timing>() else {
            return;
        };
        let Some(i) = instruments() else { return };
        let attrs = [KeyValue::new("dependency", t.dependency), KeyValue::new("operation", t.operation)];
        i.dependency_duration.record(t.start.elapsed().as_secs_f64(), &attrs);
        if t.failed {
            i.dependency_errors.add(1, &attrs);
        }
    }
}
