//! Continuous forwarding of the audit trail to SIEMs: RFC 5424 syslog messages, octet-counting
//! framing (RFC 6587 §3.4.1) over TCP or TLS (rustls), one background task per
//! `[[audit.forward]]` destination.
//!
//! Delivery: the task reads the records after the destination's durable cursor (a row of
//! `audit_forward_cursors`), writes them as one batch, waits until the collector's TCP stack
//! has acknowledged every byte (the socket's unacknowledged count, `SIOCOUTQ`, drops to 0) and
//! only then advances the cursor. A collector that is down, refuses or resets the connection
//! gets the same batch again on the next connection, so nothing is lost and, as long as Relais
//! itself keeps running, nothing is sent twice. Syslog over TCP has no application-level
//! acknowledgement, so two windows remain (docs/audit.md): a collector that crashes with
//! acknowledged bytes still unread loses them, and a Relais crash between the acknowledgement
//! and the cursor update sends that batch again (at-least-once; every message carries its `seq`
//! for de-duplication).
//!
//! Replicas: each destination has a lease in its cursor row; only the replica holding it
//! forwards, and every cursor advance is fenced by it.
use crate::adapters::store::SqlStore;
use crate::config::{AuditForwardConfig, ForwardTransport};
use crate::domain::audit_chain::{AuditQuery, ChainedRecord, Order};
use crate::domain::ports::{Storage, StoreError};
use chrono::{DateTime, Utc};
use rustls::pki_types::ServerName;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The SD-ID of the structured data element. 32473 is the private enterprise number IANA
/// reserves for documentation (RFC 5612): Relais has none of its own yet.
pub const SD_ID: &str = "relais@32473";

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Io(String),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("another replica holds the lease")]
    Standby,
}

/// One destination, resolved from its configuration (files read, TLS built).
#[derive(Clone)]
pub struct ForwardSettings {
    pub name: String,
    pub address: String,
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    pub facility: u8,
    pub hostname: String,
    pub batch_size: u64,
    pub poll_interval: Duration,
    pub connect_timeout: Duration,
    pub ack_timeout: Duration,
    pub retry_max: Duration,
    pub lease: Duration,
}

impl ForwardSettings {
    pub fn from_config(c: &AuditForwardConfig) -> Result<Self, ForwardError> {
        let tls = match c.transport {
            ForwardTransport::Tcp => None,
            ForwardTransport::Tls => {
                let host = c.server_name.clone().unwrap_or_else(|| {
                    let host = c.address.rsplit_once(':').map_or(c.address.as_str(), |(h, _)| h);
                    host.trim_start_matches('[').trim_end_matches(']').to_owned()
                });
                let name = ServerName::try_from(host.clone()).map_err(|e| ForwardError::Config(format!("server name {host:?}: {e}")))?;
                Some((tls_config(c)?, name))
            }
        };
        Ok(Self {
            name: c.name.clone(),
            address: c.address.clone(),
            tls,
            facility: c.facility,
            hostname: c.hostname.clone().unwrap_or_else(machine_hostname),
            batch_size: c.batch_size,
            poll_interval: Duration::from_millis(c.poll_interval_ms),
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            ack_timeout: Duration::from_millis(c.ack_timeout_ms),
            retry_max: Duration::from_millis(c.retry_max_ms),
            lease: Duration::from_secs(c.lease_secs),
        })
    }
}

/// Server verification is always on: the configured CA bundle, or the system's roots.
fn tls_config(c: &AuditForwardConfig) -> Result<Arc<rustls::ClientConfig>, ForwardError> {
    let client_cert = match (&c.client_cert_file, &c.client_key_file) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        _ => None,
    };
    super::tls_client::client_config(c.ca_file.as_deref(), client_cert).map_err(ForwardError::Config)
}

fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".into())
}

/// What `/readyz` and the logs say about one destination.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationStatus {
    pub name: String,
    /// `starting`, `standby` (another replica forwards), `connecting`, `forwarding`, `down`.
    pub state: &'static str,
    /// Last seq the collector acknowledged.
    pub forwarded_seq: i64,
    pub head_seq: i64,
    /// Records appended but not yet forwarded.
    pub lag: i64,
    pub last_error: Option<String>,
    pub last_delivery: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
pub struct ForwardStatus {
    destinations: Mutex<BTreeMap<String, DestinationStatus>>,
}

impl ForwardStatus {
    pub fn snapshot(&self) -> Vec<DestinationStatus> {
        self.destinations.lock().expect("status lock").values().cloned().collect()
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut DestinationStatus)) {
        let mut map = self.destinations.lock().expect("status lock");
        let entry = map.entry(name.to_owned()).or_insert_with(|| DestinationStatus {
            name: name.to_owned(),
            state: "starting",
            forwarded_seq: 0,
            head_seq: 0,
            lag: 0,
            last_error: None,
            last_delivery: None,
        });
        f(entry);
        entry.lag = (entry.head_seq - entry.forwarded_seq).max(0);
    }
}

/// The running forwarders of this replica.
#[derive(Default)]
pub struct Forwarders {
    pub status: Arc<ForwardStatus>,
    tasks: Vec<(String, JoinHandle<()>)>,
    store: Option<Arc<SqlStore>>,
    holder: String,
}

impl Forwarders {
    /// Starts one task per destination (needs a tokio runtime). Errors name the destination.
    pub fn start(store: Arc<SqlStore>, destinations: &[AuditForwardConfig]) -> Result<Self, ForwardError> {
        let status = Arc::new(ForwardStatus::default());
        let holder = format!("{}:{}:{}", machine_hostname(), std::process::id(), uuid::Uuid::new_v4().simple());
        let mut tasks = Vec::new();
        for c in destinations {
            let settings = ForwardSettings::from_config(c).map_err(|e| ForwardError::Config(format!("audit.forward {:?}: {e}", c.name)))?;
            status.update(&settings.name, |_| {});
            let f = Forwarder {
                store: store.clone(),
                settings,
                holder: holder.clone(),
                status: status.clone(),
            };
            tasks.push((c.name.clone(), tokio::spawn(f.run())));
        }
        Ok(Self {
            status,
            tasks,
            store: Some(store),
            holder,
        })
    }

    /// Stops forwarding and gives the leases up so another replica takes over at once. Safe at
    /// any point: the cursor only moves after an acknowledged write.
    pub async fn stop(mut self) {
        for (name, task) in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
            if let Some(store) = &self.store
                && let Err(e) = store.release_forward_lease(&name, &self.holder).await
            {
                tracing::warn!(destination = %name, error = %e, "could not release the audit forwarding lease");
            }
        }
    }

    /// Stops the tasks without releasing the leases, as a crash would (tests: the lease must
    /// lapse before another replica takes over).
    pub fn abort(mut self) {
        for (_, task) in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Forwarders {
    fn drop(&mut self) {
        for (_, task) in &self.tasks {
            task.abort();
        }
    }
}

struct Forwarder {
    store: Arc<SqlStore>,
    settings: ForwardSettings,
    holder: String,
    status: Arc<ForwardStatus>,
}

const RETRY_MIN: Duration = Duration::from_millis(250);

impl Forwarder {
    async fn run(self) {
        let name = self.settings.name.clone();
        let mut backoff = RETRY_MIN;
        loop {
            let err = self.session(&mut backoff).await;
            // The lag keeps counting while nothing is forwarded.
            if let Ok((head, _)) = self.store.audit_head().await {
                self.status.update(&name, |s| s.head_seq = head);
            }
            match err {
                ForwardError::Standby => {
                    self.status.update(&name, |s| s.state = "standby");
                    tokio::time::sleep(self.settings.lease / 3).await;
                }
                e => {
                    let msg = e.to_string();
                    let lag = self.status.snapshot().into_iter().find(|s| s.name == name).map_or(0, |s| s.lag);
                    tracing::warn!(destination = %name, error = %msg, lag, retry_ms = backoff.as_millis() as u64, "audit forwarding interrupted");
                    self.status.update(&name, |s| {
                        s.state = "down";
                        s.last_error = Some(msg);
                    });
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.settings.retry_max.max(RETRY_MIN));
                }
            }
        }
    }

    async fn lease(&self) -> Result<i64, ForwardError> {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(self.settings.lease).unwrap_or(chrono::Duration::seconds(30));
        self.store
            .forward_lease(&self.settings.name, &self.holder, now, until)
            .await?
            .ok_or(ForwardError::Standby)
    }

    /// Holds the lease, connects, forwards until something fails; returns why.
    async fn session(&self, backoff: &mut Duration) -> ForwardError {
        match self.forward(backoff).await {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    async fn forward(&self, backoff: &mut Duration) -> Result<std::convert::Infallible, ForwardError> {
        let s = &self.settings;
        let mut cursor = self.lease().await?;
        let mut renewed = Instant::now();
        self.status.update(&s.name, |st| {
            st.state = "connecting";
            st.forwarded_seq = cursor;
        });
        let mut conn = Conn::open(s).await?;
        tracing::info!(destination = %s.name, address = %s.address, tls = s.tls.is_some(), from_seq = cursor + 1, "audit forwarding connected");
        self.status.update(&s.name, |st| st.state = "forwarding");
        loop {
            if renewed.elapsed() >= s.lease / 3 {
                // Also re-reads the cursor: it is ours, so it has not moved.
                self.lease().await?;
                renewed = Instant::now();
            }
            let page = self
                .store
                .audit_query(&AuditQuery {
                    cursor: Some(cursor),
                    order: Order::Ascending,
                    limit: s.batch_size,
                    ..Default::default()
                })
                .await?;
            let (head, _) = self.store.audit_head().await?;
            self.status.update(&s.name, |st| st.head_seq = head);
            let Some(last) = page.records.last().map(|r| r.seq) else {
                if conn.peer_closed() {
                    return Err(ForwardError::Io("the collector closed the connection".into()));
                }
                tokio::time::sleep(s.poll_interval).await;
                continue;
            };
            if page.records[0].seq != cursor + 1 {
                tracing::error!(destination = %s.name, from = cursor + 1, to = page.records[0].seq - 1, "audit records were purged before being forwarded");
            }
            let mut batch = Vec::with_capacity(page.records.len() * 1024);
            for r in &page.records {
                batch.extend_from_slice(&frame(&syslog_message(r, s.facility, &s.hostname)));
            }
            conn.send(&batch, s.ack_timeout).await?;
            if !self.store.advance_forward_cursor(&s.name, &self.holder, last, Utc::now()).await? {
                return Err(ForwardError::Standby);
            }
            cursor = last;
            *backoff = RETRY_MIN;
            self.status.update(&s.name, |st| {
                st.forwarded_seq = last;
                st.head_seq = st.head_seq.max(last);
                st.last_delivery = Some(Utc::now());
                st.last_error = None;
            });
        }
    }
}

/// A stream to write to and to watch for the collector going away.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

const OPEN: u8 = 0;
const PEER_EOF: u8 = 1;
const PEER_RESET: u8 = 2;

struct Conn {
    writer: WriteHalf<Box<dyn Stream>>,
    /// The TCP socket under the (TLS) stream, for its unacknowledged byte count.
    fd: i32,
    peer: Arc<AtomicU8>,
    reader: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Conn {
    async fn open(s: &ForwardSettings) -> Result<Self, ForwardError> {
        let io = |what: &str, e: &dyn std::fmt::Display| ForwardError::Io(format!("{what} {}: {e}", s.address));
        let tcp = tokio::time::timeout(s.connect_timeout, TcpStream::connect(&s.address))
            .await
            .map_err(|_| io("connect", &"timed out"))?
            .map_err(|e| io("connect", &e))?;
        tcp.set_nodelay(true).map_err(|e| io("connect", &e))?;
        let fd = raw_fd(&tcp);
        let stream: Box<dyn Stream> = match &s.tls {
            None => Box::new(tcp),
            Some((config, name)) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                Box::new(
                    tokio::time::timeout(s.connect_timeout, connector.connect(name.clone(), tcp))
                        .await
                        .map_err(|_| io("TLS handshake with", &"timed out"))?
                        .map_err(|e| io("TLS handshake with", &e))?,
                )
            }
        };
        let (mut read, writer) = tokio::io::split(stream);
        let peer = Arc::new(AtomicU8::new(OPEN));
        let flag = peer.clone();
        // Collectors send nothing; reading tells when they close or reset the connection (and
        // lets rustls process post-handshake messages).
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                match read.read(&mut buf).await {
                    Ok(0) => break flag.store(PEER_EOF, Ordering::SeqCst),
                    Ok(_) => {}
                    Err(_) => break flag.store(PEER_RESET, Ordering::SeqCst),
                }
            }
        });
        Ok(Self { writer, fd, peer, reader })
    }

    fn peer_closed(&self) -> bool {
        self.peer.load(Ordering::SeqCst) != OPEN
    }

    /// Writes `bytes` and returns once the collector's TCP acknowledged all of them.
    async fn send(&mut self, bytes: &[u8], limit: Duration) -> Result<(), ForwardError> {
        if self.peer_closed() {
            return Err(ForwardError::Io("the collector closed the connection".into()));
        }
        let deadline = Instant::now() + limit;
        let write = async {
            self.writer.write_all(bytes).await?;
            self.writer.flush().await
        };
        tokio::time::timeout(limit, write)
            .await
            .map_err(|_| ForwardError::Io(format!("write: not accepted within {} ms", limit.as_millis())))?
            .map_err(|e| ForwardError::Io(format!("write: {e}")))?;
        let mut pause = Duration::from_micros(200);
        loop {
            match unacknowledged(self.fd) {
                Ok(0) => return Ok(()),
                Ok(n) if self.peer.load(Ordering::SeqCst) == PEER_RESET => {
                    return Err(ForwardError::Io(format!("connection reset with {n} bytes unacknowledged")));
                }
                Ok(n) if Instant::now() >= deadline => {
                    return Err(ForwardError::Io(format!(
                        "{n} bytes not acknowledged within {} ms",
                        limit.as_millis()
                    )));
                }
                Ok(_) => {}
                Err(e) => return Err(ForwardError::Io(format!("cannot read the socket's send queue: {e}"))),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

#[cfg(unix)]
fn raw_fd(tcp: &TcpStream) -> i32 {
    std::os::fd::AsRawFd::as_raw_fd(tcp)
}

#[cfg(not(unix))]
fn raw_fd(_: &TcpStream) -> i32 {
    -1
}

/// Bytes written to the socket that the peer has not acknowledged yet (Linux `SIOCOUTQ`:
/// `write_seq - snd_una`, see tcp(7)).
#[cfg(target_os = "linux")]
fn unacknowledged(fd: i32) -> std::io::Result<i32> {
    let mut n: libc::c_int = 0;
    // SAFETY: `fd` is the open socket owned by this connection's stream (alive as long as
    // `Conn`), and SIOCOUTQ (= TIOCOUTQ) writes one int through the pointer.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n as *mut libc::c_int) };
    if r < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n) }
}

/// Elsewhere a flushed write counts as delivered (a weaker guarantee, see docs/audit.md).
#[cfg(not(target_os = "linux"))]
fn unacknowledged(_: i32) -> std::io::Result<i32> {
    Ok(0)
}

/// RFC 6587 octet counting: `MSG-LEN SP SYSLOG-MSG`.
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message.as_bytes());
    out
}

/// One record as an RFC 5424 message. Severity: notice for failures, informational otherwise.
/// MSGID is the event type; the structured data carries the searchable fields; MSG is the
/// record as `relais audit export` prints it (UTF-8, with the BOM RFC 5424 asks for).
pub fn syslog_message(r: &ChainedRecord, facility: u8, hostname: &str) -> String {
    let severity = if r.outcome == "failure" { 5 } else { 6 };
    let pri = u32::from(facility) * 8 + severity;
    let event: Value = serde_json::from_str(&r.event).unwrap_or(Value::Null);
    let field = |k: &str| event.get(k).and_then(Value::as_str).map(str::to_owned);
    let actor = field("actor")
        .or_else(|| {
            r.correlation_id
                .as_deref()
                .and_then(|c| c.strip_prefix("actor:"))
                .map(str::to_owned)
        })
        .or_else(|| field("username"))
        .or_else(|| r.account_id.clone());
    let mut sd = format!("[{SD_ID} seq=\"{}\" hash=\"{}\"", r.seq, r.hash);
    let params = [
        ("type", Some(r.event_type.clone())),
        ("outcome", Some(r.outcome.clone())),
        ("actor", actor),
        ("subject", r.account_id.clone()),
        ("idnat", field("idnat")),
        ("client", r.client_id.clone()),
        ("ip", r.source_ip.clone()),
    ];
    for (name, value) in params {
        if let Some(v) = value {
            sd.push_str(&format!(" {name}=\"{}\"", sd_escape(&v)));
        }
    }
    sd.push(']');
    format!(
        "<{pri}>1 {} {} relais {} {} {sd} \u{feff}{}",
        r.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        header_field(hostname, 255),
        std::process::id(),
        header_field(&r.event_type, 32),
        r.export_json()
    )
}

/// PARAM-VALUE escaping (RFC 5424 §6.3.3): `"`, `\` and `]` take a backslash.
fn sd_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Header fields are printable US-ASCII without spaces; `-` when empty.
fn header_field(v: &str, max: usize) -> String {
    let s: String = v.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if s.is_empty() { "-".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::audit::{AuditEvent, AuditRecord, RequestContextRecord};
    use crate::domain::audit_chain::GENESIS;

    #[test]
    fn a_record_becomes_one_framed_rfc5424_message() {
        let rec = ChainedRecord::new(
            42,
            &AuditRecord {
                at: "2026-11-25T10:00:00.123456Z".parse().unwrap(),
                event: AuditEvent::LoginPassword {
                    username: "a\"li]ce\\".into(),
                    account_id: None,
                    success: false,
                    reason: Some("bad password".into()),
                },
                context: RequestContextRecord {
                    source_ip: Some("10.1.2.3".into()),
                    user_agent: None,
                    correlation_id: None,
                },
            },
            GENESIS,
        );
        let msg = syslog_message(&rec, 10, "relais 1");
        let expected = format!(
            "<85>1 2026-11-25T10:00:00.123456Z relais1 relais {} login_password [relais@32473 seq=\"42\" hash=\"{}\" type=\"login_password\" outcome=\"failure\" actor=\"a\\\"li\\]ce\\\\\" ip=\"10.1.2.3\"] \u{feff}{{",
            std::process::id(),
            rec.hash
        );
        assert!(msg.starts_with(&expected), "{msg}");
        let json: Value = serde_json::from_str(msg.split('\u{feff}').nth(1).unwrap()).unwrap();
        assert_eq!(json["seq"], 42);
        let framed = frame(&msg);
        let (len, rest) = std::str::from_utf8(&framed).unwrap().split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
    }
}
