//! Why a storage operation failed.

use std::io;

/// A storage failure, in terms a session can answer with.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No such file or directory.
    #[error("no such file or directory")]
    NotFound,
    /// The name is taken.
    #[error("file exists")]
    AlreadyExists,
    /// A directory was needed and something else was found.
    #[error("not a directory")]
    NotADirectory,
    /// A file was needed and a directory was found.
    #[error("is a directory")]
    IsADirectory,
    /// A file was needed and a device, a FIFO or a socket was found: none of
    /// them is read or written (a FIFO's open would wait for a writer).
    #[error("not a regular file")]
    NotARegularFile,
    /// The directory to remove still has entries.
    #[error("directory not empty")]
    DirectoryNotEmpty,
    /// The host refused the operation (file modes, read-only mounts).
    #[error("permission denied by the file system")]
    PermissionDenied,
    /// The path leads out of the home, through a symbolic link.
    #[error("path leads outside the home directory")]
    OutsideHome,
    /// A resume offset past the end of the file.
    #[error("resume offset {offset} is beyond the file's size {size}")]
    OffsetBeyondEnd { offset: u64, size: u64 },
    /// The device or the file system quota is full.
    #[error("no space left on the storage device")]
    NoSpace,
    /// A name or path too long for the backend.
    #[error("file name too long")]
    NameTooLong,
    /// The operation makes no sense here (moving a directory into itself,
    /// removing the home).
    #[error("invalid operation: {0}")]
    Invalid(&'static str),
    /// The backend does not offer this operation.
    #[error("not supported by this storage backend: {0}")]
    Unsupported(&'static str),
    /// The storage service (an S3 endpoint) did not answer, or answered with
    /// an error of its own: a failure of the service, not of the request.
    /// The backend logs the cause; clients are told to try again later.
    #[error("the file storage cannot be reached; try again later")]
    Unavailable,
    /// Any other failure of the backend.
    #[error("storage I/O error: {0}")]
    Io(io::Error),
}

impl From<io::Error> for StorageError {
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(code) => from_errno(code, e),
            None => match e.kind() {
                io::ErrorKind::NotFound => StorageError::NotFound,
                io::ErrorKind::AlreadyExists => StorageError::AlreadyExists,
                io::ErrorKind::PermissionDenied => StorageError::PermissionDenied,
                _ => StorageError::Io(e),
            },
        }
    }
}

impl From<rustix::io::Errno> for StorageError {
    fn from(e: rustix::io::Errno) -> Self {
        StorageError::from(io::Error::from(e))
    }
}

fn from_errno(code: i32, e: io::Error) -> StorageError {
    use rustix::io::Errno;
    let errno = Errno::from_raw_os_error(code);
    match errno {
        Errno::NOENT => StorageError::NotFound,
        Errno::EXIST => StorageError::AlreadyExists,
        Errno::NOTDIR => StorageError::NotADirectory,
        Errno::ISDIR => StorageError::IsADirectory,
        Errno::NOTEMPTY => StorageError::DirectoryNotEmpty,
        Errno::ACCESS | Errno::PERM | Errno::ROFS => StorageError::PermissionDenied,
        // openat2 RESOLVE_BENEATH answers EXDEV for an escape; ELOOP for a symlink
        // where none is allowed.
        Errno::XDEV | Errno::LOOP => StorageError::OutsideHome,
        Errno::NOSPC | Errno::DQUOT | Errno::FBIG => StorageError::NoSpace,
        Errno::NAMETOOLONG => StorageError::NameTooLong,
        Errno::INVAL => StorageError::Invalid("the file system refused the operation"),
        // What opening a socket answers (or a device with no driver behind it).
        Errno::NXIO => StorageError::NotARegularFile,
        _ => StorageError::Io(e),
    }
}
