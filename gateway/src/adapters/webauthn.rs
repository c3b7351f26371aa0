//! FIDO2 ceremonies with webauthn-rs, behind the domain's `SecurityKeys` port. Keys are
//! webauthn-rs "attested passkeys": attestation is mandatory and checked against the admin's
//! trust policy (CAs and AAGUIDs), user verification is required, synced (backup-eligible)
//! credentials are refused. State and credentials cross the port as JSON strings.
use crate::adapters::fido_mds::SignerRevocation;
use crate::domain::fido2::{Ceremony, Fido2Error, KeyAssertion, KeyHolder, NewKey, SecurityKeyRecord};
use crate::domain::ports::SecurityKeys;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use webauthn_rs::prelude::{
    AttestationCaList, AttestationCaListBuilder, AttestationMetadata, AttestedPasskey, AttestedPasskeyAuthentication,
    AttestedPasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

#[derive(Debug, thiserror::Error)]
pub enum TrustPolicyError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{0}")]
    Invalid(String),
}

/// The attestation trust file (docs/factors.md): one `[[authority]]` per attestation CA, each
/// with the AAGUIDs (key models) it may vouch for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    #[serde(default)]
    authority: Vec<Authority>,
    /// Models admitted from a FIDO MDS3 blob (`fido_mds.rs`).
    mds: Option<MdsSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MdsSection {
    /// The blob as downloaded from FIDO (a JWS), relative to the trust file.
    blob_file: PathBuf,
    /// The root that signs the blob's signer (PEM), relative to the trust file.
    root_certificate_file: PathBuf,
    /// The models admitted: their attestation roots come from the blob.
    aaguids: Vec<Uuid>,
    /// The host name the blob's signer must be certified for.
    #[serde(default = "default_mds_signer")]
    signer_name: String,
    /// CRLs of the CAs of the signer's chain (PEM or DER), relative to the trust file. Given,
    /// every certificate of the chain must be covered and none revoked; absent, not checked.
    #[serde(default)]
    crl_files: Vec<PathBuf>,
}

fn default_mds_signer() -> String {
    "mds.fidoalliance.org".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Authority {
    name: String,
    /// The CA certificate, PEM, inline...
    certificate: Option<String>,
    /// ...or in a file, relative to the trust file.
    certificate_file: Option<PathBuf>,
    aaguids: Vec<Uuid>,
}

/// The FIDO MDS3 blob a trust file admitted models from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdsBlobInUse {
    /// The blob's serial number (`no`): FIDO numbers each blob one higher than the last.
    pub number: u64,
    /// When FIDO publishes the next one (`nextUpdate`).
    pub next_update: String,
    /// Whether the signer's chain was checked against CRLs (`[mds] crl_files`).
    pub signer_revocation: SignerRevocation,
}

impl MdsBlobInUse {
    /// FIDO has published a newer blob by `today` (its `nextUpdate` is past).
    pub fn past_next_update(&self, today: chrono::NaiveDate) -> bool {
        chrono::NaiveDate::parse_from_str(&self.next_update, "%Y-%m-%d").is_ok_and(|d| d < today)
    }
}

/// What a trust file admits: webauthn-rs' CA list, and the MDS blob it came from, if any.
pub struct TrustPolicy {
    pub authorities: AttestationCaList,
    pub mds: Option<MdsBlobInUse>,
}

/// Reads the trust file into webauthn-rs' CA list. Every authority must list its AAGUIDs:
/// a CA alone would admit every model its vendor ever made.
pub fn load_trust_policy(path: &Path) -> Result<TrustPolicy, TrustPolicyError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|source| TrustPolicyError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let file: TrustFile =
        toml::from_str(&read(path)?).map_err(|e| TrustPolicyError::Invalid(format!("{}: {}", path.display(), e.message())))?;
    if file.authority.is_empty() && file.mds.as_ref().is_none_or(|m| m.aaguids.is_empty()) {
        return Err(TrustPolicyError::Invalid(format!(
            "{}: no [[authority]] and no [mds] aaguids: no key could ever register",
            path.display()
        )));
    }
    let mut builder = AttestationCaListBuilder::new();
    let mds = match &file.mds {
        Some(mds) => {
            let dir = path.parent().unwrap_or(Path::new("."));
            Some(admit_from_mds(&mut builder, mds, dir, &read)?)
        }
        None => None,
    };
    for a in file.authority {
        let pem = match (a.certificate, a.certificate_file) {
            (Some(pem), None) => pem,
            (None, Some(f)) => read(&path.parent().unwrap_or(Path::new(".")).join(f))?,
            _ => {
                return Err(TrustPolicyError::Invalid(format!(
                    "authority {:?}: give exactly one of certificate or certificate_file",
                    a.name
                )));
            }
        };
        if a.aaguids.is_empty() {
            return Err(TrustPolicyError::Invalid(format!(
                "authority {:?}: list its allowed aaguids",
                a.name
            )));
        }
        for aaguid in a.aaguids {
            builder
                .insert_device_pem(pem.as_bytes(), aaguid, a.name.clone(), BTreeMap::new())
                .map_err(|e| TrustPolicyError::Invalid(format!("authority {:?}: certificate: {e:?}", a.name)))?;
        }
    }
    Ok(TrustPolicy {
        authorities: builder.build(),
        mds,
    })
}

/// Adds the roots of the admitted models from the MDS blob; a model the blob does not describe
/// is a mistake (stop), one it reports compromised or revoked is left out (warned). Whether the
/// blob is older than one used before is for the caller, which has the database
/// (`SqlStore::admit_mds_blob`).
fn admit_from_mds(
    builder: &mut AttestationCaListBuilder,
    mds: &MdsSection,
    dir: &Path,
    read: &dyn Fn(&Path) -> Result<String, TrustPolicyError>,
) -> Result<MdsBlobInUse, TrustPolicyError> {
    let invalid = |m: String| TrustPolicyError::Invalid(format!("[mds] {}: {m}", mds.blob_file.display()));
    let blob = read(&dir.join(&mds.blob_file))?;
    let root_path = dir.join(&mds.root_certificate_file);
    use rustls::pki_types::pem::PemObject;
    let root = rustls::pki_types::CertificateDer::pem_file_iter(&root_path)
        .ok()
        .and_then(|mut certs| certs.next())
        .and_then(Result::ok)
        .ok_or_else(|| TrustPolicyError::Invalid(format!("[mds] {}: no PEM certificate", root_path.display())))?;
    let mut crls = Vec::new();
    for f in &mds.crl_files {
        let path = dir.join(f);
        crls.extend(
            crate::adapters::crl::read_crl_file(&path)
                .map_err(|why| TrustPolicyError::Invalid(format!("[mds] {}: {why}", path.display())))?,
        );
    }
    let blob =
        crate::adapters::fido_mds::read_blob(&blob, &root, &mds.signer_name, &crls, rustls::pki_types::UnixTime::now()).map_err(invalid)?;
    tracing::info!(number = blob.number, next_update = %blob.next_update, models = blob.models.len(), signer_revocation = ?blob.signer_revocation, "FIDO MDS3 blob loaded");
    match blob.signer_revocation {
        SignerRevocation::Checked => {}
        SignerRevocation::CheckedWithStaleCrl => {
            tracing::warn!("an MDS CRL is past its nextUpdate: download the current CRLs with the next blob")
        }
        SignerRevocation::NotChecked => {
            tracing::warn!("no [mds] crl_files: the revocation of the blob signer's certificate is not checked")
        }
    }
    for aaguid in &mds.aaguids {
        let model = blob
            .models
            .iter()
            .find(|m| m.aaguid == *aaguid)
            .ok_or_else(|| invalid(format!("aaguid {aaguid} is not in the blob")))?;
        if let Some(status) = &model.untrusted_status {
            tracing::warn!(%aaguid, model = %model.description, %status, "FIDO MDS3: model not admitted");
            continue;
        }
        if model.roots.is_empty() {
            return Err(invalid(format!("aaguid {aaguid}: the blob lists no attestation root")));
        }
        for der in &model.roots {
            builder
                .insert_device_der(der, *aaguid, model.description.clone(), BTreeMap::new())
                .map_err(|e| invalid(format!("aaguid {aaguid}: root certificate: {e:?}")))?;
        }
    }
    let in_use = MdsBlobInUse {
        number: blob.number,
        next_update: blob.next_update,
        signer_revocation: blob.signer_revocation,
    };
    if in_use.past_next_update(chrono::Utc::now().date_naive()) {
        tracing::warn!(next_update = %in_use.next_update, "the FIDO MDS3 blob is past its nextUpdate: download the current one");
    }
    Ok(in_use)
}

pub struct WebauthnKeys {
    webauthn: Webauthn,
    trusted: AttestationCaList,
    mds: Option<MdsBlobInUse>,
}

impl WebauthnKeys {
    /// The relying party is the issuer: RP id = its host, origin = the issuer URL.
    pub fn new(issuer: &str, rp_name: &str, policy: &Path) -> Result<Self, TrustPolicyError> {
        let origin = Url::parse(issuer).map_err(|e| TrustPolicyError::Invalid(format!("issuer: {e}")))?;
        let rp_id = origin
            .host_str()
            .ok_or_else(|| TrustPolicyError::Invalid("issuer has no host".into()))?
            .to_owned();
        let webauthn = WebauthnBuilder::new(&rp_id, &origin)
            .and_then(|b| b.rp_name(rp_name).build())
            .map_err(|e| TrustPolicyError::Invalid(format!("webauthn: {e}")))?;
        let policy = load_trust_policy(policy)?;
        Ok(Self {
            webauthn,
            trusted: policy.authorities,
            mds: policy.mds,
        })
    }

    /// The FIDO MDS3 blob the trust file admitted models from, if any.
    pub fn mds_blob(&self) -> Option<&MdsBlobInUse> {
        self.mds.as_ref()
    }
}

fn internal(e: impl std::fmt::Display) -> Fido2Error {
    Fido2Error::Internal(e.to_string())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, Fido2Error> {
    serde_json::to_string(v).map_err(internal)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, Fido2Error> {
    serde_json::from_str(s).map_err(internal)
}

/// The base64url form of a credential id (the `security_keys.credential_id` column).
fn credential_id_string(id: &impl AsRef<[u8]>) -> Result<String, Fido2Error> {
    Ok(crate::domain::crypto::b64url(id.as_ref()))
}

/// Errors that mean "the establishment does not trust this key model".
fn is_policy_refusal(e: &WebauthnError) -> bool {
    matches!(
        e,
        WebauthnError::AttestationNotVerifiable
            | WebauthnError::AttestationUntrustedAaguid
            | WebauthnError::AttestationFormatMissingAaguid
            | WebauthnError::AttestationChainNotTrusted(_)
            | WebauthnError::AttestationCertificateTrustStoreEmpty
            | WebauthnError::CredentialMayNotBeHardwareBound
    ) || format!("{e:?}").starts_with("Attestation")
}

impl SecurityKeys for WebauthnKeys {
    fn start_registration(&self, holder: &KeyHolder, existing: &[SecurityKeyRecord]) -> Result<Ceremony, Fido2Error> {
        if self.trusted.is_empty() {
            return Err(Fido2Error::NotAllowed(
                "no key model is admitted by the trust policy (every [mds] model is reported compromised or revoked)".into(),
            ));
        }
        let exclude = existing
            .iter()
            .filter_map(|k| from_json::<AttestedPasskey>(&k.credential).ok())
            .map(|p| p.cred_id().clone())
            .collect::<Vec<_>>();
        let (options, state) = self
            .webauthn
            .start_attested_passkey_registration(
                holder.account_id,
                &holder.username,
                &holder.display_name,
                Some(exclude),
                self.trusted.clone(),
                None,
            )
            .map_err(internal)?;
        Ok(Ceremony {
            options: serde_json::to_value(&options).map_err(internal)?,
            state: to_json(&state)?,
        })
    }

    fn finish_registration(&self, response: &serde_json::Value, state: &str) -> Result<NewKey, Fido2Error> {
        let state: AttestedPasskeyRegistration = from_json(state)?;
        let reg: RegisterPublicKeyCredential =
            serde_json::from_value(response.clone()).map_err(|e| Fido2Error::Rejected(format!("malformed answer: {e}")))?;
        let key = self.webauthn.finish_attested_passkey_registration(&reg, &state).map_err(|e| {
            if is_policy_refusal(&e) {
                Fido2Error::NotAllowed(e.to_string())
            } else {
                Fido2Error::Rejected(e.to_string())
            }
        })?;
        let aaguid = match &key.attestation().metadata {
            AttestationMetadata::Packed { aaguid } | AttestationMetadata::Tpm { aaguid, .. } => *aaguid,
            _ => return Err(Fido2Error::NotAllowed("the attestation names no key model (AAGUID)".into())),
        };
        Ok(NewKey {
            credential_id: credential_id_string(key.cred_id())?,
            credential: to_json(&key)?,
            aaguid,
        })
    }

    fn start_authentication(&self, keys: &[SecurityKeyRecord]) -> Result<Ceremony, Fido2Error> {
        let creds = keys
            .iter()
            .map(|k| from_json::<AttestedPasskey>(&k.credential))
            .collect::<Result<Vec<_>, _>>()?;
        let (options, state) = self.webauthn.start_attested_passkey_authentication(&creds).map_err(internal)?;
        Ok(Ceremony {
            options: serde_json::to_value(&options).map_err(internal)?,
            state: to_json(&state)?,
        })
    }

    fn finish_authentication(
        &self,
        response: &serde_json::Value,
        state: &str,
        keys: &[SecurityKeyRecord],
    ) -> Result<KeyAssertion, Fido2Error> {
        let state: AttestedPasskeyAuthentication = from_json(state)?;
        let answer: PublicKeyCredential =
            serde_json::from_value(response.clone()).map_err(|e| Fido2Error::Rejected(format!("malformed answer: {e}")))?;
        // Only keys still active may answer: one revoked since the challenge was sent is refused.
        let answered = credential_id_string(&answer.raw_id)?;
        let Some(record) = keys.iter().find(|k| k.credential_id == answered) else {
            return Err(Fido2Error::Rejected("not one of the person's active keys".into()));
        };
        let result = self
            .webauthn
            .finish_attested_passkey_authentication(&answer, &state)
            .map_err(|e| match e {
                WebauthnError::CredentialPossibleCompromise => Fido2Error::CounterRegression,
                other => Fido2Error::Rejected(other.to_string()),
            })?;
        let mut key: AttestedPasskey = from_json(&record.credential)?;
        key.update_credential(&result);
        Ok(KeyAssertion {
            key_id: record.id,
            credential: to_json(&key)?,
            user_verified: result.user_verified(),
        })
    }
}
