//! CPS/CPx cards end to end. A test PKI is made here with rcgen: a root and an intermediate
//! named like IGC-Santé's test chain, card certificates with the real SAN UPN layout
//! (`8.<RPPS>@carte-cps.fr`), a CRL signed by the intermediate. A real TLS client (reqwest with
//! the card's certificate and key) talks to Relais' card listener; the id_tokens are read by
//! the `openidconnect` RP.
use crate::browser::{Browser, Step, absolute, query};
use crate::harness::{self, ALICE, CALLBACK, Db, Server, Sessions};
use crate::rp;
use openidconnect::TokenResponse;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, CrlDistributionPoint, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, OtherNameValue, RevocationReason, RevokedCertParams, SanType,
    SerialNumber,
};
use relais::domain::ports::IdentityStore;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;
use time::OffsetDateTime;

/// idNat 899700434378 (psc.md §5's example): alice's card.
pub const ALICE_RPPS: &str = "99700434378";
/// Someone else's RPPS.
const OTHER_RPPS: &str = "10000000009";
/// A card that the CRL lists.
const REVOKED_SERIAL: u64 = 666;
/// The Microsoft UPN OtherName (1.3.6.1.4.1.311.20.2.3).
const UPN_OID: [u64; 10] = [1, 3, 6, 1, 4, 1, 311, 20, 2, 3];

fn dn(cn: &str) -> rcgen::DistinguishedName {
    let mut d = rcgen::DistinguishedName::new();
    d.push(DnType::CountryName, "FR");
    d.push(DnType::OrganizationName, "ASIP-SANTE");
    d.push(DnType::CommonName, cn);
    d
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// A root and its "ELEMENTAIRE PERSONNES" intermediate.
pub struct Chain {
    pub root: CertifiedIssuer<'static, KeyPair>,
    pub inter: CertifiedIssuer<'static, KeyPair>,
}

impl Chain {
    fn new() -> Self {
        let root = CertifiedIssuer::self_signed(ca_params("TEST AC RACINE IGC-SANTE ELEMENTAIRE"), KeyPair::generate().unwrap()).unwrap();
        let inter = CertifiedIssuer::signed_by(
            ca_params("TEST AC IGC-SANTE ELEMENTAIRE PERSONNES"),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        Self { root, inter }
    }

    /// A card authentication certificate: UPN `8.<rpps>@carte-cps.fr`, CN the idNat, EKU
    /// clientAuth. Returns the PEM of the certificate and its key (for `Identity::from_pem`).
    pub fn card(&self, rpps: &str, serial: u64, not_after: OffsetDateTime) -> String {
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(&format!("8{rpps}"));
        p.distinguished_name.push(DnType::OrganizationalUnitName, "Medecin");
        p.subject_alt_names = vec![SanType::OtherName((
            UPN_OID.to_vec(),
            OtherNameValue::Utf8String(format!("8.{rpps}@carte-cps.fr")),
        ))];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.serial_number = Some(SerialNumber::from(serial));
        p.not_before = OffsetDateTime::now_utc() - time::Duration::days(400);
        p.not_after = not_after;
        p.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec!["http://igc-sante.esante.gouv.fr/CRL/ACI-EL-PP-TEST.crl".into()],
        }];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.inter).unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem())
    }

    /// The intermediate's CRL (DER), listing `revoked`, valid for `valid_for`.
    fn crl(&self, revoked: &[u64], valid_for: time::Duration) -> Vec<u8> {
        let now = OffsetDateTime::now_utc();
        CertificateRevocationListParams {
            this_update: now - time::Duration::hours(1),
            next_update: now + valid_for,
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now - time::Duration::hours(2),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&self.inter)
        .unwrap()
        .der()
        .to_vec()
    }
}

/// The test PKI on disk and the card listener's own TLS certificate.
pub struct Pki {
    pub chain: Chain,
    pub dir: PathBuf,
    /// The CA of the card listener's server certificate (the TLS client trusts it).
    pub tls_ca_pem: String,
}

pub fn in_a_year() -> OffsetDateTime {
    OffsetDateTime::now_utc() + time::Duration::days(365)
}

impl Pki {
    pub fn new() -> Self {
        let chain = Chain::new();
        let dir = std::env::temp_dir().join(harness::unique("relais-cards"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("root.pem"), chain.root.pem()).unwrap();
        std::fs::write(dir.join("inter.pem"), chain.inter.pem()).unwrap();
        std::fs::write(
            dir.join("ACI-EL-PP-TEST.crl"),
            chain.crl(&[REVOKED_SERIAL], time::Duration::days(1)),
        )
        .unwrap();
        // The card listener's server certificate, for "localhost", under its own CA.
        let tls_ca = CertifiedIssuer::self_signed(ca_params("Relais test TLS CA"), KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.distinguished_name = dn("localhost");
        let cert = p.signed_by(&key, &tls_ca).unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        Self {
            chain,
            dir,
            tls_ca_pem: tls_ca.pem(),
        }
    }

    /// The `[cards]` table; `extra` adds keys to it.
    pub fn config(&self, extra: &str) -> String {
        let d = self.dir.display();
        format!(
            "[cards]\nlisten = \"127.0.0.1:0\"\nserver_cert = \"{d}/server.pem\"\nserver_key = \"{d}/server.key\"\ntrust_roots = [\"{d}/root.pem\"]\nintermediates = [\"{d}/inter.pem\"]\ncrl_files = [\"{d}/ACI-EL-PP-TEST.crl\"]\n{extra}\n"
        )
    }

    /// A browser holding a card (or none): cookies, no redirects followed, trusting the card
    /// listener's certificate.
    pub fn browser(&self, card_pem: Option<&str>) -> Browser {
        let mut b = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .tls_certs_only([reqwest::Certificate::from_pem(self.tls_ca_pem.as_bytes()).unwrap()]);
        if let Some(pem) = card_pem {
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        Browser { http: b.build().unwrap() }
    }
}

pub async fn start(pki: &Pki, extra: &str) -> Server {
    harness::start_with(Db::Sqlite, Sessions::Memory, &pki.config(extra)).await
}

pub fn card_base(s: &Server) -> String {
    format!("https://localhost:{}", s.running.card_addr.expect("card listener").port())
}

async fn link_alice(s: &Server, rpps: &str) {
    s.components()
        .management("test")
        .link(ALICE.0, &format!("8{rpps}"), true)
        .await
        .unwrap();
}

fn pending_id(path: &str) -> String {
    query(&absolute("http://x", path))["id"].clone()
}

/// What the card endpoint answered.
#[derive(Debug)]
enum CardAnswer {
    /// Redirected to the completion on the issuer's host.
    Proof(String),
    Page(StatusCode, String),
}

async fn present_card(b: &Browser, s: &Server, id: &str) -> CardAnswer {
    let r = b.get(&format!("{}/login/card?id={id}", card_base(s))).await;
    if r.status() == StatusCode::SEE_OTHER {
        return CardAnswer::Proof(r.headers()["location"].to_str().unwrap().to_owned());
    }
    CardAnswer::Page(r.status(), r.text().await.unwrap())
}

/// Presents the card and follows to the completion: the step that comes back.
async fn card_step(b: &Browser, s: &Server, id: &str) -> Step {
    match present_card(b, s, id).await {
        CardAnswer::Proof(next) => {
            assert!(next.starts_with(&s.base), "{next}");
            let r = b.get(&next).await;
            let status = r.status();
            if status.is_redirection() {
                let to = r.headers()["location"].to_str().unwrap().to_owned();
                return Step::Callback(query(&to));
            }
            Step::Page(status, r.text().await.unwrap())
        }
        CardAnswer::Page(st, body) => Step::Page(st, body),
    }
}

async fn web(s: &Server) -> rp::Rp {
    rp::client(rp::metadata(&s.base).await, "web", Some(&s.web_secret), CALLBACK)
}

async fn id_token(rp: &rp::Rp, req: rp::AuthRequest, q: &std::collections::HashMap<String, String>) -> Value {
    let tokens = rp
        .exchange_code(rp::code(&q["code"]))
        .unwrap()
        .set_pkce_verifier(req.verifier)
        .request_async(&rp::http)
        .await
        .unwrap();
    let id = tokens.id_token().unwrap();
    id.claims(&rp.id_token_verifier().set_allowed_algs(rp::algs()), &req.nonce).unwrap();
    rp::payload(&id.to_string())
}

/// Authorization request (asking for loa3) and password: returns the card step's pending id.
async fn password_then_card_step(b: &Browser, s: &Server, url: &str) -> String {
    let Step::LoginForm(login) = b.start(url).await else {
        panic!("login form")
    };
    match b.submit_login(&s.base, &login, ALICE.0, ALICE.1).await {
        Step::LoginForm(p) if p.starts_with("/login/card/start?id=") => {
            // The card page offers the card listener.
            let page = b.get(&s.url(&p)).await.text().await.unwrap();
            assert!(page.contains("carte CPS"), "{page}");
            pending_id(&p)
        }
        other => panic!("expected the card step, got {other:?}"),
    }
}

fn refusal(step: Step, needle: &str) {
    match step {
        Step::Page(StatusCode::FORBIDDEN, body) => assert!(body.contains(needle), "{needle:?} not in {body}"),
        other => panic!("expected a refusal page with {needle:?}, got {other:?}"),
    }
}

/// A card login that ended without a code: back at the client with an error, or a refusal page.
fn no_code(step: Step, what: &str) {
    match step {
        Step::Callback(q) => assert!(!q.contains_key("code"), "{what}: {q:?}"),
        Step::Page(st, _) => assert!(st.is_client_error(), "{what}: {st}"),
        other => panic!("{what}: {other:?}"),
    }
}

#[tokio::test]
async fn card_after_password_logs_in_with_sc_pin_mfa_hwk_pwd_and_loa3() {
    let pki = Pki::new();
    let s = start(&pki, "").await;
    link_alice(&s, ALICE_RPPS).await;
    let b = pki.browser(Some(&pki.chain.card(ALICE_RPPS, 1, in_a_year())));
    let rp = web(&s).await;
    let req = rp::auth_request(&rp, &[]);
    let url = format!("{}&acr_values=loa3", req.url);
    let id = password_then_card_step(&b, &s, &url).await;
    let Step::Callback(q) = card_step(&b, &s, &id).await else {
        panic!("card login did not return to the client")
    };
    let claims = id_token(&rp, req, &q).await;
    assert_eq!(claims["amr"], json!(["pwd", "sc", "pin", "mfa", "hwk"]));
    assert_eq!(claims["acr"], "loa3");

    let logins = s.audit_events("card_login").await;
    assert_eq!(logins.len(), 1, "{logins:?}");
    assert_eq!(logins[0]["success"], true);
    assert_eq!(logins[0]["idnat"], format!("8{ALICE_RPPS}"));
    assert_eq!(logins[0]["source"], "tls");
    assert_eq!(logins[0]["serial"], "01");
    assert!(
        logins[0]["issuer"]
            .as_str()
            .unwrap()
            .contains("TEST AC IGC-SANTE ELEMENTAIRE PERSONNES")
    );
    s.stop().await;
}

#[tokio::test]
async fn card_alone_when_policy_allows_gives_sc_pin_mfa_hwk() {
    let pki = Pki::new();
    let s = start(&pki, "card_alone = true").await;
    link_alice(&s, ALICE_RPPS).await;
    let b = pki.browser(Some(&pki.chain.card(ALICE_RPPS, 2, in_a_year())));
    let rp = web(&s).await;
    let req = rp::auth_request(&rp, &[]);
    let Step::LoginForm(login) = b.start(&req.url).await else {
        panic!("login form")
    };
    // The login page offers the card.
    let page = b.get(&s.url(&login)).await.text().await.unwrap();
    assert!(page.contains("Se connecter avec ma carte CPS"), "{page}");
    let Step::Callback(q) = card_step(&b, &s, &pending_id(&login)).await else {
        panic!("card login did not return to the client")
    };
    let claims = id_token(&rp, req, &q).await;
    assert_eq!(claims["amr"], json!(["sc", "pin", "mfa", "hwk"]));
    assert_eq!(claims["acr"], "loa3");
    s.stop().await;
}

/// The card alone for a person whose account lives in the directory: no password in this
/// login, so the directory is asked. Its groups give the roles (an application reserved to
/// doctors admits the card); once the person is removed from the directory, the still-valid
/// card no longer logs in, and the refusal is audited.
#[tokio::test]
async fn card_alone_asks_the_directory_for_a_directory_account() {
    let d = crate::slapd::Slapd::start();
    let pki = Pki::new();
    let groups = format!(
        "[directories.groups]\nbase_dn = \"ou=groups,dc=chu,dc=example\"\nnested = \"iterative\"\n{}",
        crate::ldap::ROLES
    );
    let config = format!(
        "{}{}",
        crate::ldap::openldap(&[d.ldaps()], &d.ca_file(), &groups),
        pki.config("card_alone = true")
    );
    let s = harness::start_with(Db::Sqlite, Sessions::Memory, &config).await;
    // jdupont's account comes from a first password login; then his card is linked.
    let web = web(&s).await;
    let first = crate::browser::Browser::new()
        .login(&s.base, &rp::auth_request(&web, &[]).url, "jdupont", "jdupont-pw-1")
        .await;
    assert!(first.contains_key("code"), "{first:?}");
    let m = s.components().management("test");
    m.link("jdupont", &format!("8{ALICE_RPPS}"), true).await.unwrap();
    let (_, secret) = harness::reserved_client(&s, "radiologie", &["doctor"]).await.unwrap();
    let radio = rp::client(rp::metadata(&s.base).await, "radiologie", secret.as_deref(), CALLBACK);
    let card_login = async |serial: u64| {
        let b = pki.browser(Some(&pki.chain.card(ALICE_RPPS, serial, in_a_year())));
        let Step::LoginForm(login) = b.start(&rp::auth_request(&radio, &[]).url).await else {
            panic!("login form")
        };
        card_step(&b, &s, &pending_id(&login)).await
    };
    match card_login(21).await {
        Step::Callback(q) => assert!(q.contains_key("code"), "the directory's groups make him a doctor: {q:?}"),
        other => panic!("card login: {other:?}"),
    }

    let out = std::process::Command::new("ldapdelete")
        .args(["-x", "-H", &d.ldap(), "-D", "cn=admin,dc=chu,dc=example", "-w", "admin-secret"])
        .arg("uid=jdupont,ou=medecins,ou=people,dc=chu,dc=example")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    no_code(card_login(22).await, "card login after removal");
    let refused = s.audit_events("card_login").await;
    assert_eq!(refused[0]["success"], false, "{refused:?}");
    assert_eq!(refused[0]["reason"], "directory: no longer in the directory");

    // Someone new gets the name: another entry (another entryUUID), not the card's holder.
    let mut add = std::process::Command::new("ldapadd")
        .args(["-x", "-H", &d.ldap(), "-D", "cn=admin,dc=chu,dc=example", "-w", "admin-secret"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    use std::io::Write;
    add.stdin
        .take()
        .unwrap()
        .write_all(b"dn: uid=jdupont,ou=medecins,ou=people,dc=chu,dc=example\nobjectClass: inetOrgPerson\nuid: jdupont\ncn: Julie Dupont\nsn: Dupont\nuserPassword: julie-pw-1\n")
        .unwrap();
    assert!(add.wait().unwrap().success());
    no_code(card_login(23).await, "card login after the name was reused");
    assert_eq!(
        s.audit_events("card_login").await[0]["reason"],
        "directory: no longer in the directory"
    );
    s.stop().await;
}

/// An account that came from a directory, on a Relais configured without any directory now
/// (the operator removed them): nobody can say the person is still employed, so a card alone
/// does not log the account in (as for one directory removed from the configuration).
#[tokio::test]
async fn card_alone_refuses_a_directory_account_once_no_directory_is_configured() {
    let pki = Pki::new();
    let s = start(&pki, "card_alone = true").await;
    let former = relais::domain::account::Account {
        id: uuid::Uuid::new_v4(),
        username: "jdupont".into(),
        display_name: "Jean Dupont".into(),
        given_name: Some("Jean".into()),
        family_name: Some("Dupont".into()),
        email: None,
        password_hash: None,
        disabled: false,
        directory_id: None,
    };
    s.storage()
        .upsert_directory_account("chu:3f1c0b8e-0000-4000-8000-000000000001", &former)
        .await
        .unwrap();
    s.components()
        .management("test")
        .link("jdupont", &format!("8{ALICE_RPPS}"), true)
        .await
        .unwrap();
    let b = pki.browser(Some(&pki.chain.card(ALICE_RPPS, 31, in_a_year())));
    let Step::LoginForm(login) = b.start(&rp::auth_request(&web(&s).await, &[]).url).await else {
        panic!("login form")
    };
    no_code(
        card_step(&b, &s, &pending_id(&login)).await,
        "card login of a former directory account",
    );
    let refused = s.audit_events("card_login").await;
    assert_eq!(refused[0]["success"], false, "{refused:?}");
    assert_eq!(refused[0]["reason"], "directory: no longer in the directory");
    s.stop().await;
}

#[tokio::test]
async fn card_alone_is_refused_unless_policy_allows_and_needs_a_linked_card() {
    let pki = Pki::new();
    let s = start(&pki, "").await;
    link_alice(&s, ALICE_RPPS).await;
    let b = pki.browser(Some(&pki.chain.card(ALICE_RPPS, 3, in_a_year())));
    let rp = web(&s).await;
    let Step::LoginForm(login) = b.start(&rp::auth_request(&rp, &[]).url).await else {
        panic!("login form")
    };
    let page = b.get(&s.url(&login)).await.text().await.unwrap();
    assert!(!page.contains("carte CPS"), "card alone is not offered: {page}");
    refusal(
        card_step(&b, &s, &pending_id(&login)).await,
        "Saisissez d&#39;abord votre identifiant",
    );
    s.stop().await;

    // Card alone allowed, but nobody holds this idNat.
    let s = start(&pki, "card_alone = true").await;
    let b = pki.browser(Some(&pki.chain.card(OTHER_RPPS, 4, in_a_year())));
    let rp = web(&s).await;
    let Step::LoginForm(login) = b.start(&rp::auth_request(&rp, &[]).url).await else {
        panic!("login form")
    };
    refusal(card_step(&b, &s, &pending_id(&login)).await, "rattachée à aucun compte");
    s.stop().await;
}

/// One refused card: the message the person reads and the audited reason.
async fn refused_card(pki: &Pki, s: &Server, card: &str, needle: &str, reason: &str) {
    let b = pki.browser(Some(card));
    let rp = web(s).await;
    let url = format!("{}&acr_values=loa3", rp::auth_request(&rp, &[]).url);
    let id = password_then_card_step(&b, s, &url).await;
    refusal(card_step(&b, s, &id).await, needle);
    let refused = s.audit_events("card_login").await;
    assert!(
        refused.iter().any(|e| e["success"] == false && e["reason"] == reason),
        "{reason} in {refused:?}"
    );
}

#[tokio::test]
async fn expired_revoked_wrong_issuer_and_mismatched_cards_are_refused_with_their_message() {
    let pki = Pki::new();
    let s = start(&pki, "").await;
    link_alice(&s, ALICE_RPPS).await;
    let c = &pki.chain;
    let expired = c.card(ALICE_RPPS, 10, OffsetDateTime::now_utc() - time::Duration::days(1));
    refused_card(&pki, &s, &expired, "Votre carte a expiré", "expired").await;
    let revoked = c.card(ALICE_RPPS, REVOKED_SERIAL, in_a_year());
    refused_card(&pki, &s, &revoked, "Votre carte a été révoquée", "revoked").await;
    // Same names as the real chain, other keys: not ours.
    let forged = Chain::new().card(ALICE_RPPS, 11, in_a_year());
    refused_card(&pki, &s, &forged, "autorité de certification inconnue", "wrong_issuer").await;
    let someone_else = c.card(OTHER_RPPS, 12, in_a_year());
    refused_card(&pki, &s, &someone_else, "ne correspond pas à votre compte", "idnat_mismatch").await;

    // No certificate at all.
    let b = pki.browser(None);
    let rp = web(&s).await;
    let url = format!("{}&acr_values=loa3", rp::auth_request(&rp, &[]).url);
    let id = password_then_card_step(&b, &s, &url).await;
    refusal(card_step(&b, &s, &id).await, "Aucune carte n&#39;a été présentée");

    // In English on request.
    let b = pki.browser(Some(&revoked));
    let url = format!("{}&acr_values=loa3&ui_locales=en", rp::auth_request(&rp, &[]).url);
    let id = password_then_card_step_en(&b, &s, &url).await;
    let r = b
        .http
        .get(format!("{}/login/card?id={id}", card_base(&s)))
        .header("accept-language", "en")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("Your card has been revoked"));

    // The card's idNat is never moved to alice, and nothing else was linked.
    let alice = s.storage().account_by_username(ALICE.0).await.unwrap().unwrap();
    let ids = s.components().store.national_ids(alice.id).await.unwrap();
    assert_eq!(ids.len(), 1);
    s.stop().await;
}

async fn password_then_card_step_en(b: &Browser, s: &Server, url: &str) -> String {
    let Step::LoginForm(login) = b.start(url).await else {
        panic!("login form")
    };
    match b.submit_login(&s.base, &login, ALICE.0, ALICE.1).await {
        Step::LoginForm(p) => pending_id(&p),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_crl_past_its_next_update_fails_closed() {
    let pki = Pki::new();
    let s = start(&pki, "").await;
    link_alice(&s, ALICE_RPPS).await;
    // The CRL on disk is valid one day: two days later, no card is accepted.
    s.clock.advance(Duration::from_secs(2 * 24 * 3600));
    let card = pki.chain.card(ALICE_RPPS, 20, in_a_year());
    refused_card(&pki, &s, &card, "liste des cartes révoquées n&#39;est plus à jour", "crl_stale").await;
    s.stop().await;

    // With `accept_stale_crl`, the operator chose availability.
    let s = start(&pki, "accept_stale_crl = true").await;
    link_alice(&s, ALICE_RPPS).await;
    s.clock.advance(Duration::from_secs(2 * 24 * 3600));
    let b = pki.browser(Some(&card));
    let rp = web(&s).await;
    let url = format!("{}&acr_values=loa3", rp::auth_request(&rp, &[]).url);
    let id = password_then_card_step(&b, &s, &url).await;
    assert!(matches!(card_step(&b, &s, &id).await, Step::Callback(_)));
    s.stop().await;
}

#[tokio::test]
async fn crls_are_reloaded_from_disk_on_schedule() {
    let pki = Pki::new();
    let s = start(&pki, "crl_refresh_secs = 1").await;
    link_alice(&s, ALICE_RPPS).await;
    let card = pki.chain.card(ALICE_RPPS, 30, in_a_year());
    // The card is good; then its issuer revokes it and the new CRL is copied to disk.
    let b = pki.browser(Some(&card));
    let rp = web(&s).await;
    let url = format!("{}&acr_values=loa3", rp::auth_request(&rp, &[]).url);
    let id = password_then_card_step(&b, &s, &url).await;
    assert!(matches!(card_step(&b, &s, &id).await, Step::Callback(_)));
    std::fs::write(
        pki.dir.join("ACI-EL-PP-TEST.crl"),
        pki.chain.crl(&[REVOKED_SERIAL, 30], time::Duration::days(1)),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    refused_card(&pki, &s, &card, "Votre carte a été révoquée", "revoked").await;
    // The change is on record (only changes and failures are: an unchanged reload is not).
    let reloads = || async {
        s.storage()
            .audit_records(1000)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|r| match r.event {
                relais::domain::audit::AuditEvent::ConfigurationReloaded { what, success, detail } => Some((what, success, detail)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let seen = reloads().await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].0.as_str(), seen[0].1), ("card_crls", true), "{seen:?}");
    // A broken CRL file: the reload fails, is audited, and the previous CRLs stay in force.
    std::fs::write(pki.dir.join("ACI-EL-PP-TEST.crl"), "not a CRL").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let seen = reloads().await;
    assert!(
        seen.iter()
            .any(|(w, ok, d)| w == "card_crls" && !ok && d.contains("previous CRLs stay")),
        "{seen:?}"
    );
    refused_card(&pki, &s, &card, "Votre carte a été révoquée", "revoked").await;
    s.stop().await;
}

#[tokio::test]
async fn first_card_use_establishes_the_mapping_when_policy_allows() {
    let pki = Pki::new();
    let card = pki.chain.card(ALICE_RPPS, 40, in_a_year());
    // Without the policy: alice has no national identity, the card cannot be used.
    let s = start(&pki, "").await;
    refused_card(&pki, &s, &card, "rattaché à aucune identité nationale", "no_mapping").await;
    s.stop().await;

    let s = start(&pki, "establish_mapping = true").await;
    let b = pki.browser(Some(&card));
    let rp = web(&s).await;
    let req = rp::auth_request(&rp, &[]);
    let url = format!("{}&acr_values=loa3", req.url);
    let id = password_then_card_step(&b, &s, &url).await;
    let Step::Callback(q) = card_step(&b, &s, &id).await else {
        panic!("card login did not return to the client")
    };
    assert_eq!(id_token(&rp, req, &q).await["amr"], json!(["pwd", "sc", "pin", "mfa", "hwk"]));
    let alice = s.storage().account_by_username(ALICE.0).await.unwrap().unwrap();
    let ids = s.components().store.national_ids(alice.id).await.unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0].idnat.as_str(), format!("8{ALICE_RPPS}"));
    assert!(ids[0].verified);
    assert_eq!(ids[0].provenance.as_str(), "card_proof");
    let kinds = s.audit_kinds().await;
    for k in ["card_mapping_established", "identity_linked", "card_login"] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    // From now on, another card is a mismatch.
    let other = pki.chain.card(OTHER_RPPS, 41, in_a_year());
    refused_card(&pki, &s, &other, "ne correspond pas à votre compte", "idnat_mismatch").await;
    s.stop().await;
}

/// nginx's `$ssl_client_escaped_cert`: the PEM, URL-encoded.
fn nginx_escaped(pem: &str) -> String {
    let cert_only = &pem[..pem.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----\n".len()];
    url::form_urlencoded::byte_serialize(cert_only.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[tokio::test]
async fn the_certificate_header_counts_only_from_a_trusted_proxy() {
    let pki = Pki::new();
    // The proxy is 127.0.0.2; the tests' browsers connect from 127.0.0.1.
    let s = start(&pki, "card_alone = true\ntrusted_proxies = [\"127.0.0.2\"]").await;
    link_alice(&s, ALICE_RPPS).await;
    let header = nginx_escaped(&pki.chain.card(ALICE_RPPS, 50, in_a_year()));
    let rp = web(&s).await;

    // From an untrusted address (on the plain listener), the header is ignored and audited.
    let b = Browser::new();
    let Step::LoginForm(login) = b.start(&rp::auth_request(&rp, &[]).url).await else {
        panic!("login form")
    };
    let r = b
        .http
        .get(s.url(&format!("/login/card?id={}", pending_id(&login))))
        .header("X-SSL-Client-Cert", &header)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("Aucune carte n&#39;a été présentée"));
    let ignored = s.audit_events("card_header_ignored").await;
    assert_eq!(ignored.len(), 1, "{ignored:?}");

    // From the trusted proxy, the same header logs in.
    let proxy = Browser {
        http: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
            .build()
            .unwrap(),
    };
    let direct = format!("http://127.0.0.1:{}", s.running.addr.port());
    let req = rp::auth_request(&rp, &[]);
    let Step::LoginForm(login) = proxy.start(&req.url.replacen(&s.base, &direct, 1)).await else {
        panic!("login form")
    };
    let r = proxy
        .http
        .get(format!("{direct}/login/card?id={}", pending_id(&login)))
        .header("X-SSL-Client-Cert", &header)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let next = r.headers()["location"].to_str().unwrap().replacen(&s.base, &direct, 1);
    let r = proxy.get(&next).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let q = query(r.headers()["location"].to_str().unwrap());
    let claims = id_token(&rp, req, &q).await;
    assert_eq!(claims["amr"], json!(["sc", "pin", "mfa", "hwk"]));
    let logins = s.audit_events("card_login").await;
    assert!(logins.iter().any(|e| e["success"] == true && e["source"] == "proxy"), "{logins:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_card_proof_only_completes_in_the_browser_of_the_login() {
    let pki = Pki::new();
    let s = start(&pki, "card_alone = true").await;
    link_alice(&s, ALICE_RPPS).await;
    let rp = web(&s).await;
    // The attacker starts a login and gets the victim to present a card for it.
    let attacker = pki.browser(None);
    let Step::LoginForm(login) = attacker.start(&rp::auth_request(&rp, &[]).url).await else {
        panic!("login form")
    };
    let victim = pki.browser(Some(&pki.chain.card(ALICE_RPPS, 60, in_a_year())));
    let CardAnswer::Proof(next) = present_card(&victim, &s, &pending_id(&login)).await else {
        panic!("the card is good")
    };
    // The victim's browser lacks the login's binding cookie: no session for anyone.
    let r = victim.get(&next).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{}", r.text().await.unwrap());
    // And the proof is gone.
    let r = attacker.get(&next).await;
    assert!(!r.status().is_redirection());
    s.stop().await;
}

/// Card logins with a new TLS handshake each (a new client per login): prints logins/s.
/// `cargo nextest run -p relais-tests --test e2e card_login_throughput --run-ignored only`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn card_login_throughput() {
    let total: usize = std::env::var("CARD_LOGINS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let concurrency: usize = std::env::var("CARD_CONCURRENCY").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let pki = std::sync::Arc::new(Pki::new());
    let s = std::sync::Arc::new(start(&pki, "card_alone = true").await);
    link_alice(&s, ALICE_RPPS).await;
    let card = std::sync::Arc::new(pki.chain.card(ALICE_RPPS, 70, in_a_year()));
    let rp = std::sync::Arc::new(web(&s).await);
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (pki, s, card, rp) = (pki.clone(), s.clone(), card.clone(), rp.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            for _ in (w..total).step_by(concurrency) {
                // A new client: a new TLS handshake with the card, as each login of a person.
                let b = pki.browser(Some(&card));
                let req = rp::auth_request(&rp, &[]);
                let Step::LoginForm(login) = b.start(&req.url).await else {
                    panic!("login form")
                };
                let Step::Callback(q) = card_step(&b, &s, &pending_id(&login)).await else {
                    panic!("card login failed")
                };
                let _ = id_token(&rp, req, &q).await;
                done += 1;
            }
            done
        }));
    }
    let mut n = 0;
    for t in tasks {
        n += t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "card logins (authorize, TLS handshake with client certificate, chain+CRL check, completion, code exchange): {n} in {secs:.2}s = {:.1}/s, concurrency {concurrency}",
        n as f64 / secs
    );
}
