//! Several `relais` processes (the built binary) on one PostgreSQL and one Redis behind Debian's
//! HAProxy on loopback, and the SIGTERM sequence of one process.
use crate::harness::{self, Db, Sessions};
use crate::process::{self, FlowError, FlowParams, Relais};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CALLBACK: &str = "http://localhost:9/cb";
const PASSWORD: &str = "alice-password-1";

fn haproxy_bin() -> &'static str {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("Debian's haproxy is not installed (scripts/test.sh installs it)")
}

/// Status of each server of backend `relais` from HAProxy's CSV stats.
async fn haproxy_status(http: &reqwest::Client, stats: &str) -> HashMap<String, String> {
    let Ok(r) = http.get(stats).send().await else {
        return HashMap::new();
    };
    let csv = r.text().await.unwrap_or_default();
    csv.lines()
        .filter(|l| l.starts_with("relais,") && !l.starts_with("relais,BACKEND"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Some((f.get(1)?.to_string(), f.get(17)?.to_string()))
        })
        .collect()
}

struct Outcomes {
    completed: Vec<String>,
    retryable: Vec<String>,
    broken: Vec<String>,
    completed_after_kill: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_behind_haproxy_survive_a_sigkill() {
    let dir = process::temp_dir("relais-replicas");
    let lb = process::free_port();
    let stats_port = process::free_port();
    let issuer = format!("http://localhost:{lb}");
    let cfg = process::config(
        &dir,
        &issuer,
        &harness::database_toml(Db::Postgres).await,
        &harness::sessions_toml(Sessions::Redis),
        "[shutdown]\nreadiness_grace_ms = 0\n",
    );
    let secret = process::add_client(&cfg, "web", CALLBACK);
    process::add_user(&cfg, "alice", PASSWORD);
    let ports: Vec<u16> = (0..3).map(|_| process::free_port()).collect();
    let mut replicas: Vec<Relais> = ports.iter().map(|p| Relais::spawn(&cfg, *p, &[])).collect();
    for r in &mut replicas {
        r.wait_ready().await;
    }

    // Health checks every 500 ms, down after 2 failures; a refused connection is retried on
    // another server (`redispatch`), which is safe: the request never reached Relais.
    let servers: String = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("  server r{i} 127.0.0.1:{p} check\n"))
        .collect();
    let haproxy_cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &haproxy_cfg,
        format!(
            "global\n  maxconn 2000\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n  retries 3\n  option redispatch 1\n\
             frontend fe\n  bind 127.0.0.1:{lb}\n  default_backend relais\n\
             backend relais\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n  default-server inter 500ms fastinter 200ms downinter 500ms fall 2 rise 2\n{servers}\
             listen stats\n  bind 127.0.0.1:{stats_port}\n  stats enable\n  stats uri /stats\n"
        ),
    )
    .unwrap();
    let mut haproxy = std::process::Command::new(haproxy_bin())
        .args(["-db", "-f"])
        .arg(&haproxy_cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log")).unwrap())
        .spawn()
        .unwrap();
    let stats = format!("http://127.0.0.1:{stats_port}/stats;csv");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = haproxy_status(&http, &stats).await;
        if s.len() == 3 && s.values().all(|v| v == "UP") {
            break;
        }
        assert!(Instant::now() < deadline, "HAProxy never saw 3 servers up: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let params = FlowParams::new(&issuer, &secret, CALLBACK, "alice", PASSWORD);

    // A login started on one replica finishes on another; its SSO session works everywhere.
    let sso = process::browser();
    let direct = |i: usize| format!("http://localhost:{}", ports[i]);
    process::login_flow_via(&params.with_base(&direct(0)), &sso, &direct(2), &direct(1))
        .await
        .expect("authorize on r0, password on r2, code redeemed on r1");

    // The load: full logins through HAProxy, fresh browser each, 6 at a time.
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<std::sync::Mutex<Option<Instant>>> = Default::default();
    let mut workers = Vec::new();
    for _ in 0..6 {
        let (stop, killed_at, p) = (stop.clone(), killed_at.clone(), params.clone());
        workers.push(tokio::spawn(async move {
            let mut out = Outcomes {
                completed: vec![],
                retryable: vec![],
                broken: vec![],
                completed_after_kill: 0,
            };
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                match process::login_flow(&p, &process::browser()).await {
                    Ok(f) => {
                        if killed_at.lock().unwrap().is_some_and(|k| started > k) {
                            out.completed_after_kill += 1;
                        }
                        out.completed.push(f.code);
                    }
                    Err(FlowError::Retryable(e)) => out.retryable.push(e),
                    Err(FlowError::Broken(e)) => out.broken.push(e),
                }
            }
            out
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let victim = 1;
    replicas[victim].signal(libc::SIGKILL);
    let kill = Instant::now();
    *killed_at.lock().unwrap() = Some(kill);
    let down_after = loop {
        let s = haproxy_status(&http, &stats).await;
        if s.get("r1").is_some_and(|v| v.starts_with("DOWN")) {
            break kill.elapsed();
        }
        assert!(kill.elapsed() < Duration::from_secs(10), "HAProxy kept r1 up: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Outcomes {
        completed: vec![],
        retryable: vec![],
        broken: vec![],
        completed_after_kill: 0,
    };
    for w in workers {
        let o = w.await.unwrap();
        all.completed.extend(o.completed);
        all.retryable.extend(o.retryable);
        all.broken.extend(o.broken);
        all.completed_after_kill += o.completed_after_kill;
    }
    let total = all.completed.len() + all.retryable.len() + all.broken.len();
    println!(
        "replicas: {total} flows, {} completed ({} started after the kill), {} retryable errors, {} broken; \
         HAProxy marked the killed replica DOWN {} ms after SIGKILL",
        all.completed.len(),
        all.completed_after_kill,
        all.retryable.len(),
        all.broken.len(),
        down_after.as_millis()
    );
    println!("retryable: {:?}", all.retryable);
    assert!(all.broken.is_empty(), "flows that failed unclean: {:?}", all.broken);
    assert!(all.completed.len() >= 10 && all.completed_after_kill > 0, "the load ran on");
    let distinct: HashSet<&String> = all.completed.iter().collect();
    assert_eq!(distinct.len(), all.completed.len(), "every completed flow had its own code");

    // The audit trail: every grant recorded, no code redeemed twice, the chain verifies.
    let config = relais::config::Config::load(Some(&cfg), std::iter::empty()).unwrap();
    let store = relais::server::open_store(&config).await.unwrap();
    let records = relais::domain::ports::Storage::audit_records(&store, 1_000_000).await.unwrap();
    let count = |k: &str| records.iter().filter(|r| r.event.kind() == k).count();
    assert_eq!(count("code_replayed"), 0, "no code was redeemed twice");
    assert_eq!(count("refresh_reuse_detected"), 0);
    // +1: the split flow above. A redemption whose answer was lost with r1 is still recorded.
    let issued = count("token_issued");
    assert!(issued > all.completed.len(), "a token_issued record per completed flow ({issued})");
    assert!(issued <= all.completed.len() + 1 + all.retryable.len());
    assert!(count("code_issued") >= issued);
    let verify = process::cli(&cfg, &["audit", "verify"], "");
    println!("{verify}");

    // Sessions on the survivors still work: SSO reuse gives a code on each, redeemed there.
    for i in [0, 2] {
        let f = process::login_flow(&params.with_base(&direct(i)), &sso)
            .await
            .unwrap_or_else(|e| panic!("SSO on survivor r{i}: {e:?}"));
        assert!(f.sso, "r{i} reused the SSO session made before the kill");
    }
    let _ = haproxy.kill();
    let _ = haproxy.wait();
}

/// SIGTERM: `/readyz` turns 503 at once while requests are still served for the grace period,
/// then the process drains and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_false_then_drains_and_exits() {
    let dir = process::temp_dir("relais-sigterm");
    let port = process::free_port();
    let issuer = format!("http://localhost:{port}");
    let cfg = process::config(
        &dir,
        &issuer,
        &harness::database_toml(Db::Sqlite).await,
        &harness::sessions_toml(Sessions::Memory),
        "[shutdown]\nreadiness_grace_ms = 2000\ndrain_timeout_secs = 5\n",
    );
    let secret = process::add_client(&cfg, "web", CALLBACK);
    process::add_user(&cfg, "alice", PASSWORD);
    let mut relais = Relais::spawn(&cfg, port, &[]);
    relais.wait_ready().await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    relais.signal(libc::SIGTERM);
    let t = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "readiness goes false first");
    assert_eq!(ready.json::<serde_json::Value>().await.unwrap()["status"], "draining");
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    // Still serving during the grace period: a whole login works.
    let p = FlowParams::new(&issuer, &secret, CALLBACK, "alice", PASSWORD);
    process::login_flow(&p, &process::browser())
        .await
        .expect("served during the grace period");
    assert!(t.elapsed() < Duration::from_millis(2000), "the flow ran within the grace period");
    let status = relais.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}: {}", relais.log());
    assert!(t.elapsed() >= Duration::from_millis(1900), "the grace period was kept");
    let log = relais.log();
    assert!(
        log.contains("readiness is now false") && log.contains("draining in-flight requests"),
        "{log}"
    );
}
