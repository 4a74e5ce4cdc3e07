//! A TCP connection, plain or under TLS, for control and data connections alike.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{ClientError, Result};

/// What TLS a session uses: one configuration (and so one session cache) for the
/// control connection and every data connection.
#[derive(Debug, Clone)]
pub struct TlsSession {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl TlsSession {
    /// Runs the client handshake over `tcp`, bounded by `timeout`.
    pub async fn handshake(&self, tcp: TcpStream, timeout: Duration) -> Result<NetStream> {
        let connector = TlsConnector::from(self.config.clone());
        let host = self.server_name.to_str().into_owned();
        match tokio::time::timeout(timeout, connector.connect(self.server_name.clone(), tcp)).await
        {
            Ok(Ok(tls)) => Ok(NetStream::Tls(Box::new(tls))),
            Ok(Err(cause)) => Err(ClientError::Tls { host, cause }),
            Err(_) => Err(ClientError::Timeout {
                what: format!("the TLS handshake with {host}"),
                after: timeout,
            }),
        }
    }
}

/// A connection to the server, plain or TLS.
#[derive(Debug)]
pub enum NetStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl NetStream {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            NetStream::Plain(s) => s,
            NetStream::Tls(s) => s.get_ref().0,
        }
    }

    /// True when the connection is under TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, NetStream::Tls(_))
    }

    /// The socket, for the kernel to move bytes on directly, if the
    /// connection is plain TCP (not TLS).
    pub(crate) fn plain_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        match self {
            NetStream::Plain(tcp) => Some(tcp.as_fd()),
            NetStream::Tls(_) => None,
        }
    }

    /// True when the TLS handshake resumed an earlier session.
    pub fn resumed(&self) -> bool {
        match self {
            NetStream::Tls(s) => {
                s.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
            }
            NetStream::Plain(_) => false,
        }
    }
}

impl AsyncRead for NetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_flush(cx),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connects to `host:port` (every address it resolves to, in turn), bounded by
/// `timeout`, with TCP_NODELAY set.
pub async fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let target = (host, port);
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(target)
        .await
        .map_err(|cause| ClientError::Resolve {
            host: host.to_owned(),
            cause,
        })?
        .collect();
    let mut last = None;
    for addr in &addrs {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(cause)) => {
                last = Some(ClientError::Connect {
                    addr: addr.to_string(),
                    cause,
                })
            }
            Err(_) => {
                last = Some(ClientError::Timeout {
                    what: format!("a connection to {addr}"),
                    after: timeout,
                })
            }
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Resolve {
        host: host.to_owned(),
        cause: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
    }))
}
