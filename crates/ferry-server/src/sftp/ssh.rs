//! The SSH side of an SFTP connection (RFC 4252 password authentication,
//! RFC 4254 session channels and the `sftp` subsystem), on russh.
//!
//! A password login is FTP's sign-in (`crate::signin`); a refusal that closes
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

use super::session::SftpSession;
use crate::activity::{AuditRecord, rfc3339};
use crate::options::ServerOptions;
use crate::session::Peer;
use crate::signin::{SignInRefusal, SignedIn, sign_in};

/// The most session channels one connection may open.
const MAX_CHANNELS: usize = 8;

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
/// passes without a login, or the server shuts down.
pub async fn serve(
    stream: TcpStream,
    opts: Arc<ServerOptions>,
    peer: Peer,
    shutdown: CancellationToken,
) {
    let Some(ctx) = opts.sftp.clone() else { return };
    let signed_in = Arc::new(AtomicBool::new(false));
    let handler = SshConnection {
        opts: opts.clone(),
        peer,
        user: None,
        signed_in: signed_in.clone(),
        channels: HashMap::new(),
        opened_channels: 0,
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
        _ = shutdown.cancelled() => debug!(session = peer.id, "server shutting down: closing the SSH connection"),
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
    fn audit_login(&self, user: &str, refusal: Option<SignInRefusal>) {
        if !self.opts.activity.audits() {
            return;
        }
        let reason = refusal.map(|r| r.to_string());
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

fn password_only() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(MethodSet::from(&[MethodKind::Password][..])),
        partial_success: false,
    }
}

impl russh::server::Handler for SshConnection {
    type Error = SshError;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(password_only())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if self.user.is_some() {
            return Ok(password_only());
        }
        match sign_in(&self.opts, self.peer.id, self.peer.remote, user, password).await {
            Ok(signed_in) => {
                self.audit_login(user, None);
                self.user = Some(Arc::new(signed_in));
                self.signed_in.store(true, Ordering::Release);
                Ok(Auth::Accept)
            }
            Err(refusal) => {
                self.audit_login(user, Some(refusal));
                if refusal.closes_connection() {
                    return Err(SshError::Refused(refusal));
                }
                Ok(password_only())
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
        let sftp = SftpSession::new(self.opts.clone(), self.peer, user);
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
