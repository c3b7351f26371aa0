//! Per-client policy (minimum acr, maximum login age) and where requests come from.
use crate::browser::{Browser, Step};
use crate::harness::{self, ALICE, CALLBACK, Db, Server, Sessions};

fn url(s: &Server, client: &str) -> String {
    harness::authorize_url(s, client, CALLBACK, "")
}

/// A refresh-token grant by the `web` client.
async fn refresh_as_web(s: &Server, refresh_token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(s.url("/token"))
        .basic_auth("web", Some(&s.web_secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
        .send()
        .await
        .unwrap()
}
use relais::domain::management::NewClient;
use relais::protocol::{ClientId, RedirectUri};
use reqwest::StatusCode;
use std::time::Duration;

async fn register(s: &Server, id: &str, f: impl FnOnce(NewClient) -> NewClient) -> String {
    let c = s.components();
    let base = NewClient::confidential(ClientId::parse(id).unwrap(), id, vec![RedirectUri::parse(CALLBACK).unwrap()]);
    c.management("test").register_client(f(base)).await.unwrap().1.unwrap()
}

#[tokio::test]
async fn a_client_minimum_acr_is_enforced_and_an_unknown_one_fails_closed() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    register(&s, "strong", |c| NewClient {
        min_acr: Some("loa2".into()),
        ..c
    })
    .await;
    register(&s, "typo", |c| NewClient {
        min_acr: Some("loa-two".into()),
        ..c
    })
    .await;
    let b = Browser::new();
    for client in ["strong", "typo"] {
        let cb = b
            .login(&s.base, &format!("{}&prompt=login", url(&s, client)), ALICE.0, ALICE.1)
            .await;
        assert_eq!(
            cb.get("error").map(String::as_str),
            Some("access_denied"),
            "{client}: a password alone is loa1"
        );
        assert_eq!(cb.get("iss"), Some(&s.base), "RFC 9207 iss on errors too");
        assert!(!cb.contains_key("code"));
    }
    // The login itself was real: a client without a minimum gets SSO.
    assert!(matches!(b.start(&url(&s, "web")).await, Step::Callback(q) if q.contains_key("code")));
    s.stop().await;
}

#[tokio::test]
async fn refresh_stops_at_the_client_maximum_login_age() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let secret = register(&s, "fourhours", |c| NewClient {
        max_auth_age: Some(4 * 3600),
        ..c
    })
    .await;
    let b = Browser::new();
    let cb = b.login(&s.base, &url(&s, "fourhours"), ALICE.0, ALICE.1).await;
    let http = reqwest::Client::new();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", cb["code"].as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
    ];
    let t: serde_json::Value = http
        .post(s.url("/token"))
        .basic_auth("fourhours", Some(&secret))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = |rt: String| {
        let (http, secret, url) = (http.clone(), secret.clone(), s.url("/token"));
        async move {
            let r = http
                .post(url)
                .basic_auth("fourhours", Some(&secret))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", rt.as_str())])
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    s.clock.advance(Duration::from_secs(3 * 3600));
    let (st, t2) = refresh(t["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(st, StatusCode::OK, "{t2}");
    s.clock.advance(Duration::from_secs(3600 + 1));
    let (st, body) = refresh(t2["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(
        (st, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant")),
        "past 4 h a new login is required"
    );
    // And the browser's SSO session no longer satisfies that client either.
    assert!(matches!(b.start(&url(&s, "fourhours")).await, Step::LoginForm(_)));
    s.stop().await;
}

#[tokio::test]
async fn the_audit_trail_records_the_client_address_behind_a_trusted_proxy_only() {
    let trusted = harness::start_with(Db::Sqlite, Sessions::Memory, "trusted_proxies = [\"127.0.0.1\"]").await;
    let direct = harness::start(Db::Sqlite, Sessions::Memory).await;
    // A range (a Kubernetes pod network, say) that holds the peer, and one that does not.
    let in_range = harness::start_with(Db::Sqlite, Sessions::Memory, "trusted_proxies = [\"10.0.0.0/8\", \"127.0.0.0/8\"]").await;
    let other_range = harness::start_with(Db::Sqlite, Sessions::Memory, "trusted_proxies = [\"192.168.0.0/16\"]").await;
    for (s, expected) in [
        (&trusted, "203.0.113.7"),
        (&direct, "127.0.0.1"),
        (&in_range, "203.0.113.7"),
        (&other_range, "127.0.0.1"),
    ] {
        let r = reqwest::Client::new()
            .get(format!("{}&redirect_uri=https://evil.example/", url(s, "web")))
            .header("x-forwarded-for", "198.51.100.1, 203.0.113.7")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let records = s.storage().audit_records(10).await.unwrap();
        let refused = records.iter().find(|r| r.event.kind() == "authorize_refused").unwrap();
        assert_eq!(refused.context.source_ip.as_deref(), Some(expected));
    }
    for s in [trusted, direct, in_range, other_range] {
        s.stop().await;
    }
}

#[tokio::test]
async fn userinfo_without_a_token_is_a_bearer_challenge() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let r = reqwest::get(s.url("/userinfo")).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    s.stop().await;
}

/// A code issued before the account was disabled yields no tokens. The code exchange reads no
/// account (the login's claims travel with the code); whether the account is still active is
/// checked in the issuance's own commit. The refusal is recorded, the issuance is not (the
/// storage suite checks that its refresh token is left out too). Enabled again, the browser's
/// session gets a code that works, with the claims read at login even after a rename; userinfo
/// and a refresh read the account as it is now.
async fn a_code_issued_before_the_account_was_disabled_yields_no_tokens(db: Db, sessions: Sessions) {
    let s = harness::start(db, sessions).await;
    let authorize = url(&s, "web").replace("scope=openid&", "scope=openid%20profile%20email&");
    let b = Browser::new();
    let cb = b.login(&s.base, &authorize, ALICE.0, ALICE.1).await;
    let m = s.components().management("admin-test");
    m.set_disabled("alice", true).await.unwrap();
    let http = reqwest::Client::new();
    let exchange = |code: String| {
        let req = http.post(s.url("/token")).basic_auth("web", Some(&s.web_secret)).form(&[
            ("grant_type", "authorization_code".to_owned()),
            ("code", code),
            ("redirect_uri", CALLBACK.to_owned()),
            ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned()),
        ]);
        async move {
            let r = req.send().await.unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, body) = exchange(cb["code"].clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(body["error_description"], "the account is no longer active");
    let refused = s.audit_events("token_refused").await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["reason"], "the account is no longer active");
    assert!(s.audit_events("token_issued").await.is_empty(), "no issuance recorded");

    m.set_disabled("alice", false).await.unwrap();
    use sea_orm::ConnectionTrait;
    s.components()
        .store
        .connection()
        .execute_unprepared(
            "UPDATE accounts SET display_name = 'Alice Renamed', email = 'alice.renamed@chu.example' WHERE username = 'alice'",
        )
        .await
        .unwrap();
    let Step::Callback(cb) = b.start(&authorize).await else {
        panic!("single sign-on")
    };
    let (status, body) = exchange(cb["code"].clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = crate::rp::payload(body["id_token"].as_str().unwrap());
    assert_eq!(
        (
            &id["preferred_username"],
            &id["name"],
            &id["given_name"],
            &id["family_name"],
            &id["email"]
        ),
        (
            &"alice".into(),
            &"Alice Martin".into(),
            &"Alice".into(),
            &"Martin".into(),
            &"alice@chu.example".into()
        ),
        "the claims of the login, not of the rename: {id}"
    );
    assert_eq!(s.audit_events("token_issued").await.len(), 1);
    let info: serde_json::Value = http
        .get(s.url("/userinfo"))
        .bearer_auth(body["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (&info["name"], &info["email"]),
        (&"Alice Renamed".into(), &"alice.renamed@chu.example".into())
    );
    let r = refresh_as_web(&s, body["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK, "the refresh token of the working exchange is kept");
    let refreshed: serde_json::Value = r.json().await.unwrap();
    let id = crate::rp::payload(refreshed["id_token"].as_str().unwrap());
    assert_eq!(id["name"], "Alice Renamed", "a refresh reads the account: {id}");
    s.stop().await;
}

#[tokio::test]
async fn a_code_issued_before_the_account_was_disabled_yields_no_tokens_sqlite() {
    a_code_issued_before_the_account_was_disabled_yields_no_tokens(Db::Sqlite, Sessions::Memory).await;
}

#[tokio::test]
async fn a_code_issued_before_the_account_was_disabled_yields_no_tokens_postgres_redis() {
    a_code_issued_before_the_account_was_disabled_yields_no_tokens(Db::Postgres, Sessions::Redis).await;
}

#[tokio::test]
async fn a_disabled_account_cannot_log_in_or_refresh_and_a_new_password_works() {
    let s = harness::start(Db::Sqlite, Sessions::Memory).await;
    let b = Browser::new();
    let cb = b.login(&s.base, &url(&s, "web"), ALICE.0, ALICE.1).await;
    let http = reqwest::Client::new();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", cb["code"].as_str()),
        ("redirect_uri", CALLBACK),
        ("code_verifier", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
    ];
    let t: serde_json::Value = http
        .post(s.url("/token"))
        .basic_auth("web", Some(&s.web_secret))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = s.components().management("admin-test");
    m.set_disabled("alice", true).await.unwrap();
    let r = refresh_as_web(&s, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "no refresh for a disabled account");
    let fresh = Browser::new();
    let Step::LoginForm(login) = fresh.start(&url(&s, "web")).await else {
        panic!()
    };
    let Step::Page(st, _) = fresh.submit_login(&s.base, &login, ALICE.0, ALICE.1).await else {
        panic!()
    };
    assert_eq!(st, StatusCode::UNAUTHORIZED, "same answer as a wrong password");
    m.set_disabled("alice", false).await.unwrap();
    m.set_password(&s.components().config.passwords, "alice", "a-brand-new-password")
        .await
        .unwrap();
    let Step::LoginForm(login) = fresh.start(&url(&s, "web")).await else {
        panic!()
    };
    assert!(
        matches!(
            fresh.submit_login(&s.base, &login, ALICE.0, ALICE.1).await,
            Step::Page(StatusCode::UNAUTHORIZED, _)
        ),
        "old password"
    );
    let Step::LoginForm(login) = fresh.start(&url(&s, "web")).await else {
        panic!()
    };
    assert!(
        matches!(fresh.submit_login(&s.base, &login, ALICE.0, "a-brand-new-password").await, Step::Callback(q) if q.contains_key("code"))
    );
    assert_eq!(s.audit_kinds().await.iter().filter(|k| *k == "account_changed").count(), 3);
    s.stop().await;
}
