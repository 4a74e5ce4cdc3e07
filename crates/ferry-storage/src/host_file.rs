//! Host files opened for reading: sent whole by FTP (`sendfile`), read at
//! any offset by SFTP.
//!
//! A read of a file whose pages are in the page cache costs a few
//! microseconds; a trip to tokio's blocking pool and back costs two thread
//! wake-ups, tens of microseconds on a VM where an idle CPU halts. So
//! [`PositionedReader::read_at`] first asks the kernel for what it has cached
//! without waiting (`preadv2` with `RWF_NOWAIT`, Linux 4.14), on the async
//! worker, and only takes what must come from the disk to the blocking pool.
//! The worker never waits on the disk: a page that is not cached answers
//! `EAGAIN` at once. File systems that do not offer `RWF_NOWAIT` (tmpfs
//! answers `EOPNOTSUPP`) are read on the blocking pool throughout.

use std::io::IoSliceMut;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use rustix::io::{Errno, ReadWriteFlags};

use crate::{Metadata, StorageError};

/// A regular host file opened for reading, with its size when it was opened.
#[derive(Debug)]
pub struct HostFile {
    pub file: std::fs::File,
    pub size: u64,
}

impl HostFile {
    /// A reader of the file at any offset.
    pub fn into_positioned(self) -> PositionedReader {
        PositionedReader {
            file: Arc::new(self.file),
            size: self.size,
            nowait: true,
        }
    }
}

/// Reads of a host file at any offset (SFTP's READ), cached pages on the
/// async worker and the rest on the blocking pool (module docs).
#[derive(Debug)]
pub struct PositionedReader {
    /// Shared with the blocking pool while a read waits on the disk.
    file: Arc<std::fs::File>,
    /// The size when the file was opened: a short cached read that reaches it
    /// is the end of the file, not a page missing from the cache.
    size: u64,
    /// Whether the file system answers `RWF_NOWAIT` reads.
    nowait: bool,
}

impl PositionedReader {
    /// The open file's metadata: an `fstat`, answered from its inode without
    /// waiting on the disk.
    pub fn metadata(&self) -> Result<Metadata, StorageError> {
        Ok(crate::local::metadata_of(&rustix::fs::fstat(&*self.file)?))
    }

    /// Up to `len` bytes from `offset`: fewer only at the end of the file
    /// (none at or past it), or when a file that grew since it was opened
    /// has only part of its new bytes cached.
    pub async fn read_at(&mut self, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        if self.nowait {
            let cached = rustix::io::preadv2(
                &*self.file,
                &mut [IoSliceMut::new(&mut buf)],
                offset,
                ReadWriteFlags::NOWAIT,
            );
            match cached {
                Ok(n) => filled = n,
                // Nothing of it cached: all of it from the disk.
                Err(Errno::AGAIN) => {}
                Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => self.nowait = false,
                Err(e) => return Err(e.into()),
            }
            if filled == len || (filled > 0 && offset + filled as u64 >= self.size) {
                buf.truncate(filled);
                return Ok(buf);
            }
            if filled == 0 && cached.is_ok() {
                // At or past the end of the file as it is now.
                buf.clear();
                return Ok(buf);
            }
        }
        let file = self.file.clone();
        let (mut buf, filled) = tokio::task::spawn_blocking(move || {
            while filled < buf.len() {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(StorageError::from(e)),
                }
            }
            Ok((buf, filled))
        })
        .await
        .map_err(|e| StorageError::Io(std::io::Error::other(e)))??;
        buf.truncate(filled);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_of(bytes: &[u8], dir: &std::path::Path) -> PositionedReader {
        let path = dir.join("f");
        std::fs::write(&path, bytes).expect("test setup");
        let file = std::fs::File::open(&path).expect("test setup");
        HostFile {
            file,
            size: bytes.len() as u64,
        }
        .into_positioned()
    }

    #[tokio::test]
    async fn reads_at_any_offset_and_ends_with_nothing() {
        let dir = tempfile::tempdir().expect("test setup");
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut reader = reader_of(&bytes, dir.path());
        let middle = reader.read_at(40_000, 32_768).await.expect("read");
        assert!(middle == bytes[40_000..72_768], "bytes from the middle");
        let tail = reader.read_at(90_000, 32_768).await.expect("read");
        assert_eq!(tail.len(), 10_000, "a read over the end stops at it");
        assert!(tail == bytes[90_000..], "the tail's bytes");
        assert!(
            reader
                .read_at(100_000, 32_768)
                .await
                .expect("read")
                .is_empty()
        );
        assert!(reader.read_at(500_000, 10).await.expect("read").is_empty());
        assert_eq!(reader.metadata().expect("test setup").size, 100_000);
    }

    #[tokio::test]
    async fn a_file_that_grew_is_read_past_its_first_size() {
        let dir = tempfile::tempdir().expect("test setup");
        let mut reader = reader_of(b"first", dir.path());
        let mut more = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("f"))
            .expect("test setup");
        std::io::Write::write_all(&mut more, b" and then some").expect("test setup");
        let all = reader.read_at(0, 1000).await.expect("read");
        assert_eq!(all, b"first and then some");
    }

    #[tokio::test]
    async fn a_file_system_without_nowait_reads_through_the_pool() {
        // /dev/shm is tmpfs, which answers RWF_NOWAIT with EOPNOTSUPP here;
        // where it does not exist, the temporary directory serves.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm).expect("test setup")
        } else {
            tempfile::tempdir().expect("test setup")
        };
        let bytes = vec![7u8; 5000];
        let mut reader = reader_of(&bytes, dir.path());
        assert!(reader.read_at(0, 4096).await.expect("read") == bytes[..4096]);
        assert_eq!(reader.read_at(4096, 4096).await.expect("read").len(), 904);
        assert!(reader.read_at(5000, 4096).await.expect("read").is_empty());
    }
}
