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

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_proto::Reply;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::limits::{ConnectionSlot, ConnectionTracker};
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
    ctx.sessions.spawn(serve_connection(
        stream,
        peer,
        slot,
        ctx.opts.clone(),
        ctx.shutdown.clone(),
        ctx.hard_stop.clone(),
        ctx.protocol,
    ));
}

/// One admitted connection, served until it ends or `hard_stop`.
///
/// Each protocol's future is boxed. A task keeps the room of its future's
/// largest state for as long as it lives: inline, the FTP session, the
/// implicit-FTPS handshake and the SSH connection made a 6 KiB task for
/// every idle session, about 4 KiB of it states an idle session is not in
/// (benchmark (g), docs/benchmarks.md § "Idle sessions and a burst of first
/// logins"). `tests::the_futures_of_an_idle_ftp_session_stay_small` holds
/// this.
async fn serve_connection(
    stream: TcpStream,
    peer: Peer,
    slot: ConnectionSlot,
    opts: Arc<ServerOptions>,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    protocol: Protocol,
) {
    let remote = peer.remote;
    // Boxed too, as they are over before the session starts.
    if let Some(reason) = Box::pin(opts.bans.check(remote.ip())).await {
        drop(slot);
        Box::pin(refuse(
            stream,
            remote,
            peer.id,
            opts,
            format!("Your address is refused: {reason}."),
            protocol != Protocol::Sftp,
        ))
        .await;
        return;
    }
    let serve: Pin<Box<dyn Future<Output = ()> + Send>> = match protocol {
        Protocol::Sftp => Box::pin(crate::sftp::ssh::serve(stream, opts, peer, shutdown)),
        Protocol::Ftp => {
            Box::pin(Session::new(ControlSocket::new(stream), opts, peer, shutdown).run())
        }
        Protocol::ImplicitFtps => Box::pin(serve_implicit_ftps(stream, opts, peer, shutdown)),
    };
    tokio::select! {
        _ = serve => {}
        _ = hard_stop.cancelled() => {}
    }
    drop(slot);
}

/// Implicit FTPS: TLS from the first byte, within the login deadline, then
/// the FTP session.
async fn serve_implicit_ftps(
    stream: TcpStream,
    opts: Arc<ServerOptions>,
    peer: Peer,
    shutdown: CancellationToken,
) {
    let Some(ctx) = opts.tls.clone() else { return };
    let tls = ctx.for_session();
    let socket = ControlSocket::new(stream);
    match tokio::time::timeout(opts.login_timeout, tls.acceptor().accept(socket)).await {
        Ok(Ok(stream)) => {
            Session::new_implicit(stream, tls, opts, peer, shutdown)
                .run()
                .await
        }
        Ok(Err(e)) => debug!(session = peer.id, error = %e, "implicit TLS handshake failed"),
        Err(_) => debug!(session = peer.id, "implicit TLS handshake timed out"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle FTP session keeps two futures allocated: its connection's
    /// task and, boxed inside it, the session's. Benchmark (g) holds an idle
    /// session under 8 KiB in all; before they were boxed, the task alone
    /// took ~6 KiB (the FTP session, implicit TLS's handshake and the SSH
    /// connection's future inline), and the session's future 4 KiB (every
    /// command's and transfer's future inline).
    #[tokio::test]
    async fn the_futures_of_an_idle_ftp_session_stay_small() {
        let dir = tempfile::tempdir().expect("tmp");
        let opts = Arc::new(crate::test_support::options_with_alice(dir.path(), ""));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (stream, remote) = listener.accept().await.expect("accept");
        let peer = Peer {
            remote,
            local: addr,
            id: 1,
        };
        let session = Session::new(
            ControlSocket::new(TcpStream::connect(addr).await.expect("connect")),
            opts.clone(),
            peer,
            CancellationToken::new(),
        )
        .run();
        let slot = ConnectionTracker::new(1, 1)
            .admit(remote.ip())
            .expect("slot");
        let task = serve_connection(
            stream,
            peer,
            slot,
            opts,
            CancellationToken::new(),
            CancellationToken::new(),
            Protocol::Ftp,
        );
        // Debug builds' futures are the larger; these bounds hold in both.
        let (task, session) = (size_of_val(&task), size_of_val(&session));
        assert!(task <= 1024, "the connection's task takes {task} bytes");
        assert!(
            session <= 2048,
            "the session's future takes {session} bytes"
        );
    }
}
