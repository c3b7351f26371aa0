//! Reading a card certificate (x509-parser): the idNat from the SAN UPN
//! (`<type>.<id>@carte-cps.fr`, OtherName 1.3.6.1.4.1.311.20.2.3), else from the subject CN;
//! names, serial and CRL distribution points for the audit trail and the logs.
use crate::domain::card::{CardCertificate, idnat_from_upn};
use crate::domain::identity::IdNat;
use x509_parser::asn1_rs::{Any, FromDer, Tag, TaggedExplicit};
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::X509Certificate;

/// The Microsoft UPN OtherName, which IGC-Santé uses for the card holder.
const UPN_OID: &str = "1.3.6.1.4.1.311.20.2.3";

fn upns<'a>(cert: &'a X509Certificate<'a>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::OtherName(oid, value) if oid.to_id_string() == UPN_OID => {
                // [0] EXPLICIT UTF8String
                let (_, tagged) = TaggedExplicit::<Any, x509_parser::asn1_rs::Error, 0>::from_der(value).ok()?;
                let inner = tagged.into_inner();
                (inner.tag() == Tag::Utf8String)
                    .then(|| std::str::from_utf8(inner.data).ok().map(str::to_owned))
                    .flatten()
            }
            _ => None,
        })
        .collect()
}

/// The card holder's idNat: the SAN UPN first, the subject CN as a fallback. The CN layout of
/// every card range is not documented to us (psc.md §5 says the identifier is in the CN): the
/// whole CN must parse as an idNat, nothing is guessed out of it.
pub fn idnat_of(cert: &X509Certificate<'_>) -> Option<IdNat> {
    if let Some(id) = upns(cert).iter().find_map(|u| idnat_from_upn(u)) {
        return Some(id);
    }
    cert.subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .find_map(|cn| IdNat::parse(cn).ok())
}

/// The card's facts once its chain is verified; `None` when it holds no idNat.
pub fn card_certificate(der: &[u8]) -> Option<CardCertificate> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let idnat = idnat_of(&cert)?;
    Some(CardCertificate {
        idnat,
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: cert.raw_serial().iter().map(|b| format!("{b:02x}")).collect(),
    })
}

/// The DER subject of a certificate (for the TLS CertificateRequest hints).
pub fn subject_der(der: &[u8]) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(cert.subject().as_raw().to_vec())
}

/// Subject and CRL distribution point URLs, for the logs.
pub fn name_and_cdp(der: &[u8]) -> (String, Vec<String>) {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return ("(unreadable)".into(), Vec::new());
    };
    let mut urls = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for p in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &p.distribution_point {
                    urls.extend(names.iter().filter_map(|n| match n {
                        GeneralName::URI(u) => Some((*u).to_owned()),
                        _ => None,
                    }));
                }
            }
        }
    }
    (cert.subject().to_string(), urls)
}
