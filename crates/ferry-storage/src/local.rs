//! The local-disk backend.
//!
//! Every operation starts from an open directory descriptor for the user's home and
//! resolves the path with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, so the
//! kernel itself refuses any path, symlink or race that would lead out of the home
//! (Linux 5.6 or later). Operations on a final component (create, remove, rename)
//! open the parent that way and then act on the bare name with the `*at` calls and
//! `AT_SYMLINK_NOFOLLOW`, so a symlink is never followed out of the home either.
//!
//! Uploads are written to a hidden temporary file beside the target and renamed into
//! place on commit: a failed upload never damages the file it was replacing. A
//! failed upload of a new file is renamed into place anyway (without replacing
//! anything that appeared meanwhile), so the client can resume it. The
//! temporary file of a server killed mid-upload is removed by a later listing
//! of its directory, a day after it was last written ([`ABANDONED_UPLOAD_AGE`]).
//!
//! Calls that read or write data, or change a directory, can wait on the
//! disk, so each runs on tokio's blocking pool. Lookups run inline on the
//! async worker: `metadata`, the open of `open_host_file`, and finding a
//! home that exists at login (a path walk and an `fstat`, answered from the
//! kernel's dentry and inode caches, as nginx opens files in its event
//! loop); a trip to the pool and back costs two thread wake-ups, more than
//! the lookup itself. Host files' data is read
//! through [`crate::PositionedReader`], which waits on the disk only on the
//! pool.

use std::collections::HashMap;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags, ResolveFlags, Stat};
use tokio::io::AsyncWrite;

use crate::{
    DirEntry, DirStream, FileKind, FileReader, HostFile, Metadata, Space, SpecialFile, Storage,
    StorageBackend, StorageError, Upload, VirtualPath, WriteMode,
};

/// Names of uploads in progress start with this; listings hide them.
pub const UPLOAD_PREFIX: &str = ".ferry-upload-";

/// How many entries a listing reads per trip to the blocking pool.
const LIST_BATCH: usize = 512;

/// Files under one directory of the host.
#[derive(Debug, Clone)]
pub struct LocalDisk {
    root: PathBuf,
    /// The home directories open now, shared by the sessions in them.
    homes: Arc<std::sync::Mutex<OpenHomes>>,
}

/// Open home directories by path: every session of a user shares one file
/// descriptor for its home rather than holding one each (10,000 idle sessions
/// of one user ran into a 20,000-descriptor limit with two each). An entry is
/// used again only while it is the same directory (device and inode) as the
/// path resolves to now, so a home that was replaced is opened afresh.
type OpenHomes = HashMap<String, std::sync::Weak<OwnedFd>>;

impl LocalDisk {
    /// A backend rooted at `root`, which is created if missing.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(LocalDisk {
            root,
            homes: Arc::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `home`'s shared descriptor if the directory exists: found by a
    /// lookup, which runs inline (module docs), so that a login whose home
    /// is there already (every login but a user's first) makes no trip to
    /// the blocking pool. `None` if the lookup fails for any reason; the
    /// caller then takes the full way, which makes what is missing and
    /// reports what is wrong.
    fn open_existing_home(&self, home: &VirtualPath) -> Option<Arc<OwnedFd>> {
        let dir = walk_to_home(&self.root, home, false).ok()?;
        share_home(&self.homes, home.to_string(), dir).ok()
    }
}

/// Opens `home` below `root`, component by component (a symlink must stay
/// below the directory it is in, not only below the root); with `create`,
/// each missing component is made on the way.
fn walk_to_home(root: &Path, home: &VirtualPath, create: bool) -> Result<OwnedFd, StorageError> {
    let mut dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for name in home.components() {
        if create {
            match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        dir = open_beneath(&dir, name, OFlags::PATH | OFlags::DIRECTORY)?;
    }
    Ok(dir)
}

#[async_trait]
impl StorageBackend for LocalDisk {
    async fn open_home(
        &self,
        home: &VirtualPath,
        create: bool,
    ) -> Result<Arc<dyn Storage>, StorageError> {
        self.open_home_as(home, create, None).await
    }

    async fn open_home_as(
        &self,
        home: &VirtualPath,
        create: bool,
        owner: Option<(u32, u32)>,
    ) -> Result<Arc<dyn Storage>, StorageError> {
        // A home that exists needs no directory made: a lookup finds it.
        // A first login, a missing home or a failing lookup take the full
        // way on the blocking pool.
        let dir = match self.open_existing_home(home) {
            Some(dir) => dir,
            None => {
                let (root, home, homes) = (self.root.clone(), home.clone(), self.homes.clone());
                blocking(move || {
                    let dir = walk_to_home(&root, &home, create)?;
                    share_home(&homes, home.to_string(), dir)
                })
                .await?
            }
        };
        Ok(Arc::new(LocalHome {
            dir,
            owner: owner.map(Owner::from),
        }))
    }
}

/// The shared descriptor for the home just opened as `fresh`: the one already
/// open for the same directory, or `fresh` itself, remembered for the next.
fn share_home(
    homes: &std::sync::Mutex<OpenHomes>,
    key: String,
    fresh: OwnedFd,
) -> Result<Arc<OwnedFd>, StorageError> {
    let identity = |fd: &OwnedFd| rustix::fs::fstat(fd).map(|st| (st.st_dev, st.st_ino));
    let now = identity(&fresh)?;
    let mut homes = homes.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(open) = homes.get(&key).and_then(std::sync::Weak::upgrade)
        && identity(&open).is_ok_and(|id| id == now)
    {
        return Ok(open);
    }
    let shared = Arc::new(fresh);
    if homes.len() >= 1024 {
        homes.retain(|_, open| open.strong_count() > 0);
    }
    homes.insert(key, Arc::downgrade(&shared));
    Ok(shared)
}

/// The owner given to what a host account creates.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: rustix::fs::Uid,
    gid: rustix::fs::Gid,
}

impl From<(u32, u32)> for Owner {
    fn from((uid, gid): (u32, u32)) -> Self {
        Owner {
            uid: rustix::fs::Uid::from_raw(uid),
            gid: rustix::fs::Gid::from_raw(gid),
        }
    }
}

impl Owner {
    fn give(owner: Option<Owner>, fd: &OwnedFd) -> Result<(), StorageError> {
        if let Some(o) = owner {
            rustix::fs::fchown(fd, Some(o.uid), Some(o.gid))?;
        }
        Ok(())
    }
}

/// One user's home on local disk.
#[derive(Debug)]
struct LocalHome {
    dir: Arc<OwnedFd>,
    owner: Option<Owner>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io(io::Error::other(e)))?
}

/// Opens `rel` below `dir`, refusing anything that leaves it.
fn open_beneath(dir: &impl AsFd, rel: &str, flags: OFlags) -> Result<OwnedFd, StorageError> {
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dir, rel, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
            // The kernel answers EAGAIN when a concurrent rename raced the lookup.
            Err(rustix::io::Errno::AGAIN) if tries < 8 => tries += 1,
            other => return other.map_err(StorageError::from),
        }
    }
}

/// Opens a regular file below `home` for reading. The open does not wait
/// (`O_NONBLOCK`: a FIFO's open would wait for a writer, on an async worker
/// at that); anything but a regular file is refused, and the descriptor is
/// made blocking again for the reads.
fn open_regular_file(home: &OwnedFd, path: &VirtualPath) -> Result<(OwnedFd, Stat), StorageError> {
    let fd = open_beneath(home, path.relative(), OFlags::RDONLY | OFlags::NONBLOCK)?;
    let st = rustix::fs::fstat(&fd)?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => {}
        FileType::Directory => return Err(StorageError::IsADirectory),
        _ => return Err(StorageError::NotARegularFile),
    }
    rustix::fs::fcntl_setfl(&fd, OFlags::empty())?;
    Ok((fd, st))
}

/// Opens the parent of `path` as a directory and returns it with the final name.
fn open_parent<'p>(
    home: &OwnedFd,
    path: &'p VirtualPath,
) -> Result<(OwnedFd, &'p str), StorageError> {
    let name = path.file_name().ok_or(StorageError::Invalid(
        "the home directory itself cannot be changed",
    ))?;
    let parent = path.parent().unwrap_or_else(VirtualPath::root);
    let fd = open_beneath(home, parent.relative(), OFlags::PATH | OFlags::DIRECTORY)?;
    Ok((fd, name))
}

pub(crate) fn metadata_of(st: &Stat) -> Metadata {
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => FileKind::File,
        FileType::Directory => FileKind::Dir,
        FileType::Symlink => FileKind::Symlink,
        FileType::Fifo => FileKind::Special(SpecialFile::Fifo),
        FileType::Socket => FileKind::Special(SpecialFile::Socket),
        FileType::BlockDevice => FileKind::Special(SpecialFile::BlockDevice),
        FileType::CharacterDevice => FileKind::Special(SpecialFile::CharDevice),
        FileType::Unknown => FileKind::Special(SpecialFile::Unknown),
    };
    let secs = u64::try_from(st.st_mtime).unwrap_or(0);
    let nanos = u32::try_from(st.st_mtime_nsec).unwrap_or(0);
    Metadata {
        kind,
        size: u64::try_from(st.st_size).unwrap_or(0),
        modified: UNIX_EPOCH + Duration::new(secs, nanos.min(999_999_999)),
        mode: st.st_mode & 0o7777,
        #[allow(clippy::useless_conversion)]
        links: u64::from(st.st_nlink),
        unique: (st.st_dev, st.st_ino),
    }
}

fn stat_beneath(home: &OwnedFd, path: &VirtualPath) -> Result<Metadata, StorageError> {
    let fd = open_beneath(home, path.relative(), OFlags::PATH)?;
    Ok(metadata_of(&rustix::fs::fstat(&fd)?))
}

#[async_trait]
impl Storage for LocalHome {
    async fn metadata(&self, path: &VirtualPath) -> Result<Metadata, StorageError> {
        // Inline: a lookup (module docs).
        stat_beneath(&self.dir, path)
    }

    fn writes_anywhere(&self) -> bool {
        true
    }

    async fn space(&self, path: &VirtualPath) -> Result<Space, StorageError> {
        // On the pool: a network file system may take its time to answer.
        let home = self.dir.clone();
        let path = path.clone();
        blocking(move || {
            let fd = open_beneath(&home, path.relative(), OFlags::PATH)?;
            let st = rustix::fs::fstatvfs(&fd)?;
            Ok(Space {
                block_size: st.f_bsize,
                fragment_size: st.f_frsize,
                blocks: st.f_blocks,
                blocks_free: st.f_bfree,
                blocks_available: st.f_bavail,
                files: st.f_files,
                files_free: st.f_ffree,
                files_available: st.f_favail,
                filesystem_id: st.f_fsid,
                read_only: st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY),
                no_setuid: st.f_flag.contains(rustix::fs::StatVfsMountFlags::NOSUID),
                max_name_length: st.f_namemax,
            })
        })
        .await
    }

    async fn list(&self, path: &VirtualPath) -> Result<Box<dyn DirStream>, StorageError> {
        let home = self.dir.clone();
        let path = path.clone();
        blocking(move || {
            let fd = open_beneath(&home, path.relative(), OFlags::RDONLY | OFlags::DIRECTORY)?;
            let dir = rustix::fs::Dir::read_from(&fd)?;
            Ok(Box::new(LocalDirStream {
                home,
                path,
                dir_fd: Arc::new(fd),
                dir: Some(dir),
            }) as Box<dyn DirStream>)
        })
        .await
    }

    async fn read(&self, path: &VirtualPath, offset: u64) -> Result<FileReader, StorageError> {
        let home = self.dir.clone();
        let path = path.clone();
        let file = blocking(move || {
            let (fd, _) = open_regular_file(&home, &path)?;
            let mut file = std::fs::File::from(fd);
            if offset > 0 {
                file.seek(SeekFrom::Start(offset))?;
            }
            Ok(file)
        })
        .await?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn open_host_file(&self, path: &VirtualPath) -> Result<Option<HostFile>, StorageError> {
        // Inline: a lookup (module docs; measured in docs/benchmarks.md).
        let (fd, st) = open_regular_file(&self.dir, path)?;
        Ok(Some(HostFile {
            file: std::fs::File::from(fd),
            size: st.st_size.try_into().unwrap_or(0),
        }))
    }

    async fn write(
        &self,
        path: &VirtualPath,
        mode: WriteMode,
    ) -> Result<Box<dyn Upload>, StorageError> {
        let (home, owner) = (self.dir.clone(), self.owner);
        let path = path.clone();
        let upload = blocking(move || LocalUpload::start(&home, &path, mode, owner)).await?;
        Ok(Box::new(upload))
    }

    async fn create_dir(&self, path: &VirtualPath) -> Result<(), StorageError> {
        let (home, owner) = (self.dir.clone(), self.owner);
        let path = path.clone();
        blocking(move || {
            let (parent, name) = open_parent(&home, &path)?;
            rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755))?;
            if let Some(o) = owner {
                rustix::fs::chownat(
                    &parent,
                    name,
                    Some(o.uid),
                    Some(o.gid),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            Ok(())
        })
        .await
    }

    async fn remove_file(&self, path: &VirtualPath) -> Result<(), StorageError> {
        let home = self.dir.clone();
        let path = path.clone();
        blocking(move || {
            let (parent, name) = open_parent(&home, &path)?;
            let st = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                return Err(StorageError::IsADirectory);
            }
            rustix::fs::unlinkat(&parent, name, AtFlags::empty())?;
            Ok(())
        })
        .await
    }

    async fn remove_dir(&self, path: &VirtualPath) -> Result<(), StorageError> {
        let home = self.dir.clone();
        let path = path.clone();
        blocking(move || {
            let (parent, name) = open_parent(&home, &path)?;
            rustix::fs::unlinkat(&parent, name, AtFlags::REMOVEDIR)?;
            Ok(())
        })
        .await
    }

    async fn rename(&self, from: &VirtualPath, to: &VirtualPath) -> Result<(), StorageError> {
        if to.starts_with(from) && to != from {
            return Err(StorageError::Invalid("a directory cannot move into itself"));
        }
        let home = self.dir.clone();
        let (from, to) = (from.clone(), to.clone());
        blocking(move || {
            let (from_dir, from_name) = open_parent(&home, &from)?;
            let (to_dir, to_name) = open_parent(&home, &to)?;
            rustix::fs::renameat(&from_dir, from_name, &to_dir, to_name)?;
            Ok(())
        })
        .await
    }

    async fn set_modified(&self, path: &VirtualPath, time: SystemTime) -> Result<(), StorageError> {
        let home = self.dir.clone();
        let path = path.clone();
        blocking(move || {
            let fd = open_beneath(&home, path.relative(), OFlags::RDONLY)?;
            let since = time
                .duration_since(UNIX_EPOCH)
                .map_err(|_| StorageError::Invalid("times before 1970 are not supported"))?;
            let times = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_OMIT,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: i64::try_from(since.as_secs())
                        .map_err(|_| StorageError::Invalid("time out of range"))?,
                    tv_nsec: since.subsec_nanos().into(),
                },
            };
            rustix::fs::futimens(&fd, &times)?;
            Ok(())
        })
        .await
    }

    async fn set_mode(&self, path: &VirtualPath, mode: u32) -> Result<(), StorageError> {
        let home = self.dir.clone();
        let path = path.clone();
        blocking(move || {
            let fd = open_beneath(&home, path.relative(), OFlags::RDONLY)?;
            // Only permission bits: never setuid, setgid or sticky.
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o777))?;
            Ok(())
        })
        .await
    }
}

struct LocalDirStream {
    home: Arc<OwnedFd>,
    path: VirtualPath,
    dir_fd: Arc<OwnedFd>,
    dir: Option<rustix::fs::Dir>,
}

#[async_trait]
impl DirStream for LocalDirStream {
    async fn next_batch(&mut self) -> Result<Option<Vec<DirEntry>>, StorageError> {
        let Some(mut dir) = self.dir.take() else {
            return Ok(None);
        };
        let home = self.home.clone();
        let dir_fd = self.dir_fd.clone();
        let path = self.path.clone();
        let (dir, batch) = blocking(move || {
            let mut batch = Vec::with_capacity(LIST_BATCH);
            let mut at_end = true;
            for entry in dir.by_ref() {
                let entry = entry?;
                // Names that are not UTF-8 cannot be named over FTP: left out.
                let Ok(name) = entry.file_name().to_str() else {
                    continue;
                };
                if name == "." || name == ".." {
                    continue;
                }
                if name.starts_with(UPLOAD_PREFIX) {
                    remove_if_abandoned(&dir_fd, name);
                    continue;
                }
                let st = match rustix::fs::statat(&*dir_fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    // Removed while we listed: skip it.
                    Err(rustix::io::Errno::NOENT) => continue,
                    Err(e) => return Err(e.into()),
                };
                let mut metadata = metadata_of(&st);
                if metadata.kind == FileKind::Symlink {
                    // Show what the link leads to, if that is inside the home.
                    let target = path
                        .join_name(name)
                        .ok()
                        .and_then(|p| stat_beneath(&home, &p).ok());
                    match target {
                        Some(t) => metadata = t,
                        None => continue,
                    }
                }
                batch.push(DirEntry {
                    name: name.to_owned(),
                    metadata,
                });
                if batch.len() == LIST_BATCH {
                    at_end = false;
                    break;
                }
            }
            Ok((if at_end { None } else { Some(dir) }, batch))
        })
        .await?;
        self.dir = dir;
        if batch.is_empty() && self.dir.is_none() {
            return Ok(None);
        }
        Ok(Some(batch))
    }
}

/// How long an upload's temporary file may go unwritten before it is taken
/// for abandoned. A running upload writes it as the bytes come and stops after
/// `data_timeout` without progress, settling its file; only a server killed
/// in the middle (a crash, `kill -9`, a power cut) leaves one behind.
pub const ABANDONED_UPLOAD_AGE: Duration = Duration::from_secs(24 * 3600);

/// Removes the temporary file `name` (in `dir`) of an upload that a killed
/// server left behind, once it has not been written for
/// [`ABANDONED_UPLOAD_AGE`]: listings come across such files (they never show
/// them), so a directory's leftovers go the next time it is listed, or its
/// user's quota usage measured. Errors leave the file for another time.
fn remove_if_abandoned(dir: &OwnedFd, name: &str) {
    let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
        return;
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return;
    }
    let written = UNIX_EPOCH + Duration::from_secs(u64::try_from(st.st_mtime).unwrap_or(0));
    let idle = SystemTime::now()
        .duration_since(written)
        .unwrap_or_default();
    if idle >= ABANDONED_UPLOAD_AGE {
        let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
    }
}

/// An upload to local disk; see the module documentation for its guarantees.
struct LocalUpload {
    file: tokio::fs::File,
    parent: Arc<OwnedFd>,
    name: String,
    /// The temporary name while writing a whole new file; `None` when writing in
    /// place (APPE, REST+STOR, SFTP's writes into a file).
    temp: Option<String>,
    /// Bytes accepted so far; a failed new upload that received none leaves no file.
    written: u64,
    finished: bool,
    /// Set by [`Upload::sync`]: the commit writes the directory's entry to
    /// disk too.
    durable: bool,
    /// Opened to append (`O_APPEND`): every write lands at the end, so it
    /// cannot move ([`Upload::seek`]).
    appends: bool,
}

impl LocalUpload {
    fn start(
        home: &OwnedFd,
        path: &VirtualPath,
        mode: WriteMode,
        owner: Option<Owner>,
    ) -> Result<Self, StorageError> {
        let (parent, name) = open_parent(home, path)?;
        let existing = match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(rustix::io::Errno::NOENT) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(st) = &existing {
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => return Err(StorageError::IsADirectory),
                FileType::RegularFile => {}
                // Writing through a symlink or to a device is refused.
                _ => return Err(StorageError::PermissionDenied),
            }
        }
        let perms = Mode::from_raw_mode(0o644);
        // The file itself, created if missing, never through a link.
        let in_place = |more: OFlags| {
            rustix::fs::openat(
                &parent,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC | more,
                perms,
            )
        };
        let (fd, temp) = match mode {
            WriteMode::Replace | WriteMode::CreateNew => {
                if mode == WriteMode::CreateNew && existing.is_some() {
                    return Err(StorageError::AlreadyExists);
                }
                let temp = format!("{UPLOAD_PREFIX}{:016x}", rand::random::<u64>());
                let fd = rustix::fs::openat(
                    &parent,
                    temp.as_str(),
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
                    perms,
                )?;
                Owner::give(owner, &fd)?;
                (fd, Some(temp))
            }
            WriteMode::Append => (in_place(OFlags::APPEND)?, None),
            WriteMode::InPlace => (in_place(OFlags::empty())?, None),
            WriteMode::Resume { offset } => {
                let size = existing
                    .as_ref()
                    .map_or(0, |st| u64::try_from(st.st_size).unwrap_or(0));
                if offset > size {
                    return Err(StorageError::OffsetBeyondEnd { offset, size });
                }
                let fd = in_place(OFlags::empty())?;
                rustix::fs::ftruncate(&fd, offset)?;
                let mut file = std::fs::File::from(fd);
                file.seek(SeekFrom::Start(offset))?;
                (OwnedFd::from(file), None)
            }
        };
        if existing.is_none() {
            Owner::give(owner, &fd)?;
        }
        Ok(LocalUpload {
            file: tokio::fs::File::from_std(std::fs::File::from(fd)),
            parent: Arc::new(parent),
            name: name.to_owned(),
            temp,
            written: 0,
            finished: false,
            durable: false,
            appends: mode == WriteMode::Append,
        })
    }

    /// The abort rule, run synchronously (also from `Drop`): a temporary file
    /// that received bytes becomes the target only if no target exists; otherwise
    /// it is removed.
    fn settle_failed(parent: &OwnedFd, temp: &str, name: &str, written: u64) {
        let kept = if written > 0 {
            rustix::fs::renameat_with(parent, temp, parent, name, RenameFlags::NOREPLACE)
        } else {
            Err(rustix::io::Errno::NODATA)
        };
        if kept.is_err() {
            let _ = rustix::fs::unlinkat(parent, temp, AtFlags::empty());
        }
    }
}

#[async_trait]
impl Upload for LocalUpload {
    async fn commit(mut self: Box<Self>) -> Result<u64, StorageError> {
        use tokio::io::AsyncWriteExt;
        // The last write is usually done by now (the client waited for its
        // answer before it closed); the size and the rename are then one
        // trip to the blocking pool.
        self.file.flush().await?;
        let file = self.file.as_fd().try_clone_to_owned()?;
        self.finished = true;
        let (parent, name, temp) = (self.parent.clone(), self.name.clone(), self.temp.take());
        let durable = self.durable;
        blocking(move || {
            let published = rustix::fs::fstat(&file).and_then(|st| {
                if durable {
                    // Bytes written since the sync.
                    rustix::fs::fsync(&file)?;
                }
                if let Some(temp) = &temp {
                    rustix::fs::renameat(&*parent, temp.as_str(), &*parent, name.as_str())?;
                }
                if durable {
                    // The name: the directory's entry (a rename, or a file
                    // created in place) is on disk once the directory is.
                    // Failing here, the file is under its name already and
                    // the commit answers the failure: the client asked for
                    // a durability that cannot be promised.
                    let dir = rustix::fs::openat(
                        &*parent,
                        ".",
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    rustix::fs::fsync(&dir)?;
                }
                Ok(u64::try_from(st.st_size).unwrap_or(0))
            });
            if published.is_err()
                && let Some(temp) = &temp
            {
                // Not published: the old file (or none) stays, as after a
                // failed upload, and the temporary file goes.
                let _ = rustix::fs::unlinkat(&*parent, temp.as_str(), AtFlags::empty());
            }
            Ok(published?)
        })
        .await
    }

    async fn discard(mut self: Box<Self>) {
        use tokio::io::AsyncWriteExt;
        let _ = self.file.flush().await;
        self.remove_temp();
    }

    async fn sync(&mut self) -> Result<(), StorageError> {
        use tokio::io::AsyncWriteExt;
        self.file.flush().await?;
        let file = self.file.as_fd().try_clone_to_owned()?;
        self.durable = true;
        blocking(move || Ok(rustix::fs::fsync(&file)?)).await
    }

    fn host_file(&self) -> Option<std::io::Result<std::fs::File>> {
        use std::os::fd::AsFd;
        Some(
            self.file
                .as_fd()
                .try_clone_to_owned()
                .map(std::fs::File::from),
        )
    }

    fn wrote(&mut self, n: u64) {
        self.written += n;
    }

    async fn seek(&mut self, offset: u64) -> Result<(), StorageError> {
        use tokio::io::{AsyncSeekExt, AsyncWriteExt};
        if self.appends {
            return Err(StorageError::Unsupported(
                "an append writes at the end of the file",
            ));
        }
        // Bytes still on their way to the file go where they were written.
        self.file.flush().await?;
        self.file.seek(SeekFrom::Start(offset)).await?;
        Ok(())
    }

    async fn set_len(&mut self, size: u64) -> Result<(), StorageError> {
        use tokio::io::AsyncWriteExt;
        self.file.flush().await?;
        self.file.set_len(size).await?;
        Ok(())
    }

    async fn abort(mut self: Box<Self>) {
        use tokio::io::AsyncWriteExt;
        let _ = self.file.flush().await;
        self.finished = true;
        if let Some(temp) = self.temp.take() {
            let parent = self.parent.clone();
            let name = self.name.clone();
            let written = self.written;
            let _ = blocking(move || {
                Self::settle_failed(&parent, &temp, &name, written);
                Ok(())
            })
            .await;
        }
    }
}

impl LocalUpload {
    fn remove_temp(&mut self) {
        self.finished = true;
        if let Some(temp) = self.temp.take() {
            let _ = rustix::fs::unlinkat(&*self.parent, temp.as_str(), AtFlags::empty());
        }
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        if !self.finished
            && let Some(temp) = self.temp.take()
        {
            Self::settle_failed(&self.parent, &temp, &self.name, self.written);
        }
    }
}

impl AsyncWrite for LocalUpload {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.file).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.written += n as u64;
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{self, read_all, vp};
    use tokio::io::AsyncWriteExt;

    async fn home(dir: &tempfile::TempDir) -> Arc<dyn Storage> {
        let disk = LocalDisk::new(dir.path().join("root")).expect("root");
        disk.open_home(&vp("/u"), true).await.expect("home")
    }

    #[test]
    fn sessions_share_a_home_until_it_is_replaced() {
        let dir = tempfile::tempdir().expect("tmp");
        let home = dir.path().join("u");
        std::fs::create_dir(&home).expect("home");
        let open = |p: &Path| {
            rustix::fs::open(p, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).expect("open")
        };
        let homes = std::sync::Mutex::new(OpenHomes::new());
        let a = share_home(&homes, "/u".into(), open(&home)).expect("a");
        let b = share_home(&homes, "/u".into(), open(&home)).expect("b");
        assert!(Arc::ptr_eq(&a, &b), "the same home is shared");
        // Replaced under the same name: the next session gets the new one.
        std::fs::rename(&home, dir.path().join("old")).expect("rename");
        std::fs::create_dir(&home).expect("new home");
        let c = share_home(&homes, "/u".into(), open(&home)).expect("c");
        assert!(!Arc::ptr_eq(&a, &c), "a replaced home is opened afresh");
        // Once nobody holds it, it is not kept open.
        drop((a, b));
        let weak = homes
            .lock()
            .expect("lock")
            .get("/u")
            .cloned()
            .expect("entry");
        assert!(weak.upgrade().is_some(), "c still holds the new one");
        drop(c);
        assert!(weak.upgrade().is_none());
    }

    #[tokio::test]
    async fn an_existing_home_is_found_by_a_lookup_and_shared() {
        let dir = tempfile::tempdir().expect("tmp");
        let disk = LocalDisk::new(dir.path().join("root")).expect("root");
        let u = dir.path().join("root/u");
        assert!(disk.open_existing_home(&vp("/u")).is_none(), "not made yet");
        let first = disk.open_home(&vp("/u"), true).await.expect("first");
        let held = disk
            .open_existing_home(&vp("/u"))
            .expect("made by the first");
        let again = disk.open_existing_home(&vp("/u")).expect("again");
        assert!(Arc::ptr_eq(&held, &again), "one descriptor, shared");
        // Replaced under the same name: the lookup finds the new directory,
        // and a new session writes into it.
        std::fs::rename(&u, dir.path().join("root/old")).expect("rename");
        std::fs::create_dir(&u).expect("new home");
        let replaced = disk.open_existing_home(&vp("/u")).expect("the new one");
        assert!(
            !Arc::ptr_eq(&held, &replaced),
            "a replaced home is opened afresh"
        );
        let second = disk.open_home(&vp("/u"), true).await.expect("second");
        let mut up = second
            .write(&vp("/f"), WriteMode::Replace)
            .await
            .expect("write");
        tokio::io::AsyncWriteExt::write_all(&mut up, b"new")
            .await
            .expect("data");
        up.commit().await.expect("commit");
        assert_eq!(std::fs::read(u.join("f")).expect("in the new home"), b"new");
        assert!(!dir.path().join("root/old/f").exists());
        // Removed while sessions still hold it: not found, and made again by
        // the next login.
        drop((first, held, again, replaced));
        std::fs::remove_dir_all(&u).expect("remove");
        assert!(disk.open_existing_home(&vp("/u")).is_none(), "removed");
        let third = disk.open_home(&vp("/u"), true).await.expect("third");
        assert!(u.is_dir(), "made again");
        drop((second, third));
        // A file where the home should be is refused by the full way.
        std::fs::write(dir.path().join("root/w"), b"x").expect("file");
        assert!(disk.open_existing_home(&vp("/w")).is_none());
        assert!(disk.open_home(&vp("/w"), true).await.is_err());
        // A home that is a symlink out of its parent directory is refused
        // both ways, though it stays below the root.
        std::fs::create_dir_all(dir.path().join("root/other/x")).expect("other");
        std::fs::create_dir(dir.path().join("root/homes")).expect("homes");
        std::os::unix::fs::symlink("../other/x", dir.path().join("root/homes/x")).expect("link");
        assert!(disk.open_existing_home(&vp("/homes/x")).is_none());
        assert!(disk.open_home(&vp("/homes/x"), false).await.is_err());
    }

    #[tokio::test]
    async fn space_is_the_file_system_of_the_path() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = home(&dir).await;
        let space = s.space(&vp("/")).await.expect("space");
        let st = rustix::fs::statvfs(dir.path()).expect("statvfs");
        assert_eq!(
            (
                space.fragment_size,
                space.blocks,
                space.files,
                space.filesystem_id
            ),
            (st.f_frsize, st.f_blocks, st.f_files, st.f_fsid)
        );
        assert!(space.blocks_available <= space.blocks && space.max_name_length > 0);
        assert!(matches!(
            s.space(&vp("/missing")).await,
            Err(StorageError::NotFound)
        ));
    }

    #[tokio::test]
    async fn write_read_resume_append() {
        let dir = tempfile::tempdir().expect("tmp");
        conformance::write_read_resume_append(&*home(&dir).await).await;
    }

    #[tokio::test]
    async fn writes_anywhere() {
        let dir = tempfile::tempdir().expect("tmp");
        conformance::writes_anywhere_or_refuses(&*home(&dir).await).await;
    }

    #[tokio::test]
    async fn synced_uploads_commit_whole() {
        let dir = tempfile::tempdir().expect("tmp");
        conformance::synced_uploads_commit_whole(&*home(&dir).await).await;
        // The synced replacement's temporary file was renamed, not left.
        let mut on_disk: Vec<_> = std::fs::read_dir(dir.path().join("root/u"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        on_disk.sort();
        assert_eq!(on_disk, ["fresh", "synced"]);
    }

    #[tokio::test]
    async fn failed_replace_keeps_old_and_failed_new_keeps_partial() {
        let dir = tempfile::tempdir().expect("tmp");
        conformance::failed_uploads_lose_nothing_stored(&*home(&dir).await).await;
        // No temporary file is left either.
        let on_disk = std::fs::read_dir(dir.path().join("root/u"))
            .expect("dir")
            .count();
        assert_eq!(on_disk, 2);
    }

    #[tokio::test]
    async fn symlinks_cannot_leave_the_home() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = home(&dir).await;
        std::fs::write(dir.path().join("secret"), b"x").expect("secret");
        std::fs::create_dir(dir.path().join("root/other")).expect("other");
        let u = dir.path().join("root/u");
        std::os::unix::fs::symlink(dir.path().join("secret"), u.join("abs")).expect("link");
        std::os::unix::fs::symlink("../other", u.join("rel")).expect("link");
        std::fs::write(u.join("inside"), b"in").expect("inside");
        std::os::unix::fs::symlink("inside", u.join("ok")).expect("link");
        for p in ["/abs", "/rel", "/rel/x"] {
            let err = s.read(&vp(p), 0).await.err();
            assert!(
                matches!(err, Some(StorageError::OutsideHome)),
                "{p}: {err:?}"
            );
        }
        assert!(matches!(
            s.create_dir(&vp("/rel/new")).await,
            Err(StorageError::OutsideHome)
        ));
        assert!(!dir.path().join("root/other/new").exists());
        // Writing through a link is refused; replacing the link itself is allowed.
        assert!(matches!(
            s.write(&vp("/abs"), WriteMode::Append).await.err(),
            Some(StorageError::PermissionDenied)
        ));
        assert_eq!(read_all(&*s, "/ok", 0).await, b"in");
        // Listings show links that stay inside, and leave out the others.
        let mut l = s.list(&vp("/")).await.expect("list");
        let mut names = Vec::new();
        while let Some(batch) = l.next_batch().await.expect("batch") {
            names.extend(batch.into_iter().map(|e| e.name));
        }
        names.sort();
        assert_eq!(names, ["inside", "ok"]);
        assert_eq!(
            std::fs::read(dir.path().join("secret")).expect("secret"),
            b"x"
        );
    }

    #[tokio::test]
    async fn directories_and_renames() {
        let dir = tempfile::tempdir().expect("tmp");
        conformance::directories_and_renames(&*home(&dir).await).await;
    }

    #[tokio::test]
    async fn lists_many_entries_in_batches() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = home(&dir).await;
        let u = dir.path().join("root/u");
        for i in 0..1500 {
            std::fs::write(u.join(format!("f{i}")), b"").expect("file");
        }
        let mut l = s.list(&vp("/")).await.expect("list");
        let (mut total, mut batches) = (0, 0);
        while let Some(batch) = l.next_batch().await.expect("batch") {
            assert!(batch.len() <= LIST_BATCH);
            total += batch.len();
            batches += 1;
        }
        assert_eq!(total, 1500);
        assert!(batches >= 3);
    }

    /// A killed server's temporary upload file goes at the next listing once
    /// a day has passed without a write; fresh ones, and an upload running
    /// now, stay; none is ever listed.
    #[tokio::test]
    async fn listings_remove_uploads_abandoned_a_day_ago() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = home(&dir).await;
        let u = dir.path().join("root/u");
        let old = u.join(format!("{UPLOAD_PREFIX}00000000000000aa"));
        let fresh = u.join(format!("{UPLOAD_PREFIX}00000000000000bb"));
        std::fs::write(&old, b"left by a crash").expect("old");
        std::fs::write(&fresh, b"recent").expect("fresh");
        let long_ago = SystemTime::now() - ABANDONED_UPLOAD_AGE - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(long_ago))
            .expect("age it");
        let mut running = s
            .write(&vp("/new"), WriteMode::Replace)
            .await
            .expect("write");
        running.write_all(b"in flight").await.expect("write_all");
        let mut l = s.list(&vp("/")).await.expect("list");
        let mut names = Vec::new();
        while let Some(batch) = l.next_batch().await.expect("batch") {
            names.extend(batch.into_iter().map(|e| e.name));
        }
        assert!(names.is_empty(), "{names:?}");
        assert!(!old.exists(), "abandoned a day ago: removed");
        assert!(fresh.exists(), "written lately: kept");
        running.commit().await.expect("commit");
        assert_eq!(read_all(&*s, "/new", 0).await, b"in flight");
    }
}
