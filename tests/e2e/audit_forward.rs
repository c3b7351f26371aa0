//! SIEM forwarding (issue #6): a syslog collector in the test receives the RFC 5424 stream over
//! TCP or TLS (a CA made for the test, client certificate required). It is stopped and
//! restarted while people log in; in the end every record arrives exactly once, in order, and
//! matches the database. Replicas: only the lease holder forwards, and another takes over when
//! it dies. On SQLite and PostgreSQL.
use crate::browser::Browser;
use crate::harness::{self, ALICE, CALLBACK, Db, Server, Sessions};
use crate::slapd::make_ca;
use relais::domain::audit_chain::{AuditQuery, ChainedRecord, Order};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One received syslog message: the seq of its structured data and the whole text.
#[derive(Debug, Clone)]
struct Received {
    seq: i64,
    message: String,
}

/// A syslog collector (RFC 6587 octet counting) on a fixed loopback port.
struct Collector {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stopping: watch::Sender<bool>,
    task: JoinHandle<()>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Collector {
    async fn start(port: u16, tls: Option<Arc<rustls::ServerConfig>>, received: Arc<Mutex<Vec<Received>>>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stopping, mut stop_rx) = watch::channel(false);
        let store = received.clone();
        let task = tokio::spawn(async move {
            let mut conns = Vec::new();
            loop {
                tokio::select! {
                    _ = stop_rx.changed() => break,
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        let tls = tls.clone();
                        let store = store.clone();
                        let stop = stop_rx.clone();
                        conns.push(tokio::spawn(async move {
                            let stream: Box<dyn Io> = match tls {
                                None => Box::new(tcp),
                                Some(cfg) => match tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await {
                                    Ok(s) => Box::new(s),
                                    Err(_) => return,
                                },
                            };
                            read_frames(stream, store, stop).await;
                        }));
                    }
                }
            }
            drop(listener);
            for c in conns {
                let _ = c.await;
            }
        });
        Self {
            addr,
            received,
            stopping,
            task,
        }
    }

    /// A graceful collector stop: no new connections; each open one is half-closed and what
    /// the collector's kernel already acknowledged is read before the socket goes.
    async fn stop(self) -> u16 {
        self.stopping.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("collector stops")
            .unwrap();
        self.addr.port()
    }

    fn seqs(&self) -> Vec<i64> {
        self.received.lock().unwrap().iter().map(|r| r.seq).collect()
    }
}

async fn read_frames(stream: Box<dyn Io>, store: Arc<Mutex<Vec<Received>>>, mut stop: watch::Receiver<bool>) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut deadline: Option<Instant> = None;
    loop {
        let n = tokio::select! {
            r = rd.read(&mut chunk) => match r { Ok(0) | Err(_) => break, Ok(n) => n },
            _ = stop.changed(), if deadline.is_none() => {
                let _ = wr.shutdown().await;
                deadline = Some(Instant::now() + Duration::from_secs(10));
                continue;
            }
            _ = tokio::time::sleep(Duration::from_millis(100)), if deadline.is_some() => {
                if deadline.is_some_and(|d| Instant::now() > d) { break }
                continue;
            }
        };
        buf.extend_from_slice(&chunk[..n]);
        // Octet counting: "LEN SP MSG".
        while let Some(sp) = buf.iter().position(|b| *b == b' ') {
            let len: usize = std::str::from_utf8(&buf[..sp]).unwrap().parse().expect("a frame length");
            if buf.len() < sp + 1 + len {
                break;
            }
            let message = String::from_utf8(buf[sp + 1..sp + 1 + len].to_vec()).unwrap();
            buf.drain(..sp + 1 + len);
            let seq = message
                .split("seq=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap()
                .parse()
                .unwrap();
            store.lock().unwrap().push(Received { seq, message });
        }
    }
    assert!(buf.is_empty(), "a partial frame was left: {} bytes", buf.len());
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `name.pem`/`name.key` signed by the CA in `dir`, for `eku` (serverAuth or clientAuth).
fn issue(dir: &Path, name: &str, cn: &str, eku: &str) {
    run(Command::new("openssl")
        .args(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
        .args([
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ])
        .current_dir(dir));
    std::fs::write(
        dir.join(format!("{name}.ext")),
        format!("subjectAltName=DNS:{cn}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage={eku}\n"),
    )
    .unwrap();
    run(Command::new("openssl")
        .args([
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
        ])
        .args(["-days", "2", "-extfile", &format!("{name}.ext"), "-out", &format!("{name}.pem")])
        .current_dir(dir));
}

/// A test PKI: a CA, the collector's certificate for `localhost`, a client certificate for Relais.
pub(crate) fn pki() -> PathBuf {
    relais::install_crypto_provider();
    let dir = std::env::temp_dir().join(harness::unique("relais-siem"));
    std::fs::create_dir_all(&dir).unwrap();
    make_ca(&dir);
    issue(&dir, "server", "localhost", "serverAuth");
    issue(&dir, "client", "relais.chu.example", "clientAuth");
    dir
}

/// The collector's TLS: its certificate from `dir`, client certificates from `client_ca` required.
pub(crate) fn server_tls(dir: &Path, client_ca: &Path) -> Arc<rustls::ServerConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(client_ca.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build().unwrap();
    let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    Arc::new(
        rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

fn forward_toml(port: u16, tls: Option<&Path>) -> String {
    let mut t = format!(
        "[[audit.forward]]\nname = \"siem\"\naddress = \"127.0.0.1:{port}\"\npoll_interval_ms = 50\nretry_max_ms = 300\nack_timeout_ms = 3000\nbatch_size = 7\nlease_secs = 3\n"
    );
    match tls {
        None => t.push_str("transport = \"tcp\"\n"),
        Some(d) => t.push_str(&format!(
            "transport = \"tls\"\nserver_name = \"localhost\"\nca_file = \"{0}/ca.pem\"\nclient_cert_file = \"{0}/client.pem\"\nclient_key_file = \"{0}/client.key\"\n",
            d.display()
        )),
    }
    t
}

async fn logins(base: &str, n: usize) {
    let url = format!(
        "{base}/authorize?response_type=code&client_id=web&scope=openid&redirect_uri={}&code_challenge={}&code_challenge_method=S256",
        crate::flows::urlencode(CALLBACK),
        harness::CHALLENGE
    );
    for _ in 0..n {
        Browser::new().login(base, &url, ALICE.0, ALICE.1).await;
    }
}

async fn head(s: &Server) -> i64 {
    s.storage().audit_head().await.unwrap().0
}

/// Waits until the collector holds `upto` records.
async fn wait_for(c: &Collector, upto: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.seqs().last().copied().unwrap_or(0) < upto {
        assert!(
            Instant::now() < deadline,
            "forwarded {:?}, expected through {upto}",
            c.seqs().last()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn readyz_forward(s: &Server) -> serde_json::Value {
    let r: serde_json::Value = reqwest::get(s.url("/readyz")).await.unwrap().json().await.unwrap();
    r["audit_forward"][0].clone()
}

/// Every record exactly once, in order, each message carrying the record as stored.
async fn assert_exactly_once(s: &Server, received: &[Received]) {
    let head = head(s).await;
    let seqs: Vec<i64> = received.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>(), "each seq exactly once, in order");
    let records: Vec<ChainedRecord> = s
        .storage()
        .audit_query(&AuditQuery {
            order: Order::Ascending,
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .records;
    for (rec, got) in records.iter().zip(received) {
        let (header, json) = got.message.split_once('\u{feff}').expect("MSG starts with the BOM");
        // authpriv (10): notice (5) for failures, informational (6) otherwise; version 1.
        let pri = if rec.outcome == "failure" { "<85>1 " } else { "<86>1 " };
        assert!(header.starts_with(pri), "{header}");
        assert!(header.contains(&format!("hash=\"{}\"", rec.hash)), "{header}");
        assert!(
            header.contains(&format!(" {} [relais@32473 ", rec.event_type)),
            "MSGID is the event type: {header}"
        );
        let json: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(json, rec.export_json(), "the message is the stored record");
    }
}

async fn forwarding_survives_a_collector_outage(db: Db, tls: bool) {
    let dir = pki();
    let received = Arc::new(Mutex::new(Vec::new()));
    let server_cfg = tls.then(|| server_tls(&dir, &dir));
    let collector = Collector::start(0, server_cfg.clone(), received.clone()).await;
    let port = collector.addr.port();
    let s = harness::start_with(db, Sessions::Memory, &forward_toml(port, tls.then_some(dir.as_path()))).await;
    logins(&s.base, 2).await;
    wait_for(&collector, head(&s).await).await;
    // The cursor moves once the collector's TCP has acknowledged the batch, a moment after
    // the collector has read it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status = readyz_forward(&s).await;
        if status["lag"].as_i64() == Some(0) || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        (status["state"].as_str(), status["lag"].as_i64()),
        (Some("forwarding"), Some(0)),
        "{status}"
    );

    // The SIEM goes away: logins go on, records wait in the database.
    collector.stop().await;
    logins(&s.base, 3).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let status = readyz_forward(&s).await;
    assert_eq!(status["state"], "down", "{status}");
    assert!(status["lag"].as_i64().unwrap() > 0, "{status}");
    let down_at = head(&s).await;
    assert!(received.lock().unwrap().last().unwrap().seq < down_at);

    // It comes back on the same port, while people keep logging in.
    let collector = Collector::start(port, server_cfg, received.clone()).await;
    logins(&s.base, 3).await;
    wait_for(&collector, head(&s).await).await;
    // Nothing more arrives: no late duplicate.
    tokio::time::sleep(Duration::from_millis(300)).await;
    // (A copy: the collector's tasks lock the list on this same thread.)
    let got = received.lock().unwrap().clone();
    assert_exactly_once(&s, &got).await;
    let cursors = s.components().store.forward_cursors().await.unwrap();
    assert_eq!((cursors.len(), cursors[0].seq), (1, head(&s).await), "the durable cursor");
    assert_eq!(readyz_forward(&s).await["lag"], 0);
    s.stop().await;
    collector.stop().await;
}

async fn forwarding_over_tcp_survives_a_collector_outage(db: Db) {
    forwarding_survives_a_collector_outage(db, false).await
}

async fn forwarding_over_tls_survives_a_collector_outage(db: Db) {
    forwarding_survives_a_collector_outage(db, true).await
}

/// A collector whose certificate is not from the configured CA gets nothing.
async fn tls_refuses_a_collector_from_another_ca(db: Db) {
    let ours = pki();
    let theirs = pki();
    let received = Arc::new(Mutex::new(Vec::new()));
    let collector = Collector::start(0, Some(server_tls(&theirs, &ours)), received.clone()).await;
    let s = harness::start_with(db, Sessions::Memory, &forward_toml(collector.addr.port(), Some(&ours))).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let status = readyz_forward(&s).await;
    assert_eq!(status["state"], "down", "{status}");
    assert!(status["last_error"].as_str().unwrap().contains("certificate"), "{status}");
    assert!(received.lock().unwrap().is_empty());
    assert_eq!(s.components().store.forward_cursors().await.unwrap()[0].seq, 0);
    s.stop().await;
    collector.stop().await;
}

/// A purge while the SIEM is down keeps what the SIEM has not received, however old; once
/// the SIEM is back it gets every record, and a second purge may then go further.
async fn a_purge_keeps_what_the_siem_has_not_received(db: Db) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let collector = Collector::start(0, None, received.clone()).await;
    let port = collector.addr.port();
    let s = harness::start_with(db, Sessions::Memory, &forward_toml(port, None)).await;
    logins(&s.base, 2).await;
    let forwarded = head(&s).await;
    wait_for(&collector, forwarded).await;
    collector.stop().await;
    logins(&s.base, 2).await;
    let unsent = head(&s).await;
    assert!(unsent > forwarded);

    s.clock.advance(Duration::from_secs(3 * 86_400));
    let c = s.components();
    let through = c.store.forwarded_through(&["siem"]).await.unwrap();
    assert_eq!(through, Some(forwarded), "the cursor stopped where the collector went away");
    let cutoff = c.clock.now() - chrono::Duration::days(1);
    let out = relais::domain::audit_verify::purge(s.storage(), c.keys.as_ref(), c.audit.as_ref(), cutoff, through, c.clock.now())
        .await
        .unwrap();
    assert_eq!(out.through_seq, Some(forwarded), "records the SIEM lacks are kept");
    let kept = s
        .storage()
        .audit_query(&AuditQuery {
            order: Order::Ascending,
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .records;
    assert_eq!(kept.first().map(|r| r.seq), Some(forwarded + 1));

    // The SIEM comes back: it receives everything it missed (and the purge record), once.
    let collector = Collector::start(port, None, received.clone()).await;
    let now_head = head(&s).await;
    wait_for(&collector, now_head).await;
    let seqs = collector.seqs();
    assert_eq!(seqs, (1..=now_head).collect::<Vec<_>>(), "each seq exactly once, in order");
    let out = relais::domain::audit_verify::purge(
        s.storage(),
        c.keys.as_ref(),
        c.audit.as_ref(),
        cutoff,
        c.store.forwarded_through(&["siem"]).await.unwrap(),
        c.clock.now(),
    )
    .await
    .unwrap();
    assert_eq!(out.through_seq, Some(unsent), "now the old records can go");
    s.stop().await;
    collector.stop().await;
}

macro_rules! on_both_databases {
    ($($name:ident),*) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name(super::Db::Sqlite).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name(super::Db::Postgres).await } )* }
    };
}

on_both_databases!(
    forwarding_over_tcp_survives_a_collector_outage,
    forwarding_over_tls_survives_a_collector_outage,
    tls_refuses_a_collector_from_another_ca,
    a_purge_keeps_what_the_siem_has_not_received
);

/// Two replicas on one PostgreSQL, both configured to forward: only the lease holder sends;
/// when it dies without a word, the other takes over from the durable cursor once the lease
/// lapses. Every record still arrives exactly once.
#[tokio::test]
async fn one_replica_forwards_and_another_takes_over_when_it_dies() {
    let received = Arc::new(Mutex::new(Vec::new()));
    let collector = Collector::start(0, None, received.clone()).await;
    let db = format!(
        "{}{}",
        harness::database_toml(Db::Postgres).await,
        forward_toml(collector.addr.port(), None)
    );
    let redis = harness::sessions_toml(Sessions::Redis);
    let kek = relais::adapters::keys::Kek::generate().to_base64();
    let mut a = harness::start_shared(&db, &redis, &kek, true).await;
    let mut b = harness::start_shared(&db, &redis, &kek, false).await;
    logins(&a.base, 2).await;
    logins(&b.base, 2).await;
    wait_for(&collector, head(&a).await).await;
    let states = [readyz_forward(&a).await["state"].clone(), readyz_forward(&b).await["state"].clone()];
    let a_holds = states[0] == "forwarding";
    assert!(
        states.contains(&serde_json::json!("forwarding")) && states.contains(&serde_json::json!("standby")),
        "one forwards, one stands by: {states:?}"
    );
    // The holder dies while idle (caught up): its lease is not released.
    let (dead, alive) = if a_holds { (&mut a, &mut b) } else { (&mut b, &mut a) };
    std::mem::take(&mut dead.running.forwarders).abort();
    logins(&alive.base, 2).await;
    wait_for(&collector, head(alive).await).await;
    assert_eq!(readyz_forward(alive).await["state"], "forwarding");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = received.lock().unwrap().clone();
    assert_exactly_once(alive, &got).await;
    a.stop().await;
    b.stop().await;
    collector.stop().await;
}

/// The audit benchmark of docs/performance.md from the test build (the release numbers come
/// from scripts/bench-audit.sh). Run on demand:
/// `RELAIS_TEST_BENCH_FILL=1000000 cargo nextest run -p relais-tests --test e2e audit_bench --run-ignored only`.
#[tokio::test]
#[ignore]
async fn audit_bench_on_postgres() {
    let var = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    // Not harness::start: its fixtures are audited, and the bench needs an empty trail.
    let db = harness::database_toml(Db::Postgres).await;
    let kek = relais::adapters::keys::Kek::generate().to_base64();
    let toml = format!("issuer = \"http://localhost:1\"\ndev_mode = true\n{db}max_connections = 16\n[keys]\nencryption_key = \"{kek}\"\n");
    let c = relais::server::Components::build(
        relais::config::Config::from_toml_str(&toml).unwrap(),
        Arc::new(relais::domain::ports::SystemClock),
    )
    .await
    .unwrap();
    let o = relais::audit_bench::BenchOptions {
        appends: var("RELAIS_TEST_BENCH_APPENDS", 20_000),
        writers: var("RELAIS_TEST_BENCH_WRITERS", 64),
        fill: var("RELAIS_TEST_BENCH_FILL", 100_000),
        fill_batch: 2000,
    };
    relais::audit_bench::run(&c, &o).await.unwrap();
}
