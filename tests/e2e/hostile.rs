//! Hostile and broken input: each gets the right error, nothing is issued, and it is recorded.
use crate::browser::{Browser, Step};
use crate::flows::urlencode;
use crate::harness::{self, ALICE, CALLBACK, Db, Server, Sessions, VERIFIER, authorize_url};
use crate::rp;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use openidconnect::{OAuth2TokenResponse, TokenResponse};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// A client assertion for the `jwt` client, signed with its registered key; `overrides`
/// replace or add claims.
pub fn assertion(s: &Server, alg: &str, overrides: Value) -> String {
    let now = relais::domain::ports::Clock::unix(&s.clock);
    let mut claims =
        json!({"iss": "jwt", "sub": "jwt", "aud": s.url("/token"), "iat": now, "exp": now + 60, "jti": harness::unique("jti")});
    for (k, v) in overrides.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let alg = match alg {
        "ES256" => Algorithm::ES256,
        other => panic!("{other}"),
    };
    let mut h = Header::new(alg);
    h.kid = Some(s.jwt_client_kid.clone());
    jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(&s.jwt_client_key)).unwrap()
}

async fn token_form(s: &Server, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut rb = reqwest::Client::new().post(s.url("/token")).form(form);
    if let Some((u, p)) = basic {
        rb = rb.basic_auth(u, Some(p));
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, body, headers)
}

/// Logs alice in through `web` with the fixed PKCE pair; returns the code.
async fn code_for_web(s: &Server, b: &Browser) -> String {
    let cb = match b.start(&authorize_url(s, "web", CALLBACK, "")).await {
        Step::Callback(q) => q,
        Step::LoginForm(login) => match b.submit_login(&s.base, &login, ALICE.0, ALICE.1).await {
            Step::Callback(q) => q,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    cb["code"].clone()
}

#[tokio::test]
async fn untrusted_redirect_uri_or_client_gets_an_error_page_never_a_redirect() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let b = Browser::new();
    for url in [
        authorize_url(&s, "web", "https://evil.example/cb", ""),
        authorize_url(&s, "web", "http://localhost:9/cb/extra", ""),
        authorize_url(&s, "nobody", CALLBACK, ""),
        format!("{}/authorize?response_type=code&client_id=web&scope=openid", s.base),
        format!("{}&redirect_uri={}", authorize_url(&s, "web", CALLBACK, ""), urlencode(CALLBACK)),
    ] {
        match b.start(&url).await {
            Step::Page(code, body) => {
                assert_eq!(code, StatusCode::BAD_REQUEST, "{url}");
                assert!(body.contains("invalid_request") || body.contains("unauthorized_client"), "{body}");
            }
            other => panic!("{url} must not redirect: {other:?}"),
        }
    }
    assert!(s.audit_kinds().await.iter().filter(|k| *k == "authorize_refused").count() >= 5);
    s.stop().await;
}

#[tokio::test]
async fn bad_authorization_requests_return_errors_to_the_client() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let b = Browser::new();
    let cases = [
        (
            authorize_url(&s, "web", CALLBACK, "").replace("response_type=code", "response_type=token"),
            "unsupported_response_type",
        ),
        (
            authorize_url(&s, "web", CALLBACK, "").replace("scope=openid", "scope=profile"),
            "invalid_scope",
        ),
        (authorize_url(&s, "web", CALLBACK, "").replace("S256", "plain"), "invalid_request"),
        (authorize_url(&s, "web", CALLBACK, "&prompt=none"), "login_required"),
        (authorize_url(&s, "web", CALLBACK, "&prompt=none%20login"), "invalid_request"),
        (authorize_url(&s, "web", CALLBACK, "&max_age=-1"), "invalid_request"),
        (authorize_url(&s, "web", CALLBACK, "&request=eyJ"), "request_not_supported"),
        (
            authorize_url(&s, "web", CALLBACK, &format!("&nonce={}", "n".repeat(10_000))),
            "invalid_request",
        ),
        (authorize_url(&s, "web", CALLBACK, "&nonce=a&nonce=b"), "invalid_request"),
        // Public clients must use PKCE.
        (
            format!(
                "{}/authorize?response_type=code&client_id=spa&scope=openid&redirect_uri={}&state=st",
                s.base,
                urlencode(CALLBACK)
            ),
            "invalid_request",
        ),
    ];
    for (url, error) in cases {
        match b.start(&url).await {
            Step::Callback(q) => {
                assert_eq!(q.get("error").map(String::as_str), Some(error), "{url}");
                assert_eq!(q.get("state").map(String::as_str), Some("st"));
                assert!(!q.contains_key("code"));
            }
            other => panic!("{url}: expected an error redirect, got {other:?}"),
        }
    }
    s.stop().await;
}

#[tokio::test]
async fn code_replay_wrong_pkce_and_expired_code_are_refused() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let b = Browser::new();
    let web = Some(("web", s.web_secret.as_str()));

    // Wrong PKCE verifier, then the right one cannot be used either: a code is single-use.
    let code = code_for_web(&s, &b).await;
    let wrong = "x".repeat(43);
    let (st, body, _) = token_form(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", &wrong),
        ],
        web,
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let (_, body, _) = token_form(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ],
        web,
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");

    // Missing verifier, wrong redirect_uri.
    let code = code_for_web(&s, &b).await;
    let (_, body, _) = token_form(
        &s,
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CALLBACK)],
        web,
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");
    let code = code_for_web(&s, &b).await;
    let (_, body, _) = token_form(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://localhost:9/other"),
            ("code_verifier", VERIFIER),
        ],
        web,
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");

    // Replay: the second redemption fails and revokes what the first one issued.
    let code = code_for_web(&s, &b).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", VERIFIER),
    ];
    let (st, first, headers) = token_form(&s, &form, web).await;
    assert_eq!(st, StatusCode::OK, "{first}");
    assert_eq!(headers["cache-control"], "no-store");
    let (st, body, _) = token_form(&s, &form, web).await;
    assert_eq!((st, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    let refresh = first["refresh_token"].as_str().unwrap();
    let (_, body, _) = token_form(&s, &[("grant_type", "refresh_token"), ("refresh_token", refresh)], web).await;
    assert_eq!(body["error"], "invalid_grant", "tokens from a replayed code are revoked");
    let r = reqwest::Client::new()
        .get(s.url("/userinfo"))
        .bearer_auth(first["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the access token from a replayed code is revoked"
    );

    // Expired code (default lifetime 60 s).
    let code = code_for_web(&s, &b).await;
    s.clock.advance(Duration::from_secs(61));
    let (_, body, _) = token_form(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ],
        web,
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");

    let kinds = s.audit_kinds().await;
    assert!(kinds.iter().any(|k| k == "code_replayed"), "{kinds:?}");
    assert!(kinds.iter().filter(|k| *k == "token_refused").count() >= 5, "{kinds:?}");
    s.stop().await;
}

#[tokio::test]
async fn client_authentication_failures() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let b = Browser::new();
    let code = code_for_web(&s, &b).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", VERIFIER),
    ];

    let (st, body, h) = token_form(&s, &form, Some(("web", "wrong-secret"))).await;
    assert_eq!((st, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    assert!(h.get("www-authenticate").is_some());
    // web is registered for client_secret_basic: the same secret in the body is refused.
    let mut post = form.to_vec();
    post.extend([("client_id", "web"), ("client_secret", s.web_secret.as_str())]);
    let (st, body, _) = token_form(&s, &post, None).await;
    assert_eq!((st, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    // No authentication at all for a confidential client.
    let mut anon = form.to_vec();
    anon.push(("client_id", "web"));
    let (st, _, _) = token_form(&s, &anon, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    // A failed client authentication does not consume the code.
    let (st, _, _) = token_form(&s, &form, Some(("web", &s.web_secret))).await;
    assert_eq!(st, StatusCode::OK);
    // Unknown grant type, from an authenticated client.
    let (st, body, _) = token_form(
        &s,
        &[("grant_type", "password"), ("username", "alice"), ("password", "x")],
        Some(("web", &s.web_secret)),
    )
    .await;
    assert_eq!(
        (st, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    // Oversized parameter and oversized body.
    let huge = "c".repeat(5000);
    let (st, body, _) = token_form(
        &s,
        &[("grant_type", "authorization_code"), ("code", &huge), ("redirect_uri", CALLBACK)],
        Some(("web", &s.web_secret)),
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    let body_70k = "z".repeat(70_000);
    let (st, body, _) = token_form(
        &s,
        &[("grant_type", "authorization_code"), ("code", &body_70k)],
        Some(("web", &s.web_secret)),
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_request")));
    // Not a form at all.
    let r = reqwest::Client::new()
        .post(s.url("/token"))
        .basic_auth("web", Some(&s.web_secret))
        .json(&json!({"grant_type": "authorization_code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let kinds = s.audit_kinds().await;
    assert!(kinds.iter().filter(|k| *k == "client_auth_failed").count() >= 3, "{kinds:?}");
    s.stop().await;
}

#[tokio::test]
async fn private_key_jwt_assertions() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let b = Browser::new();
    let jwt_form = |code: &str, a: String| {
        vec![
            ("grant_type".to_string(), "authorization_code".to_string()),
            ("code".into(), code.to_owned()),
            ("redirect_uri".into(), CALLBACK.into()),
            ("code_verifier".into(), VERIFIER.into()),
            (
                "client_assertion_type".into(),
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
            ),
            ("client_assertion".into(), a),
        ]
    };
    let token_url = s.url("/token");
    let post = |form: Vec<(String, String)>| {
        let token_url = token_url.clone();
        async move {
            let r = reqwest::Client::new().post(token_url).form(&form).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let code = b.login(&s.base, &authorize_url(&s, "jwt", CALLBACK, ""), ALICE.0, ALICE.1).await["code"].clone();

    // alg "none": an unsigned assertion.
    let b64 = |v: Value| relais::domain::crypto::b64url(v.to_string().as_bytes());
    let now = relais::domain::ports::Clock::unix(&s.clock);
    let claims = json!({"iss": "jwt", "sub": "jwt", "aud": s.url("/token"), "iat": now, "exp": now + 60, "jti": "n1"});
    let none = format!("{}.{}.", b64(json!({"alg": "none", "typ": "JWT"})), b64(claims.clone()));
    let (st, body) = post(jwt_form(&code, none)).await;
    assert_eq!((st, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));

    // HS256 "signed" with the client's public key (the classic key-confusion attack).
    let jwk = reqwest::get(s.url("/jwks")).await.unwrap().text().await.unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some(s.jwt_client_kid.clone());
    let hs = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(jwk.as_bytes())).unwrap();
    let (st, _) = post(jwt_form(&code, hs)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Wrong audience, expired, signed by another key.
    for bad in [
        assertion(&s, "ES256", json!({"aud": "https://elsewhere.example/token"})),
        assertion(&s, "ES256", json!({"exp": now - 120})),
        assertion(&s, "ES256", json!({"exp": now + 86_400})),
    ] {
        let (st, _) = post(jwt_form(&code, bad)).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let (other_key, _) = harness::es256_client_key();
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(s.jwt_client_kid.clone());
    let forged = jsonwebtoken::encode(&h, &claims, &EncodingKey::from_ec_der(&other_key)).unwrap();
    let (st, _) = post(jwt_form(&code, forged)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // A good assertion works once; its jti cannot be replayed.
    let good = assertion(&s, "ES256", json!({}));
    let (st, body) = post(jwt_form(&code, good.clone())).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let code2 = b
        .login(
            &s.base,
            &format!("{}&prompt=login", authorize_url(&s, "jwt", CALLBACK, "")),
            ALICE.0,
            ALICE.1,
        )
        .await["code"]
        .clone();
    let (st, body) = post(jwt_form(&code2, good)).await;
    assert_eq!((st, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")));
    s.stop().await;
}

#[tokio::test]
async fn refresh_token_reuse_revokes_the_family() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let meta = rp::metadata(&s.base).await;
    let web = rp::client(meta, "web", Some(&s.web_secret), CALLBACK);
    let b = Browser::new();
    let req = rp::auth_request(&web, &[]);
    let cb = b.login(&s.base, &req.url, ALICE.0, ALICE.1).await;
    let t0 = web
        .exchange_code(rp::code(&cb["code"]))
        .unwrap()
        .set_pkce_verifier(req.verifier)
        .request_async(&rp::http)
        .await
        .unwrap();
    assert!(t0.id_token().is_some());
    let r0 = t0.refresh_token().unwrap().clone();
    let t1 = web.exchange_refresh_token(&r0).unwrap().request_async(&rp::http).await.unwrap();
    let r1 = t1.refresh_token().unwrap().clone();
    // r0 again: reuse. Both r0 and its successor r1 die.
    assert!(web.exchange_refresh_token(&r0).unwrap().request_async(&rp::http).await.is_err());
    assert!(
        web.exchange_refresh_token(&r1).unwrap().request_async(&rp::http).await.is_err(),
        "the successor is revoked too"
    );
    assert!(s.audit_kinds().await.iter().any(|k| k == "refresh_reuse_detected"));
    // Another client cannot use web's refresh token.
    let req = rp::auth_request(&web, &[]);
    let Step::Callback(cb) = b.start(&req.url).await else { panic!() };
    let t = web
        .exchange_code(rp::code(&cb["code"]))
        .unwrap()
        .set_pkce_verifier(req.verifier)
        .request_async(&rp::http)
        .await
        .unwrap();
    let (st, body, _) = token_form(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t.refresh_token().unwrap().secret()),
            ("client_id", "web2"),
            ("client_secret", &s.post_secret),
        ],
        None,
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));
    s.stop().await;
}

#[tokio::test]
async fn login_form_is_csrf_protected_and_bad_passwords_are_generic() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let b = Browser::new();
    let Step::LoginForm(login) = b.start(&authorize_url(&s, "web", CALLBACK, "")).await else {
        panic!()
    };
    let page = b.get(&s.url(&login)).await.text().await.unwrap();
    let id = crate::browser::field(&page, "login_id").unwrap();
    let csrf = crate::browser::field(&page, "csrf").unwrap();

    // Wrong password and unknown user: the same answer.
    for (user, pw) in [(ALICE.0, "wrong-password"), ("nobody", "whatever-pass")] {
        let r = b
            .http
            .post(s.url("/login"))
            .form(&[
                ("login_id", id.as_str()),
                ("csrf", csrf.as_str()),
                ("username", user),
                ("password", pw),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.text().await.unwrap().contains("Identifiant ou mot de passe incorrect"));
    }
    // Forged form: wrong CSRF token.
    let r = b
        .http
        .post(s.url("/login"))
        .form(&[
            ("login_id", id.as_str()),
            ("csrf", "forged"),
            ("username", ALICE.0),
            ("password", ALICE.1),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Another browser (no binding cookie) cannot finish this login, even with the form's values.
    let other = Browser::new();
    let r = other
        .http
        .post(s.url("/login"))
        .form(&[
            ("login_id", id.as_str()),
            ("csrf", csrf.as_str()),
            ("username", ALICE.0),
            ("password", ALICE.1),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The genuine browser still can.
    let r = b
        .http
        .post(s.url("/login"))
        .form(&[
            ("login_id", id.as_str()),
            ("csrf", csrf.as_str()),
            ("username", "  ALICE "),
            ("password", ALICE.1),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let records = s.storage().audit_records(100).await.unwrap();
    let failures = records
        .iter()
        .filter(|r| matches!(&r.event, relais::domain::audit::AuditEvent::LoginPassword { success: false, .. }))
        .count();
    assert_eq!(failures, 2);
    assert!(
        records
            .iter()
            .all(|r| !serde_json::to_string(&r.event).unwrap().contains("wrong-password")),
        "no password in the audit trail"
    );
    s.stop().await;
}

#[tokio::test]
async fn malformed_requests_never_yield_500() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let http = reqwest::Client::new();
    let bad_posts: Vec<(&str, Vec<u8>, &str)> = vec![
        ("/token", b"%%%%".to_vec(), "application/x-www-form-urlencoded"),
        ("/token", vec![0xff, 0xfe, 0x00], "application/x-www-form-urlencoded"),
        ("/introspect", b"token=x".to_vec(), "application/x-www-form-urlencoded"),
        ("/revoke", b"token=x".to_vec(), "text/plain"),
        ("/login", b"login_id=x&csrf=y".to_vec(), "application/x-www-form-urlencoded"),
        ("/userinfo", b"access_token=not.a.jwt".to_vec(), "application/x-www-form-urlencoded"),
    ];
    for (path, body, ct) in bad_posts {
        let r = http.post(s.url(path)).header("content-type", ct).body(body).send().await.unwrap();
        assert!(r.status().is_client_error(), "{path}: {}", r.status());
    }
    for h in ["Basic !!!", "Basic Zm9v", "Bearer x", "Digest y"] {
        let r = http
            .post(s.url("/token"))
            .header("authorization", h)
            .form(&[("grant_type", "authorization_code")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{h}");
    }
    let r = http
        .get(s.url("/userinfo"))
        .header("authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http.get(s.url("/login?id=does-not-exist")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http.get(s.url(&format!("/logout?id_token_hint={}", "a.b.c"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http.get(s.url("/no/such/page")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    s.stop().await;
}
