//! TLS for FTPS control and data connections (RFC 4217).
//!
//! Certificates are checked against the system's roots by default, or against a
//! given CA file, or by the SHA-256 fingerprint of the server's certificate
//! (pinning), or not at all (`--insecure`). Signatures of the handshake are always
//! verified.
//!
//! Data connections resume the control connection's TLS session, because servers
//! such as vsftpd (`require_ssl_reuse`) and ferry refuse a data connection that does
//! not: that is how they know the data connection comes from the same client. A
//! rustls client uses each TLS 1.3 ticket once and a server sends only a few, so a
//! session with many data connections would run out; TLS 1.2 sessions can be resumed
//! any number of times. The client therefore speaks TLS 1.2 (ECDHE key exchange and
//! AEAD ciphers only) unless told `TlsVersions::Tls13Allowed`; see docs/client.md.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::Digest;

use crate::error::{ClientError, Result};

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CertificateCheck {
    /// Against the operating system's trusted roots, and the host name.
    #[default]
    SystemRoots,
    /// Against the CA certificates in this PEM file, and the host name.
    CaFile(PathBuf),
    /// The server's certificate must have this SHA-256 fingerprint; name and
    /// expiry are not checked (the pin is the trust).
    Pinned([u8; 32]),
    /// No check at all (signatures still verified). For tests and self-signed
    /// servers one knows.
    Insecure,
}

impl CertificateCheck {
    /// Parses a fingerprint as printed by `openssl x509 -fingerprint -sha256`
    /// (`AB:CD:...`), or as plain hex, optionally prefixed `sha256:` or `sha256//`.
    pub fn pinned(text: &str) -> Result<Self> {
        let t = text.trim();
        let t = t
            .strip_prefix("sha256:")
            .or_else(|| t.strip_prefix("sha256//"))
            .unwrap_or(t);
        let hex: String = t.chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(&hex)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                ClientError::TlsSetup(format!(
                    "{text:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)"
                ))
            })?;
        Ok(CertificateCheck::Pinned(bytes))
    }
}

/// Which TLS versions may be negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersions {
    /// TLS 1.2 only, so data connections can always resume the control session.
    #[default]
    Tls12,
    /// TLS 1.2 or 1.3: fine for servers that do not insist on session reuse, or
    /// for sessions with few data connections.
    Tls13Allowed,
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// A rustls client configuration for one FTP session: the control connection and
/// all its data connections share it, and with it the session cache.
pub fn client_config(check: &CertificateCheck, versions: TlsVersions) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let protocol_versions: &[&rustls::SupportedProtocolVersion] = match versions {
        TlsVersions::Tls12 => &[&rustls::version::TLS12],
        TlsVersions::Tls13Allowed => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(protocol_versions)
        .map_err(|e| ClientError::TlsSetup(e.to_string()))?;
    let config = match check {
        CertificateCheck::SystemRoots => {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(ClientError::TlsSetup(
                    "no trusted root certificates found on this system; give --ca-file, \
                     --pin or --insecure"
                        .to_owned(),
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        CertificateCheck::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| ClientError::TlsSetup(format!("{}: {e}", path.display())))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| ClientError::TlsSetup(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| ClientError::TlsSetup(format!("{}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(ClientError::TlsSetup(format!(
                    "{}: no certificates in this file",
                    path.display()
                )));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        CertificateCheck::Pinned(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LooseVerifier {
                pin: Some(*pin),
                provider,
            }))
            .with_no_client_auth(),
        CertificateCheck::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LooseVerifier {
                pin: None,
                provider,
            }))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name the certificate must carry: a DNS name or an IP address.
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    ServerName::try_from(host.to_owned())
        .map_err(|_| ClientError::TlsSetup(format!("{host:?} is not a valid TLS server name")))
}

/// Accepts the certificate chain when it is pinned by fingerprint (or in insecure
/// mode at all), and verifies handshake signatures as usual.
#[derive(Debug)]
struct LooseVerifier {
    pin: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for LooseVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.pin {
            None => Ok(ServerCertVerified::assertion()),
            Some(pin) => {
                let seen: [u8; 32] = sha2::Sha256::digest(end_entity.as_ref()).into();
                if seen == pin {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(rustls::Error::General(format!(
                        "certificate fingerprint sha256:{} is not the pinned one",
                        hex::encode(seen)
                    )))
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_in_the_usual_spellings() {
        let hex = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        for text in [
            hex.clone(),
            colons,
            format!("sha256:{hex}"),
            format!("sha256//{hex}"),
        ] {
            assert_eq!(
                CertificateCheck::pinned(&text).expect("test input"),
                CertificateCheck::Pinned([0xab; 32])
            );
        }
        assert!(CertificateCheck::pinned("abcd").is_err());
        assert!(CertificateCheck::pinned(&"zz".repeat(32)).is_err());
    }
}
