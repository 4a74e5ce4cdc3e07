//! FTPS (RFC 4217): certificates, one TLS acceptor per control connection, and the
//! streams of control and data connections.
//!
//! Session reuse: a data connection under PROT P must resume the TLS session of
//! *its own* control connection, so that nobody else can take over a transfer
//! (vsftpd's `require_ssl_reuse`). Each control connection gets its own rustls
//! `ServerConfig` with its own session cache ([`ReusableSessions`]): a data
//! connection can only resume a session that this control connection issued, and
//! [`HandshakeKind::Resumed`] on the data connection proves it did. Unlike rustls's
//! stock cache, ours hands out a stored session any number of times (`take` does
//! not remove), because clients such as FileZilla resume the control session for
//! every transfer, and TLS 1.3 tickets are single-use by default.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use ferry_config::{TlsSection, TlsVersion};
use rustls::server::{ResolvesServerCert, StoresServerSessions};
use rustls::{HandshakeKind, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("tls.certificate and tls.private_key go together: set both or neither")]
    HalfConfigured,
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(String),
    #[error("the certificate and key do not fit together: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("the TLS versions and cipher suites do not fit together: {0}")]
    Versions(rustls::Error),
}

/// A session cache owned by one control connection. Bounded: past its size, the
/// oldest entries go.
#[derive(Debug, Default)]
pub struct ReusableSessions {
    inner: Mutex<SessionMap>,
}

/// Sessions by key, and the keys oldest first.
type SessionMap = (HashMap<Vec<u8>, Vec<u8>>, Vec<Vec<u8>>);

const SESSIONS_PER_CONNECTION: usize = 16;

impl StoresServerSessions for ReusableSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *guard;
        if !map.contains_key(&key) {
            order.push(key.clone());
            if order.len() > SESSIONS_PER_CONNECTION {
                let old = order.remove(0);
                map.remove(&old);
            }
        }
        map.insert(key, value);
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .get(key)
            .cloned()
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        // Not removed: the control session may be resumed by every data connection.
        self.get(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// The server's TLS identity and settings; hands out per-connection acceptors.
#[derive(Debug)]
pub struct TlsContext {
    resolver: Arc<ReloadableCert>,
    /// The configuration every session's is a copy of.
    base: ServerConfig,
    settings: TlsSection,
    generated_dir: PathBuf,
}

/// A control connection's TLS: one acceptor for the control connection and one
/// for its data connections, sharing one session cache.
#[derive(Clone)]
pub struct SessionTls {
    acceptor: TlsAcceptor,
    data_acceptor: TlsAcceptor,
}

impl std::fmt::Debug for SessionTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionTls")
    }
}

impl SessionTls {
    /// For the control connection.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// For data connections: they resume the control connection's session and
    /// issue no tickets of their own. (An unread ticket in a client's receive
    /// buffer when it closes an upload turns its FIN into a reset, which would
    /// end a complete upload as a failed one.)
    pub fn data_acceptor(&self) -> &TlsAcceptor {
        &self.data_acceptor
    }
}

fn read_pem(
    path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, Option<PrivateKeyDer<'static>>), TlsSetupError> {
    let bytes = std::fs::read(path).map_err(|source| TlsSetupError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Pem {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).ok();
    Ok((certs, key))
}

/// The certificate in use, with its fingerprint.
struct Loaded {
    key: Arc<rustls::sign::CertifiedKey>,
    fingerprint: String,
}

/// Reads the configured certificate and key, or the generated pair.
fn load(tls: &TlsSection, generated_dir: &Path) -> Result<Loaded, TlsSetupError> {
    let (cert_path, key_path) = match (&tls.certificate, &tls.private_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => {
            let (c, k) = (
                generated_dir.join("cert.pem"),
                generated_dir.join("key.pem"),
            );
            if !c.exists() || !k.exists() {
                generate(&c, &k)?;
            }
            (c, k)
        }
        _ => return Err(TlsSetupError::HalfConfigured),
    };
    let (certs, _) = read_pem(&cert_path)?;
    if certs.is_empty() {
        return Err(TlsSetupError::Pem {
            path: cert_path,
            message: "no certificate in the file".into(),
        });
    }
    let key = read_pem(&key_path)?.1.ok_or_else(|| TlsSetupError::Pem {
        path: key_path.clone(),
        message: "no private key in the file".into(),
    })?;
    let fingerprint = Sha256::digest(certs[0].as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    let provider = provider();
    let signing = provider.key_provider.load_private_key(key)?;
    let certified = rustls::sign::CertifiedKey::new(certs, signing);
    certified.keys_match()?;
    Ok(Loaded {
        key: Arc::new(certified),
        fingerprint,
    })
}

/// The crypto provider (aws-lc-rs unless the process installed another), with
/// its cipher suites in ferry's order of preference, which the server applies
/// (`ignore_client_order`): AES-128-GCM first on a CPU with AES instructions,
/// then AES-256-GCM, then ChaCha20-Poly1305; ChaCha20-Poly1305 first on a CPU
/// without them. Clients (curl, OpenSSL) list AES-256-GCM first, which takes 14
/// AES rounds per block to AES-128's 10 for no practical gain in security; Go's
/// TLS stack and BoringSSL order them this way too. The suites offered are
/// the provider's, unchanged.
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::CipherSuite as C;
    let mut provider = rustls::crypto::CryptoProvider::get_default()
        .map(|p| (**p).clone())
        .unwrap_or_else(rustls::crypto::aws_lc_rs::default_provider);
    let aes_in_hardware = aes_in_hardware();
    provider.cipher_suites.sort_by_key(|suite| {
        let (aes128, aes256, chacha) = if aes_in_hardware {
            (0, 1, 2)
        } else {
            (1, 2, 0)
        };
        match suite.suite() {
            C::TLS13_AES_128_GCM_SHA256
            | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => aes128,
            C::TLS13_AES_256_GCM_SHA384
            | C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => aes256,
            C::TLS13_CHACHA20_POLY1305_SHA256
            | C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => chacha,
            _ => 3,
        }
    });
    provider
}

/// Whether the CPU encrypts AES (and multiplies for GCM) in hardware.
fn aes_in_hardware() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

impl TlsContext {
    /// The configured certificate, or the self-signed one kept in `generated_dir`
    /// (made on first use).
    pub fn from_config(
        tls: &TlsSection,
        generated_dir: &Path,
    ) -> Result<TlsContext, TlsSetupError> {
        let loaded = load(tls, generated_dir)?;
        let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
            TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::V1_3 => &[&rustls::version::TLS13],
        };
        let resolver = Arc::new(ReloadableCert {
            current: std::sync::RwLock::new(loaded),
        });
        let mut base = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(versions)
            .map_err(TlsSetupError::Versions)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        // The server's order of cipher suites, not the client's (see `provider`).
        base.ignore_client_order = true;
        Ok(TlsContext {
            resolver,
            base,
            settings: tls.clone(),
            generated_dir: generated_dir.to_owned(),
        })
    }

    /// SHA-256 of the certificate in use, `AB:CD:...`.
    pub fn fingerprint(&self) -> String {
        self.resolver
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .fingerprint
            .clone()
    }

    /// Reads the certificate and key again (SIGHUP). New handshakes use the new
    /// pair; on failure the old one stays. Returns the new fingerprint.
    pub fn reload(&self) -> Result<String, TlsSetupError> {
        let loaded = load(&self.settings, &self.generated_dir)?;
        let fingerprint = loaded.fingerprint.clone();
        *self
            .resolver
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(fingerprint)
    }

    /// A fresh acceptor with a session cache of its own, for one control connection.
    pub fn for_session(&self) -> SessionTls {
        let sessions: Arc<ReusableSessions> = Arc::default();
        let config = |tickets: usize| {
            let mut c = self.base.clone();
            c.session_storage = sessions.clone();
            c.send_tls13_tickets = tickets;
            TlsAcceptor::from(Arc::new(c))
        };
        SessionTls {
            acceptor: config(4),
            data_acceptor: config(0),
        }
    }
}

/// The certificate every handshake gets; swapped in place on reload.
struct ReloadableCert {
    current: std::sync::RwLock<Loaded>,
}

impl std::fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReloadableCert")
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .key
                .clone(),
        )
    }
}

/// Writes a self-signed certificate for `localhost`, 127.0.0.1 and ::1.
fn generate(cert: &Path, key: &Path) -> Result<(), TlsSetupError> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| TlsSetupError::Generate(e.to_string()))?;
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir).map_err(|source| TlsSetupError::Read {
            path: dir.to_owned(),
            source,
        })?;
    }
    std::fs::write(cert, generated.cert.pem()).map_err(|source| TlsSetupError::Read {
        path: cert.to_owned(),
        source,
    })?;
    write_private(key, generated.signing_key.serialize_pem().as_bytes())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsSetupError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| TlsSetupError::Read {
            path: path.to_owned(),
            source,
        })?;
    f.write_all(bytes).map_err(|source| TlsSetupError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Whether a TLS connection resumed a session.
pub fn resumed(conn: &rustls::ServerConnection) -> bool {
    conn.handshake_kind() == Some(HandshakeKind::Resumed)
}

/// A data connection: plain, or under PROT P.
#[derive(Debug)]
pub enum DataStream {
    Plain(crate::data::DataConnection),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// Implements `AsyncRead` and `AsyncWrite` for a plain-or-TLS enum by
/// passing each call to the variant's stream: `impl [generics] Type { Variants }`.
macro_rules! delegate_io {
    (impl [$($gen:tt)*] $t:ty { $($variant:ident),* }) => {
        impl<$($gen)*> AsyncRead for $t {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $(Self::$variant(s) => Pin::new(s).poll_read(cx, buf),)*
                }
            }
        }
        impl<$($gen)*> AsyncWrite for $t {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                match self.get_mut() {
                    $(Self::$variant(s) => Pin::new(s).poll_write(cx, buf),)*
                }
            }
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $(Self::$variant(s) => Pin::new(s).poll_flush(cx),)*
                }
            }
            fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                match self.get_mut() {
                    $(Self::$variant(s) => Pin::new(s).poll_shutdown(cx),)*
                }
            }
        }
    };
}

delegate_io!(impl [] DataStream { Plain, Tls });

/// A control connection's stream: plain until AUTH TLS, or TLS from the start
/// (implicit FTPS).
#[derive(Debug)]
pub enum ControlStream<S> {
    Plain(S),
    Tls(Box<tokio_rustls::server::TlsStream<S>>),
}

delegate_io!(impl [S: AsyncRead + AsyncWrite + Unpin] ControlStream<S> { Plain, Tls });
