//! OpenTelemetry and Prometheus, on the built `relais` binary (telemetry is process-wide):
//! - the test receives OTLP/HTTP itself, decodes it with `opentelemetry-proto` and checks the
//!   span tree of one directory login (a W3C `traceparent` sent by the client is the parent);
//! - planted values (passwords, client secret, code, tokens, KEK) appear in no span, attribute,
//!   metric or log line;
//! - Debian's `prometheus` scrapes `/metrics` on the metrics listener.
use crate::harness::{self, Db, Sessions};
use crate::process::{self, FlowParams, Relais};
use crate::slapd::Slapd;
use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CALLBACK: &str = "http://localhost:9/cb";

#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
}

impl Received {
    fn spans(&self) -> Vec<Span> {
        self.traces
            .iter()
            .flat_map(|t| &t.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| s.spans.clone())
            .collect()
    }
}

/// An OTLP/HTTP (protobuf) receiver on a free loopback port: `/v1/traces` and `/v1/metrics`.
async fn receiver() -> (String, Arc<Mutex<Received>>, actix_web::dev::ServerHandle) {
    let got = Arc::new(Mutex::new(Received::default()));
    let data = web::Data::from(got.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(64 << 20))
            .route(
                "/v1/traces",
                web::post().to(|got: web::Data<Mutex<Received>>, body: web::Bytes| async move {
                    let req = ExportTraceServiceRequest::decode(body).expect("OTLP trace request decodes");
                    got.lock().unwrap().traces.push(req);
                    HttpResponse::Ok().content_type("application/x-protobuf").finish()
                }),
            )
            .route(
                "/v1/metrics",
                web::post().to(|got: web::Data<Mutex<Received>>, body: web::Bytes| async move {
                    let req = ExportMetricsServiceRequest::decode(body).expect("OTLP metrics request decodes");
                    got.lock().unwrap().metrics.push(req);
                    HttpResponse::Ok().content_type("application/x-protobuf").finish()
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .disable_signals()
    .shutdown_timeout(1)
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (url, got, handle)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn random_hex(bytes: usize) -> String {
    let mut v = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut v).unwrap();
    hex(&v)
}

/// Names of every span under `root` (not `root` itself).
fn descendants(spans: &[Span], root: &Span) -> Vec<String> {
    let mut out = Vec::new();
    let mut frontier = vec![root.span_id.clone()];
    while let Some(id) = frontier.pop() {
        for s in spans.iter().filter(|s| s.parent_span_id == id) {
            out.push(s.name.clone());
            frontier.push(s.span_id.clone());
        }
    }
    out
}

fn metrics_port_toml(port: u16) -> String {
    format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n[shutdown]\nreadiness_grace_ms = 0\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_trace_tree_honours_traceparent_and_nothing_secret_leaks() {
    let slapd = Slapd::start();
    let (otlp, got, otlp_handle) = receiver().await;
    let dir = process::temp_dir("relais-otel");
    let port = process::free_port();
    let metrics_port = process::free_port();
    let issuer = format!("http://localhost:{port}");
    let directory = format!(
        "[[directories]]\nname = \"chu\"\npreset = \"openldap\"\nurls = [\"{}\"]\nca_file = \"{}\"\nbind_dn = \"cn=relais,ou=services,dc=chu,dc=example\"\nbind_password = \"relais-service-pw\"\nbase_dn = \"ou=people,dc=chu,dc=example\"\n",
        slapd.ldaps(),
        slapd.ca_file().display()
    );
    let cfg = process::config(
        &dir,
        &issuer,
        &harness::database_toml(Db::Postgres).await,
        &harness::sessions_toml(Sessions::Redis),
        &format!("{}{directory}", metrics_port_toml(metrics_port)),
    );
    let kek = std::fs::read_to_string(&cfg)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("encryption_key = \"").map(|v| v.trim_end_matches('"').to_owned()))
        .unwrap();
    let secret = process::add_client(&cfg, "web", CALLBACK);
    let mut relais = Relais::spawn(
        &cfg,
        port,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300".into()),
            ("OTEL_SERVICE_NAME", "relais-e2e".into()),
            // As verbose as an operator could make it: debug lines must not leak either.
            ("RUST_LOG", "debug".into()),
        ],
    );
    relais.wait_ready().await;

    let trace_id = random_hex(16);
    let parent_id = random_hex(8);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("traceparent", format!("00-{trace_id}-{parent_id}-01").parse().unwrap());
    let password = "jdupont-pw-1";
    let params = FlowParams {
        headers: headers.clone(),
        ..FlowParams::new(&issuer, &secret, CALLBACK, "jdupont", password)
    };
    let flow = process::login_flow(&params, &process::browser()).await.expect("login flow");
    let access = flow.tokens["access_token"].as_str().unwrap().to_owned();
    let id_token = flow.tokens["id_token"].as_str().unwrap().to_owned();
    let userinfo = reqwest::Client::new()
        .get(format!("{issuer}/userinfo"))
        .headers(headers.clone())
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert!(userinfo.status().is_success());

    // Spans arrive in batches every 100 ms; wait for the token request's.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let done = got.lock().unwrap().spans().iter().any(|s| s.name == "GET /userinfo");
        let metrics = !got.lock().unwrap().metrics.is_empty();
        if done && metrics {
            break;
        }
        assert!(Instant::now() < deadline, "no spans/metrics received: {}", relais.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scraped = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    relais.signal(libc::SIGTERM);
    assert!(relais.wait_exit(Duration::from_secs(20)).await.success(), "{}", relais.log());
    otlp_handle.stop(false).await;

    // --- The span tree -----------------------------------------------------------------------
    let received = got.lock().unwrap();
    let all = received.spans();
    let service = received.traces[0].resource_spans[0].resource.as_ref().unwrap();
    assert!(format!("{service:?}").contains("relais-e2e"), "service.name from OTEL_SERVICE_NAME");
    let ours: Vec<Span> = all.into_iter().filter(|s| hex(&s.trace_id) == trace_id).collect();
    let by_name = |n: &str| -> Span {
        ours.iter()
            .find(|s| s.name == n)
            .unwrap_or_else(|| panic!("no span {n} in {:?}", ours.iter().map(|s| &s.name).collect::<Vec<_>>()))
            .clone()
    };
    for n in ["GET /authorize", "GET /login", "POST /login", "POST /token", "GET /userinfo"] {
        let s = by_name(n);
        assert_eq!(hex(&s.parent_span_id), parent_id, "{n}: the client's traceparent is the parent");
        assert_eq!(s.kind, 2, "{n} is a server span");
        let attrs = format!("{:?}", s.attributes);
        assert!(
            attrs.contains("http.route") && attrs.contains("http.response.status_code"),
            "{n}: {attrs}"
        );
    }
    let under = |n: &str| descendants(&ours, &by_name(n));
    assert!(
        under("GET /authorize").contains(&"authorize".to_owned()),
        "{:?}",
        under("GET /authorize")
    );
    let login = under("POST /login");
    for n in [
        "login",
        "directory.authenticate",
        "ldap bind",
        "ldap search",
        "identity_mapping",
        "issue_code",
    ] {
        assert!(login.contains(&n.to_owned()), "POST /login lacks {n}: {login:?}");
    }
    assert!(login.iter().any(|n| n.starts_with("redis ")), "{login:?}");
    assert!(login.iter().any(|n| n.starts_with("sea_orm.")), "{login:?}");
    let bind = by_name("ldap bind");
    let auth = by_name("directory.authenticate");
    assert!(descendants(&ours, &auth).contains(&"ldap bind".to_owned()));
    assert_eq!(bind.kind, 3, "dependency calls are client spans");
    let token = under("POST /token");
    for n in ["token", "code_grant", "mint", "redis SET XX GET"] {
        assert!(token.contains(&n.to_owned()), "POST /token lacks {n}: {token:?}");
    }
    // The code exchange reads no account: its only SQL is the audit writer's group commit,
    // which runs on the writer's task for many requests at once (not under this request).
    assert!(!token.iter().any(|n| n.starts_with("sea_orm.")), "{token:?}");
    let sql = ours.iter().find(|s| s.name.starts_with("sea_orm.")).unwrap();
    let sql_attrs = format!("{:?}", sql.attributes);
    assert!(
        sql_attrs.contains("postgresql") && sql_attrs.contains("db.operation"),
        "{sql_attrs}"
    );
    assert!(!sql_attrs.contains("db.statement"), "no statement text: {sql_attrs}");

    // --- Metrics -------------------------------------------------------------------------------
    for m in [
        "relais_logins_total{method=\"password\",outcome=\"success\"} 1",
        "relais_token_grants_total{grant_type=\"authorization_code\",outcome=\"success\"} 1",
        "relais_http_request_duration_seconds_bucket{method=\"POST\",route=\"/token\",status=\"200\"",
        "relais_dependency_duration_seconds_count{dependency=\"ldap\",operation=\"bind\"}",
        "relais_dependency_duration_seconds_count{dependency=\"redis\",operation=\"GETDEL\"}",
        "relais_dependency_duration_seconds_count{dependency=\"postgresql\",operation=\"SELECT\"}",
        "relais_audit_records_total{event=\"token_issued\",outcome=\"success\"} 1",
    ] {
        assert!(scraped.contains(m), "/metrics lacks {m}:\n{scraped}");
    }
    let otlp_metrics = format!("{:?}", received.metrics);
    assert!(otlp_metrics.contains("relais.logins") && otlp_metrics.contains("relais.http.request.duration"));

    // --- Planted values ------------------------------------------------------------------------
    let log = relais.log();
    assert!(log.contains("audit") && log.len() > 1000, "the log was captured: {log}");
    let haystacks: HashMap<&str, String> = HashMap::from([
        ("spans", format!("{:?}", received.traces)),
        ("OTLP metrics", otlp_metrics),
        ("/metrics", scraped),
        ("log", log),
    ]);
    let signature = |jwt: &str| jwt.rsplit('.').next().unwrap().to_owned();
    let planted = [
        ("password", password.to_owned()),
        ("directory service password", "relais-service-pw".to_owned()),
        ("client secret", secret.clone()),
        ("code", flow.code.clone()),
        ("access token", access.clone()),
        ("access token signature", signature(&access)),
        ("id token", id_token.clone()),
        ("id token signature", signature(&id_token)),
        ("key-encryption key", kek),
    ];
    for (what, value) in &planted {
        assert!(value.len() >= 12, "{what} is a real value");
        for (where_, hay) in &haystacks {
            assert!(!hay.contains(value.as_str()), "the {what} appears in the {where_}");
        }
    }
}

/// Debian's Prometheus scrapes `/metrics` of a running Relais: the target is up and the
/// metric names are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_metrics() {
    let prometheus = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .expect("Debian's prometheus is not installed (scripts/test.sh installs it)");
    let dir = process::temp_dir("relais-prom");
    let port = process::free_port();
    let metrics_port = process::free_port();
    let issuer = format!("http://localhost:{port}");
    let cfg = process::config(
        &dir,
        &issuer,
        &harness::database_toml(Db::Sqlite).await,
        &harness::sessions_toml(Sessions::Memory),
        &metrics_port_toml(metrics_port),
    );
    let secret = process::add_client(&cfg, "web", CALLBACK);
    process::add_user(&cfg, "alice", "alice-password-1");
    let mut relais = Relais::spawn(&cfg, port, &[]);
    relais.wait_ready().await;
    let params = FlowParams::new(&issuer, &secret, CALLBACK, "alice", "alice-password-1");
    process::login_flow(&params, &process::browser()).await.expect("login flow");

    let prom_port = process::free_port();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: relais\n    static_configs:\n      - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let mut prom = std::process::Command::new(prometheus)
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let api = format!("http://127.0.0.1:{prom_port}/api/v1");
    let http = reqwest::Client::new();
    let query = |q: &'static str| {
        let (http, api) = (http.clone(), api.clone());
        async move {
            let q = url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>();
            let r = http.get(format!("{api}/query?query={q}")).send().await.ok()?;
            let v: serde_json::Value = r.json().await.ok()?;
            v["data"]["result"].as_array().cloned()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let up = loop {
        if let Some(r) = query("up{job=\"relais\"}").await
            && let Some(first) = r.first()
        {
            break first["value"][1].as_str().unwrap_or_default().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus has no sample of the target: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(up, "1", "the relais target is up");
    let names: serde_json::Value = http
        .get(format!("{api}/label/__name__/values"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names = names["data"].to_string();
    for m in [
        "relais_logins_total",
        "relais_token_grants_total",
        "relais_http_request_duration_seconds_bucket",
        "relais_dependency_duration_seconds_bucket",
        "relais_audit_records_total",
    ] {
        assert!(names.contains(m), "Prometheus did not scrape {m}: {names}");
    }
    let logins = query("relais_logins_total{method=\"password\",outcome=\"success\"}").await.unwrap();
    assert_eq!(logins[0]["value"][1], "1", "{logins:?}");
    // The SQLite audit commit runs without sea-orm; it is timed all the same.
    let commits = query("relais_dependency_duration_seconds_count{dependency=\"sqlite\",operation=\"COMMIT\"}")
        .await
        .unwrap_or_default();
    assert!(commits.first().is_some_and(|c| c["value"][1] != "0"), "{commits:?}");
    let _ = prom.kill();
    let _ = prom.wait();
}
