//! The admin UI role from directory groups (`[admin] directory_admin_role`,
//! `directory_auditor_role`) against the private slapd: a member of the mapped group (here
//! through nested groups) gets the role at admin login, still only with a security key; an
//! auditor by group reads and changes nothing; a person without the groups is refused.
use crate::admin::{client, events, login, password_step};
use crate::browser::Browser;
use crate::fido2::trust_file;
use crate::harness::{self, CALLBACK, Db, Server, Sessions};
use crate::identity::rpps;
use crate::slapd::Slapd;
use reqwest::StatusCode;
use webauthn_authenticator_rs::softtoken::{AAGUID, SoftToken};

const ROLES: &str = "[directories.groups]\nbase_dn = \"ou=groups,dc=chu,dc=example\"\nnested = \"iterative\"\n[directories.roles]\nrelais-admin = [\"cn=relais-admins,ou=groups,dc=chu,dc=example\"]\nrelais-auditor = [\"auditeurs\"]\ndoctor = [\"medecins\"]\n";

async fn start(d: &Slapd, ca: &impl crypto_glue::traits::EncodePem) -> Server {
    let dir = crate::ldap::openldap(&[d.ldaps()], &d.ca_file(), ROLES);
    harness::start_with(
        Db::Sqlite,
        Sessions::Memory,
        &format!(
            "[admin]\ndirectory_admin_role = \"relais-admin\"\ndirectory_auditor_role = \"relais-auditor\"\n[fido2]\nattestation_policy = \"{}\"\n{dir}",
            trust_file(ca, AAGUID)
        ),
    )
    .await
}

/// A first (password) login through `web`, so that Relais knows the directory account.
async fn first_login(s: &Server, user: &str, pw: &str) {
    let q = Browser::new()
        .login(&s.base, &harness::authorize_url(s, "web", CALLBACK, ""), user, pw)
        .await;
    assert!(q.contains_key("code"));
}

#[tokio::test]
async fn directory_groups_grant_the_admin_ui_roles_still_with_a_key() {
    let d = Slapd::start();
    let (mut token, ca) = SoftToken::new(true).unwrap();
    let s = start(&d, &ca).await;
    let admin = ("jdupont", "jdupont-pw-1");
    let auditor = ("hlefevre", "hlefevre-pw-1");
    let nobody = ("o*brien(ext)", "obrien-pw-1");
    for who in [admin, auditor, nobody] {
        first_login(&s, who.0, who.1).await;
    }

    // Not in the mapped groups (and no admin_roles row): refused.
    let r = password_step(&client(), &s, nobody).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        events(&s, "admin_login").await.iter().any(|e| e["reason"] == "not_admin"),
        "not_admin recorded"
    );

    // In relais-admins (through chefs-de-service): the role, but no key yet, so no login.
    let r = password_step(&client(), &s, admin).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("Aucune clé de sécurité"));
    assert_eq!(events(&s, "admin_login").await[0]["reason"], "no_security_key");

    // With a key: logged in as admin, and changes are allowed and audited with the name.
    crate::admin::enrol(&s, &mut token, admin.0).await;
    let http = client();
    let csrf = login(&http, &s, &mut token, admin).await;
    let ok = events(&s, "admin_login").await;
    assert!(
        ok[0]["reason"].as_str().unwrap().contains("role=admin") && ok[0]["reason"].as_str().unwrap().contains("source=directory"),
        "{ok:?}"
    );
    let idnat = format!("8{}", rpps("1000000042"));
    let r = http
        .post(s.url("/admin/people/hlefevre/link"))
        .form(&[("csrf", csrf.as_str()), ("idnat", idnat.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(events(&s, "identity_linked").await[0]["actor"], "admin:jdupont");
    // The directory-granted session holds across requests (no admin_roles row is needed).
    assert_eq!(http.get(s.url("/admin/people")).send().await.unwrap().status(), StatusCode::OK);

    // In auditeurs: read only.
    crate::admin::enrol(&s, &mut token, auditor.0).await;
    let http = client();
    let csrf = login(&http, &s, &mut token, auditor).await;
    assert_eq!(http.get(s.url("/admin/audit")).send().await.unwrap().status(), StatusCode::OK);
    let r = http
        .post(s.url("/admin/people/jdupont/link"))
        .form(&[("csrf", csrf.as_str()), ("idnat", format!("8{}", rpps("1000000043")).as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(events(&s, "admin_refused").await[0]["actor"], "admin:hlefevre");
    s.stop().await;
}

#[test]
fn a_directory_admin_role_no_directory_maps_is_a_configuration_error() {
    let toml = "issuer = \"http://localhost:1\"\ndev_mode = true\n[admin]\ndirectory_admin_role = \"relais-admin\"\n[keys]\nencryption_key = \"x\"\n";
    let e = relais::config::Config::from_toml_str(toml).unwrap_err().to_string();
    assert!(e.contains("directory_admin_role"), "{e}");
    let unknown = "issuer = \"http://localhost:1\"\n[admin]\ndirectory_admin_group = \"x\"\n";
    assert!(relais::config::Config::from_toml_str(unknown).is_err(), "unknown keys are refused");
}
