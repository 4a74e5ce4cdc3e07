//! Where files live: the [`Storage`] trait every backend implements, the
//! [`VirtualPath`] every path is resolved to before it reaches a backend, and the
//! local-disk backend ([`local::LocalDisk`]).
//!
//! A session never sees the host file system. It holds one `Arc<dyn Storage>` rooted
//! at the user's home (from [`StorageBackend::open_home`]) and hands it resolved
//! [`VirtualPath`]s, which cannot name anything above that home. The local backend
//! additionally has the kernel enforce this (openat2 with `RESOLVE_BENEATH`), so a
//! symlink inside the home that points outside it is refused too.

#[cfg(test)]
mod conformance;
pub mod error;
pub mod host_file;
pub mod local;
mod name_order;
pub mod object;
pub mod path;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

pub use error::StorageError;
pub use host_file::{HostFile, PositionedReader};
pub use name_order::in_name_order;
pub use path::{PathError, VirtualPath};

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    /// A symbolic link whose target is not reachable from the home.
    Symlink,
    /// A FIFO, socket or device: listed, never opened
    /// ([`StorageError::NotARegularFile`]).
    Special(SpecialFile),
}

/// Which kind of special file an entry is, as `ls -l` tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialFile {
    Fifo,
    Socket,
    BlockDevice,
    CharDevice,
    /// A type the system did not name.
    Unknown,
}

/// What a backend knows of one file or directory.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub kind: FileKind,
    pub size: u64,
    pub modified: SystemTime,
    /// Unix permission bits; backends without them report 0o644 / 0o755.
    pub mode: u32,
    pub links: u64,
    /// A pair that identifies the object within the backend (device and inode).
    pub unique: (u64, u64),
}

impl Metadata {
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: String,
    pub metadata: Metadata,
}

/// A directory listing, read in batches so that a directory of any size lists in
/// bounded memory.
#[async_trait]
pub trait DirStream: Send {
    /// The next batch of entries, or `None` at the end.
    async fn next_batch(&mut self) -> Result<Option<Vec<DirEntry>>, StorageError>;
}

/// How an upload treats the file it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// STOR: create the file, or replace it whole. The old content stays in place
    /// until the upload commits; if the upload fails it is untouched.
    Replace,
    /// REST n + STOR: keep the first `offset` bytes of the existing file and write
    /// from there (the file must be at least that long).
    Resume { offset: u64 },
    /// APPE: write at the end of the file, creating it if needed.
    Append,
    /// STOU: create a file that must not exist yet.
    CreateNew,
    /// SFTP's open of a file without truncation: write into the file itself
    /// where [`Upload::seek`] puts the bytes (first at offset 0), keeping
    /// every byte not written over; an empty file where there was none.
    /// Only where [`Storage::writes_anywhere`]; others answer
    /// [`StorageError::Unsupported`].
    InPlace,
}

/// An upload in progress. Bytes are written through `AsyncWrite`; then exactly one
/// of [`Upload::commit`] or [`Upload::abort`] finishes it. Dropping it without
/// either counts as an abort.
///
/// On abort, an upload that was replacing an existing file leaves that file as it
/// was; an upload of a new file keeps the bytes that arrived, so that the client can
/// resume it with REST or APPE.
#[async_trait]
pub trait Upload: AsyncWrite + Send + Unpin {
    /// Makes the upload visible under its name. Returns the file's size.
    async fn commit(self: Box<Self>) -> Result<u64, StorageError>;
    /// Ends the upload after a failure, as described above.
    async fn abort(self: Box<Self>);
    /// Ends the upload and removes what it wrote to a new or replacement file, as
    /// when it went over a quota. Bytes written in place (APPE, REST+STOR) stay.
    async fn discard(self: Box<Self>);
    /// Makes the bytes written so far durable, and the commit too: once
    /// [`Upload::commit`] has answered, the file survives a crash under its
    /// name (SFTP's fsync@openssh.com, OpenSSH's `put -f`). Without it a
    /// commit is as durable as the backend makes it by itself: on local disk,
    /// the kernel writes the file back in its own time, as every FTP server
    /// leaves it. A failure leaves the upload to be aborted.
    async fn sync(&mut self) -> Result<(), StorageError>;
    /// The file being written, when it is a host file (a second handle on it,
    /// at its current position). A plain binary upload then writes into it
    /// from a blocking loop, reporting the bytes through [`Upload::wrote`]. Backends whose files are not host files answer `None`.
    fn host_file(&self) -> Option<std::io::Result<std::fs::File>> {
        None
    }
    /// Counts `n` bytes written through [`Upload::host_file`].
    fn wrote(&mut self, n: u64) {
        let _ = n;
    }
    /// Moves where the next bytes are written to `offset`: anywhere in the
    /// file, past its end too (the gap reads as zeros). Bytes not written
    /// over stay as they are. SFTP writes at the offsets its clients give
    /// (sshfs writes pages back in any order, `dd conv=notrunc` writes
    /// inside a file). Backends that write a stream (object storage), and
    /// appends, which write at the end whatever the offset, answer
    /// [`StorageError::Unsupported`]; [`Storage::writes_anywhere`] tells
    /// beforehand.
    async fn seek(&mut self, offset: u64) -> Result<(), StorageError> {
        let _ = offset;
        Err(StorageError::Unsupported(
            "this storage writes a file front to back",
        ))
    }
    /// Makes the file being written `size` bytes long: cut there, or grown
    /// with zeros. Where the next bytes go does not change. Answered as
    /// [`Upload::seek`] is.
    async fn set_len(&mut self, size: u64) -> Result<(), StorageError> {
        let _ = size;
        Err(StorageError::Unsupported(
            "this storage writes a file front to back",
        ))
    }
}

/// A byte stream being read from a file.
pub type FileReader = Box<dyn AsyncRead + Send + Unpin>;

/// The file operations of one user's view, rooted at the user's home.
#[async_trait]
pub trait Storage: Send + Sync + fmt::Debug {
    async fn metadata(&self, path: &VirtualPath) -> Result<Metadata, StorageError>;
    async fn list(&self, path: &VirtualPath) -> Result<Box<dyn DirStream>, StorageError>;
    /// Opens a file for reading from `offset` (REST).
    async fn read(&self, path: &VirtualPath, offset: u64) -> Result<FileReader, StorageError>;
    /// Opens a file as a host file, for zero-copy sending (`sendfile`) or
    /// reads at any offset ([`HostFile::into_positioned`]). Backends whose
    /// files are not host files answer `None`, and callers use
    /// [`Storage::read`].
    async fn open_host_file(&self, path: &VirtualPath) -> Result<Option<HostFile>, StorageError> {
        let _ = path;
        Ok(None)
    }
    async fn write(
        &self,
        path: &VirtualPath,
        mode: WriteMode,
    ) -> Result<Box<dyn Upload>, StorageError>;
    async fn create_dir(&self, path: &VirtualPath) -> Result<(), StorageError>;
    async fn remove_file(&self, path: &VirtualPath) -> Result<(), StorageError>;
    async fn remove_dir(&self, path: &VirtualPath) -> Result<(), StorageError>;
    async fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> Result<(), StorageError>;
    async fn set_modified(&self, path: &VirtualPath, time: SystemTime) -> Result<(), StorageError>;
    async fn set_mode(&self, path: &VirtualPath, mode: u32) -> Result<(), StorageError>;
    /// The size of the file system `path` lies on and what of it is free, as
    /// `statvfs(3)` tells it (SFTP's `statvfs@openssh.com`: `df` in
    /// OpenSSH's `sftp`). Backends that have no such figure (object
    /// storage) answer [`StorageError::Unsupported`].
    async fn space(&self, path: &VirtualPath) -> Result<Space, StorageError> {
        let _ = path;
        Err(StorageError::Unsupported(
            "this storage has no file system size",
        ))
    }
    /// Whether its uploads, other than appends, write at any offset
    /// ([`Upload::seek`], [`Upload::set_len`]): a host file can, an object
    /// is written front to back.
    fn writes_anywhere(&self) -> bool {
        false
    }
}

/// A file system's size and free space, in `statvfs(3)`'s terms: sizes in
/// units of `fragment_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// The preferred size of a transfer (`f_bsize`).
    pub block_size: u64,
    /// The unit of the block counts (`f_frsize`).
    pub fragment_size: u64,
    /// Blocks in all (`f_blocks`).
    pub blocks: u64,
    /// Blocks free (`f_bfree`).
    pub blocks_free: u64,
    /// Blocks free to an unprivileged user (`f_bavail`).
    pub blocks_available: u64,
    /// Files (inodes) in all (`f_files`).
    pub files: u64,
    /// Files free (`f_ffree`).
    pub files_free: u64,
    /// Files free to an unprivileged user (`f_favail`).
    pub files_available: u64,
    /// The file system's id (`f_fsid`).
    pub filesystem_id: u64,
    /// Mounted read-only (`ST_RDONLY`).
    pub read_only: bool,
    /// Mounted without set-user-id (`ST_NOSUID`).
    pub no_setuid: bool,
    /// The longest file name (`f_namemax`).
    pub max_name_length: u64,
}

impl Space {
    /// The figures as a user with a quota sees them: no more in all than
    /// the quota (`quota_bytes`, `quota_files`), and no more free than the
    /// quota leaves after `used` (bytes, files). The file system's own
    /// figures stay where they are smaller.
    pub fn within_quota(
        mut self,
        quota_bytes: Option<u64>,
        quota_files: Option<u64>,
        used: (u64, u64),
    ) -> Space {
        if let Some(q) = quota_bytes {
            let unit = self.fragment_size.max(1);
            let (all, left) = (q / unit, q.saturating_sub(used.0) / unit);
            self.blocks = self.blocks.min(all);
            self.blocks_free = self.blocks_free.min(left);
            self.blocks_available = self.blocks_available.min(left);
        }
        if let Some(q) = quota_files {
            let left = q.saturating_sub(used.1);
            self.files = self.files.min(q);
            self.files_free = self.files_free.min(left);
            self.files_available = self.files_available.min(left);
        }
        self
    }
}

/// A storage backend: hands out views rooted at a user's home.
#[async_trait]
pub trait StorageBackend: Send + Sync + fmt::Debug {
    /// The view of `home` (a path below the backend's root). With `create`, a
    /// missing home is created.
    async fn open_home(
        &self,
        home: &VirtualPath,
        create: bool,
    ) -> Result<Arc<dyn Storage>, StorageError>;

    /// The view of `home` for a host account: what it creates is owned by
    /// `owner` (uid, gid). Backends without owners ignore it.
    async fn open_home_as(
        &self,
        home: &VirtualPath,
        create: bool,
        owner: Option<(u32, u32)>,
    ) -> Result<Arc<dyn Storage>, StorageError> {
        let _ = owner;
        self.open_home(home, create).await
    }
}

/// Walks a view from its root and adds up the sizes and the number of its files
/// (for quota usage). Directories are walked depth-first with an explicit stack.
pub async fn measure(storage: &dyn Storage) -> Result<(u64, u64), StorageError> {
    let (mut bytes, mut files) = (0u64, 0u64);
    let mut stack = vec![VirtualPath::root()];
    while let Some(dir) = stack.pop() {
        let mut list = storage.list(&dir).await?;
        while let Some(batch) = list.next_batch().await? {
            for entry in batch {
                match entry.metadata.kind {
                    FileKind::Dir => {
                        if let Ok(p) = dir.join_name(&entry.name) {
                            stack.push(p);
                        }
                    }
                    FileKind::File => {
                        bytes += entry.metadata.size;
                        files += 1;
                    }
                    FileKind::Symlink | FileKind::Special(_) => {}
                }
            }
        }
    }
    Ok((bytes, files))
}

#[cfg(test)]
mod space_tests {
    use super::Space;

    fn disk() -> Space {
        Space {
            block_size: 4096,
            fragment_size: 1024,
            blocks: 1_000_000,
            blocks_free: 600_000,
            blocks_available: 550_000,
            files: 10_000,
            files_free: 9_000,
            files_available: 9_000,
            filesystem_id: 7,
            read_only: false,
            no_setuid: true,
            max_name_length: 255,
        }
    }

    #[test]
    fn a_quota_bounds_the_size_and_what_is_free() {
        // 100 KiB quota, 30 KiB used: 100 blocks in all, 70 free.
        let s = disk().within_quota(Some(100 * 1024), None, (30 * 1024, 3));
        assert_eq!((s.blocks, s.blocks_free, s.blocks_available), (100, 70, 70));
        assert_eq!(s.files, 10_000, "no file quota: the disk's count");
        // Over the quota: nothing free, never negative.
        let s = disk().within_quota(Some(1024), Some(5), (4096, 9));
        assert_eq!((s.blocks, s.blocks_free, s.blocks_available), (1, 0, 0));
        assert_eq!((s.files, s.files_free, s.files_available), (5, 0, 0));
        // A quota larger than the disk leaves the disk's figures.
        let s = disk().within_quota(Some(u64::MAX), Some(u64::MAX), (0, 0));
        assert_eq!(s, disk());
        // No quota: unchanged.
        assert_eq!(disk().within_quota(None, None, (5, 5)), disk());
    }

    #[test]
    fn a_zero_fragment_size_does_not_divide_by_zero() {
        let s = Space {
            fragment_size: 0,
            ..disk()
        }
        .within_quota(Some(10), None, (0, 0));
        assert_eq!(s.blocks, 10);
    }
}
