//! Boots a Relais server for one test.
use relais::config::Config;
use relais::domain::client::TokenAuthMethod;
use relais::domain::management::{NewAccount, NewClient};
use relais::domain::ports::{Clock, ManualClock, Storage};
use relais::domain::records::SigningAlg;
use relais::protocol::{ClientId, RedirectUri};
use relais::server::{self, Components, Running};
use std::sync::Arc;

pub const ALICE: (&str, &str) = ("alice", "alice-password-1");
pub const CALLBACK: &str = "http://localhost:9/cb";
pub const CALLBACK2: &str = "http://localhost:9/cb2";
pub const BYE: &str = "http://localhost:9/bye";

pub fn pg_url() -> String {
    std::env::var("RELAIS_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn redis_url() -> String {
    std::env::var("RELAIS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sessions {
    Memory,
    Redis,
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A database for one test: a temporary SQLite file or a fresh PostgreSQL schema.
pub async fn database_toml(db: Db) -> String {
    match db {
        Db::Sqlite => {
            let dir = std::env::temp_dir().join(unique("relais-test"));
            std::fs::create_dir_all(&dir).unwrap();
            format!("[database]\nurl = \"sqlite://{}/relais.sqlite?mode=rwc\"\n", dir.display())
        }
        Db::Postgres => {
            let schema = unique("t");
            let conn = sea_orm::Database::connect(pg_url())
                .await
                .expect("PostgreSQL on 127.0.0.1:5432 (database test) must be running");
            sea_orm::ConnectionTrait::execute_unprepared(&conn, &format!("CREATE SCHEMA {schema}"))
                .await
                .unwrap();
            conn.close().await.ok();
            format!("[database]\nurl = \"{}\"\nschema = \"{schema}\"\n", pg_url())
        }
    }
}

pub fn sessions_toml(s: Sessions) -> String {
    match s {
        Sessions::Memory => "[sessions]\nbackend = \"memory\"\n".into(),
        Sessions::Redis => format!(
            "[sessions]\nbackend = \"redis\"\nredis_url = \"{}\"\nkey_prefix = \"{}\"\n",
            redis_url(),
            unique("relais-test")
        ),
    }
}

pub struct Server {
    pub base: String,
    pub running: Running,
    pub clock: ManualClock,
    pub web_secret: String,
    pub post_secret: String,
    /// PKCS#8 of the `jwt` client's ES256 key (private_key_jwt).
    pub jwt_client_key: Vec<u8>,
    pub jwt_client_kid: String,
}

impl Server {
    pub fn components(&self) -> &Arc<Components> {
        &self.running.components
    }
    pub fn storage(&self) -> &dyn Storage {
        self.running.components.store.as_ref()
    }
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
    /// Audit event types recorded so far, newest first.
    pub async fn audit_kinds(&self) -> Vec<String> {
        self.storage()
            .audit_records(1000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.event.kind().to_owned())
            .collect()
    }
    /// Audit events of `kind`, newest first, as JSON.
    pub async fn audit_events(&self, kind: &str) -> Vec<serde_json::Value> {
        self.storage()
            .audit_records(1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.event.kind() == kind)
            .map(|r| serde_json::to_value(&r.event).unwrap())
            .collect()
    }
    pub async fn stop(self) {
        self.running.stop().await;
    }
}

pub async fn start(db: Db, sessions: Sessions) -> Server {
    start_with(db, sessions, "").await
}

/// Starts a server; `extra` is appended to the generated TOML config.
pub async fn start_with(db: Db, sessions: Sessions, extra: &str) -> Server {
    let kek = relais::adapters::keys::Kek::generate().to_base64();
    boot(&database_toml(db).await, &sessions_toml(sessions), &kek, extra, true).await
}

/// A replica on shared state (same database, session store and key-encryption key).
/// Only the first replica registers clients and accounts.
pub async fn start_shared(db_toml: &str, sessions_toml: &str, kek: &str, first: bool) -> Server {
    boot(db_toml, sessions_toml, kek, "", first).await
}

async fn boot(db_toml: &str, sessions_toml: &str, kek: &str, extra: &str, register: bool) -> Server {
    try_boot(db_toml, sessions_toml, kek, extra, register).await.unwrap()
}

/// As `start_shared` with `extra` config, for a start that may be refused: the error says why.
pub async fn try_boot(db_toml: &str, sessions_toml: &str, kek: &str, extra: &str, register: bool) -> Result<Server, String> {
    relais::install_crypto_provider();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let base = format!("http://localhost:{port}");
    let toml = format!(
        "issuer = \"{base}\"\ndev_mode = true\n{extra}\n{db_toml}{sessions_toml}[keys]\nencryption_key = \"{kek}\"\n[passwords]\nmemory_kib = 1024\niterations = 1\nmin_length = 8\n"
    );
    let config = Config::from_toml_str(&toml).unwrap();
    let clock = ManualClock::starting_now();
    let components = Components::build(config, Arc::new(clock.clone()) as Arc<dyn Clock>)
        .await
        .map_err(|e| e.to_string())?;
    let (web_secret, post_secret, jwt_client_key, jwt_client_kid) = if register {
        register_fixtures(&components).await
    } else {
        Default::default()
    };
    let running = server::serve(Arc::new(components), listener).unwrap();
    Ok(Server {
        base,
        running,
        clock,
        web_secret,
        post_secret,
        jwt_client_key,
        jwt_client_kid,
    })
}

/// Clients `web` (secret_basic, ES256), `web2` (secret_post, RS256, signed userinfo), `spa`
/// (public), `jwt` (private_key_jwt, may introspect) and the account alice.
async fn register_fixtures(components: &Components) -> (String, String, Vec<u8>, String) {
    let m = components.management("test");
    let uri = |u: &str| RedirectUri::parse(u).unwrap();
    let id = |i: &str| ClientId::parse(i).unwrap();
    let (_, web_secret) = m
        .register_client(NewClient {
            post_logout_redirect_uris: vec![uri(BYE)],
            ..NewClient::confidential(id("web"), "Dossier patient", vec![uri(CALLBACK)])
        })
        .await
        .unwrap();
    let (_, post_secret) = m
        .register_client(NewClient {
            auth_method: TokenAuthMethod::ClientSecretPost,
            id_token_alg: SigningAlg::RS256,
            userinfo_signed_alg: Some(SigningAlg::ES256),
            ..NewClient::confidential(id("web2"), "Messagerie", vec![uri(CALLBACK2)])
        })
        .await
        .unwrap();
    m.register_client(NewClient {
        auth_method: TokenAuthMethod::None,
        ..NewClient::confidential(id("spa"), "Appli publique", vec![uri(CALLBACK)])
    })
    .await
    .unwrap();
    let (jwt_client_key, jwk) = es256_client_key();
    let jwt_client_kid = jwk["kid"].as_str().unwrap().to_owned();
    m.register_client(NewClient {
        auth_method: TokenAuthMethod::PrivateKeyJwt,
        jwks: Some(serde_json::json!({ "keys": [jwk] })),
        may_introspect: true,
        ..NewClient::confidential(id("jwt"), "Service back-office", vec![uri(CALLBACK)])
    })
    .await
    .unwrap();
    let policy = components.config.passwords;
    m.create_account(
        &policy,
        NewAccount {
            email: Some("alice@chu.example".into()),
            ..NewAccount::new(ALICE.0, "Alice", "Martin")
        },
        ALICE.1,
    )
    .await
    .unwrap();
    (web_secret.unwrap(), post_secret.unwrap(), jwt_client_key, jwt_client_kid)
}

/// Registers a confidential client `id` (redirect: `CALLBACK`) reserved to `roles`.
pub async fn reserved_client(
    s: &Server,
    id: &str,
    roles: &[&str],
) -> Result<(relais::domain::client::Client, Option<String>), relais::domain::management::ManagementError> {
    s.components()
        .management("test")
        .register_client(NewClient {
            required_roles: roles.iter().map(|r| r.to_string()).collect(),
            ..NewClient::confidential(
                relais::protocol::ClientId::parse(id).unwrap(),
                id,
                vec![relais::protocol::RedirectUri::parse(CALLBACK).unwrap()],
            )
        })
        .await
}

/// A compact JWS (ES256) over `claims` with the PKCS#8 key `pkcs8`, as anyone holding a key
/// (not Relais') would make one.
pub fn sign_jws(pkcs8: &[u8], kid: &str, typ: &str, claims: &serde_json::Value) -> String {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let b = relais::domain::crypto::b64url;
    let h = serde_json::json!({"alg": "ES256", "typ": typ, "kid": kid});
    let input = format!("{}.{}", b(h.to_string().as_bytes()), b(claims.to_string().as_bytes()));
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).unwrap();
    let sig = pair.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b(sig.as_ref()))
}

/// A fresh ES256 key pair for a client: (PKCS#8 DER, public JWK).
pub fn es256_client_key() -> (Vec<u8>, serde_json::Value) {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let der = pair.to_pkcs8v1().unwrap().as_ref().to_vec();
    let pt = pair.public_key().as_ref().to_vec();
    let b = |x: &[u8]| relais::domain::crypto::b64url(x);
    let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": b(&pt[1..33]), "y": b(&pt[33..65]), "kid": unique("k"), "use": "sig", "alg": "ES256"});
    (der, jwk)
}

/// The PKCE pair of RFC 7636 appendix B, used by tests that build authorization URLs by hand.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// An authorization request for `client` with `state=st` and the S256 challenge of [`VERIFIER`];
/// `extra` is appended as is (`&prompt=login`).
pub fn authorize_url(s: &Server, client: &str, redirect: &str, extra: &str) -> String {
    let redirect: String = url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect();
    format!(
        "{}/authorize?response_type=code&client_id={client}&scope=openid&redirect_uri={redirect}&state=st&code_challenge={CHALLENGE}&code_challenge_method=S256{extra}",
        s.base
    )
}
