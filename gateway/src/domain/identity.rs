//! National identities of health professionals (psc.md §4): RPPS, ADELI, PSI and
//! structure-bound identifiers, parsed once into [`IdNat`]; invalid values never go further.
//!
//! The person is the Relais account: its immutable UUID (`accounts.id`) is the `sub` and the
//! `oid` PSC pairs with. A person has zero or more national identifiers, each with where it came
//! from and whether it is verified.
use crate::protocol::ParseError;
use serde::{Deserialize, Serialize};
use std::fmt;

fn err(what: &'static str, why: impl Into<String>) -> ParseError {
    ParseError { what, why: why.into() }
}

/// Luhn check over a string of ASCII digits.
pub fn luhn_ok(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = (b - b'0') as u32;
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// An RPPS number: 11 digits, the last a Luhn check digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rpps(String);

impl Rpps {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.len() != 11 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("RPPS", "must be 11 digits"));
        }
        if !luhn_ok(s) {
            return Err(err("RPPS", "check digit (Luhn) is wrong"));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The kind of national identifier; for idNat strings, the leading type digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdKind {
    /// `8` + RPPS.
    Rpps,
    /// `0` + ADELI (9 characters).
    Adeli,
    /// A PSI identifier (a UUID).
    Psi,
    /// `5` + SIRET (14 digits) + `/` + a local identifier: staff on establishment cards.
    Structure,
}

impl IdKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rpps => "rpps",
            Self::Adeli => "adeli",
            Self::Psi => "psi",
            Self::Structure => "structure",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rpps" => Some(Self::Rpps),
            "adeli" => Some(Self::Adeli),
            "psi" => Some(Self::Psi),
            "structure" => Some(Self::Structure),
            _ => None,
        }
    }
}

/// A national identifier in its idNat form (e.g. `810001045367`), or a PSI UUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdNat {
    value: String,
}

impl IdNat {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let s = s.trim();
        if s.len() > 64 {
            return Err(err("idNat", "too long"));
        }
        if s.len() == 36 && uuid::Uuid::parse_str(s).is_ok() {
            return Ok(Self {
                value: s.to_ascii_lowercase(),
            });
        }
        let (prefix, rest) = s.split_at(s.chars().next().map(char::len_utf8).unwrap_or(0));
        match prefix {
            "8" => Rpps::parse(rest).map(|_| Self { value: s.to_owned() }),
            "0" => {
                if rest.len() != 9 || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
                    return Err(err("idNat", "an ADELI idNat is 0 followed by 9 characters"));
                }
                Ok(Self { value: s.to_owned() })
            }
            "5" => {
                let Some((siret, local)) = rest.split_once('/') else {
                    return Err(err("idNat", "a structure idNat is 5<SIRET>/<id>"));
                };
                if siret.len() != 14 || !siret.bytes().all(|b| b.is_ascii_digit()) || !luhn_ok(siret) {
                    return Err(err("idNat", "the SIRET must be 14 digits with a valid check digit"));
                }
                if local.is_empty() || local.len() > 32 || !local.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                    return Err(err("idNat", "the local part must be 1 to 32 letters, digits, - or _"));
                }
                Ok(Self { value: s.to_owned() })
            }
            "" => Err(err("idNat", "empty")),
            _ => Err(err(
                "idNat",
                "unknown type prefix (expected 8 RPPS, 0 ADELI, 5 structure, or a PSI UUID)",
            )),
        }
    }

    /// From the RPPS number alone.
    pub fn from_rpps(r: &Rpps) -> Self {
        Self {
            value: format!("8{}", r.as_str()),
        }
    }

    pub fn kind(&self) -> IdKind {
        match self.value.as_bytes()[0] {
            b'8' => IdKind::Rpps,
            b'0' => IdKind::Adeli,
            b'5' => IdKind::Structure,
            _ => IdKind::Psi,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }

    pub fn rpps(&self) -> Option<&str> {
        (self.kind() == IdKind::Rpps).then(|| &self.value[1..])
    }
}

impl fmt::Display for IdNat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

/// Where a mapping came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    Admin,
    FileImport,
    AnnuaireImport,
    CardProof,
    PscProof,
}

impl Provenance {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::FileImport => "file_import",
            Self::AnnuaireImport => "annuaire_import",
            Self::CardProof => "card_proof",
            Self::PscProof => "psc_proof",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Admin, Self::FileImport, Self::AnnuaireImport, Self::CardProof, Self::PscProof]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// One national identifier of one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NationalIdentity {
    pub account_id: uuid::Uuid,
    pub idnat: IdNat,
    pub provenance: Provenance,
    /// Checked against an authoritative source (the Annuaire Santé extraction, a card, PSC).
    pub verified: bool,
    /// Profession code (TRE_G15) when known from the Annuaire.
    pub profession: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpps_needs_eleven_digits_and_luhn() {
        assert!(Rpps::parse("99926018153").is_ok());
        assert!(Rpps::parse("10001045367").is_ok());
        assert!(Rpps::parse("99926018154").is_err());
        assert!(Rpps::parse("9992601815").is_err());
        assert!(Rpps::parse("9992601815a").is_err());
    }

    #[test]
    fn idnat_kinds() {
        assert_eq!(IdNat::parse("899926018153").unwrap().kind(), IdKind::Rpps);
        assert_eq!(IdNat::parse("899926018153").unwrap().rpps(), Some("99926018153"));
        assert!(IdNat::parse("899926018154").is_err(), "bad check digit");
        assert_eq!(IdNat::parse("0012800730").unwrap().kind(), IdKind::Adeli);
        assert!(IdNat::parse("001280073").is_err());
        assert_eq!(IdNat::parse("573282932000074/AB-12").unwrap().kind(), IdKind::Structure);
        assert!(IdNat::parse("512345678901234/x").is_err(), "SIRET check digit");
        assert_eq!(IdNat::parse("3F2504E0-4F89-11D3-9A0C-0305E82C3301").unwrap().kind(), IdKind::Psi);
        assert!(IdNat::parse("9foo").is_err());
        assert!(IdNat::parse("").is_err());
    }
}
