//! Staff self-service at `/account`, end to end: opened by the SSO session only, the person
//! sees their logins, sessions and keys, ends a session (CSRF, audited as `self`, SSO and
//! refresh tokens gone), removes a key but not the last one when the policy requires one.
use crate::admin::{self, ADMIN, enrol, events, setup_on, staff};
use crate::admin_sessions::{alice_logs_in, has_sso, refresh};
use crate::browser::{Browser, field};
use crate::harness::{self, ALICE, CALLBACK, Db, Sessions};
use crate::webdriver::Driver;
use relais::domain::admin::AdminRole;
use relais::domain::management::{NewAccount, NewClient};
use relais::domain::ports::Storage;
use relais::protocol::{ClientId, RedirectUri};
use reqwest::StatusCode;

async fn page(b: &Browser, s: &harness::Server, path: &str) -> (StatusCode, String) {
    let r = b.get(&s.url(path)).await;
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn the_account_page_needs_an_sso_session_not_the_admin_one() {
    let (s, mut token) = setup_on(Db::Sqlite, Sessions::Memory).await;
    staff(&s, &mut token, ADMIN, Some(AdminRole::Admin)).await;
    let (st, body) = page(&Browser::new(), &s, "/account").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(body.contains("pas connecté"), "{body}");
    // An admin session opens /admin, not /account.
    let http = admin::client();
    admin::login(&http, &s, &mut token, ADMIN).await;
    assert_eq!(http.get(s.url("/account")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // A POST without a session changes nothing.
    let r = http
        .post(s.url("/account/sessions/revoke"))
        .form(&[("csrf", "x"), ("session", "y")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

async fn staff_see_and_end_their_sessions(sessions: Sessions) {
    let (s, _token) = setup_on(Db::Sqlite, sessions).await;
    let (b1, sid1, rt1) = alice_logs_in(&s).await;
    let (b2, sid2, rt2) = alice_logs_in(&s).await;
    // Someone else's session, to try to end it from alice's page.
    let c = s.components();
    c.management("test")
        .create_account(
            &c.config.passwords,
            NewAccount::new("bmartin", "Bruno", "Martin"),
            "bmartin-password-1",
        )
        .await
        .unwrap();
    let b3 = Browser::new();
    b3.login(
        &s.base,
        &harness::authorize_url(&s, "web", CALLBACK, ""),
        "bmartin",
        "bmartin-password-1",
    )
    .await;
    let sid3 = events(&s, "code_issued").await[0]["session_id"].as_str().unwrap().to_owned();

    let (st, body) = page(&b1, &s, "/account").await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("Mon compte") && body.contains("Alice Martin"), "{body}");
    let logins = body.split("id=\"logins\"").nth(1).unwrap().split("</section>").next().unwrap();
    assert!(
        logins.contains("mot de passe") && logins.contains("réussie") && logins.contains("127.0.0.1"),
        "{logins}"
    );
    assert!(body.contains(&sid1) && body.contains(&sid2) && !body.contains(&sid3), "{body}");
    assert!(body.contains("(cette session)"));
    let csrf = field(&body, "csrf").expect("csrf");
    let (_, en) = page(&b1, &s, "/account?lang=en").await;
    assert!(en.contains("My account") && en.contains("(this session)"));

    // Forged: no token, or the token of another browser's session.
    for token in ["", "forged"] {
        let r = b1
            .http
            .post(s.url("/account/sessions/revoke"))
            .form(&[("csrf", token), ("session", sid2.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    let (_, other) = page(&b2, &s, "/account").await;
    let csrf2 = field(&other, "csrf").unwrap();
    assert_ne!(csrf, csrf2, "the token is bound to the session");
    let r = b1
        .http
        .post(s.url("/account/sessions/revoke"))
        .form(&[("csrf", csrf2.as_str()), ("session", sid2.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(has_sso(&s, &b2).await);

    // Someone else's session is not alice's to end.
    let r = b1
        .http
        .post(s.url("/account/sessions/revoke"))
        .form(&[("csrf", csrf.as_str()), ("session", sid3.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(has_sso(&s, &b3).await);

    // Alice ends her other session: gone, with its refresh tokens; audited as `self`.
    let r = b1
        .http
        .post(s.url("/account/sessions/revoke"))
        .form(&[("csrf", csrf.as_str()), ("session", sid2.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/account?done=1");
    let ev = events(&s, "session_revoked").await;
    assert_eq!(ev[0]["actor"], "self");
    assert_eq!(ev[0]["session_id"], sid2.as_str());
    assert!(!has_sso(&s, &b2).await);
    assert_eq!(refresh(&s, &rt2).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(refresh(&s, &rt1).await.0, StatusCode::OK);

    // Then this browser's own session: signed out here too.
    let r = b1
        .http
        .post(s.url("/account/sessions/revoke"))
        .form(&[("csrf", csrf.as_str()), ("session", sid1.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(page(&b1, &s, "/account").await.0, StatusCode::UNAUTHORIZED);
    assert!(!has_sso(&s, &b1).await);
    s.stop().await;
}

#[tokio::test]
async fn staff_see_and_end_their_sessions_on_memory() {
    staff_see_and_end_their_sessions(Sessions::Memory).await;
}

#[tokio::test]
async fn staff_see_and_end_their_sessions_on_redis() {
    staff_see_and_end_their_sessions(Sessions::Redis).await;
}

async fn remove_key(b: &Browser, s: &harness::Server, csrf: &str, key: &str) -> (StatusCode, String) {
    let r = b
        .http
        .post(s.url(&format!("/account/keys/{key}/remove")))
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

#[tokio::test]
async fn staff_remove_a_key_but_not_the_last_one_the_policy_requires() {
    let (s, mut token) = setup_on(Db::Sqlite, Sessions::Memory).await;
    // Logged in with the password (no key yet), then two keys are enrolled.
    let (b, _, _) = alice_logs_in(&s).await;
    enrol(&s, &mut token, ALICE.0).await;
    enrol(&s, &mut token, ALICE.0).await;
    let c = s.components();
    let alice = c.store.account_by_username(ALICE.0).await.unwrap().unwrap();
    let keys = c.provider.key_store.security_keys(alice.id).await.unwrap();
    assert_eq!(keys.len(), 2);
    let (_, body) = page(&b, &s, "/account").await;
    assert!(body.contains("/account/keys/") && body.contains("id=\"add-key\""), "{body}");
    let csrf = field(&body, "csrf").unwrap();

    let (st, _) = remove_key(&b, &s, "forged", &keys[0].id.to_string()).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = remove_key(&b, &s, &csrf, &keys[0].id.to_string()).await;
    assert_eq!(st, StatusCode::SEE_OTHER);
    let ev = events(&s, "fido2_key_revoked").await;
    assert_eq!(ev[0]["actor"], "self");
    assert_eq!(ev[0]["key_id"], keys[0].id.to_string());
    // Gone already: refused.
    let (st, _) = remove_key(&b, &s, &csrf, &keys[0].id.to_string()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);

    // The last key of an admin stays (the admin login always needs one).
    c.management("test")
        .set_admin_role(c.store.as_ref(), ALICE.0, Some(AdminRole::Auditor))
        .await
        .unwrap();
    let (st, body) = remove_key(&b, &s, &csrf, &keys[1].id.to_string()).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert!(body.contains("dernier facteur"), "{body}");
    // Likewise when an application refuses a password alone.
    c.management("test").set_admin_role(c.store.as_ref(), ALICE.0, None).await.unwrap();
    let strongest = c.provider.settings.acr_levels.last().unwrap().clone();
    c.management("test")
        .register_client(NewClient {
            min_acr: Some(strongest),
            ..NewClient::confidential(
                ClientId::parse("dpi").unwrap(),
                "DPI",
                vec![RedirectUri::parse("https://dpi.chu.example/cb").unwrap()],
            )
        })
        .await
        .unwrap();
    let (st, _) = remove_key(&b, &s, &csrf, &keys[1].id.to_string()).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let active = c.provider.key_store.security_keys(alice.id).await.unwrap();
    assert_eq!(active.iter().filter(|k| k.active()).count(), 1, "the last key stays");
    assert_eq!(events(&s, "fido2_key_revoked").await.len(), 1);
    s.stop().await;
}

#[tokio::test]
async fn browser_staff_end_another_session_on_their_account_page() {
    let (s, _token) = setup_on(Db::Sqlite, Sessions::Memory).await;
    // A session elsewhere (another browser, over HTTP).
    let (elsewhere, other_sid, _) = alice_logs_in(&s).await;
    let d = Driver::start().await;
    d.goto(&harness::authorize_url(&s, "web", CALLBACK, "")).await;
    d.type_into("#username", ALICE.0).await;
    d.type_into("#password", ALICE.1).await;
    d.click("form button[type=submit]").await;
    // Let the login land on the application's callback before leaving: a navigation started
    // while the form's redirect is still in flight can be overtaken by it.
    let started = std::time::Instant::now();
    while !d.url().await.starts_with(CALLBACK) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the login did not reach the callback"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    d.goto(&s.url("/account")).await;
    d.wait_url("/account").await;
    assert!(d.text("h1").await.contains("Mon compte"));
    assert!(d.text("#sessions tr.current").await.contains("cette session"));
    d.screenshot(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/img/account.png"))
        .await;
    d.click("#sessions tbody tr:not(.current) button").await;
    d.wait_url("/account?done=1").await;
    let ev = events(&s, "session_revoked").await;
    assert_eq!(ev[0]["actor"], "self");
    assert_eq!(ev[0]["session_id"], other_sid.as_str());
    assert!(!has_sso(&s, &elsewhere).await);
    d.quit().await;
    s.stop().await;
}

/// Adding a security key from `/account`: a first key needs the admin's enrolment code; with a
/// key registered, a password-only session may not add another (a stolen password never
/// adds a key), a session opened with a key may. Each step is audited; a replayed answer and
/// a forged page are refused.
#[tokio::test]
async fn staff_add_a_key_from_their_account_page_under_the_enrolment_rules() {
    use crate::fido2::{authenticate, key_step, origin};
    use relais::domain::ports::SecurityKeyStore;
    use webauthn_authenticator_rs::WebauthnAuthenticator;
    use webauthn_authenticator_rs::prelude::CreationChallengeResponse;
    let (s, mut token) = setup_on(Db::Sqlite, Sessions::Memory).await;
    let alice = s.storage().account_by_username(ALICE.0).await.unwrap().unwrap();
    let store = s.components().store.clone();
    let keys = || {
        let store = store.clone();
        async move { store.security_keys(alice.id).await.unwrap().iter().filter(|k| k.active()).count() }
    };
    let json_post = |b: &Browser, path: &str, body: serde_json::Value| {
        let req = b.http.post(s.url(path)).json(&body);
        async move {
            let r = req.send().await.unwrap();
            (r.status(), r.json::<serde_json::Value>().await.unwrap())
        }
    };

    // A password session, no key yet.
    let (b, _, _) = alice_logs_in(&s).await;
    let (_, html) = page(&b, &s, "/account").await;
    assert!(html.contains("add-key-code"), "a first key asks for the enrolment code");
    let csrf = field(&html, "csrf").expect("csrf");
    let (st, body) = json_post(&b, "/account/keys/options", serde_json::json!({"csrf": "forged"})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    let (st, body) = json_post(&b, "/account/keys/options", serde_json::json!({"csrf": csrf})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(body["error"].as_str().unwrap().contains("code d'enrôlement"), "{body}");
    let (code, _) = s.components().management("test").issue_enrolment_code(ALICE.0, 3600).await.unwrap();
    let (st, options) = json_post(
        &b,
        "/account/keys/options",
        serde_json::json!({"csrf": csrf, "enrolment_code": code}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{options}");
    let options: CreationChallengeResponse = serde_json::from_value(options).unwrap();
    let answer = token.do_registration(origin(&s), options).unwrap();
    let finish = serde_json::json!({"csrf": csrf, "name": "clé du bureau", "credential": answer});
    let (st, body) = json_post(&b, "/account/keys/finish", finish.clone()).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(keys().await, 1);
    let (st, _) = json_post(&b, "/account/keys/finish", finish).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "the challenge is used once");
    let (_, html) = page(&b, &s, "/account").await;
    assert!(html.contains("clé du bureau") && !html.contains("add-key-code"));

    // With a key registered, this password-only session may not add another.
    let (st, body) = json_post(&b, "/account/keys/options", serde_json::json!({"csrf": csrf})).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(body["error"].as_str().unwrap().contains("connectez-vous avec une clé"), "{body}");
    assert_eq!(keys().await, 1);

    // A session opened with the key may.
    let b2 = Browser::new();
    let url = format!("{}&acr_values=loa3", harness::authorize_url(&s, "web", CALLBACK, ""));
    let crate::browser::Step::LoginForm(login) = b2.start(&url).await else {
        panic!("login form")
    };
    let crate::browser::Step::LoginForm(key_page) = b2.submit_login(&s.base, &login, ALICE.0, ALICE.1).await else {
        panic!("key step")
    };
    let k = key_step(&b2, &s, &key_page).await;
    let (st, body) = authenticate(&b2, &s, &mut token, &k).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (_, page2) = page(&b2, &s, "/account").await;
    let csrf2 = field(&page2, "csrf").expect("csrf");
    let (st, options) = json_post(&b2, "/account/keys/options", serde_json::json!({"csrf": csrf2})).await;
    assert_eq!(st, StatusCode::OK, "{options}");
    let options: CreationChallengeResponse = serde_json::from_value(options).unwrap();
    let answer = token.do_registration(origin(&s), options).unwrap();
    let (st, body) = json_post(
        &b2,
        "/account/keys/finish",
        serde_json::json!({"csrf": csrf2, "name": "clé de secours", "credential": answer}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(keys().await, 2);

    let registered = events(&s, "fido2_key_registered").await;
    assert_eq!(registered.iter().filter(|e| e["success"] == true).count(), 2, "{registered:?}");
    assert!(
        registered
            .iter()
            .any(|e| e["success"] == false && e["reason"].as_str().unwrap_or("").contains("sign in with a key")),
        "{registered:?}"
    );
    s.stop().await;
}
