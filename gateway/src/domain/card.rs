//! CPS/CPx smart cards (IGC-Santé): what a verified card certificate tells (the idNat), why a
//! card can be refused, and the port that checks a certificate chain. The login rules are in
//! `oidc/card.rs`; X.509, CRLs and TLS are in `adapters/cards/`.
use crate::domain::identity::IdNat;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A card certificate that chained to a configured IGC-Santé root, is within its validity,
/// is not revoked and carries a national identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardCertificate {
    #[serde(with = "idnat_text")]
    pub idnat: IdNat,
    /// Subject and issuer distinguished names, as text (audit trail, traceability).
    pub subject: String,
    pub issuer: String,
    /// Serial number, lower-case hex.
    pub serial: String,
}

/// An idNat as its text, parsed again when read back (session store).
mod idnat_text {
    use crate::domain::identity::IdNat;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &IdNat, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_str())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IdNat, D::Error> {
        let s = String::deserialize(d)?;
        IdNat::parse(&s).map_err(|e| serde::de::Error::custom(e.to_string()))
    }
}

/// How the certificate reached Relais.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardSource {
    /// Relais' own TLS listener (the TLS handshake proved the card's private key).
    Tls,
    /// A trusted reverse proxy that terminated TLS and passed the certificate in a header.
    Proxy,
}

impl CardSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Proxy => "proxy",
        }
    }
}

/// Why a card login is refused. Each has its own plain message in the pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardRefusal {
    /// No client certificate came with the request (no card, no middleware, or cancelled).
    NoCertificate,
    /// Not a readable X.509 certificate.
    Unreadable,
    Expired,
    NotYetValid,
    /// Listed in its issuer's CRL.
    Revoked,
    /// Not issued by a configured IGC-Santé authority (or its signature does not verify).
    WrongIssuer,
    /// No CRL is loaded for the card's issuer: its revocation status is unknown.
    RevocationUnknown,
    /// The issuer's CRL is past its nextUpdate: Relais cannot tell a revoked card (fail closed).
    CrlStale,
    /// The certificate is not one for client authentication (EKU).
    NotForLogin,
    /// Neither the SAN UPN nor the subject CN holds a valid idNat.
    NoNationalId,
    /// Card alone: no person is linked to the card's idNat.
    NotLinked,
    /// The card's idNat is not the person's national identity.
    Mismatch,
    /// The person has no national identity and the policy does not let a card establish it.
    NoMapping,
    /// The card may only follow the password (`card_alone = false`).
    PasswordFirst,
}

impl CardRefusal {
    /// Stable reason code for the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoCertificate => "no_certificate",
            Self::Unreadable => "unreadable_certificate",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Revoked => "revoked",
            Self::WrongIssuer => "wrong_issuer",
            Self::RevocationUnknown => "revocation_unknown",
            Self::CrlStale => "crl_stale",
            Self::NotForLogin => "not_for_client_auth",
            Self::NoNationalId => "no_national_id",
            Self::NotLinked => "not_linked",
            Self::Mismatch => "idnat_mismatch",
            Self::NoMapping => "no_mapping",
            Self::PasswordFirst => "password_first",
        }
    }
}

/// Checks a presented certificate chain (leaf first, DER) at `now` against the trust anchors
/// and CRLs it holds. Implemented by `adapters::cards::CardVerifier`.
pub trait CardChecker: Send + Sync {
    fn check(&self, chain: &[Vec<u8>], now: DateTime<Utc>) -> Result<CardCertificate, CardRefusal>;
}

/// The card policy (config `[cards]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CardPolicy {
    pub card_alone: bool,
    pub establish_mapping: bool,
}

/// A checked card waiting to be redeemed by the browser that presented it (session store,
/// namespace `cardproof`, keyed by a random token, taken once).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CardProof {
    pub pending_id: String,
    pub card: CardCertificate,
    pub source: CardSource,
}

/// The idNat of a UPN `<type>.<id>@carte-cps.fr` (psc.md §5: `8.99700434378@carte-cps.fr` is
/// idNat `899700434378`). `None` for any other shape.
pub fn idnat_from_upn(upn: &str) -> Option<IdNat> {
    let (local, domain) = upn.trim().rsplit_once('@')?;
    if !domain.eq_ignore_ascii_case("carte-cps.fr") {
        return None;
    }
    let (kind, id) = local.split_once('.')?;
    if kind.is_empty() || id.is_empty() {
        return None;
    }
    IdNat::parse(&format!("{kind}{id}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upn_gives_the_idnat() {
        assert_eq!(idnat_from_upn("8.99926018153@carte-cps.fr").unwrap().as_str(), "899926018153");
        assert_eq!(idnat_from_upn("8.99926018153@CARTE-CPS.FR").unwrap().as_str(), "899926018153");
        assert!(idnat_from_upn("8.99926018154@carte-cps.fr").is_none(), "Luhn");
        assert!(idnat_from_upn("8.99926018153@example.fr").is_none());
        assert!(idnat_from_upn("899926018153@carte-cps.fr").is_none());
        assert_eq!(idnat_from_upn("0.012800730@carte-cps.fr").unwrap().as_str(), "0012800730");
    }
}
