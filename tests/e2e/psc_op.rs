//! Relais as a client of Pro Santé Connect, against a PSC OP simulator: discovery at PSC's
//! non-standard path, RS256 tokens whose `sub` is `f:<uuid>:<idNat>`, UserInfo with
//! `SubjectNameID` as JSON or as a signed JWT (psc.md §3).
use crate::harness::{self, ALICE, CALLBACK, Db, Server, Sessions};
use crate::identity::person;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use relais::domain::crypto::{b64url, pkce_s256_matches};
use relais::domain::identity::Provenance;
use relais::domain::ports::IdentityStore;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const REALM: &str = "/auth/realms/esante-wallet";
const CLIENT: &str = "relais-fi";
const SECRET: &str = "psc-client-secret";

struct Sim {
    base: String,
    /// Where the browser goes (PSC's authorization endpoint is on another host, without mTLS).
    front: String,
    key: RsaKeyPair,
    idnat: Mutex<String>,
    userinfo_jwt: Mutex<bool>,
    codes: Mutex<HashMap<String, (String, String)>>,
    tokens: Mutex<HashMap<String, String>>,
}

impl Sim {
    fn issuer(&self) -> String {
        format!("{}{REALM}", self.base)
    }
    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "sim"});
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), input.as_bytes(), &mut sig)
            .unwrap();
        format!("{input}.{}", b64url(&sig))
    }
}

type S = web::Data<Arc<Sim>>;

async fn discovery(s: S) -> HttpResponse {
    let i = s.issuer();
    HttpResponse::Ok().json(json!({
        "issuer": i,
        // PSC's authorization endpoint lives on another host than its issuer.
        "authorization_endpoint": format!("{}/wallet/auth", s.front),
        "token_endpoint": format!("{i}/protocol/openid-connect/token"),
        "userinfo_endpoint": format!("{i}/protocol/openid-connect/userinfo"),
        "jwks_uri": format!("{i}/protocol/openid-connect/certs"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn jwks(s: S) -> HttpResponse {
    let pk = s.key.public_key();
    HttpResponse::Ok().json(json!({"keys": [{"kty": "RSA", "kid": "sim", "use": "sig", "alg": "RS256",
        "n": b64url(pk.modulus().big_endian_without_leading_zero()), "e": b64url(pk.exponent().big_endian_without_leading_zero())}]}))
}

async fn authorize(req: HttpRequest, s: S) -> HttpResponse {
    let q: HashMap<String, String> = url::form_urlencoded::parse(req.query_string().as_bytes()).into_owned().collect();
    assert_eq!(q["client_id"], CLIENT);
    assert!(q["scope"].contains("scope_all"), "PSC's scope");
    assert_eq!(q.get("acr_values").map(String::as_str), Some("eidas1"));
    assert_eq!(q["code_challenge_method"], "S256");
    let code = harness::unique("code");
    s.codes
        .lock()
        .unwrap()
        .insert(code.clone(), (q["nonce"].clone(), q["code_challenge"].clone()));
    let to = format!(
        "{}?code={code}&state={}",
        q["redirect_uri"],
        url::form_urlencoded::byte_serialize(q["state"].as_bytes()).collect::<String>()
    );
    HttpResponse::Found().insert_header(("location", to)).finish()
}

async fn token(req: HttpRequest, body: web::Bytes, s: S) -> HttpResponse {
    let auth = req.headers().get("authorization").unwrap().to_str().unwrap().to_owned();
    use base64::Engine;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT}:{SECRET}"))
    );
    if auth != expected {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
    }
    let f: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let Some((nonce, challenge)) = s.codes.lock().unwrap().remove(&f["code"]) else {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_grant"}));
    };
    if !pkce_s256_matches(&f["code_verifier"], &challenge) {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_grant"}));
    }
    let idnat = s.idnat.lock().unwrap().clone();
    let now = chrono::Utc::now().timestamp();
    let id_token = s.sign(
        &json!({"iss": s.issuer(), "aud": CLIENT, "sub": format!("f:{}:{idnat}", uuid::Uuid::new_v4()), "iat": now, "exp": now + 120,
        "nonce": nonce, "preferred_username": idnat, "acr": "eidas3", "authMode": "CARD"}),
    );
    let at = harness::unique("at");
    s.tokens.lock().unwrap().insert(at.clone(), id_token.clone());
    HttpResponse::Ok().json(json!({"access_token": at, "token_type": "Bearer", "expires_in": 120, "id_token": id_token}))
}

async fn userinfo(req: HttpRequest, s: S) -> HttpResponse {
    let at = req
        .headers()
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_owned();
    let Some(id_token) = s.tokens.lock().unwrap().get(&at).cloned() else {
        return HttpResponse::Unauthorized().finish();
    };
    let sub = crate::rp::payload(&id_token)["sub"].clone();
    let idnat = s.idnat.lock().unwrap().clone();
    let claims = json!({"sub": sub, "SubjectNameID": idnat, "preferred_username": idnat,
        "otherIds": [{"identifiant": &idnat[1..], "origine": "RPPS", "qualite": 1}]});
    if *s.userinfo_jwt.lock().unwrap() {
        let mut c = claims;
        c["iss"] = json!(s.issuer());
        c["aud"] = json!(CLIENT);
        HttpResponse::Ok().content_type("application/jwt").body(s.sign(&c))
    } else {
        HttpResponse::Ok().json(claims)
    }
}

async fn start_sim() -> (Arc<Sim>, actix_web::dev::ServerHandle) {
    start_sim_with(None).await
}

/// The simulator over HTTPS when `tls` is given (PSC's "Espace de Confiance" asks for a client
/// certificate on the back channel).
async fn start_sim_with(tls: Option<Arc<rustls::ServerConfig>>) -> (Arc<Sim>, actix_web::dev::ServerHandle) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let base = format!("{scheme}://localhost:{}", listener.local_addr().unwrap().port());
    // With TLS, the browser's side gets a plain listener of its own.
    let front_listener = tls.is_some().then(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
    let front = match &front_listener {
        Some(l) => format!("http://localhost:{}", l.local_addr().unwrap().port()),
        None => base.clone(),
    };
    let sim = Arc::new(Sim {
        base,
        front,
        key: RsaKeyPair::generate(KeySize::Rsa2048).unwrap(),
        idnat: Mutex::new("899926018153".into()),
        userinfo_jwt: Mutex::new(false),
        codes: Mutex::default(),
        tokens: Mutex::default(),
    });
    let data = web::Data::new(sim.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route(
                &format!("{REALM}/.well-known/wallet-openid-configuration"),
                web::get().to(discovery),
            )
            .route("/wallet/auth", web::get().to(authorize))
            .route(&format!("{REALM}/protocol/openid-connect/token"), web::post().to(token))
            .route(&format!("{REALM}/protocol/openid-connect/userinfo"), web::get().to(userinfo))
            .route(&format!("{REALM}/protocol/openid-connect/certs"), web::get().to(jwks))
    })
    .workers(1)
    .disable_signals();
    let server = match (tls, front_listener) {
        (Some(cfg), Some(front)) => server
            .listen_rustls_0_23(listener, rustls::ServerConfig::clone(&cfg))
            .unwrap()
            .listen(front),
        _ => server.listen(listener),
    }
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (sim, handle)
}

/// Follows the browser through Relais → PSC → Relais; returns the final page.
async fn verify(s: &Server, b: &crate::browser::Browser) -> (StatusCode, String) {
    let mut url = s.url("/verify/psc");
    for _ in 0..4 {
        let r = b.http.get(&url).send().await.unwrap();
        if !r.status().is_redirection() {
            return (r.status(), r.text().await.unwrap());
        }
        url = r.headers()["location"].to_str().unwrap().to_owned();
    }
    panic!("too many redirects")
}

#[tokio::test]
async fn a_person_proves_their_idnat_at_psc_and_the_mapping_becomes_verified() {
    let (sim, handle) = start_sim().await;
    let cfg = format!(
        "[psc_client]\nissuer = \"{}\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"{SECRET}\"\n",
        sim.issuer()
    );
    let s = harness::start_with(Db::Sqlite, Sessions::Memory, &cfg).await;
    let b = crate::browser::Browser::new();

    // Without a session there is nothing to verify.
    let (st, _) = verify(&s, &b).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Alice logs in to a local application, then verifies with PSC (JSON UserInfo).
    let url = format!(
        "{}/authorize?response_type=code&client_id=web&scope=openid&redirect_uri={}&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        s.base,
        crate::flows::urlencode(CALLBACK)
    );
    b.login(&s.base, &url, ALICE.0, ALICE.1).await;
    let (st, page) = verify(&s, &b).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("899926018153"), "{page}");
    let alice = s.storage().account_by_username("alice").await.unwrap().unwrap();
    let ids = s.components().store.national_ids(alice.id).await.unwrap();
    assert_eq!(
        (ids[0].idnat.as_str(), ids[0].verified, ids[0].provenance),
        ("899926018153", true, Provenance::PscProof)
    );

    // Bob, with UserInfo as a signed JWT.
    person(&s, "bob", "Jean-Marc", "Dupont").await;
    *sim.idnat.lock().unwrap() = "899983016611".into();
    *sim.userinfo_jwt.lock().unwrap() = true;
    let b2 = crate::browser::Browser::new();
    b2.login(&s.base, &url, "bob", "password-long-1").await;
    let (st, page) = verify(&s, &b2).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let bob = s.storage().account_by_username("bob").await.unwrap().unwrap();
    assert!(s.components().store.national_ids(bob.id).await.unwrap()[0].verified);

    // PSC naming an idNat that belongs to someone else changes nothing.
    *sim.idnat.lock().unwrap() = "899926018153".into();
    let (st, page) = verify(&s, &b2).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{page}");
    assert_eq!(s.components().store.national_ids(alice.id).await.unwrap().len(), 1);
    assert_eq!(s.components().store.national_ids(bob.id).await.unwrap().len(), 1);
    assert!(s.audit_kinds().await.iter().any(|k| k == "identity_linked"));
    s.stop().await;
    handle.stop(false).await;
}

/// PSC's back channel with mutual TLS: without Relais' client certificate PSC's server refuses
/// the handshake (a clear "unreachable" page, nothing linked); with `client_cert_file` and
/// `client_key_file` the same verification succeeds. PSC's CA comes from `ca_file`.
#[tokio::test]
async fn the_back_channel_presents_the_client_certificate_psc_requires() {
    let pki = crate::audit_forward::pki();
    let (sim, handle) = start_sim_with(Some(crate::audit_forward::server_tls(&pki, &pki))).await;
    let url = format!(
        "{{}}/authorize?response_type=code&client_id=web&scope=openid&redirect_uri={}&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
        crate::flows::urlencode(CALLBACK)
    );
    let base_cfg = format!(
        "[psc_client]\nissuer = \"{}\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"{SECRET}\"\nca_file = \"{}/ca.pem\"\n",
        sim.issuer(),
        pki.display()
    );

    // No client certificate: PSC's server ends the handshake.
    let s = harness::start_with(Db::Sqlite, Sessions::Memory, &base_cfg).await;
    let b = crate::browser::Browser::new();
    b.login(&s.base, &url.replace("{}", &s.base), ALICE.0, ALICE.1).await;
    let (st, page) = verify(&s, &b).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{page}");
    assert!(page.contains("Pro Santé Connect"), "{page}");
    let alice = s.storage().account_by_username("alice").await.unwrap().unwrap();
    assert!(s.components().store.national_ids(alice.id).await.unwrap().is_empty());
    s.stop().await;

    // With it: the whole back channel (discovery, JWKS, token, UserInfo) goes through.
    let cfg = format!(
        "{base_cfg}client_cert_file = \"{0}/client.pem\"\nclient_key_file = \"{0}/client.key\"\n",
        pki.display()
    );
    let s = harness::start_with(Db::Sqlite, Sessions::Memory, &cfg).await;
    let b = crate::browser::Browser::new();
    b.login(&s.base, &url.replace("{}", &s.base), ALICE.0, ALICE.1).await;
    let (st, page) = verify(&s, &b).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let alice = s.storage().account_by_username("alice").await.unwrap().unwrap();
    let ids = s.components().store.national_ids(alice.id).await.unwrap();
    assert_eq!((ids[0].idnat.as_str(), ids[0].verified), ("899926018153", true));
    s.stop().await;

    // Half a client certificate is a configuration error at start, naming the keys.
    let half = format!("{base_cfg}client_cert_file = \"{}/client.pem\"\n", pki.display());
    let dir = crate::process::temp_dir("relais-psc-half");
    let cfg = crate::process::config(
        &dir,
        "http://localhost:1",
        &harness::database_toml(Db::Sqlite).await,
        &harness::sessions_toml(Sessions::Memory),
        &half,
    );
    let out = std::process::Command::new(crate::process::relais_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("client_key_file"), "{err}");
    handle.stop(false).await;
}
