//! The control connection: commands out, replies in (RFC 959 §4.2, §5.4).

use std::time::{Duration, Instant};

use ferry_proto::{Reply, ReplyParser};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::error::{ClientError, Result};
use crate::stream::{NetStream, TlsSession};

/// The longest reply line accepted (servers send a few hundred bytes at most).
const MAX_LINE: usize = 64 * 1024;

/// The control connection of a session.
#[derive(Debug)]
pub(crate) struct Control {
    stream: BufReader<NetStream>,
    parser: ReplyParser,
    /// The part of a line read so far; kept here so that reading a reply can be
    /// cancelled (raced against a data-connection handshake) without losing bytes.
    partial: Vec<u8>,
    pub(crate) timeout: Duration,
    pub(crate) last_sent: Instant,
}

impl Control {
    pub(crate) fn new(stream: NetStream, timeout: Duration) -> Self {
        Control {
            stream: BufReader::new(stream),
            parser: ReplyParser::default(),
            partial: Vec::new(),
            timeout,
            last_sent: Instant::now(),
        }
    }

    pub(crate) fn stream(&self) -> &NetStream {
        self.stream.get_ref()
    }

    /// Sends one command line. `shown` is what logs say (PASS is hidden).
    pub(crate) async fn send(&mut self, line: &str) -> Result<()> {
        if line.contains(['\r', '\n', '\0']) {
            return Err(ClientError::Unsendable(line.to_owned()));
        }
        if line.len() > 5 && line[..5].eq_ignore_ascii_case("PASS ") {
            tracing::debug!(target: "ferry_client::wire", "> PASS ***");
        } else {
            tracing::debug!(target: "ferry_client::wire", "> {line}");
        }
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        let write = async {
            self.stream.get_mut().write_all(&bytes).await?;
            self.stream.get_mut().flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(r) => r?,
            Err(_) => return Err(self.timed_out("the server to take a command")),
        }
        self.last_sent = Instant::now();
        Ok(())
    }

    /// Reads the next complete reply. Cancel-safe.
    pub(crate) async fn reply(&mut self) -> Result<Reply> {
        loop {
            let line = match tokio::time::timeout(self.timeout, self.read_line()).await {
                Ok(r) => r?,
                Err(_) => return Err(self.timed_out("a reply")),
            };
            if let Some(reply) = self.parser.push_line(&line)? {
                tracing::debug!(target: "ferry_client::wire", "< {} {}", reply.code(), reply.lines().join(" | "));
                return Ok(reply);
            }
        }
    }

    /// Sends a command and reads its reply.
    pub(crate) async fn command(&mut self, line: &str) -> Result<Reply> {
        self.send(line).await?;
        self.reply().await
    }

    async fn read_line(&mut self) -> Result<Vec<u8>> {
        loop {
            let available = self.stream.fill_buf().await?;
            if available.is_empty() {
                return Err(ClientError::Closed);
            }
            match available.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.partial.extend_from_slice(&available[..=i]);
                    self.stream.consume(i + 1);
                    return Ok(std::mem::take(&mut self.partial));
                }
                None => {
                    let n = available.len();
                    self.partial.extend_from_slice(available);
                    self.stream.consume(n);
                    if self.partial.len() > MAX_LINE {
                        return Err(ClientError::BadReply {
                            command: "(any)".to_owned(),
                            text: format!("a reply line longer than {MAX_LINE} bytes"),
                        });
                    }
                }
            }
        }
    }

    /// Turns the connection into TLS after AUTH TLS was accepted.
    pub(crate) async fn start_tls(self, tls: &TlsSession) -> Result<Self> {
        let timeout = self.timeout;
        match self.stream.into_inner() {
            NetStream::Plain(tcp) => Ok(Control::new(tls.handshake(tcp, timeout).await?, timeout)),
            tls_stream @ NetStream::Tls(_) => Ok(Control::new(tls_stream, timeout)),
        }
    }

    /// Closes the connection, sending a TLS close_notify where there is TLS.
    pub(crate) async fn shutdown(&mut self) {
        let _ =
            tokio::time::timeout(Duration::from_secs(2), self.stream.get_mut().shutdown()).await;
    }

    fn timed_out(&self, what: &str) -> ClientError {
        ClientError::Timeout {
            what: what.to_owned(),
            after: self.timeout,
        }
    }
}
