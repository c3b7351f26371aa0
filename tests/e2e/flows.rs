//! The OpenID Connect flows a relying party drives, end to end.
use crate::browser::{Browser, Step, query};
use crate::harness::{self, ALICE, BYE, CALLBACK, CALLBACK2, Db, Server, Sessions};
use crate::rp;
use openidconnect::core::CoreUserInfoClaims;
use openidconnect::{AccessTokenHash, OAuth2TokenResponse, TokenResponse};
use reqwest::StatusCode;
use std::time::Duration;

/// Discovery, code flow with PKCE, token, ID token signature and claims, userinfo, refresh,
/// SSO for a second client, logout.
async fn full_flow(s: &Server) {
    let meta = rp::metadata(&s.base).await;
    let web = rp::client(meta.clone(), "web", Some(&s.web_secret), CALLBACK);
    let browser = Browser::new();

    let req = rp::auth_request(&web, &["profile", "email"]);
    let cb = browser.login(&s.base, &req.url, ALICE.0, ALICE.1).await;
    assert_eq!(cb.get("state").map(String::as_str), Some(req.state.secret().as_str()));
    assert_eq!(cb.get("iss"), Some(&s.base));

    let tokens = web
        .exchange_code(rp::code(&cb["code"]))
        .unwrap()
        .set_pkce_verifier(req.verifier)
        .request_async(&rp::http)
        .await
        .expect("code exchange");
    let id_token = tokens.id_token().expect("id_token");
    let verifier = web.id_token_verifier().set_allowed_algs(rp::algs());
    let claims = id_token.claims(&verifier, &req.nonce).expect("id_token verifies");
    assert_eq!(claims.issuer().as_str(), s.base);
    assert_eq!(claims.audiences()[0].as_str(), "web");
    assert_eq!(claims.auth_method_refs().unwrap()[0].as_str(), "pwd");
    assert_eq!(claims.auth_context_ref().unwrap().as_str(), "loa1");
    assert!(claims.auth_time().is_some());
    assert_eq!(claims.preferred_username().unwrap().as_str(), "alice");
    assert_eq!(claims.email().unwrap().as_str(), "alice@chu.example");
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));
    let raw = rp::payload(&id_token.to_string());
    let sid = raw["sid"].as_str().expect("sid claim").to_owned();
    assert_eq!(rp::header(&id_token.to_string())["alg"], "ES256");
    let sub = claims.subject().as_str().to_owned();

    let info: CoreUserInfoClaims = web
        .user_info(tokens.access_token().clone(), None)
        .unwrap()
        .request_async(&rp::http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject().as_str(), sub);
    assert_eq!(info.preferred_username().unwrap().as_str(), "alice");

    let refreshed = web
        .exchange_refresh_token(tokens.refresh_token().unwrap())
        .unwrap()
        .request_async(&rp::http)
        .await
        .expect("refresh");
    assert_ne!(
        refreshed.refresh_token().unwrap().secret(),
        tokens.refresh_token().unwrap().secret(),
        "refresh tokens rotate"
    );
    let refreshed_id = refreshed.id_token().unwrap();
    let rc = refreshed_id.claims(&verifier, |_: Option<&openidconnect::Nonce>| Ok(())).unwrap();
    assert_eq!(rc.subject().as_str(), sub);
    assert_eq!(rc.auth_time(), claims.auth_time(), "a refresh keeps the original auth_time");

    // SSO: a second client in the same browser gets a code without a login form.
    let web2 = rp::client(meta.clone(), "web2", Some(&s.post_secret), CALLBACK2).set_auth_type(openidconnect::AuthType::RequestBody);
    let req2 = rp::auth_request(&web2, &["profile"]);
    let Step::Callback(cb2) = browser.start(&req2.url).await else {
        panic!("SSO should skip the login form")
    };
    let tokens2 = web2
        .exchange_code(rp::code(&cb2["code"]))
        .unwrap()
        .set_pkce_verifier(req2.verifier)
        .request_async(&rp::http)
        .await
        .expect("client_secret_post exchange");
    let id2 = tokens2.id_token().unwrap();
    assert_eq!(rp::header(&id2.to_string())["alg"], "RS256", "web2 is registered for RS256");
    let c2 = id2
        .claims(&web2.id_token_verifier().set_allowed_algs(rp::algs()), &req2.nonce)
        .expect("RS256 id_token verifies");
    assert_eq!(c2.subject().as_str(), sub);
    assert_eq!(
        rp::payload(&id2.to_string())["sid"].as_str(),
        Some(sid.as_str()),
        "same SSO session"
    );

    // Logout with id_token_hint and a registered post-logout URI.
    let logout = format!(
        "{}/logout?id_token_hint={}&post_logout_redirect_uri={}&state=bye-state",
        s.base,
        id_token,
        urlencode(BYE)
    );
    match browser.start(&logout).await {
        Step::Callback(q) => assert_eq!(q.get("state").map(String::as_str), Some("bye-state")),
        other => panic!("logout should redirect to the client: {other:?}"),
    }
    // The session is gone: prompt=none now fails, and the session's refresh tokens are revoked.
    let req3 = rp::auth_request(&web, &[]);
    let Step::Callback(q) = browser.start(&format!("{}&prompt=none", req3.url)).await else {
        panic!("prompt=none must return to the client")
    };
    assert_eq!(q.get("error").map(String::as_str), Some("login_required"));
    let err = web
        .exchange_refresh_token(refreshed.refresh_token().unwrap())
        .unwrap()
        .request_async(&rp::http)
        .await;
    assert!(err.is_err(), "refresh after logout must fail");
    let kinds = s.audit_kinds().await;
    for k in ["login_password", "code_issued", "token_issued", "sso_reused", "logout"] {
        assert!(kinds.iter().any(|x| x == k), "audit trail lacks {k}: {kinds:?}");
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn full_flow_on_sqlite_and_memory_sessions() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    full_flow(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn full_flow_on_postgres_and_redis() {
    let s = harness::start(Db::Postgres, Sessions::Redis).await;
    full_flow(&s).await;
    s.stop().await;
}

#[tokio::test]
async fn prompt_login_and_max_age_force_a_new_login() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let meta = rp::metadata(&s.base).await;
    let web = rp::client(meta, "web", Some(&s.web_secret), CALLBACK);
    let browser = Browser::new();
    browser.login(&s.base, &rp::auth_request(&web, &[]).url, ALICE.0, ALICE.1).await;

    assert!(
        matches!(browser.start(&rp::auth_request(&web, &[]).url).await, Step::Callback(_)),
        "SSO"
    );
    assert!(matches!(
        browser.start(&format!("{}&prompt=login", rp::auth_request(&web, &[]).url)).await,
        Step::LoginForm(_)
    ));
    s.clock.advance(Duration::from_secs(120));
    assert!(matches!(
        browser.start(&format!("{}&max_age=60", rp::auth_request(&web, &[]).url)).await,
        Step::LoginForm(_)
    ));
    assert!(matches!(
        browser.start(&format!("{}&max_age=600", rp::auth_request(&web, &[]).url)).await,
        Step::Callback(_)
    ));
    // A higher acr than the session's forces a new login (step-up).
    assert!(matches!(
        browser.start(&format!("{}&acr_values=loa2", rp::auth_request(&web, &[]).url)).await,
        Step::LoginForm(_)
    ));
    // login_hint pre-fills the form; ui_locales=en switches the language.
    let Step::LoginForm(login) = browser
        .start(&format!(
            "{}&prompt=login&login_hint=bob&ui_locales=en",
            rp::auth_request(&web, &[]).url
        ))
        .await
    else {
        panic!()
    };
    let page = browser.get(&s.url(&login)).await.text().await.unwrap();
    assert!(page.contains("value=\"bob\""), "login_hint");
    assert!(page.contains("Sign in"), "English page");
    let Step::LoginForm(login) = browser.start(&format!("{}&prompt=login", rp::auth_request(&web, &[]).url)).await else {
        panic!()
    };
    let page = browser.get(&s.url(&login)).await.text().await.unwrap();
    assert!(
        page.contains("Connexion") && page.contains("name=\"username\"") && page.contains("name=\"password\""),
        "French form by default"
    );
    s.stop().await;
}

#[tokio::test]
async fn session_cookie_is_httponly_lax_and_secure_outside_dev_mode() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let meta = rp::metadata(&s.base).await;
    let web = rp::client(meta, "web", Some(&s.web_secret), CALLBACK);
    let b = Browser::new();
    let Step::LoginForm(login) = b.start(&rp::auth_request(&web, &[]).url).await else {
        panic!()
    };
    let page = b.get(&s.url(&login)).await.text().await.unwrap();
    let form = [
        ("login_id", crate::browser::field(&page, "login_id").unwrap()),
        ("csrf", crate::browser::field(&page, "csrf").unwrap()),
        ("username", ALICE.0.into()),
        ("password", ALICE.1.into()),
    ];
    let r = b.http.post(s.url("/login")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("relais_sso="))
        .unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "dev mode has no Secure flag: {cookie}");
    s.stop().await;

    // The same server outside dev mode (https issuer) sets Secure.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = relais::config::Config::from_toml_str(&format!(
        "issuer = \"https://sso.chu.example\"\n{}[keys]\nencryption_key = \"{}\"\n",
        harness::database_toml(Db::Sqlite).await,
        relais::adapters::keys::Kek::generate().to_base64()
    ))
    .unwrap();
    let comps = relais::server::Components::build(cfg, std::sync::Arc::new(relais::domain::ports::SystemClock))
        .await
        .unwrap();
    let policy = comps.config.passwords;
    comps
        .management("test")
        .register_client(relais::domain::management::NewClient::confidential(
            relais::protocol::ClientId::parse("web").unwrap(),
            "w",
            vec![relais::protocol::RedirectUri::parse(CALLBACK).unwrap()],
        ))
        .await
        .unwrap();
    comps
        .management("test")
        .create_account(
            &policy,
            relais::domain::management::NewAccount::new("carol", "Carol", "Petit"),
            "carol-password-1",
        )
        .await
        .unwrap();
    let running = relais::server::serve(std::sync::Arc::new(comps), listener).unwrap();
    let base = format!("http://127.0.0.1:{}", running.addr.port());
    let b = Browser::new();
    let r = b.get(&format!("{base}/authorize?response_type=code&client_id=web&scope=openid&redirect_uri={}&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256", urlencode(CALLBACK))).await;
    let set = r.headers().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(set.contains("Secure") && set.contains("HttpOnly"), "{set}");
    let _ = query("http://x/?a=b");
    running.stop().await;
}

#[tokio::test]
async fn userinfo_can_be_a_signed_jwt_and_introspection_and_revocation_work() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let meta = rp::metadata(&s.base).await;
    let web2 = rp::client(meta.clone(), "web2", Some(&s.post_secret), CALLBACK2).set_auth_type(openidconnect::AuthType::RequestBody);
    let b = Browser::new();
    let req = rp::auth_request(&web2, &["profile"]);
    let cb = b.login(&s.base, &req.url, ALICE.0, ALICE.1).await;
    let tokens = web2
        .exchange_code(rp::code(&cb["code"]))
        .unwrap()
        .set_pkce_verifier(req.verifier)
        .request_async(&rp::http)
        .await
        .unwrap();
    let at = tokens.access_token().secret().clone();

    // web2 is registered for signed userinfo: application/jwt, verified against the JWKS.
    let http = reqwest::Client::new();
    let r = http.get(s.url("/userinfo")).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/jwt");
    let jwt = r.text().await.unwrap();
    let (_, claims) = verify_with_jwks(&s, &jwt).await;
    assert_eq!(claims["aud"], "web2");
    assert_eq!(claims["iss"], s.base.as_str());
    assert_eq!(claims["preferred_username"], "alice");

    // Introspection by a resource server allowed to introspect (private_key_jwt client `jwt`).
    let intro = |token: String| {
        let s = &s;
        async move {
            let assertion = crate::hostile::assertion(s, "ES256", serde_json::json!({}));
            let form = [
                ("token", token),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ),
                ("client_assertion", assertion),
            ];
            reqwest::Client::new()
                .post(s.url("/introspect"))
                .form(&form)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let v = intro(at.clone()).await;
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["client_id"], "web2");
    let v = intro(tokens.refresh_token().unwrap().secret().clone()).await;
    assert_eq!(v["active"], true);
    assert_eq!(v["token_type"], "refresh_token");

    // Revocation (RFC 7009) by the owning client, then the token is inactive everywhere.
    let r = http
        .post(s.url("/revoke"))
        .form(&[
            ("token", at.as_str()),
            ("client_id", "web2"),
            ("client_secret", s.post_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(intro(at.clone()).await["active"], false);
    let r = http.get(s.url("/userinfo")).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    // Another client may not revoke web2's token.
    let rt = tokens.refresh_token().unwrap().secret().clone();
    let r = http
        .post(s.url("/revoke"))
        .basic_auth("web", Some(&s.web_secret))
        .form(&[("token", rt.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(intro(rt.clone()).await["active"], true);
    let r = http
        .post(s.url("/revoke"))
        .form(&[
            ("token", rt.as_str()),
            ("token_type_hint", "refresh_token"),
            ("client_id", "web2"),
            ("client_secret", s.post_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(intro(rt).await["active"], false);
    // Unknown tokens are not an error (RFC 7009 §2.2).
    let r = http
        .post(s.url("/revoke"))
        .form(&[
            ("token", "nonsense"),
            ("client_id", "web2"),
            ("client_secret", s.post_secret.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(s.audit_kinds().await.iter().any(|k| k == "token_revoked"));
    s.stop().await;
}

/// Verifies a JWT against the server's published JWKS with jsonwebtoken (an independent
/// implementation from the server's signer).
pub async fn verify_with_jwks(s: &Server, jwt: &str) -> (jsonwebtoken::Header, serde_json::Value) {
    let jwks: jsonwebtoken::jwk::JwkSet = reqwest::get(s.url("/jwks")).await.unwrap().json().await.unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &v).expect("signature verifies");
    (data.header, data.claims)
}

#[tokio::test]
async fn logout_without_hint_asks_for_confirmation() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let meta = rp::metadata(&s.base).await;
    let web = rp::client(meta, "web", Some(&s.web_secret), CALLBACK);
    let b = Browser::new();
    b.login(&s.base, &rp::auth_request(&web, &[]).url, ALICE.0, ALICE.1).await;
    let Step::Page(StatusCode::OK, page) = b.start(&s.url("/logout")).await else {
        panic!("confirmation page")
    };
    let csrf = crate::browser::field(&page, "confirm_csrf").expect("confirmation form");
    // A forged confirmation (another site cannot know the token) leaves the session alone.
    let r = b
        .http
        .post(s.url("/logout"))
        .form(&[("confirm_csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        matches!(b.start(&rp::auth_request(&web, &[]).url).await, Step::Callback(_)),
        "still logged in"
    );
    let r = b
        .http
        .post(s.url("/logout"))
        .form(&[("confirm_csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        matches!(b.start(&rp::auth_request(&web, &[]).url).await, Step::LoginForm(_)),
        "logged out"
    );
    // An unregistered post_logout_redirect_uri is never followed.
    let Step::Page(code, _) = b
        .start(&s.url(&format!(
            "/logout?client_id=web&post_logout_redirect_uri={}",
            urlencode("https://evil.example/")
        )))
        .await
    else {
        panic!()
    };
    assert_eq!(code, StatusCode::BAD_REQUEST);
    s.stop().await;
}

#[tokio::test]
async fn health_readiness_and_discovery() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let r = reqwest::get(s.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = reqwest::get(s.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["database"], true);
    assert_eq!(v["session_store"], true);
    let d: serde_json::Value = reqwest::get(s.url("/.well-known/openid-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(d["issuer"], s.base.as_str());
    assert_eq!(d["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(d["end_session_endpoint"], s.url("/logout").as_str());
    assert_eq!(d["introspection_endpoint"], s.url("/introspect").as_str());
    assert_eq!(d["revocation_endpoint"], s.url("/revoke").as_str());
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    assert_eq!(d["acr_values_supported"], serde_json::json!(["loa1", "loa2", "loa3"]));
    let r = reqwest::get(s.url("/admin/")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    s.stop().await;
}
