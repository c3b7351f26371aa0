//! CPS/CPx card certificates (IGC-Santé): the trust anchors and CRLs read from disk, the chain
//! check (rustls-webpki, with the CRLs), and the idNat read from the certificate. The TLS
//! listener that receives the certificate is in `tls.rs`; the login rules in
//! `domain::oidc::card`.
pub mod tls;
mod x509;

use crate::domain::card::{CardCertificate, CardChecker, CardRefusal};
use chrono::{DateTime, Utc};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use webpki::{CertRevocationList, ExpirationPolicy, RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy};

pub use x509::idnat_of;

#[derive(Debug, thiserror::Error)]
pub enum CardConfigError {
    #[error("{path}: {why}")]
    File { path: String, why: String },
}

fn file_error(path: &Path, why: impl ToString) -> CardConfigError {
    CardConfigError::File {
        path: path.display().to_string(),
        why: why.to_string(),
    }
}

/// What the verifier is built from (`[cards]`).
#[derive(Debug, Clone)]
pub struct CardTrustSettings {
    pub trust_roots: Vec<PathBuf>,
    pub intermediates: Vec<PathBuf>,
    pub crl_files: Vec<PathBuf>,
    pub require_crl: bool,
    pub accept_stale_crl: bool,
}

/// Reads every certificate of PEM files.
pub fn read_pem_certs(paths: &[PathBuf]) -> Result<Vec<CertificateDer<'static>>, CardConfigError> {
    let mut out = Vec::new();
    for p in paths {
        let certs: Vec<_> = CertificateDer::pem_file_iter(p)
            .map_err(|e| file_error(p, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| file_error(p, e))?;
        if certs.is_empty() {
            return Err(file_error(p, "no certificate in this PEM file"));
        }
        out.extend(certs);
    }
    Ok(out)
}

/// One CRL file, DER or PEM.
fn read_crls(path: &Path) -> Result<Vec<CertRevocationList<'static>>, CardConfigError> {
    crate::adapters::crl::read_crl_file(path).map_err(|why| file_error(path, why))
}

/// What a CRL reload found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrlReload {
    pub count: usize,
    /// The files' content differs from the previous load.
    pub changed: bool,
}

/// Checks card certificates against the IGC-Santé chain and the CRLs. The CRLs are replaced
/// as a whole by `reload_crls` (a schedule in `server.rs`); a check sees one consistent set.
pub struct CardVerifier {
    settings: CardTrustSettings,
    anchors: Vec<TrustAnchor<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
    /// Subjects of the roots and intermediates, sent in the TLS CertificateRequest so the
    /// browser offers the card and not another certificate.
    pub hint_subjects: Vec<Vec<u8>>,
    crls: RwLock<Arc<Vec<CertRevocationList<'static>>>>,
    /// SHA-256 of the CRL files' bytes as last loaded: a reload says whether anything changed.
    crl_digest: std::sync::Mutex<Vec<u8>>,
    algs: &'static [&'static dyn SignatureVerificationAlgorithm],
}

impl CardVerifier {
    pub fn load(settings: CardTrustSettings) -> Result<Self, CardConfigError> {
        let roots = read_pem_certs(&settings.trust_roots)?;
        let intermediates = read_pem_certs(&settings.intermediates)?;
        let mut anchors = Vec::new();
        let mut hint_subjects = Vec::new();
        for (i, c) in roots.iter().enumerate() {
            let a = webpki::anchor_from_trusted_cert(c)
                .map_err(|e| file_error(&settings.trust_roots[i.min(settings.trust_roots.len() - 1)], format!("{e:?}")))?
                .to_owned();
            anchors.push(a);
        }
        for c in roots.iter().chain(&intermediates) {
            if let Some(s) = x509::subject_der(c) {
                hint_subjects.push(s);
            }
        }
        // Where each authority publishes its CRL: the operator copies these to `crl_files`.
        for c in roots.iter().chain(&intermediates) {
            let (name, cdp) = x509::name_and_cdp(c);
            tracing::info!(authority = %name, crl_distribution_points = ?cdp, "card trust anchor loaded");
        }
        let v = Self {
            crls: RwLock::new(Arc::new(Vec::new())),
            crl_digest: std::sync::Mutex::new(Vec::new()),
            settings,
            anchors,
            intermediates,
            hint_subjects,
            algs: rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms.all,
        };
        v.reload_crls()?;
        Ok(v)
    }

    /// Re-reads every CRL file. All or nothing: on any error the previous set stays.
    pub fn reload_crls(&self) -> Result<CrlReload, CardConfigError> {
        let mut all = Vec::new();
        let mut bytes = Vec::new();
        for p in &self.settings.crl_files {
            all.extend(read_crls(p)?);
            bytes.extend(std::fs::read(p).map_err(|e| file_error(p, e))?);
        }
        let digest = crate::domain::crypto::sha256(&bytes).to_vec();
        let count = all.len();
        *self.crls.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(all);
        let mut last = self.crl_digest.lock().unwrap_or_else(|e| e.into_inner());
        let changed = *last != digest;
        *last = digest;
        Ok(CrlReload { count, changed })
    }

    fn current_crls(&self) -> Arc<Vec<CertRevocationList<'static>>> {
        self.crls.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl CardChecker for CardVerifier {
    fn check(&self, chain: &[Vec<u8>], now: DateTime<Utc>) -> Result<CardCertificate, CardRefusal> {
        let Some(leaf) = chain.first() else {
            return Err(CardRefusal::NoCertificate);
        };
        let leaf = CertificateDer::from(leaf.as_slice());
        let ee = webpki::EndEntityCert::try_from(&leaf).map_err(|_| CardRefusal::Unreadable)?;
        // Intermediates: the configured ones, then whatever the client sent.
        let mut inter: Vec<CertificateDer<'_>> = self.intermediates.clone();
        inter.extend(chain.iter().skip(1).map(|c| CertificateDer::from(c.as_slice())));
        let crls = self.current_crls();
        let crl_refs: Vec<&CertRevocationList<'_>> = crls.iter().collect();
        let revocation = match RevocationOptionsBuilder::new(&crl_refs) {
            Ok(b) => Some(
                b.with_depth(RevocationCheckDepth::EndEntity)
                    .with_status_policy(if self.settings.require_crl {
                        UnknownStatusPolicy::Deny
                    } else {
                        UnknownStatusPolicy::Allow
                    })
                    .with_expiration_policy(if self.settings.accept_stale_crl {
                        ExpirationPolicy::Ignore
                    } else {
                        ExpirationPolicy::Enforce
                    })
                    .build(),
            ),
            // No CRL loaded at all.
            Err(_) if self.settings.require_crl => return Err(CardRefusal::RevocationUnknown),
            Err(_) => None,
        };
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.timestamp().max(0) as u64));
        ee.verify_for_usage(
            self.algs,
            &self.anchors,
            &inter,
            time,
            webpki::KeyUsage::client_auth(),
            revocation,
            None,
        )
        .map_err(refusal_of)?;
        x509::card_certificate(&leaf).ok_or(CardRefusal::NoNationalId)
    }
}

/// The person-facing reason of a chain error.
#[allow(deprecated)] // RequiredEkuNotFound: older webpki paths may still return it
fn refusal_of(e: webpki::Error) -> CardRefusal {
    use webpki::Error as E;
    match e {
        E::CertExpired { .. } => CardRefusal::Expired,
        E::CertNotValidYet { .. } => CardRefusal::NotYetValid,
        E::CertRevoked => CardRefusal::Revoked,
        E::UnknownRevocationStatus => CardRefusal::RevocationUnknown,
        E::CrlExpired { .. } => CardRefusal::CrlStale,
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => CardRefusal::NotForLogin,
        E::BadDer | E::BadDerTime | E::TrailingData(_) | E::UnsupportedCertVersion => CardRefusal::Unreadable,
        other => {
            tracing::debug!(error = ?other, "card chain not verified");
            CardRefusal::WrongIssuer
        }
    }
}
