//! The control connection: command lines in, replies out (RFC 959 §4, §5.4).
//!
//! Lines longer than [`MAX_LINE`] are skipped whole and reported as
//! [`Line::TooLong`], so a client cannot make the server buffer without bound.
//! Reading is cancel-safe: bytes already received stay buffered when a read is
//! abandoned (the session races reads against transfers).

use ferry_proto::command::MAX_LINE;
use ferry_proto::{Reply, telnet};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// One line from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line, line ending and Telnet sequences removed.
    Text(Vec<u8>),
    /// A line over the limit; its bytes were discarded.
    TooLong,
}

/// A control connection over any byte stream.
#[derive(Debug)]
pub struct ControlConnection<S> {
    stream: BufReader<S>,
    partial: Vec<u8>,
    /// Searched up to here for a line end already.
    scanned: usize,
    discarding: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ControlConnection<S> {
    pub fn new(stream: S) -> Self {
        ControlConnection {
            stream: BufReader::with_capacity(4096, stream),
            partial: Vec::new(),
            scanned: 0,
            discarding: false,
        }
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
            let buf = self.stream.fill_buf().await?;
            if buf.is_empty() {
                return Ok(None);
            }
            let n = buf.len();
            self.partial.extend_from_slice(buf);
            self.stream.consume(n);
        }
    }

    /// Sends one reply.
    pub async fn send(&mut self, reply: &Reply) -> std::io::Result<()> {
        let bytes = reply.to_bytes();
        let w = self.stream.get_mut();
        w.write_all(&bytes).await?;
        w.flush().await
    }

    /// Sends bytes already in reply form (a multi-line reply written in parts).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let w = self.stream.get_mut();
        w.write_all(bytes).await?;
        w.flush().await
    }

    /// Closes the sending side.
    pub async fn shutdown(&mut self) {
        let _ = self.stream.get_mut().shutdown().await;
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
