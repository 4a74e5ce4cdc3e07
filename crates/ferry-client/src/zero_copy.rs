//! Plain binary transfers (RFC 959 §3.4 stream mode, TYPE I, no TLS, no
//! rate limit) between a local file and the data connection, moved by the
//! kernel on a thread of the blocking pool.
//!
//! The general path ([`crate::files`]) moves each piece through a buffer on
//! the async runtime and through tokio's file, which copies it again into a
//! buffer of its own for a blocking thread: three copies per byte and two
//! thread hops per piece. Here:
//!
//! - **downloads** splice the data connection into a pipe and the pipe into
//!   the file at its offset (`splice(2)`): the kernel hands the socket's
//!   pages to the pipe, so each byte is copied once, into the file. Where the
//!   pipe cannot be had (a low `fs.pipe-max-size`) or the file takes no
//!   splice, the loop reads into one 1 MiB buffer and writes it at its offset
//!   instead (two copies);
//! - **uploads** `sendfile(2)` from the file to the data connection: no copy
//!   through user space. A file that takes no sendfile is read into one
//!   1 MiB buffer and written instead.
//!
//! Measured against curl and lftp in docs/benchmarks.md ("The client's
//! downloads").
//!
//! The loop runs on a second, blocking descriptor of the data connection
//! whose receive or send timeout is the session's I/O timeout. Meanwhile the
//! async side reports progress and sends the keepalive NOOPs on the control
//! connection every [`TICK`]; if it stops early (an error on the control
//! connection, or the task is dropped), the data connection is shut down,
//! which ends the loop.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::io::Errno;
use rustix::net::sockopt::Timeout;
use rustix::pipe::SpliceFlags;

use crate::error::{ClientError, Result};
use crate::files::Progress;
use crate::transfer::{Download, Upload};

/// How often the async side reports progress and checks the keepalive.
const TICK: Duration = Duration::from_millis(100);

/// The pipe the splice loop needs, the most one sendfile call moves, and
/// the copying loops' buffer.
const PIECE: usize = 1 << 20;

/// Receives the rest of `download` into `file` (named `path`) from `offset`
/// on, at most `limit` bytes if given (a range of a segmented download).
/// Only for a plain TCP data connection ([`Download::is_plain`]); over TLS
/// the caller takes the general path.
pub(crate) async fn receive_into_file(
    download: &mut Download<'_>,
    path: &Path,
    file: std::fs::File,
    offset: u64,
    limit: Option<u64>,
    progress: &dyn Progress,
) -> Moved {
    let on_thread =
        move |socket: &BlockingSocket, local: Local<'_>, counter: &AtomicU64, timeout| {
            pump(socket, local, offset, limit, counter, timeout, true)
        };
    run_with_file(download, Timeout::Recv, path, file, progress, on_thread).await
}

/// Sends `file` (named `path`) from `offset` to its end over `upload`. Only
/// for a plain TCP data connection ([`Upload::is_plain`]).
pub(crate) async fn send_from_file(
    upload: &mut Upload<'_>,
    path: &Path,
    file: std::fs::File,
    offset: u64,
    progress: &dyn Progress,
) -> Moved {
    let on_thread =
        move |socket: &BlockingSocket, local: Local<'_>, counter: &AtomicU64, timeout| {
            push(socket, local, offset, counter, timeout, true)
        };
    run_with_file(upload, Timeout::Send, path, file, progress, on_thread).await
}

/// Hands `transfer`'s data connection over to `on_thread` (a blocking loop
/// between it and `file`, whose socket timeout in `direction` is the
/// session's I/O timeout) and drives that loop to its end.
async fn run_with_file(
    transfer: &mut impl PlainTransfer,
    direction: Timeout,
    path: &Path,
    file: std::fs::File,
    progress: &dyn Progress,
    on_thread: impl FnOnce(&BlockingSocket, Local<'_>, &AtomicU64, Duration) -> Result<u64>
    + Send
    + 'static,
) -> Moved {
    let timeout = transfer.io_timeout();
    let (socket, stopper) = match hand_over(transfer.plain_socket(), direction, timeout) {
        Ok(handed) => handed,
        Err(e) => return Moved::nothing(e),
    };
    let path = path.to_owned();
    let job = move |counter: &AtomicU64| {
        let local = Local {
            file: &file,
            path: &path,
        };
        let result = on_thread(&socket, local, counter, timeout);
        drop(socket);
        (result, file)
    };
    drive(transfer, job, stopper, progress).await
}

/// What a loop moved, and how it ended.
pub(crate) struct Moved {
    /// The bytes stored (downloads) or sent (uploads), counted also when the
    /// loop failed: a range of a segmented download is retried from there.
    pub bytes: u64,
    /// The file back, or why the transfer failed.
    pub end: Result<std::fs::File>,
}

impl Moved {
    fn nothing(e: ClientError) -> Self {
        Moved {
            bytes: 0,
            end: Err(e),
        }
    }
}

/// A transfer whose data connection a blocking loop can take over: what
/// the loop needs of [`Download`] and [`Upload`] alike (implemented beside
/// them in `transfer.rs`).
pub(crate) trait PlainTransfer {
    /// Sends NOOP on the control connection when it is due.
    async fn keepalive(&mut self) -> Result<()>;
    /// How long the data connection may stall.
    fn io_timeout(&self) -> Duration;
    /// The data connection, if it is plain TCP.
    fn plain_socket(&self) -> Option<BorrowedFd<'_>>;
}

/// The data connection handed over to a blocking loop, and what shuts it
/// down if the async side stops first.
fn hand_over(
    socket: Option<BorrowedFd<'_>>,
    direction: Timeout,
    timeout: Duration,
) -> Result<(BlockingSocket, ShutdownOnDrop)> {
    let socket = socket.ok_or_else(|| {
        ClientError::Unsupported("a TLS data connection cannot be moved by the kernel".to_owned())
    })?;
    let stopper = ShutdownOnDrop(Some(socket.try_clone_to_owned()?));
    Ok((BlockingSocket::new(socket, direction, timeout)?, stopper))
}

/// Runs `job` in the blocking pool; until it ends, reports the bytes it has
/// counted to `progress` and keeps the control connection alive every
/// [`TICK`].
async fn drive(
    transfer: &mut impl PlainTransfer,
    job: impl FnOnce(&AtomicU64) -> (Result<u64>, std::fs::File) + Send + 'static,
    stopper: ShutdownOnDrop,
    progress: &dyn Progress,
) -> Moved {
    let counted = Arc::new(AtomicU64::new(0));
    let counter = counted.clone();
    let mut job = tokio::task::spawn_blocking(move || job(&counter));
    let mut reported = 0u64;
    let mut report = |progress: &dyn Progress| {
        let now = counted.load(Ordering::Relaxed);
        progress.advance(now - reported);
        reported = now;
        now
    };
    let end = loop {
        tokio::select! {
            done = &mut job => {
                stopper.disarm();
                break match done {
                    Ok((result, file)) => result.map(|_| file),
                    Err(e) => Err(ClientError::Io(io::Error::other(e))),
                };
            }
            () = tokio::time::sleep(TICK) => {
                report(progress);
                if let Err(e) = transfer.keepalive().await {
                    // The stopper is dropped here: the loop ends too.
                    break Err(e);
                }
            }
        }
    };
    Moved {
        bytes: report(progress),
        end,
    }
}

/// The blocking loop: with `zero_copy`, splice where a pipe can be had and
/// the file takes it; copy otherwise. Counts every byte stored in
/// `received`.
fn pump(
    socket: &BlockingSocket,
    file: Local<'_>,
    start: u64,
    limit: Option<u64>,
    received: &AtomicU64,
    timeout: Duration,
    zero_copy: bool,
) -> Result<u64> {
    let socket = socket.0.as_fd();
    let mut left = limit.unwrap_or(u64::MAX);
    let mut offset = start;
    let mut spliced = zero_copy.then(pipe).flatten();
    let mut buf = Vec::new();
    loop {
        let want = usize::try_from(left).unwrap_or(PIECE).min(PIECE);
        if want == 0 {
            return Ok(offset - start);
        }
        let n = match &spliced {
            Some((_, write_end)) => {
                rustix::pipe::splice(socket, None, write_end, None, want, SpliceFlags::MOVE)
            }
            None => {
                buf.resize(PIECE, 0);
                rustix::io::read(socket, &mut buf[..want])
            }
        };
        let n = match n {
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(network(e, timeout, "data from the server")),
        };
        if n == 0 {
            return Ok(offset - start);
        }
        left -= n as u64;
        match &spliced {
            Some((read_end, _)) => {
                if !drain(read_end, file, &mut offset, n, received)? {
                    // The file takes no splice: what is in the pipe is
                    // written by copying, and so is the rest.
                    buf.resize(n, 0);
                    let mut got = 0;
                    while got < n {
                        match rustix::io::read(read_end, &mut buf[got..n]) {
                            Ok(0) => return Err(file.failed(Errno::IO)),
                            Ok(k) => got += k,
                            Err(e) => return Err(file.failed(e)),
                        }
                    }
                    store(file, &buf[..n], &mut offset, received)?;
                    spliced = None;
                }
            }
            None => store(file, &buf[..n], &mut offset, received)?,
        }
    }
}

/// Moves the `n` bytes in the pipe into the file at `offset`. False if the
/// file refuses the first splice (nothing of them written then).
fn drain(
    read_end: &OwnedFd,
    file: Local<'_>,
    offset: &mut u64,
    mut n: usize,
    received: &AtomicU64,
) -> Result<bool> {
    let mut first = true;
    while n > 0 {
        let mut at = *offset;
        match rustix::pipe::splice(
            read_end,
            None,
            file.file,
            Some(&mut at),
            n,
            SpliceFlags::MOVE,
        ) {
            Ok(0) => return Err(file.failed(Errno::IO)),
            Ok(m) => {
                n -= m;
                *offset += m as u64;
                received.fetch_add(m as u64, Ordering::Relaxed);
            }
            Err(Errno::INVAL) if first => return Ok(false),
            Err(e) => return Err(file.failed(e)),
        }
        first = false;
    }
    Ok(true)
}

/// Writes `piece` to the file at `offset`.
fn store(file: Local<'_>, piece: &[u8], offset: &mut u64, received: &AtomicU64) -> Result<()> {
    file.file
        .write_all_at(piece, *offset)
        .map_err(|e| ClientError::local(file.path, e))?;
    *offset += piece.len() as u64;
    received.fetch_add(piece.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// The blocking loop of an upload: with `zero_copy`, `sendfile` while the
/// file takes it; read and write otherwise. Sends to the file's end; counts
/// every byte sent in `sent`.
fn push(
    socket: &BlockingSocket,
    file: Local<'_>,
    start: u64,
    sent: &AtomicU64,
    timeout: Duration,
    zero_copy: bool,
) -> Result<u64> {
    let socket = socket.0.as_fd();
    let mut offset = start;
    let mut by_sendfile = zero_copy;
    let mut buf = Vec::new();
    loop {
        let n = if by_sendfile {
            let mut at = offset;
            match rustix::fs::sendfile(socket, file.file, Some(&mut at), PIECE) {
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                // A file that takes no sendfile (some special and FUSE
                // files): read and write instead.
                Err(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) if offset == start => {
                    by_sendfile = false;
                    continue;
                }
                Err(e) => return Err(network(e, timeout, "the server to take data")),
            }
        } else {
            buf.resize(PIECE, 0);
            let n = file
                .file
                .read_at(&mut buf, offset)
                .map_err(|e| ClientError::local(file.path, e))?;
            let mut piece = &buf[..n];
            while !piece.is_empty() {
                match rustix::io::write(socket, piece) {
                    Ok(m) => piece = &piece[m..],
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(network(e, timeout, "the server to take data")),
                }
            }
            n
        };
        if n == 0 {
            return Ok(offset - start);
        }
        offset += n as u64;
        sent.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// A pipe of [`PIECE`] bytes, or `None` where the system will not give one
/// that large (with the default 64 KiB pipe, splicing is slower than copying).
fn pipe() -> Option<(OwnedFd, OwnedFd)> {
    let (read_end, write_end) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ok()?;
    let size = rustix::pipe::fcntl_setpipe_size(&write_end, PIECE).ok()?;
    (size >= PIECE).then_some((read_end, write_end))
}

/// A failed receive or send on the data connection: `EAGAIN` is its
/// timeout going by while waiting for `what`.
fn network(e: Errno, timeout: Duration, what: &str) -> ClientError {
    if e == Errno::AGAIN {
        ClientError::Timeout {
            what: what.to_owned(),
            after: timeout,
        }
    } else {
        ClientError::Io(e.into())
    }
}

/// The local file, and its name for errors.
#[derive(Clone, Copy)]
struct Local<'a> {
    file: &'a std::fs::File,
    path: &'a Path,
}

impl Local<'_> {
    fn failed(self, e: Errno) -> ClientError {
        ClientError::local(self.path, e.into())
    }
}

/// A failed call that sets the data connection up for the loop.
fn socket_error(e: Errno) -> ClientError {
    ClientError::Io(e.into())
}

/// The data connection as the loop uses it: a second descriptor, blocking,
/// with the I/O timeout as its receive or send timeout. Dropped, it puts the
/// connection back to non-blocking for the async side, which still owns it.
struct BlockingSocket(OwnedFd);

impl BlockingSocket {
    fn new(socket: BorrowedFd<'_>, direction: Timeout, timeout: Duration) -> Result<Self> {
        let second = BlockingSocket(socket.try_clone_to_owned()?);
        rustix::io::ioctl_fionbio(&second.0, false).map_err(socket_error)?;
        rustix::net::sockopt::set_socket_timeout(
            &second.0,
            direction,
            Some(timeout.max(Duration::from_millis(1))),
        )
        .map_err(socket_error)?;
        Ok(second)
    }
}

impl Drop for BlockingSocket {
    fn drop(&mut self) {
        let _ = rustix::io::ioctl_fionbio(&self.0, true);
    }
}

/// Shuts the data connection down if the async side stops before the loop
/// has ended, so that the loop does not wait out the timeout.
struct ShutdownOnDrop(Option<OwnedFd>);

impl ShutdownOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        if let Some(socket) = &self.0 {
            let _ = rustix::net::shutdown(socket, rustix::net::Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    /// The loops' I/O timeout in these tests.
    const TIMEOUT: Duration = Duration::from_millis(300);

    /// A connected pair on loopback: (the end that connected, the accepted end).
    fn connected_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let connected = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        (connected, accepted)
    }

    /// Sends `data` (then waits `hold` before closing) from a thread, and runs
    /// the loop on the receiving end into a new file at `start`.
    fn receive(
        data: Vec<u8>,
        hold: Duration,
        start: u64,
        limit: Option<u64>,
        zero_copy: bool,
        append: bool,
    ) -> (Result<u64>, Vec<u8>, u64) {
        let (mut sender, receiver) = connected_pair();
        let sending = std::thread::spawn(move || {
            let _ = sender.write_all(&data);
            std::thread::sleep(hold);
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("got.bin");
        let file = std::fs::File::options()
            .read(true)
            .write(true)
            .append(append)
            .create_new(true)
            .open(&path)
            .expect("create");
        let blocking =
            BlockingSocket::new(receiver.as_fd(), Timeout::Recv, TIMEOUT).expect("blocking");
        let received = AtomicU64::new(0);
        let local = Local {
            file: &file,
            path: &path,
        };
        let result = pump(
            &blocking, local, start, limit, &received, TIMEOUT, zero_copy,
        );
        drop(blocking);
        sending.join().expect("sender");
        let got = std::fs::read(&path).expect("read back");
        (result, got, received.load(Ordering::Relaxed))
    }

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4099) as u8).collect()
    }

    #[test]
    fn spliced_and_copied_downloads_store_every_byte_at_the_offset() {
        // Several pieces and pipe fills, an odd tail.
        let data = bytes(5 * PIECE + 12_345);
        for zero_copy in [true, false] {
            let (result, got, counted) =
                receive(data.clone(), Duration::ZERO, 0, None, zero_copy, false);
            assert_eq!(
                result.expect("received"),
                data.len() as u64,
                "zero_copy {zero_copy}"
            );
            assert_eq!(counted, data.len() as u64);
            assert!(got == data, "zero_copy {zero_copy}: contents differ");
            // From an offset (a resumed download): the bytes land after it.
            let (result, got, _) =
                receive(data.clone(), Duration::ZERO, 1000, None, zero_copy, false);
            assert_eq!(result.expect("received"), data.len() as u64);
            assert_eq!(got.len(), 1000 + data.len());
            assert!(got[..1000].iter().all(|&b| b == 0));
            assert!(
                got[1000..] == data[..],
                "zero_copy {zero_copy}: offset contents differ"
            );
        }
    }

    #[test]
    fn a_file_that_refuses_splice_is_written_by_copying() {
        // Linux refuses to splice into a file opened for appending.
        let data = bytes(3 * PIECE + 1);
        let (result, got, counted) = receive(data.clone(), Duration::ZERO, 0, None, true, true);
        assert_eq!(result.expect("received"), data.len() as u64);
        assert_eq!(counted, data.len() as u64);
        assert!(got == data, "contents differ");
    }

    #[test]
    fn a_segment_stops_at_its_limit() {
        let data = bytes(3 * PIECE);
        for zero_copy in [true, false] {
            let limit = PIECE as u64 + 777;
            let (result, got, counted) = receive(
                data.clone(),
                Duration::ZERO,
                0,
                Some(limit),
                zero_copy,
                false,
            );
            assert_eq!(result.expect("received"), limit, "zero_copy {zero_copy}");
            assert_eq!(counted, limit);
            assert!(got[..] == data[..limit as usize], "zero_copy {zero_copy}");
        }
    }

    #[test]
    fn a_stalled_connection_times_out() {
        // 100 bytes, then nothing for longer than the 300 ms timeout.
        for zero_copy in [true, false] {
            let (result, got, counted) = receive(
                bytes(100),
                Duration::from_secs(2),
                0,
                None,
                zero_copy,
                false,
            );
            match result {
                Err(ClientError::Timeout { .. }) => {}
                other => panic!("zero_copy {zero_copy}: expected a timeout, got {other:?}"),
            }
            assert_eq!(got.len(), 100, "what came before the stall is kept");
            assert_eq!(counted, 100, "and counted, for a retry to go on from");
        }
    }
    /// Runs the upload loop on a file holding `data` from `start`, into a
    /// socket whose other end a thread reads to the end (or, with `stall`,
    /// never reads). Returns the result, what arrived, and the count.
    fn send(data: &[u8], start: u64, zero_copy: bool, stall: bool) -> (Result<u64>, Vec<u8>, u64) {
        let (sender, mut receiver) = connected_pair();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let reading = std::thread::spawn(move || {
            let mut got = Vec::new();
            if stall {
                let _ = stopped.recv();
            } else {
                let _ = std::io::Read::read_to_end(&mut receiver, &mut got);
            }
            got
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("put.bin");
        std::fs::write(&path, data).expect("write");
        let file = std::fs::File::open(&path).expect("open");
        let blocking =
            BlockingSocket::new(sender.as_fd(), Timeout::Send, TIMEOUT).expect("blocking");
        let sent = AtomicU64::new(0);
        let local = Local {
            file: &file,
            path: &path,
        };
        let result = push(&blocking, local, start, &sent, TIMEOUT, zero_copy);
        drop(blocking);
        drop(sender);
        let _ = stop.send(());
        let got = reading.join().expect("reader");
        (result, got, sent.load(Ordering::Relaxed))
    }

    #[test]
    fn uploads_by_sendfile_and_by_copying_send_the_file_from_the_offset() {
        let data = bytes(4 * PIECE + 4321);
        for zero_copy in [true, false] {
            let (result, got, counted) = send(&data, 0, zero_copy, false);
            assert_eq!(
                result.expect("sent"),
                data.len() as u64,
                "zero_copy {zero_copy}"
            );
            assert_eq!(counted, data.len() as u64);
            assert!(got == data, "zero_copy {zero_copy}: contents differ");
            // A resumed upload (APPE) sends the rest only.
            let (result, got, _) = send(&data, 5000, zero_copy, false);
            assert_eq!(result.expect("sent"), (data.len() - 5000) as u64);
            assert!(
                got[..] == data[5000..],
                "zero_copy {zero_copy}: rest differs"
            );
        }
    }

    #[test]
    fn an_upload_the_server_stops_taking_times_out() {
        let data = bytes(64 * PIECE);
        for zero_copy in [true, false] {
            let (result, _, counted) = send(&data, 0, zero_copy, true);
            match result {
                Err(ClientError::Timeout { .. }) => {}
                other => panic!("zero_copy {zero_copy}: expected a timeout, got {other:?}"),
            }
            assert!(counted < data.len() as u64);
        }
    }
}
