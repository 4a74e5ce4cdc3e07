//! Moving bytes over a data connection: RETR, STOR/APPE/STOU and listings
//! (RFC 959 §3.4 stream mode, §3.1.1 TYPE A and I).
//!
//! Every write to and read from the network is bounded by the data timeout: a
//! transfer that makes no progress for that long is ended (426). One buffer is
//! allocated per transfer and reused for every chunk.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ferry_proto::ascii;
use ferry_rate::RateLimit;
use ferry_storage::{FileReader, StorageError, Upload};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use rustix::net::sockopt::Timeout;

mod upload_loop;
use upload_loop::{LoopEnd, UploadLoop};

use crate::data::DataConnection;
use crate::error::TransferError;

/// How many bytes an upload may store before a limit stops it.
#[derive(Debug, Clone)]
pub struct UploadBudget {
    pub bytes: u64,
    /// The setting that sets the budget (`quota_bytes`, `max_file_size`).
    pub setting: &'static str,
}

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

/// Places for transfers running as blocking loops (in tokio's blocking pool,
/// one thread each for the transfer's length, as vsftpd holds a process).
///
/// At most `server.max_blocking_transfers` transfers (256 by default) run
/// that way at once, and the ones beyond take the async path: slower per
/// byte, but without a thread each. `ferry serve` gives the pool 256 threads
/// more than that for file-system calls, so that many long transfers never
/// make the others (or a directory listing) wait for a thread.
#[derive(Debug)]
pub struct BlockingSlots {
    in_use: AtomicUsize,
    limit: usize,
}

impl BlockingSlots {
    /// Places for `limit` blocking loops at once.
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(BlockingSlots {
            in_use: AtomicUsize::new(0),
            limit,
        })
    }

    /// A place, if one is free; it is given back when dropped.
    pub fn take(self: &Arc<Self>) -> Option<BlockingSlot> {
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| BlockingSlot(self.clone()))
    }

    /// A place together with what its loop needs (`need`, asked only when a
    /// place is free); without it, the place is given back at once, so that
    /// a transfer taking the async path holds none.
    pub fn take_with<T>(
        self: &Arc<Self>,
        need: impl FnOnce() -> Option<T>,
    ) -> Option<(T, BlockingSlot)> {
        let slot = self.take()?;
        need().map(|t| (t, slot))
    }
}

/// One place for a blocking transfer loop, held until dropped.
#[derive(Debug)]
pub struct BlockingSlot(Arc<BlockingSlots>);

impl Drop for BlockingSlot {
    fn drop(&mut self) {
        self.0.in_use.fetch_sub(1, Ordering::AcqRel);
    }
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
    let fail = |e: std::io::Error| {
        if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ) {
            TransferError::Connection(format!("no progress for {} seconds", timeout.as_secs()))
        } else {
            TransferError::Connection(format!("sending: {e}"))
        }
    };
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
                        && stored + converted.len() as u64 > b.bytes
                    {
                        return Err(TransferError::OverLimit(b.setting.to_owned()));
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
            if let Some(b) = budget
                && stored + chunk.len() as u64 > b.bytes
            {
                let fits = usize::try_from(b.bytes - stored).unwrap_or(0);
                upload
                    .write_all(&chunk[..fits])
                    .await
                    .map_err(|e| TransferError::Storage(e.into()))?;
                return Err(TransferError::OverLimit(b.setting.to_owned()));
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
    let limit = budget.map(|b| b.bytes);
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
            limit,
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
    let result = match (moved, budget) {
        (Ok(LoopEnd::OverLimit), Some(b)) => Err(TransferError::OverLimit(b.setting.to_owned())),
        (Ok(_), _) => {
            let _ = data.shutdown_write();
            Ok(())
        }
        (Err(e), _) => Err(e),
    };
    settle(upload, result).await
}

/// A data connection as a blocking loop uses it: a second descriptor, in
/// blocking mode, with the data timeout as its send or receive timeout. Dropped
/// (when the loop ends), it puts the socket back to non-blocking for the async
/// side, which still owns it.
struct BlockingSocket(std::os::fd::OwnedFd);

impl BlockingSocket {
    /// Hands `tcp` over to a blocking loop. The [`ShutdownOnDrop`] stays with
    /// the async side: dropped there first (ABOR), it ends the loop.
    fn hand_over(
        tcp: BorrowedFd<'_>,
        direction: Timeout,
        timeout: Duration,
        what: &str,
    ) -> Result<(BlockingSocket, ShutdownOnDrop), TransferError> {
        let fail = |e: std::io::Error| TransferError::Connection(format!("{what}: {e}"));
        let second = || tcp.try_clone_to_owned().map_err(fail);
        let socket = BlockingSocket(second()?);
        let stopper = ShutdownOnDrop {
            socket: Some(second()?),
        };
        rustix::io::ioctl_fionbio(&socket.0, false).map_err(|e| fail(e.into()))?;
        rustix::net::sockopt::set_socket_timeout(
            &socket.0,
            direction,
            Some(timeout.max(Duration::from_millis(1))),
        )
        .map_err(|e| fail(e.into()))?;
        Ok((socket, stopper))
    }
}

impl Drop for BlockingSocket {
    fn drop(&mut self) {
        let _ = rustix::io::ioctl_fionbio(&self.0, true);
    }
}

/// Shuts a data connection down when dropped before [`ShutdownOnDrop::disarm`]:
/// a transfer dropped for ABOR stops the blocking loop still reading it.
struct ShutdownOnDrop {
    socket: Option<std::os::fd::OwnedFd>,
}

impl ShutdownOnDrop {
    fn disarm(mut self) {
        self.socket = None;
    }
}

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        if let Some(socket) = &self.socket {
            let _ = rustix::net::shutdown(socket, rustix::net::Shutdown::Both);
        }
    }
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

    /// No more than the limit at once; a place given back can be taken again.
    #[test]
    fn blocking_slots_are_bounded_and_given_back() {
        let slots = BlockingSlots::new(2);
        let a = slots.take().expect("first");
        let b = slots.take().expect("second");
        assert!(slots.take().is_none(), "a third place past the limit");
        drop(a);
        let c = slots.take().expect("given back");
        assert!(slots.take().is_none());
        drop((b, c));
        assert_eq!(slots.in_use.load(Ordering::Acquire), 0);
    }

    /// A place whose loop cannot run (no host file) is not kept.
    #[test]
    fn a_place_without_its_need_is_given_back() {
        let slots = BlockingSlots::new(1);
        assert!(slots.take_with(|| None::<()>).is_none());
        assert_eq!(slots.in_use.load(Ordering::Acquire), 0);
        let (n, held) = slots.take_with(|| Some(7)).expect("a free place");
        assert_eq!(n, 7);
        let mut asked = false;
        assert!(
            slots
                .take_with(|| {
                    asked = true;
                    Some(8)
                })
                .is_none()
        );
        assert!(!asked, "need asked with no place free");
        drop(held);
        assert_eq!(slots.in_use.load(Ordering::Acquire), 0);
    }
}
