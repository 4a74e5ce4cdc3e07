//! The blocking loop of a plain binary upload into a host file (RFC 959
//! §3.4 stream mode, TYPE I): what [`super::receive_file_blocking`] runs in
//! the blocking pool.
//!
//! Two ways to move the bytes, the same rules for both (the data timeout, the
//! byte budget, the meter):
//!
//! - **splice**: `splice(2)` from the socket into a pipe, then from the pipe
//!   into the file. The kernel hands the socket's pages to the pipe, so the
//!   data is copied once (into the file) instead of twice (socket to buffer,
//!   buffer to file). It needs a pipe of [`PIPE_BYTES`]: with the default
//!   64 KiB pipe it was slower than copying (docs/benchmarks.md).
//! - **copy**: `read` into a 1 MiB buffer, `write` to the file. Used when the
//!   pipe cannot be had (`fs.pipe-max-size` or the user's pipe pages are
//!   lower), when the file is in append mode (splice refuses `O_APPEND`), for
//!   the rest of an upload whose file refused a splice, and always when the
//!   server's `sendfile` setting is off.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use ferry_storage::StorageError;
use rustix::io::Errno;
use rustix::pipe::SpliceFlags;

use super::{TransferMeter, UploadBudget};
use crate::error::TransferError;

/// The buffer of the copying loop.
const CHUNK: usize = 1 << 20;

/// The pipe size the splice loop needs (Linux's default `fs.pipe-max-size`).
pub(super) const PIPE_BYTES: usize = 1 << 20;

/// How the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LoopEnd {
    /// The client closed the data connection.
    EndOfData,
    /// A byte arrived that would cross the budget; it was not stored. The
    /// setting that stopped it.
    OverLimit(&'static str),
}

/// One upload's bytes on their way from the socket (blocking, with the data
/// timeout as its receive timeout) into the file.
pub(super) struct UploadLoop<'a> {
    pub socket: BorrowedFd<'a>,
    pub file: &'a std::fs::File,
    pub timeout: Duration,
    pub meter: &'a TransferMeter,
    /// What this upload may store.
    pub budget: Option<&'a UploadBudget>,
    /// Hears of every byte stored.
    pub wrote: &'a mut dyn FnMut(u64),
    /// Splice where it can be done (the server's `sendfile` setting: off,
    /// every upload is copied).
    pub zero_copy: bool,
}

impl UploadLoop<'_> {
    /// Moves the bytes until the client closes, the limit is crossed, or an
    /// error: by splice where a [`UploadPipe`] can be had, by copying
    /// otherwise.
    pub fn run(mut self) -> Result<LoopEnd, TransferError> {
        let mut stored = 0;
        if let Some(pipe) = self
            .zero_copy
            .then(|| UploadPipe::for_file(self.file))
            .flatten()
        {
            match self.splice(&pipe, &mut stored)? {
                Spliced::Ended(end) => return Ok(end),
                Spliced::Refused => {}
            }
        }
        self.copy(&mut stored)
    }

    /// The splice loop. If the file refuses the first splice into it, the
    /// bytes already in the pipe are stored by copying and the caller copies
    /// the rest.
    fn splice(&mut self, pipe: &UploadPipe, stored: &mut u64) -> Result<Spliced, TransferError> {
        loop {
            let want = self
                .room(*stored, pipe.size)?
                .saturating_add(1)
                .min(pipe.size);
            let n = rustix::pipe::splice(
                self.socket,
                None,
                &pipe.write,
                None,
                want,
                SpliceFlags::MOVE,
            )
            .map_err(|e| self.receiving(e))?;
            if n == 0 {
                return Ok(Spliced::Ended(LoopEnd::EndOfData));
            }
            self.meter.add(n);
            let fits = self.room(*stored, n)?;
            let mut left = fits;
            while left > 0 {
                match rustix::pipe::splice(
                    &pipe.read,
                    None,
                    self.file,
                    None,
                    left,
                    SpliceFlags::MOVE,
                ) {
                    Ok(0) => return Err(storage(Errno::IO)),
                    Ok(m) => {
                        left -= m;
                        self.stored(stored, m);
                    }
                    Err(Errno::INVAL) if *stored == 0 && left == fits => {
                        let mut buf = vec![0u8; left];
                        let mut got = 0;
                        while got < left {
                            match rustix::io::read(&pipe.read, &mut buf[got..]) {
                                Ok(0) => return Err(storage(Errno::IO)),
                                Ok(k) => got += k,
                                Err(e) => return Err(storage(e)),
                            }
                        }
                        self.store(&buf, stored)?;
                        if fits < n {
                            return Ok(Spliced::Ended(self.over(*stored)));
                        }
                        return Ok(Spliced::Refused);
                    }
                    Err(e) => return Err(storage(e)),
                }
            }
            if fits < n {
                return Ok(Spliced::Ended(self.over(*stored)));
            }
        }
    }

    /// The copying loop.
    fn copy(&mut self, stored: &mut u64) -> Result<LoopEnd, TransferError> {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = rustix::io::read(self.socket, &mut buf).map_err(|e| self.receiving(e))?;
            if n == 0 {
                return Ok(LoopEnd::EndOfData);
            }
            self.meter.add(n);
            let fits = self.room(*stored, n)?;
            self.store(&buf[..fits], stored)?;
            if fits < n {
                return Ok(self.over(*stored));
            }
        }
    }

    /// Writes `piece` to the file.
    fn store(&mut self, mut piece: &[u8], stored: &mut u64) -> Result<(), TransferError> {
        while !piece.is_empty() {
            let m = rustix::io::write(self.file, piece).map_err(storage)?;
            if m == 0 {
                return Err(storage(Errno::IO));
            }
            piece = &piece[m..];
            self.stored(stored, m);
        }
        Ok(())
    }

    fn stored(&mut self, stored: &mut u64, m: usize) {
        *stored += m as u64;
        (self.wrote)(m as u64);
    }

    /// How many of the next `want` bytes may be stored (reserving quota for
    /// them, see [`UploadBudget`]).
    fn room(&self, stored: u64, want: usize) -> Result<usize, TransferError> {
        match self.budget {
            Some(b) => Ok(usize::try_from(b.room_blocking(stored, want as u64)?)
                .unwrap_or(usize::MAX)
                .min(want)),
            None => Ok(want),
        }
    }

    /// How an upload stopped by its budget ends.
    fn over(&self, stored: u64) -> LoopEnd {
        LoopEnd::OverLimit(self.budget.map_or("the budget", |b| b.setting(stored)))
    }

    /// A failed read of the socket: `EAGAIN` is the receive timeout firing.
    fn receiving(&self, e: Errno) -> TransferError {
        super::blocking_failure(e.into(), self.timeout, "receiving")
    }
}

/// What the splice loop did.
enum Spliced {
    Ended(LoopEnd),
    /// The file takes no splice; the loop goes on by copying.
    Refused,
}

fn storage(e: Errno) -> TransferError {
    TransferError::Storage(StorageError::from(std::io::Error::from(e)))
}

/// The pipe of one spliced upload, [`PIPE_BYTES`] large. Each upload has its
/// own: a pipe left with bytes in it by a failed upload is closed with it.
struct UploadPipe {
    read: OwnedFd,
    write: OwnedFd,
    size: usize,
}

impl UploadPipe {
    /// A pipe for uploading into `file`, or `None` where splicing would not
    /// pay or not work (see the module's doc).
    fn for_file(file: &std::fs::File) -> Option<UploadPipe> {
        let flags = rustix::fs::fcntl_getfl(file).ok()?;
        if flags.contains(rustix::fs::OFlags::APPEND) {
            return None;
        }
        UploadPipe::new()
    }

    fn new() -> Option<UploadPipe> {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).ok()?;
        let size = rustix::pipe::fcntl_setpipe_size(write.as_fd(), PIPE_BYTES).ok()?;
        (size >= PIPE_BYTES).then_some(UploadPipe { read, write, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::net::{TcpListener, TcpStream};

    /// A connected pair on loopback; the first is the "server's" socket.
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (s, _) = l.accept().expect("accept");
        (s, c)
    }

    /// Sends `data` from a thread and closes; runs the loop on `file`.
    fn upload(
        data: Vec<u8>,
        file: &std::fs::File,
        limit: Option<u64>,
    ) -> (Result<LoopEnd, TransferError>, u64, u64) {
        let (server, mut client) = pair();
        let sender = std::thread::spawn(move || {
            let _ = client.write_all(&data);
        });
        let meter = TransferMeter::default();
        let mut heard = 0u64;
        let budget = limit.map(|l| UploadBudget::fixed(l, "max_file_size"));
        let end = UploadLoop {
            socket: server.as_fd(),
            file,
            timeout: Duration::from_secs(10),
            meter: &meter,
            budget: budget.as_ref(),
            wrote: &mut |n| heard += n,
            zero_copy: true,
        }
        .run();
        drop(server);
        sender.join().expect("sender");
        (end, heard, meter.bytes())
    }

    /// A new file in `dir`, for reading back too; in append mode if asked.
    fn new_file(dir: &tempfile::TempDir, name: &str, append: bool) -> std::fs::File {
        std::fs::File::options()
            .read(true)
            .write(true)
            .append(append)
            .create_new(true)
            .open(dir.path().join(name))
            .expect("create")
    }

    fn contents(file: &mut std::fs::File) -> Vec<u8> {
        let mut v = Vec::new();
        file.rewind().expect("rewind");
        file.read_to_end(&mut v).expect("read");
        v
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// Several pipes' worth, spliced: every byte lands, in order.
    #[test]
    fn splices_a_large_upload_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let mut file = new_file(&dir, "f", false);
        assert!(UploadPipe::for_file(&file).is_some(), "this test splices");
        let data = pattern(3 * PIPE_BYTES + 12_345);
        let (end, heard, metered) = upload(data.clone(), &file, None);
        assert_eq!(end.expect("loop"), LoopEnd::EndOfData);
        assert_eq!((heard, metered), (data.len() as u64, data.len() as u64));
        assert!(
            contents(&mut file) == data,
            "file differs from what was sent"
        );
    }

    /// The byte past the limit is not stored, spliced or copied.
    #[test]
    fn stops_at_the_limit() {
        let dir = tempfile::tempdir().expect("dir");
        for append in [false, true] {
            let mut file = new_file(&dir, &format!("f{append}"), append);
            assert_eq!(UploadPipe::for_file(&file).is_some(), !append);
            let data = pattern(PIPE_BYTES + 100);
            let limit = PIPE_BYTES as u64 + 7;
            let (end, heard, _) = upload(data.clone(), &file, Some(limit));
            assert_eq!(
                end.expect("loop"),
                LoopEnd::OverLimit("max_file_size"),
                "append {append}"
            );
            assert_eq!(heard, limit);
            assert!(
                contents(&mut file) == data[..PIPE_BYTES + 7],
                "append {append}"
            );
        }
    }

    /// A limit met exactly is not crossed.
    #[test]
    fn a_limit_met_exactly_is_not_crossed() {
        let dir = tempfile::tempdir().expect("dir");
        let mut file = new_file(&dir, "f", false);
        let data = pattern(5000);
        let (end, heard, _) = upload(data.clone(), &file, Some(5000));
        assert_eq!(end.expect("loop"), LoopEnd::EndOfData);
        assert_eq!(heard, 5000);
        assert!(contents(&mut file) == data);
    }

    /// A file that refuses the first splice (here: append mode, which
    /// `for_file` would have passed over) gets the bytes already in the pipe
    /// and the rest by copying.
    #[test]
    fn a_file_refusing_splice_gets_every_byte_by_copying() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"old:").expect("seed");
        let mut file = std::fs::File::options()
            .read(true)
            .append(true)
            .open(&path)
            .expect("open");
        let (server, mut client) = pair();
        let data = pattern(2 * PIPE_BYTES + 3);
        let sent = data.clone();
        let sender = std::thread::spawn(move || {
            let _ = client.write_all(&sent);
        });
        let meter = TransferMeter::default();
        let mut heard = 0u64;
        let mut upload = UploadLoop {
            socket: server.as_fd(),
            file: &file,
            timeout: Duration::from_secs(10),
            meter: &meter,
            budget: None,
            wrote: &mut |n| heard += n,
            zero_copy: true,
        };
        let pipe = UploadPipe::new().expect("a 1 MiB pipe");
        let mut stored = 0;
        assert!(matches!(
            upload.splice(&pipe, &mut stored),
            Ok(Spliced::Refused)
        ));
        assert!(stored > 0, "the bytes in the pipe were stored");
        assert_eq!(upload.copy(&mut stored).expect("copy"), LoopEnd::EndOfData);
        sender.join().expect("sender");
        assert_eq!(heard, data.len() as u64);
        let mut expected = b"old:".to_vec();
        expected.extend_from_slice(&data);
        assert!(contents(&mut file) == expected, "file differs");
    }

    /// No byte for longer than the timeout: "no progress", what came is kept.
    #[test]
    fn a_stalled_client_times_out() {
        let dir = tempfile::tempdir().expect("dir");
        let mut file = new_file(&dir, "f", false);
        let (server, mut client) = pair();
        client.write_all(b"some").expect("send");
        rustix::net::sockopt::set_socket_timeout(
            &server,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_millis(200)),
        )
        .expect("timeout");
        let meter = TransferMeter::default();
        let end = UploadLoop {
            socket: server.as_fd(),
            file: &file,
            timeout: Duration::from_secs(1),
            meter: &meter,
            budget: None,
            wrote: &mut |_| {},
            zero_copy: true,
        }
        .run();
        match end {
            Err(TransferError::Connection(m)) => assert!(m.contains("no progress"), "{m}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_eq!(contents(&mut file), b"some");
        drop(client);
    }
}
