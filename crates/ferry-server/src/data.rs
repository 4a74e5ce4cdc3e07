//! Data connections: how the next transfer's connection is set up (PORT/EPRT for
//! active mode, PASV/EPSV for passive, RFC 959 §3.2 and RFC 2428) and opened.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};

use crate::congestion::LoopbackCongestion;
use crate::error::TransferError;
use crate::passive::PassiveListener;

/// How the next data connection will be made.
#[derive(Debug, Default)]
pub enum DataSetup {
    /// Neither PORT nor PASV yet.
    #[default]
    None,
    /// PASV/EPSV: the client will connect here.
    Passive(PassiveListener),
    /// PORT/EPRT: the server connects to the client.
    Active(SocketAddr),
}

/// What a transfer is done with (its data connection, the passive listener
/// it came from, the file), closed only once the transfer's final reply is
/// out.
///
/// The client waits for that reply, not for the server's `close` calls: a
/// small file's download made the client wait for three of them (listener,
/// socket, file; docs/benchmarks.md, workload d). The end of the data (FIN) is
/// still sent before the reply, by `shutdown`; and a transfer that fails or is
/// aborted (ABOR) drops what it holds at once, so that the data connection is
/// closed before the 426 as RFC 959 §4.1.3 describes. Only a transfer that
/// ends at once keeps its listener to the end: one that has to wait closes it
/// before it waits, so that it does not hold its passive port meanwhile.
#[derive(Clone, Default)]
pub struct CloseAfterReply(Arc<Mutex<Vec<Box<dyn Send>>>>);

impl CloseAfterReply {
    /// Keeps `resource` open until the reply is out.
    pub fn keep<T: Send + 'static>(&self, resource: T) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(resource));
    }

    /// How many resources wait to be closed.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether nothing waits to be closed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Closes everything kept (the reply is out).
    pub fn close_now(&self) {
        let kept = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        drop(kept);
    }
}

impl std::fmt::Debug for CloseAfterReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloseAfterReply")
            .field("kept", &self.len())
            .finish()
    }
}

/// Opens the data connection set up by `setup`.
///
/// A passive listener accepts only a connection from `peer_ip` (the control
/// connection's client): a stranger's connection is closed at once and the listener
/// keeps waiting for the real one, until `timeout`. Once the connection is
/// accepted, the listener goes to `after_reply`. An active connection to a
/// loopback address gets `congestion`'s algorithm (a passive one has it from
/// its listener).
pub async fn open(
    setup: DataSetup,
    peer_ip: IpAddr,
    local_ip: IpAddr,
    timeout: Duration,
    after_reply: CloseAfterReply,
    congestion: LoopbackCongestion,
) -> Result<DataConnection, TransferError> {
    let from_client = |from: SocketAddr| {
        let ok = same_host(from.ip(), peer_ip);
        if !ok {
            tracing::warn!(%from, expected = %peer_ip, "refused a data connection from a foreign address");
        }
        ok
    };
    let failed = |e: std::io::Error| TransferError::Open(e.to_string());
    match setup {
        DataSetup::None => Err(TransferError::Open("use PORT or PASV first".into())),
        DataSetup::Passive(listener) => {
            // Usually the client has connected already.
            while let Some((stream, from)) = listener.try_accept().map_err(failed)? {
                if from_client(from) {
                    after_reply.keep(listener);
                    return Ok(DataConnection::fresh(stream));
                }
            }
            let listener = listener.into_async().map_err(failed)?;
            let accept = async {
                loop {
                    let (stream, from) = listener.accept().await.map_err(failed)?;
                    if from_client(from) {
                        return Ok(stream);
                    }
                }
            };
            let stream = tokio::time::timeout(timeout, accept).await.map_err(|_| {
                TransferError::Open("no connection from the client in time".into())
            })??;
            after_reply.keep(listener);
            Ok(DataConnection::registered(stream))
        }
        DataSetup::Active(addr) => {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(failed)?;
            congestion.apply(&socket, addr.ip());
            // Connect from the address the client reached us on.
            if local_ip.is_ipv4() == addr.is_ipv4() {
                let _ = socket.bind(SocketAddr::new(local_ip, 0));
            }
            let stream = tokio::time::timeout(timeout, socket.connect(addr))
                .await
                .map_err(|_| TransferError::Open(format!("connecting to {addr} timed out")))?
                .map_err(|e| TransferError::Open(format!("connecting to {addr}: {e}")))?;
            Ok(DataConnection::registered(stream))
        }
    }
}

/// An open plain data connection, registered with the async runtime only once a
/// transfer has to wait on it.
///
/// Registering costs two `epoll_ctl` calls and the readiness events wake the
/// runtime; a small file sent with sendfile in one call never waits, so it
/// never pays (docs/benchmarks.md, workload d). Until it is
/// registered the socket is non-blocking and used directly; the first read or
/// write through [`AsyncRead`]/[`AsyncWrite`], or [`DataConnection::registered_mut`],
/// registers it.
#[derive(Debug)]
pub struct DataConnection(Link);

#[derive(Debug)]
enum Link {
    /// Accepted or made, not registered: non-blocking, used directly.
    Fresh(std::net::TcpStream),
    Registered(TcpStream),
    /// Registering failed; the socket is gone.
    Lost,
}

impl DataConnection {
    /// A connection just accepted or made, its socket non-blocking.
    pub(crate) fn fresh(stream: std::net::TcpStream) -> Self {
        DataConnection(Link::Fresh(stream))
    }

    fn registered(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        DataConnection(Link::Registered(stream))
    }

    /// The socket while it is not registered: non-blocking, for a system call
    /// that may finish at once (an `EAGAIN` means: register and wait).
    pub fn unregistered(&self) -> Option<&std::net::TcpStream> {
        match &self.0 {
            Link::Fresh(s) => Some(s),
            _ => None,
        }
    }

    /// The connection registered with the runtime, registering it now if needed.
    pub fn registered_mut(&mut self) -> std::io::Result<&mut TcpStream> {
        if let Link::Fresh(_) = self.0
            && let Link::Fresh(s) = std::mem::replace(&mut self.0, Link::Lost)
        {
            // Small writes (listings, TLS records) go out without waiting.
            let _ = s.set_nodelay(true);
            self.0 = Link::Registered(TcpStream::from_std(s)?);
        }
        match &mut self.0 {
            Link::Registered(s) => Ok(s),
            _ => Err(lost()),
        }
    }

    /// The connection as a registered stream, for TLS.
    pub fn into_registered(mut self) -> std::io::Result<TcpStream> {
        self.registered_mut()?;
        match self.0 {
            Link::Registered(s) => Ok(s),
            _ => Err(lost()),
        }
    }

    /// The socket, registered or not.
    pub fn socket(&self) -> std::io::Result<BorrowedFd<'_>> {
        match &self.0 {
            Link::Fresh(s) => Ok(s.as_fd()),
            Link::Registered(s) => Ok(s.as_fd()),
            Link::Lost => Err(lost()),
        }
    }

    /// Ends the sending side (the client sees the end of the data). Never waits.
    pub fn shutdown_write(&self) -> std::io::Result<()> {
        rustix::net::shutdown(self.socket()?, rustix::net::Shutdown::Write).map_err(Into::into)
    }
}

fn lost() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        "the data connection was lost",
    )
}

impl AsyncRead for DataConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(self.get_mut().registered_mut()?).poll_read(cx, buf)
    }
}

impl AsyncWrite for DataConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(self.get_mut().registered_mut()?).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.shutdown_write())
    }
}

/// Whether two addresses are the same host, seeing through IPv4-mapped IPv6.
pub fn same_host(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts its drops.
    struct Resource(Arc<AtomicUsize>);

    impl Drop for Resource {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn what_a_transfer_keeps_is_closed_only_by_close_now() {
        let closed = Arc::new(AtomicUsize::new(0));
        let after_reply = CloseAfterReply::default();
        // The transfer holds a clone and gives up its resources; they stay
        // open when the transfer (its clone) is gone.
        let transfer_side = after_reply.clone();
        transfer_side.keep(Resource(closed.clone()));
        transfer_side.keep(Resource(closed.clone()));
        drop(transfer_side);
        assert_eq!(closed.load(Ordering::SeqCst), 0);
        assert_eq!(after_reply.len(), 2);
        after_reply.close_now();
        assert_eq!(closed.load(Ordering::SeqCst), 2);
        assert!(after_reply.is_empty());
    }

    #[tokio::test]
    async fn an_active_connection_to_loopback_gets_the_loopback_congestion_control() {
        let client = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = client.local_addr().expect("addr");
        let ip = addr.ip();
        let (other, name) = crate::congestion::test_support::other_than_the_system_s();
        let (conn, accepted) = tokio::join!(
            open(
                DataSetup::Active(addr),
                ip,
                ip,
                Duration::from_secs(5),
                CloseAfterReply::default(),
                other,
            ),
            client.accept()
        );
        let (conn, _accepted) = (conn.expect("connected"), accepted.expect("accepted"));
        let socket = conn.socket().expect("socket");
        assert_eq!(
            rustix::net::sockopt::tcp_congestion(socket).expect("TCP_CONGESTION"),
            name
        );
    }
}
