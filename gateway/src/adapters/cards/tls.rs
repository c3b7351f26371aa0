//! The card listener's TLS (rustls): an optional client certificate is requested; the TLS
//! handshake only proves that the client holds the certificate's private key (the card, with
//! its PIN). The chain, validity and revocation are checked afterwards by `CardVerifier`, so a
//! refused card gets a plain page saying why instead of a browser TLS error.
use super::{CardConfigError, file_error, read_pem_certs};
use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::rt::net::TcpStream;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// The certificate chain a client presented on the card listener (leaf first, DER), kept as
/// connection data for the handlers (`HttpRequest::conn_data`).
#[derive(Debug, Clone)]
pub struct PeerCertificates(pub Vec<Vec<u8>>);

/// Any certificate is let through the handshake, whose signature still proves possession of
/// the key; trust is decided later, where the person can be told why.
#[derive(Debug)]
struct OptionalClientCert {
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for OptionalClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }
    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The card listener's server config: its own certificate, an optional client certificate
/// hinted at the IGC-Santé authorities' names.
pub fn server_config(cert: &Path, key: &Path, hint_subjects: &[Vec<u8>]) -> Result<ServerConfig, CardConfigError> {
    let chain = read_pem_certs(&[cert.to_path_buf()])?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = OptionalClientCert {
        hints: hint_subjects.iter().map(|s| DistinguishedName::from(s.clone())).collect(),
        algs: provider.signature_verification_algorithms,
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| file_error(cert, e))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)
        .map_err(|e| file_error(cert, e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// `HttpServer::on_connect` hook: keeps the client certificate of a TLS connection.
pub fn on_connect(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    if let Some(tls) = conn.downcast_ref::<TlsStream<TcpStream>>()
        && let Some(certs) = tls.get_ref().1.peer_certificates()
    {
        ext.insert(PeerCertificates(certs.iter().map(|c| c.as_ref().to_vec()).collect()));
    }
}
