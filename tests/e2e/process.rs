//! The built `relais` binary as separate processes (telemetry, replicas): a config file per
//! process, the CLI for fixtures, stderr captured to a file, killed when dropped.
//!
//! The binary is `target/<profile>/relais` next to this test binary's `deps/` directory
//! (scripts/test.sh builds it before the tests; `RELAIS_BIN` overrides).
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn relais_bin() -> PathBuf {
    if let Ok(p) = std::env::var("RELAIS_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).unwrap().join("relais");
    assert!(
        bin.is_file(),
        "{} is missing: build it first (cargo build --bin relais; scripts/test.sh does)",
        bin.display()
    );
    bin
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(crate::harness::unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a CLI command of `relais` with `stdin`; its stdout. Panics on failure.
pub fn cli(config: &Path, args: &[&str], stdin: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(relais_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "relais {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Registers a confidential client; its secret.
pub fn add_client(config: &Path, id: &str, redirect_uri: &str) -> String {
    let out = cli(
        config,
        &["client", "add", "--id", id, "--name", "Test", "--redirect-uri", redirect_uri],
        "",
    );
    out.lines()
        .find(|l| l.contains("secret"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or_else(|| panic!("no secret in {out}"))
        .to_owned()
}

pub fn add_user(config: &Path, username: &str, password: &str) {
    cli(
        config,
        &[
            "user",
            "add",
            "--username",
            username,
            "--given-name",
            "Alice",
            "--family-name",
            "Martin",
        ],
        &format!("{password}\n"),
    );
}

/// One `relais serve` process.
pub struct Relais {
    pub child: Option<Child>,
    pub port: u16,
    pub stderr: PathBuf,
}

impl Relais {
    /// Starts `relais serve -c config --listen 127.0.0.1:port` with `env` added.
    pub fn spawn(config: &Path, port: u16, env: &[(&str, String)]) -> Self {
        let stderr = config.with_extension(format!("{port}.log"));
        let mut cmd = Command::new(relais_bin());
        cmd.args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Self {
            child: Some(child),
            port,
            stderr,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&mut self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("http://127.0.0.1:{}/readyz", self.port)).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("relais exited with {status}: {}", self.log());
            }
            assert!(Instant::now() < deadline, "relais did not become ready: {}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the pid of our own child.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Waits for the process to exit (at most `limit`); its exit status.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return s;
            }
            assert!(Instant::now() < deadline, "relais did not exit: {}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Relais {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The TOML every process of a test shares: issuer, PostgreSQL schema or SQLite file, sessions,
/// KEK, fast password hashing (test only), `extra` appended.
pub fn config(dir: &Path, issuer: &str, db_toml: &str, sessions_toml: &str, extra: &str) -> PathBuf {
    let kek = relais::adapters::keys::Kek::generate().to_base64();
    let path = dir.join("relais.toml");
    std::fs::write(
        &path,
        format!(
            "issuer = \"{issuer}\"\ndev_mode = true\n{db_toml}{sessions_toml}[keys]\nencryption_key = \"{kek}\"\n[passwords]\nmemory_kib = 1024\niterations = 1\nmin_length = 8\n{extra}"
        ),
    )
    .unwrap();
    path
}

/// What a full login flow got.
#[derive(Debug)]
pub struct Flow {
    pub code: String,
    pub tokens: serde_json::Value,
    /// The code came at once (SSO session), without the login form.
    pub sso: bool,
}

/// How a flow failed: `Retryable` is what a client may simply start again (a 502/503/504 from
/// the load balancer, a refused or reset connection); `Broken` is anything else.
#[derive(Debug)]
pub enum FlowError {
    Retryable(String),
    Broken(String),
}

fn classify(step: &str, r: Result<reqwest::Response, reqwest::Error>) -> Result<reqwest::Response, FlowError> {
    match r {
        Ok(r) if matches!(r.status().as_u16(), 502..=504) => Err(FlowError::Retryable(format!("{step}: {}", r.status()))),
        Ok(r) => Ok(r),
        Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => Err(FlowError::Retryable(format!("{step}: {e}"))),
        Err(e) => Err(FlowError::Broken(format!("{step}: {e}"))),
    }
}

fn location(r: &reqwest::Response) -> Option<String> {
    r.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// Parameters of a login flow against `base`.
#[derive(Clone)]
pub struct FlowParams {
    pub base: String,
    pub client_id: String,
    pub secret: String,
    pub redirect_uri: String,
    pub user: String,
    pub password: String,
    /// Sent on every request (e.g. `traceparent`).
    pub headers: reqwest::header::HeaderMap,
}

impl FlowParams {
    /// Client `web` with `secret`, the given user.
    pub fn new(base: &str, secret: &str, redirect_uri: &str, user: &str, password: &str) -> Self {
        Self {
            base: base.into(),
            client_id: "web".into(),
            secret: secret.into(),
            redirect_uri: redirect_uri.into(),
            user: user.into(),
            password: password.into(),
            headers: Default::default(),
        }
    }
    pub fn with_base(&self, base: &str) -> Self {
        Self {
            base: base.into(),
            ..self.clone()
        }
    }
}

/// authorize → login page → password → code → token, as a browser (`b`, with its cookie jar)
/// and a confidential client.
pub async fn login_flow(p: &FlowParams, b: &reqwest::Client) -> Result<Flow, FlowError> {
    login_flow_via(p, b, &p.base, &p.base).await
}

/// The same, with the login form posted to `login_base` and the code redeemed at `token_base`
/// (another replica).
pub async fn login_flow_via(p: &FlowParams, b: &reqwest::Client, login_base: &str, token_base: &str) -> Result<Flow, FlowError> {
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let url = format!(
        "{}/authorize?response_type=code&client_id={}&scope=openid%20profile&redirect_uri={}&state=st&nonce=nn",
        p.base,
        enc(&p.client_id),
        enc(&p.redirect_uri)
    );
    let r = classify("authorize", b.get(&url).headers(p.headers.clone()).send().await)?;
    let loc = location(&r).ok_or_else(|| FlowError::Broken(format!("authorize answered {}", r.status())))?;
    let sso = loc.starts_with(&p.redirect_uri);
    let callback = if sso {
        loc
    } else {
        let path = loc.find("/login").map(|i| &loc[i..]).unwrap_or(&loc);
        let page = classify(
            "login page",
            b.get(crate::browser::absolute(login_base, path))
                .headers(p.headers.clone())
                .send()
                .await,
        )?;
        if !page.status().is_success() {
            return Err(FlowError::Broken(format!("login page answered {}", page.status())));
        }
        let html = page
            .text()
            .await
            .map_err(|e| FlowError::Retryable(format!("login page body: {e}")))?;
        let (Some(login_id), Some(csrf)) = (crate::browser::field(&html, "login_id"), crate::browser::field(&html, "csrf")) else {
            return Err(FlowError::Broken(format!("no login form in {html}")));
        };
        let form = [
            ("login_id", login_id),
            ("csrf", csrf),
            ("username", p.user.clone()),
            ("password", p.password.clone()),
        ];
        let r = classify(
            "login",
            b.post(format!("{login_base}/login"))
                .headers(p.headers.clone())
                .form(&form)
                .send()
                .await,
        )?;
        let loc = location(&r);
        match loc {
            Some(l) if l.starts_with(&p.redirect_uri) => l,
            _ => {
                let st = r.status();
                let body = r.text().await.unwrap_or_default();
                return Err(FlowError::Broken(format!("login answered {st}: {body}")));
            }
        }
    };
    let code = crate::browser::query(&callback)
        .remove("code")
        .ok_or_else(|| FlowError::Broken(format!("no code in {callback}")))?;
    let r = classify(
        "token",
        reqwest::Client::new()
            .post(format!("{token_base}/token"))
            .headers(p.headers.clone())
            .basic_auth(&p.client_id, Some(&p.secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", p.redirect_uri.as_str()),
            ])
            .send()
            .await,
    )?;
    let st = r.status();
    let body = r.text().await.map_err(|e| FlowError::Retryable(format!("token body: {e}")))?;
    if !st.is_success() {
        return Err(FlowError::Broken(format!("token answered {st}: {body}")));
    }
    let tokens: serde_json::Value = serde_json::from_str(&body).map_err(|e| FlowError::Broken(format!("token body {body}: {e}")))?;
    Ok(Flow { code, tokens, sso })
}

pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}
