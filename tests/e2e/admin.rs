//! The admin web UI end to end. `browser_*`: headless Chromium (chromedriver, WebDriver) with a
//! virtual FIDO2 authenticator logs in with password and key, finds a person, edits a mapping,
//! revokes a key, registers a client and exports the audit trail, taking screenshots (written
//! to docs/img/ with `UPDATE_SCREENSHOTS=1`). The other tests drive the same pages over plain
//! HTTP (reqwest) for what a browser would not do on its own: forged forms, replays, the
//! auditor's refused changes.
use crate::browser::field;
use crate::fido2::trust_file;
use crate::harness::{self, ALICE, Db, Server, Sessions};
use crate::identity::rpps;
use crate::webdriver::Driver;
use relais::domain::admin::AdminRole;
use relais::domain::audit_chain::{AuditQuery, Order};
use relais::domain::fido2::{KeyHolder, SecurityKeyRecord};
use relais::domain::management::NewAccount;
use relais::domain::ports::{IdentityStore as _, Signer as _, Storage};
use reqwest::StatusCode;
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};
use webauthn_authenticator_rs::softtoken::{AAGUID, SoftToken};

pub(crate) const ADMIN: (&str, &str) = ("root-admin", "admin-password-1");
pub(crate) const AUDITOR: (&str, &str) = ("inspecteur", "auditor-password-1");

pub(crate) async fn setup() -> (Server, SoftToken) {
    setup_on(Db::Sqlite, Sessions::Memory).await
}

pub(crate) async fn setup_on(db: Db, sessions: Sessions) -> (Server, SoftToken) {
    let (token, ca) = SoftToken::new(true).unwrap();
    let s = harness::start_with(
        db,
        sessions,
        &format!("[fido2]\nattestation_policy = \"{}\"\n", trust_file(&ca, AAGUID)),
    )
    .await;
    (s, token)
}

/// A local account with a role (or none) and a security key held by `token`; returns the
/// key's credential id.
pub(crate) async fn staff(s: &Server, token: &mut SoftToken, who: (&str, &str), role: Option<AdminRole>) -> Vec<u8> {
    let c = s.components();
    let m = c.management("test");
    if c.store.account_by_username(who.0).await.unwrap().is_none() {
        m.create_account(&c.config.passwords, NewAccount::new(who.0, "Camille", who.0), who.1)
            .await
            .unwrap();
    }
    if role.is_some() {
        m.set_admin_role(c.store.as_ref(), who.0, role).await.unwrap();
    }
    enrol(s, token, who.0).await
}

/// Registers a key of `token` for `username` through the FIDO2 port (attestation checked).
pub(crate) async fn enrol(s: &Server, token: &mut SoftToken, username: &str) -> Vec<u8> {
    let p = &s.components().provider;
    let account = s.components().store.account_by_username(username).await.unwrap().unwrap();
    let port = p.security_keys.as_ref().unwrap();
    let holder = KeyHolder {
        account_id: account.id,
        username: account.username.clone(),
        display_name: account.display_name.clone(),
    };
    let existing = p.key_store.security_keys(account.id).await.unwrap();
    let c = port.start_registration(&holder, &existing).unwrap();
    let options: CreationChallengeResponse = serde_json::from_value(c.options).unwrap();
    let answer = token.do_registration(Url::parse(&s.base).unwrap(), options).unwrap();
    let raw_id = relais::domain::crypto::b64url_decode(&answer.id).unwrap();
    let new = port.finish_registration(&serde_json::to_value(answer).unwrap(), &c.state).unwrap();
    p.key_store
        .insert_security_key(&SecurityKeyRecord {
            id: uuid::Uuid::new_v4(),
            account_id: account.id,
            credential_id: new.credential_id,
            credential: new.credential,
            aaguid: new.aaguid,
            name: format!("clé de {username}"),
            created_at: chrono::Utc::now(),
            last_used_at: None,
            revoked_at: None,
        })
        .await
        .unwrap();
    raw_id
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn data_attr(page: &str, name: &str) -> String {
    let start = page.find(&format!("{name}=\"")).unwrap_or_else(|| panic!("{name} in {page}")) + name.len() + 2;
    page[start..].split('"').next().unwrap().to_owned()
}

/// The password step; returns the response.
pub(crate) async fn password_step(http: &reqwest::Client, s: &Server, who: (&str, &str)) -> reqwest::Response {
    let page = page_text(http, s.url("/admin/login")).await;
    let csrf = field(&page, "csrf").expect("csrf");
    http.post(s.url("/admin/login"))
        .form(&[("csrf", csrf.as_str()), ("username", who.0), ("password", who.1)])
        .send()
        .await
        .unwrap()
}

/// Password, then the SoftToken key: returns the admin page's CSRF token.
pub(crate) async fn login(http: &reqwest::Client, s: &Server, token: &mut SoftToken, who: (&str, &str)) -> String {
    let r = password_step(http, s, who).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", r.text().await.unwrap());
    let page = page_text(http, s.url("/admin/login/key")).await;
    let (id, csrf) = (data_attr(&page, "data-pending-id"), data_attr(&page, "data-csrf"));
    let r = http
        .post(s.url("/admin/login/key/options"))
        .json(&json!({"pending_id": id, "csrf": csrf}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let options: RequestChallengeResponse = r.json().await.unwrap();
    let answer = token.do_authentication(Url::parse(&s.base).unwrap(), options).unwrap();
    let body = json!({"pending_id": id, "csrf": csrf, "credential": answer});
    let r = http.post(s.url("/admin/login/key/finish")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let j: Value = r.json().await.unwrap();
    assert_eq!(j["redirect"], "/admin");
    // The same answer again: the login step was consumed.
    let again = http.post(s.url("/admin/login/key/finish")).json(&body).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    let dash = http.get(s.url("/admin")).send().await.unwrap();
    assert_eq!(dash.status(), StatusCode::OK);
    let page = dash.text().await.unwrap();
    field(&page, "csrf").expect("csrf on admin pages")
}

/// The dashboard says which FIDO MDS3 blob admits the key models, until when it is current and
/// whether its signer's revocation was checked; without a blob, nothing is said.
#[tokio::test]
async fn the_dashboard_shows_the_fido_mds_blob_in_use() {
    let (mut token, ca) = SoftToken::new(true).unwrap();
    let policy = crate::fido2::mds_policy_admitting(&ca, 4711);
    let s = harness::start_with(
        Db::Sqlite,
        Sessions::Memory,
        &format!("[fido2]\nattestation_policy = \"{policy}\"\n"),
    )
    .await;
    staff(&s, &mut token, ADMIN, Some(AdminRole::Admin)).await;
    let http = client();
    login(&http, &s, &mut token, ADMIN).await;
    let page = page_text(&http, s.url("/admin")).await;
    let mds = page
        .split("id=\"fido-mds\"")
        .nth(1)
        .expect("the MDS section")
        .split("</dl>")
        .next()
        .unwrap();
    assert!(mds.contains("<dd>4711</dd>") && mds.contains("2099-01-01"), "{mds}");
    assert!(
        mds.contains("non vérifiée (pas de crl_files)") && !mds.contains("dépassée"),
        "{mds}"
    );
    s.stop().await;

    let (s, mut token) = setup().await;
    staff(&s, &mut token, ADMIN, Some(AdminRole::Admin)).await;
    let http = client();
    login(&http, &s, &mut token, ADMIN).await;
    assert!(!page_text(&http, s.url("/admin")).await.contains("fido-mds"));
    s.stop().await;
}

/// Audit events of `kind`, newest first, as JSON.
pub(crate) async fn events(s: &Server, kind: &str) -> Vec<Value> {
    s.audit_events(kind).await
}

#[tokio::test]
async fn admin_login_needs_the_role_the_password_and_a_security_key() {
    let (s, mut token) = setup().await;
    staff(&s, &mut token, ADMIN, Some(AdminRole::Admin)).await;
    let http = client();

    // No session: the login page.
    let r = http.get(s.url("/admin")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/admin/login");

    // A wrong password is refused like an unknown user.
    let r = password_step(&http, &s, (ADMIN.0, "wrong-password")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The password alone opens nothing: /admin still sends to the login.
    let r = password_step(&http, &s, ADMIN).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(http.get(s.url("/admin")).send().await.unwrap().status(), StatusCode::SEE_OTHER);

    // A non-admin with the right password and a key is refused (alice has no role).
    enrol(&s, &mut token, ALICE.0).await;
    let r = password_step(&client(), &s, ALICE).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let refused = events(&s, "admin_login").await;
    assert!(
        refused.iter().any(|e| e["reason"] == "not_admin" && e["username"] == "alice"),
        "{refused:?}"
    );

    // The full login; the session cookie is scoped to /admin and SameSite=Strict.
    let r = password_step(&http, &s, ADMIN).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let http = client();
    login(&http, &s, &mut token, ADMIN).await;
    let ok = events(&s, "admin_login").await;
    assert!(ok.iter().any(|e| e["success"] == true && e["username"] == ADMIN.0), "{ok:?}");

    // The SSO endpoints do not see the admin session: /authorize still asks for a login.
    let r = http
        .get(harness::authorize_url(&s, "web", harness::CALLBACK, ""))
        .send()
        .await
        .unwrap();
    assert!(r.headers()["location"].to_str().unwrap().starts_with("/login"));

    // The session is short: after the idle timeout it is gone.
    s.clock.advance(std::time::Duration::from_secs(901));
    assert_eq!(http.get(s.url("/admin")).send().await.unwrap().status(), StatusCode::SEE_OTHER);
    s.stop().await;
}

/// Guessing an admin's password at /admin is throttled by the same per-account counters as the
/// login page: locked after the limit even with the right password, audited, lifted in time.
#[tokio::test]
async fn admin_password_guessing_is_throttled_like_the_login_page() {
    let (token, ca) = SoftToken::new(true).unwrap();
    let mut token = token;
    let s = harness::start_with(
        Db::Sqlite,
        Sessions::Memory,
        &format!(
            "[fido2]\nattestation_policy = \"{}\"\n[login]\nmax_failures_per_account = 3\nlockout_secs = 60\n",
            trust_file(&ca, AAGUID)
        ),
    )
    .await;
    let who = ("camille", "camille-password-1");
    staff(&s, &mut token, who, Some(AdminRole::Admin)).await;
    let http = client();
    for _ in 0..3 {
        let r = password_step(&http, &s, (who.0, "not-the-password")).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = password_step(&http, &s, who).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "locked even with the right password");
    assert!(r.text().await.unwrap().contains("Trop de tentatives échouées"));
    let e = events(&s, "admin_login").await;
    assert_eq!(e[0]["reason"], "throttled_account", "{e:?}");
    assert_eq!(e.iter().filter(|e| e["reason"] == "bad_credentials").count(), 3);
    // The lockout is the account's, wherever the next attempt comes from.
    let b = crate::browser::Browser::new();
    let url = harness::authorize_url(&s, "web", harness::CALLBACK, "");
    let crate::browser::Step::LoginForm(form) = b.start(&url).await else {
        panic!("login form")
    };
    assert!(
        !matches!(
            b.submit_login(&s.base, &form, who.0, who.1).await,
            crate::browser::Step::Callback(_)
        ),
        "the login page is locked too"
    );
    s.clock.advance(std::time::Duration::from_secs(61));
    let r = password_step(&http, &s, who).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "the lockout lifts");
    s.stop().await;
}

#[tokio::test]
async fn a_password_without_a_key_is_not_enough() {
    let (s, _token) = setup().await;
    let c = s.components();
    c.management("test")
        .create_account(
            &c.config.passwords,
            NewAccount::new("keyless", "Kim", "Keyless"),
            "keyless-password-1",
        )
        .await
        .unwrap();
    c.management("test")
        .set_admin_role(c.store.as_ref(), "keyless", Some(AdminRole::Admin))
        .await
        .unwrap();
    let r = password_step(&client(), &s, ("keyless", "keyless-password-1")).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("Aucune clé de sécurité"));
    let e = events(&s, "admin_login").await;
    assert_eq!(e[0]["reason"], "no_security_key");
    s.stop().await;
}

#[tokio::test]
async fn changes_need_the_csrf_token_and_are_audited_with_the_admin_name_on_postgres_and_redis() {
    let (s, mut token) = setup_on(Db::Postgres, Sessions::Redis).await;
    staff(&s, &mut token, ADMIN, Some(AdminRole::Admin)).await;
    let http = client();
    let csrf = login(&http, &s, &mut token, ADMIN).await;
    let idnat = format!("8{}", rpps("1000000042"));

    // A forged form: the admin's cookie rides along, the token does not.
    let r = http
        .post(s.url("/admin/people/alice/link"))
        .form(&[("idnat", idnat.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .post(s.url("/admin/people/alice/link"))
        .form(&[("idnat", idnat.as_str()), ("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let refused = events(&s, "admin_refused").await;
    assert_eq!(refused.len(), 2);
    assert_eq!(refused[0]["reason"], "csrf");
    assert_eq!(refused[0]["actor"], "admin:root-admin");
    assert!(s.components().management("t").show("alice").await.unwrap().1.is_empty());

    // With the token (header, as htmx sends it): linked, and audited naming the admin.
    let r = http
        .post(s.url("/admin/people/alice/link"))
        .header("X-CSRF-Token", &csrf)
        .form(&[("idnat", idnat.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let ids = s.components().management("t").show("alice").await.unwrap().1;
    assert_eq!(ids[0].idnat.to_string(), idnat);
    let linked = events(&s, "identity_linked").await;
    assert_eq!(linked[0]["actor"], "admin:root-admin");

    // A bad idNat comes back on the page as an error; nothing is written.
    let r = http
        .post(s.url("/admin/people/alice/link"))
        .form(&[("idnat", "81234"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("class=\"error\""));

    // Enrolment code: shown once on the page, audited.
    let r = http
        .post(s.url("/admin/people/alice/enrolment-code"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    assert!(page.contains("id=\"enrolment-code\""), "{page}");
    assert_eq!(events(&s, "fido2_enrolment_code_issued").await[0]["actor"], "admin:root-admin");

    // Mapping import: a dry run with a bad line reports the line and writes nothing.
    let other = format!("8{}", rpps("1000000043"));
    let file = format!("alice;{other}\nnobody;8{}\n", rpps("1000000044"));
    let r = http
        .post(s.url("/admin/mappings/import"))
        .form(&[("csrf", csrf.as_str()), ("file", file.as_str()), ("dry_run", "true")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = r.text().await.unwrap();
    assert!(page.contains("line 2"), "{page}");
    assert_eq!(s.components().management("t").show("alice").await.unwrap().1.len(), 1);

    // Clients: a registration shows the secret once; a rotation replaces it.
    let r = http
        .post(s.url("/admin/clients"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("kind", "local"),
            ("client_id", "pharma"),
            ("name", "Pharmacie"),
            ("auth_method", "client_secret_basic"),
            ("redirect_uris", "https://pharma.chu.example/cb"),
            ("min_acr", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let page = r.text().await.unwrap();
    let secret = page
        .split("id=\"client-secret\">")
        .nth(1)
        .unwrap()
        .split('<')
        .next()
        .unwrap()
        .to_owned();
    assert!(secret.len() >= 40);
    let r = http
        .post(s.url("/admin/clients/pharma/rotate"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    let page = r.text().await.unwrap();
    let rotated = page.split("id=\"client-secret\">").nth(1).unwrap().split('<').next().unwrap();
    assert_ne!(rotated, secret);
    assert_eq!(events(&s, "client_secret_rotated").await[0]["actor"], "admin:root-admin");
    // The clients list never shows a secret again.
    let list = page_text(&http, s.url("/admin/clients")).await;
    assert!(!list.contains(rotated) && !list.contains(&secret));

    // Logout ends the admin session.
    let r = http
        .post(s.url("/admin/logout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(http.get(s.url("/admin")).send().await.unwrap().status(), StatusCode::SEE_OTHER);
    s.stop().await;
}

#[tokio::test]
async fn the_auditor_reads_the_audit_trail_and_mappings_and_changes_nothing() {
    let (s, mut token) = setup().await;
    staff(&s, &mut token, AUDITOR, Some(AdminRole::Auditor)).await;
    let http = client();
    let csrf = login(&http, &s, &mut token, AUDITOR).await;

    let page = http.get(s.url("/admin/people/alice")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(!page.contains("/link\""), "no change forms for an auditor");
    assert_eq!(http.get(s.url("/admin/audit")).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        http.get(s.url("/admin/settings")).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    // Even with a valid token, a change is refused and audited.
    let idnat = format!("8{}", rpps("1000000042"));
    let r = http
        .post(s.url("/admin/people/alice/link"))
        .form(&[("idnat", idnat.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(s.components().management("t").show("alice").await.unwrap().1.is_empty());
    let refused = events(&s, "admin_refused").await;
    assert_eq!(refused[0]["reason"], "read_only_role");
    assert_eq!(refused[0]["actor"], format!("admin:{}", AUDITOR.0));

    // Verifying the chain changes nothing: allowed.
    let r = http
        .post(s.url("/admin/audit/verify"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().contains("Chaîne intègre"));

    // Export: JSON lines of the filtered records, and the export itself is audited.
    let r = http.get(s.url("/admin/audit/export?event_type=admin_login")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = r.text().await.unwrap();
    let (records, seal) = sealed(&body);
    assert!(!records.is_empty());
    assert!(records.iter().all(|l| l["event_type"] == "admin_login"), "{body}");
    assert_eq!(seal["filter"], serde_json::json!({"event_type": "admin_login"}));
    assert_eq!(seal["records"], records.len());
    assert_eq!(events(&s, "audit_exported").await.len(), 1);

    // The person filter takes an idNat, a bare RPPS number or a login (issue #6: "person
    // (local or national id)").
    let rpps_alice = rpps("1000000043");
    let idnat_alice = format!("8{rpps_alice}");
    s.components().management("test").link("alice", &idnat_alice, true).await.unwrap();
    let alice_id = s.storage().account_by_username("alice").await.unwrap().unwrap().id.to_string();
    for person in [idnat_alice.as_str(), rpps_alice.as_str(), "alice", alice_id.as_str()] {
        let body = page_text(&http, s.url(&format!("/admin/audit/export?account_id={person}"))).await;
        let (lines, seal) = sealed(&body);
        assert!(lines.iter().any(|l| l["event_type"] == "identity_linked"), "{person}: {body}");
        assert!(lines.iter().all(|l| l["account_id"] == alice_id.as_str()), "{person}: {body}");
        assert_eq!(seal["filter"], serde_json::json!({"person": person, "account_id": alice_id}));
        let page = http.get(s.url(&format!("/admin/audit?account_id={person}"))).send().await.unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        assert!(page.text().await.unwrap().contains("identity_linked"));
    }
    // Days are stated as the bounds they became; a day that does not parse filters nothing.
    let body = page_text(
        &http,
        s.url("/admin/audit/export?since=2026-01-01&until=2099-12-31&client_id=&outcome=success"),
    )
    .await;
    assert_eq!(
        sealed(&body).1["filter"],
        serde_json::json!({"outcome": "success", "since": "2026-01-01T00:00:00Z", "before": "2100-01-01T00:00:00Z"})
    );
    let body = page_text(&http, s.url("/admin/audit/export?since=yesterday")).await;
    assert_eq!(sealed(&body).1["filter"], serde_json::json!({}));
    let nobody = http.get(s.url("/admin/audit/export?account_id=nobody-here")).send().await.unwrap();
    let nobody = nobody.text().await.unwrap();
    let (lines, seal) = sealed(&nobody);
    assert!(lines.is_empty(), "a person who does not exist matches nothing");
    assert_eq!(seal["records"], 0, "and Relais signs that nothing matched");
    let empty = relais::domain::audit_export_check::check_export(nobody.lines(), &relais::adapters::keys::verify_es256_with_jwk);
    assert_eq!((&empty.problem, empty.records), (&None, 0));
    assert_eq!(empty.signed_by(&s.components().keys.jwks()), Ok(()));

    // The auditor checks the file offline, as with `relais audit export`'s. Alice's records
    // are apart: the exports above were recorded between them.
    let m = s.components().management("test");
    assert!(m.unlink("alice", &idnat_alice).await.unwrap());
    m.link("alice", &idnat_alice, true).await.unwrap();
    let body = page_text(&http, s.url("/admin/audit/export?account_id=alice")).await;
    a_filtered_export_is_checked_offline(&s, &body);

    // A withdrawn role ends the session at the next request.
    let c = s.components();
    c.management("test")
        .set_admin_role(c.store.as_ref(), AUDITOR.0, None)
        .await
        .unwrap();
    assert_eq!(
        http.get(s.url("/admin/audit")).send().await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    s.stop().await;
}

/// The review queue on the import page: homonyms left by an Annuaire import are decided by an
/// admin (link one of the candidates, or dismiss), never by the import; a link outside the
/// candidates and a forged form are refused; each decision is audited with the admin's name.
#[tokio::test]
async fn the_admin_decides_the_identity_review_queue() {
    use crate::identity::{FINESS, line, person, with_lines};
    let (s, mut token) = setup().await;
    staff(&s, &mut token, ADMIN, Some(AdminRole::Admin)).await;
    let lucie = person(&s, "llambert", "Lucie", "Lambert").await;
    person(&s, "tgirard", "Thomas", "Girard").await;
    person(&s, "tgirard2", "Thomas", "Girard").await;
    let homonym = format!("8{}", rpps("9990000001"));
    let text = with_lines(&[line(&homonym[1..], "LAMBERT", "Lucie", "60", FINESS)]);
    let plan = s
        .components()
        .management("test")
        .import_annuaire(text.as_bytes(), &[FINESS.to_string()], false)
        .await
        .unwrap();
    assert_eq!(plan.review.len(), 3, "{plan}");
    let http = client();
    let csrf = login(&http, &s, &mut token, ADMIN).await;

    let page = page_text(&http, s.url("/admin/mappings/import")).await;
    let queue = s.components().store.review_items().await.unwrap();
    let item = queue.iter().find(|r| r.username == "llambert").unwrap();
    let id = item.id.unwrap();
    assert_eq!(item.candidates.len(), 2, "two professionals named Lucie Lambert");
    assert!(page.contains(&format!("id=\"review-{id}\"")), "{page}");
    assert!(page.contains(&format!("value=\"{homonym}\"")), "the candidates are offered: {page}");
    // Why each waits, typed in the queue and said in the page's language (French by default).
    use relais::domain::identity_import::ReviewReason;
    assert_eq!(item.reason, ReviewReason::SeveralProfessionalsWithThisName);
    assert!(
        page.contains("plusieurs professionnels de l") && page.contains("plusieurs comptes locaux portent ce nom"),
        "{page}"
    );
    assert!(!page.contains("several local people"), "{page}");
    let english = page_text(&http, s.url("/admin/mappings/import?lang=en")).await;
    assert!(english.contains("several local people have this name"), "{english}");
    let decide = |form: Vec<(&'static str, String)>| {
        let http = http.clone();
        let url = s.url(&format!("/admin/mappings/review/{id}"));
        async move { http.post(url).form(&form).send().await.unwrap() }
    };

    let forged = decide(vec![
        ("decision", "link".into()),
        ("idnat", homonym.clone()),
        ("csrf", "forged".into()),
    ])
    .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let outsider = format!("8{}", rpps("9990000077"));
    let r = decide(vec![("decision", "link".into()), ("idnat", outsider), ("csrf", csrf.clone())]).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("is not a candidate"));
    assert!(s.components().store.national_ids(lucie).await.unwrap().is_empty(), "nothing linked");

    let r = decide(vec![
        ("decision", "link".into()),
        ("idnat", homonym.clone()),
        ("verified", "true".into()),
        ("csrf", csrf.clone()),
    ])
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let ids = s.components().store.national_ids(lucie).await.unwrap();
    assert_eq!((ids.len(), ids[0].idnat.as_str(), ids[0].verified), (1, homonym.as_str(), true));
    let resolved = events(&s, "identity_review_resolved").await;
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        (&resolved[0]["resolution"], &resolved[0]["actor"], &resolved[0]["idnat"]),
        (
            &serde_json::json!("linked"),
            &serde_json::json!("admin:root-admin"),
            &serde_json::json!(homonym)
        )
    );
    let page = page_text(&http, s.url("/admin/mappings/import?decided=linked")).await;
    assert!(
        page.contains("review-notice") && !page.contains(&format!("id=\"review-{id}\"")),
        "{page}"
    );
    // Decided once: the same item again is refused, the mapping stays.
    let again = decide(vec![("decision", "dismiss".into()), ("csrf", csrf.clone())]).await;
    assert_eq!(again.status(), StatusCode::BAD_REQUEST);

    // Dismissing the others empties the queue.
    for other in s.components().store.review_items().await.unwrap() {
        let r = http
            .post(s.url(&format!("/admin/mappings/review/{}", other.id.unwrap())))
            .form(&[("decision", "dismiss"), ("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
    }
    assert!(s.components().store.review_items().await.unwrap().is_empty());
    assert_eq!(events(&s, "identity_review_resolved").await.len(), 3);
    let page = page_text(&http, s.url("/admin/mappings/import")).await;
    assert!(page.contains("review-empty"), "{page}");
    s.stop().await;
}

/// The body of a GET as the admin's browser gets it.
async fn page_text(http: &reqwest::Client, url: String) -> String {
    http.get(url).send().await.unwrap().text().await.unwrap()
}

/// The records of an admin export and its seal (the last line, which must be one).
fn sealed(body: &str) -> (Vec<Value>, Value) {
    let mut lines: Vec<Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = lines.pop().unwrap_or_else(|| panic!("an empty export: {body}"));
    assert!(last["selection"].is_object(), "the export ends with its seal: {body}");
    assert!(lines.iter().all(|l| l["seq"].is_i64()), "{body}");
    (lines, last["selection"].clone())
}

/// A filtered export (records not contiguous) passes `verify-export` by its seal; a record
/// altered and rehashed, removed, or moved, a seal whose filter was changed, or a seal signed by
/// another key are found, in the library check and by the command.
fn a_filtered_export_is_checked_offline(s: &Server, body: &str) {
    use relais::adapters::keys::verify_es256_with_jwk as verify;
    use relais::domain::audit_export_check::{ExportProblem, SignatureProblem, check_export};
    let lines: Vec<&str> = body.lines().collect();
    assert!(lines.len() >= 3, "two records or more: {body}");
    let relais_jwks = s.components().keys.jwks();
    let ok = check_export(&lines, &verify);
    assert_eq!(ok.problem, None, "{body}");
    assert_eq!(ok.records as usize, lines.len() - 1);
    assert!(ok.selection.is_some(), "sealed");
    assert_eq!(ok.signed_by(&relais_jwks), Ok(()));
    let seqs: Vec<i64> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["seq"].as_i64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).any(|w| w[1] != w[0] + 1),
        "not contiguous, else this tests nothing: {seqs:?}"
    );

    let with = |i: usize, l: &str| -> Vec<String> {
        let mut out: Vec<String> = lines.iter().map(|x| x.to_string()).collect();
        out[i] = l.to_owned();
        out
    };
    let mismatch = |v: &[String]| matches!(check_export(v, &verify).problem, Some(ExportProblem::SelectionMismatch { .. }));
    let rehashed = crate::audit::rehashed(lines[0], |r| r.source_ip = Some("198.51.100.99".into()));
    assert!(mismatch(&with(0, &rehashed.export_json().to_string())), "a record rehashed");
    let mut removed: Vec<String> = lines.iter().map(|x| x.to_string()).collect();
    removed.remove(1);
    assert!(mismatch(&removed), "a record removed");
    let mut moved: Vec<String> = lines.iter().map(|x| x.to_string()).collect();
    moved.swap(0, 1);
    assert!(mismatch(&moved), "two records swapped");
    let v: Value = serde_json::from_str(lines[lines.len() - 1]).unwrap();
    let invalid = |edit: &dyn Fn(&mut Value)| {
        let mut e = v.clone();
        edit(&mut e);
        matches!(
            check_export(with(lines.len() - 1, &e.to_string()), &verify).problem,
            Some(ExportProblem::SelectionInvalid { .. })
        )
    };
    assert!(invalid(
        &|e| e["selection"]["filter"]["account_id"] = serde_json::json!("someone-else")
    ));
    assert!(invalid(&|e| e["selection"]["at"] = serde_json::json!("2099-01-01T00:00:00.000000Z")));
    // A checkpoint line is not covered by the digest: a sealed file may not carry one.
    let stray = serde_json::json!({"checkpoint": {"seq": 1}}).to_string();
    let mut with_checkpoint: Vec<String> = lines.iter().map(|x| x.to_string()).collect();
    with_checkpoint.insert(1, stray);
    assert!(check_export(&with_checkpoint, &verify).problem.is_some());
    let cut = &lines[..lines.len() - 1];
    assert!(
        matches!(check_export(cut, &verify).problem, Some(ExportProblem::Gap { .. })),
        "without its seal, a filtered export is a chain with gaps"
    );
    let mut after = lines.clone();
    after.push(lines[0]);
    assert!(matches!(
        check_export(&after, &verify).problem,
        Some(ExportProblem::SelectionMisplaced { .. })
    ));
    // Someone who holds another key seals what they like: consistent in itself, not Relais'.
    let (pkcs8, jwk) = crate::harness::es256_client_key();
    let kid = jwk["kid"].as_str().unwrap();
    let seal = relais::domain::audit_selection::SelectionSeal::from_export(&v["selection"]).unwrap();
    let claims = serde_json::json!({"filter": seal.filter, "records": seal.records, "digest": seal.digest, "at": seal.at.timestamp()});
    let forged = relais::domain::audit_selection::SelectionSeal {
        kid: kid.into(),
        jwk: jwk.clone(),
        signature: crate::harness::sign_jws(&pkcs8, kid, relais::domain::audit_selection::SELECTION_TYP, &claims),
        ..seal
    };
    let forged = with(lines.len() - 1, &forged.export_json().to_string());
    let report = check_export(&forged, &verify);
    assert_eq!(report.problem, None, "consistent in itself");
    assert!(matches!(report.signed_by(&relais_jwks), Err(SignatureProblem::UnknownKey { kid: k, .. }) if k == kid));

    // The command, as the auditor runs it.
    let dir = std::env::temp_dir().join(crate::harness::unique("relais-selection"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, text: String| {
        let f = dir.join(name);
        std::fs::write(&f, text).unwrap();
        f
    };
    let jwks = file("jwks.json", relais_jwks.to_string());
    let run = |text: String| {
        let f = file("export.jsonl", text);
        let r = std::process::Command::new(crate::process::relais_bin())
            .args(["audit", "verify-export"])
            .arg(&f)
            .arg("--jwks")
            .arg(&jwks)
            .env_remove("RELAIS_CONFIG")
            .output()
            .unwrap();
        (r.status.code(), String::from_utf8_lossy(&r.stdout).into_owned())
    };
    let (code, said) = run(body.to_owned());
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains("a filtered export") && said.contains("the signing key is in the given JWKS"),
        "{said}"
    );
    let (code, said) = run(removed.join("\n"));
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("does not match the records of the file"), "{said}");
    let (code, said) = run(forged.join("\n"));
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("NOT SIGNED by a trusted key"), "{said}");
    std::fs::remove_dir_all(dir).ok();
}

/// The PKCS#8 private key of the SoftToken credential `credential_id` (SoftToken keeps SEC1).
fn softtoken_key(token: &SoftToken, credential_id: &[u8]) -> Vec<u8> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
    let cbor = token.to_cbor().unwrap();
    let v: serde_cbor_2::Value = serde_cbor_2::from_slice(&cbor).unwrap();
    let bytes = |v: &serde_cbor_2::Value| -> Vec<u8> {
        match v {
            serde_cbor_2::Value::Bytes(b) => b.clone(),
            serde_cbor_2::Value::Array(a) => a
                .iter()
                .map(|x| match x {
                    serde_cbor_2::Value::Integer(i) => *i as u8,
                    other => panic!("{other:?}"),
                })
                .collect(),
            other => panic!("{other:?}"),
        }
    };
    let serde_cbor_2::Value::Map(top) = v else { panic!("token") };
    let tokens = top
        .iter()
        .find(|(k, _)| matches!(k, serde_cbor_2::Value::Text(t) if t == "tokens"))
        .map(|(_, v)| v)
        .unwrap();
    let serde_cbor_2::Value::Map(tokens) = tokens else {
        panic!("tokens")
    };
    let sec1 = tokens
        .iter()
        .find(|(k, _)| bytes(k) == credential_id)
        .map(|(_, v)| bytes(v))
        .expect("the credential in the SoftToken");
    let pair = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, &sec1).unwrap();
    pair.to_pkcs8v1().unwrap().as_ref().to_vec()
}

fn img(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/img").join(name)
}

#[tokio::test]
async fn browser_admin_logs_in_with_a_key_edits_a_mapping_revokes_a_key_registers_a_client_and_exports_audit() {
    let (s, mut token) = setup().await;
    let credential = staff(&s, &mut token, ADMIN, Some(AdminRole::Admin)).await;
    // Alice has a key the admin will revoke (from the same trusted token).
    enrol(&s, &mut token, ALICE.0).await;

    // The admin's key moves into Chromium's virtual authenticator: from now on the browser
    // signs the assertions, over CTAP2. The SoftToken registered it with transport
    // `internal`, so the virtual authenticator is attached that way.
    let d = Driver::start().await;
    let authenticator = d.add_authenticator("internal").await;
    d.add_credential(&authenticator, &credential, &softtoken_key(&token, &credential), "localhost", 1000)
        .await;

    d.goto(&s.url("/admin")).await;
    d.wait_url("/admin/login").await;
    d.screenshot(&img("admin-login.png")).await;
    d.type_into("#username", ADMIN.0).await;
    d.type_into("#password", ADMIN.1).await;
    d.click("#login-submit").await;
    d.wait_url("/admin/login/key").await;
    d.click("#key-use").await;
    d.wait_url("/admin").await;
    assert!(d.text("h1").await.contains("Tableau de bord"));
    d.screenshot(&img("admin-dashboard.png")).await;

    // Find a person.
    d.goto(&s.url("/admin/people")).await;
    d.type_into("#q", "alice").await;
    d.click("#search-submit").await;
    d.find("a[href='/admin/people/alice']").await;
    d.screenshot(&img("admin-people.png")).await;
    d.click("a[href='/admin/people/alice']").await;
    d.wait_url("/admin/people/alice").await;

    // Edit the mapping.
    let idnat = format!("8{}", rpps("1000000042"));
    d.type_into("#idnat", &idnat).await;
    d.click("#link-submit").await;
    d.wait_url("?done=1").await;
    assert!(d.page_source().await.contains(&idnat));
    let ids = s.components().management("t").show("alice").await.unwrap().1;
    assert_eq!(ids[0].idnat.to_string(), idnat);

    // Revoke alice's key.
    d.click("#keys button.danger").await;
    d.wait_url("?done=1").await;
    d.screenshot(&img("admin-person.png")).await;
    let keys = s.components().management("t").security_keys_of("alice").await.unwrap();
    assert!(keys[0].revoked_at.is_some());
    assert_eq!(events(&s, "fido2_key_revoked").await[0]["actor"], "admin:root-admin");

    // Register a client: the secret is on the page once.
    d.goto(&s.url("/admin/clients")).await;
    d.type_into("#client_id", "radiologie").await;
    d.type_into("#name", "Radiologie").await;
    d.type_into("#redirect_uris", "https://radio.chu.example/cb").await;
    d.click("#register-local").await;
    let secret = d.text("#client-secret").await;
    assert!(secret.len() >= 40, "{secret}");
    d.screenshot(&img("admin-clients.png")).await;
    assert!(
        s.storage()
            .client(&relais::protocol::ClientId::parse("radiologie").unwrap())
            .await
            .unwrap()
            .is_some()
    );

    // Audit: the page, then the export as the browser downloads it.
    d.goto(&s.url("/admin/audit")).await;
    d.find("#export").await;
    d.screenshot(&img("admin-audit.png")).await;
    let exported = d
        .run_async("const done = arguments[0]; fetch('/admin/audit/export').then(r => r.text()).then(done);")
        .await;
    let lines = exported.as_str().unwrap().lines().count();
    assert!(lines > 5, "{exported}");
    assert_eq!(events(&s, "audit_exported").await.len(), 1);

    // Mapping import, dry run.
    d.goto(&s.url("/admin/mappings/import")).await;
    d.type_into("#file", &format!("alice;8{}\nnobody;8{}", rpps("1000000043"), rpps("1000000044")))
        .await;
    d.click("#import-submit").await;
    d.find("#import-result").await;
    d.screenshot(&img("admin-import.png")).await;

    // English on request.
    d.goto(&s.url("/admin?lang=en")).await;
    assert!(d.text("h1").await.contains("Dashboard"));
    d.quit().await;
    s.stop().await;
}

#[tokio::test]
async fn browser_a_non_admin_is_refused() {
    let (s, mut token) = setup().await;
    enrol(&s, &mut token, ALICE.0).await;
    let d = Driver::start().await;
    d.goto(&s.url("/admin/login")).await;
    d.type_into("#username", ALICE.0).await;
    d.type_into("#password", ALICE.1).await;
    d.click("#login-submit").await;
    let error = d.text(".error").await;
    assert!(error.contains("sans rôle d'administration"), "{error}");
    d.goto(&s.url("/admin/people")).await;
    d.wait_url("/admin/login").await;
    d.quit().await;
    s.stop().await;
}

/// The login pages' key step in a real browser (`/static/webauthn.js` with
/// `webauthn-common.js`): an application asks for a key (`acr_values=loa3`), the password
/// page leads to the key page, Chromium's virtual authenticator signs, and the browser lands
/// on the application's callback with a code.
#[tokio::test]
async fn browser_staff_log_in_to_an_application_with_their_key() {
    let (s, mut token) = setup().await;
    let credential = enrol(&s, &mut token, ALICE.0).await;
    let d = Driver::start().await;
    let authenticator = d.add_authenticator("internal").await;
    d.add_credential(&authenticator, &credential, &softtoken_key(&token, &credential), "localhost", 1000)
        .await;
    d.goto(&harness::authorize_url(&s, "web", harness::CALLBACK, "&acr_values=loa3"))
        .await;
    d.type_into("#username", ALICE.0).await;
    d.type_into("#password", ALICE.1).await;
    d.click("form button[type=submit]").await;
    // The key page (`/login/webauthn?id=…`): its button is there once the page has loaded.
    d.find("#key-use").await;
    assert!(d.url().await.contains("/login/webauthn"), "{}", d.url().await);
    d.click("#key-use").await;
    let started = std::time::Instant::now();
    while !d.url().await.starts_with(harness::CALLBACK) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the key step did not reach the callback: {}",
            d.page_source().await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(d.url().await.contains("code="), "{}", d.url().await);
    let used = events(&s, "fido2_authentication").await;
    assert_eq!(used.len(), 1, "{used:?}");
    d.quit().await;
    s.stop().await;
}

/// The queries the admin bench made fast (docs/performance.md, issue #7) still answer the
/// same: the people search in the database (ASCII, case-insensitive, `%`/`_` literal), with
/// accents narrowed by the database and decided in Rust, the dashboard's aggregate counts, a
/// closed day range read through the (at, seq) index and a person + type filter (SQLite: the
/// person's index first).
#[tokio::test]
async fn people_search_day_ranges_and_dashboard_counts_on_sqlite_and_postgres() {
    for db in [Db::Sqlite, Db::Postgres] {
        let (s, mut token) = setup_on(db, Sessions::Memory).await;
        staff(&s, &mut token, ADMIN, Some(AdminRole::Admin)).await;
        let c = s.components();
        let new = NewAccount {
            email: Some("H.Dupont@CHU-Exemple.fr".into()),
            ..NewAccount::new("hdupont", "Hélène", "DUPONT")
        };
        c.management("test")
            .create_account(&c.config.passwords, new, "password-123456")
            .await
            .unwrap();
        let http = client();
        login(&http, &s, &mut token, ADMIN).await;
        let search = |q: &str| {
            let url = format!(
                "{}?q={}",
                s.url("/admin/people/results"),
                url::form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
            );
            let http = http.clone();
            async move { http.get(url).send().await.unwrap().text().await.unwrap() }
        };
        // With accents: narrowed in the database by the longest ASCII part ("ne", " dupont"),
        // decided in Rust; "é" has no ASCII part and reads every account.
        for q in ["dupont", "DuPoNt", "HÉLÈNE", "chu-exemple", "hdup", "hélène", "lène dupont", "é"] {
            assert!(search(q).await.contains("hdupont"), "{db:?}: {q}");
        }
        for q in ["%", "_", "h%t", "zzz", "hélèn dupont", "hélène martin", "ü"] {
            assert!(!search(q).await.contains("hdupont"), "{db:?}: {q}");
        }

        // Dashboard counts: the admin's login of today, counted by the aggregate.
        let all = s.storage().audit_records(1000).await.unwrap();
        let midnight = all[0].at.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
        let counts = s.storage().audit_counts(midnight).await.unwrap();
        let total: u64 = counts.iter().map(|c| c.count).sum();
        assert_eq!(total, all.iter().filter(|r| r.at >= midnight).count() as u64, "{db:?}: {counts:?}");
        assert!(
            counts
                .iter()
                .any(|c| c.event_type == "admin_login" && c.outcome == "success" && c.count >= 1)
        );
        let r = http.get(s.url("/admin")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);

        // A closed day range, and the day before (empty).
        let day = |since, until| AuditQuery {
            since: Some(since),
            until: Some(until),
            order: Order::Descending,
            limit: 3,
            ..Default::default()
        };
        let one_day = chrono::Duration::days(1);
        let mut seqs = Vec::new();
        let mut q = day(midnight, midnight + one_day);
        loop {
            let page = s.storage().audit_query(&q).await.unwrap();
            seqs.extend(page.records.iter().map(|r| r.seq));
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
        let chained = s
            .storage()
            .audit_query(&AuditQuery {
                limit: 1000,
                order: Order::Descending,
                ..Default::default()
            })
            .await
            .unwrap()
            .records;
        let expected: Vec<i64> = chained
            .iter()
            .filter(|r| r.at >= midnight && r.at < midnight + one_day)
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, expected, "{db:?}");
        let before = s.storage().audit_query(&day(midnight - one_day, midnight)).await.unwrap();
        assert!(before.records.is_empty(), "{db:?}");
        let r = http
            .get(s.url(&format!(
                "/admin/audit?since={}&until={}",
                midnight.format("%Y-%m-%d"),
                midnight.format("%Y-%m-%d")
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);

        // A person and an event type together.
        let admin = c.store.account_by_username(ADMIN.0).await.unwrap().unwrap().id.to_string();
        let page = s
            .storage()
            .audit_query(&AuditQuery {
                account_id: Some(admin.clone()),
                event_type: Some("admin_login".into()),
                since: Some(midnight - one_day),
                limit: 50,
                order: Order::Descending,
                ..Default::default()
            })
            .await
            .unwrap();
        let expected: Vec<i64> = chained
            .iter()
            .filter(|r| r.account_id.as_deref() == Some(admin.as_str()) && r.event_type == "admin_login")
            .map(|r| r.seq)
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(page.records.iter().map(|r| r.seq).collect::<Vec<_>>(), expected, "{db:?}");
    }
}
