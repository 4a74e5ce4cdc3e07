//! OpenSSH user certificates (OpenSSH's PROTOCOL.certkeys): a key signed by
//! a certificate authority the server trusts (`sftp.trusted_user_ca_keys`,
//! as sshd's `TrustedUserCAKeys`; [`TrustedUserCas::check`]), or that the
//! user names in a `cert-authority` line of `authorized_keys`
//! ([`check_by_user_authority`]), signs in the users its certificate names,
//! without being listed in their `authorized_keys`.
//!
//! russh has checked, before either is asked, that the
//! client holds the certified key (it signed the session) and that the
//! certificate's signature is its signing key's. What makes it a sign-in is
//! checked here, as sshd checks it:
//!
//! - it is a user certificate (not a host one), signed by a trusted
//!   authority, and not with SHA-1 (`ssh-rsa`, refused by OpenSSH since 8.2);
//! - now lies in its validity period (with the server's clock, injectable);
//! - its principals name the user, or one of the names the user accepts
//!   instead (the account's `ssh_principals`, sshd's
//!   `AuthorizedPrincipalsFile`; a `cert-authority` line's `principals`): a
//!   certificate with no principals signs in nobody;
//! - its critical options are all understood and kept: `source-address`
//!   (the client's address must be in one of its ranges) and `force-command`
//!   (only `internal-sftp` or OpenSSH's `sftp-server`, with no options but
//!   its logging's: SFTP is all this server runs, so a certificate forcing
//!   another command, or `sftp-server -R`, gives no SFTP). Any other critical option
//!   refuses the certificate, as PROTOCOL.certkeys requires. Extensions
//!   (`permit-pty` …) grant what a shell would need and are ignored.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_config::AuthorizedKey;
use ferry_config::Cidr;
use ferry_config::key_options::check_sftp_command;
use russh::keys::ssh_encoding::Encode;
use russh::keys::ssh_key::Fingerprint;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::{Certificate, HashAlg, PublicKey};

use super::SftpSetupError;

/// The certificate authorities whose user certificates sign in.
#[derive(Debug, Default, Clone)]
pub struct TrustedUserCas {
    /// The authorities' keys' SHA-256 fingerprints.
    fingerprints: Vec<Fingerprint>,
}

/// Why a certificate does not sign a user in. Each is a failed login.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateRefusal {
    /// A host certificate, offered as a user's.
    #[error("a host certificate, not a user certificate")]
    NotAUserCertificate,
    /// Signed by an authority `sftp.trusted_user_ca_keys` does not list.
    #[error("signed by a certificate authority that is not trusted ({authority})")]
    UntrustedAuthority { authority: String },
    /// Signed with SHA-1 (`ssh-rsa`), which can be forged.
    #[error("signed with ssh-rsa (SHA-1); sign certificates with rsa-sha2-512 or another key type")]
    SignedWithSha1,
    /// Now is before the certificate's period.
    #[error("not valid before {valid_after} (Unix time)")]
    NotYetValid { valid_after: u64 },
    /// Now is after the certificate's period.
    #[error("expired at {valid_before} (Unix time)")]
    Expired { valid_before: u64 },
    /// The certificate's signature does not verify.
    #[error("its signature does not verify")]
    BadSignature,
    /// The principals do not name the user.
    #[error("it is for {principals}, not {user}")]
    NotForUser { user: String, principals: String },
    /// The client's address is outside the certificate's `source-address`.
    #[error("it is for clients from {allowed}, not {client}")]
    SourceAddress { client: IpAddr, allowed: String },
    /// A `force-command` other than `internal-sftp`.
    #[error("it forces the command {0:?}, which is not SFTP as ferry serves it")]
    ForceCommand(String),
    /// A critical option this server does not know, or cannot read.
    #[error("it has the critical option {0:?}, which ferry does not understand")]
    UnknownCriticalOption(String),
    /// The user's `cert-authority` line lists the authority with options
    /// that refuse this login (`from="…"`, `expiry-time="…"`).
    #[error("the user's authority line refuses it: {0}")]
    AuthorityRestricted(String),
    /// Its key, or its authority's, is in `sftp.revoked_keys`.
    #[error("the key {key} is revoked")]
    Revoked { key: String },
    /// `sftp.revoked_keys`, a KRL, revokes its serial number.
    #[error("its serial number {0} is revoked")]
    RevokedSerial(u64),
    /// `sftp.revoked_keys`, a KRL, revokes its key id.
    #[error("its key id {0:?} is revoked")]
    RevokedKeyId(String),
}

impl TrustedUserCas {
    /// Reads the authorities' public keys from `paths`: OpenSSH public keys,
    /// one per line; blank lines and `#` comments are skipped. A file that
    /// cannot be read, a line that is not a key, or a file with no key is
    /// named in the error.
    pub fn read(paths: &[PathBuf]) -> Result<Self, SftpSetupError> {
        let mut fingerprints = Vec::new();
        for path in paths {
            let failed = |reason: String| SftpSetupError::UserCaKeys {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
            let keys = super::key_fingerprints(&text).map_err(failed)?;
            if keys.is_empty() {
                return Err(failed("no public key in the file".into()));
            }
            fingerprints.extend(keys);
        }
        Ok(TrustedUserCas { fingerprints })
    }

    /// Trusts the authorities with these keys.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> Self {
        TrustedUserCas {
            fingerprints: keys
                .into_iter()
                .map(|k| k.fingerprint(HashAlg::Sha256))
                .collect(),
        }
    }

    /// Whether no authority is trusted (certificates sign in nobody).
    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty()
    }

    /// How many authorities are trusted.
    pub fn len(&self) -> usize {
        self.fingerprints.len()
    }

    /// Whether this list trusts the authority that signed `cert`.
    pub fn trusts(&self, cert: &Certificate) -> bool {
        self.fingerprints
            .contains(&cert.signature_key().fingerprint(HashAlg::Sha256))
    }

    /// Whether `cert` signs in `user` connecting from `client` at `now`:
    /// it must name one of `principals` (the user's name, or the user's
    /// `ssh_principals`).
    pub fn check(
        &self,
        cert: &Certificate,
        principals: &[&str],
        user: &str,
        client: IpAddr,
        now: SystemTime,
    ) -> Result<(), CertificateRefusal> {
        if cert.cert_type() != CertType::User {
            return Err(CertificateRefusal::NotAUserCertificate);
        }
        if !self.trusts(cert) {
            return Err(untrusted(cert));
        }
        check_trusted(cert, principals, user, client, now)
    }
}

/// Whether `cert` signs in `user` from `client` at `now` by one of the
/// user's own `cert-authority` lines of `authorized_keys` (sshd's rule: the
/// line's `from` and `expiry-time` must admit the client, and the
/// certificate must name one of the line's `principals="…"`, or the user
/// when it has none).
pub fn check_by_user_authority(
    cert: &Certificate,
    lines: &[AuthorizedKey],
    user: &str,
    client: IpAddr,
    now: SystemTime,
) -> Result<(), CertificateRefusal> {
    if cert.cert_type() != CertType::User {
        return Err(CertificateRefusal::NotAUserCertificate);
    }
    let Some(line) = cert.signature_key().encode_vec().ok().and_then(|blob| {
        lines
            .iter()
            .find(|l| l.options().cert_authority && l.blob() == blob)
    }) else {
        return Err(untrusted(cert));
    };
    line.options()
        .admit(Some(client), now)
        .map_err(CertificateRefusal::AuthorityRestricted)?;
    let principals: Vec<&str> = match &line.options().principals {
        Some(names) => names.iter().map(String::as_str).collect(),
        None => vec![user],
    };
    check_trusted(cert, &principals, user, client, now)
}

/// The refusal of a certificate whose authority is not trusted.
fn untrusted(cert: &Certificate) -> CertificateRefusal {
    CertificateRefusal::UntrustedAuthority {
        authority: cert
            .signature_key()
            .fingerprint(HashAlg::Sha256)
            .to_string(),
    }
}

/// The checks of a user certificate by an authority already trusted: the
/// signature algorithm, the period, the principals (one of `principals`)
/// and the critical options.
fn check_trusted(
    cert: &Certificate,
    principals: &[&str],
    user: &str,
    client: IpAddr,
    now: SystemTime,
) -> Result<(), CertificateRefusal> {
    let authority = cert.signature_key().fingerprint(HashAlg::Sha256);
    if cert.signature().algorithm() == (russh::keys::Algorithm::Rsa { hash: None }) {
        return Err(CertificateRefusal::SignedWithSha1);
    }
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if now < cert.valid_after() {
        return Err(CertificateRefusal::NotYetValid {
            valid_after: cert.valid_after(),
        });
    }
    if now >= cert.valid_before() {
        return Err(CertificateRefusal::Expired {
            valid_before: cert.valid_before(),
        });
    }
    // The signature, the authority and the period once more, together,
    // by the library's own check.
    cert.validate_at(now, [&authority])
        .map_err(|_| CertificateRefusal::BadSignature)?;
    if !cert
        .valid_principals()
        .iter()
        .any(|p| principals.contains(&p.as_str()))
    {
        return Err(CertificateRefusal::NotForUser {
            user: match principals {
                [one] if *one == user => user.to_owned(),
                names => format!("{user} (whose authority names {})", names.join(", ")),
            },
            principals: match cert.valid_principals() {
                [] => "no one (it lists no principals)".to_owned(),
                names => names.join(", "),
            },
        });
    }
    for (name, value) in cert.critical_options().iter() {
        match name.as_str() {
            "source-address" => check_source(value, client)?,
            "force-command" => check_sftp_command(value)
                .map_err(|_| CertificateRefusal::ForceCommand(value.clone()))?,
            other => return Err(CertificateRefusal::UnknownCriticalOption(other.to_owned())),
        }
    }
    Ok(())
}

/// `source-address`: a comma-separated list of address ranges.
fn check_source(list: &str, client: IpAddr) -> Result<(), CertificateRefusal> {
    let mut allowed = false;
    for range in list.split(',') {
        let range: Cidr = range.parse().map_err(|_| {
            CertificateRefusal::UnknownCriticalOption(format!("source-address={list}"))
        })?;
        allowed |= range.contains(client);
    }
    if allowed {
        Ok(())
    } else {
        Err(CertificateRefusal::SourceAddress {
            client,
            allowed: list.to_owned(),
        })
    }
}

/// How a certificate is named in the audit log: its key as a public key is
/// (`publickey ssh-ed25519 SHA256:…`), then the certificate's id, serial and
/// authority, as sshd logs them.
pub(crate) fn certificate_note(cert: &Certificate) -> String {
    format!(
        "certificate {} {} id {:?} serial {} CA {}",
        cert.algorithm().as_str(),
        cert.public_key().fingerprint(HashAlg::Sha256),
        cert.key_id(),
        cert.serial(),
        cert.signature_key().fingerprint(HashAlg::Sha256),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{certificate_builder, ed25519_key as key};
    use russh::keys::PrivateKey;
    use russh::keys::ssh_key::certificate::Builder;
    use std::time::Duration;

    /// Unix time 1,000,000,000 (2001).
    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    const NOW: u64 = 1_000_000_000;

    /// A user certificate for alice's key (seed 1) by `ca`, valid from a
    /// minute before NOW for an hour, changed by `more`.
    fn certificate(ca: &PrivateKey, more: impl FnOnce(&mut Builder)) -> Certificate {
        certificate_of(CertType::User, ca, more)
    }

    /// [`certificate`], of `kind`.
    fn certificate_of(
        kind: CertType,
        ca: &PrivateKey,
        more: impl FnOnce(&mut Builder),
    ) -> Certificate {
        let mut b = certificate_builder(&key(1), kind, NOW - 60..NOW + 3600, "alice@laptop");
        b.valid_principal("alice").expect("principal");
        more(&mut b);
        b.sign(ca).expect("signed")
    }

    fn check(
        cert: &Certificate,
        user: &str,
        client: &str,
        now: u64,
    ) -> Result<(), CertificateRefusal> {
        let ca = key(9);
        TrustedUserCas::from_keys([ca.public_key()]).check(
            cert,
            &[user],
            user,
            client.parse().expect("ip"),
            at(now),
        )
    }

    #[test]
    fn a_certificate_from_a_trusted_authority_signs_in_its_principals() {
        let ca = key(9);
        let cert = certificate(&ca, |_| {});
        assert_eq!(check(&cert, "alice", "127.0.0.1", NOW), Ok(()));
        assert!(matches!(
            check(&cert, "bob", "127.0.0.1", NOW),
            Err(CertificateRefusal::NotForUser { .. })
        ));
        let note = certificate_note(&cert);
        assert!(
            note.contains("id \"alice@laptop\"") && note.contains("CA SHA256:"),
            "{note}"
        );
    }

    #[test]
    fn time_authority_kind_and_principals_are_checked() {
        let ca = key(9);
        let cert = certificate(&ca, |_| {});
        assert!(matches!(
            check(&cert, "alice", "127.0.0.1", NOW - 61),
            Err(CertificateRefusal::NotYetValid { .. })
        ));
        assert!(matches!(
            check(&cert, "alice", "127.0.0.1", NOW + 3600),
            Err(CertificateRefusal::Expired { .. })
        ));
        let stranger = certificate(&key(8), |_| {});
        assert!(matches!(
            check(&stranger, "alice", "127.0.0.1", NOW),
            Err(CertificateRefusal::UntrustedAuthority { .. })
        ));
        let host = certificate_of(CertType::Host, &ca, |_| {});
        assert_eq!(
            check(&host, "alice", "127.0.0.1", NOW),
            Err(CertificateRefusal::NotAUserCertificate)
        );
        let nobody = {
            let mut b = certificate_builder(&key(1), CertType::User, 0..u64::MAX, "alice@laptop");
            b.all_principals_valid().expect("principals");
            b.sign(&ca).expect("signed")
        };
        assert!(matches!(
            check(&nobody, "alice", "127.0.0.1", NOW),
            Err(CertificateRefusal::NotForUser { .. })
        ));
        // No authority trusted: nothing signs in.
        assert!(TrustedUserCas::default().is_empty());
        assert!(
            TrustedUserCas::default()
                .check(
                    &cert,
                    &["alice"],
                    "alice",
                    "127.0.0.1".parse().expect("ip"),
                    at(NOW)
                )
                .is_err()
        );
        // A user's ssh_principals (sshd's AuthorizedPrincipalsFile) replace
        // the user's name: carol, who lists alice and ops, signs in with
        // alice's certificate; with only ops listed, not.
        let cas = TrustedUserCas::from_keys([ca.public_key()]);
        let from = "127.0.0.1".parse().expect("ip");
        assert_eq!(
            cas.check(&cert, &["ops", "alice"], "carol", from, at(NOW)),
            Ok(())
        );
        let refused = cas
            .check(&cert, &["ops"], "carol", from, at(NOW))
            .expect_err("not ops");
        assert_eq!(
            refused.to_string(),
            "it is for alice, not carol (whose authority names ops)"
        );
    }

    #[test]
    fn critical_options_are_kept_or_refuse_the_certificate() {
        let ca = key(9);
        let with = |name: &str, value: &str| {
            certificate(&ca, |b| {
                b.critical_option(name, value).expect("option");
            })
        };
        let from_lan = with("source-address", "10.0.0.0/8,127.0.0.1/32");
        assert_eq!(check(&from_lan, "alice", "127.0.0.1", NOW), Ok(()));
        assert_eq!(check(&from_lan, "alice", "10.1.2.3", NOW), Ok(()));
        assert!(matches!(
            check(&from_lan, "alice", "192.0.2.1", NOW),
            Err(CertificateRefusal::SourceAddress { .. })
        ));
        let garbled = with("source-address", "here");
        assert!(matches!(
            check(&garbled, "alice", "127.0.0.1", NOW),
            Err(CertificateRefusal::UnknownCriticalOption(_))
        ));
        for command in ["internal-sftp", "/usr/lib/openssh/sftp-server -l INFO"] {
            let sftp_only = with("force-command", command);
            assert_eq!(
                check(&sftp_only, "alice", "127.0.0.1", NOW),
                Ok(()),
                "{command}"
            );
        }
        let lookalike = with("force-command", "/usr/bin/not-sftp-server");
        assert!(check(&lookalike, "alice", "127.0.0.1", NOW).is_err());
        // sftp-server made read-only (-R): a restriction ferry does not
        // apply, so no sign-in.
        let read_only = with("force-command", "internal-sftp -R");
        assert!(check(&read_only, "alice", "127.0.0.1", NOW).is_err());
        let backup = with("force-command", "/usr/bin/backup");
        assert_eq!(
            check(&backup, "alice", "127.0.0.1", NOW),
            Err(CertificateRefusal::ForceCommand("/usr/bin/backup".into()))
        );
        let fido = with("verify-required", "");
        assert_eq!(
            check(&fido, "alice", "127.0.0.1", NOW),
            Err(CertificateRefusal::UnknownCriticalOption(
                "verify-required".into()
            ))
        );
    }

    #[test]
    fn authority_files_are_read_and_bad_ones_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("ca.pub");
        let ca = key(9).public_key().to_openssh().expect("openssh");
        std::fs::write(&good, format!("# our CA\n\n{ca}\n")).expect("write");
        let cas = TrustedUserCas::read(std::slice::from_ref(&good)).expect("read");
        assert!(!cas.is_empty());
        let cert = certificate(&key(9), |_| {});
        assert_eq!(
            cas.check(
                &cert,
                &["alice"],
                "alice",
                "127.0.0.1".parse().expect("ip"),
                at(NOW)
            ),
            Ok(())
        );
        let bad = dir.path().join("bad.pub");
        std::fs::write(&bad, format!("{ca}\nnot a key\n")).expect("write");
        let empty = dir.path().join("empty.pub");
        std::fs::write(&empty, "# nothing yet\n").expect("write");
        let missing = dir.path().join("missing.pub");
        for (path, says) in [
            (&bad, "line 2: not a public key"),
            (&empty, "no public key"),
            (&missing, "No such file"),
        ] {
            let err = TrustedUserCas::read(&[good.clone(), path.clone()])
                .expect_err("refused")
                .to_string();
            assert!(
                err.contains(&path.display().to_string()) && err.contains(says),
                "{err}"
            );
        }
    }
}
