//! Directory login (issue #3) end to end: a private slapd per test, Relais configured with
//! `[[directories]]`, the browser through the real login form, the RP through the token endpoint.
use crate::browser::{Browser, Step};
use crate::harness::{self, CALLBACK, Db, Server, Sessions};
use crate::rp;
use crate::slapd::{self, Slapd};
use openidconnect::TokenResponse;
use reqwest::StatusCode;
use std::time::Duration;

const SERVICE: &str = "bind_dn = \"cn=relais,ou=services,dc=chu,dc=example\"\nbind_password = \"relais-service-pw\"\n";

/// A `[[directories]]` entry on the fixture (OpenLDAP preset, people subtree).
fn openldap(urls: &[String], ca: &std::path::Path, extra: &str) -> String {
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
    b.stop();
    let (st, body) = page(attempt(&s, "jdupont", "jdupont-pw-1").await);
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        !body.contains("Identifiant ou mot de passe incorrect"),
        "an outage is not a wrong password"
    );
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
    let s = start(&dir).await;
    let c = login_claims(&s, "adupuis", "adupuis-pw-1").await;
    assert_eq!(c["preferred_username"], "adupuis");
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
