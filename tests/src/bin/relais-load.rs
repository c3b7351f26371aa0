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
use clap::Parser;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

/// Open loop: login `i` starts at `i / rate` seconds; latencies (flow, POST) from that moment.
async fn open_loop(a: Arc<Args>) -> (Vec<Duration>, Vec<Duration>, Duration) {
    let start = tokio::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..a.requests {
        let at = start + Duration::from_secs_f64(i as f64 / a.rate);
        tokio::time::sleep_until(at).await;
        let a = a.clone();
        set.spawn(async move {
            let post = dir_login(&a, i).await;
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

#[tokio::main]
async fn main() {
    let a = Args::parse();
    match a.scenario.as_str() {
        "token" => {
            let sso = browser();
            login(&a, &sso).await;
            let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
            let (mut lat, mut wall) = (Vec::new(), Duration::ZERO);
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
                let (l, w) = drive(n, a.concurrency, move |i| {
                    let (http, a, codes) = (http2.clone(), a2.clone(), codes.clone());
                    async move { redeem(&a, &http, &codes[i]).await }
                })
                .await;
                lat.extend(l);
                wall += w;
                left -= n;
            }
            report("token endpoint (code exchange)", lat, wall);
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
                open_loop(a.clone()).await
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
        other => panic!("unknown scenario {other}"),
    }
}
