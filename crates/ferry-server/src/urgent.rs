//! Control sockets and TCP urgent data (RFC 959 §4.1.3, RFC 854 "Synch").
//!
//! Clients send ABOR as urgent data: Python's ftplib sends the whole `ABOR\r\n`
//! with `MSG_OOB`, which marks its last byte, the `\n`, as urgent. The listener sets
//! `SO_OOBINLINE`, so that byte stays in the stream, but the kernel ends a read at
//! the urgent mark: a read returns `ABOR\r`, and only the next read returns `\n`.
//! Tokio takes a short read to mean "drained" and waits for the next readiness
//! edge, which never comes: the session would wait forever for the line's end.
//!
//! [`ControlSocket`] fixes that: after a short read that does not end a line it
//! makes one more non-blocking `recv`, which collects the bytes past the mark. (A
//! read that ends with `\n` cannot have stopped at the mark of an urgent line,
//! whose last byte is the mark; it needs no second call.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use rustix::net::RecvFlags;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A control connection's socket.
#[derive(Debug)]
pub struct ControlSocket {
    inner: TcpStream,
}

impl ControlSocket {
    pub fn new(inner: TcpStream) -> Self {
        ControlSocket { inner }
    }
}

impl AsyncRead for ControlSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let got = &buf.filled()[before..];
        if !got.is_empty() && got.last() != Some(&b'\n') && buf.remaining() > 0 {
            let unfilled = buf.initialize_unfilled();
            if let Ok((n, _)) = rustix::net::recv(&self.inner, unfilled, RecvFlags::DONTWAIT) {
                buf.advance(n);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ControlSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// The whole line sent as urgent data arrives, without any later traffic, when
    /// the reader was already waiting (as a session is, mid-transfer).
    #[tokio::test]
    async fn reads_past_the_urgent_mark() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = std::net::TcpStream::connect(addr).expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        rustix::net::sockopt::set_socket_oobinline(&server, true).expect("oobinline");
        let mut socket = ControlSocket::new(server);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while !got.ends_with(b"\n") {
                let n = socket.read(&mut buf).await.expect("read");
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            got
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        rustix::net::send(&client, b"ABOR\r\n", rustix::net::SendFlags::OOB).expect("send oob");
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("the byte past the urgent mark must arrive")
            .expect("reader");
        assert_eq!(got, b"ABOR\r\n");
    }
}
