//! The SSH side of an SFTP connection (RFC 4252 public-key and password
//! authentication, RFC 4256 keyboard-interactive authentication, RFC 4254
//! session channels and the `sftp` subsystem), on russh.
//!
//! A login is FTP's sign-in (`crate::signin`), with a password, with one of
//! the user's `authorized_keys`, or with a key an OpenSSH certificate from a
//! trusted authority vouches for (`super::certificates`), by the methods
//! `sftp.authentication` offers (a request by another is declined without a
//! check). Keyboard-interactive asks one question, `Password: `, and takes
//! its answer as the password. A key the client only offers (before it
//! proves it holds it) and that is not listed is declined without counting as
//! a failed login: clients offer every key they have. Where certificate
//! authorities are trusted (by the server, or by the user in a
//! `cert-authority` line), such an offer is accepted instead (russh does not
//! tell a certificate's offer from a bare key's), and the bare key, signed,
//! is then declined without counting either. A key in `sftp.revoked_keys`
//! is declined when offered and refused (a failed login) when signed with,
//! as a certificate's key or its authority too. A refusal that closes
//! an FTP connection (a ban, too many sessions, an unreachable account
//! database or storage) ends the SSH connection, the others let the client
//! try again. A connection that has not signed in within `login_timeout` is
//! closed. Shell, exec and port forwarding are refused.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ferry_accounts::{CertificateRules, KeyOffer};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::SshTrust;
use super::certificates::certificate_note;
use super::session::{OpenHandles, SftpSession};
use crate::activity::{AuditRecord, rfc3339};
use crate::options::ServerOptions;
use crate::session::Peer;
use crate::signin::{Credential, SignInRefusal, SignedIn, failed_login, sign_in};

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
    /// The authentication methods offered (`sftp.authentication`).
    methods: MethodSet,
    /// The authorities whose user certificates sign in, and the revoked
    /// keys, as they were when the connection started.
    trust: Arc<SshTrust>,
    /// Keys not listed for the user whose offer was accepted only because
    /// they might be certificates': signed, they are declined uncounted.
    uncertain_offers: Vec<Vec<u8>>,
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
        methods: ctx.methods.clone(),
        trust: ctx.trust(),
        uncertain_offers: Vec::new(),
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
    /// One login attempt; `how` names for the audit log how a login that is
    /// not by the password method was made (a public key, or
    /// keyboard-interactive).
    async fn sign_in(
        &mut self,
        user: &str,
        credential: Credential<'_>,
        how: Option<&str>,
    ) -> Result<Auth, SshError> {
        if self.user.is_some() {
            return Ok(self.try_again());
        }
        match sign_in(&self.opts, self.peer.id, self.peer.remote, user, credential).await {
            Ok(signed_in) => {
                self.audit_login(user, how, None);
                self.user = Some(Arc::new(signed_in));
                self.signed_in.store(true, Ordering::Release);
                Ok(Auth::Accept)
            }
            Err(refusal) => self.refused(user, how, refusal),
        }
    }

    /// Answers a refused login: recorded, and either the end of the
    /// connection or another try.
    fn refused(
        &mut self,
        user: &str,
        how: Option<&str>,
        refusal: SignInRefusal,
    ) -> Result<Auth, SshError> {
        self.audit_login(user, how, Some(refusal));
        if refusal.closes_connection() {
            return Err(SshError::Refused(refusal));
        }
        Ok(self.try_again())
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

    /// Whether `sftp.authentication` offers `method`.
    fn offers(&self, method: MethodKind) -> bool {
        self.methods.contains(&method)
    }

    /// What `user` says about certificates: `cert-authority` lines and
    /// `ssh_principals` (nothing when the store cannot say: logged, and the
    /// signed attempt meets the same store).
    async fn certificate_rules(&self, user: &str) -> CertificateRules {
        match self.opts.accounts.certificate_rules(user).await {
            Ok(rules) => rules,
            Err(e) => {
                warn!(session = self.peer.id, user = %user, error = %e, "cannot look up certificate authorities");
                CertificateRules::default()
            }
        }
    }

    /// Declines one attempt; the client may go on with any method offered.
    fn try_again(&self) -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(self.methods.clone()),
            partial_success: false,
        }
    }
}

/// What the audit log says of a keyboard-interactive login.
const KEYBOARD_INTERACTIVE: &str = "keyboard-interactive";

/// Keyboard-interactive's one question (RFC 4256 §3.2), not echoed; its
/// answer is the password. "Password: " as sshd asks it through PAM, so that
/// clients which recognise the prompt (lftp, curl, WinSCP) answer it with
/// the password they were given.
fn password_prompt() -> Auth {
    static PROMPTS: [(Cow<'static, str>, bool); 1] = [(Cow::Borrowed("Password: "), false)];
    Auth::Partial {
        name: Cow::Borrowed(""),
        instructions: Cow::Borrowed(""),
        prompts: Cow::Borrowed(&PROMPTS),
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
        Ok(self.try_again())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if !self.offers(MethodKind::Password) {
            return Ok(self.try_again());
        }
        self.sign_in(user, Credential::Password(password), None)
            .await
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        if !self.offers(MethodKind::KeyboardInteractive) || self.user.is_some() {
            return Ok(self.try_again());
        }
        let Some(mut answers) = response else {
            return Ok(password_prompt());
        };
        // One question, so exactly one answer.
        let (Some(answer), None) = (answers.next(), answers.next()) else {
            debug!(session = self.peer.id, user = %user, "keyboard-interactive: not one answer to the one question");
            return Ok(self.try_again());
        };
        // As FTP's PASS: bytes that are not UTF-8 are kept as replacement
        // characters, which no stored password matches.
        let password = String::from_utf8_lossy(&answer);
        self.sign_in(
            user,
            Credential::Password(&password),
            Some(KEYBOARD_INTERACTIVE),
        )
        .await
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if !self.offers(MethodKind::PublicKey) {
            return Ok(self.try_again());
        }
        if signs_with_sha1(offer.algorithm) {
            debug!(session = self.peer.id, user = %user, "ssh-rsa (SHA-1) key offer declined");
            return Ok(self.try_again());
        }
        let Some(blob) = key_blob(offer.public_key) else {
            return Ok(self.try_again());
        };
        if self.trust.revoked.contains(offer.public_key.key_data()) {
            // Declined (a client offers every key it holds: no failed
            // login); refused as a failed login when signed with, below.
            warn!(session = self.peer.id, user = %user, key = %key_note(offer.public_key), "a revoked key was offered");
            return Ok(self.try_again());
        }
        let (from, now) = (Some(self.peer.remote.ip()), (self.opts.clock)());
        match self
            .opts
            .accounts
            .key_authorized(user, &blob, from, now)
            .await
        {
            Ok(KeyOffer::Listed) if self.user.is_none() => Ok(Auth::Accept),
            Ok(KeyOffer::NotListed { names_authority })
                if self.user.is_none() && (names_authority || !self.trust.cas.is_empty()) =>
            {
                // Perhaps a certificate's key: russh will hand the signed
                // request to auth_openssh_certificate if so.
                if self.uncertain_offers.len() < 16 {
                    self.uncertain_offers.push(blob);
                }
                Ok(Auth::Accept)
            }
            Ok(_) => Ok(self.try_again()),
            Err(e) => {
                // Declined; the signed attempt or a password will meet the
                // same store and say so.
                warn!(session = self.peer.id, user = %user, error = %e, "cannot look up authorized keys");
                Ok(self.try_again())
            }
        }
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let Some(blob) = key_blob(key.public_key)
            .filter(|_| self.offers(MethodKind::PublicKey) && !signs_with_sha1(key.algorithm))
        else {
            return Ok(self.try_again());
        };
        if self.uncertain_offers.contains(&blob) {
            // Accepted when offered only in case it was a certificate's.
            return Ok(self.try_again());
        }
        let note = key_note(key.public_key);
        if self.trust.revoked.contains(key.public_key.key_data()) {
            let why = "the key is revoked";
            let refusal =
                failed_login(&self.opts, self.peer.id, self.peer.remote, user, &why).await;
            return self.refused(user, Some(&format!("{note}: {why}")), refusal);
        }
        self.sign_in(user, Credential::PublicKey(&blob), Some(&note))
            .await
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &russh::keys::Certificate,
    ) -> Result<Auth, Self::Error> {
        if !self.offers(MethodKind::PublicKey) || self.user.is_some() {
            return Ok(self.try_again());
        }
        let own = self.certificate_rules(user).await;
        if self.trust.cas.is_empty() && own.authorities.is_empty() {
            return Ok(self.try_again());
        }
        let note = certificate_note(certificate);
        let now = (self.opts.clock)();
        match self
            .trust
            .check_certificate(certificate, user, self.peer.remote.ip(), now, &own)
        {
            Ok(()) => self.sign_in(user, Credential::Certified, Some(&note)).await,
            Err(why) => {
                let refusal =
                    failed_login(&self.opts, self.peer.id, self.peer.remote, user, &why).await;
                self.refused(user, Some(&format!("{note}: {why}")), refusal)
            }
        }
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
    //! `server-sig-algs`): an RSA key signed with SHA-1, keyboard-interactive
    //! answers that do not fit the question, methods the server does not
    //! offer.

    use std::sync::Arc;

    use ferry_config::{SftpSection, SshAuthMethod};
    use russh::client::KeyboardInteractiveAuthResponse;
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

    /// A fresh connection in memory to a server that offers `methods`,
    /// where alice (password "pw", home "/") has the settings `alice`; the
    /// server's task stops when the returned handle is dropped.
    async fn connect(
        dir: &std::path::Path,
        alice: &str,
        methods: &[SshAuthMethod],
    ) -> (russh::client::Handle<AnyHostKey>, AbortOnDrop) {
        let sftp = SftpSection {
            authentication: methods.to_vec(),
            ..SftpSection::default()
        };
        connect_to(dir, alice, &sftp).await
    }

    /// [`connect`] to a server set up by `sftp`.
    async fn connect_to(
        dir: &std::path::Path,
        alice: &str,
        sftp: &SftpSection,
    ) -> (russh::client::Handle<AnyHostKey>, AbortOnDrop) {
        let mut opts =
            crate::test_support::options_with_alice(dir, &format!("home = \"/\"\n{alice}"));
        let ctx = super::super::SftpContext::new(sftp, dir, std::time::Duration::from_secs(60))
            .expect("host key");
        let config = ctx.config.clone();
        let methods = ctx.methods.clone();
        let trust = ctx.trust();
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
            methods,
            trust,
            uncertain_offers: Vec::new(),
        };
        let server = tokio::spawn(async move {
            if let Ok(running) = russh::server::run_stream(config, server_end, handler).await {
                let _ = running.await;
            }
        });
        let ssh = russh::client::connect_stream(
            Arc::new(russh::client::Config::default()),
            client_end,
            AnyHostKey,
        )
        .await
        .expect("handshake");
        (ssh, AbortOnDrop(server))
    }

    /// Stops a server task when dropped.
    struct AbortOnDrop(tokio::task::JoinHandle<()>);

    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }

    /// alice, who lists `public`, signs in over a fresh connection with
    /// `key` signed with `hash` (`None`: SHA-1 `ssh-rsa`).
    async fn sign_in_with(
        dir: &std::path::Path,
        public: &str,
        key: &PrivateKey,
        hash: Option<HashAlg>,
    ) -> bool {
        let (mut ssh, _server) = connect(
            dir,
            &format!("authorized_keys = [\"{public}\"]\n"),
            &SshAuthMethod::ALL,
        )
        .await;
        let signed = PrivateKeyWithHashAlg::new(Arc::new(key.clone()), hash);
        let result = ssh
            .authenticate_publickey("alice", signed)
            .await
            .expect("authentication answered");
        result.success()
    }

    /// The methods a refusal names, by their wire names.
    fn names(methods: &MethodSet) -> Vec<&'static str> {
        methods.iter().map(<&str>::from).collect()
    }

    /// The one question keyboard-interactive asks; its answer `answers`.
    async fn answer_keyboard_interactive(
        ssh: &mut russh::client::Handle<AnyHostKey>,
        answers: Vec<String>,
    ) -> KeyboardInteractiveAuthResponse {
        match ssh
            .authenticate_keyboard_interactive_start("alice", None)
            .await
            .expect("answered")
        {
            KeyboardInteractiveAuthResponse::InfoRequest { prompts, .. } => {
                assert_eq!(prompts.len(), 1, "{prompts:?}");
                assert_eq!(prompts[0].prompt, "Password: ");
                assert!(!prompts[0].echo, "the password would be echoed");
            }
            other => panic!("no question asked: {other:?}"),
        }
        ssh.authenticate_keyboard_interactive_respond(answers)
            .await
            .expect("answered")
    }

    #[tokio::test]
    async fn keyboard_interactive_takes_the_password_as_the_one_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        for answers in [
            vec!["wrong".to_owned()],
            vec![],
            vec!["pw".to_owned(), "pw".to_owned()],
        ] {
            let (mut ssh, _server) = connect(dir.path(), "", &SshAuthMethod::ALL).await;
            match answer_keyboard_interactive(&mut ssh, answers.clone()).await {
                KeyboardInteractiveAuthResponse::Failure {
                    remaining_methods, ..
                } => assert_eq!(
                    names(&remaining_methods),
                    ["publickey", "password", "keyboard-interactive"]
                ),
                other => panic!("{answers:?} answered {other:?}"),
            }
        }
        let (mut ssh, _server) = connect(dir.path(), "", &SshAuthMethod::ALL).await;
        let answered = answer_keyboard_interactive(&mut ssh, vec!["pw".to_owned()]).await;
        assert!(
            matches!(answered, KeyboardInteractiveAuthResponse::Success),
            "{answered:?}"
        );
    }

    #[tokio::test]
    async fn only_the_methods_offered_sign_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (key, public) = rsa_key(dir.path());
        let keys = format!("authorized_keys = [\"{public}\"]\n");
        let signed = || PrivateKeyWithHashAlg::new(Arc::new(key.clone()), Some(HashAlg::Sha512));

        // Keys only: the right password by either method is declined, and
        // the refusal names what is offered.
        let (mut ssh, _server) = connect(dir.path(), &keys, &[SshAuthMethod::PublicKey]).await;
        match ssh
            .authenticate_password("alice", "pw")
            .await
            .expect("answered")
        {
            russh::client::AuthResult::Failure {
                remaining_methods, ..
            } => assert_eq!(names(&remaining_methods), ["publickey"]),
            other => panic!("password: {other:?}"),
        }
        let answered = ssh
            .authenticate_keyboard_interactive_start("alice", None)
            .await
            .expect("answered");
        assert!(
            matches!(answered, KeyboardInteractiveAuthResponse::Failure { .. }),
            "{answered:?}"
        );
        let signed_in = ssh
            .authenticate_publickey("alice", signed())
            .await
            .expect("answered");
        assert!(signed_in.success(), "the key was refused");

        // Keyboard-interactive only.
        let only = [SshAuthMethod::KeyboardInteractive];
        let (mut ssh, _server) = connect(dir.path(), &keys, &only).await;
        let by_password = ssh
            .authenticate_password("alice", "pw")
            .await
            .expect("answered");
        assert!(!by_password.success(), "signed in by the password method");
        let by_key = ssh
            .authenticate_publickey("alice", signed())
            .await
            .expect("answered");
        assert!(!by_key.success(), "signed in with a key");
        let answered = answer_keyboard_interactive(&mut ssh, vec!["pw".to_owned()]).await;
        assert!(
            matches!(answered, KeyboardInteractiveAuthResponse::Success),
            "{answered:?}"
        );
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

    /// A certificate from the trusted authority signs in the user it names,
    /// and no other; where an authority is trusted, a key that is not
    /// listed is still refused and a listed one still signs in.
    #[tokio::test]
    async fn certificates_from_a_trusted_authority_sign_in_the_users_they_name() {
        use crate::test_support::{certificate_builder, ed25519_key as key};
        use russh::keys::ssh_key::certificate::CertType;
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, user_key, listed) = (key(9), key(1), key(2));
        let ca_file = dir.path().join("ca.pub");
        std::fs::write(&ca_file, ca.public_key().to_openssh().expect("ca")).expect("write");
        let sftp = SftpSection {
            trusted_user_ca_keys: vec![ca_file],
            ..SftpSection::default()
        };
        let certificate = |principal: &str| {
            let mut b = certificate_builder(&user_key, CertType::User, 0..u64::MAX, "alice@laptop");
            b.valid_principal(principal).expect("principal");
            b.sign(&ca).expect("signed")
        };
        let alice = format!(
            "authorized_keys = [\"{}\"]\n",
            listed.public_key().to_openssh().expect("listed")
        );
        for (principal, signs_in) in [("bob", false), ("alice", true)] {
            let (mut ssh, _server) = connect_to(dir.path(), &alice, &sftp).await;
            let answered = ssh
                .authenticate_openssh_cert(
                    "alice",
                    Arc::new(user_key.clone()),
                    certificate(principal),
                )
                .await
                .expect("answered");
            assert_eq!(
                answered.success(),
                signs_in,
                "a certificate for {principal}"
            );
        }
        let by_key = |key: &PrivateKey, sftp: SftpSection| {
            let (dir, alice, key) = (dir.path().to_owned(), alice.clone(), key.clone());
            async move {
                let (mut ssh, _server) = connect_to(&dir, &alice, &sftp).await;
                let signed = PrivateKeyWithHashAlg::new(Arc::new(key), None);
                let answered = ssh
                    .authenticate_publickey("alice", signed)
                    .await
                    .expect("answered");
                answered.success()
            }
        };
        assert!(!by_key(&user_key, sftp.clone()).await, "an unlisted key");
        assert!(by_key(&listed, sftp.clone()).await, "the listed key");

        // Revoked: the listed key, then the authority itself.
        let revoked = dir.path().join("revoked");
        let sftp = SftpSection {
            revoked_keys: Some(revoked.clone()),
            ..sftp
        };
        std::fs::write(&revoked, listed.public_key().to_openssh().expect("listed")).expect("write");
        assert!(!by_key(&listed, sftp.clone()).await, "a revoked key");
        std::fs::write(&revoked, ca.public_key().to_openssh().expect("ca")).expect("write");
        let (mut ssh, _server) = connect_to(dir.path(), &alice, &sftp).await;
        let answered = ssh
            .authenticate_openssh_cert("alice", Arc::new(user_key.clone()), certificate("alice"))
            .await
            .expect("answered");
        assert!(
            !answered.success(),
            "a certificate from a revoked authority"
        );
    }
}
