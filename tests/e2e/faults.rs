//! Dependencies that stop or slow down: the real Redis and PostgreSQL behind a TCP proxy the
//! test controls. Relais refuses cleanly (never a token it would not issue when healthy),
//! reports not-ready, keeps answering health checks, and recovers without a restart.
use crate::browser::{Browser, Step};
use crate::harness::{self, ALICE, CALLBACK, Server};

fn authorize_url(s: &Server) -> String {
    harness::authorize_url(s, "web", CALLBACK, "")
}
use reqwest::StatusCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TCP forwarder: `UP` forwards, `DOWN` cuts every connection, otherwise each chunk is
/// delayed by that many milliseconds.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    mode: Arc<AtomicU64>,
    generation: Arc<AtomicU64>,
}

const UP: u64 = 0;
const DOWN: u64 = u64::MAX;

impl Proxy {
    pub async fn start(target: &'static str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU64::new(UP));
        let generation = Arc::new(AtomicU64::new(0));
        let (m, g) = (mode.clone(), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                if m.load(Ordering::SeqCst) == DOWN {
                    drop(client);
                    continue;
                }
                let (m, g) = (m.clone(), g.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let born = g.load(Ordering::SeqCst);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let a = tokio::spawn(pump(cr, sw, m.clone(), g.clone(), born));
                    let b = tokio::spawn(pump(sr, cw, m, g, born));
                    let _ = tokio::join!(a, b);
                });
            }
        });
        Proxy { addr, mode, generation }
    }

    /// Cuts every open connection and refuses new ones.
    pub fn down(&self) {
        self.mode.store(DOWN, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
    pub fn up(&self) {
        self.mode.store(UP, Ordering::SeqCst);
    }
    pub fn slow(&self, ms: u64) {
        self.mode.store(ms, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mode: Arc<AtomicU64>,
    generation: Arc<AtomicU64>,
    born: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match tokio::time::timeout(Duration::from_millis(100), from.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
            Err(_) => {
                if generation.load(Ordering::SeqCst) != born {
                    return;
                }
                continue;
            }
        };
        if generation.load(Ordering::SeqCst) != born {
            return; // cut while down
        }
        match mode.load(Ordering::SeqCst) {
            UP => {}
            DOWN => return,
            ms => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn ready(s: &Server) -> StatusCode {
    reqwest::get(s.url("/readyz")).await.unwrap().status()
}

/// Tries a full login until it works or `within` passes.
async fn recovers(s: &Server, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        let b = Browser::new();
        if let Step::LoginForm(login) = b.start(&authorize_url(s)).await
            && let Step::Callback(q) = b.submit_login(&s.base, &login, ALICE.0, ALICE.1).await
            && q.contains_key("code")
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

#[tokio::test]
async fn redis_down_slow_and_back() {
    let proxy = Proxy::start("127.0.0.1:6379").await;
    let db = harness::database_toml(harness::Db::Sqlite).await;
    let sessions = format!(
        "[sessions]\nbackend = \"redis\"\nredis_url = \"redis://{}\"\nkey_prefix = \"{}\"\ntimeout_ms = 300\n",
        proxy.addr,
        harness::unique("relais-fault")
    );
    let kek = relais::adapters::keys::Kek::generate().to_base64();
    let s = harness::start_shared(&db, &sessions, &kek, true).await;
    let b = Browser::new();
    let Step::LoginForm(login) = b.start(&authorize_url(&s)).await else {
        panic!()
    };
    let Step::Callback(cb) = b.submit_login(&s.base, &login, ALICE.0, ALICE.1).await else {
        panic!()
    };
    let code = cb["code"].clone();

    proxy.down();
    // The browser gets a clear page, the client a retryable error; nothing is issued.
    match Browser::new().start(&authorize_url(&s)).await {
        Step::Page(st, page) => {
            assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
            assert!(page.contains("temporarily_unavailable"), "{page}");
        }
        other => panic!("{other:?}"),
    }
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
    ];
    let r = reqwest::Client::new()
        .post(s.url("/token"))
        .basic_auth("web", Some(&s.web_secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "temporarily_unavailable");
    assert_eq!(ready(&s).await, StatusCode::SERVICE_UNAVAILABLE);
    let t = Instant::now();
    assert_eq!(reqwest::get(s.url("/healthz")).await.unwrap().status(), StatusCode::OK);
    assert!(t.elapsed() < Duration::from_millis(500), "liveness does not wait for Redis");

    proxy.up();
    assert!(recovers(&s, Duration::from_secs(10)).await, "logins work again without a restart");
    assert_eq!(ready(&s).await, StatusCode::OK);
    // The code issued before the outage is still good (it lived in Redis, untouched).
    let r = reqwest::Client::new()
        .post(s.url("/token"))
        .basic_auth("web", Some(&s.web_secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A slow Redis is cut by the timeout: a quick, clean refusal, not a hang.
    proxy.slow(2_000);
    let t = Instant::now();
    let Step::Page(st, _) = Browser::new().start(&authorize_url(&s)).await else {
        panic!()
    };
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        t.elapsed() < Duration::from_millis(1_500),
        "cut by the 300 ms timeout, took {:?}",
        t.elapsed()
    );
    proxy.up();
    assert!(recovers(&s, Duration::from_secs(10)).await);
    s.stop().await;
}

#[tokio::test]
async fn postgres_down_and_back() {
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let schema = harness::unique("t");
    {
        let conn = sea_orm::Database::connect(harness::pg_url()).await.unwrap();
        sea_orm::ConnectionTrait::execute_unprepared(&conn, &format!("CREATE SCHEMA {schema}"))
            .await
            .unwrap();
    }
    let db = format!(
        "[database]\nurl = \"postgres://postgres@{}/test\"\nschema = \"{schema}\"\nconnect_timeout_ms = 500\n",
        proxy.addr
    );
    let kek = relais::adapters::keys::Kek::generate().to_base64();
    let s = harness::start_shared(&db, &harness::sessions_toml(harness::Sessions::Redis), &kek, true).await;
    assert!(recovers(&s, Duration::from_secs(5)).await);
    let before = s.storage().audit_records(10_000).await.unwrap().len();

    proxy.down();
    let b = Browser::new();
    // The login form needs no database; the login itself does (account, audit): refused.
    let step = b.start(&authorize_url(&s)).await;
    let outcome = match step {
        Step::LoginForm(login) => b.submit_login(&s.base, &login, ALICE.0, ALICE.1).await,
        other => other,
    };
    match outcome {
        Step::Page(st, page) => {
            assert!(st == StatusCode::SERVICE_UNAVAILABLE, "{st}: {page}");
            assert!(!page.contains("code="));
        }
        other => panic!("no login may complete without the database: {other:?}"),
    }
    assert_eq!(ready(&s).await, StatusCode::SERVICE_UNAVAILABLE);

    proxy.up();
    assert!(recovers(&s, Duration::from_secs(15)).await, "the pool reconnects by itself");
    assert_eq!(ready(&s).await, StatusCode::OK);
    // Every login that completed is in the audit trail; the refused one left no half record.
    let records = s.storage().audit_records(10_000).await.unwrap();
    assert!(records.len() > before);
    let issued = records.iter().filter(|r| r.event.kind() == "code_issued").count();
    let logins = records
        .iter()
        .filter(|r| matches!(&r.event, relais::domain::audit::AuditEvent::LoginPassword { success: true, .. }))
        .count();
    assert_eq!(issued, logins, "each successful login issued exactly one recorded code");
    s.stop().await;
}
