//! TLS client configuration for Relais' outgoing connections to other servers (the SIEM
//! collector, Pro Santé Connect's back channel): server verification always on, against a
//! configured CA bundle or the system's roots, and an optional client certificate (mTLS).
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// `ca_file`: PEM bundle of the CAs to trust (default: the system's). `client_cert`: PEM chain
/// and PEM private key presented when the server asks. Errors name the file at fault.
pub fn client_config(ca_file: Option<&Path>, client_cert: Option<(&Path, &Path)>) -> Result<Arc<rustls::ClientConfig>, String> {
    let bad = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(p) => {
            let what = format!("ca_file {}", p.display());
            for cert in CertificateDer::pem_file_iter(p).map_err(|e| bad(&what, &e))? {
                roots.add(cert.map_err(|e| bad(&what, &e))?).map_err(|e| bad(&what, &e))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err("no CA certificate to verify the server with (set ca_file)".into());
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match client_cert {
        Some((cert, key)) => {
            let cw = format!("client_cert_file {}", cert.display());
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| bad(&cw, &e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| bad(&cw, &e))?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(&format!("client_key_file {}", key.display()), &e))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad("client certificate", &e))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
