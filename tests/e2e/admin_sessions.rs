//! A person's SSO sessions on the admin person page: listed (per-person index in the session
//! store, memory and Redis), ended one by one or all at once by an admin (CSRF, audited with
//! the admin's name), seen but not ended by an auditor. An ended session gives no more SSO and
//! its refresh tokens stop working.
use crate::admin::{ADMIN, AUDITOR, client, events, login, setup_on, staff};
use crate::browser::{Browser, Step};
use crate::harness::{self, ALICE, CALLBACK, CALLBACK2, Db, Server, Sessions, VERIFIER};
use relais::domain::admin::AdminRole;
use relais::domain::ports::Storage;
use reqwest::StatusCode;
use serde_json::Value;

pub(crate) async fn redeem(s: &Server, code: &str) -> Value {
    let r = reqwest::Client::new()
        .post(s.url("/token"))
        .basic_auth("web", Some(&s.web_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

pub(crate) async fn refresh(s: &Server, token: &str) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(s.url("/token"))
        .basic_auth("web", Some(&s.web_secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

/// Alice logs in to `web` in a fresh browser; returns the browser, its session id and the
/// refresh token of the code it got.
pub(crate) async fn alice_logs_in(s: &Server) -> (Browser, String, String) {
    let b = Browser::new();
    let q = b
        .login(&s.base, &harness::authorize_url(s, "web", CALLBACK, ""), ALICE.0, ALICE.1)
        .await;
    let sid = events(s, "code_issued").await[0]["session_id"].as_str().unwrap().to_owned();
    let tokens = redeem(s, &q["code"]).await;
    let rt = tokens["refresh_token"].as_str().expect("a refresh token").to_owned();
    (b, sid, rt)
}

pub(crate) async fn has_sso(s: &Server, b: &Browser) -> bool {
    match b.start(&harness::authorize_url(s, "web", CALLBACK, "")).await {
        Step::Callback(_) => true,
        Step::LoginForm(_) => false,
        other => panic!("{other:?}"),
    }
}

async fn admin_lists_and_ends_sessions(sessions: Sessions) {
    let (s, mut token) = setup_on(Db::Sqlite, sessions).await;
    staff(&s, &mut token, ADMIN, Some(AdminRole::Admin)).await;
    let (b1, sid1, rt1) = alice_logs_in(&s).await;
    let (b2, sid2, rt2) = alice_logs_in(&s).await;
    assert_ne!(sid1, sid2);
    // The second session also serves web2, by SSO.
    assert!(matches!(
        b2.start(&harness::authorize_url(&s, "web2", CALLBACK2, "")).await,
        Step::Callback(_)
    ));

    let http = client();
    let csrf = login(&http, &s, &mut token, ADMIN).await;
    let page = http.get(s.url("/admin/people/alice")).send().await.unwrap().text().await.unwrap();
    let sessions_html = page.split("id=\"sessions\"").nth(1).unwrap().split("</section>").next().unwrap();
    assert!(sessions_html.contains(&sid1) && sessions_html.contains(&sid2), "{sessions_html}");
    assert!(sessions_html.contains("web, web2"), "{sessions_html}");
    assert!(sessions_html.contains("127.0.0.1"), "{sessions_html}");
    assert!(sessions_html.contains("pwd"), "{sessions_html}");

    // A forged form (no token) ends nothing.
    let r = http
        .post(s.url("/admin/people/alice/sessions/revoke"))
        .form(&[("session", sid1.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(has_sso(&s, &b1).await);

    // Ending the first session.
    let r = http
        .post(s.url("/admin/people/alice/sessions/revoke"))
        .form(&[("csrf", csrf.as_str()), ("session", sid1.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let ev = events(&s, "session_revoked").await;
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0]["actor"], "admin:root-admin");
    assert_eq!(ev[0]["session_id"], sid1.as_str());
    // No more SSO in that browser, and the refresh token of that session is dead.
    assert!(!has_sso(&s, &b1).await, "the next /authorize asks to log in");
    let (status, body) = refresh(&s, &rt1).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    // The other session lives on, with its refresh token.
    assert!(has_sso(&s, &b2).await);
    let (status, body) = refresh(&s, &rt2).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A session id that is not (or no longer) the person's: refused, nothing recorded.
    let r = http
        .post(s.url("/admin/people/alice/sessions/revoke"))
        .form(&[("csrf", csrf.as_str()), ("session", sid1.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(events(&s, "session_revoked").await.len(), 1);

    // All at once.
    let r = http
        .post(s.url("/admin/people/alice/sessions/revoke-all"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(!has_sso(&s, &b2).await);
    assert_eq!(events(&s, "session_revoked").await.len(), 2);
    let page = http.get(s.url("/admin/people/alice")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Aucune session active."), "{page}");
    s.stop().await;
}

#[tokio::test]
async fn admin_lists_and_ends_a_persons_sessions_on_memory() {
    admin_lists_and_ends_sessions(Sessions::Memory).await;
}

#[tokio::test]
async fn admin_lists_and_ends_a_persons_sessions_on_redis() {
    admin_lists_and_ends_sessions(Sessions::Redis).await;
}

#[tokio::test]
async fn the_auditor_sees_sessions_and_cannot_end_them() {
    let (s, mut token) = setup_on(Db::Sqlite, Sessions::Memory).await;
    staff(&s, &mut token, AUDITOR, Some(AdminRole::Auditor)).await;
    let (b, sid, _) = alice_logs_in(&s).await;
    let http = client();
    let csrf = login(&http, &s, &mut token, AUDITOR).await;
    let page = http.get(s.url("/admin/people/alice")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&sid));
    assert!(!page.contains("/sessions/revoke"), "no end buttons for an auditor");
    for path in ["/admin/people/alice/sessions/revoke", "/admin/people/alice/sessions/revoke-all"] {
        let r = http
            .post(s.url(path))
            .form(&[("csrf", csrf.as_str()), ("session", sid.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(events(&s, "admin_refused").await[0]["reason"], "read_only_role");
    assert!(events(&s, "session_revoked").await.is_empty());
    assert!(has_sso(&s, &b).await);
    s.stop().await;
}

#[tokio::test]
async fn ended_and_expired_sessions_leave_the_list() {
    let (s, mut token) = setup_on(Db::Sqlite, Sessions::Memory).await;
    staff(&s, &mut token, ADMIN, Some(AdminRole::Admin)).await;
    let (b, sid, _) = alice_logs_in(&s).await;
    let p = &s.components().provider;
    let alice = s.components().store.account_by_username("alice").await.unwrap().unwrap();
    assert_eq!(p.sso_sessions_of(alice.id).await.unwrap().len(), 1);
    // A new login in the same browser replaces the session.
    let q = b
        .login(
            &s.base,
            &harness::authorize_url(&s, "web", CALLBACK, "&prompt=login"),
            ALICE.0,
            ALICE.1,
        )
        .await;
    assert!(q.contains_key("code"));
    let listed = p.sso_sessions_of(alice.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_ne!(listed[0].id, sid);
    // RP-initiated logout ends it.
    let r = b.get(&s.url("/logout")).await;
    let page = r.text().await.unwrap();
    let confirm = crate::browser::field(&page, "confirm_csrf").expect("logout confirmation");
    b.http
        .post(s.url("/logout"))
        .form(&[("confirm_csrf", confirm.as_str())])
        .send()
        .await
        .unwrap();
    assert!(p.sso_sessions_of(alice.id).await.unwrap().is_empty());
    // An expired session is pruned on read.
    alice_logs_in(&s).await;
    assert_eq!(p.sso_sessions_of(alice.id).await.unwrap().len(), 1);
    s.clock.advance(std::time::Duration::from_secs(
        s.components().config.sessions.sso_ttl_secs as u64 + 1,
    ));
    assert!(p.sso_sessions_of(alice.id).await.unwrap().is_empty());
    s.stop().await;
}

/// An access token dies with its SSO session: once the session is ended (here by the person,
/// as an admin or a logout would), userinfo and introspection refuse the token before its
/// `exp`; a token of another, still open session keeps working.
#[tokio::test]
async fn ending_a_session_stops_its_access_tokens() {
    let (s, _token) = setup_on(Db::Sqlite, Sessions::Memory).await;
    let userinfo = |token: String| {
        let url = s.url("/userinfo");
        async move { reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap().status() }
    };
    let login = || async {
        let b = crate::browser::Browser::new();
        let q = b
            .login(&s.base, &harness::authorize_url(&s, "web", CALLBACK, ""), ALICE.0, ALICE.1)
            .await;
        let sid = events(&s, "code_issued").await[0]["session_id"].as_str().unwrap().to_owned();
        let at = redeem(&s, &q["code"]).await["access_token"].as_str().unwrap().to_owned();
        (sid, at)
    };
    let (sid1, at1) = login().await;
    let (_sid2, at2) = login().await;
    assert_eq!(userinfo(at1.clone()).await, StatusCode::OK);
    let alice = s.storage().account_by_username(ALICE.0).await.unwrap().unwrap();
    let ended = s
        .components()
        .provider
        .revoke_sso_session(alice.id, &sid1, "self", &Default::default())
        .await
        .unwrap();
    assert!(ended);
    assert_eq!(userinfo(at1.clone()).await, StatusCode::UNAUTHORIZED, "the ended session's token");
    assert_eq!(userinfo(at2).await, StatusCode::OK, "the other session's token");
    let r: Value = reqwest::Client::new()
        .post(s.url("/introspect"))
        .basic_auth("web", Some(&s.web_secret))
        .form(&[("token", at1.as_str())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["active"], false, "{r}");
    s.stop().await;
}
