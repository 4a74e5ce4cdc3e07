//! Attributes and names: SSH_FXP_STAT, LSTAT, FSTAT (§6.8), SETSTAT,
//! FSETSTAT (§6.9), REALPATH (§6.10) of draft-ietf-secsh-filexfer-02.
//!
//! SETSTAT sets what FTP's MFMT and SITE CHMOD set: the modification time
//! (the `overwrite` permission) and the mode bits (`chmod`). A size (the
//! `truncate` of sshfs) cuts a file (the `overwrite` permission) or, where
//! the storage writes anywhere (local disk), grows it with zeros (the
//! `append` permission and room in the quota), as a write handle's size
//! does (`files.rs`); the file's own size is nothing to do (OpenSSH's `put`
//! sends it). Changing owners is not offered: `SSH_FX_OP_UNSUPPORTED`.
//!
//! A file this channel is writing is not under its name until CLOSE; to
//! the channel writing it, STAT, LSTAT and FSTAT answer what it has
//! written (sshfs looks the name up right after OPEN), and a size, set
//! through the handle or the name, sizes the upload.

use std::time::{Duration, UNIX_EPOCH};

use ferry_accounts::Permission;
use ferry_storage::{FileKind, Metadata, VirtualPath};
use russh_sftp::protocol::{Attrs, File, FileAttributes, Name, Packet};

use super::session::{Answer, OpenHandle, SftpSession, metadata_of, ok, resolve};
use super::status::SftpFailure;
use crate::error::SessionError;
use crate::signin::SignedIn;

/// What SFTP tells of an entry: size, type and mode bits, times. No owner:
/// ferry's users are not host users (`ls -l` shows the long names of
/// READDIR, which say `ftp`).
///
/// A FIFO, socket or device gets no type bits: it is not a regular file, and
/// a client that sees that skips it (OpenSSH's `get`: "not a regular file";
/// `get -R` goes on with the rest) instead of failing at OPEN, which refuses
/// it anyway.
pub(crate) fn attributes(m: &Metadata) -> FileAttributes {
    let kind = match m.kind {
        FileKind::Dir => 0o040000,
        FileKind::Symlink => 0o120000,
        FileKind::File => 0o100000,
        FileKind::Special(_) => 0,
    };
    let secs = m
        .modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
    FileAttributes {
        size: Some(m.size),
        uid: None,
        user: None,
        gid: None,
        group: None,
        permissions: Some(kind | (m.mode & 0o7777)),
        atime: Some(secs),
        mtime: Some(secs),
    }
}

/// STAT and LSTAT of a file this channel is not writing: what is stored.
/// Needs only the user, so that it runs beside other requests
/// (`session.rs`).
pub(super) async fn looked_up(user: &SignedIn, id: u32, path: &VirtualPath) -> Answer {
    user.check(Permission::List, path)?;
    let meta = metadata_of(user, path).await?;
    Ok(Packet::Attrs(Attrs {
        id,
        attrs: attributes(&meta),
    }))
}

/// REALPATH: the name resolved from the home, as the client will see it.
pub(super) fn realpath(id: u32, text: &str) -> Answer {
    let path = resolve(text)?;
    Ok(Packet::Name(Name {
        id,
        files: vec![File::dummy(path.to_string())],
    }))
}

impl SftpSession {
    /// STAT and LSTAT. A file this channel is writing answers as the writer
    /// sees it (below) without a look at what is stored, so without the
    /// `list` permission the writer's own upload needs no more than it had.
    pub(super) async fn stat(&mut self, id: u32, text: &str) -> Answer {
        let path = resolve(text)?;
        if let Some(attrs) = self.being_written(&path) {
            return Ok(Packet::Attrs(Attrs { id, attrs }));
        }
        looked_up(&self.user, id, &path).await
    }

    pub(super) async fn fstat(&mut self, id: u32, handle: &str) -> Answer {
        let path = self.handle_path(handle)?;
        let now = (self.opts.clock)();
        let open = match self.handles.get_mut(handle) {
            Some(OpenHandle::File(f)) => {
                if let Some(attrs) = f.pending_attributes(now) {
                    return Ok(Packet::Attrs(Attrs { id, attrs }));
                }
                f.open_metadata()
            }
            _ => None,
        };
        let meta = match open {
            Some(m) => m.map_err(|e| SessionError::storage(&path, e))?,
            None => self.metadata(&path).await?,
        };
        Ok(Packet::Attrs(Attrs {
            id,
            attrs: attributes(&meta),
        }))
    }

    /// SETSTAT. A size for a file this channel is writing is that upload's
    /// business (FSETSTAT on its handle): cutting what is stored under the
    /// name meanwhile would cut the file an append is writing into, or be
    /// undone by the replacement at CLOSE.
    pub(super) async fn setstat(
        &mut self,
        id: u32,
        text: &str,
        mut attrs: FileAttributes,
    ) -> Answer {
        let path = resolve(text)?;
        if let Some(size) = attrs.size
            && let Some(handle) = self.handles.writer_of(&path)
        {
            // The stored file is not the one being written: the size is
            // the upload's.
            self.check_attributes(&path, &attrs)?;
            self.resize_through(&handle, size).await?;
            attrs.size = None;
        }
        self.set_attributes(&path, attrs).await?;
        ok(id)
    }

    /// On a file being written, the attributes are checked now and set
    /// when the upload is committed at CLOSE (before that, the name may
    /// still hold the old file, or nothing).
    pub(super) async fn fsetstat(
        &mut self,
        id: u32,
        handle: &str,
        attrs: FileAttributes,
    ) -> Answer {
        let path = self.handle_path(handle)?;
        if let Some(OpenHandle::File(f)) = self.handles.get_mut(handle)
            && f.is_writing()
        {
            self.check_attributes(&path, &attrs)?;
            if let Some(size) = attrs.size {
                self.resize_through(handle, size).await?;
            }
            if let Some(OpenHandle::File(f)) = self.handles.get_mut(handle) {
                f.set_after_commit(FileAttributes {
                    size: None,
                    ..attrs
                });
            }
            return ok(id);
        }
        self.set_attributes(&path, attrs).await?;
        ok(id)
    }

    /// Whether the user may set `attrs` on `path`.
    fn check_attributes(
        &self,
        path: &VirtualPath,
        attrs: &FileAttributes,
    ) -> Result<(), SftpFailure> {
        if attrs.uid.is_some() || attrs.gid.is_some() {
            return Err(SftpFailure::unsupported("changing owners is not offered"));
        }
        if attrs.permissions.is_some() {
            self.check(Permission::Chmod, path)?;
        }
        if attrs.mtime.is_some() {
            self.check(Permission::Overwrite, path)?;
        }
        Ok(())
    }

    pub(super) async fn set_attributes(
        &self,
        path: &VirtualPath,
        attrs: FileAttributes,
    ) -> Result<(), SftpFailure> {
        self.check_attributes(path, &attrs)?;
        if let Some(size) = attrs.size {
            let meta = self.metadata(path).await?;
            if size != meta.size && meta.is_dir() {
                return Err(SftpFailure::unsupported("a directory has no size to set"));
            }
            if size != meta.size {
                self.resize_stored_file(path, size, meta.size).await?;
            }
        }
        if let Some(mode) = attrs.permissions {
            self.user
                .storage
                .set_mode(path, mode & 0o7777)
                .await
                .map_err(|e| SessionError::storage(path, e))?;
        }
        if let Some(mtime) = attrs.mtime {
            let when = UNIX_EPOCH + Duration::from_secs(u64::from(mtime));
            self.user
                .storage
                .set_modified(path, when)
                .await
                .map_err(|e| SessionError::storage(path, e))?;
        }
        Ok(())
    }

    /// The attributes of `path` as this channel is writing it, when one of
    /// its handles holds an upload of it in progress: a new file or a
    /// replacement is not under its name until CLOSE, and clients that
    /// look up the name right after OPEN (sshfs, to learn the new file's
    /// attributes) or while writing (`ls -l`, a `stat` through sshfs) find
    /// the file they are writing.
    fn being_written(&mut self, path: &VirtualPath) -> Option<FileAttributes> {
        let now = (self.opts.clock)();
        self.handles.files().find_map(|f| {
            (&f.path == path)
                .then(|| f.pending_attributes(now))
                .flatten()
        })
    }

    /// Sizes the upload of the write handle `handle` (FSETSTAT, and SETSTAT
    /// of the name it writes).
    async fn resize_through(&mut self, handle: &str, size: u64) -> Result<(), SftpFailure> {
        let Some(OpenHandle::File(mut file)) = self.handles.take(handle) else {
            return Err(SftpFailure::failure("the file was closed"));
        };
        let resized = self.resize_upload(&mut file, size).await;
        self.handles
            .put_back(handle.to_owned(), OpenHandle::File(file));
        resized
    }

    /// The path of an open file (FSTAT, FSETSTAT).
    fn handle_path(&mut self, handle: &str) -> Result<VirtualPath, SftpFailure> {
        match self.handles.get_mut(handle) {
            Some(OpenHandle::File(f)) => Ok(f.path.clone()),
            _ => Err(SftpFailure::failure(format!(
                "no open file with handle {handle:?}"
            ))),
        }
    }

    /// Where an open file or listing is, for fstatvfs@openssh.com: its
    /// path, or for a file being written its directory (a new file or a
    /// replacement is not under its name until CLOSE).
    pub(super) fn open_path(&mut self, handle: &str) -> Result<VirtualPath, SftpFailure> {
        match self.handles.get_mut(handle) {
            Some(OpenHandle::File(f)) if f.is_writing() => {
                Ok(f.path.parent().unwrap_or_else(VirtualPath::root))
            }
            Some(OpenHandle::File(f)) => Ok(f.path.clone()),
            Some(OpenHandle::Dir(d)) => Ok(d.path().clone()),
            None => Err(SftpFailure::failure(format!(
                "no open file or directory with handle {handle:?}"
            ))),
        }
    }
}
