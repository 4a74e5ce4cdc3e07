//! The control connection: command lines in, replies out (RFC 959 §4, §5.4).
//!
//! Lines longer than [`MAX_LINE`] are skipped whole and reported as
//! [`Line::TooLong`], so a client cannot make the server buffer without bound.
//! Reading is cancel-safe: bytes already received stay buffered when a read is
//! abandoned (the session races reads against transfers).

use ferry_proto::command::MAX_LINE;

/// The read buffer of a control connection. Commands are short; a longer line
/// is gathered across reads (up to `MAX_LINE`), so the buffer only sets how much
/// is read per call, and a small one keeps idle sessions small (see
/// docs/benchmarks.md, workload g).
const CONTROL_READ_BUFFER: usize = 512;
use ferry_proto::{Reply, telnet};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio_rustls::TlsAcceptor;

use crate::tls::ControlStream;

/// One line from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line, line ending and Telnet sequences removed.
    Text(Vec<u8>),
    /// A line over the limit; its bytes were discarded.
    TooLong,
}

/// A control connection over any byte stream, plain or TLS.
#[derive(Debug)]
pub struct ControlConnection<S> {
    /// `None` only while AUTH TLS swaps the plain stream for a TLS one.
    stream: Option<BufReader<ControlStream<S>>>,
    partial: Vec<u8>,
    /// Searched up to here for a line end already.
    scanned: usize,
    discarding: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ControlConnection<S> {
    pub fn new(stream: S) -> Self {
        Self::over(ControlStream::Plain(stream))
    }

    /// A connection that is TLS from the first byte (implicit FTPS).
    pub fn new_tls(stream: tokio_rustls::server::TlsStream<S>) -> Self {
        Self::over(ControlStream::Tls(Box::new(stream)))
    }

    fn over(stream: ControlStream<S>) -> Self {
        ControlConnection {
            stream: Some(BufReader::with_capacity(CONTROL_READ_BUFFER, stream)),
            partial: Vec::new(),
            scanned: 0,
            discarding: false,
        }
    }

    fn io(&mut self) -> std::io::Result<&mut BufReader<ControlStream<S>>> {
        self.stream.as_mut().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotConnected, "TLS negotiation failed")
        })
    }

    /// Whether the connection is under TLS.
    pub fn is_tls(&self) -> bool {
        matches!(
            self.stream.as_ref().map(BufReader::get_ref),
            Some(ControlStream::Tls(_))
        )
    }

    /// After `234`: runs the TLS handshake over the plain connection (RFC 4217
    /// §4). Bytes the client sent before the handshake are refused. On failure
    /// the connection is unusable.
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> std::io::Result<()> {
        let reader = self.stream.take().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotConnected, "no connection")
        })?;
        if !self.partial.is_empty() || !reader.buffer().is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "data sent before the TLS handshake",
            ));
        }
        let plain = match reader.into_inner() {
            ControlStream::Plain(s) => s,
            ControlStream::Tls(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "already under TLS",
                ));
            }
        };
        let tls = acceptor.accept(plain).await?;
        self.stream = Some(BufReader::with_capacity(
            CONTROL_READ_BUFFER,
            ControlStream::Tls(Box::new(tls)),
        ));
        Ok(())
    }

    /// The next line; `Ok(None)` when the client closed the connection.
    pub async fn read_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            if let Some(pos) = self.partial[self.scanned..]
                .iter()
                .position(|&b| b == b'\n')
            {
                let end = self.scanned + pos;
                let mut line: Vec<u8> = self.partial.drain(..=end).collect();
                self.scanned = 0;
                if std::mem::take(&mut self.discarding) || line.len() > MAX_LINE {
                    return Ok(Some(Line::TooLong));
                }
                while matches!(line.last(), Some(b'\n' | b'\r')) {
                    line.pop();
                }
                telnet::strip(&mut line);
                return Ok(Some(Line::Text(line)));
            }
            self.scanned = self.partial.len();
            if self.partial.len() > MAX_LINE {
                self.partial.clear();
                self.scanned = 0;
                self.discarding = true;
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "TLS negotiation failed",
                ));
            };
            let buf = stream.fill_buf().await?;
            if buf.is_empty() {
                return Ok(None);
            }
            let n = buf.len();
            self.partial.extend_from_slice(buf);
            stream.consume(n);
        }
    }

    /// Sends one reply.
    pub async fn send(&mut self, reply: &Reply) -> std::io::Result<()> {
        let bytes = reply.to_bytes();
        let w = self.io()?.get_mut();
        w.write_all(&bytes).await?;
        w.flush().await
    }

    /// Sends several replies in one write (one packet where they fit).
    pub async fn send_all(&mut self, replies: &[Reply]) -> std::io::Result<()> {
        let mut bytes = Vec::new();
        for r in replies {
            bytes.extend_from_slice(&r.to_bytes());
        }
        self.send_raw(&bytes).await
    }

    /// Sends bytes already in reply form (a multi-line reply written in parts).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let w = self.io()?.get_mut();
        w.write_all(bytes).await?;
        w.flush().await
    }

    /// Closes the sending side.
    pub async fn shutdown(&mut self) {
        if let Ok(s) = self.io() {
            let _ = s.get_mut().shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_and_overlong_lines() {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut conn = ControlConnection::new(server);
        let mut input = b"USER a\r\nNOOP\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE * 3));
        input.extend_from_slice(b"\r\nPWD\r\n");
        // A line just over the limit that arrives whole is refused too.
        input.extend_from_slice(format!("RETR {}\r\nNOOP\r\n", "y".repeat(MAX_LINE)).as_bytes());
        client.write_all(&input).await.expect("write");
        drop(client);
        assert_eq!(
            conn.read_line().await.expect("r"),
            Some(Line::Text(b"USER a".to_vec()))
        );
        assert_eq!(
            conn.read_line().await.expect("r"),
            Some(Line::Text(b"NOOP".to_vec()))
        );
        assert_eq!(conn.read_line().await.expect("r"), Some(Line::TooLong));
        assert_eq!(
            conn.read_line().await.expect("r"),
            Some(Line::Text(b"PWD".to_vec()))
        );
        assert_eq!(conn.read_line().await.expect("r"), Some(Line::TooLong));
        assert_eq!(
            conn.read_line().await.expect("r"),
            Some(Line::Text(b"NOOP".to_vec()))
        );
        assert_eq!(conn.read_line().await.expect("r"), None);
    }
}
