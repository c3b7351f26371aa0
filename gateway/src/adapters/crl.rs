//! Certificate revocation lists read from disk (PEM, one or more per file, or one DER), for the
//! card chain (`cards`) and the FIDO MDS blob signer's chain (`fido_mds`).
use rustls::pki_types::CertificateRevocationListDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use webpki::{CertRevocationList, OwnedCertRevocationList};

/// The CRLs of one file; the error says what is wrong with it (without the path).
pub fn read_crl_file(path: &Path) -> Result<Vec<CertRevocationList<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let ders: Vec<Vec<u8>> = if bytes.starts_with(b"-----BEGIN") {
        CertificateRevocationListDer::pem_slice_iter(&bytes)
            .map(|r| r.map(|d| d.as_ref().to_vec()))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?
    } else {
        vec![bytes]
    };
    if ders.is_empty() {
        return Err("no CRL in this file".into());
    }
    ders.iter()
        .map(|d| {
            OwnedCertRevocationList::from_der(d)
                .map(CertRevocationList::from)
                .map_err(|e| format!("not a valid CRL: {e:?}"))
        })
        .collect()
}
