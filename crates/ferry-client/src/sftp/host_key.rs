//! Which SSH host keys the client trusts (RFC 4251 §4.1: the client must check
//! that the host key really belongs to the server).
//!
//! The default is OpenSSH's: the key must be in `~/.ssh/known_hosts` under the
//! host's name (`[host]:port` for another port than 22). An unknown host is
//! refused unless the user asked to learn new keys (`--accept-new-host-key`,
//! OpenSSH's `StrictHostKeyChecking=accept-new`); a host whose recorded key
//! changed is always refused. A pinned fingerprint (`--pin SHA256:...`, as
//! `ssh-keygen -l` prints it) or `--insecure` replace the file.

use std::path::{Path, PathBuf};

use russh::keys::{HashAlg, PublicKey};

/// How the server's host key is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// The key must be recorded in an OpenSSH `known_hosts` file.
    KnownHosts {
        /// The file; `None`: `~/.ssh/known_hosts`.
        file: Option<PathBuf>,
        /// Record the key of a host the file does not know yet, instead of
        /// refusing it. A key that differs from a recorded one is still refused.
        accept_new: bool,
    },
    /// The key must have this SHA-256 fingerprint (`SHA256:` and unpadded
    /// base64, as `ssh-keygen -l` and ferry's server print it).
    Fingerprint(String),
    /// Any key (the connection is still encrypted, but not authenticated).
    Insecure,
}

impl Default for HostKeyCheck {
    fn default() -> Self {
        HostKeyCheck::KnownHosts {
            file: None,
            accept_new: false,
        }
    }
}

/// True when `text` is spelled as an SSH fingerprint (`SHA256:` then base64).
pub fn is_ssh_fingerprint(text: &str) -> bool {
    text.strip_prefix("SHA256:").is_some_and(|b64| {
        b64.len() == 43
            && b64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    })
}

/// What the check decided about one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// Trusted.
    Accept,
    /// Trusted and to be recorded in this file.
    Learn(PathBuf),
    /// Refused, for this reason (complete, naming the fingerprint).
    Refuse(String),
}

/// The user's `~/.ssh/known_hosts`.
fn default_known_hosts() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".ssh/known_hosts"))
}

/// Decides whether `key`, offered by `host:port`, is trusted.
pub fn judge(check: &HostKeyCheck, host: &str, port: u16, key: &PublicKey) -> HostKeyVerdict {
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    match check {
        HostKeyCheck::Insecure => HostKeyVerdict::Accept,
        HostKeyCheck::Fingerprint(pin) if *pin == fingerprint => HostKeyVerdict::Accept,
        HostKeyCheck::Fingerprint(pin) => HostKeyVerdict::Refuse(format!(
            "its fingerprint is {fingerprint}, not the pinned {pin}"
        )),
        HostKeyCheck::KnownHosts { file, accept_new } => {
            let Some(path) = file.clone().or_else(default_known_hosts) else {
                return HostKeyVerdict::Refuse(
                    "no known_hosts file: HOME is not set (use --known-hosts FILE)".to_owned(),
                );
            };
            judge_known_hosts(&path, *accept_new, host, port, key, &fingerprint)
        }
    }
}

fn judge_known_hosts(
    path: &Path,
    accept_new: bool,
    host: &str,
    port: u16,
    key: &PublicKey,
    fingerprint: &str,
) -> HostKeyVerdict {
    let shown = path.display();
    match russh::keys::check_known_hosts_path(host, port, key, path) {
        Ok(true) => HostKeyVerdict::Accept,
        Ok(false) if accept_new => HostKeyVerdict::Learn(path.to_owned()),
        Ok(false) => HostKeyVerdict::Refuse(format!(
            "{} key {fingerprint} is not in {shown}; if it is the server's, run again \
             with --accept-new-host-key to record it, or with --pin {fingerprint}",
            key.algorithm()
        )),
        Err(russh::keys::Error::KeyChanged { line }) => HostKeyVerdict::Refuse(format!(
            "it is {fingerprint}, but {shown} line {line} records another key for this \
             host: the server's key changed, or someone is in between; remove that line \
             only if you know the key was replaced"
        )),
        Err(e) => HostKeyVerdict::Refuse(format!("cannot read {shown}: {e}")),
    }
}

/// Records `key` for `host:port` at the end of `path` (created if missing),
/// in OpenSSH's format: `host` for port 22, else `[host]:port`.
pub fn learn(path: &Path, host: &str, port: u16, key: &PublicKey) -> Result<(), String> {
    use std::io::Write;
    let failed =
        |e: &dyn std::fmt::Display| format!("cannot record the key in {}: {e}", path.display());
    let name = if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    };
    let key = key.to_openssh().map_err(|e| failed(&e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| failed(&e))?;
    }
    // A file that does not end with a line break gets one first.
    let text = std::fs::read(path).unwrap_or_default();
    let newline = if text.is_empty() || text.ends_with(b"\n") {
        ""
    } else {
        "\n"
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| failed(&e))?;
    writeln!(file, "{newline}{name} {key}").map_err(|e| failed(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::PrivateKey;
    use russh::keys::ssh_key::private::Ed25519Keypair;

    fn key(seed: u8) -> PublicKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
            .public_key()
            .clone()
    }

    #[test]
    fn known_hosts_accepts_learns_and_refuses_a_changed_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("known_hosts");
        let strict = HostKeyCheck::KnownHosts {
            file: Some(file.clone()),
            accept_new: false,
        };
        let learning = HostKeyCheck::KnownHosts {
            file: Some(file.clone()),
            accept_new: true,
        };
        let (a, b) = (key(1), key(2));
        // Unknown: refused, naming the fingerprint and the way out.
        let fp = a.fingerprint(HashAlg::Sha256).to_string();
        match judge(&strict, "127.0.0.1", 2222, &a) {
            HostKeyVerdict::Refuse(why) => {
                assert!(
                    why.contains(&fp) && why.contains("--accept-new-host-key"),
                    "{why}"
                );
            }
            other => panic!("unknown host accepted: {other:?}"),
        }
        assert_eq!(
            judge(&learning, "127.0.0.1", 2222, &a),
            HostKeyVerdict::Learn(file.clone())
        );
        learn(&file, "127.0.0.1", 2222, &a).expect("recorded");
        let text = std::fs::read_to_string(&file).expect("written");
        assert!(text.starts_with("[127.0.0.1]:2222 ssh-ed25519 "), "{text}");
        assert_eq!(
            judge(&strict, "127.0.0.1", 2222, &a),
            HostKeyVerdict::Accept
        );
        // Another port is another host.
        assert!(matches!(
            judge(&strict, "127.0.0.1", 2223, &a),
            HostKeyVerdict::Refuse(_)
        ));
        // A changed key is refused even when learning.
        match judge(&learning, "127.0.0.1", 2222, &b) {
            HostKeyVerdict::Refuse(why) => assert!(why.contains("line 1"), "{why}"),
            other => panic!("changed key accepted: {other:?}"),
        }
    }

    #[test]
    fn pinned_fingerprints_and_their_spelling() {
        let a = key(3);
        let fp = a.fingerprint(HashAlg::Sha256).to_string();
        assert!(is_ssh_fingerprint(&fp), "{fp}");
        assert!(!is_ssh_fingerprint("SHA256:short"));
        assert!(!is_ssh_fingerprint(&"ab".repeat(32)));
        let pinned = HostKeyCheck::Fingerprint(fp.clone());
        assert_eq!(judge(&pinned, "h", 22, &a), HostKeyVerdict::Accept);
        match judge(&pinned, "h", 22, &key(4)) {
            HostKeyVerdict::Refuse(why) => assert!(why.contains(&fp), "{why}"),
            other => panic!("wrong key accepted: {other:?}"),
        }
        assert_eq!(
            judge(&HostKeyCheck::Insecure, "h", 22, &a),
            HostKeyVerdict::Accept
        );
    }
}
