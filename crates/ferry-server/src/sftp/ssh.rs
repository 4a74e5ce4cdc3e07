//! The SSH side of an SFTP connection (RFC 4252 public-key and password
//! authentication, RFC 4254 session channels and the `sftp` subsystem), on
//! russh.
//!
//! A login is FTP's sign-in (`crate::signin`), with a password or with one of
//! the user's `authorized_keys`. A key the client only offers (before it
//! proves it holds it) and that is not listed is declined without counting as
//! a failed login: clients offer every key they have. A refusal that closes
//! an FTP connection (a ban, too many sessions, an unreachable account
//! database or storage) ends the SSH connection, the others let the client
//! try again. A connection that has not signed in within `login_timeout` is
//! closed. Shell, exec and port forwarding are refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::session::{OpenHandles, SftpSession};
use crate::activity::{AuditRecord, rfc3339};
use crate::options::ServerOptions;
use crate::session::Peer;
use crate::signin::{Credential, SignInRefusal, SignedIn, sign_in};

/// The most session channels one connection may open.
const MAX_CHANNELS: usize = 8;

/// When the server stops, how long a connection with nothing open is given
/// to end by itself before it is cut: a client that has just been told its
/// last file is done (OpenSSH's `sftp -b` between two lines of its batch)
/// takes that moment to quit cleanly, which a cut would turn into a failure.
const STOP_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Why an SSH connection ended early.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The SSH protocol failed (a broken peer, a lost connection).
    #[error(transparent)]
    Ssh(#[from] russh::Error),
    /// The sign-in was refused in a way that ends the connection.
    #[error("login refused: {0}")]
    Refused(SignInRefusal),
}

/// One SSH connection's state.
pub struct SshConnection {
    opts: Arc<ServerOptions>,
    peer: Peer,
    user: Option<Arc<SignedIn>>,
    signed_in: Arc<AtomicBool>,
    /// Session channels opened and not yet given to a subsystem.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Session channels opened so far.
    opened_channels: usize,
    /// The handles the connection's SFTP channels hold open.
    handles: Arc<OpenHandles>,
}

impl std::fmt::Debug for SshConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshConnection")
            .field("peer", &self.peer)
            .field("signed_in", &self.user.is_some())
            .finish_non_exhaustive()
    }
}

/// Serves one accepted SSH connection until it ends, the login deadline
/// passes without a login, or the server shuts down and the connection has
/// no file or listing open (the listener cuts it after `shutdown_grace`).
pub async fn serve(
    stream: TcpStream,
    opts: Arc<ServerOptions>,
    peer: Peer,
    shutdown: CancellationToken,
) {
    let Some(ctx) = opts.sftp.clone() else { return };
    let signed_in = Arc::new(AtomicBool::new(false));
    let handles = OpenHandles::new(shutdown);
    let handler = SshConnection {
        opts: opts.clone(),
        peer,
        user: None,
        signed_in: signed_in.clone(),
        channels: HashMap::new(),
        opened_channels: 0,
        handles: handles.clone(),
    };
    let running = match russh::server::run_stream(ctx.config.clone(), stream, handler).await {
        Ok(r) => r,
        Err(e) => {
            debug!(session = peer.id, error = %e, "SSH connection failed");
            return;
        }
    };
    // Whatever ends this future, the connection ends with it.
    let guard = DisconnectOnDrop(Some(running.handle()));
    let login_deadline = async {
        tokio::time::sleep(opts.login_timeout).await;
        if signed_in.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = running => match r {
            Ok(()) => debug!(session = peer.id, "SSH connection closed"),
            Err(e) => debug!(session = peer.id, error = %e, "SSH connection ended"),
        },
        _ = login_deadline => info!(session = peer.id, "no login within login_timeout: closing the SSH connection"),
        _ = async {
            handles.drained().await;
            tokio::time::sleep(STOP_LINGER).await;
        } => debug!(session = peer.id, "server shutting down: no file open, closing the SSH connection"),
    }
    drop(guard);
}

/// Disconnects an SSH session when dropped.
struct DisconnectOnDrop(Option<russh::server::Handle>);

impl Drop for DisconnectOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = handle
                    .disconnect(
                        russh::Disconnect::ByApplication,
                        "closing".into(),
                        "en".into(),
                    )
                    .await;
            });
        }
    }
}

impl SshConnection {
    /// One login attempt; `how` names a public key for the audit log.
    async fn sign_in(
        &mut self,
        user: &str,
        credential: Credential<'_>,
        how: Option<&str>,
    ) -> Result<Auth, SshError> {
        if self.user.is_some() {
            return Ok(try_again());
        }
        match sign_in(&self.opts, self.peer.id, self.peer.remote, user, credential).await {
            Ok(signed_in) => {
                self.audit_login(user, how, None);
                self.user = Some(Arc::new(signed_in));
                self.signed_in.store(true, Ordering::Release);
                Ok(Auth::Accept)
            }
            Err(refusal) => {
                self.audit_login(user, how, Some(refusal));
                if refusal.closes_connection() {
                    return Err(SshError::Refused(refusal));
                }
                Ok(try_again())
            }
        }
    }

    /// Records a login: `how` names a public key that signed in (its type and
    /// fingerprint), `refusal` why a login was refused.
    fn audit_login(&self, user: &str, how: Option<&str>, refusal: Option<SignInRefusal>) {
        if !self.opts.activity.audits() {
            return;
        }
        let reason = match (refusal, how) {
            (Some(r), Some(how)) => Some(format!("{how}: {r}")),
            (Some(r), None) => Some(r.to_string()),
            (None, how) => how.map(str::to_owned),
        };
        self.opts.activity.audit(&AuditRecord {
            time: rfc3339((self.opts.clock)()),
            session: self.peer.id,
            user: Some(user),
            client: self.peer.remote,
            protocol: Some("sftp"),
            command: "LOGIN",
            arg: reason.as_deref(),
            path: None,
            // SSH_FX_OK or SSH_FX_PERMISSION_DENIED.
            code: if refusal.is_some() { 3 } else { 0 },
            bytes: None,
            duration_ms: None,
        });
    }
}

/// Declines one attempt; the client may go on with a key or a password.
fn try_again() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(MethodSet::from(
            &[MethodKind::PublicKey, MethodKind::Password][..],
        )),
        partial_success: false,
    }
}

/// How a public key is named in the audit log: `publickey ssh-ed25519
/// SHA256:…`, as `ssh-keygen -l` shows it.
fn key_note(key: &russh::keys::PublicKey) -> String {
    format!(
        "publickey {} {}",
        key.algorithm().as_str(),
        key.fingerprint(russh::keys::HashAlg::Sha256)
    )
}

/// The key in SSH wire form, as `authorized_keys` holds it.
fn key_blob(key: &russh::keys::PublicKey) -> Option<Vec<u8>> {
    key.to_bytes().ok()
}

/// Whether a key is offered to sign with SHA-1: `ssh-rsa` without RFC 8332's
/// `rsa-sha2-256` or `-512`. Declined, as OpenSSH has since 8.8: SHA-1
/// signatures can be forged by chosen-prefix collision. Clients that know
/// RFC 8332 read `server-sig-algs` and offer the same key with SHA-2.
fn signs_with_sha1(algorithm: &russh::keys::Algorithm) -> bool {
    *algorithm == russh::keys::Algorithm::Rsa { hash: None }
}

impl russh::server::Handler for SshConnection {
    type Error = SshError;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(try_again())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.sign_in(user, Credential::Password(password), None)
            .await
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if signs_with_sha1(offer.algorithm) {
            debug!(session = self.peer.id, user = %user, "ssh-rsa (SHA-1) key offer declined");
            return Ok(try_again());
        }
        let Some(blob) = key_blob(offer.public_key) else {
            return Ok(try_again());
        };
        match self.opts.accounts.key_authorized(user, &blob).await {
            Ok(true) if self.user.is_none() => Ok(Auth::Accept),
            Ok(_) => Ok(try_again()),
            Err(e) => {
                // Declined; the signed attempt or a password will meet the
                // same store and say so.
                warn!(session = self.peer.id, user = %user, error = %e, "cannot look up authorized keys");
                Ok(try_again())
            }
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let Some(blob) = key_blob(key.public_key).filter(|_| !signs_with_sha1(key.algorithm))
        else {
            return Ok(try_again());
        };
        let note = key_note(key.public_key);
        self.sign_in(user, Credential::PublicKey(&blob), Some(&note))
            .await
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.user.is_none() || self.opened_channels >= MAX_CHANNELS {
            reply
                .reject(russh::ChannelOpenFailure::ResourceShortage)
                .await;
            return Ok(());
        }
        self.opened_channels += 1;
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(user), true) = (self.user.clone(), name == "sftp") else {
            warn!(session = self.peer.id, subsystem = %name, "subsystem refused");
            session.channel_failure(channel)?;
            return Ok(());
        };
        let Some(ch) = self.channels.remove(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let sftp = SftpSession::new(self.opts.clone(), self.peer, user, self.handles.clone());
        tokio::spawn(sftp.run(ch.into_stream()));
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.close(channel)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! Sign-in over SSH in memory: russh's client against [`SshConnection`]
    //! on a duplex pipe, for what OpenSSH will not send (it follows
    //! `server-sig-algs`): an RSA key signed with SHA-1.

    use std::sync::Arc;

    use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg};

    use super::*;

    struct AnyHostKey;

    impl russh::client::Handler for AnyHostKey {
        type Error = russh::Error;

        async fn check_server_key(
            &mut self,
            _key: &russh::keys::PublicKeyOrCertificate,
        ) -> Result<bool, Self::Error> {
            Ok(true)
        }
    }

    /// An RSA key made by OpenSSH's ssh-keygen, and its `.pub` line.
    fn rsa_key(dir: &std::path::Path) -> (PrivateKey, String) {
        let path = dir.join("id_rsa");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "rsa", "-N", "", "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen");
        assert!(made.success());
        let key = PrivateKey::read_openssh_file(&path).expect("key");
        let public = std::fs::read_to_string(dir.join("id_rsa.pub")).expect("pub");
        (key, public.trim().to_owned())
    }

    /// alice, who lists `public`, signs in over a fresh connection with
    /// `key` signed with `hash` (`None`: SHA-1 `ssh-rsa`).
    async fn sign_in_with(
        dir: &std::path::Path,
        public: &str,
        key: &PrivateKey,
        hash: Option<HashAlg>,
    ) -> bool {
        let mut opts = crate::test_support::options_with_alice(
            dir,
            &format!("home = \"/\"\nauthorized_keys = [\"{public}\"]\n"),
        );
        let ctx = super::super::SftpContext::new(None, dir, std::time::Duration::from_secs(60))
            .expect("host key");
        let config = ctx.config.clone();
        opts.sftp = Some(Arc::new(ctx));
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let handler = SshConnection {
            opts: Arc::new(opts),
            peer: Peer {
                remote: "127.0.0.1:40000".parse().expect("addr"),
                local: "127.0.0.1:2222".parse().expect("addr"),
                id: 1,
            },
            user: None,
            signed_in: Arc::new(AtomicBool::new(false)),
            channels: HashMap::new(),
            opened_channels: 0,
            handles: OpenHandles::new(CancellationToken::new()),
        };
        let server = tokio::spawn(async move {
            if let Ok(running) = russh::server::run_stream(config, server_end, handler).await {
                let _ = running.await;
            }
        });
        let mut ssh = russh::client::connect_stream(
            Arc::new(russh::client::Config::default()),
            client_end,
            AnyHostKey,
        )
        .await
        .expect("handshake");
        let signed = PrivateKeyWithHashAlg::new(Arc::new(key.clone()), hash);
        let result = ssh
            .authenticate_publickey("alice", signed)
            .await
            .expect("authentication answered");
        server.abort();
        result.success()
    }

    #[tokio::test]
    async fn rsa_keys_sign_in_with_sha2_and_not_with_sha1() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, public) = rsa_key(dir.path());
        assert!(sign_in_with(dir.path(), &public, &key, Some(HashAlg::Sha512)).await);
        assert!(sign_in_with(dir.path(), &public, &key, Some(HashAlg::Sha256)).await);
        assert!(
            !sign_in_with(dir.path(), &public, &key, None).await,
            "signed in with an ssh-rsa (SHA-1) signature"
        );
        // Another RSA key, signed properly, is not alice's.
        let other = tempfile::tempdir().expect("tempdir");
        let (stranger, _) = rsa_key(other.path());
        assert!(!sign_in_with(dir.path(), &public, &stranger, Some(HashAlg::Sha512)).await);
    }
}
