//! Files: SSH_FXP_OPEN, READ, WRITE, CLOSE (draft-ietf-secsh-filexfer-02
//! §6.3, §6.4).
//!
//! Reads are random access. A host file (local storage) is opened at OPEN and
//! read at each READ's offset, cached pages on the async worker and the rest
//! on the blocking pool ([`PositionedReader`]); FSTAT asks the open file.
//! Other backends' files are opened as a stream at the first READ, and a READ
//! at another offset than the last one ended reopens the stream there.
//!
//! Writes go through the same [`Upload`] as FTP's STOR. What the open asks
//! decides the upload:
//!
//! - `CREAT|TRUNC`, or a file that does not exist yet: a replacement (STOR),
//!   visible whole at CLOSE; a failed or dropped one leaves the old file.
//!   `EXCL` makes it a new file only (STOU).
//! - An existing file without `TRUNC`: the file itself is written where the
//!   WRITEs say ([`WriteMode::InPlace`]), every byte not written over kept,
//!   as OpenSSH's server does (sshfs, `dd conv=notrunc`). Writing at or past
//!   the end takes the `append` permission, writing over the bytes the file
//!   had the `overwrite` permission.
//! - `APPEND` (OpenSSH's `reput`, paramiko's mode `a`): every WRITE lands at
//!   the end, whatever its offset, as `O_APPEND` makes it (APPE).
//!
//! On local disk a WRITE may land anywhere, in any order (sshfs writes
//! pages back as the kernel hands them over), past the end too (the gap
//! reads as zeros), and a size (FSETSTAT, or SETSTAT of the name) cuts or
//! grows the file being written. Object storage writes a file front to back:
//! there each WRITE must continue where the last one ended, an existing file
//! without `TRUNC` is appended to from its end (APPE) or, with a smaller
//! size set first, resumed from that size (REST + STOR), and anything else
//! is refused (`SSH_FX_OP_UNSUPPORTED`) with the file kept whole.
//!
//! Permissions, file-name rules, `max_file_size`, quotas and `upload_rate` /
//! `download_rate` apply as over FTP. A write over a limit ends the upload as
//! FTP's 552 does and answers `SSH_FX_FAILURE` "exceeded storage allocation".

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_accounts::Permission;
use ferry_storage::{
    FileKind, FileReader, Metadata, PositionedReader, StorageError, Upload, VirtualPath, WriteMode,
};
use russh_sftp::protocol::{Data, FileAttributes, Handle, OpenFlags, Packet, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::attrs::attributes;
use super::session::{Answer, Audited, OpenHandle, SftpSession, metadata_of, ok, resolve};
use super::status::SftpFailure;
use crate::activity::XferRecord;
use crate::error::SessionError;
use crate::options::ServerOptions;
use crate::signin::SignedIn;
use crate::transfer::{CountedUpload, UploadBudget};

/// An open file.
pub(crate) struct FileHandle {
    pub(super) path: VirtualPath,
    access: Access,
    /// Bytes read or written through the handle.
    moved: u64,
    opened: Instant,
    /// Attributes an FSETSTAT asked for while the file was being written:
    /// set once the upload is committed.
    after_commit: Option<FileAttributes>,
}

/// Whether an OPEN with `flags` writes the file; any other opens it to
/// read.
pub(super) fn opens_to_write(flags: OpenFlags) -> bool {
    flags.intersects(OpenFlags::WRITE | OpenFlags::APPEND)
}

impl FileHandle {
    fn new(path: VirtualPath, access: Access) -> Self {
        FileHandle {
            path,
            access,
            moved: 0,
            opened: Instant::now(),
            after_commit: None,
        }
    }

    /// OPEN to read `path`: a host file is opened now, another backend's
    /// file is looked up (and opened as a stream at the first READ). Needs
    /// only the user, so that it runs beside other requests (`session.rs`).
    pub(super) async fn open_to_read(
        user: &SignedIn,
        path: VirtualPath,
    ) -> Result<FileHandle, SftpFailure> {
        user.check(Permission::Download, &path)?;
        let host_file = user
            .storage
            .open_host_file(&path)
            .await
            .map_err(|e| SessionError::storage(&path, e))?;
        let reading = match host_file {
            Some(file) => Reading::HostFile(file.into_positioned()),
            None => {
                if metadata_of(user, &path).await?.is_dir() {
                    return Err(SessionError::storage(&path, StorageError::IsADirectory).into());
                }
                Reading::Stream(None)
            }
        };
        Ok(FileHandle::new(path, Access::Read(reading)))
    }

    /// READ: up to `len` bytes (at most [`MAX_READ`](super::session::MAX_READ))
    /// from `offset`, at the user's download rate; `SSH_FX_EOF` at the end.
    /// Needs only the handle and the user, so that READs on different
    /// handles run side by side (`session.rs`, `overlapping`).
    pub(super) async fn read(
        &mut self,
        user: &SignedIn,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, SftpFailure> {
        let want = len.min(super::session::MAX_READ) as usize;
        let data = match &mut self.access {
            Access::Read(Reading::HostFile(host)) => host
                .read_at(offset, want)
                .await
                .map_err(|e| SessionError::storage(&self.path, e))?,
            Access::Read(Reading::Stream(reader)) => {
                read_stream(user, &self.path, reader, offset, want).await?
            }
            Access::Write(_) => {
                return Err(SftpFailure::failure("the file was opened for writing"));
            }
        };
        if data.is_empty() {
            return Err(eof());
        }
        if let Some(rate) = &user.ticket.state.download {
            rate.wait_for(data.len()).await;
        }
        self.moved += data.len() as u64;
        Ok(data)
    }

    /// Whether the handle writes the file.
    pub(super) fn is_writing(&self) -> bool {
        matches!(self.access, Access::Write(_))
    }

    /// Whether the handle holds an upload in progress (started, not failed).
    pub(super) fn is_uploading(&self) -> bool {
        matches!(&self.access, Access::Write(w) if w.in_progress())
    }

    pub(super) fn set_after_commit(&mut self, attrs: FileAttributes) {
        self.after_commit = Some(attrs);
    }

    /// What a file being written looks like to the channel writing it,
    /// before CLOSE puts it under its name: a regular file of the bytes it
    /// holds so far (a resumed upload's kept prefix and what was written
    /// after it), with the mode and time an FSETSTAT asked for, else a new
    /// file's mode and `now`. `None` when the handle does not hold an
    /// upload in progress (a read handle, a write handle before its first
    /// WRITE decided the upload, a failed upload): the name shows what is
    /// stored.
    pub(super) fn pending_attributes(&self, now: SystemTime) -> Option<FileAttributes> {
        let Access::Write(writing) = &self.access else {
            return None;
        };
        if !writing.in_progress() {
            return None;
        }
        let asked = self.after_commit.as_ref();
        Some(attributes(&Metadata {
            kind: FileKind::File,
            size: writing.end,
            modified: asked.and_then(|a| a.mtime).map_or(now, |secs| {
                UNIX_EPOCH + Duration::from_secs(u64::from(secs))
            }),
            mode: asked.and_then(|a| a.permissions).unwrap_or(0o644),
            links: 1,
            unique: (0, 0),
        }))
    }

    /// The open file's metadata, where the handle holds a host file (`None`:
    /// ask the storage by path).
    pub(super) fn open_metadata(&self) -> Option<Result<Metadata, StorageError>> {
        match &self.access {
            Access::Read(Reading::HostFile(file)) => Some(file.metadata()),
            _ => None,
        }
    }
}

enum Access {
    Read(Reading),
    Write(Box<Writing>),
}

/// A file open for reading.
enum Reading {
    /// A host file, open since OPEN, read at any offset.
    HostFile(PositionedReader),
    /// Another backend's stream, opened at the first READ, and the offset it
    /// is at.
    Stream(Option<(u64, FileReader)>),
}

/// An upload through a handle.
struct Writing {
    /// The file's size when it was opened, if it existed.
    old_size: Option<u64>,
    /// The upload, once started (at OPEN for a replacement, at the first
    /// WRITE or size otherwise).
    upload: Option<Box<dyn Upload>>,
    budget: Option<UploadBudget>,
    /// The bytes of the old file the upload started with (0 for a
    /// replacement): writing over them takes the `overwrite` permission,
    /// and the budget counts what the file grows past them.
    kept: u64,
    /// Whether the `overwrite` permission for the kept bytes was checked.
    overwrites: bool,
    /// Where the upload's next byte goes.
    next: u64,
    /// The file's size as written so far.
    end: u64,
    /// Opened with `SSH_FXF_APPEND`: every WRITE lands at the end, whatever
    /// its offset (as `O_APPEND`).
    appends: bool,
    /// Set when the upload failed; later WRITEs and the CLOSE answer it.
    failed: Option<SftpFailure>,
    /// Whether the upload writes the stored file itself on a host file
    /// system (into a file, appending, resuming), where other handles
    /// read what it wrote: each WRITE is then on the file before it is
    /// answered. A replacement is written under a temporary name.
    visible: bool,
}

impl Writing {
    /// Nothing written yet to a file that had `old_size` bytes.
    fn new(old_size: Option<u64>) -> Self {
        Writing {
            old_size,
            upload: None,
            budget: None,
            kept: 0,
            overwrites: false,
            next: 0,
            end: 0,
            appends: false,
            failed: None,
            visible: false,
        }
    }

    /// Whether an upload is under way: started and not failed.
    fn in_progress(&self) -> bool {
        self.upload.is_some() && self.failed.is_none()
    }
}

/// The upload that keeps a file's first `size` bytes and goes on from
/// there: a replacement at 0, else a resumption (REST + STOR).
fn cut_at(size: u64) -> WriteMode {
    match size {
        0 => WriteMode::Replace,
        offset => WriteMode::Resume { offset },
    }
}

/// Reads a stream from `offset`, opening it there unless it is there
/// already; empty at the end of the file.
async fn read_stream(
    user: &SignedIn,
    path: &VirtualPath,
    reader: &mut Option<(u64, FileReader)>,
    offset: u64,
    want: usize,
) -> Result<Vec<u8>, SftpFailure> {
    let reopen = !matches!(reader, Some((at, _)) if *at == offset);
    if reopen {
        *reader = None;
        let stream = match user.storage.read(path, offset).await {
            Ok(s) => s,
            Err(StorageError::OffsetBeyondEnd { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(SessionError::storage(path, e).into()),
        };
        *reader = Some((offset, stream));
    }
    let Some((at, stream)) = reader.as_mut() else {
        return Ok(Vec::new());
    };
    let mut buf = vec![0u8; want];
    let mut filled = 0;
    while filled < want {
        let n = stream
            .read(&mut buf[filled..])
            .await
            .map_err(|e| SessionError::storage(path, e.into()))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    *at += filled as u64;
    Ok(buf)
}

fn eof() -> SftpFailure {
    SftpFailure::new(StatusCode::Eof, "end of file")
}

fn bad_handle(handle: &str) -> SftpFailure {
    SftpFailure::failure(format!("no open file with handle {handle:?}"))
}

impl SftpSession {
    /// What this channel's uploads need of it, to take along.
    pub(super) fn uploads(&self) -> Uploads {
        Uploads {
            opts: Arc::clone(&self.opts),
            user: Arc::clone(&self.user),
        }
    }

    pub(super) async fn open(&mut self, o: russh_sftp::protocol::Open) -> Answer {
        let path = resolve(&o.filename)?;
        let flags = o.pflags;
        let file = if opens_to_write(flags) {
            let writing = self.open_for_writing(&path, flags).await?;
            FileHandle::new(path, Access::Write(Box::new(writing)))
        } else {
            FileHandle::open_to_read(&self.user, path).await?
        };
        let handle = self.add_handle(OpenHandle::File(Box::new(file)))?;
        Ok(Packet::Handle(Handle { id: o.id, handle }))
    }

    async fn open_for_writing(
        &self,
        path: &VirtualPath,
        flags: OpenFlags,
    ) -> Result<Writing, SftpFailure> {
        self.user
            .account
            .limits
            .check_file_name(&path.to_string())
            .map_err(SessionError::FileNameRefused)?;
        let existing = self.existing(path).await?;
        if let Some(meta) = &existing {
            if meta.is_dir() {
                return Err(SessionError::storage(path, StorageError::IsADirectory).into());
            }
            if flags.contains(OpenFlags::EXCLUDE) {
                return Err(SessionError::storage(path, StorageError::AlreadyExists).into());
            }
        } else if !flags.contains(OpenFlags::CREATE) {
            return Err(SessionError::storage(path, StorageError::NotFound).into());
        }
        let old_size = existing.map(|m| m.size);
        let mut writing = Writing::new(old_size);
        writing.appends = flags.contains(OpenFlags::APPEND);
        // A new file, or a truncated one, is a replacement from the start.
        if old_size.is_none() || flags.contains(OpenFlags::TRUNCATE) {
            let (mode, action) = match old_size {
                Some(_) => (WriteMode::Replace, Permission::Overwrite),
                None if flags.contains(OpenFlags::EXCLUDE) => {
                    (WriteMode::CreateNew, Permission::Upload)
                }
                None => (WriteMode::Replace, Permission::Upload),
            };
            let uploads = self.uploads();
            uploads.check(action, path)?;
            uploads.begin_upload(path, &mut writing, mode, 0, 0).await?;
        }
        Ok(writing)
    }

    /// FSETSTAT with a size on a write handle (sshfs's `ftruncate`, and its
    /// `truncate` through a handle it opens for it), and SETSTAT's of the
    /// name of a file the channel is writing: see [`Uploads::resize`].
    pub(super) async fn resize_upload(
        &self,
        file: &mut FileHandle,
        size: u64,
    ) -> Result<(), SftpFailure> {
        let Access::Write(writing) = &mut file.access else {
            return Err(SftpFailure::failure("the file was opened for reading"));
        };
        self.uploads().resize(&file.path, writing, size).await
    }

    /// SETSTAT with a size other than the stored file's (sshfs's
    /// `truncate`): the stored file cut to `size` bytes or grown with zeros
    /// to it, as a write handle opened on it without `TRUNC` would be
    /// ([`Uploads::resize`]), the quota's usage following.
    pub(super) async fn resize_stored_file(
        &self,
        path: &VirtualPath,
        size: u64,
        stored: u64,
    ) -> Result<(), SftpFailure> {
        let mut writing = Writing::new(Some(stored));
        self.uploads().resize(path, &mut writing, size).await?;
        match writing.upload {
            Some(upload) => upload
                .commit()
                .await
                .map(|_| ())
                .map_err(|e| SessionError::storage(path, e).into()),
            None => Ok(()),
        }
    }

    /// Takes an open file out of the table for a request.
    fn take_file(&mut self, handle: &str) -> Result<Box<FileHandle>, SftpFailure> {
        match self.handles.take(handle) {
            Some(OpenHandle::File(f)) => Ok(f),
            Some(other) => {
                self.handles.put_back(handle.to_owned(), other);
                Err(bad_handle(handle))
            }
            None => Err(bad_handle(handle)),
        }
    }

    pub(super) async fn read(&mut self, r: russh_sftp::protocol::Read) -> Answer {
        let mut file = self.take_file(&r.handle)?;
        let result = file.read(&self.user, r.offset, r.len).await;
        self.handles.put_back(r.handle, OpenHandle::File(file));
        Ok(Packet::Data(Data {
            id: r.id,
            data: result?,
        }))
    }

    pub(super) async fn write(&mut self, w: russh_sftp::protocol::Write) -> Answer {
        let mut file = self.take_file(&w.handle)?;
        let result = self
            .uploads()
            .write_into(&mut file, w.offset, &w.data)
            .await;
        self.handles.put_back(w.handle, OpenHandle::File(file));
        result?;
        ok(w.id)
    }

    /// fsync@openssh.com: makes what the handle wrote durable, and its
    /// commit at CLOSE ([`Upload::sync`]). A read handle, or a write handle
    /// that has not written yet, has nothing to make durable. A failure ends
    /// the upload as a failed WRITE does.
    pub(super) async fn fsync(&mut self, id: u32, handle: &str) -> (Option<Audited>, Answer) {
        let mut audited = Audited {
            verb: "FSYNC",
            arg: handle.to_owned(),
            path: None,
        };
        let mut file = match self.take_file(handle) {
            Ok(file) => file,
            Err(f) => return (Some(audited), Err(f)),
        };
        audited.path = Some(file.path.to_string());
        let result = sync_writes(&mut file).await;
        self.handles
            .put_back(handle.to_owned(), OpenHandle::File(file));
        (Some(audited), result.and_then(|()| ok(id)))
    }

    pub(super) async fn close(&mut self, id: u32, handle: &str) -> Answer {
        let ended = match self.handles.take(handle) {
            Some(OpenHandle::File(file)) => self.end_file(*file, true).await,
            Some(OpenHandle::Dir(_)) => Ok(()),
            None => return Err(bad_handle(handle)),
        };
        self.handles.closed();
        ended?;
        ok(id)
    }

    /// Ends a file's handle: commits its upload (`commit`) or ends it as
    /// after a failure, and writes the audit record and the xferlog line.
    pub(super) async fn end_file(&self, file: FileHandle, commit: bool) -> Result<(), SftpFailure> {
        let FileHandle {
            path,
            access,
            moved,
            opened,
            after_commit,
        } = file;
        let (direction, result) = match access {
            Access::Read(_) => ('o', Ok(())),
            Access::Write(writing) => {
                let Writing { upload, failed, .. } = *writing;
                let result = match (failed, upload) {
                    (Some(failed), _) => Err(failed),
                    (None, Some(upload)) if commit => upload
                        .commit()
                        .await
                        .map(|_| ())
                        .map_err(|e| SessionError::storage(&path, e).into()),
                    (None, Some(upload)) => {
                        upload.abort().await;
                        Err(SftpFailure::failure("the channel closed mid-upload"))
                    }
                    (None, None) => Ok(()),
                };
                let result = match (result, after_commit) {
                    (Ok(()), Some(attrs)) if commit => self.set_attributes(&path, attrs).await,
                    (result, _) => result,
                };
                ('i', result)
            }
        };
        let took = opened.elapsed();
        let code = match &result {
            Ok(()) => StatusCode::Ok,
            Err(f) => f.code,
        };
        let text = path.to_string();
        self.audit("CLOSE", Some(&text), Some(&text), code, Some(moved), took);
        if self.opts.activity.is_on() {
            let full = self.full_path(&path);
            self.opts.activity.xfer(&XferRecord {
                end: (self.opts.clock)(),
                duration: took,
                client: self.peer.remote,
                bytes: moved,
                path: &full,
                ascii: false,
                direction,
                anonymous: matches!(
                    self.user.account.kind,
                    ferry_accounts::AccountKind::Anonymous
                ),
                user: &self.user.account.name,
                complete: result.is_ok(),
            });
        }
        result
    }
}

/// Makes what a file handle wrote durable (fsync@openssh.com).
/// What a file's upload needs of its channel: the server's options and the
/// signed-in user (rules, storage, quotas, rates). A WRITE run beside other
/// requests takes it along instead of the channel
/// (`SftpSession::answer_requests`).
pub(super) struct Uploads {
    pub(super) opts: Arc<ServerOptions>,
    pub(super) user: Arc<SignedIn>,
}

impl Uploads {
    /// Whether the rules allow `action` on `path`.
    fn check(&self, action: Permission, path: &VirtualPath) -> Result<(), SftpFailure> {
        Ok(self.user.check(action, path)?)
    }

    /// Starts the upload of an existing file opened without `TRUNC`, for a
    /// WRITE or a size at `offset`: where the storage writes anywhere, the
    /// file itself, from offset 0; elsewhere an append at the file's end.
    async fn begin_in_place(
        &self,
        path: &VirtualPath,
        writing: &mut Writing,
        offset: u64,
    ) -> Result<(), SftpFailure> {
        let size = writing.old_size.unwrap_or(0);
        if self.user.storage.writes_anywhere() && !writing.appends {
            let inside = offset < size;
            let action = if inside {
                Permission::Overwrite
            } else {
                Permission::Append
            };
            self.check(action, path)?;
            writing.overwrites = inside;
            return self
                .begin_upload(path, writing, WriteMode::InPlace, size, 0)
                .await;
        }
        if offset != size && !writing.appends {
            // An upload from there would keep the bytes before the offset
            // and lose those after what is written: refused, nothing lost.
            return Err(SftpFailure::unsupported(format!(
                "this storage writes a file front to back: writing at {offset} into a file \
                 of {size} bytes is not offered; open it with truncation to replace it, \
                 write at its end to append, or cut it first (SETSTAT size)"
            )));
        }
        self.check(Permission::Append, path)?;
        self.begin_upload(path, writing, WriteMode::Append, size, size)
            .await
    }

    /// Makes the file `writing` writes `size` bytes long. Its size now is
    /// nothing to do. Where the storage writes anywhere, the file is cut
    /// (cutting into the old file's bytes takes the `overwrite`
    /// permission) or grown with zeros (the `append` permission, and room
    /// in the quota). Elsewhere, only a file not yet written to can be cut:
    /// its upload then starts there, keeping the bytes before it (REST +
    /// STOR, or a replacement at 0; the `overwrite` permission).
    async fn resize(
        &self,
        path: &VirtualPath,
        writing: &mut Writing,
        size: u64,
    ) -> Result<(), SftpFailure> {
        if let Some(failed) = &writing.failed {
            return Err(failed.clone());
        }
        let current = match writing.upload {
            Some(_) => writing.end,
            None => writing.old_size.unwrap_or(0),
        };
        if size == current {
            return Ok(());
        }
        if !self.user.storage.writes_anywhere() {
            if writing.upload.is_some() || size > current {
                return Err(SftpFailure::unsupported(format!(
                    "this storage writes a file front to back: a file being written, or \
                     growing one, cannot go from {current} to {size} bytes; only a file not \
                     yet written to can be cut"
                )));
            }
            self.check(Permission::Overwrite, path)?;
            writing.overwrites = true;
            return self
                .begin_upload(path, writing, cut_at(size), size, size)
                .await;
        }
        if writing.upload.is_none() {
            self.begin_in_place(path, writing, size).await?;
        }
        self.may_change_kept(path, writing, size)?;
        make_room(writing, size).await?;
        let Some(upload) = writing.upload.as_mut() else {
            return Err(SftpFailure::failure("the upload has ended"));
        };
        let mut resized = upload.set_len(size).await;
        if resized.is_ok() && writing.appends && writing.next > size {
            // An append goes on at the new end: an append upload writes
            // there by itself (and cannot seek), a replacement is moved.
            resized = match upload.seek(size).await {
                Err(StorageError::Unsupported(_)) => Ok(()),
                other => other,
            };
            writing.next = size;
        }
        if let Err(e) = resized {
            let failure = SessionError::storage(path, e).into();
            return Err(fail_upload(writing, failure, false).await);
        }
        writing.end = size;
        Ok(())
    }

    /// A write or a size from `from` on changes the old file's bytes when
    /// `from` lies among those the upload kept: the `overwrite` permission,
    /// checked once per upload.
    fn may_change_kept(
        &self,
        path: &VirtualPath,
        writing: &mut Writing,
        from: u64,
    ) -> Result<(), SftpFailure> {
        if from < writing.kept && !writing.overwrites {
            self.check(Permission::Overwrite, path)?;
            writing.overwrites = true;
        }
        Ok(())
    }

    /// Starts `writing`'s upload of `path` in `mode`, which keeps the old
    /// file's first `kept` bytes and writes its first byte at `at`.
    async fn begin_upload(
        &self,
        path: &VirtualPath,
        writing: &mut Writing,
        mode: WriteMode,
        kept: u64,
        at: u64,
    ) -> Result<(), SftpFailure> {
        let (upload, budget) = self.start_upload(path, mode, writing.old_size).await?;
        writing.visible = self.user.storage.writes_anywhere()
            && !matches!(mode, WriteMode::Replace | WriteMode::CreateNew);
        writing.upload = Some(upload);
        writing.budget = budget;
        writing.kept = kept;
        writing.end = kept;
        writing.next = at;
        Ok(())
    }

    async fn start_upload(
        &self,
        path: &VirtualPath,
        mode: WriteMode,
        old_size: Option<u64>,
    ) -> Result<(Box<dyn Upload>, Option<UploadBudget>), SftpFailure> {
        Ok(CountedUpload::open(&self.opts, &self.user, path, mode, old_size).await?)
    }

    pub(super) async fn write_into(
        &self,
        file: &mut FileHandle,
        offset: u64,
        data: &[u8],
    ) -> Result<(), SftpFailure> {
        let Access::Write(writing) = &mut file.access else {
            return Err(SftpFailure::failure("the file was opened for reading"));
        };
        if let Some(failed) = &writing.failed {
            return Err(failed.clone());
        }
        if writing.upload.is_none() {
            self.begin_in_place(&file.path, writing, offset).await?;
        }
        let offset = if writing.appends { writing.end } else { offset };
        self.may_change_kept(&file.path, writing, offset)?;
        if offset != writing.next {
            let Some(upload) = writing.upload.as_mut() else {
                return Err(SftpFailure::failure("the upload has ended"));
            };
            match upload.seek(offset).await {
                Ok(()) => writing.next = offset,
                Err(StorageError::Unsupported(_)) => {
                    return Err(SftpFailure::unsupported(format!(
                        "this storage writes a file front to back: the next write is at {}, \
                         not {offset}",
                        writing.next
                    )));
                }
                Err(e) => {
                    let failure = SessionError::storage(&file.path, e).into();
                    return Err(fail_upload(writing, failure, false).await);
                }
            }
        }
        let len = data.len() as u64;
        make_room(writing, offset.saturating_add(len)).await?;
        if let Some(rate) = &self.user.ticket.state.upload {
            rate.wait_for(data.len()).await;
        }
        let Some(upload) = writing.upload.as_mut() else {
            return Err(SftpFailure::failure("the upload has ended"));
        };
        // A host file's write may still be on its way when `write_all`
        // returns (tokio's `File` hands it to the blocking pool); where
        // other handles read the file, it is waited for.
        let written = match upload.write_all(data).await {
            Ok(()) if writing.visible => upload.flush().await,
            other => other,
        };
        if let Err(e) = written {
            let failure: SftpFailure = SessionError::storage(&file.path, e.into()).into();
            return Err(fail_upload(writing, failure, false).await);
        }
        writing.next += len;
        writing.end = writing.end.max(writing.next);
        file.moved += len;
        Ok(())
    }
}

async fn sync_writes(file: &mut FileHandle) -> Result<(), SftpFailure> {
    let Access::Write(writing) = &mut file.access else {
        return Ok(());
    };
    if let Some(failed) = &writing.failed {
        return Err(failed.clone());
    }
    let Some(upload) = writing.upload.as_mut() else {
        return Ok(());
    };
    if let Err(e) = upload.sync().await {
        let failure = SessionError::storage(&file.path, e).into();
        return Err(fail_upload(writing, failure, false).await);
    }
    Ok(())
}

/// Reserves what growing the file to `new_end` bytes takes of the upload's
/// budget; past a limit, the upload ends as FTP's 552 ends it.
async fn make_room(writing: &mut Writing, new_end: u64) -> Result<(), SftpFailure> {
    let Some(budget) = &writing.budget else {
        return Ok(());
    };
    let stored = writing.end.saturating_sub(writing.kept);
    let grown = new_end.saturating_sub(writing.kept).saturating_sub(stored);
    if grown == 0 {
        return Ok(());
    }
    let room = match budget.room(stored, grown).await {
        Ok(room) => room,
        Err(e) => return Err(fail_upload(writing, e.into(), false).await),
    };
    if room < grown {
        let setting = budget.setting(stored + room).to_owned();
        let failure = SftpFailure::failure(format!("exceeded storage allocation ({setting})"));
        return Err(fail_upload(writing, failure, true).await);
    }
    Ok(())
}

/// Ends a failed upload: over a limit it is discarded (`over_limit`), as
/// FTP's 552; otherwise aborted. Answers the failure, kept for what follows.
async fn fail_upload(writing: &mut Writing, failure: SftpFailure, over_limit: bool) -> SftpFailure {
    if let Some(upload) = writing.upload.take() {
        if over_limit {
            upload.discard().await;
        } else {
            upload.abort().await;
        }
    }
    writing.failed = Some(failure.clone());
    failure
}
