//! Data connections and the transfer commands: RETR, STOR, APPE, REST, LIST,
//! MLSD, NLST (RFC 959 §3.2-§3.3, §4.1.3; RFC 2428; RFC 3659 §5, §7; RFC 4217 §9).
//!
//! A transfer is a stream: [`Download`] is an `AsyncRead`, [`Upload`] an
//! `AsyncWrite`; each borrows the session until its `finish` reads the server's
//! final reply, so a session cannot send another command in the middle of one.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ferry_proto::Reply;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::data::{DataMode, eprt_argument, parse_epsv_reply, parse_pasv_reply, pasv_target};
use crate::error::{ClientError, Result};
use crate::listing::{RemoteEntry, parse_list_line, parse_mlsx_line};
use crate::session::{FtpSession, refused};
use crate::stream::NetStream;

/// How an upload treats the remote file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// STOR: create or replace.
    Replace,
    /// APPE: add to the end (creating the file if missing).
    Append,
    /// REST offset + STOR: overwrite from `offset` on.
    Resume(u64),
}

/// A data connection on its way: connected (passive) or listening (active).
enum PendingData {
    Connected(TcpStream),
    Listening(TcpListener),
}

impl FtpSession {
    /// Prepares a data connection: EPSV/PASV and connect, or EPRT/PORT and listen.
    async fn prepare_data(&mut self) -> Result<PendingData> {
        match self.options.data_mode {
            DataMode::Passive => self.passive().await.map(PendingData::Connected),
            DataMode::Active => self.active().await.map(PendingData::Listening),
        }
    }

    async fn passive(&mut self) -> Result<TcpStream> {
        let peer = self.peer_addr()?;
        let target = if !self.epsv_refused && self.options.use_epsv {
            let reply = self.control.command("EPSV").await?;
            match reply.code() {
                229 => {
                    let text = reply.lines().join(" ");
                    let port = parse_epsv_reply(&text).ok_or(ClientError::BadReply {
                        command: "EPSV".to_owned(),
                        text,
                    })?;
                    Some(SocketAddr::new(peer.ip(), port))
                }
                500 | 501 | 502 | 522 if peer.is_ipv4() => {
                    self.epsv_refused = true;
                    None
                }
                _ => return Err(refused("EPSV", &reply)),
            }
        } else {
            None
        };
        let target = match target {
            Some(t) => t,
            None => {
                let reply = self.control.command("PASV").await?;
                if reply.code() != 227 {
                    return Err(refused("PASV", &reply));
                }
                let text = reply.lines().join(" ");
                let addr = parse_pasv_reply(&text).ok_or(ClientError::BadReply {
                    command: "PASV".to_owned(),
                    text,
                })?;
                pasv_target(self.options.pasv_address, addr, peer.ip())
            }
        };
        let tcp =
            match tokio::time::timeout(self.options.connect_timeout, TcpStream::connect(target))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(cause)) => {
                    return Err(ClientError::Connect {
                        addr: format!("{target} (data connection)"),
                        cause,
                    });
                }
                Err(_) => {
                    return Err(ClientError::Timeout {
                        what: format!("the data connection to {target}"),
                        after: self.options.connect_timeout,
                    });
                }
            };
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    async fn active(&mut self) -> Result<TcpListener> {
        let local = self.control.stream().tcp().local_addr()?;
        let listener = TcpListener::bind(SocketAddr::new(local.ip(), 0)).await?;
        let addr = listener.local_addr()?;
        if !self.eprt_refused {
            let command = format!("EPRT {}", eprt_argument(addr));
            let reply = self.control.command(&command).await?;
            match reply.code() {
                200..=299 => return Ok(listener),
                500 | 501 | 502 | 522 if addr.is_ipv4() => self.eprt_refused = true,
                _ => return Err(refused(&command, &reply)),
            }
        }
        let SocketAddr::V4(v4) = addr else {
            return Err(ClientError::Unsupported(
                "the server refused EPRT, and PORT cannot name an IPv6 address".to_owned(),
            ));
        };
        let command = format!("PORT {}", ferry_proto::host_port::format_pasv(v4));
        self.simple(&command).await?;
        Ok(listener)
    }

    /// Sends `command` (which opens a data connection) and returns the data
    /// connection once the server has accepted it: the preliminary reply and the
    /// connection (and its TLS handshake) are awaited together, since servers
    /// differ on which comes first.
    async fn open_data(&mut self, command: &str) -> Result<(NetStream, bool)> {
        let pending = self.prepare_data().await?;
        self.control.send(command).await?;
        let peer_ip = self.peer_addr()?.ip();
        let timeout = self.options.connect_timeout;
        let tls = if self.protect_data {
            self.tls.clone()
        } else {
            None
        };
        let establish = async move {
            let tcp = match pending {
                PendingData::Connected(tcp) => tcp,
                PendingData::Listening(listener) => {
                    let (tcp, from) = tokio::time::timeout(timeout, listener.accept())
                        .await
                        .map_err(|_| ClientError::Timeout {
                            what: "the server to open the data connection".to_owned(),
                            after: timeout,
                        })??;
                    // Only the server may connect: refuse data from anyone else.
                    if from.ip() != peer_ip {
                        return Err(ClientError::Unsupported(format!(
                            "a data connection came from {from}, not from the server {peer_ip}"
                        )));
                    }
                    let _ = tcp.set_nodelay(true);
                    tcp
                }
            };
            match tls {
                Some(t) => t.handshake(tcp, timeout).await,
                None => Ok(NetStream::Plain(tcp)),
            }
        };
        let mut establish = Box::pin(establish);
        // Whichever comes first; the other is then awaited.
        let (_preliminary, data) = tokio::select! {
            reply = self.control.reply() => {
                let reply = reply?;
                if !(100..200).contains(&reply.code()) {
                    // 2xx without a 1xx: nothing to send (some servers, empty
                    // listings); an error: no transfer at all.
                    if (200..300).contains(&reply.code()) {
                        let data = tokio::time::timeout(Duration::from_secs(2), &mut establish).await;
                        if let Ok(Ok(data)) = data {
                            return Ok((data, true));
                        }
                    }
                    return Err(refused(command, &reply));
                }
                (reply, establish.await?)
            }
            data = &mut establish => {
                let data = data?;
                let reply = self.control.reply().await?;
                if !(100..300).contains(&reply.code()) {
                    return Err(refused(command, &reply));
                }
                let done = (200..300).contains(&reply.code());
                return Ok((data, done));
            }
        };
        Ok((data, false))
    }

    /// RETR from `offset` (REST first when it is not 0). Read the returned stream
    /// to its end, then call [`Download::finish`].
    pub async fn download(&mut self, path: &str, offset: u64) -> Result<Download<'_>> {
        if offset > 0 {
            let command = format!("REST {offset}");
            let reply = self.control.command(&command).await?;
            if reply.code() != 350 {
                return Err(refused(&command, &reply));
            }
        }
        let command = format!("RETR {path}");
        let (data, done) = self.open_data(&command).await?;
        Ok(Download {
            session: self,
            data,
            command,
            completed: done,
            noops: 0,
            started: Instant::now(),
        })
    }

    /// STOR, APPE, or REST + STOR. Write to the returned stream, then call
    /// [`Upload::finish`].
    pub async fn upload(&mut self, path: &str, mode: UploadMode) -> Result<Upload<'_>> {
        let verb = match mode {
            UploadMode::Replace => "STOR",
            UploadMode::Append => "APPE",
            UploadMode::Resume(offset) => {
                let command = format!("REST {offset}");
                let reply = self.control.command(&command).await?;
                if reply.code() != 350 {
                    return Err(refused(&command, &reply));
                }
                "STOR"
            }
        };
        let command = format!("{verb} {path}");
        let (data, done) = self.open_data(&command).await?;
        Ok(Upload {
            session: self,
            data,
            command,
            completed: done,
            noops: 0,
        })
    }

    /// The raw bytes of a listing command (`LIST -a path`, `MLSD path`, `NLST`).
    pub async fn listing_bytes(&mut self, command: &str) -> Result<Vec<u8>> {
        let mut download = {
            let (data, done) = self.open_data(command).await?;
            Download {
                session: self,
                data,
                command: command.to_owned(),
                completed: done,
                noops: 0,
                started: Instant::now(),
            }
        };
        let mut out = Vec::new();
        download.read_to_end_timed(&mut out).await?;
        download.finish().await?;
        Ok(out)
    }

    /// The text a listing command sends (`VERB` alone for the current
    /// directory, else `VERB path`).
    async fn listing_text(&mut self, verb: &str, path: &str) -> Result<String> {
        let command = if path.is_empty() {
            verb.to_owned()
        } else {
            format!("{verb} {path}")
        };
        let bytes = self.listing_bytes(&command).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The entries of a directory: MLSD where FEAT offers it, else LIST with the
    /// parsers of [`crate::listing`]. Lines no parser understands are skipped.
    pub async fn list(&mut self, path: &str) -> Result<Vec<RemoteEntry>> {
        if self.features().has("MLST") || self.features().has("MLSD") {
            let text = self.listing_text("MLSD", path).await?;
            return Ok(text.lines().filter_map(parse_mlsx_line).collect());
        }
        let text = self.listing_text("LIST", path).await?;
        let now = time::OffsetDateTime::now_utc();
        Ok(text
            .lines()
            .filter_map(|l| parse_list_line(l, now))
            .collect())
    }

    /// LIST output as the server sent it, one line per entry (for `ls -l`).
    pub async fn list_lines(&mut self, path: &str) -> Result<Vec<String>> {
        Ok(non_empty_lines(&self.listing_text("LIST", path).await?))
    }

    /// NLST: names only.
    pub async fn names(&mut self, path: &str) -> Result<Vec<String>> {
        Ok(non_empty_lines(&self.listing_text("NLST", path).await?))
    }

    /// During a transfer: sends NOOP on the control connection when the
    /// keepalive interval has passed since the last command, and counts it
    /// in `noops` (its reply is read with the transfer's, [`Self::finish_transfer`]).
    async fn keepalive_noop(&mut self, noops: &mut usize) -> Result<()> {
        if let Some(every) = self.options.keepalive
            && self.control.last_sent.elapsed() >= every
        {
            self.control.send("NOOP").await?;
            *noops += 1;
        }
        Ok(())
    }

    /// Reads the final reply of a transfer, and the replies to any NOOPs sent
    /// during it: a 200 while NOOPs are pending answers a NOOP.
    async fn finish_transfer(
        &mut self,
        command: &str,
        mut noops: usize,
        completed: bool,
    ) -> Result<Reply> {
        let mut result = if completed {
            Some(Reply::new(226, "done"))
        } else {
            None
        };
        while result.is_none() || noops > 0 {
            let reply = self.control.reply().await?;
            if (100..200).contains(&reply.code()) {
                continue;
            }
            if result.is_none() && !(reply.code() == 200 && noops > 0) {
                result = Some(reply);
            } else {
                noops = noops.saturating_sub(1);
            }
        }
        let reply = result.unwrap_or_else(|| Reply::new(226, "done"));
        if (200..300).contains(&reply.code()) {
            Ok(reply)
        } else {
            Err(refused(command, &reply))
        }
    }
}

/// A download in progress: read it to its end, then [`Download::finish`].
#[derive(Debug)]
pub struct Download<'a> {
    session: &'a mut FtpSession,
    data: NetStream,
    command: String,
    completed: bool,
    noops: usize,
    started: Instant,
}

impl Download<'_> {
    /// Reads the rest of the data into `out`, each read bounded by the I/O timeout.
    async fn read_to_end_timed(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.read_chunk(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    /// One read of up to `buf.len()` bytes; 0 at the end. A stall longer than the
    /// I/O timeout is an error. Sends a keepalive NOOP when one is due.
    pub async fn read_chunk(&mut self, buf: &mut [u8]) -> Result<usize> {
        self.keepalive().await?;
        let timeout = self.session.options.io_timeout;
        match tokio::time::timeout(timeout, self.read(buf)).await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(ClientError::Timeout {
                what: "data from the server".to_owned(),
                after: timeout,
            }),
        }
    }

    /// Sends NOOP on the control connection when the keepalive interval has
    /// passed since the last command.
    pub async fn keepalive(&mut self) -> Result<()> {
        self.session.keepalive_noop(&mut self.noops).await
    }

    /// True when the data connection is plain TCP (not TLS).
    pub fn is_plain(&self) -> bool {
        !self.data.is_tls()
    }

    /// How long since the transfer started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Closes the data connection and reads the server's final reply (226).
    pub async fn finish(self) -> Result<Reply> {
        let Download {
            session,
            data,
            command,
            completed,
            noops,
            ..
        } = self;
        drop(data);
        session.finish_transfer(&command, noops, completed).await
    }

    /// Stops before the end: closes the data connection, sends ABOR and reads
    /// the replies, so the session can go on. Servers answer ABOR differently
    /// (426 then 226, or 225, or 226 alone when the transfer had ended), so a NOOP
    /// follows it and every reply up to the NOOP's 200 is read and dropped.
    pub async fn abort(self) -> Result<()> {
        let Download {
            session,
            data,
            completed,
            noops,
            ..
        } = self;
        drop(data);
        if !completed {
            session.control.send("ABOR").await?;
        }
        session.control.send("NOOP").await?;
        let mut pending = noops + 1;
        while pending > 0 {
            if session.control.reply().await?.code() == 200 {
                pending -= 1;
            }
        }
        Ok(())
    }
}

impl AsyncRead for Download<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let tls = self.data.is_tls();
        match Pin::new(&mut self.data).poll_read(cx, buf) {
            // A server that closes without TLS close_notify: the end of the data;
            // the final reply says whether it was all of it.
            Poll::Ready(Err(e)) if tls && e.kind() == io::ErrorKind::UnexpectedEof => {
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// An upload in progress: write everything, then [`Upload::finish`].
#[derive(Debug)]
pub struct Upload<'a> {
    session: &'a mut FtpSession,
    data: NetStream,
    command: String,
    completed: bool,
    noops: usize,
}

impl Upload<'_> {
    /// Sends NOOP on the control connection when the keepalive interval has
    /// passed since the last command.
    pub async fn keepalive(&mut self) -> Result<()> {
        self.session.keepalive_noop(&mut self.noops).await
    }

    /// True when the data connection is plain TCP (not TLS).
    pub fn is_plain(&self) -> bool {
        !self.data.is_tls()
    }

    /// Writes all of `bytes`, bounded by the I/O timeout; sends a keepalive NOOP
    /// when one is due.
    pub async fn write_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        self.keepalive().await?;
        let timeout = self.session.options.io_timeout;
        match tokio::time::timeout(timeout, self.data.write_all(bytes)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ClientError::Timeout {
                what: "the server to take data".to_owned(),
                after: timeout,
            }),
        }
    }

    /// Ends the data (TLS close_notify, then FIN) and reads the final reply.
    pub async fn finish(self) -> Result<Reply> {
        let Upload {
            session,
            mut data,
            command,
            completed,
            noops,
        } = self;
        let timeout = session.options.io_timeout;
        let close = async {
            data.shutdown().await?;
            if data.is_tls() {
                // Read what the server still sends (its close_notify, TLS 1.3
                // tickets) so that closing does not reset the connection.
                let mut sink = [0u8; 4096];
                while data.read(&mut sink).await.unwrap_or(0) > 0 {}
            }
            Ok::<(), io::Error>(())
        };
        match tokio::time::timeout(timeout, close).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(ClientError::Timeout {
                    what: "the data connection to close".to_owned(),
                    after: timeout,
                });
            }
        }
        drop(data);
        session.finish_transfer(&command, noops, completed).await
    }
}

impl AsyncWrite for Upload<'_> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.data).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.data).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.data).poll_shutdown(cx)
    }
}

/// What the kernel-side loops of [`crate::zero_copy`] need of either side.
macro_rules! plain_transfer {
    ($side:ident) => {
        impl crate::zero_copy::PlainTransfer for $side<'_> {
            async fn keepalive(&mut self) -> Result<()> {
                $side::keepalive(self).await
            }

            fn io_timeout(&self) -> Duration {
                self.session.options.io_timeout
            }

            fn plain_socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
                self.data.plain_fd()
            }
        }
    };
}

plain_transfer!(Download);
plain_transfer!(Upload);

/// The non-empty lines of a listing, without their line endings.
fn non_empty_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r').to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}
