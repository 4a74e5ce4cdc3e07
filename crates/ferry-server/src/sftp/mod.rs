//! SFTP over SSH: the SSH File Transfer Protocol, version 3
//! (draft-ietf-secsh-filexfer-02), in the SSH connection protocol's `sftp`
//! subsystem (RFC 4254 §6.5), on the listeners of `[sftp] listen`.
//!
//! - [`ssh`] is the SSH side (russh): password authentication through the
//!   same sign-in as FTP (`crate::signin`: bans, address and time rules,
//!   `max_sessions`, homes, quota usage), session channels, the subsystem.
//!   No shell, no exec, no forwarding.
//! - [`session::SftpSession`] answers one channel's requests, one file per
//!   request family (`files.rs`, `dirs.rs`, `attrs.rs`), and [`status`] is
//!   the one place where a failure becomes an SFTP status code.
//! - [`certificates`] checks OpenSSH user certificates against the trusted
//!   certificate authorities, and [`revocation`] holds the revoked keys:
//!   together the [`SshTrust`], read again on SIGHUP.
//! - [`SftpContext`] holds the host key and the SSH settings.
//!
//! Design notes are in docs/sftp.md.

mod attrs;
pub mod certificates;
mod dirs;
mod extensions;
mod files;
pub mod revocation;
pub mod session;
pub mod ssh;
pub mod status;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry_config::{SftpSection, SshAuthMethod};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey};
use russh::{MethodKind, MethodSet, SshId};

/// Why SFTP cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SftpSetupError {
    /// The configured host key cannot be read or parsed.
    #[error("cannot read the SSH host key {path}: {reason}")]
    HostKey { path: String, reason: String },
    /// The generated host key cannot be stored.
    #[error("cannot store a new SSH host key in {path}: {reason}")]
    StoreKey { path: String, reason: String },
    /// A file of `trusted_user_ca_keys` cannot be read, or holds something
    /// other than public keys.
    #[error("cannot read the trusted user CA keys in {path}: {reason}")]
    UserCaKeys { path: String, reason: String },
    /// The `revoked_keys` file cannot be read, or is neither public keys
    /// nor a key revocation list that can be read whole.
    #[error("cannot read the revoked keys in {path}: {reason}")]
    RevokedKeys { path: String, reason: String },
}

/// The SHA-256 fingerprints of the OpenSSH public keys in `text`, one per
/// line, as sshd's key files hold them; blank lines and `#` comments are
/// skipped. An error names the first line that is not a key.
fn key_fingerprints(text: &str) -> Result<Vec<russh::keys::ssh_key::Fingerprint>, String> {
    let mut fingerprints = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = russh::keys::PublicKey::from_openssh(line)
            .map_err(|e| format!("line {}: not a public key: {e}", n + 1))?;
        fingerprints.push(key.fingerprint(HashAlg::Sha256));
    }
    Ok(fingerprints)
}

/// Which keys sign in beyond a user's `authorized_keys`, and which never
/// do: the trusted certificate authorities and the revoked keys.
#[derive(Debug, Default)]
pub struct SshTrust {
    pub cas: certificates::TrustedUserCas,
    pub revoked: revocation::RevokedKeys,
}

impl SshTrust {
    /// Reads `trusted_user_ca_keys` and `revoked_keys`.
    pub fn read(section: &SftpSection) -> Result<Self, SftpSetupError> {
        Ok(SshTrust {
            cas: certificates::TrustedUserCas::read(&section.trusted_user_ca_keys)?,
            revoked: match &section.revoked_keys {
                Some(path) => revocation::RevokedKeys::read(path)?,
                None => revocation::RevokedKeys::default(),
            },
        })
    }

    /// Whether `cert` signs in `user` from `client` at `now`: neither its key
    /// nor its authority revoked, nor the certificate itself (by serial
    /// number or key id), and [`certificates::TrustedUserCas::check`] when
    /// the server trusts its authority (for the user's `ssh_principals`, or
    /// else the user's name), or else
    /// [`certificates::check_by_user_authority`] by the
    /// user's own `cert-authority` lines.
    pub fn check_certificate(
        &self,
        cert: &russh::keys::Certificate,
        user: &str,
        client: std::net::IpAddr,
        now: std::time::SystemTime,
        own: &ferry_accounts::CertificateRules,
    ) -> Result<(), certificates::CertificateRefusal> {
        for key in [cert.public_key(), cert.signature_key()] {
            if self.revoked.contains(key) {
                return Err(certificates::CertificateRefusal::Revoked {
                    key: key.fingerprint(HashAlg::Sha256).to_string(),
                });
            }
        }
        match self.revoked.revokes_certificate(cert) {
            Some(revocation::CertificateRevocation::Serial(serial)) => {
                return Err(certificates::CertificateRefusal::RevokedSerial(serial));
            }
            Some(revocation::CertificateRevocation::KeyId(id)) => {
                return Err(certificates::CertificateRefusal::RevokedKeyId(id));
            }
            None => {}
        }
        if own.authorities.is_empty() || self.cas.trusts(cert) {
            let principals: Vec<&str> = match own.principals.as_slice() {
                [] => vec![user],
                names => names.iter().map(ferry_config::Principal::as_str).collect(),
            };
            self.cas.check(cert, &principals, user, client, now)
        } else {
            certificates::check_by_user_authority(cert, &own.authorities, user, client, now)
        }
    }
}

impl std::fmt::Display for SshTrust {
    /// What is trusted and revoked, counted, for the log of a reload.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} certificate authorities, {}",
            self.cas.len(),
            self.revoked
        )
    }
}

/// The SSH server's settings: the host key, the sign-in methods offered and
/// russh's configuration.
pub struct SftpContext {
    pub(crate) config: Arc<russh::server::Config>,
    /// The authentication methods offered (`sftp.authentication`).
    pub(crate) methods: MethodSet,
    /// The trusted authorities and revoked keys, replaced whole by
    /// [`SftpContext::reload_trust`]; each connection keeps the one it
    /// started with.
    trust: std::sync::RwLock<Arc<SshTrust>>,
    /// Where the trust is read from.
    section: SftpSection,
    fingerprint: String,
}

impl std::fmt::Debug for SftpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpContext")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// The name of the host key generated when none is configured.
pub const GENERATED_KEY: &str = "ssh_host_ed25519_key";

impl SftpContext {
    /// The settings of `[sftp]`: the host key from `host_key`, or else the
    /// one generated once in `generated_dir` (made, with an Ed25519 key, on
    /// first use); users sign in by `authentication`, with certificates from
    /// `trusted_user_ca_keys`; sessions idle for `idle_timeout` are closed.
    pub fn new(
        section: &SftpSection,
        generated_dir: &Path,
        idle_timeout: Duration,
    ) -> Result<Self, SftpSetupError> {
        let host_key = section.host_key.as_deref();
        let methods = &section.authentication;
        let trust = SshTrust::read(section)?;
        let key = match host_key {
            Some(path) => {
                PrivateKey::read_openssh_file(path).map_err(|e| SftpSetupError::HostKey {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?
            }
            None => generated_key(generated_dir)?,
        };
        if key.algorithm().is_rsa() {
            // The host key signs at every connection, for anyone who
            // connects: the many timings RUSTSEC-2023-0071 needs.
            return Err(SftpSetupError::HostKey {
                path: host_key
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                reason: "RSA host keys are not used (the `rsa` crate's private-key operations \
                         have a timing advisory, RUSTSEC-2023-0071): make an Ed25519 key with \
                         `ssh-keygen -t ed25519 -f KEY -N ''`"
                    .into(),
            });
        }
        let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        let methods = MethodSet::from(
            &methods
                .iter()
                .map(|m| match m {
                    SshAuthMethod::PublicKey => MethodKind::PublicKey,
                    SshAuthMethod::Password => MethodKind::Password,
                    SshAuthMethod::KeyboardInteractive => MethodKind::KeyboardInteractive,
                })
                .collect::<Vec<_>>()[..],
        );
        let config = russh::server::Config {
            server_id: SshId::Standard(concat!("SSH-2.0-ferry_", env!("CARGO_PKG_VERSION")).into()),
            methods: methods.clone(),
            // Failed passwords are slowed down by the ban list, as over FTP.
            auth_rejection_time: Duration::ZERO,
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![key],
            inactivity_timeout: Some(idle_timeout),
            max_auth_attempts: 6,
            nodelay: true,
            preferred: russh::Preferred {
                key: sha2_key_algorithms(),
                ..russh::Preferred::DEFAULT
            },
            ..Default::default()
        };
        Ok(SftpContext {
            config: Arc::new(config),
            methods,
            trust: std::sync::RwLock::new(Arc::new(trust)),
            section: section.clone(),
            fingerprint,
        })
    }

    /// The trust new connections sign in by.
    pub(crate) fn trust(&self) -> Arc<SshTrust> {
        match self.trust.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads `trusted_user_ca_keys` and `revoked_keys` again (SIGHUP), for
    /// the connections that start from now on. On a failure the old trust
    /// stays. Answers the new trust.
    pub fn reload_trust(&self) -> Result<Arc<SshTrust>, SftpSetupError> {
        let trust = Arc::new(SshTrust::read(&self.section)?);
        match self.trust.write() {
            Ok(mut t) => *t = trust.clone(),
            Err(poisoned) => *poisoned.into_inner() = trust.clone(),
        }
        Ok(trust)
    }

    /// The host key's SHA-256 fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// russh's key algorithms but `ssh-rsa` with SHA-1: what the server lists
/// in `server-sig-algs` (RFC 8308), so that clients sign with RSA keys as
/// `rsa-sha2-512` or `-256` (RFC 8332).
fn sha2_key_algorithms() -> std::borrow::Cow<'static, [russh::keys::Algorithm]> {
    russh::Preferred::DEFAULT
        .key
        .iter()
        .filter(|a| **a != russh::keys::Algorithm::Rsa { hash: None })
        .cloned()
        .collect()
}

/// The host key kept in `dir`, made on first use (readable by its owner only).
fn generated_key(dir: &Path) -> Result<PrivateKey, SftpSetupError> {
    let path = dir.join(GENERATED_KEY);
    if path.exists() {
        return PrivateKey::read_openssh_file(&path).map_err(|e| SftpSetupError::HostKey {
            path: path.display().to_string(),
            reason: e.to_string(),
        });
    }
    let store = |reason: String| SftpSetupError::StoreKey {
        path: dir.display().to_string(),
        reason,
    };
    let seed: [u8; 32] = rand::random();
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| store(e.to_string()))?;
    std::fs::create_dir_all(dir).map_err(|e| store(e.to_string()))?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| store(e.to_string()))?;
    file.write_all(text.as_bytes())
        .map_err(|e| store(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A context with every sign-in method, made or read in `dir`.
    fn context(host_key: Option<&Path>, dir: &Path) -> Result<SftpContext, SftpSetupError> {
        let section = SftpSection {
            host_key: host_key.map(Path::to_path_buf),
            ..SftpSection::default()
        };
        SftpContext::new(&section, dir, Duration::from_secs(60))
    }

    /// SIGHUP's reload: new files are read for the connections to come; a
    /// broken one keeps the trust as it was.
    #[test]
    fn the_trust_is_read_again_and_kept_when_the_files_are_broken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = |seed: u8| {
            crate::test_support::ed25519_key(seed)
                .public_key()
                .to_openssh()
                .expect("openssh")
        };
        let (cas, revoked) = (dir.path().join("cas"), dir.path().join("revoked"));
        std::fs::write(&cas, key(1)).expect("cas");
        std::fs::write(&revoked, "").expect("revoked");
        let section = SftpSection {
            trusted_user_ca_keys: vec![cas.clone()],
            revoked_keys: Some(revoked.clone()),
            ..SftpSection::default()
        };
        let ctx = SftpContext::new(&section, dir.path(), Duration::from_secs(60)).expect("ctx");
        assert_eq!((ctx.trust().cas.len(), ctx.trust().revoked.len()), (1, 0));
        std::fs::write(&cas, format!("{}\n{}\n", key(1), key(2))).expect("cas");
        std::fs::write(&revoked, key(3)).expect("revoked");
        let reloaded = ctx.reload_trust().expect("reloaded");
        assert_eq!((reloaded.cas.len(), reloaded.revoked.len()), (2, 1));
        assert_eq!(
            reloaded.to_string(),
            "2 certificate authorities, 1 revoked keys, 0 revoked certificate serial ranges, \
             0 revoked certificate key ids"
        );
        std::fs::write(&revoked, "garbage").expect("revoked");
        let err = ctx.reload_trust().expect_err("broken").to_string();
        assert!(
            err.contains("revoked keys") && err.contains("line 1"),
            "{err}"
        );
        assert_eq!((ctx.trust().cas.len(), ctx.trust().revoked.len()), (2, 1));
    }

    #[test]
    fn a_generated_host_key_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = context(None, dir.path()).expect("new key");
        let again = context(None, dir.path()).expect("kept key");
        assert_eq!(first.fingerprint(), again.fingerprint());
        assert!(
            first.fingerprint().starts_with("SHA256:"),
            "{}",
            first.fingerprint()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(GENERATED_KEY))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = tempfile::tempdir().expect("tempdir");
        let fresh = context(None, other.path()).expect("new key");
        assert_ne!(first.fingerprint(), fresh.fingerprint());
    }

    #[test]
    fn a_broken_host_key_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        std::fs::write(&path, "not a key").expect("write");
        let err = context(Some(&path), dir.path()).expect_err("refused");
        assert!(err.to_string().contains("key"), "{err}");
        assert!(matches!(err, SftpSetupError::HostKey { .. }));
    }

    #[test]
    fn rsa_host_keys_are_refused_and_sha1_is_not_offered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rsa_key");
        // OpenSSH's ssh-keygen (installed by .ci/run with openssh-client).
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen");
        assert!(made.success());
        let err = context(Some(&path), dir.path()).expect_err("refused");
        assert!(
            err.to_string().contains("RSA host keys are not used"),
            "{err}"
        );
        let ctx = context(None, dir.path()).expect("ed25519");
        let listed: Vec<String> = ctx
            .config
            .preferred
            .key
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert!(listed.contains(&"rsa-sha2-512".to_owned()), "{listed:?}");
        assert!(!listed.contains(&"ssh-rsa".to_owned()), "{listed:?}");
    }
}

#[cfg(test)]
mod requests;
