//! Listening sockets and the accept loop.
//!
//! Each accepted connection gets `TCP_NODELAY` (so each reply leaves at once,
//! instead of waiting on Nagle and the peer's delayed ACK) and `SO_OOBINLINE` (so
//! the urgent byte clients send with ABOR stays in the command stream), is checked
//! against the connection caps (421 and close when over), and runs as one task.
//!
//! Shutdown: the listeners stop accepting, idle sessions are told 421 and closed,
//! sessions in a transfer finish it, and whatever is still running after the grace
//! period is stopped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_proto::Reply;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::limits::ConnectionTracker;
use crate::options::ServerOptions;
use crate::session::{Peer, Session};
use crate::urgent::ControlSocket;

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    opts: Arc<ServerOptions>,
    /// Each listener, and the protocol it speaks.
    listeners: Vec<(TcpListener, Protocol)>,
    shutdown: CancellationToken,
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// FTP, with explicit FTPS (AUTH TLS) when TLS is on.
    Ftp,
    /// FTPS with TLS from the first byte.
    ImplicitFtps,
    /// SFTP over SSH.
    Sftp,
}

/// How many pending connections the kernel queues per listener.
const BACKLOG: u32 = 1024;

impl Server {
    /// Binds every listen address.
    pub async fn bind(opts: ServerOptions) -> std::io::Result<Server> {
        let mut listeners = Vec::new();
        if !opts.implicit_listen.is_empty() && opts.tls.is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "tls.implicit_listen needs TLS, which is off",
            ));
        }
        if !opts.sftp_listen.is_empty() && opts.sftp.is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "sftp.listen needs the SSH host key, which is not loaded",
            ));
        }
        let all = opts
            .listen
            .iter()
            .map(|a| (a, Protocol::Ftp))
            .chain(
                opts.implicit_listen
                    .iter()
                    .map(|a| (a, Protocol::ImplicitFtps)),
            )
            .chain(opts.sftp_listen.iter().map(|a| (a, Protocol::Sftp)));
        for (addr, protocol) in all {
            let listener = bind_listener(*addr).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
            })?;
            listeners.push((listener, protocol));
        }
        Ok(Server {
            opts: Arc::new(opts),
            listeners,
            shutdown: CancellationToken::new(),
        })
    }

    /// The plain (and explicit-FTPS) addresses actually bound (with the real port
    /// when 0 was asked).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(Protocol::Ftp)
    }

    /// The implicit-FTPS addresses actually bound.
    pub fn implicit_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(Protocol::ImplicitFtps)
    }

    /// The SFTP addresses actually bound.
    pub fn sftp_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(Protocol::Sftp)
    }

    fn addrs(&self, protocol: Protocol) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter(|(_, p)| *p == protocol)
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then drains the sessions.
    pub async fn run(self) {
        let tracker =
            ConnectionTracker::new(self.opts.max_connections, self.opts.max_connections_per_ip);
        let sessions = TaskTracker::new();
        let hard_stop = CancellationToken::new();
        let ids = Arc::new(AtomicU64::new(1));
        let mut accept_loops = Vec::new();
        for (listener, protocol) in self.listeners {
            let ctx = AcceptContext {
                protocol,
                opts: self.opts.clone(),
                tracker: tracker.clone(),
                sessions: sessions.clone(),
                shutdown: self.shutdown.clone(),
                hard_stop: hard_stop.clone(),
                ids: ids.clone(),
            };
            accept_loops.push(tokio::spawn(accept_loop(listener, ctx)));
        }
        self.shutdown.cancelled().await;
        for l in accept_loops {
            let _ = l.await;
        }
        sessions.close();
        let grace = self.opts.shutdown_grace;
        info!(
            sessions = sessions.len(),
            grace_secs = grace.as_secs(),
            "shutting down: waiting for transfers in flight"
        );
        if tokio::time::timeout(grace, sessions.wait()).await.is_err() {
            warn!(
                sessions = sessions.len(),
                "grace period over: stopping the remaining sessions"
            );
            hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), sessions.wait()).await;
        }
        info!("server stopped");
    }
}

fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

#[derive(Clone)]
struct AcceptContext {
    protocol: Protocol,
    opts: Arc<ServerOptions>,
    tracker: Arc<ConnectionTracker>,
    sessions: TaskTracker,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    ids: Arc<AtomicU64>,
}

async fn accept_loop(listener: TcpListener, ctx: AcceptContext) {
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, remote)) => admit(stream, remote, &ctx),
            Err(e) => {
                // Out of file descriptors and the like: wait a little, go on.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

fn admit(stream: TcpStream, remote: SocketAddr, ctx: &AcceptContext) {
    let _ = stream.set_nodelay(true);
    let _ = rustix::net::sockopt::set_socket_oobinline(&stream, true);
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let id = ctx.ids.fetch_add(1, Ordering::Relaxed);
    let slot = match ctx.tracker.admit(remote.ip()) {
        Ok(slot) => slot,
        Err(refusal) => {
            let reason = capitalize_sentence(&refusal.to_string());
            let speaks_ftp = ctx.protocol != Protocol::Sftp;
            tokio::spawn(refuse(
                stream,
                remote,
                id,
                ctx.opts.clone(),
                reason,
                speaks_ftp,
            ));
            return;
        }
    };
    debug!(session = id, %remote, "connection accepted");
    let peer = Peer { remote, local, id };
    let hard_stop = ctx.hard_stop.clone();
    let (opts, shutdown, protocol) = (ctx.opts.clone(), ctx.shutdown.clone(), ctx.protocol);
    ctx.sessions.spawn(async move {
        let _slot = slot;
        if let Some(reason) = opts.bans.check(remote.ip()).await {
            drop(_slot);
            refuse(
                stream,
                remote,
                id,
                opts,
                format!("Your address is refused: {reason}."),
                protocol != Protocol::Sftp,
            )
            .await;
            return;
        }
        if protocol == Protocol::Sftp {
            tokio::select! {
                _ = crate::sftp::ssh::serve(stream, opts, peer, shutdown) => {}
                _ = hard_stop.cancelled() => {}
            }
            return;
        }
        let socket = ControlSocket::new(stream);
        let serve = async move {
            if protocol == Protocol::Ftp {
                return Session::new(socket, opts, peer, shutdown).run().await;
            }
            // Implicit FTPS: TLS from the first byte, within the login deadline.
            let Some(ctx) = opts.tls.clone() else { return };
            let tls = ctx.for_session();
            match tokio::time::timeout(opts.login_timeout, tls.acceptor().accept(socket)).await {
                Ok(Ok(stream)) => {
                    Session::new_implicit(stream, tls, opts, peer, shutdown)
                        .run()
                        .await
                }
                Ok(Err(e)) => {
                    debug!(session = peer.id, error = %e, "implicit TLS handshake failed")
                }
                Err(_) => debug!(session = peer.id, "implicit TLS handshake timed out"),
            }
        };
        tokio::select! {
            _ = serve => {}
            _ = hard_stop.cancelled() => {}
        }
    });
}

/// Answers 421 (on an FTP listener) and closes, with an audit record.
async fn refuse(
    mut stream: TcpStream,
    remote: SocketAddr,
    id: u64,
    opts: Arc<ServerOptions>,
    reason: String,
    speaks_ftp: bool,
) {
    info!(%remote, %reason, "connection refused");
    opts.activity.audit(&crate::activity::AuditRecord {
        time: crate::activity::rfc3339((opts.clock)()),
        session: id,
        user: None,
        client: remote,
        protocol: (!speaks_ftp).then_some("sftp"),
        command: "CONNECT",
        arg: Some(&reason),
        path: None,
        code: 421,
        bytes: None,
        duration_ms: None,
    });
    let reply = Reply::new(421, reason);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        if speaks_ftp {
            let _ = stream.write_all(&reply.to_bytes()).await;
        }
        let _ = stream.shutdown().await;
    })
    .await;
}

fn capitalize_sentence(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => format!("{}{}.", f.to_uppercase(), c.as_str()),
        None => String::new(),
    }
}
