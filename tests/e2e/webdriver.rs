//! A small W3C WebDriver client (JSON over HTTP, with reqwest) driving Debian's headless
//! Chromium through chromedriver, including the WebAuthn virtual authenticator extension
//! (a FIDO2 key the browser really talks CTAP2 to). No browser-automation crate is needed.
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Driver {
    http: reqwest::Client,
    base: String,
    session: String,
    child: Child,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Driver {
    /// Starts chromedriver and a headless Chromium session with virtual authenticators on.
    pub async fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian chromium-driver, installed by scripts/test.sh)");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "webauthn:virtualAuthenticators": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "prefs": {"intl.accept_languages": "fr-FR,fr"},
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--lang=fr-FR"]
            }
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("new session: {r}"))
            .to_owned();
        Driver {
            http,
            base,
            session,
            child,
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r: Value = req.send().await.unwrap().json().await.unwrap();
        r["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let v = self.cmd(reqwest::Method::POST, path, Some(body)).await;
        assert!(v.get("error").is_none(), "{path}: {v}");
        v
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or("").to_owned()
    }

    /// Waits up to 10 s for an element matching `css`.
    pub async fn find(&self, css: &str) -> String {
        let started = Instant::now();
        loop {
            let v = self
                .cmd(
                    reqwest::Method::POST,
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            if let Some(id) = v[ELEMENT].as_str() {
                return id.to_owned();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no element {css} on {}: {v}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{e}/clear"), json!({})).await;
        self.post(&format!("/element/{e}/value"), json!({ "text": text })).await;
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{e}/click"), json!({})).await;
    }

    pub async fn text(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.cmd(reqwest::Method::GET, &format!("/element/{e}/text"), None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub async fn page_source(&self) -> String {
        self.cmd(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Waits up to 10 s for the URL to end with `suffix` and the page to be loaded (its
    /// deferred scripts run).
    pub async fn wait_url(&self, suffix: &str) {
        let started = Instant::now();
        loop {
            let u = self.url().await;
            if u.ends_with(suffix) {
                let state = self
                    .cmd(
                        reqwest::Method::POST,
                        "/execute/sync",
                        Some(json!({"script": "return document.readyState", "args": []})),
                    )
                    .await;
                if state == "complete" {
                    return;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "still on {u}, waiting for {suffix}: {}",
                self.page_source().await.chars().take(2000).collect::<String>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs an async script (the last argument is the callback) and returns its result.
    pub async fn run_async(&self, script: &str) -> Value {
        self.post("/execute/async", json!({ "script": script, "args": [] })).await
    }

    /// A PNG of the viewport. It replaces the docs' picture at `path` only when
    /// `UPDATE_SCREENSHOTS=1` (the pictures differ by a few bytes on every run, and a test run
    /// should not leave the docs modified); otherwise it goes to the temporary directory's
    /// `relais-screenshots/`, to look at after a failure.
    pub async fn screenshot(&self, path: &std::path::Path) {
        use base64::Engine;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
            "the screenshot is not a picture"
        );
        let path = if std::env::var_os("UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
            path.to_path_buf()
        } else {
            std::env::temp_dir().join("relais-screenshots").join(path.file_name().unwrap())
        };
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, png).unwrap();
    }

    /// Adds a CTAP2 virtual authenticator with user verification, attached by `transport`
    /// (`usb`, `internal`...: it must match the transports the credential was registered with).
    pub async fn add_authenticator(&self, transport: &str) -> String {
        let v = self
            .post(
                "/webauthn/authenticator",
                json!({"protocol": "ctap2", "transport": transport, "hasResidentKey": true,
                       "hasUserVerification": true, "isUserVerified": true}),
            )
            .await;
        v.as_str().unwrap().to_owned()
    }

    /// Puts a credential (PKCS#8 P-256 private key) into the virtual authenticator.
    pub async fn add_credential(&self, authenticator: &str, credential_id: &[u8], pkcs8: &[u8], rp_id: &str, sign_count: u32) {
        let b = |x: &[u8]| relais::domain::crypto::b64url(x);
        self.post(
            &format!("/webauthn/authenticator/{authenticator}/credential"),
            json!({"credentialId": b(credential_id), "isResidentCredential": false, "rpId": rp_id,
                   "privateKey": b(pkcs8), "signCount": sign_count}),
        )
        .await;
    }

    pub async fn quit(mut self) {
        let _ = self.cmd(reqwest::Method::DELETE, "", None).await;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
