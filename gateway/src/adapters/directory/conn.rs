//! Connections to one directory: TLS through rustls with the configured CA bundle, the URLs
//! tried in order (failover), every step under a timeout so a silent server cannot hang logins.
use super::{DirectoryError, DirectorySettings};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;
use std::time::Duration;

/// The rustls configuration for this directory: the CA bundle if one is configured, otherwise
/// ldap3's default (the system's roots). Verification is never turned off.
pub fn tls_config(ca_file: Option<&std::path::Path>) -> Result<Option<Arc<rustls::ClientConfig>>, DirectoryError> {
    let Some(path) = ca_file else { return Ok(None) };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| DirectoryError::Config(format!("ca_file {}: {e}", path.display())))?;
    for c in certs {
        let c = c.map_err(|e| DirectoryError::Config(format!("ca_file {}: {e}", path.display())))?;
        roots
            .add(c)
            .map_err(|e| DirectoryError::Config(format!("ca_file {}: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(DirectoryError::Config(format!("ca_file {}: no certificate", path.display())));
    }
    Ok(Some(Arc::new(
        rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth(),
    )))
}

/// Runs `fut` under `limit`; a timeout is an unavailable directory. Each call is one `ldap`
/// span named by its operation (the first word of `what`: connect, bind, search); the rest
/// of `what`, DNs and credentials stay out of it.
pub async fn timed<T>(limit: Duration, what: &str, fut: impl Future<Output = Result<T, ldap3::LdapError>>) -> Result<T, DirectoryError> {
    use tracing::Instrument;
    let op = what.split(' ').next().unwrap_or("call");
    let span = tracing::info_span!(
        "ldap",
        otel.name = %format_args!("ldap {op}"),
        otel.kind = "client",
        ldap.operation = op,
        otel.status_code = tracing::field::Empty,
    );
    let r = timed_inner(limit, what, fut).instrument(span.clone()).await;
    if r.is_err() {
        span.record("otel.status_code", "ERROR");
    }
    r
}

async fn timed_inner<T>(limit: Duration, what: &str, fut: impl Future<Output = Result<T, ldap3::LdapError>>) -> Result<T, DirectoryError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(DirectoryError::Unavailable(format!("{what}: {e}"))),
        Err(_) => Err(DirectoryError::Unavailable(format!(
            "{what}: no answer within {}ms",
            limit.as_millis()
        ))),
    }
}

/// Opens one connection to `url` (TLS per the URL scheme and `starttls`).
pub async fn open(s: &DirectorySettings, url: &str) -> Result<Ldap, DirectoryError> {
    let mut cs = LdapConnSettings::new()
        .set_conn_timeout(s.connect_timeout)
        .set_starttls(s.starttls && url.starts_with("ldap://"));
    if let Some(cfg) = &s.tls {
        cs = cs.set_config(cfg.clone());
    }
    // The connect timeout covers TCP, TLS handshake and StartTLS together.
    let (conn, ldap) = timed(s.connect_timeout, &format!("connect {url}"), LdapConnAsync::with_settings(cs, url)).await?;
    ldap3::drive!(conn);
    Ok(ldap)
}

/// Opens a connection to the first URL that answers. Returns it with the index of that URL.
pub async fn open_any(s: &DirectorySettings) -> Result<(Ldap, usize), DirectoryError> {
    let mut errors = Vec::new();
    for (i, url) in s.urls.iter().enumerate() {
        match open(s, url).await {
            Ok(l) => return Ok((l, i)),
            Err(e) => {
                tracing::warn!(directory = %s.name, url = %url, error = %e, "directory server unreachable; trying the next one");
                errors.push(e.to_string());
            }
        }
    }
    Err(DirectoryError::Unavailable(format!("every server failed: {}", errors.join("; "))))
}

/// A simple bind; `Ok(false)` when the directory says the credentials are invalid (49).
pub async fn bind(ldap: &mut Ldap, limit: Duration, dn: &str, password: &str) -> Result<bool, DirectoryError> {
    // An empty password is an "unauthenticated bind" (RFC 4513 §5.1.2): many servers answer
    // success without checking anything. Never send one.
    if password.is_empty() || dn.is_empty() {
        return Ok(false);
    }
    let r = timed(limit, "bind", ldap.simple_bind(dn, password)).await?;
    match r.rc {
        0 => Ok(true),
        // invalidCredentials; inappropriateAuthentication; unwillingToPerform (e.g. AD's
        // "password must change" on some versions): all answered as a failed bind.
        49 | 48 | 53 => Ok(false),
        rc => Err(DirectoryError::Unavailable(format!("bind answered {rc}: {}", r.text))),
    }
}
