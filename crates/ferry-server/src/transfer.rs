//! Moving bytes over a data connection: RETR, STOR/APPE/STOU and listings
//! (RFC 959 §3.4 stream mode, §3.1.1 TYPE A and I).
//!
//! Every write to and read from the network is bounded by the data timeout: a
//! transfer that makes no progress for that long is ended (426). One buffer is
//! allocated per transfer and reused for every chunk.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferry_proto::ascii;
use ferry_rate::RateLimit;
use ferry_storage::{FileReader, StorageError, Upload};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use rustix::net::sockopt::Timeout;

mod blocking;
mod budget;
mod upload_loop;
pub use blocking::{BlockingSlot, BlockingSlots};
use blocking::{BlockingSocket, blocking_failure, on_own_thread};
pub use budget::{CountedUpload, QuotaLease, UploadBudget, UsageCount};
use upload_loop::{LoopEnd, UploadLoop};

use crate::data::DataConnection;
use crate::error::TransferError;

/// Bytes moved per read.
const CHUNK: usize = 256 * 1024;

/// Counts the bytes of a transfer in flight, for STAT and the final reply.
#[derive(Debug, Default)]
pub struct TransferMeter {
    bytes: AtomicU64,
}

impl TransferMeter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn add(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

async fn with_timeout<T>(
    timeout: Duration,
    what: &str,
    fut: impl Future<Output = std::io::Result<T>>,
) -> Result<T, TransferError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(TransferError::Connection(format!("{what}: {e}"))),
        Err(_) => Err(TransferError::Connection(format!(
            "no progress for {} seconds",
            timeout.as_secs()
        ))),
    }
}

/// Sends a file (RETR). With `ascii`, LF line endings go out as CRLF.
pub async fn send_file<W: AsyncWrite + Unpin>(
    mut reader: FileReader,
    data: &mut W,
    ascii: bool,
    timeout: Duration,
    meter: &TransferMeter,
    rate: Option<&RateLimit>,
) -> Result<u64, TransferError> {
    let mut buf = vec![0u8; CHUNK];
    let mut converted = Vec::new();
    let mut to_wire = ascii::ToWire::default();
    let mut total = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|e| TransferError::Storage(StorageError::from(e)))?;
        if n == 0 {
            break;
        }
        let out: &[u8] = if ascii {
            converted.clear();
            to_wire.convert(&buf[..n], &mut converted);
            &converted
        } else {
            &buf[..n]
        };
        if let Some(rate) = rate {
            rate.wait_for(out.len()).await;
        }
        with_timeout(timeout, "sending", data.write_all(out)).await?;
        meter.add(out.len());
        total += out.len() as u64;
    }
    with_timeout(timeout, "closing", data.shutdown()).await?;
    Ok(total)
}

/// How many bytes one `sendfile` call may move.
const SENDFILE_CHUNK: usize = 1 << 20;

/// Sends a host file from `offset` to `end` (its size when the transfer was
/// announced) with `sendfile`: the kernel moves the bytes from the page cache
/// to the socket without copying them through ferry (plain FTP, TYPE I, local
/// disk only). A file that shrinks meanwhile ends the transfer early; bytes
/// appended meanwhile are not sent, as the 150 reply announced the size.
pub async fn send_file_zero_copy(
    file: &std::fs::File,
    mut offset: u64,
    end: u64,
    data: &mut DataConnection,
    timeout: Duration,
    meter: &TransferMeter,
    rate: Option<&RateLimit>,
) -> Result<u64, TransferError> {
    let fail = |e: std::io::Error| TransferError::Connection(format!("sending: {e}"));
    let mut total = 0u64;
    // A file that fits in one call leaves with its end: corked, the data waits
    // for the `shutdown` below and the FIN rides on its last segment (one
    // segment fewer per small file; docs/benchmarks.md, workload d).
    if end.saturating_sub(offset) <= SENDFILE_CHUNK as u64
        && rate.is_none()
        && let Some(socket) = data.unregistered()
    {
        let _ = rustix::net::sockopt::set_tcp_cork(socket, true);
    }
    // Stopping at the known end saves the last call (which would return 0)
    // and the push of pending frames the kernel does at a file's end.
    while offset < end {
        let left = usize::try_from(end - offset).unwrap_or(usize::MAX);
        let chunk = match rate {
            Some(_) => left.min(64 * 1024),
            None => left.min(SENDFILE_CHUNK),
        };
        if let Some(rate) = rate {
            rate.wait_for(chunk).await;
        }
        let sent = loop {
            // An unregistered connection is tried at once: a small file is
            // sent in this one call, and only a full socket buffer makes the
            // connection register with the runtime to wait.
            if let Some(socket) = data.unregistered() {
                match rustix::fs::sendfile(socket, file, Some(&mut offset), chunk) {
                    Ok(n) => break n,
                    Err(rustix::io::Errno::AGAIN) => {}
                    Err(e) => return Err(fail(e.into())),
                }
            }
            let tcp = data.registered_mut().map_err(fail)?;
            with_timeout(timeout, "sending", tcp.writable()).await?;
            match tcp.try_io(tokio::io::Interest::WRITABLE, || {
                rustix::fs::sendfile(&*tcp, file, Some(&mut offset), chunk)
                    .map_err(std::io::Error::from)
            }) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(fail(e)),
            }
        };
        if sent == 0 {
            break;
        }
        meter.add(sent);
        total += sent as u64;
    }
    data.shutdown_write()
        .map_err(|e| TransferError::Connection(format!("closing: {e}")))?;
    Ok(total)
}

/// Plain downloads with at least this much left to send run as a blocking
/// loop on a thread of their own ([`send_file_zero_copy_blocking`]); smaller
/// ones fit (nearly) into the socket buffer and are sent from the async
/// workers at once, with no thread to start.
pub const OWN_THREAD_FROM: u64 = 4 << 20;

/// [`send_file_zero_copy`] as a blocking loop on a thread of its own (plain
/// FTP, TYPE I, local disk, no rate limit): one blocking `sendfile` of up to
/// 1 MiB per call, as vsftpd sends from its session process. The data timeout
/// is the socket's send timeout; if the transfer is dropped (ABOR), the socket
/// is shut down, which ends the loop. The file comes back with the count, to
/// be closed after the reply.
pub async fn send_file_zero_copy_blocking(
    file: std::fs::File,
    offset: u64,
    end: u64,
    data: &mut DataConnection,
    timeout: Duration,
    meter: Arc<TransferMeter>,
    slot: BlockingSlot,
) -> Result<(u64, std::fs::File), TransferError> {
    let socket = data
        .socket()
        .map_err(|e| TransferError::Connection(format!("sending: {e}")))?;
    let (socket, stopper) = BlockingSocket::hand_over(socket, Timeout::Send, timeout, "sending")?;
    let (sent, file) = on_own_thread("sending", move || {
        let _slot = slot;
        let sent = sendfile_into(&socket, &file, offset, end, timeout, &meter);
        (sent, file)
    })
    .await?;
    let sent = sent?;
    stopper.disarm();
    data.shutdown_write()
        .map_err(|e| TransferError::Connection(format!("closing: {e}")))?;
    Ok((sent, file))
}

/// The blocking loop of [`send_file_zero_copy_blocking`]. A file that shrinks
/// meanwhile ends the transfer early, as in [`send_file_zero_copy`].
fn sendfile_into(
    socket: &BlockingSocket,
    file: &std::fs::File,
    mut offset: u64,
    end: u64,
    timeout: Duration,
    meter: &TransferMeter,
) -> Result<u64, TransferError> {
    let mut total = 0u64;
    while offset < end {
        let chunk = usize::try_from(end - offset)
            .unwrap_or(usize::MAX)
            .min(SENDFILE_CHUNK);
        match rustix::fs::sendfile(&socket.0, file, Some(&mut offset), chunk) {
            Ok(0) => break,
            Ok(n) => {
                meter.add(n);
                total += n as u64;
            }
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(blocking_failure(e.into(), timeout, "sending")),
        }
    }
    Ok(total)
}

/// Sends a host file from `offset` to `end` over TLS (PROT P, TYPE I, no rate
/// limit) from a blocking loop in the blocking pool: the file is read into a
/// 1 MiB buffer, encrypted by rustls and written to the socket, with no trip
/// back to the async workers per piece (and no second copy into tokio's file
/// buffer). The data timeout is the socket's send timeout; if the transfer is
/// dropped (ABOR), the socket is shut down, which ends the loop. The TLS
/// session ends with close_notify, as [`send_file`]'s does.
pub async fn send_file_tls_blocking(
    tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    file: std::fs::File,
    offset: u64,
    end: u64,
    timeout: Duration,
    meter: Arc<TransferMeter>,
    slot: BlockingSlot,
) -> Result<u64, TransferError> {
    let (mut tcp, mut conn) = tls.into_inner();
    let (socket, stopper) =
        BlockingSocket::hand_over(tcp.as_fd(), Timeout::Send, timeout, "sending")?;
    let job = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        encrypt_into(&socket, &mut conn, &file, offset, end, timeout, &meter)
    });
    let sent = job
        .await
        .map_err(|e| TransferError::Connection(format!("sending: {e}")))??;
    stopper.disarm();
    with_timeout(timeout, "closing", tcp.shutdown()).await?;
    Ok(sent)
}

/// The blocking loop of [`send_file_tls_blocking`].
fn encrypt_into(
    socket: &BlockingSocket,
    conn: &mut rustls::ServerConnection,
    file: &std::fs::File,
    mut offset: u64,
    end: u64,
    timeout: Duration,
    meter: &TransferMeter,
) -> Result<u64, TransferError> {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let fail = |e: std::io::Error| blocking_failure(e, timeout, "sending");
    let mut sock = std::fs::File::from(socket.0.try_clone().map_err(fail)?);
    let mut buf = vec![0u8; TLS_CHUNK];
    let mut total = 0u64;
    while offset < end {
        let want = usize::try_from(end - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = file
            .read_at(&mut buf[..want], offset)
            .map_err(|e| TransferError::Storage(StorageError::from(e)))?;
        if n == 0 {
            break;
        }
        rustls::Stream::new(conn, &mut sock)
            .write_all(&buf[..n])
            .map_err(fail)?;
        offset += n as u64;
        total += n as u64;
        meter.add(n);
    }
    conn.send_close_notify();
    while conn.wants_write() {
        conn.write_tls(&mut sock).map_err(fail)?;
    }
    Ok(total)
}

/// Receives a file (STOR, APPE, STOU). With `ascii`, CRLF becomes LF. On any failure
/// the upload is aborted, which keeps a replaced file intact. With a budget, the
/// byte that would cross it is not stored: the upload is discarded (in-place
/// writes keep what fitted) and the transfer ends with 552.
pub async fn receive_file<R: AsyncRead + AsyncWrite + Unpin>(
    data: &mut R,
    mut upload: Box<dyn Upload>,
    ascii: bool,
    timeout: Duration,
    meter: &TransferMeter,
    rate: Option<&RateLimit>,
    budget: Option<&UploadBudget>,
) -> Result<u64, TransferError> {
    let mut stored = 0u64;
    let mut buf = vec![0u8; CHUNK];
    let mut converted = Vec::new();
    let mut from_wire = ascii::FromWire::default();
    let result: Result<(), TransferError> = async {
        loop {
            let n = with_timeout(timeout, "receiving", data.read(&mut buf)).await?;
            if n == 0 {
                if ascii {
                    converted.clear();
                    from_wire.finish(&mut converted);
                    if let Some(b) = budget
                        && b.room(stored, converted.len() as u64).await? < converted.len() as u64
                    {
                        return Err(TransferError::OverLimit(b.setting(stored).to_owned()));
                    }
                    upload
                        .write_all(&converted)
                        .await
                        .map_err(|e| TransferError::Storage(e.into()))?;
                }
                // Close our side too: under TLS this is the close_notify that
                // clients shutting TLS down properly wait for.
                let _ = tokio::time::timeout(timeout, data.shutdown()).await;
                return Ok(());
            }
            if let Some(rate) = rate {
                rate.wait_for(n).await;
            }
            meter.add(n);
            let chunk: &[u8] = if ascii {
                converted.clear();
                from_wire.convert(&buf[..n], &mut converted);
                &converted
            } else {
                &buf[..n]
            };
            if let Some(b) = budget {
                let fits = usize::try_from(b.room(stored, chunk.len() as u64).await?)
                    .unwrap_or(usize::MAX)
                    .min(chunk.len());
                if fits < chunk.len() {
                    upload
                        .write_all(&chunk[..fits])
                        .await
                        .map_err(|e| TransferError::Storage(e.into()))?;
                    return Err(TransferError::OverLimit(
                        b.setting(stored + fits as u64).to_owned(),
                    ));
                }
            }
            upload
                .write_all(chunk)
                .await
                .map_err(|e| TransferError::Storage(e.into()))?;
            stored += chunk.len() as u64;
        }
    }
    .await;
    settle(upload, result).await
}

/// The most an upload the server stopped goes on reading (and dropping) of
/// what the client still sends, and for how long at most.
const DRAIN_BYTES: usize = 8 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// After the server stopped storing an upload (a limit crossed, 552; the
/// storage failed or is full, 451/552): reads and drops what the client
/// still sends, until it closes, or [`DRAIN_BYTES`] or [`DRAIN_TIME`] (or the
/// data timeout, if shorter) have gone by. Closing a socket with unread data
/// resets the connection: a client still writing (ftplib's `storbinary`,
/// curl's upload) would fail with "connection reset" or "broken pipe" and
/// never read the 552 that says why.
pub async fn drain_after_stop<R: AsyncRead + Unpin>(data: &mut R, timeout: Duration) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = DRAIN_BYTES;
    let drain = async {
        while left > 0 {
            match data.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(timeout.min(DRAIN_TIME), drain).await;
}

/// Ends an upload once its bytes are in: commits it, discards it when it went
/// over a limit, aborts it after any other failure.
async fn settle(
    upload: Box<dyn Upload>,
    result: Result<(), TransferError>,
) -> Result<u64, TransferError> {
    match result {
        Ok(()) => upload.commit().await.map_err(TransferError::Storage),
        Err(e @ TransferError::OverLimit(_)) => {
            upload.discard().await;
            Err(e)
        }
        Err(e) => {
            upload.abort().await;
            Err(e)
        }
    }
}

/// The plaintext read from the file per piece of a blocking TLS download.
const TLS_CHUNK: usize = 1 << 20;

/// Where a blocking upload stores its bytes.
#[derive(Debug)]
pub struct HostTarget {
    /// The upload's host file, positioned where the upload starts.
    pub file: std::fs::File,
    /// Splice into it where that can be done (the server's `sendfile`
    /// setting).
    pub zero_copy: bool,
}

/// Receives a plain binary upload (STOR, APPE, STOU over TCP, TYPE I, no rate
/// limit) into a host file with a blocking loop in the blocking pool: one task
/// per upload, moving the bytes from the socket into the file with
/// `splice(2)` through a 1 MiB pipe, or reading and writing 1 MiB pieces
/// where that cannot be done ([`upload_loop`]). vsftpd, too, uploads in its
/// process with a blocking loop. The copying path ([`receive_file`]) instead
/// takes a trip to the blocking pool (and a copy into tokio's buffer) for
/// every piece; this way the async workers still never wait on the file
/// system. The data timeout is the socket's receive timeout; if the transfer
/// is dropped (ABOR), the socket is shut down, which ends the loop. The rest
/// is as [`receive_file`]: a budget, commit, discard and abort.
pub async fn receive_file_blocking(
    data: &mut DataConnection,
    upload: Box<dyn Upload>,
    target: HostTarget,
    timeout: Duration,
    meter: Arc<TransferMeter>,
    budget: Option<&UploadBudget>,
    slot: BlockingSlot,
) -> Result<u64, TransferError> {
    let HostTarget { file, zero_copy } = target;
    let socket = data
        .socket()
        .map_err(|e| TransferError::Connection(format!("receiving: {e}")))?;
    let (socket, stopper) = BlockingSocket::hand_over(socket, Timeout::Recv, timeout, "receiving")?;
    let budget = budget.cloned();
    // The upload goes with the loop and comes back with its result; if this
    // transfer is dropped meanwhile, it is dropped there when the loop ends,
    // which settles it as failed, counting the bytes it got.
    let job = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        let mut upload = upload;
        let moved = UploadLoop {
            socket: socket.0.as_fd(),
            file: &file,
            timeout,
            meter: &meter,
            budget: budget.as_ref(),
            wrote: &mut |n| upload.wrote(n),
            zero_copy,
        }
        .run();
        (upload, moved)
    });
    let (upload, moved) = job
        .await
        .map_err(|e| TransferError::Connection(format!("receiving: {e}")))?;
    stopper.disarm();
    let result = match moved {
        Ok(LoopEnd::OverLimit(setting)) => Err(TransferError::OverLimit(setting.to_owned())),
        Ok(LoopEnd::EndOfData) => {
            let _ = data.shutdown_write();
            Ok(())
        }
        Err(e) => Err(e),
    };
    settle(upload, result).await
}

/// Writes listing text to a data connection in large pieces.
#[derive(Debug)]
pub struct ListingWriter<'a, W> {
    data: &'a mut W,
    buf: Vec<u8>,
    timeout: Duration,
    total: u64,
}

impl<'a, W: AsyncWrite + Unpin> ListingWriter<'a, W> {
    pub fn new(data: &'a mut W, timeout: Duration) -> Self {
        ListingWriter {
            data,
            buf: Vec::with_capacity(64 * 1024),
            timeout,
            total: 0,
        }
    }

    /// The buffer to append lines to.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Sends the buffer if it is large enough.
    pub async fn maybe_flush(&mut self, meter: &TransferMeter) -> Result<(), TransferError> {
        if self.buf.len() >= 60 * 1024 {
            self.flush(meter).await?;
        }
        Ok(())
    }

    pub async fn flush(&mut self, meter: &TransferMeter) -> Result<(), TransferError> {
        if !self.buf.is_empty() {
            with_timeout(
                self.timeout,
                "sending listing",
                self.data.write_all(&self.buf),
            )
            .await?;
            meter.add(self.buf.len());
            self.total += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Sends what is left and closes the connection.
    pub async fn finish(mut self, meter: &TransferMeter) -> Result<u64, TransferError> {
        self.flush(meter).await?;
        with_timeout(self.timeout, "closing", self.data.shutdown()).await?;
        Ok(self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A data connection over loopback, the server's side fresh (not
    /// registered), and the client's side.
    fn loopback_data() -> (DataConnection, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        server.set_nonblocking(true).expect("non-blocking");
        (DataConnection::fresh(server), client)
    }

    /// A host file of `len` bytes, which differ from one to the next.
    fn host_file(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        use std::io::Write;
        let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::NamedTempFile::new().expect("tmp");
        file.write_all(&body).expect("write");
        (file, body)
    }

    /// The client reading everything until the end, on a thread.
    fn client_reads_to_the_end(
        mut client: std::net::TcpStream,
    ) -> std::thread::JoinHandle<std::io::Result<Vec<u8>>> {
        std::thread::spawn(move || {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut client, &mut got).map(|_| got)
        })
    }

    /// [`send_file_zero_copy_blocking`] of `file` from `offset` to `end`,
    /// with a place from `slots`.
    async fn blocking_download(
        file: &tempfile::NamedTempFile,
        (offset, end): (u64, u64),
        data: &mut DataConnection,
        timeout: Duration,
        meter: Arc<TransferMeter>,
        slots: &Arc<BlockingSlots>,
    ) -> Result<(u64, std::fs::File), TransferError> {
        let slot = slots.take().expect("a place");
        let file = file.reopen().expect("open");
        send_file_zero_copy_blocking(file, offset, end, data, timeout, meter, slot).await
    }

    /// Waits until every place is given back (the loop's thread has ended).
    async fn all_places_given_back(slots: &BlockingSlots) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while slots.in_use() != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "a place was never given back"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The loop on its own thread sends the file from the offset to its end,
    /// counts it, hands the file back, closes the sending side, and gives its
    /// place back.
    #[tokio::test]
    async fn a_long_download_on_its_own_thread_sends_the_range() {
        let (file, body) = host_file(6 << 20);
        let (mut data, client) = loopback_data();
        let reader = client_reads_to_the_end(client);
        let slots = BlockingSlots::new(1);
        let meter = TransferMeter::new();
        let range = (1000, body.len() as u64);
        let timeout = Duration::from_secs(30);
        let (sent, _file) =
            blocking_download(&file, range, &mut data, timeout, meter.clone(), &slots)
                .await
                .expect("sent");
        assert_eq!(sent, body.len() as u64 - 1000);
        assert_eq!(meter.bytes(), sent);
        let got = reader.join().expect("reader").expect("read to the end");
        assert!(got == body[1000..], "the client got other bytes");
        all_places_given_back(&slots).await;
    }

    /// A file shorter than announced (it shrank) ends the transfer at its end.
    #[tokio::test]
    async fn a_file_that_shrank_ends_the_blocking_download_early() {
        let (file, body) = host_file(5 << 20);
        let (mut data, client) = loopback_data();
        let reader = client_reads_to_the_end(client);
        let slots = BlockingSlots::new(1);
        let timeout = Duration::from_secs(30);
        let transfer = blocking_download(
            &file,
            (0, 8 << 20),
            &mut data,
            timeout,
            TransferMeter::new(),
            &slots,
        );
        // A loop that missed the file's end would go on for ever: fail instead.
        let (sent, _file) = tokio::time::timeout(timeout, transfer)
            .await
            .expect("the loop stopped at the file's end")
            .expect("sent");
        assert_eq!(sent, body.len() as u64);
        assert!(reader.join().expect("reader").expect("read") == body);
    }

    /// A client that stops reading: "no progress" once the data timeout has
    /// gone by with the socket full, and the place is given back.
    #[tokio::test]
    async fn a_stalled_blocking_download_ends_with_no_progress() {
        let (file, _) = host_file(32 << 20);
        let (mut data, _client) = loopback_data();
        let slots = BlockingSlots::new(1);
        let end = blocking_download(
            &file,
            (0, 32 << 20),
            &mut data,
            Duration::from_millis(300),
            TransferMeter::new(),
            &slots,
        )
        .await;
        match end {
            Err(TransferError::Connection(m)) => assert!(m.contains("no progress"), "{m}"),
            other => panic!("expected no progress, got {other:?}"),
        }
        all_places_given_back(&slots).await;
    }

    /// A transfer dropped mid-way (ABOR) shuts the socket down: the loop's
    /// thread ends, the client sees the connection end, and the place is
    /// given back, though the client never read again.
    #[tokio::test]
    async fn an_aborted_blocking_download_stops_its_thread() {
        let (file, _) = host_file(32 << 20);
        let (mut data, mut client) = loopback_data();
        let slots = BlockingSlots::new(1);
        let meter = TransferMeter::new();
        let transfer = blocking_download(
            &file,
            (0, 32 << 20),
            &mut data,
            Duration::from_secs(60),
            meter.clone(),
            &slots,
        );
        // Dropped once the socket is full and the loop waits.
        let stopped = tokio::time::timeout(Duration::from_millis(500), transfer).await;
        assert!(stopped.is_err(), "the transfer ended without a reader");
        all_places_given_back(&slots).await;
        assert!(meter.bytes() < 32 << 20);
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        // What was queued comes first, then the end (not the read timeout).
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match std::io::Read::read(&mut client, &mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
                    break;
                }
            }
        }
    }
}
