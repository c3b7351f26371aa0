//! Directory login (issue #3) end to end: a private slapd per test, Relais configured with
//! `[[directories]]`, the browser through the real login form, the RP through the token endpoint.
use crate::browser::{Browser, Step};
use crate::harness::{self, CALLBACK, Db, Server, Sessions};
use crate::rp;
use crate::slapd::{self, Slapd};
use openidconnect::{OAuth2TokenResponse, TokenResponse};
use relais::domain::management::NewAccount;
use reqwest::StatusCode;
use std::time::Duration;

const SERVICE: &str = "bind_dn = \"cn=relais,ou=services,dc=chu,dc=example\"\nbind_password = \"relais-service-pw\"\n";

/// A `[[directories]]` entry on the fixture (OpenLDAP preset, people subtree).
pub(crate) fn openldap(urls: &[String], ca: &std::path::Path, extra: &str) -> String {
    let urls = urls.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ");
    format!(
        "[[directories]]\nname = \"chu\"\npreset = \"openldap\"\nurls = [{urls}]\nca_file = \"{}\"\n{SERVICE}base_dn = \"ou=people,dc=chu,dc=example\"\nconnect_timeout_ms = 1000\noperation_timeout_ms = 2000\n{extra}",
        ca.display()
    )
}

async fn start(config: &str) -> Server {
    harness::start_with(Db::Sqlite, Sessions::Memory, config).await
}

/// A full login as `user`; the ID token's claims.
async fn login_claims(s: &Server, user: &str, pw: &str) -> serde_json::Value {
    let web = rp::client(rp::metadata(&s.base).await, "web", Some(&s.web_secret), CALLBACK);
    let req = rp::auth_request(&web, &["profile", "email"]);
    let cb = Browser::new().login(&s.base, &req.url, user, pw).await;
    let tokens = web
        .exchange_code(rp::code(&cb["code"]))
        .unwrap()
        .set_pkce_verifier(req.verifier)
        .request_async(&rp::http)
        .await
        .expect("code exchange");
    rp::payload(&tokens.id_token().expect("id_token").to_string())
}

/// Submits the login form once; what the browser gets back.
async fn attempt(s: &Server, user: &str, pw: &str) -> Step {
    let web = rp::client(rp::metadata(&s.base).await, "web", Some(&s.web_secret), CALLBACK);
    let req = rp::auth_request(&web, &["profile"]);
    let b = Browser::new();
    let Step::LoginForm(login) = b.start(&req.url).await else {
        panic!("no login form")
    };
    b.submit_login(&s.base, &login, user, pw).await
}

fn page(step: Step) -> (StatusCode, String) {
    match step {
        Step::Page(st, body) => (st, body),
        other => panic!("expected a page, got {other:?}"),
    }
}

#[tokio::test]
async fn ldap_good_password_gives_directory_claims_and_a_stable_sub() {
    let d = Slapd::start();
    let s = start(&openldap(&[d.ldaps()], &d.ca_file(), "")).await;
    let c = login_claims(&s, "jdupont", "jdupont-pw-1").await;
    assert_eq!(c["preferred_username"], "jdupont");
    assert_eq!(c["name"], "Dr Jean Dupont");
    assert_eq!(c["given_name"], "Jean");
    assert_eq!(c["family_name"], "Dupont");
    assert_eq!(c["email"], "jean.dupont@chu.example");
    // Typed differently, same person, same sub.
    let again = login_claims(&s, "JDupont ", "jdupont-pw-1").await;
    assert_eq!(again["sub"], c["sub"]);
    // Accents survive the trip; a uid made of filter metacharacters logs in as itself.
    let h = login_claims(&s, "hlefevre", "hlefevre-pw-1").await;
    assert_eq!(h["name"], "Hélène Lefèvre");
    assert_eq!(h["given_name"], "Hélène");
    let o = login_claims(&s, "o*brien(ext)", "obrien-pw-1").await;
    assert_eq!(o["preferred_username"], "o*brien(ext)");
    assert_ne!(o["sub"], c["sub"]);
    s.stop().await;
}

#[tokio::test]
async fn ldap_wrong_password_unknown_user_disabled_and_injection_look_alike() {
    let d = Slapd::start();
    let s = start(&openldap(&[d.ldaps()], &d.ca_file(), "")).await;
    let mut bodies = Vec::new();
    for (user, pw) in [
        ("jdupont", "wrong-password"),
        ("nobody", "jdupont-pw-1"),
        // ppolicy lock: slapd refuses the bind before looking at the password.
        ("pmartin", "pmartin-pw-1"),
        ("*", "jdupont-pw-1"),
        (")(uid=*", "jdupont-pw-1"),
        ("jdupont)(|(uid=*", "jdupont-pw-1"),
        ("*)(uid=*))(|(uid=*", "obrien-pw-1"),
        ("o*", "obrien-pw-1"),
        ("jdupont", ""),
    ] {
        let (st, body) = page(attempt(&s, user, pw).await);
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{user}");
        assert!(body.contains("Identifiant ou mot de passe incorrect"), "{user}");
        bodies.push(body);
    }
    let kinds = s.audit_kinds().await;
    assert!(!kinds.contains(&"token_issued".to_string()));
    assert_eq!(kinds.iter().filter(|k| *k == "login_password").count(), bodies.len());
    s.stop().await;
}

#[tokio::test]
async fn ldap_must_change_password_and_required_group_are_explained_without_a_code() {
    let d = Slapd::start();
    let extra = "required_groups = [\"cn=relais-users,ou=groups,dc=chu,dc=example\"]\n";
    let s = start(&openldap(&[d.ldaps()], &d.ca_file(), extra)).await;
    let (st, body) = page(attempt(&s, "cbernard", "cbernard-pw-1").await);
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(body.contains("password must be changed"), "{body}");
    let (st, body) = page(attempt(&s, "extern", "extern-pw-1").await);
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(body.contains("not allowed"), "{body}");
    // With a wrong password the same people get the generic answer: nothing leaks.
    let (st, _) = page(attempt(&s, "cbernard", "nope-nope-1").await);
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let kinds = s.audit_kinds().await;
    assert_eq!(kinds.iter().filter(|k| *k == "login_account_refused").count(), 2);
    assert!(!kinds.contains(&"code_issued".to_string()));
    s.stop().await;
}

#[tokio::test]
async fn ldap_failover_then_outage_gives_an_error_page_never_a_token() {
    let mut a = Slapd::start();
    let mut b = Slapd::start();
    // Both servers' CAs in one bundle, as for two domain controllers.
    let bundle = a.dir.join("both.pem");
    let both = std::fs::read_to_string(a.ca_file()).unwrap() + &std::fs::read_to_string(b.ca_file()).unwrap();
    std::fs::write(&bundle, both).unwrap();
    let s = start(&openldap(&[a.ldaps(), b.ldaps()], &bundle, "")).await;
    let first = login_claims(&s, "jdupont", "jdupont-pw-1").await;
    a.stop();
    // The pooled search connection breaks; Relais reconnects to the second server.
    let second = login_claims(&s, "jdupont", "jdupont-pw-1").await;
    assert_eq!(first["sub"], second["sub"], "replicas share entryUUID, so sub is stable");
    let ready: serde_json::Value = reqwest::get(s.url("/readyz")).await.unwrap().json().await.unwrap();
    assert_eq!(ready["directories"], serde_json::json!([{"name": "chu", "up": true}]), "{ready}");
    b.stop();
    let (st, body) = page(attempt(&s, "jdupont", "jdupont-pw-1").await);
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !body.contains("Identifiant ou mot de passe incorrect"),
        "an outage is not a wrong password"
    );
    let refusal = s.storage().audit_records(5).await.unwrap();
    assert!(
        refusal
            .iter()
            .any(|r| r.event.kind() == "login_password" && format!("{:?}", r.event).contains("unavailable")),
        "the outage is in the audit trail: {refusal:?}"
    );
    // Every directory down: not ready (health checks still answer).
    let r = reqwest::get(s.url("/readyz")).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: serde_json::Value = r.json().await.unwrap();
    assert_eq!(ready["directories"][0]["up"], false, "{ready}");
    assert_eq!(reqwest::get(s.url("/healthz")).await.unwrap().status(), StatusCode::OK);

    // One comes back: ready again and logins work, without restarting Relais.
    b.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while reqwest::get(s.url("/readyz")).await.unwrap().status() != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "not ready again after slapd came back");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let again = login_claims(&s, "jdupont", "jdupont-pw-1").await;
    assert_eq!(again["sub"], first["sub"]);
    s.stop().await;
}

/// `[login] local_fallback`: a break-glass local account logs in while the directory is
/// down; a directory account never gets a local password (`relais user passwd` refuses it),
/// and one written before that refusal existed does not open the fallback either.
#[tokio::test]
async fn ldap_break_glass_local_account_during_an_outage_never_a_directory_account() {
    let mut d = Slapd::start();
    let s = start(&format!(
        "{}[login]\nlocal_fallback = true\n",
        openldap(&[d.ldaps()], &d.ca_file(), "")
    ))
    .await;
    let c = s.components();
    let m = c.management("test");
    let secours = m
        .create_account(&c.config.passwords, NewAccount::new("secours", "Poste", "Secours"), "secours-pw-1")
        .await
        .unwrap();
    let jdupont = login_claims(&s, "jdupont", "jdupont-pw-1").await;
    let err = m.set_password(&c.config.passwords, "jdupont", "local-pw-1").await.unwrap_err();
    assert!(err.to_string().contains("account of the directory chu"), "{err}");
    let account = s.storage().account_by_username("jdupont").await.unwrap().unwrap();
    assert_eq!(account.id.to_string(), jdupont["sub"]);
    let hash = c.config.passwords.hash("local-pw-1", &[7; 16]).unwrap();
    s.storage().set_account_password(account.id, &hash).await.unwrap();

    // Directory up: the local account is tried after it.
    assert_eq!(login_claims(&s, "secours", "secours-pw-1").await["sub"], secours.id.to_string());
    assert!(matches!(
        attempt(&s, "jdupont", "local-pw-1").await,
        Step::Page(StatusCode::UNAUTHORIZED, _)
    ));

    d.stop();
    assert_eq!(login_claims(&s, "secours", "secours-pw-1").await["sub"], secours.id.to_string());
    let (st, body) = page(attempt(&s, "jdupont", "local-pw-1").await);
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "an outage, not a local login: {body}");
    let logins = s.audit_events("login_password").await;
    assert_eq!(logins[0]["success"], false, "{logins:?}");
    assert_eq!(logins[1]["success"], true, "{logins:?}");
    assert_eq!(logins[1]["account_id"], secours.id.to_string(), "{logins:?}");
    s.stop().await;
}

#[tokio::test]
async fn ldap_untrusted_certificate_is_refused_and_starttls_works() {
    let d = Slapd::start();
    let other = std::env::temp_dir().join(harness::unique("relais-other-ca"));
    std::fs::create_dir_all(&other).unwrap();
    slapd::make_ca(&other);
    let s = start(&openldap(&[d.ldaps()], &other.join("ca.pem"), "")).await;
    let (st, _) = page(attempt(&s, "jdupont", "jdupont-pw-1").await);
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "a certificate from an unknown CA is refused");
    s.stop().await;

    let s = start(&openldap(&[d.ldap()], &d.ca_file(), "starttls = true\n")).await;
    let c = login_claims(&s, "jdupont", "jdupont-pw-1").await;
    assert_eq!(c["preferred_username"], "jdupont");
    s.stop().await;
    std::fs::remove_dir_all(other).ok();
}

#[tokio::test]
async fn ldap_active_directory_preset_reads_ad_attributes_and_state() {
    let d = Slapd::start();
    let dir = format!(
        "[[directories]]\nname = \"ad\"\npreset = \"active_directory\"\nurls = [\"{}\"]\nca_file = \"{}\"\n{SERVICE}base_dn = \"ou=ad,dc=chu,dc=example\"\n",
        d.ldaps(),
        d.ca_file().display()
    );
    // Roles by group CN, as AD administrators name their security groups.
    let s = start(&format!("{dir}[directories.roles]\nadmin = [\"GG-Relais-Admins\"]\n")).await;
    let c = login_claims(&s, "adupuis", "adupuis-pw-1").await;
    assert_eq!(c["preferred_username"], "adupuis");
    let (with_roles, _, _) = login_with_scopes(&s, "adupuis", "adupuis-pw-1", &["roles"]).await;
    assert_eq!(with_roles["roles"], serde_json::json!(["admin"]));
    assert_eq!(c["email"], "anne.dupuis@chu.example");
    // The Relais account is keyed by objectGUID, read in AD byte order.
    let sub = uuid::Uuid::parse_str(c["sub"].as_str().unwrap()).unwrap();
    let account = s.storage().account(sub).await.unwrap().unwrap();
    assert_eq!(account.username, "adupuis");
    for (user, pw, msg) in [
        ("bdisabled", "bdisabled-pw-1", "cannot be used"),
        ("dexpired", "dexpired-pw-1", "cannot be used"),
        ("cchange", "cchange-pw-1", "password must be changed"),
    ] {
        let (st, body) = page(attempt(&s, user, pw).await);
        assert_eq!(st, StatusCode::FORBIDDEN, "{user}");
        assert!(body.contains(msg), "{user}: {body}");
    }
    let (st, _) = page(attempt(&s, "bdisabled", "wrong-pw-123").await);
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn ldap_throttle_locks_before_the_directory_does_then_lifts() {
    let d = Slapd::start();
    // The fixture's ppolicy locks after 5 failures; Relais stops at 3.
    let cfg = format!(
        "[login]\nmax_failures_per_account = 3\nlockout_secs = 60\n{}",
        openldap(&[d.ldaps()], &d.ca_file(), "")
    );
    let s = start(&cfg).await;
    for _ in 0..3 {
        assert_eq!(page(attempt(&s, "hlefevre", "wrong-pw-123").await).0, StatusCode::UNAUTHORIZED);
    }
    // Even the right password is not tried now, and unknown names lock alike.
    for _ in 0..4 {
        let (st, body) = page(attempt(&s, "hlefevre", "hlefevre-pw-1").await);
        assert_eq!(st, StatusCode::FORBIDDEN);
        assert!(body.contains("too many failed login attempts"), "{body}");
    }
    for _ in 0..3 {
        attempt(&s, "no-such-person", "wrong-pw-123").await;
    }
    assert_eq!(page(attempt(&s, "no-such-person", "x-pw-123456").await).0, StatusCode::FORBIDDEN);
    assert!(s.audit_kinds().await.contains(&"login_throttled".to_string()));
    s.clock.advance(Duration::from_secs(61));
    // The directory saw 3 failures, below its own lockout: the account still works.
    let c = login_claims(&s, "hlefevre", "hlefevre-pw-1").await;
    assert_eq!(c["preferred_username"], "hlefevre");
    s.stop().await;
}

pub(crate) const ROLES: &str = "[directories.roles]\nadmin = [\"cn=relais-admins,ou=groups,dc=chu,dc=example\"]\ndoctor = [\"medecins\"]\nauditor = [\"CN=Auditeurs, OU=groups, DC=chu, DC=example\"]\nnobody = [\"cn=empty,ou=groups,dc=chu,dc=example\"]\ndirector = [\"direction\"]\n";

/// A login through `web` asking for `scopes`: (id_token claims, userinfo JSON, refreshed id_token claims).
async fn login_with_scopes(s: &Server, user: &str, pw: &str, scopes: &[&str]) -> (serde_json::Value, serde_json::Value, serde_json::Value) {
    let web = rp::client(rp::metadata(&s.base).await, "web", Some(&s.web_secret), CALLBACK);
    let req = rp::auth_request(&web, scopes);
    let cb = Browser::new().login(&s.base, &req.url, user, pw).await;
    let tokens = web
        .exchange_code(rp::code(&cb["code"]))
        .unwrap()
        .set_pkce_verifier(req.verifier)
        .request_async(&rp::http)
        .await
        .expect("code exchange");
    let id = rp::payload(&tokens.id_token().expect("id_token").to_string());
    let info: serde_json::Value = reqwest::Client::new()
        .get(s.url("/userinfo"))
        .bearer_auth(tokens.access_token().secret())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refreshed = web
        .exchange_refresh_token(tokens.refresh_token().expect("refresh token"))
        .unwrap()
        .request_async(&rp::http)
        .await
        .expect("refresh");
    let again = rp::payload(&refreshed.id_token().expect("id_token").to_string());
    (id, info, again)
}

#[tokio::test]
async fn ldap_nested_groups_become_roles_for_the_roles_scope_only() {
    let d = Slapd::start();
    let extra = format!("[directories.groups]\nbase_dn = \"ou=groups,dc=chu,dc=example\"\nnested = \"iterative\"\n{ROLES}");
    let s = start(&openldap(&[d.ldaps()], &d.ca_file(), &extra)).await;
    // jdupont: doctor (direct, by CN), admin through chefs-de-service ⊂ relais-admins, director
    // one level further (relais-admins ⊂ direction).
    let (id, info, refreshed) = login_with_scopes(&s, "jdupont", "jdupont-pw-1", &["profile", "roles"]).await;
    assert_eq!(id["roles"], serde_json::json!(["admin", "director", "doctor"]));
    assert_eq!(info["roles"], id["roles"], "userinfo repeats the roles");
    assert_eq!(refreshed["roles"], id["roles"], "a refresh within the session keeps them");
    // hlefevre: auditor (DN written with other case and spaces); the cycle-a ⊂ cycle-b ⊂ cycle-a
    // loop ends.
    let (id, _, _) = login_with_scopes(&s, "hlefevre", "hlefevre-pw-1", &["roles"]).await;
    assert_eq!(id["roles"], serde_json::json!(["auditor"]));
    // Released, but empty, for someone without a mapped group; absent without the scope.
    let (id, _, _) = login_with_scopes(&s, "o*brien(ext)", "obrien-pw-1", &["roles"]).await;
    assert_eq!(id["roles"], serde_json::json!([]));
    let (id, info, _) = login_with_scopes(&s, "jdupont", "jdupont-pw-1", &["profile"]).await;
    assert!(id.get("roles").is_none() && info.get("roles").is_none(), "{id} {info}");
    s.stop().await;
}

/// An application reserved to a role (`relais client add --required-role doctor`): a doctor
/// gets a code; someone without the role is sent back to the application with `access_denied`,
/// after the login and through SSO alike, and each refusal is audited.
#[tokio::test]
async fn ldap_an_application_reserved_to_a_role_refuses_the_others() {
    let d = Slapd::start();
    let extra = format!("[directories.groups]\nbase_dn = \"ou=groups,dc=chu,dc=example\"\nnested = \"iterative\"\n{ROLES}");
    let s = start(&openldap(&[d.ldaps()], &d.ca_file(), &extra)).await;
    let (client, secret) = harness::reserved_client(&s, "radiologie", &[" doctor", "doctor", ""])
        .await
        .unwrap();
    assert_eq!(client.required_roles, ["doctor"], "trimmed, deduplicated, blanks dropped");
    let typo = harness::reserved_client(&s, "typo", &["docteur"]).await.unwrap_err().to_string();
    assert!(typo.contains("\"docteur\" is not defined") && typo.contains("doctor"), "{typo}");
    let stored = s.storage().client(&client.id).await.unwrap().unwrap();
    assert_eq!(stored.required_roles, ["doctor"], "kept by the store");
    let meta = rp::metadata(&s.base).await;
    let radio = rp::client(meta.clone(), "radiologie", secret.as_deref(), CALLBACK);
    let web = rp::client(meta, "web", Some(&s.web_secret), CALLBACK);

    // jdupont is a doctor (group medecins).
    let cb = Browser::new()
        .login(&s.base, &rp::auth_request(&radio, &["profile"]).url, "jdupont", "jdupont-pw-1")
        .await;
    assert!(cb.contains_key("code") && !cb.contains_key("error"), "{cb:?}");

    // hlefevre is an auditor only: the password is right, the application says no.
    let b = Browser::new();
    let cb = b
        .login(&s.base, &rp::auth_request(&radio, &["profile"]).url, "hlefevre", "hlefevre-pw-1")
        .await;
    assert_eq!(cb.get("error").map(String::as_str), Some("access_denied"), "{cb:?}");
    assert!(!cb.contains_key("code"));
    // Signed in all the same (the other applications are hers): SSO to `web`, not to `radiologie`.
    match b.start(&rp::auth_request(&web, &["profile"]).url).await {
        Step::Callback(q) => assert!(q.contains_key("code"), "{q:?}"),
        other => panic!("SSO to web: {other:?}"),
    }
    match b.start(&rp::auth_request(&radio, &["profile"]).url).await {
        Step::Callback(q) => assert_eq!(q.get("error").map(String::as_str), Some("access_denied"), "{q:?}"),
        other => panic!("SSO to radiologie: {other:?}"),
    }
    let refused = s
        .audit_events("authorize_refused")
        .await
        .into_iter()
        .filter(|e| e["reason"].as_str().is_some_and(|r| r.contains("reserved to the roles doctor")))
        .count();
    assert_eq!(refused, 2, "both refusals are audited");
    s.stop().await;
}

#[tokio::test]
async fn ldap_group_search_with_a_depth_bound_and_required_roles() {
    let d = Slapd::start();
    // Groups found by searching (member={dn}) rather than memberOf; nesting stops after one
    // level: relais-admins (one level above jdupont's chefs-de-service) is reached, direction
    // (two levels) is not.
    let extra = format!(
        "required_roles = [\"doctor\", \"admin\"]\n[directories.groups]\nlookup = \"search\"\nbase_dn = \"ou=groups,dc=chu,dc=example\"\nfilter = \"(member={{dn}})\"\nnested = \"iterative\"\nmax_depth = 1\n{ROLES}"
    );
    let s = start(&openldap(&[d.ldaps()], &d.ca_file(), &extra)).await;
    let (id, _, _) = login_with_scopes(&s, "jdupont", "jdupont-pw-1", &["roles"]).await;
    assert_eq!(id["roles"], serde_json::json!(["admin", "doctor"]));
    // hlefevre is an auditor, neither doctor nor admin: the right password, still refused.
    let (st, body) = page(attempt(&s, "hlefevre", "hlefevre-pw-1").await);
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(body.contains("not allowed"), "{body}");
    s.stop().await;

    // With depth 2 the director role appears.
    let s = start(&openldap(
        &[d.ldaps()],
        &d.ca_file(),
        &extra.replace("max_depth = 1", "max_depth = 2"),
    ))
    .await;
    let (id, _, _) = login_with_scopes(&s, "jdupont", "jdupont-pw-1", &["roles"]).await;
    assert_eq!(id["roles"], serde_json::json!(["admin", "director", "doctor"]));
    s.stop().await;
}

/// slapd's count of connections opened since it started (back-monitor).
pub fn slapd_connections_total(d: &Slapd) -> u64 {
    slapd_monitor(d, "cn=Total,cn=Connections,cn=Monitor", "monitorCounter")
}

/// A counter of slapd's back-monitor; reading it is itself one connection and one bind.
fn slapd_monitor(d: &Slapd, base: &str, attribute: &str) -> u64 {
    let out = std::process::Command::new("ldapsearch")
        .args([
            "-x",
            "-LLL",
            "-H",
            &d.ldap(),
            "-D",
            "cn=admin,dc=chu,dc=example",
            "-w",
            "admin-secret",
        ])
        .args(["-b", base, "-s", "base", attribute])
        .output()
        .expect("ldapsearch (scripts/test.sh installs ldap-utils)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{attribute}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {attribute}: {text} {}", String::from_utf8_lossy(&out.stderr)))
}

/// Someone who is not in the directory costs a bind, as a wrong password does: the answer's
/// timing does not tell who has an account (counted by slapd itself, not timed here).
#[tokio::test]
async fn ldap_an_unknown_user_costs_a_bind_like_a_wrong_password() {
    let d = Slapd::start();
    let s = start(&openldap(&[d.ldaps()], &d.ca_file(), "")).await;
    let binds = || slapd_monitor(&d, "cn=Bind,cn=Operations,cn=Monitor", "monitorOpCompleted");
    // Opens the pools (the service account's bind) before counting.
    attempt_ok(&s, "hlefevre", "hlefevre-pw-1").await;
    let refused = |step: Step| assert!(!matches!(step, Step::Callback(_)), "{step:?}");
    let before = binds();
    for _ in 0..2 {
        refused(attempt(&s, "personne-inconnue", "un-mot-de-passe-1").await);
    }
    let unknown = binds() - before - 1;
    let before = binds();
    for _ in 0..2 {
        refused(attempt(&s, "jdupont", "not-the-password-1").await);
    }
    let wrong = binds() - before - 1;
    assert_eq!((unknown, wrong), (2, 2), "one bind per attempt, whoever is named");
    s.stop().await;
}

#[tokio::test]
async fn ldap_logins_reuse_pooled_connections() {
    const LOGINS: u64 = 12;
    let d = Slapd::start();
    let s = start(&openldap(&[d.ldaps()], &d.ca_file(), "search_pool_size = 2\nbind_pool_size = 2\n")).await;
    let before = slapd_connections_total(&d);
    for _ in 0..LOGINS {
        attempt_ok(&s, "jdupont", "jdupont-pw-1").await;
    }
    // Concurrent logins may open up to the pools' sizes, not one per login. The first round is
    // also four simultaneous first logins of one person (one account row, no error).
    for _ in 0..LOGINS / 4 {
        let one = || attempt_ok(&s, "hlefevre", "hlefevre-pw-1");
        tokio::join!(one(), one(), one(), one());
    }
    // Each reading of the counter is itself one connection. Up to the pools' sizes (4), plus a
    // little slack for a pooled connection that a loaded CI machine made time out and rebuild.
    let opened = slapd_connections_total(&d) - before - 1;
    assert!(opened <= 6, "{} logins opened {opened} connections", 2 * LOGINS);
    s.stop().await;

    // Without a bind pool every login opens a connection for its bind (and the search
    // connections are still reused): the counter does see connections.
    let s = start(&openldap(&[d.ldaps()], &d.ca_file(), "search_pool_size = 1\nbind_pool_size = 0\n")).await;
    let before = slapd_connections_total(&d);
    for _ in 0..LOGINS {
        attempt_ok(&s, "jdupont", "jdupont-pw-1").await;
    }
    let opened = slapd_connections_total(&d) - before - 1;
    // One per bind, one for the searches (slack as above for a rebuilt search connection).
    assert!(
        (LOGINS + 1..=LOGINS + 3).contains(&opened),
        "one per bind, one for the searches: {opened}"
    );
    s.stop().await;
}

/// A login that must succeed (the code reaches the client).
async fn attempt_ok(s: &Server, user: &str, pw: &str) {
    match attempt(s, user, pw).await {
        Step::Callback(q) => assert!(q.contains_key("code"), "{q:?}"),
        other => panic!("{user}: expected a code, got {other:?}"),
    }
}

#[tokio::test]
async fn ldap_rpps_attribute_matches_people_to_the_annuaire_or_sends_them_to_review() {
    use crate::identity::{FINESS, SAMPLE, line};
    use relais::domain::identity::Provenance;
    use relais::domain::ports::IdentityStore;
    let d = Slapd::start();
    let s = start(&openldap(
        &[d.ldaps()],
        &d.ca_file(),
        "[directories.attributes]\nnational_id = \"rppsNumber\"\n",
    ))
    .await;
    // Read from slapd: jdupont (an RPPS number), hlefevre (an idNat), cbernard (a bad check digit).
    let claims = relais::server::directory_claims(s.components()).await.unwrap();
    let mut values: Vec<&str> = claims.iter().map(|c| c.value.as_str()).collect();
    values.sort();
    assert_eq!(values, ["10001000107", "10003000304", "810002000205"]);
    assert!(claims.iter().all(|c| c.source == "chu:rppsNumber"));
    let text = format!(
        "{SAMPLE}{}\n{}\n",
        line("10001000107", "DUPONT", "Jean", "10", FINESS),
        line("10002000205", "MARTIN", "Claire", "60", FINESS)
    );
    let m = s.components().management("test");
    let finess = vec![FINESS.to_string()];
    let dry = m.import_annuaire_with(text.as_bytes(), &finess, &claims, true).await.unwrap();
    assert_eq!(dry.changes.len(), 1, "{dry}");
    assert_eq!(dry.review.len(), 2, "{dry}");
    assert!(
        s.components().store.review_items().await.unwrap().is_empty(),
        "a dry run changes nothing"
    );
    m.import_annuaire_with(text.as_bytes(), &finess, &claims, false).await.unwrap();
    let jdupont = s.storage().account_by_username("jdupont").await.unwrap().unwrap();
    let ids = s.components().store.national_ids(jdupont.id).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].idnat.as_str(), "810001000107");
    assert!(ids[0].verified);
    assert_eq!(ids[0].provenance, Provenance::AnnuaireImport);
    use relais::domain::identity_import::ReviewReason;
    let mut review: Vec<(String, ReviewReason)> = s
        .components()
        .store
        .review_items()
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.username, r.reason))
        .collect();
    review.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(review[0].0, "cbernard");
    assert!(matches!(&review[0].1, ReviewReason::InvalidIdentifier { .. }), "{review:?}");
    assert_eq!(review[1].0, "hlefevre");
    assert!(
        matches!(&review[1].1, ReviewReason::AnnuaireNamesAnother { given_name, family_name, .. } if given_name == "Claire" && family_name == "MARTIN"),
        "{review:?}"
    );
    assert!(review[1].1.to_string().contains("Claire MARTIN"), "{review:?}");
    // hlefevre was not matched by name instead, and nothing was linked for her.
    let h = s.storage().account_by_username("hlefevre").await.unwrap().unwrap();
    assert!(s.components().store.national_ids(h.id).await.unwrap().is_empty());
    s.stop().await;
}
