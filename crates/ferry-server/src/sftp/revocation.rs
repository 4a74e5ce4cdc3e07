//! Revoked keys (`sftp.revoked_keys`, as sshd's `RevokedKeys` in its text
//! form): public keys that sign nobody in, whether a user lists them in
//! `authorized_keys`, a certificate certifies them, or they are the
//! authority that signed a certificate. Read at start and again on SIGHUP
//! (`super::SftpContext::reload_trust`).

use std::collections::HashSet;
use std::path::Path;

use russh::keys::ssh_key::Fingerprint;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{HashAlg, PublicKey};

use super::SftpSetupError;

/// The first bytes of a binary Key Revocation List (`ssh-keygen -k`).
const KRL_MAGIC: &[u8] = b"SSHKRL\n\0";

/// The keys that no longer sign in.
#[derive(Debug, Default, Clone)]
pub struct RevokedKeys {
    /// SHA-256 fingerprints of the revoked keys.
    fingerprints: HashSet<Fingerprint>,
}

impl RevokedKeys {
    /// Reads OpenSSH public keys, one per line (blank lines and `#`
    /// comments skipped; an empty file revokes nothing). A binary KRL is
    /// refused with a note of what to give instead.
    pub fn read(path: &Path) -> Result<Self, SftpSetupError> {
        let failed = |reason: String| SftpSetupError::RevokedKeys {
            path: path.display().to_string(),
            reason,
        };
        let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
        if bytes.starts_with(KRL_MAGIC) {
            return Err(failed(
                "a binary key revocation list (KRL) is not read: list the revoked public keys, \
                 one per line"
                    .into(),
            ));
        }
        let text = String::from_utf8(bytes).map_err(|_| failed("not UTF-8 text".into()))?;
        let fingerprints = super::key_fingerprints(&text).map_err(failed)?;
        Ok(RevokedKeys {
            fingerprints: fingerprints.into_iter().collect(),
        })
    }

    /// Revokes these keys.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a PublicKey>) -> Self {
        RevokedKeys {
            fingerprints: keys
                .into_iter()
                .map(|k| k.fingerprint(HashAlg::Sha256))
                .collect(),
        }
    }

    /// How many keys are revoked.
    pub fn len(&self) -> usize {
        self.fingerprints.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.fingerprints.is_empty()
    }

    /// Whether `key` is revoked.
    pub fn contains(&self, key: &KeyData) -> bool {
        !self.fingerprints.is_empty()
            && self
                .fingerprints
                .contains(&key.fingerprint(HashAlg::Sha256))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> PublicKey {
        crate::test_support::ed25519_key(seed).public_key().clone()
    }

    #[test]
    fn listed_keys_are_revoked_and_bad_files_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("revoked");
        let listed = key(1).to_openssh().expect("openssh");
        std::fs::write(&file, format!("# lost laptop\n{listed}\n\n")).expect("write");
        let revoked = RevokedKeys::read(&file).expect("read");
        assert_eq!(revoked.len(), 1);
        assert!(revoked.contains(key(1).key_data()));
        assert!(!revoked.contains(key(2).key_data()));
        std::fs::write(&file, "").expect("write");
        assert!(RevokedKeys::read(&file).expect("empty").is_empty());
        for (text, says) in [
            (&b"SSHKRL\n\0\x00\x01"[..], "KRL"),
            (b"not a key\n", "line 1: not a public key"),
            (b"\xff\xfe", "not UTF-8"),
        ] {
            std::fs::write(&file, text).expect("write");
            let err = RevokedKeys::read(&file).expect_err("refused").to_string();
            assert!(
                err.contains(&file.display().to_string()) && err.contains(says),
                "{err}"
            );
        }
    }
}
