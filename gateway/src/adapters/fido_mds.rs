//! FIDO Metadata Service (MDS3) blobs, read from disk (never fetched: the admin downloads the
//! blob from https://mds3.fidoalliance.org/ and copies it next to the trust file).
//!
//! A blob is a JWS (RS256 or ES256) whose header carries the signer's certificate chain (`x5c`);
//! its payload lists authenticator models by AAGUID with their attestation root certificates and
//! status reports. Relais checks the chain up to the root the admin names, the signature, then
//! takes from it the roots of the models the admin admits, leaving out models with any status
//! report saying they are compromised or revoked.
//!
//! Revocation of the signer's chain is checked against the CRLs the admin downloads with the
//! blob (`crl_files`), when given: every certificate of the chain must be covered by one.
//!
//! Not verified against the real FIDO blob here (no network in tests): the test signs a blob of
//! the same layout with a chain of its own. The real signer's certificate is a TLS-style one;
//! its extended key usage is checked as "serverAuth if present", which we believe it satisfies.
use rustls::pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use uuid::Uuid;
use webpki::{CertRevocationList, ExpirationPolicy, RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy};

/// Statuses after which a model's attestation is worth nothing (FIDO MDS3 §3.1.4); any one of
/// them in a model's reports leaves the model out.
const UNTRUSTED_STATUSES: &[&str] = &[
    "REVOKED",
    "ATTESTATION_KEY_COMPROMISE",
    "USER_VERIFICATION_BYPASS",
    "USER_KEY_REMOTE_COMPROMISE",
    "USER_KEY_PHYSICAL_COMPROMISE",
];

/// A model the blob describes.
#[derive(Debug, Clone)]
pub struct MdsModel {
    pub aaguid: Uuid,
    pub description: String,
    /// DER attestation root certificates.
    pub roots: Vec<Vec<u8>>,
    /// The latest status report, when it makes the model untrusted.
    pub untrusted_status: Option<String>,
}

/// How far the revocation of the blob signer's chain was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerRevocation {
    /// No CRL given: not checked.
    NotChecked,
    /// Every certificate of the chain is covered by a current CRL and none is revoked.
    Checked,
    /// As `Checked`, but a CRL is past its nextUpdate (download the current ones).
    CheckedWithStaleCrl,
}

/// What a verified blob says.
#[derive(Debug, Clone)]
pub struct MdsBlob {
    /// The blob's serial number (`no`).
    pub number: u64,
    pub signer_revocation: SignerRevocation,
    /// When FIDO publishes the next one (`nextUpdate`, a date).
    pub next_update: String,
    pub models: Vec<MdsModel>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    x5c: Vec<String>,
}

#[derive(Deserialize)]
struct Payload {
    no: u64,
    #[serde(rename = "nextUpdate")]
    next_update: String,
    #[serde(default)]
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    aaguid: Option<Uuid>,
    #[serde(rename = "metadataStatement")]
    statement: Option<Statement>,
    #[serde(rename = "statusReports", default)]
    status_reports: Vec<StatusReport>,
}

#[derive(Deserialize)]
struct Statement {
    #[serde(default)]
    description: String,
    #[serde(rename = "attestationRootCertificates", default)]
    roots: Vec<String>,
}

#[derive(Deserialize)]
struct StatusReport {
    status: String,
}

/// Verifies `blob` (the JWS text) at `now`: signed by a certificate for `signer_name`
/// (`mds.fidoalliance.org` for FIDO's blob) chaining to `root` (DER), none of the chain revoked
/// by `crls` (not checked when empty); reads its models.
pub fn read_blob(blob: &str, root: &[u8], signer_name: &str, crls: &[CertRevocationList<'_>], now: UnixTime) -> Result<MdsBlob, String> {
    use base64::Engine;
    let std_b64 = base64::engine::general_purpose::STANDARD;
    let url_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts = blob.trim().split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("not a JWS (three base64url parts)".into());
    };
    let header: Header = url_b64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("unreadable JWS header")?;
    let chain: Vec<Vec<u8>> = header
        .x5c
        .iter()
        .map(|c| std_b64.decode(c))
        .collect::<Result<_, _>>()
        .map_err(|_| "unreadable x5c certificate")?;
    let Some(leaf) = chain.first() else {
        return Err("the JWS header carries no x5c chain".into());
    };

    // The signer's chain up to the root the admin trusts for MDS.
    let root = CertificateDer::from(root);
    let anchor = webpki::anchor_from_trusted_cert(&root).map_err(|e| format!("the MDS root certificate: {e:?}"))?;
    let leaf_der = CertificateDer::from(leaf.as_slice());
    let ee = webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| format!("the signer's certificate: {e:?}"))?;
    let intermediates: Vec<CertificateDer<'_>> = chain.iter().skip(1).map(|c| CertificateDer::from(c.as_slice())).collect();
    let algs = rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.all;
    let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
    let verify = |expiration: ExpirationPolicy| {
        // Every certificate of the chain must be covered: a CRL missing for one is a refusal,
        // not a pass (an admin who gives CRLs wants the chain checked).
        let revocation = RevocationOptionsBuilder::new(&crl_refs).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Deny)
                .with_expiration_policy(expiration)
                .build()
        });
        ee.verify_for_usage(
            algs,
            std::slice::from_ref(&anchor),
            &intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            revocation,
            None,
        )
        .map(|_| ())
    };
    let chain_error = |e: webpki::Error| match e {
        webpki::Error::CertRevoked => "the blob's signer (or a certificate of its chain) is revoked by the MDS CRLs".to_owned(),
        webpki::Error::UnknownRevocationStatus => {
            "no given CRL covers a certificate of the blob signer's chain: give the CRL of each CA of the chain".to_owned()
        }
        e => format!("the blob's signer does not chain to the MDS root: {e:?}"),
    };
    let signer_revocation = match verify(ExpirationPolicy::Enforce) {
        Ok(()) if crls.is_empty() => SignerRevocation::NotChecked,
        Ok(()) => SignerRevocation::Checked,
        // A CRL past its nextUpdate still lists what it lists: checked again without the date,
        // and said (the blob itself is also used past its own nextUpdate).
        Err(webpki::Error::CrlExpired { .. }) => {
            verify(ExpirationPolicy::Ignore).map_err(chain_error)?;
            SignerRevocation::CheckedWithStaleCrl
        }
        Err(e) => return Err(chain_error(e)),
    };
    // The root may be a public one that certifies many servers (FIDO's is GlobalSign's): the
    // signer must also be the MDS itself.
    let name =
        rustls::pki_types::ServerName::try_from(signer_name).map_err(|_| format!("signer_name {signer_name:?} is not a host name"))?;
    ee.verify_is_valid_for_subject_name(&name)
        .map_err(|_| format!("the blob is not signed by {signer_name} (its signer's certificate names another host)"))?;

    // The signature, with the leaf's key.
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| format!("the signer's certificate: {e}"))?;
    let key = cert.public_key().subject_public_key.data.to_vec();
    let alg: &'static dyn aws_lc_rs::signature::VerificationAlgorithm = match header.alg.as_str() {
        "RS256" => &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        "ES256" => &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        other => return Err(format!("unsupported JWS alg {other}")),
    };
    let signature = url_b64.decode(s).map_err(|_| "unreadable JWS signature")?;
    aws_lc_rs::signature::UnparsedPublicKey::new(alg, key)
        .verify(format!("{h}.{p}").as_bytes(), &signature)
        .map_err(|_| "bad signature: the blob was altered or signed by another key")?;

    let payload: Payload = url_b64
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("unreadable payload (not an MDS3 blob)")?;
    let models = payload
        .entries
        .into_iter()
        .filter_map(|e| {
            let aaguid = e.aaguid?;
            let statement = e.statement?;
            let roots = statement.roots.iter().filter_map(|r| std_b64.decode(r).ok()).collect();
            // Any such report counts, whatever came after it: an attestation cannot tell a
            // fixed firmware from a flawed one.
            let untrusted_status = e
                .status_reports
                .iter()
                .map(|r| r.status.clone())
                .find(|s| UNTRUSTED_STATUSES.contains(&s.as_str()));
            Some(MdsModel {
                aaguid,
                description: statement.description,
                roots,
                untrusted_status,
            })
        })
        .collect();
    Ok(MdsBlob {
        number: payload.no,
        signer_revocation,
        next_update: payload.next_update,
        models,
    })
}
