//! TLS to the server through rustls, with libpq's `sslmode` meanings:
//!
//! | `sslmode` | TLS | what is checked |
//! |---|---|---|
//! | `disable` | never | - |
//! | `allow`, `prefer` (default) | if the server offers it | nothing, unless `sslrootcert` is given: then the chain |
//! | `require` | always | nothing, unless `sslrootcert` is given: then the chain (as libpq does) |
//! | `verify-ca` | always | the chain, against `sslrootcert` |
//! | `verify-full` | always | the chain, and that the certificate names the host |
//!
//! `sslrootcert` defaults to `~/.postgresql/root.crt`, as in libpq. `sslrootcert=system` takes
//! the system's trusted roots from where OpenSSL (and so libpq) finds them: `SSL_CERT_FILE`,
//! else the distribution's bundle (Debian's `/etc/ssl/certs/ca-certificates.crt`, Fedora's,
//! SUSE's, Alpine's, FreeBSD's, macOS's `/etc/ssl/cert.pem`); it implies `verify-full`.
//!
//! A client certificate (`sslcert` and `sslkey`, PEM; libpq's defaults
//! `~/.postgresql/postgresql.crt` and `.key`) is sent when the server asks for one, for
//! `cert` authentication. The key must be readable by its owner only, as libpq requires. An
//! encrypted key cannot be used: `sslpassword` is accepted, but rustls cannot decrypt a
//! PKCS#8 key, so an encrypted one fails with a message that says to store it decrypted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use rustls::pki_types::PrivateKeyDer;

use super::conninfo::{RootCert, SslMode};

/// Where OpenSSL's builds look for the system's CA bundle, in the order openssl-probe tries.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/share/certs/ca-root-nss.crt",
    "/usr/local/etc/ssl/cert.pem",
];

/// The connector for `mode`, or `None` for `sslmode=disable`.
pub(crate) fn connector(
    mode: SslMode,
    root_cert: Option<&RootCert>,
    client_cert: Option<&(PathBuf, PathBuf)>,
) -> Result<Option<MakeRustlsConnect>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match (mode, root_cert) {
        (SslMode::Disable, _) => return Ok(None),
        (_, Some(RootCert::File(path))) => Some(load_roots(path)?),
        (_, Some(RootCert::System)) => Some(system_roots()?),
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            let path = default_root_cert().ok_or(
                "sslmode=verify-ca and verify-full need the CA's certificate: set sslrootcert \
                 (~/.postgresql/root.crt does not exist)",
            )?;
            Some(load_roots(&path)?)
        }
        (_, None) => default_root_cert()
            .map(|path| load_roots(&path))
            .transpose()?,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        None => Arc::new(AnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        }),
        Some(roots) => {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| format!("cannot use the CA certificates: {e}"))?;
            if mode == SslMode::VerifyFull {
                webpki
            } else {
                Arc::new(ChainOnly { webpki })
            }
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let (certs, key) = load_client_cert(cert, key)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("cannot use the client certificate {}: {e}", cert.display()))?
        }
    };
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// The system's trusted roots (see the module documentation).
fn system_roots() -> Result<RootCertStore, String> {
    let bundle = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .or_else(|| {
            SYSTEM_BUNDLES
                .iter()
                .map(PathBuf::from)
                .find(|path| path.is_file())
        })
        .ok_or(
            "sslrootcert=system: no system CA bundle found (install ca-certificates, or set \
             SSL_CERT_FILE)",
        )?;
    load_roots(&bundle)
}

/// A client certificate chain and its key, from PEM files.
fn load_client_cert(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read sslcert {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "sslcert {} holds no PEM certificate",
            cert.display()
        ));
    }
    private_to_owner(key)?;
    let text = std::fs::read_to_string(key)
        .map_err(|e| format!("cannot read sslkey {}: {e}", key.display()))?;
    if text.contains("ENCRYPTED") {
        return Err(format!(
            "sslkey {} is encrypted, and pidlockfile cannot decrypt it (sslpassword): store it \
             decrypted, readable by its owner only (openssl pkey -in KEY -out KEY.plain)",
            key.display()
        ));
    }
    let key_der = PrivateKeyDer::from_pem_slice(text.as_bytes())
        .map_err(|e| format!("cannot read sslkey {}: {e}", key.display()))?;
    Ok((certs, key_der))
}

/// libpq's rule for a key file: no access for others (0600 or less), or 0640 if root owns it.
/// Like libpq, nothing is checked where there are no Unix modes (Windows).
#[cfg_attr(not(unix), allow(unused_variables))]
fn private_to_owner(key: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(key)
            .map_err(|e| format!("cannot read sslkey {}: {e}", key.display()))?;
        let mode = meta.mode() & 0o777;
        let allowed = if meta.uid() == 0 { 0o640 } else { 0o600 };
        if mode & !allowed != 0 {
            return Err(format!(
                "sslkey {} has group or world access (mode {mode:o}); it must be u=rw (0600) or \
                 less, or u=rw,g=r (0640) or less if owned by root",
                key.display()
            ));
        }
    }
    Ok(())
}

fn default_root_cert() -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    let path = Path::new(&home).join(".postgresql").join("root.crt");
    path.is_file().then_some(path)
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("bad certificate in sslrootcert {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "sslrootcert {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(roots)
}

/// `verify-ca`: the chain must lead to a trusted CA; the name in the certificate may differ
/// from the host's.
#[derive(Debug)]
struct ChainOnly {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a CA: encrypted, but anyone may be on the other end, as
/// with libpq. The handshake's signatures are still checked.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
