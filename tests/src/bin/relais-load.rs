//! relais-load: measures a running Relais over real HTTP.
//!
//! Scenarios:
//! - `token`: the token endpoint alone (authorization-code exchange with client_secret_basic).
//!   Codes are made in untimed batches through an SSO session, then redeemed concurrently;
//!   only the redemptions are timed.
//! - `login`: complete local-account logins from a fresh browser each time: authorize, login
//!   page, password POST, code exchange.
//! - `dirlogin`: password logins against a directory from a fresh browser each time: authorize,
//!   login page, password POST up to the code (no exchange). Users `--user`/`--password` with
//!   `{n}` replaced by `i % --users`. Reports the whole flow and the POST alone (the request
//!   that checks the directory). With `--rate`, an open loop at that many logins per second
//!   (latency counted from the scheduled start, so a stall is not hidden).
//! - `fido2setup`: makes a software authenticator (webauthn-authenticator-rs `SoftToken`, which
//!   attests with its own CA) and writes it to `--token-file`, and an attestation trust file
//!   admitting that CA and model to `--trust-file` (for `[fido2] attestation_policy`).
//! - `fido2login`: full logins with password + security key, from a fresh browser each time:
//!   authorize, login page, directory password POST, key page (it carries the ceremony's
//!   options), signature by the software authenticator, `POST /login/webauthn/finish`, code
//!   exchange: six requests to Relais.
//!   First, untimed: each of the `--users` users registers its own key through the real
//!   ceremony, with the one-time enrolment codes of `--codes` (lines `username code`, from
//!   `relais fido2 enrolment-code`); the keys (copies of `--token-file`, same attestation CA)
//!   stay in memory, and their sign counters go up with each use. Reports the whole flow and
//!   the key step alone (signature, finish). Runs: a warm-up of `--users` logins (not
//!   counted), the timed run (`--concurrency`, or an open loop with `--rate` as for
//!   `dirlogin`), then, with `--open-rate-fraction`, an open loop at that fraction of the rate
//!   reached; each prints the CPU per login of the tool and of the `--watch-pid` processes.
use clap::Parser;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};
use webauthn_authenticator_rs::softtoken::SoftToken;

#[derive(Parser, Clone)]
struct Args {
    #[arg(long, default_value = "http://localhost:8090")]
    base: String,
    #[arg(long, default_value = "demo-app")]
    client: String,
    #[arg(long)]
    secret: String,
    #[arg(long, default_value = "http://localhost:8091/callback")]
    redirect_uri: String,
    #[arg(long, default_value = "alice")]
    user: String,
    #[arg(long, default_value = "alice-demo-pw")]
    password: String,
    #[arg(long, default_value = "token")]
    scenario: String,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Threads of the tool's async runtime (1: everything on one thread).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Total timed operations.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    #[arg(long, default_value_t = 4_000)]
    batch: usize,
    /// `dirlogin`: how many distinct users `{n}` ranges over.
    #[arg(long, default_value_t = 1)]
    users: usize,
    /// `dirlogin`: logins per second (open loop); 0 = as fast as `--concurrency` allows.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// `fido2setup` writes, `fido2login` reads: the software authenticator (CBOR).
    #[arg(long)]
    token_file: Option<String>,
    /// `fido2setup`: where to write the attestation trust file.
    #[arg(long)]
    trust_file: Option<String>,
    /// `fido2login`: enrolment codes, one `username code` per line, for users 0..`--users` in
    /// order (`--user` with `{n}` replaced by the line number).
    #[arg(long)]
    codes: Option<String>,
    /// `fido2login`: after the run at `--concurrency`, an open loop at this fraction of the rate
    /// it reached (the same keys: enrolment codes are single use).
    #[arg(long, default_value_t = 0.0)]
    open_rate_fraction: f64,
    /// `token`, `fido2login`: `name=PID` of a process whose CPU time per operation to report,
    /// or `name=comm:NAME` for all processes of that name together (repeatable).
    #[arg(long)]
    watch_pid: Vec<String>,
}

/// User + system CPU time of a process, from /proc/PID/stat (clock ticks of 10 ms).
fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
    Duration::from_millis((f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)) * 10)
}

/// One simulated browser: its own cookies (so no SSO between two of them) over the load
/// tool's shared connection pool. A reqwest client per browser (TLS roots, pool) cost the load
/// tool about 2.5 ms of CPU per login, three times what the server spent on it.
#[derive(Clone)]
struct Browser {
    cookies: Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

fn shared_http() -> &'static reqwest::Client {
    static HTTP: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(256)
            .build()
            .unwrap()
    })
}

fn browser() -> Browser {
    Browser { cookies: Arc::default() }
}

impl Browser {
    fn with_cookies(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let jar = self.cookies.lock().unwrap();
        if jar.is_empty() {
            return rb;
        }
        let header: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rb.header(reqwest::header::COOKIE, header.join("; "))
    }

    fn keep(&self, r: &reqwest::Response) {
        let mut jar = self.cookies.lock().unwrap();
        for v in r.headers().get_all(reqwest::header::SET_COOKIE) {
            let Some((name, rest)) = v.to_str().unwrap_or_default().split_once('=') else {
                continue;
            };
            let value = rest.split(';').next().unwrap_or_default().to_owned();
            let expired = rest.to_ascii_lowercase().contains("max-age=0") || value.is_empty();
            jar.retain(|(k, _)| k != name);
            if !expired {
                jar.push((name.to_owned(), value));
            }
        }
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        let r = self.with_cookies(shared_http().get(url)).send().await.unwrap();
        self.keep(&r);
        r
    }

    async fn post_form(&self, url: &str, form: &[(&str, String)]) -> reqwest::Response {
        let r = self.with_cookies(shared_http().post(url)).form(form).send().await.unwrap();
        self.keep(&r);
        r
    }

    /// A JSON POST as the key page's script makes it; panics unless 200.
    async fn post_json(&self, url: &str, body: &serde_json::Value) -> serde_json::Value {
        let r = self.with_cookies(shared_http().post(url)).json(body).send().await.unwrap();
        self.keep(&r);
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(status.is_success(), "{url} answered {status}: {body}");
        body
    }
}

fn authorize_url(a: &Args) -> String {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "{}/authorize?response_type=code&client_id={}&scope=openid%20profile&redirect_uri={}&state=s",
        a.base,
        enc(&a.client),
        enc(&a.redirect_uri)
    )
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn field(html: &str, name: &str) -> String {
    let at = html.find(&format!("name=\"{name}\"")).expect("form field");
    let tag = &html[html[..at].rfind('<').unwrap()..at + html[at..].find('>').unwrap()];
    let v = tag.find("value=\"").unwrap() + 7;
    tag[v..v + tag[v..].find('"').unwrap()].to_owned()
}

fn code_of(loc: &str) -> String {
    url::Url::parse(loc)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {loc}"))
}

/// One directory login of user number `i` in a fresh browser, up to the code. Returns the
/// latency of the password POST alone.
async fn dir_login(a: &Args, i: usize) -> Duration {
    let b = browser();
    let n = (i % a.users.max(1)).to_string();
    let r = b.get(&authorize_url(a)).await;
    let loc = location(&r);
    assert!(loc.starts_with('/'), "expected the login page, got {loc}");
    let page = b.get(&format!("{}{}", a.base, loc)).await.text().await.unwrap();
    let form = [
        ("login_id", field(&page, "login_id")),
        ("csrf", field(&page, "csrf")),
        ("username", a.user.replace("{n}", &n)),
        ("password", a.password.replace("{n}", &n)),
    ];
    let t = Instant::now();
    let r = b.post_form(&format!("{}/login", a.base), &form).await;
    let took = t.elapsed();
    let loc = location(&r);
    assert!(
        loc.contains("code="),
        "login {i} failed: {} {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
    took
}

/// Open loop: login `i` starts at `i / rate` seconds; latencies (flow, the step `op` returns)
/// from that moment.
async fn open_loop<F, Fut>(a: Arc<Args>, op: F) -> (Vec<Duration>, Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Duration> + Send + 'static,
{
    let start = tokio::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..a.requests {
        let at = start + Duration::from_secs_f64(i as f64 / a.rate);
        tokio::time::sleep_until(at).await;
        let login = op(i);
        set.spawn(async move {
            let post = login.await;
            (at.elapsed(), post)
        });
    }
    let (mut flow, mut post) = (Vec::new(), Vec::new());
    let mut failed = 0usize;
    while let Some(r) = set.join_next().await {
        // Past the server's capacity, logins queue and some connections fail: counted, so the
        // run still reports the latency of those that completed.
        let Ok((f, p)) = r else {
            failed += 1;
            continue;
        };
        flow.push(f);
        post.push(p);
    }
    if failed > 0 {
        println!("{failed} of {} logins failed (connection or protocol error)", a.requests);
    }
    (flow, post, start.elapsed())
}

/// `fido2setup`: a software authenticator and a trust file for its attestation CA.
fn fido2_setup(a: &Args) {
    use crypto_glue::traits::{EncodePem, LineEndingPem};
    // `true`: the token sets the user-verified flag (it has no PIN to ask; the server requires
    // the flag, as from a real key after its PIN).
    let (token, ca) = SoftToken::new(true).unwrap();
    let pem = ca.to_pem(LineEndingPem::LF).unwrap();
    let aaguid = webauthn_authenticator_rs::softtoken::AAGUID;
    std::fs::write(a.token_file.as_ref().expect("--token-file"), token.to_cbor().unwrap()).unwrap();
    std::fs::write(
        a.trust_file.as_ref().expect("--trust-file"),
        format!(
            "[[authority]]\nname = \"relais-load software authenticator\"\ncertificate = \"\"\"\n{pem}\"\"\"\naaguids = [\"{aaguid}\"]\n"
        ),
    )
    .unwrap();
}

/// Authorize, login page, password POST; returns the key page's `login_id`, `csrf` and the
/// authentication options it carries when the person has a key.
async fn password_to_key_step(a: &Args, b: &Browser, url: &str, user: &str, password: &str) -> (String, String, Option<String>) {
    let r = b.get(url).await;
    let loc = location(&r);
    assert!(loc.starts_with('/'), "expected the login page, got {loc}");
    let page = b.get(&format!("{}{}", a.base, loc)).await.text().await.unwrap();
    let form = [
        ("login_id", field(&page, "login_id")),
        ("csrf", field(&page, "csrf")),
        ("username", user.to_owned()),
        ("password", password.to_owned()),
    ];
    let r = b.post_form(&format!("{}/login", a.base), &form).await;
    let loc = location(&r);
    assert!(
        loc.starts_with("/login/webauthn?"),
        "{user}: expected the key page, got {} {loc}",
        r.status()
    );
    let page = b.get(&format!("{}{}", a.base, loc)).await.text().await.unwrap();
    (field(&page, "login_id"), field(&page, "csrf"), page_options(&page))
}

/// The key page's `data-options` (JSON, HTML-escaped by the template).
fn page_options(html: &str) -> Option<String> {
    let v = html.find("data-options=\"")? + "data-options=\"".len();
    let raw = &html[v..v + html[v..].find('"')?];
    Some(raw.replace("&#34;", "\"").replace("&#39;", "'").replace("&#38;", "&"))
}

/// Untimed: user `n` logs in (asking for loa3, since it has no key yet), registers a copy of
/// the template token with its enrolment code, and gets the token back with its credential.
async fn fido2_register(a: &Args, template: &[u8], user: &str, password: &str, code: &str) -> SoftToken {
    let b = browser();
    let url = format!("{}&acr_values=loa3", authorize_url(a));
    let (id, csrf, _) = password_to_key_step(a, &b, &url, user, password).await;
    let options = b
        .post_json(
            &format!("{}/login/webauthn/options", a.base),
            &serde_json::json!({"login_id": id, "csrf": csrf, "ceremony": "register", "enrolment_code": code}),
        )
        .await;
    let options: CreationChallengeResponse = serde_json::from_value(options).unwrap();
    let mut token = SoftToken::from_cbor(template).unwrap();
    let answer = token.do_registration(Url::parse(&a.base).unwrap(), options).unwrap();
    b.post_json(
        &format!("{}/login/webauthn/finish", a.base),
        &serde_json::json!({"login_id": id, "csrf": csrf, "credential": answer, "name": "relais-load"}),
    )
    .await;
    token
}

/// The authenticator side of a key login, answering as the SoftToken that registered the key
/// would (its credential, its private key, its counter, the user-verified flag) but signing
/// with aws-lc: SoftToken parses the key and recomputes its public half with pure-Rust P-256
/// at every signature, about 0.2 ms of the load tool's CPU per login on the cores the server
/// is measured on. A real key signs on the user's side; the server's work is the same.
struct LoadKey {
    credential_id: Vec<u8>,
    key: aws_lc_rs::signature::EcdsaKeyPair,
    counter: u32,
}

impl LoadKey {
    fn from_soft_token(token: &SoftToken) -> Self {
        /// The part of SoftToken's own serialisation this needs (credential id → SEC1 key).
        #[derive(serde::Deserialize)]
        struct Stored {
            tokens: std::collections::HashMap<Vec<u8>, Vec<u8>>,
            counter: u32,
        }
        let stored: Stored = serde_cbor_2::from_slice(&token.to_cbor().unwrap()).unwrap();
        assert_eq!(stored.tokens.len(), 1, "one credential per user's token");
        let (credential_id, der) = stored.tokens.into_iter().next().unwrap();
        let key =
            aws_lc_rs::signature::EcdsaKeyPair::from_private_key_der(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING, &der).unwrap();
        Self {
            credential_id,
            key,
            counter: stored.counter,
        }
    }

    /// The assertion a browser posts: client data for `origin`, authenticator data (RP id
    /// hash, user present + verified, the counter), the signature over both.
    fn sign_in(&mut self, origin: &str, options: RequestChallengeResponse) -> serde_json::Value {
        use aws_lc_rs::digest::{SHA256, digest};
        use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
        let o = options.public_key;
        assert!(
            o.allow_credentials
                .iter()
                .any(|c| AsRef::<[u8]>::as_ref(&c.id) == self.credential_id.as_slice()),
            "the server does not ask for this user's key"
        );
        let origin = Url::parse(origin).unwrap();
        let client_data = serde_json::to_vec(&serde_json::json!({
            "type": "webauthn.get", "challenge": B64.encode(AsRef::<[u8]>::as_ref(&o.challenge)),
            "origin": origin.as_str(), "tokenBinding": null,
        }))
        .unwrap();
        self.counter += 1;
        let mut auth_data = digest(&SHA256, o.rp_id.as_bytes()).as_ref().to_vec();
        auth_data.push(0b101);
        auth_data.extend(self.counter.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend(digest(&SHA256, &client_data).as_ref());
        let signature = self.key.sign(&aws_lc_rs::rand::SystemRandom::new(), &signed).unwrap();
        let id = B64.encode(&self.credential_id);
        serde_json::json!({
            "id": id, "rawId": id, "type": "public-key", "extensions": {},
            "response": {
                "authenticatorData": B64.encode(&auth_data),
                "clientDataJSON": B64.encode(&client_data),
                "signature": B64.encode(signature.as_ref()),
                "userHandle": null,
            },
        })
    }
}

/// The registered keys, one per user (a lock each: the sign counter must reach the server in
/// the order it was used), and the time spent signing.
struct Keys {
    users: Vec<(String, String)>,
    tokens: Vec<tokio::sync::Mutex<LoadKey>>,
    signing_ns: std::sync::atomic::AtomicU64,
}

async fn fido2_enrol_all(a: &Args) -> Arc<Keys> {
    let template = std::fs::read(a.token_file.as_ref().expect("--token-file")).unwrap();
    let codes = std::fs::read_to_string(a.codes.as_ref().expect("--codes")).unwrap();
    let mut users = Vec::new();
    for (n, line) in codes.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let (user, code) = line.split_once(' ').expect("`username code`");
        assert_eq!(user, a.user.replace("{n}", &n.to_string()), "--codes line {n}");
        users.push((user.to_owned(), code.trim().to_owned(), a.password.replace("{n}", &n.to_string())));
    }
    assert_eq!(
        users.len(),
        a.users,
        "--codes must have one line per user, users 0..--users in order"
    );
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(a.concurrency.min(16)));
    for (n, (user, code, password)) in users.iter().cloned().enumerate() {
        let (a, template, sem) = (a.clone(), template.clone(), sem.clone());
        set.spawn(async move {
            let _p = sem.acquire().await.unwrap();
            (n, fido2_register(&a, &template, &user, &password, &code).await)
        });
    }
    let mut tokens: Vec<Option<SoftToken>> = (0..users.len()).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (n, token) = r.unwrap();
        tokens[n] = Some(token);
    }
    println!("registered {} keys in {:.1}s (untimed)", users.len(), t.elapsed().as_secs_f64());
    Arc::new(Keys {
        users: users.into_iter().map(|(u, _, p)| (u, p)).collect(),
        tokens: tokens
            .into_iter()
            .map(|t| tokio::sync::Mutex::new(LoadKey::from_soft_token(&t.unwrap())))
            .collect(),
        signing_ns: Default::default(),
    })
}

/// One full login of user `i % users` with password and key, then the code exchange. Returns
/// the latency of the key step (signature, finish; the options came with the key page).
async fn fido2_login(a: &Args, keys: &Keys, i: usize) -> Duration {
    let n = i % keys.users.len();
    let (user, password) = &keys.users[n];
    let b = browser();
    let (id, csrf, options) = password_to_key_step(a, &b, &authorize_url(a), user, password).await;
    // The key page carries the ceremony's options, as a browser's script reads them.
    let t = Instant::now();
    let options: RequestChallengeResponse =
        serde_json::from_str(&options.unwrap_or_else(|| panic!("{user}: the key page has no options"))).unwrap();
    let finish = {
        let mut key = keys.tokens[n].lock().await;
        let s = Instant::now();
        let answer = key.sign_in(&a.base, options);
        keys.signing_ns.fetch_add(s.elapsed().as_nanos() as u64, Ordering::Relaxed);
        b.post_json(
            &format!("{}/login/webauthn/finish", a.base),
            &serde_json::json!({"login_id": id, "csrf": csrf, "credential": answer}),
        )
        .await
    };
    let took = t.elapsed();
    let redirect = finish["redirect"].as_str().unwrap_or_else(|| panic!("no redirect: {finish}"));
    redeem(a, shared_http(), &code_of(redirect)).await;
    took
}

/// `n` FIDO2 logins, closed loop at `--concurrency` (`rate` 0) or open loop at `rate`; prints
/// the latencies and the CPU time per login of this tool and the `--watch-pid` processes over
/// this run only, and returns the logins per second reached.
/// CPU time so far of this tool (first) and of each `--watch-pid` process.
fn cpu_snapshot(a: &Args) -> Vec<Duration> {
    std::iter::once("self")
        .chain(a.watch_pid.iter().map(|p| p.split_once('=').map(|(_, p)| p).unwrap_or(p)))
        .map(|p| match p.strip_prefix("comm:") {
            Some(comm) => cpu_of_all(comm),
            None => cpu_of(p),
        })
        .collect()
}

/// The CPU time of every process named `comm` (PostgreSQL runs one per connection). A process
/// started between two snapshots counts from zero; one that exits is lost (pooled connections
/// do not).
fn cpu_of_all(comm: &str) -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Duration::ZERO;
    };
    dir.filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
        .map(|pid| cpu_of(&pid))
        .sum()
}

/// "load tool X ms, relais Y ms, ...": the CPU per operation between two snapshots.
fn cpu_per_op(a: &Args, before: &[Duration], after: &[Duration], ops: usize) -> String {
    let names = std::iter::once("load tool").chain(a.watch_pid.iter().map(|p| p.split_once('=').map(|(n, _)| n).unwrap_or(p)));
    names
        .zip(before.iter().zip(after))
        .map(|(name, (b, a))| format!("{name} {:.3} ms", (*a - *b).as_secs_f64() * 1000.0 / ops.max(1) as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn fido2_run(a: &Arc<Args>, keys: &Arc<Keys>, n: usize, rate: f64) -> f64 {
    let before = cpu_snapshot(a);
    keys.signing_ns.store(0, Ordering::Relaxed);
    let mut args = (**a).clone();
    args.requests = n;
    args.rate = rate;
    let a = Arc::new(args);
    let (a2, k2) = (a.clone(), keys.clone());
    let (flow, step, wall) = if rate > 0.0 {
        open_loop(a.clone(), move |i| {
            let (a, k) = (a2.clone(), k2.clone());
            async move { fido2_login(&a, &k, i).await }
        })
        .await
    } else {
        let steps = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
        let s2 = steps.clone();
        let (flow, wall) = drive(n, a.concurrency, move |i| {
            let (a, k, s) = (a2.clone(), k2.clone(), s2.clone());
            async move {
                let t = fido2_login(&a, &k, i).await;
                s.lock().unwrap().push(t);
            }
        })
        .await;
        let step = std::mem::take(&mut *steps.lock().unwrap());
        (flow, step, wall)
    };
    let how = if rate > 0.0 {
        format!("open loop at {rate} logins/s")
    } else {
        format!("{} concurrent", a.concurrency)
    };
    let flow_count = flow.len();
    let done = flow_count.max(1) as f64;
    let achieved = flow.len() as f64 / wall.as_secs_f64();
    report(
        &format!("FIDO2 full login (authorize, form, password, key, code exchange; {how})"),
        flow,
        wall,
    );
    report(&format!("  of which the key step (signature, finish; {how})"), step, wall);
    println!(
        "  CPU per login: {} (the load tool's signing: {:.3} ms)",
        cpu_per_op(&a, &before, &cpu_snapshot(&a), flow_count),
        keys.signing_ns.load(Ordering::Relaxed) as f64 / 1e6 / done
    );
    achieved
}

/// One login in browser `b`; returns the code.
async fn login(a: &Args, b: &Browser) -> String {
    let r = b.get(&authorize_url(a)).await;
    let loc = location(&r);
    if !loc.starts_with('/') {
        return code_of(&loc);
    }
    let page = b.get(&format!("{}{}", a.base, loc)).await.text().await.unwrap();
    let form = [
        ("login_id", field(&page, "login_id")),
        ("csrf", field(&page, "csrf")),
        ("username", a.user.clone()),
        ("password", a.password.clone()),
    ];
    let r = b.post_form(&format!("{}/login", a.base), &form).await;
    code_of(&location(&r))
}

async fn redeem(a: &Args, http: &reqwest::Client, code: &str) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", a.redirect_uri.as_str()),
    ];
    let r = http
        .post(format!("{}/token", a.base))
        .basic_auth(&a.client, Some(&a.secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "token endpoint answered {}", r.status());
    r.bytes().await.unwrap();
}

fn report(name: &str, mut lat: Vec<Duration>, wall: Duration) {
    lat.sort();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "{name}: {} ops in {:.2}s = {:.0} ops/s; latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        lat.len(),
        wall.as_secs_f64(),
        lat.len() as f64 / wall.as_secs_f64(),
        p(0.5),
        p(0.9),
        p(0.99),
        p(1.0)
    );
}

/// Runs `op` `n` times over `concurrency` workers; returns latencies and wall time.
async fn drive<F, Fut>(n: usize, concurrency: usize, op: F) -> (Vec<Duration>, Duration)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t = Instant::now();
                op(i).await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    (all, start.elapsed())
}

fn main() {
    let a = Args::parse();
    // One thread by default: the tool shares the measured machine's cores with the server, and
    // a multi-threaded runtime spends its CPU handing tasks between threads.
    let mut rt = match a.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    rt.enable_all().build().unwrap().block_on(run(a));
}

async fn run(a: Args) {
    match a.scenario.as_str() {
        "token" => {
            let sso = browser();
            login(&a, &sso).await;
            let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
            let (mut lat, mut wall) = (Vec::new(), Duration::ZERO);
            // CPU counted over the timed redemptions only (making the codes is not the
            // token endpoint's work).
            let mut timed_cpu = vec![Duration::ZERO; 1 + a.watch_pid.len()];
            let mut left = a.requests;
            while left > 0 {
                let n = left.min(a.batch);
                // Untimed: make n codes through the SSO session.
                let (sso2, a2) = (sso.clone(), a.clone());
                let codes: Arc<Vec<String>> = Arc::new({
                    let (tx, mut rx) = tokio::sync::mpsc::channel(n);
                    drive(n, a.concurrency, move |_| {
                        let (b, a, tx) = (sso2.clone(), a2.clone(), tx.clone());
                        async move { tx.send(login(&a, &b).await).await.unwrap() }
                    })
                    .await;
                    let mut v = Vec::with_capacity(n);
                    while v.len() < n {
                        v.push(rx.recv().await.unwrap());
                    }
                    v
                });
                let (http2, a2) = (http.clone(), a.clone());
                let before = cpu_snapshot(&a);
                let (l, w) = drive(n, a.concurrency, move |i| {
                    let (http, a, codes) = (http2.clone(), a2.clone(), codes.clone());
                    async move { redeem(&a, &http, &codes[i]).await }
                })
                .await;
                for ((t, b), a) in timed_cpu.iter_mut().zip(before).zip(cpu_snapshot(&a)) {
                    *t += a - b;
                }
                lat.extend(l);
                wall += w;
                left -= n;
            }
            let ops = lat.len();
            report("token endpoint (code exchange)", lat, wall);
            let zero = vec![Duration::ZERO; timed_cpu.len()];
            println!(
                "  CPU per redemption (timed phases only): {}",
                cpu_per_op(&a, &zero, &timed_cpu, ops)
            );
        }
        "login" => {
            let a2 = a.clone();
            let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
            let (lat, wall) = drive(a.requests, a.concurrency, move |_| {
                let (a, http) = (a2.clone(), http.clone());
                async move {
                    let code = login(&a, &browser()).await;
                    redeem(&a, &http, &code).await;
                }
            })
            .await;
            report("full login (authorize, form, password, code exchange)", lat, wall);
        }
        "dirlogin" => {
            let a = Arc::new(a);
            let (flow, post, wall) = if a.rate > 0.0 {
                let a2 = a.clone();
                open_loop(a.clone(), move |i| {
                    let a = a2.clone();
                    async move { dir_login(&a, i).await }
                })
                .await
            } else {
                let posts = Arc::new(std::sync::Mutex::new(Vec::with_capacity(a.requests)));
                let (a2, p2) = (a.clone(), posts.clone());
                let (flow, wall) = drive(a.requests, a.concurrency, move |i| {
                    let (a, p) = (a2.clone(), p2.clone());
                    async move {
                        let t = dir_login(&a, i).await;
                        p.lock().unwrap().push(t);
                    }
                })
                .await;
                let post = std::mem::take(&mut *posts.lock().unwrap());
                (flow, post, wall)
            };
            let how = if a.rate > 0.0 {
                format!("open loop at {} logins/s", a.rate)
            } else {
                format!("{} concurrent", a.concurrency)
            };
            report(&format!("directory login flow (authorize, form, password POST; {how})"), flow, wall);
            report(&format!("  of which the password POST (directory check; {how})"), post, wall);
        }
        "fido2setup" => fido2_setup(&a),
        "fido2login" => {
            let a = Arc::new(a);
            let keys = fido2_enrol_all(&a).await;
            // Warm-up, untimed: connections, caches, the accounts' first key logins.
            println!("warm-up (not counted):");
            fido2_run(&a, &keys, keys.users.len().min(a.requests), 0.0).await;
            let rate = fido2_run(&a, &keys, a.requests, a.rate).await;
            if a.open_rate_fraction > 0.0 {
                fido2_run(&a, &keys, a.requests, (rate * a.open_rate_fraction).round()).await;
            }
        }
        other => panic!("unknown scenario {other}"),
    }
}
