//! The Pro Santé Connect profile, driven by a PSC simulator: a relying party written with the
//! `openidconnect` crate that plays PSC's broker and validates the id_token the way psc.md
//! §1–2 says PSC does (signature and issuer, `tid` allow-list, `amr` allow-list, `auth_time`
//! within 4 hours) before it would log the user into a national service.
use crate::browser::{Browser, Step};
use crate::harness::{self, Db, Server, Sessions};
use crate::identity::person;
use crate::rp;
use openidconnect::TokenResponse;
use relais::domain::management::{NewClient, PscEnvironment};
use relais::protocol::ClientId;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;

const TID: &str = "TID-CHU-DEMO";

/// What PSC is configured to accept from this FI.
struct PscPolicy {
    tenants: Vec<&'static str>,
    amr: Vec<&'static str>,
}

struct Psc {
    rp: rp::Rp,
    redirect: String,
    policy: PscPolicy,
}

impl Psc {
    async fn new(s: &Server, min_acr: &str, policy: PscPolicy) -> Self {
        // Registered exactly as `relais client add-psc --environment sandbox --hint chu-demo` does.
        let redirect = PscEnvironment::Sandbox.broker_redirect_uri("chu-demo").unwrap();
        let new = NewClient::psc(ClientId::parse("psc").unwrap(), redirect.clone(), min_acr);
        let (_, secret) = s.components().management("test").register_client(new).await.unwrap();
        let rp = rp::client(rp::metadata(&s.base).await, "psc", secret.as_deref(), redirect.as_str());
        Self {
            rp,
            redirect: redirect.to_string(),
            policy,
        }
    }

    /// PSC's checks of the id_token; `Ok(claims)` means PSC would log the user in.
    async fn complete(&self, s: &Server, req: rp::AuthRequest, code: &str) -> Result<Value, String> {
        let tokens = self
            .rp
            .exchange_code(rp::code(code))
            .unwrap()
            .set_pkce_verifier(req.verifier)
            .request_async(&rp::http)
            .await
            .map_err(|e| format!("token: {e:?}"))?;
        let id = tokens.id_token().ok_or("no id_token")?;
        let verifier = self.rp.id_token_verifier().set_allowed_algs(rp::algs());
        id.claims(&verifier, &req.nonce).map_err(|e| format!("id_token: {e}"))?;
        let c = rp::payload(&id.to_string());
        if !self.policy.tenants.contains(&c["tid"].as_str().unwrap_or("")) {
            return Err(format!("tid {} is not allowed", c["tid"]));
        }
        let amr: Vec<&str> = c["amr"].as_array().ok_or("no amr")?.iter().filter_map(Value::as_str).collect();
        if amr.is_empty() || !amr.iter().all(|a| self.policy.amr.contains(a)) {
            return Err(format!("amr {amr:?} is not allowed"));
        }
        let now = relais::domain::ports::Clock::unix(&s.clock);
        if now - c["auth_time"].as_i64().ok_or("no auth_time")? > 4 * 3600 {
            return Err("authentication older than 4 hours".into());
        }
        Ok(c)
    }
}

/// Relais configured with a tenant id; a PSC client; Élodie Martin mapped and verified.
async fn setup(min_acr: &str, policy: PscPolicy) -> (Server, Psc) {
    setup_with(min_acr, policy, "").await
}

async fn setup_with(min_acr: &str, policy: PscPolicy, extra: &str) -> (Server, Psc) {
    let s = harness::start_with(
        Db::Sqlite,
        Sessions::Memory,
        &format!("{extra}[psc]\ntenant_id = \"{TID}\"\nterms_version = \"2026-01\"\n"),
    )
    .await;
    person(&s, "emartin", "Élodie", "Martin").await;
    person(&s, "secretaire", "Anne", "Administrative").await;
    let m = s.components().management("test");
    m.import_annuaire(crate::identity::SAMPLE.as_bytes(), &[crate::identity::FINESS.to_string()], false)
        .await
        .unwrap();
    let psc = Psc::new(&s, min_acr, policy).await;
    (s, psc)
}

fn sandbox_policy() -> PscPolicy {
    // A sandbox FI that declared `pwd` too, for the loa1 tests below (password-only logins).
    PscPolicy {
        tenants: vec![TID],
        amr: vec!["pwd", "hwk", "sc", "pin", "mfa", "user"],
    }
}

#[tokio::test]
async fn a_mapped_professional_is_relayed_after_accepting_the_terms() {
    let (s, psc) = setup("loa1", sandbox_policy()).await;
    let b = Browser::new();
    let req = rp::auth_request(&psc.rp, &["profile"]);
    assert!(req.url.starts_with(&s.base));
    let Step::LoginForm(login) = b.start(&req.url).await else {
        panic!()
    };
    let Step::Terms(terms) = b.submit_login(&s.base, &login, "emartin", "password-long-1").await else {
        panic!("terms first")
    };
    let page = b.get(&s.url(&terms)).await.text().await.unwrap();
    assert!(
        page.contains("2026-01") && page.contains("accepte") && page.contains("Pro Santé Connect"),
        "{page}"
    );
    let Step::Callback(cb) = b.answer_terms(&s.base, &terms, true).await else {
        panic!()
    };
    assert!(
        psc.redirect
            .starts_with("https://auth.bas.psc.esante.gouv.fr/auth/realms/esante-wallet/broker/chu-demo/endpoint")
    );
    let claims = psc.complete(&s, req, &cb["code"]).await.expect("PSC accepts the token");
    assert_eq!(claims["tid"], TID);
    assert_eq!(claims["oid"], claims["sub"], "oid is the immutable person id");
    assert_eq!(claims["idnat"], "899926018153");
    assert_eq!(claims["SubjectNameID"], "899926018153");
    assert_eq!(claims["preferred_username"], "emartin");

    // The acceptance is recorded once: the next login goes straight through.
    let req = rp::auth_request(&psc.rp, &[]);
    let Step::Callback(cb) = b.start(&req.url).await else {
        panic!("SSO, terms already accepted")
    };
    psc.complete(&s, req, &cb["code"]).await.unwrap();
    let kinds = s.audit_kinds().await;
    assert_eq!(kinds.iter().filter(|k| *k == "terms_accepted").count(), 1);
    // Each issuance to PSC names the idNat it relayed (issue #6: "the idNat relayed").
    let relayed: Vec<_> = s
        .storage()
        .audit_records(1000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| match r.event {
            relais::domain::audit::AuditEvent::TokenIssued { idnat, .. } => Some(idnat),
            _ => None,
        })
        .collect();
    assert_eq!(relayed, vec![Some("899926018153".to_owned()); 2], "{relayed:?}");

    // Past 4 hours, Relais asks for a new login before PSC would refuse the token.
    s.clock.advance(Duration::from_secs(4 * 3600 + 60));
    assert!(matches!(b.start(&rp::auth_request(&psc.rp, &[]).url).await, Step::LoginForm(_)));
    s.stop().await;
}

#[tokio::test]
async fn staff_without_a_verified_national_identity_are_not_relayed() {
    let (s, psc) = setup("loa1", sandbox_policy()).await;
    // Unmapped administrative staff: a clear page, no code.
    let b = Browser::new();
    let Step::LoginForm(login) = b.start(&rp::auth_request(&psc.rp, &[]).url).await else {
        panic!()
    };
    match b.submit_login(&s.base, &login, "secretaire", "password-long-1").await {
        Step::Page(StatusCode::FORBIDDEN, page) => assert!(page.contains("identité nationale"), "{page}"),
        other => panic!("{other:?}"),
    }
    // The same person still gets local SSO.
    let web = rp::client(rp::metadata(&s.base).await, "web", Some(&s.web_secret), harness::CALLBACK);
    assert!(matches!(b.start(&rp::auth_request(&web, &[]).url).await, Step::Callback(q) if q.contains_key("code")));

    // A mapping from a file is not a proof: still not eligible.
    let m = s.components().management("test");
    m.import_mapping_file("secretaire;899983016611\n", false).await.unwrap();
    match b.start(&rp::auth_request(&psc.rp, &[]).url).await {
        Step::Page(StatusCode::FORBIDDEN, _) => {}
        other => panic!("{other:?}"),
    }
    assert!(
        s.storage()
            .audit_records(50)
            .await
            .unwrap()
            .iter()
            .any(|r| format!("{:?}", r.event).contains("not eligible for Pro Santé Connect"))
    );
    s.stop().await;
}

#[tokio::test]
async fn the_default_profile_refuses_a_password_alone_and_psc_checks_tenant_and_amr() {
    // Default PSC profile: the strongest acr. A password login cannot reach it.
    let (s, psc) = setup("loa3", sandbox_policy()).await;
    let b = Browser::new();
    let Step::LoginForm(login) = b.start(&rp::auth_request(&psc.rp, &[]).url).await else {
        panic!()
    };
    let Step::Callback(cb) = b.submit_login(&s.base, &login, "emartin", "password-long-1").await else {
        panic!()
    };
    assert_eq!(cb.get("error").map(String::as_str), Some("access_denied"));
    s.stop().await;

    // PSC's own checks fail at PSC for a wrong tenant or an amr it was not told about.
    for (policy, expected) in [
        (
            PscPolicy {
                tenants: vec!["TID-OTHER"],
                amr: vec!["pwd"],
            },
            "tid",
        ),
        (
            PscPolicy {
                tenants: vec![TID],
                amr: vec!["hwk", "mfa"],
            },
            "amr",
        ),
    ] {
        let (s, psc) = setup("loa1", policy).await;
        let b = Browser::new();
        let req = rp::auth_request(&psc.rp, &[]);
        let Step::LoginForm(login) = b.start(&req.url).await else {
            panic!()
        };
        let Step::Terms(terms) = b.submit_login(&s.base, &login, "emartin", "password-long-1").await else {
            panic!()
        };
        let Step::Callback(cb) = b.answer_terms(&s.base, &terms, true).await else {
            panic!()
        };
        let err = psc.complete(&s, req, &cb["code"]).await.unwrap_err();
        assert!(err.contains(expected), "{err}");
        s.stop().await;
    }
}

#[tokio::test]
async fn declining_the_terms_returns_access_denied_and_forged_answers_are_refused() {
    let (s, psc) = setup("loa1", sandbox_policy()).await;
    let b = Browser::new();
    let Step::LoginForm(login) = b.start(&rp::auth_request(&psc.rp, &[]).url).await else {
        panic!()
    };
    let Step::Terms(terms) = b.submit_login(&s.base, &login, "emartin", "password-long-1").await else {
        panic!()
    };
    let page = b.get(&s.url(&terms)).await.text().await.unwrap();
    let id = crate::browser::field(&page, "terms_id").unwrap();
    let r = b
        .http
        .post(s.url("/terms"))
        .form(&[("terms_id", id.as_str()), ("csrf", "forged"), ("answer", "accept")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let Step::Callback(cb) = b.answer_terms(&s.base, &terms, false).await else {
        panic!()
    };
    assert_eq!(cb.get("error").map(String::as_str), Some("access_denied"));
    assert!(!s.audit_kinds().await.iter().any(|k| k == "terms_accepted"));
    s.stop().await;
}

#[tokio::test]
async fn with_a_security_key_the_default_loa3_profile_is_met_and_psc_accepts_the_amr() {
    use crate::fido2;
    use webauthn_authenticator_rs::softtoken::{AAGUID, SoftToken};
    let (mut token, ca) = SoftToken::new(true).unwrap();
    let extra = format!("[fido2]\nattestation_policy = \"{}\"\n", fido2::trust_file(&ca, AAGUID));
    // PSC as declared for this FI: the key's amr set only, no password-only set.
    let policy = PscPolicy {
        tenants: vec![TID],
        amr: vec!["pwd", "hwk", "user", "mfa"],
    };
    let (s, psc) = setup_with("loa3", policy, &extra).await;
    let b = Browser::new();
    let req = rp::auth_request(&psc.rp, &[]);
    let Step::LoginForm(login) = b.start(&req.url).await else {
        panic!()
    };
    let Step::LoginForm(key_page) = b.submit_login(&s.base, &login, "emartin", "password-long-1").await else {
        panic!("the key step follows the password")
    };
    let k = fido2::key_step(&b, &s, &key_page).await;
    let (code, _) = s
        .components()
        .management("test")
        .issue_enrolment_code("emartin", 3600)
        .await
        .unwrap();
    assert_eq!(fido2::register(&b, &s, &mut token, &k, Some(&code)).await.0, StatusCode::OK);
    let (st, body) = fido2::authenticate(&b, &s, &mut token, &k).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let terms = body["redirect"].as_str().unwrap().to_owned();
    assert!(terms.starts_with("/terms?id="), "{terms}");
    let Step::Callback(cb) = b.answer_terms(&s.base, &terms, true).await else {
        panic!()
    };
    let claims = psc.complete(&s, req, &cb["code"]).await.expect("PSC accepts the token");
    assert_eq!(claims["acr"], "loa3");
    assert_eq!(claims["amr"], serde_json::json!(["pwd", "hwk", "user", "mfa"]));
    s.stop().await;
}
