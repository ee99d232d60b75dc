//! Trust for TLS to the IMAP and SMTP servers: the system's certificate store (what
//! `update-ca-certificates` maintains, so a hospital's own CA installed there is trusted),
//! plus an optional `ca_file`. Mozilla's bundle stands in only when the system store is empty
//! (a minimal container without ca-certificates). Verification is never turned off.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tracing::warn;

use crate::secrets;

/// The trust roots or the TLS set-up could not be built; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// The system's roots, loaded once per process (a changed store needs a restart); empty when
/// the system has none, and then callers trust Mozilla's bundle instead.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            warn!(error = %e, "skipping an unreadable certificate in the system store");
        }
        if found.certs.is_empty() {
            warn!("the system certificate store is empty: trusting Mozilla's bundled roots");
        }
        found.certs
    })
}

/// An error about `ca_file`, naming the file as the admin wrote it, expanded.
fn bad_ca_file(path: &Path, e: &dyn std::fmt::Display) -> TlsError {
    TlsError(format!(
        "ca_file {}: {e}",
        secrets::expand_path(path).display()
    ))
}

/// The certificates of `ca_file` (PEM, one or more), read now.
fn ca_file_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(secrets::expand_path(path))
        .map_err(|e| bad_ca_file(path, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_ca_file(path, &e))?;
    if certs.is_empty() {
        return Err(bad_ca_file(path, &"no PEM certificate in the file"));
    }
    Ok(certs)
}

/// The root store: the system's roots (else Mozilla's) and the CA file's certificates.
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let system = system_roots();
    if system.is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        // Unusable entries (expired formats, odd extensions) are skipped, as browsers do.
        let _ = roots.add_parsable_certificates(system.iter().cloned());
    }
    if let Some(path) = ca_file {
        for cert in ca_file_certs(path)? {
            roots.add(cert).map_err(|e| bad_ca_file(path, &e))?;
        }
    }
    Ok(roots)
}

/// A rustls client configuration over [`root_store`] (ring, TLS 1.2 and 1.3).
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS set-up: {e}")))?
        .with_root_certificates(root_store(ca_file)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// lettre's STARTTLS parameters for `host`, trusting exactly what [`root_store`] trusts.
pub fn smtp_parameters(
    host: &str,
    ca_file: Option<&Path>,
) -> Result<lettre::transport::smtp::client::TlsParameters, TlsError> {
    use lettre::transport::smtp::client::{Certificate, CertificateStore, TlsParameters};
    let mut builder =
        TlsParameters::builder(host.to_string()).certificate_store(CertificateStore::None);
    let system = system_roots();
    if system.is_empty() {
        builder = builder.certificate_store(CertificateStore::WebpkiRoots);
    }
    let extra = match ca_file {
        Some(path) => ca_file_certs(path)?,
        None => Vec::new(),
    };
    for der in system.iter().chain(&extra) {
        // A system entry lettre cannot parse is skipped, as in root_store.
        if let Ok(cert) = Certificate::from_der(der.to_vec()) {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build_rustls()
        .map_err(|e| TlsError(format!("TLS set-up: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let e = root_store(Some(Path::new("/nonexistent/ca.pem")))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = root_store(Some(&empty))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn without_a_ca_file_some_roots_are_trusted() {
        assert!(!root_store(None).unwrap().is_empty());
    }
}
