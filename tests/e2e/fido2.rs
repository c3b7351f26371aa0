//! FIDO2 security keys end to end: a software authenticator (webauthn-authenticator-rs
//! SoftToken, which attests with its own CA) drives the real JSON endpoints of the key step
//! over HTTP, with the browser's cookies; the id_tokens are checked by the `openidconnect` RP.
use crate::browser::{Browser, Step, data_attribute, field};
use crate::harness::{self, ALICE, CALLBACK, Db, Server, Sessions};
use crate::rp;
use crypto_glue::traits::{EncodePem, LineEndingPem};
use openidconnect::TokenResponse;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};
use webauthn_authenticator_rs::softtoken::{AAGUID, SoftToken};

/// A trust file that admits `ca`'s keys of model `aaguid`.
pub(crate) fn trust_file(ca: &impl EncodePem, aaguid: uuid::Uuid) -> String {
    let pem = ca.to_pem(LineEndingPem::LF).unwrap();
    let dir = std::env::temp_dir().join(harness::unique("relais-fido2"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("attestation.toml");
    std::fs::write(
        &path,
        format!("[[authority]]\nname = \"Test keys\"\ncertificate = \"\"\"\n{pem}\"\"\"\naaguids = [\"{aaguid}\"]\n"),
    )
    .unwrap();
    path.display().to_string()
}

/// Relais trusting the SoftToken's CA for its AAGUID; returns the token too.
async fn setup() -> (Server, SoftToken) {
    let (token, ca) = SoftToken::new(true).unwrap();
    let s = start_trusting(&trust_file(&ca, AAGUID)).await;
    (s, token)
}

async fn start_trusting(policy: &str) -> Server {
    harness::start_with(
        Db::Sqlite,
        Sessions::Memory,
        &format!("[fido2]\nattestation_policy = \"{policy}\"\n"),
    )
    .await
}

async fn web(s: &Server) -> rp::Rp {
    rp::client(rp::metadata(&s.base).await, "web", Some(&s.web_secret), CALLBACK)
}

pub(crate) struct KeyStep {
    pub path: String,
    pub id: String,
    pub csrf: String,
    /// The authentication options the page came with (when the person has keys).
    pub options: Option<Value>,
}

/// Reads the key page the browser was sent to.
pub(crate) async fn key_step(b: &Browser, s: &Server, path: &str) -> KeyStep {
    assert!(path.starts_with("/login/webauthn?id="), "{path}");
    let page = b.get(&s.url(path)).await.text().await.unwrap();
    KeyStep {
        path: path.to_owned(),
        id: field(&page, "login_id").expect("login_id"),
        csrf: field(&page, "csrf").expect("csrf"),
        options: data_attribute(&page, "options").map(|o| serde_json::from_str(&o).unwrap()),
    }
}

/// Authorization request and password: returns the key step.
async fn password_then_key_step(b: &Browser, s: &Server, url: &str) -> KeyStep {
    let Step::LoginForm(login) = b.start(url).await else {
        panic!("login form")
    };
    match b.submit_login(&s.base, &login, ALICE.0, ALICE.1).await {
        Step::LoginForm(p) => key_step(b, s, &p).await,
        other => panic!("expected the key step, got {other:?}"),
    }
}

pub(crate) async fn post(b: &Browser, s: &Server, path: &str, body: Value) -> (StatusCode, Value) {
    let r = b.http.post(s.url(path)).json(&body).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

pub(crate) fn origin(s: &Server) -> Url {
    Url::parse(&s.base).unwrap()
}

pub(crate) async fn register(b: &Browser, s: &Server, token: &mut SoftToken, k: &KeyStep, code: Option<&str>) -> (StatusCode, Value) {
    let (st, options) = post(
        b,
        s,
        "/login/webauthn/options",
        json!({"login_id": k.id, "csrf": k.csrf, "ceremony": "register", "enrolment_code": code}),
    )
    .await;
    if st != StatusCode::OK {
        return (st, options);
    }
    let options: CreationChallengeResponse = serde_json::from_value(options).unwrap();
    let answer = token.do_registration(origin(s), options).unwrap();
    post(
        b,
        s,
        "/login/webauthn/finish",
        json!({"login_id": k.id, "csrf": k.csrf, "credential": answer, "name": "clé bleue"}),
    )
    .await
}

pub(crate) async fn authenticate(b: &Browser, s: &Server, token: &mut SoftToken, k: &KeyStep) -> (StatusCode, Value) {
    let answer = assertion(b, s, token, k).await;
    finish_with(b, s, k, answer).await
}

/// The key step's authentication options, answered by `token`: the credential, not sent yet.
async fn assertion(b: &Browser, s: &Server, token: &mut SoftToken, k: &KeyStep) -> Value {
    let (st, options) = post(
        b,
        s,
        "/login/webauthn/options",
        json!({"login_id": k.id, "csrf": k.csrf, "ceremony": "authenticate"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{options}");
    let options: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    serde_json::to_value(token.do_authentication(origin(s), options).unwrap()).unwrap()
}

/// The options the key page came with, answered by `token` (what the page's script does).
fn page_assertion(s: &Server, token: &mut SoftToken, k: &KeyStep) -> Value {
    let options = k.options.clone().expect("the key page carries its options");
    let options: RequestChallengeResponse = serde_json::from_value(options).unwrap();
    serde_json::to_value(token.do_authentication(origin(s), options).unwrap()).unwrap()
}

/// Sends a credential to the key step's finish endpoint.
async fn finish_with(b: &Browser, s: &Server, k: &KeyStep, credential: Value) -> (StatusCode, Value) {
    post(
        b,
        s,
        "/login/webauthn/finish",
        json!({"login_id": k.id, "csrf": k.csrf, "credential": credential}),
    )
    .await
}

async fn enrolment_code(s: &Server) -> String {
    s.components()
        .management("test")
        .issue_enrolment_code(ALICE.0, 3600)
        .await
        .unwrap()
        .0
}

/// Exchanges the code the key step returned; returns the id_token's claims.
async fn id_token(rp: &rp::Rp, req: rp::AuthRequest, finish: &Value) -> Value {
    let redirect = finish["redirect"].as_str().unwrap_or_else(|| panic!("{finish}"));
    let code = crate::browser::query(redirect)["code"].clone();
    let tokens = rp
        .exchange_code(rp::code(&code))
        .unwrap()
        .set_pkce_verifier(req.verifier)
        .request_async(&rp::http)
        .await
        .unwrap();
    let id = tokens.id_token().unwrap();
    id.claims(&rp.id_token_verifier().set_allowed_algs(rp::algs()), &req.nonce).unwrap();
    rp::payload(&id.to_string())
}

/// Registers a key for alice (enrolment code) and signs in with it; returns the browser.
async fn enrolled(s: &Server, token: &mut SoftToken) -> Browser {
    let b = Browser::new();
    let rp = web(s).await;
    let req = rp::auth_request(&rp, &[]);
    let url = format!("{}&acr_values=loa3", req.url);
    let k = password_then_key_step(&b, s, &url).await;
    assert!(k.options.is_none(), "no key yet, so no ceremony started with the page");
    let code = enrolment_code(s).await;
    let (st, body) = register(&b, s, token, &k, Some(&code)).await;
    if st != StatusCode::OK {
        let audit = s.storage().audit_records(5).await.unwrap();
        panic!("{body} {audit:?}");
    }
    let (st, body) = authenticate(&b, s, token, &k).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let claims = id_token(&rp, req, &body).await;
    assert_eq!(claims["acr"], "loa3");
    b
}

#[tokio::test]
async fn fido2_enrolment_with_a_code_then_password_and_key_give_hwk_mfa_loa3() {
    let (s, mut token) = setup().await;
    enrolled(&s, &mut token).await;

    // A new browser: the password alone no longer ends the login, the key follows.
    let b = Browser::new();
    let rp = web(&s).await;
    let req = rp::auth_request(&rp, &[]);
    let k = password_then_key_step(&b, &s, &req.url).await;
    let (st, body) = authenticate(&b, &s, &mut token, &k).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let claims = id_token(&rp, req, &body).await;
    assert_eq!(claims["amr"], json!(["pwd", "hwk", "user", "mfa"]));
    assert_eq!(claims["acr"], "loa3");

    // The challenge was consumed: the same answer cannot be replayed.
    let (st, _) = post(
        &b,
        &s,
        "/login/webauthn/finish",
        json!({"login_id": k.id, "csrf": k.csrf, "credential": {}}),
    )
    .await;
    assert_ne!(st, StatusCode::OK);

    let keys = s.components().management("test").security_keys_of(ALICE.0).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].aaguid, AAGUID);
    assert_eq!(keys[0].name, "clé bleue");
    assert!(keys[0].last_used_at.is_some());
    let kinds = s.audit_kinds().await;
    for k in ["fido2_enrolment_code_issued", "fido2_key_registered", "fido2_authentication"] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    s.stop().await;
}

/// The key page comes with the authentication ceremony already started, so the page's script
/// asks for the key at once: its options alone log the person in. Loading the page again starts
/// a new ceremony and the earlier page's challenge is refused; asking for options again works.
#[tokio::test]
async fn fido2_the_key_page_carries_its_challenge_and_a_reload_replaces_it() {
    let (s, mut token) = setup().await;
    enrolled(&s, &mut token).await;
    let rp = web(&s).await;
    let b = Browser::new();
    let req = rp::auth_request(&rp, &[]);
    let k = password_then_key_step(&b, &s, &req.url).await;
    let answer = page_assertion(&s, &mut token, &k);
    let (st, body) = finish_with(&b, &s, &k, answer).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let claims = id_token(&rp, req, &body).await;
    assert_eq!(claims["amr"], json!(["pwd", "hwk", "user", "mfa"]));
    assert_eq!(claims["acr"], "loa3");

    let b = Browser::new();
    let req = rp::auth_request(&rp, &[]);
    let first = password_then_key_step(&b, &s, &req.url).await;
    let reloaded = key_step(&b, &s, &first.path).await;
    assert_eq!(reloaded.id, first.id);
    assert_ne!(reloaded.options, first.options, "a new challenge");
    let stale = page_assertion(&s, &mut token, &first);
    let (st, body) = finish_with(&b, &s, &first, stale).await;
    assert!(st.is_client_error(), "the first page's challenge was answered {st}: {body}");
    assert!(body.get("redirect").is_none(), "{body}");
    // What the page's script does after a failure: fresh options, and the key works.
    let (st, body) = authenticate(&b, &s, &mut token, &reloaded).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(id_token(&rp, req, &body).await["acr"], "loa3");
    s.stop().await;
}

#[tokio::test]
async fn fido2_enrolment_without_a_valid_code_is_refused() {
    let (s, mut token) = setup().await;
    let b = Browser::new();
    let rp = web(&s).await;
    let url = format!("{}&acr_values=loa3", rp::auth_request(&rp, &[]).url);
    let k = password_then_key_step(&b, &s, &url).await;
    let (st, body) = register(&b, &s, &mut token, &k, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "access_denied");
    // French by default, as the page; in the page's language when the script says which.
    let text = |body: &Value| body["error_description"].as_str().unwrap().to_owned();
    assert!(text(&body).contains("code d'enrôlement remis par votre administrateur"), "{body}");
    let english = b
        .http
        .post(s.url("/login/webauthn/options"))
        .header("accept-language", "en")
        .json(&json!({"login_id": k.id, "csrf": k.csrf, "ceremony": "register", "enrolment_code": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(english.status(), StatusCode::FORBIDDEN);
    let body: Value = english.json().await.unwrap();
    assert!(
        text(&body).contains("an enrolment code from your administrator is required"),
        "{body}"
    );
    let (st, body) = register(&b, &s, &mut token, &k, Some("AAAA-BBBB-CCCC-DDDD")).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(text(&body), "Le code d'enrôlement est erroné, expiré ou déjà utilisé.");
    // A code is single use.
    let code = enrolment_code(&s).await;
    let (st, _) = register(&b, &s, &mut token, &k, Some(&code)).await;
    assert_eq!(st, StatusCode::OK);
    let b2 = Browser::new();
    let url = format!("{}&acr_values=loa3", rp::auth_request(&rp, &[]).url);
    let k2 = password_then_key_step(&b2, &s, &url).await;
    // Alice has a key now: another needs a key verified first, not the used code.
    let (st, body) = register(&b2, &s, &mut token, &k2, Some(&code)).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(s.components().management("test").security_keys_of(ALICE.0).await.unwrap().len() == 1);
    s.stop().await;
}

#[tokio::test]
async fn fido2_keys_from_an_untrusted_ca_or_model_are_refused_at_registration() {
    let (mut token, ca) = SoftToken::new(true).unwrap();
    let (_, other_ca) = SoftToken::new(true).unwrap();
    for policy in [
        trust_file(&other_ca, AAGUID),
        trust_file(&ca, uuid::Uuid::parse_str("cb69481e-8ff7-4039-93ec-0a2729a154a8").unwrap()),
    ] {
        let s = start_trusting(&policy).await;
        let b = Browser::new();
        let rp = web(&s).await;
        let url = format!("{}&acr_values=loa3", rp::auth_request(&rp, &[]).url);
        let k = password_then_key_step(&b, &s, &url).await;
        let code = enrolment_code(&s).await;
        let (st, body) = register(&b, &s, &mut token, &k, Some(&code)).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
        assert!(body["error_description"].as_str().unwrap().contains("n'est pas autorisé"), "{body}");
        assert!(
            s.components()
                .management("test")
                .security_keys_of(ALICE.0)
                .await
                .unwrap()
                .is_empty()
        );
        s.stop().await;
    }
}

/// A FIDO MDS3 blob in the real layout (a JWS with the signer's chain in `x5c`, leaf first),
/// signed here: RS256 with an RSA key (as FIDO's), ES256 otherwise.
fn mds_blob(signer_key: &rcgen::KeyPair, chain: &[&[u8]], entries: Value) -> String {
    mds_blob_numbered(42, signer_key, chain, entries)
}

/// As `mds_blob`, with the blob's serial number (`no`).
fn mds_blob_numbered(no: u64, signer_key: &rcgen::KeyPair, chain: &[&[u8]], entries: Value) -> String {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
    use base64::Engine;
    let std_b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(d);
    let b = relais::domain::crypto::b64url;
    let rsa = signer_key.algorithm() == &rcgen::PKCS_RSA_SHA256;
    let alg = if rsa { "RS256" } else { "ES256" };
    let header = json!({"alg": alg, "typ": "JWT", "x5c": chain.iter().map(|c| std_b64(c)).collect::<Vec<_>>()});
    let payload = json!({"legalHeader": "test", "no": no, "nextUpdate": "2099-01-01", "entries": entries});
    let input = format!("{}.{}", b(header.to_string().as_bytes()), b(payload.to_string().as_bytes()));
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let sig = if rsa {
        let pair = RsaKeyPair::from_pkcs8(&signer_key.serialize_der()).unwrap();
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig).unwrap();
        sig
    } else {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &signer_key.serialize_der()).unwrap();
        pair.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec()
    };
    format!("{input}.{}", b(&sig))
}

/// Writes an attestation trust file `name`.toml in `dir` admitting the SoftToken's model from
/// the MDS blob `blob_file` (signer `mds.test.invalid`, root `mds-root.pem`); `extra` lines go
/// into its `[mds]` table.
fn mds_trust_file(dir: &std::path::Path, name: &str, blob_file: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[mds]\nblob_file = \"{blob_file}\"\nroot_certificate_file = \"mds-root.pem\"\nsigner_name = \"mds.test.invalid\"\n{extra}aaguids = [\"{AAGUID}\"]\n"
        ),
    )
    .unwrap();
    path
}

/// The MDS entries of a blob describing the SoftToken model whose attestation CA is `ca`, with
/// the status reports FIDO_CERTIFIED_L1 then `status`.
fn mds_entries(ca: &impl EncodePem, status: &str) -> Value {
    let pem = ca.to_pem(LineEndingPem::LF).unwrap();
    // The PEM body is the DER in base64, as MDS lists roots.
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    json!([{
        "aaguid": AAGUID.to_string(),
        "metadataStatement": {"description": "SoftToken (test)", "attestationRootCertificates": [body]},
        "statusReports": [{"status": "FIDO_CERTIFIED_L1"}, {"status": status}],
    }])
}

/// An attestation trust file admitting the SoftToken model of `ca` from an MDS blob numbered
/// `no` (signed under a root made here); returns its path.
pub(crate) fn mds_policy_admitting(ca: &impl EncodePem, no: u64) -> String {
    let entries = mds_entries(ca, "FIDO_CERTIFIED_L2");
    let (root, signer_key, signer_cert) = mds_signer("Test FIDO MDS root");
    let dir = std::env::temp_dir().join(harness::unique("relais-mds-policy"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mds-root.pem"), root.pem()).unwrap();
    std::fs::write(dir.join("blob.jwt"), mds_blob_numbered(no, &signer_key, &[&signer_cert], entries)).unwrap();
    mds_trust_file(&dir, "trust", "blob.jwt", "").display().to_string()
}

/// The serial number of the blob signer's certificate `mds_signer` makes.
const MDS_SIGNER_SERIAL: u64 = 7;

/// A CRL of `issuer` revoking `revoked`, valid until `next_update` from now (negative: stale).
fn mds_crl(issuer: &rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, revoked: &[u64], next_update: time::Duration) -> String {
    let now = time::OffsetDateTime::now_utc();
    rcgen::CertificateRevocationListParams {
        this_update: now - time::Duration::days(30),
        next_update: now + next_update,
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(*s),
                revocation_time: now - time::Duration::days(1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .unwrap()
    .pem()
    .unwrap()
}

/// An MDS root and a blob signer certified by it.
fn mds_signer(name: &str) -> (rcgen::CertifiedIssuer<'static, rcgen::KeyPair>, rcgen::KeyPair, Vec<u8>) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let root = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(vec!["mds.test.invalid".to_string()]).unwrap();
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.serial_number = Some(rcgen::SerialNumber::from(MDS_SIGNER_SERIAL));
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &root).unwrap();
    (root, key, cert.der().to_vec())
}

/// Models admitted from a FIDO MDS3 blob read from disk: the trust file lists only AAGUIDs, the
/// attestation roots come from the blob, whose signature and chain are checked at start; a model
/// the blob reports compromised is refused at registration; an altered blob or one signed under
/// another root stops Relais with the reason.
#[tokio::test]
async fn fido2_models_admitted_from_an_mds3_blob() {
    let (mut token, ca) = SoftToken::new(true).unwrap();
    let entries = |status: &str| mds_entries(&ca, status);
    let (root, signer_key, signer_cert) = mds_signer("Test FIDO MDS root");
    let dir = std::env::temp_dir().join(harness::unique("relais-mds"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mds-root.pem"), root.pem()).unwrap();
    let policy = |name: &str, blob: String| -> std::path::PathBuf {
        std::fs::write(dir.join(format!("{name}.jwt")), blob).unwrap();
        mds_trust_file(&dir, name, &format!("{name}.jwt"), "")
    };
    let register_with_code = async |s: &Server, token: &mut SoftToken| {
        let b = Browser::new();
        let rp = web(s).await;
        let url = format!("{}&acr_values=loa3", rp::auth_request(&rp, &[]).url);
        let k = password_then_key_step(&b, s, &url).await;
        let code = enrolment_code(s).await;
        register(&b, s, token, &k, Some(&code)).await
    };

    // As FIDO's: an RSA signer under an intermediate, RS256.
    let (rsa_key, rsa_chain) = {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
        let mut ca = CertificateParams::default();
        ca.distinguished_name.push(DnType::CommonName, "Test MDS intermediate");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let inter = CertifiedIssuer::signed_by(ca, KeyPair::generate().unwrap(), &root).unwrap();
        let mut leaf = CertificateParams::new(vec!["mds.test.invalid".to_string()]).unwrap();
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let cert = leaf.signed_by(&key, &inter).unwrap();
        (key, vec![cert.der().to_vec(), inter.der().to_vec()])
    };
    let chain: Vec<&[u8]> = rsa_chain.iter().map(Vec::as_slice).collect();
    let certified = policy("certified", mds_blob(&rsa_key, &chain, entries("FIDO_CERTIFIED_L2")));
    let s = start_trusting(&certified.display().to_string()).await;
    let (st, body) = register_with_code(&s, &mut token).await;
    assert_eq!(st, StatusCode::OK, "a model the blob vouches for registers: {body}");
    s.stop().await;

    let compromised = policy(
        "compromised",
        mds_blob(&signer_key, &[&signer_cert], entries("ATTESTATION_KEY_COMPROMISE")),
    );
    let s = start_trusting(&compromised.display().to_string()).await;
    let (st, body) = register_with_code(&s, &mut token).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("n'est pas autorisé"), "{body}");
    s.stop().await;

    let load = |p: &std::path::Path| {
        relais::adapters::webauthn::load_trust_policy(p)
            .map(|policy| assert_eq!(policy.mds.map(|b| b.number), Some(42)))
            .map_err(|e| e.to_string())
    };
    let genuine = mds_blob(&signer_key, &[&signer_cert], entries("FIDO_CERTIFIED_L1"));
    let mut parts: Vec<String> = genuine.split('.').map(str::to_owned).collect();
    let mut payload: Value = serde_json::from_slice(&relais::domain::crypto::b64url_decode(&parts[1]).unwrap()).unwrap();
    payload["entries"][0]["statusReports"] = json!([{"status": "FIDO_CERTIFIED_L3"}]);
    parts[1] = relais::domain::crypto::b64url(payload.to_string().as_bytes());
    let altered = policy("altered", parts.join("."));
    assert!(load(&altered).unwrap_err().contains("bad signature"));
    let (_, other_key, other_cert) = mds_signer("Someone else's root");
    let elsewhere = policy("elsewhere", mds_blob(&other_key, &[&other_cert], entries("FIDO_CERTIFIED_L1")));
    assert!(load(&elsewhere).unwrap_err().contains("does not chain to the MDS root"));
    // Certified by the same root, but for another host: any server's certificate from a public
    // root must not pass for the MDS.
    let some_server = {
        use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyPair};
        let mut p = CertificateParams::new(vec!["www.example.invalid".to_string()]).unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &root).unwrap();
        policy("some-server", mds_blob(&key, &[cert.der()], entries("FIDO_CERTIFIED_L1")))
    };
    assert!(load(&some_server).unwrap_err().contains("is not signed by mds.test.invalid"));
    let unlisted = dir.join("unlisted.toml");
    std::fs::write(
        &unlisted,
        "[mds]\nblob_file = \"certified.jwt\"\nroot_certificate_file = \"mds-root.pem\"\nsigner_name = \"mds.test.invalid\"\naaguids = [\"cb69481e-8ff7-4039-93ec-0a2729a154a8\"]\n",
    )
    .unwrap();
    assert!(load(&unlisted).unwrap_err().contains("is not in the blob"));
    assert_eq!(load(&certified), Ok(()));
    std::fs::remove_dir_all(dir).ok();
}

/// A FIDO MDS3 blob older than one already used (a lower `no`) stops Relais with the reason, on
/// both databases: put back, it could re-admit a model reported compromised since. The same
/// blob again (a restart, another replica) and a newer one start; each new blob in use and each
/// refusal is in the audit trail.
#[tokio::test]
async fn fido2_an_mds3_blob_older_than_one_used_before_is_refused() {
    let (_, ca) = SoftToken::new(true).unwrap();
    let entries = mds_entries(&ca, "FIDO_CERTIFIED_L1");
    let (root, signer_key, signer_cert) = mds_signer("Test FIDO MDS root");
    let dir = std::env::temp_dir().join(harness::unique("relais-mds-order"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mds-root.pem"), root.pem()).unwrap();
    // The admin copies each new blob over the same file, as the docs say.
    let with_blob = |no: u64| -> String {
        std::fs::write(
            dir.join("blob.jwt"),
            mds_blob_numbered(no, &signer_key, &[&signer_cert], entries.clone()),
        )
        .unwrap();
        let path = mds_trust_file(&dir, "trust", "blob.jwt", "");
        format!("[fido2]\nattestation_policy = \"{}\"\n", path.display())
    };
    for db in [Db::Sqlite, Db::Postgres] {
        let db_toml = harness::database_toml(db).await;
        let sessions = harness::sessions_toml(Sessions::Memory);
        let kek = relais::adapters::keys::Kek::generate().to_base64();
        let boot = async |no: u64, first: bool| harness::try_boot(&db_toml, &sessions, &kek, &with_blob(no), first).await;

        let s = boot(42, true).await.unwrap();
        s.stop().await;
        let refused = boot(41, false).await.err().expect("an older blob must not start");
        assert!(
            refused.contains("number 41, older than number 42 in use since"),
            "{db:?}: {refused}"
        );
        // The same blob again, then a newer one: both start, and the older stays refused.
        boot(42, false).await.unwrap().stop().await;
        boot(43, false).await.unwrap().stop().await;
        let refused = boot(42, false).await.err().expect("once 43 is in use, 42 is older");
        assert!(refused.contains("number 42, older than number 43"), "{db:?}: {refused}");

        let s = boot(43, false).await.unwrap();
        let events = s.audit_events("configuration_reloaded").await;
        let summary: Vec<(bool, String)> = events
            .iter()
            .rev()
            .filter(|e| e["what"] == "fido_mds")
            .map(|e| (e["success"].as_bool().unwrap(), e["detail"].as_str().unwrap().to_owned()))
            .collect();
        let expected = [
            (true, "FIDO MDS3 blob number 42 in use"),
            (false, "the FIDO MDS3 blob is number 41, older than number 42"),
            (true, "FIDO MDS3 blob number 43 in use, replacing number 42"),
            (false, "the FIDO MDS3 blob is number 42, older than number 43"),
        ];
        assert_eq!(summary.len(), expected.len(), "{db:?}: {summary:?}");
        for ((success, detail), (want_success, want_start)) in summary.iter().zip(expected) {
            assert!(*success == want_success && detail.starts_with(want_start), "{db:?}: {summary:?}");
        }
        s.stop().await;
    }
    std::fs::remove_dir_all(dir).ok();
}

/// With `[mds] crl_files`, the blob signer's chain is checked against the CRLs: a revoked signer
/// stops Relais, as does a chain certificate no given CRL covers; a stale CRL is still applied
/// (and said); without CRLs the check is reported as not done.
#[tokio::test]
async fn fido2_mds3_blob_signer_revocation_is_checked_against_the_given_crls() {
    use relais::adapters::fido_mds::SignerRevocation;
    let (root, signer_key, signer_cert) = mds_signer("Test FIDO MDS root");
    let (other_root, _, _) = mds_signer("Another CA");
    let dir = std::env::temp_dir().join(harness::unique("relais-mds-crl"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("mds-root.pem"), root.pem()).unwrap();
    let entries = json!([{
        "aaguid": AAGUID.to_string(),
        "metadataStatement": {"description": "SoftToken (test)", "attestationRootCertificates": []},
        "statusReports": [{"status": "REVOKED"}],
    }]);
    std::fs::write(dir.join("blob.jwt"), mds_blob(&signer_key, &[&signer_cert], entries)).unwrap();
    let load = |crl: Option<String>| {
        let crl_line = match crl {
            Some(pem) => {
                std::fs::write(dir.join("root.crl"), pem).unwrap();
                "crl_files = [\"root.crl\"]\n"
            }
            None => "",
        };
        let path = mds_trust_file(&dir, "trust", "blob.jwt", crl_line);
        relais::adapters::webauthn::load_trust_policy(&path)
            .map(|p| p.mds.unwrap().signer_revocation)
            .map_err(|e| e.to_string())
    };
    let week = time::Duration::days(7);
    assert_eq!(load(None), Ok(SignerRevocation::NotChecked));
    assert_eq!(load(Some(mds_crl(&root, &[3, 99], week))), Ok(SignerRevocation::Checked));
    let revoked = load(Some(mds_crl(&root, &[MDS_SIGNER_SERIAL], week))).unwrap_err();
    assert!(revoked.contains("is revoked by the MDS CRLs"), "{revoked}");
    // A revocation is not forgotten because the admin did not download the CRL in time.
    assert_eq!(load(Some(mds_crl(&root, &[], -week))), Ok(SignerRevocation::CheckedWithStaleCrl));
    let stale_revoked = load(Some(mds_crl(&root, &[MDS_SIGNER_SERIAL], -week))).unwrap_err();
    assert!(stale_revoked.contains("is revoked"), "{stale_revoked}");
    let uncovered = load(Some(mds_crl(&other_root, &[], week))).unwrap_err();
    assert!(uncovered.contains("no given CRL covers"), "{uncovered}");
    let broken = load(Some("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n".into())).unwrap_err();
    assert!(broken.contains("root.crl") && broken.contains("not a valid CRL"), "{broken}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn fido2_a_revoked_key_is_refused_at_the_next_login() {
    let (s, mut token) = setup().await;
    enrolled(&s, &mut token).await;
    let m = s.components().management("test");
    let key = m.security_keys_of(ALICE.0).await.unwrap()[0].id;
    // The key step has started with the key still valid; the revocation lands before the answer.
    let b = Browser::new();
    let rp = web(&s).await;
    let k = password_then_key_step(&b, &s, &rp::auth_request(&rp, &[]).url).await;
    let answer = assertion(&b, &s, &mut token, &k).await;
    m.revoke_security_key(ALICE.0, key).await.unwrap();
    let (st, _) = finish_with(&b, &s, &k, answer).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(s.audit_kinds().await.iter().any(|k| k == "fido2_key_revoked"));
    s.stop().await;
}

#[tokio::test]
async fn fido2_a_sign_counter_going_backwards_is_refused_and_audited() {
    let (s, mut token) = setup().await;
    // A snapshot of the key right after enrolment: a clone of it.
    let b = Browser::new();
    let rp = web(&s).await;
    let url = format!("{}&acr_values=loa3", rp::auth_request(&rp, &[]).url);
    let k = password_then_key_step(&b, &s, &url).await;
    let code = enrolment_code(&s).await;
    assert_eq!(register(&b, &s, &mut token, &k, Some(&code)).await.0, StatusCode::OK);
    let mut clone = SoftToken::from_cbor(&token.to_cbor().unwrap()).unwrap();
    assert_eq!(authenticate(&b, &s, &mut token, &k).await.0, StatusCode::OK);

    let b = Browser::new();
    let k = password_then_key_step(&b, &s, &rp::auth_request(&rp, &[]).url).await;
    let (st, _) = authenticate(&b, &s, &mut clone, &k).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(s.audit_kinds().await.iter().any(|k| k == "fido2_counter_regression"));
    s.stop().await;
}

/// The assertion's signature is what proves the key: one bit changed in it and the login is
/// refused, while the same key's untouched assertion right after still works.
#[tokio::test]
async fn fido2_an_assertion_with_an_altered_signature_is_refused() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (s, mut token) = setup().await;
    enrolled(&s, &mut token).await;
    let rp = web(&s).await;
    let b = Browser::new();
    let k = password_then_key_step(&b, &s, &rp::auth_request(&rp, &[]).url).await;
    let mut answer = assertion(&b, &s, &mut token, &k).await;
    let encoded = answer["response"]["signature"].as_str().unwrap().to_owned();
    let mut signature = URL_SAFE_NO_PAD.decode(&encoded).unwrap();
    // The last byte of the DER signature is inside the integer `s`: still well-formed DER.
    *signature.last_mut().unwrap() ^= 0x01;
    answer["response"]["signature"] = json!(URL_SAFE_NO_PAD.encode(&signature));
    let (st, body) = finish_with(&b, &s, &k, answer).await;
    assert!(st.is_client_error(), "an altered signature was answered {st}: {body}");
    assert!(body.get("redirect").is_none(), "{body}");

    let b = Browser::new();
    let k = password_then_key_step(&b, &s, &rp::auth_request(&rp, &[]).url).await;
    let (st, body) = authenticate(&b, &s, &mut token, &k).await;
    assert_eq!(st, StatusCode::OK, "the key's own assertion: {body}");
    s.stop().await;
}

#[tokio::test]
async fn fido2_step_up_from_a_password_session_asks_only_for_the_key() {
    let (s, mut token) = setup().await;
    let b = Browser::new();
    let rp = web(&s).await;
    // No key yet, nothing asks for more: a password session (loa1).
    let req = rp::auth_request(&rp, &[]);
    let cb = b.login(&s.base, &req.url, ALICE.0, ALICE.1).await;
    let code = cb["code"].clone();
    let tokens = rp
        .exchange_code(rp::code(&code))
        .unwrap()
        .set_pkce_verifier(req.verifier)
        .request_async(&rp::http)
        .await
        .unwrap();
    let first = rp::payload(&tokens.id_token().unwrap().to_string());
    assert_eq!(first["amr"], json!(["pwd"]));
    assert_eq!(first["acr"], "loa1");

    // Later, acr_values=loa3: the key page straight away, no password form.
    s.clock.advance(Duration::from_secs(120));
    let req = rp::auth_request(&rp, &[]);
    let url = format!("{}&acr_values=loa3", req.url);
    let Step::LoginForm(path) = b.start(&url).await else {
        panic!("key step")
    };
    let k = key_step(&b, &s, &path).await;
    let code = enrolment_code(&s).await;
    assert_eq!(register(&b, &s, &mut token, &k, Some(&code)).await.0, StatusCode::OK);
    let (st, body) = authenticate(&b, &s, &mut token, &k).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let claims = id_token(&rp, req, &body).await;
    assert_eq!(claims["acr"], "loa3");
    assert_eq!(claims["amr"], json!(["pwd", "hwk", "user", "mfa"]));
    assert!(
        claims["auth_time"].as_i64().unwrap() >= first["auth_time"].as_i64().unwrap() + 120,
        "auth_time is the step-up's"
    );
    assert_eq!(claims["sub"], first["sub"]);
    s.stop().await;
}
