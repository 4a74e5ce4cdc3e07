//! Directories and names: SSH_FXP_OPENDIR, READDIR (§6.7), REMOVE, RENAME
//! (§6.5), MKDIR, RMDIR (§6.6) of draft-ietf-secsh-filexfer-02.
//!
//! A directory is read in the storage's batches, so a directory of any size
//! lists in bounded memory. RENAME refuses an existing target, as version 3
//! asks; posix-rename@openssh.com (`extensions.rs`) replaces a file, as
//! FTP's RNTO does.

use ferry_accounts::Permission;
use ferry_storage::{DirStream, StorageError, VirtualPath};
use russh_sftp::protocol::{File, Handle, Name, Packet};

use super::attrs::attributes;
use super::session::{Answer, OpenHandle, SftpSession, ok, resolve};
use super::status::SftpFailure;
use crate::error::SessionError;
use crate::signin::SignedIn;

/// An open directory.
pub(crate) struct DirHandle {
    path: VirtualPath,
    stream: Box<dyn DirStream>,
}

impl DirHandle {
    /// OPENDIR: the listing of `path` begins. Needs only the user, so that
    /// it runs beside other requests (`session.rs`).
    pub(super) async fn open(user: &SignedIn, path: VirtualPath) -> Result<DirHandle, SftpFailure> {
        user.check(Permission::List, &path)?;
        let stream = user
            .storage
            .list(&path)
            .await
            .map_err(|e| SessionError::storage(&path, e))?;
        Ok(DirHandle { path, stream })
    }

    /// The directory being listed.
    pub(super) fn path(&self) -> &VirtualPath {
        &self.path
    }

    /// READDIR: the next batch of names, with `ls -l` lines as of `now`;
    /// `SSH_FX_EOF` past the last. Needs only the handle, so that READDIRs
    /// run beside READs on other handles (`session.rs`, `overlapping`).
    pub(super) async fn next_names(&mut self, id: u32, now: std::time::SystemTime) -> Answer {
        let now = time::OffsetDateTime::from(now);
        loop {
            let batch = self
                .stream
                .next_batch()
                .await
                .map_err(|e| SftpFailure::from(SessionError::storage(&self.path, e)))?;
            let Some(batch) = batch else {
                return Err(SftpFailure::new(
                    russh_sftp::protocol::StatusCode::Eof,
                    "end of directory",
                ));
            };
            if batch.is_empty() {
                continue;
            }
            let files = batch
                .iter()
                .map(|e| {
                    let mut line = Vec::new();
                    ferry_proto::listing::format_list_line(
                        &crate::session::listing::list_entry(&e.name, &e.metadata),
                        now,
                        &mut line,
                    );
                    let longname = String::from_utf8_lossy(&line).trim_end().to_owned();
                    File {
                        filename: e.name.clone(),
                        longname,
                        attrs: attributes(&e.metadata),
                    }
                })
                .collect();
            return Ok(Packet::Name(Name { id, files }));
        }
    }
}

impl SftpSession {
    pub(super) async fn opendir(&mut self, id: u32, text: &str) -> Answer {
        let path = resolve(text)?;
        let dir = DirHandle::open(&self.user, path).await?;
        let handle = self.add_handle(OpenHandle::Dir(dir))?;
        Ok(Packet::Handle(Handle { id, handle }))
    }

    pub(super) async fn readdir(&mut self, id: u32, handle: &str) -> Answer {
        let now = (self.opts.clock)();
        let Some(OpenHandle::Dir(dir)) = self.handles.get_mut(handle) else {
            return Err(SftpFailure::failure(format!(
                "no open directory with handle {handle:?}"
            )));
        };
        dir.next_names(id, now).await
    }

    pub(super) async fn remove(&mut self, id: u32, text: &str) -> Answer {
        let path = resolve(text)?;
        self.check(Permission::Delete, &path)?;
        let size = self.existing(&path).await?.map(|m| m.size);
        self.user
            .storage
            .remove_file(&path)
            .await
            .map_err(|e| SessionError::storage(&path, e))?;
        if let Some(size) = size {
            self.record_usage(-(size as i64), -1).await;
        }
        ok(id)
    }

    pub(super) async fn mkdir(&mut self, id: u32, text: &str) -> Answer {
        let path = resolve(text)?;
        self.check(Permission::Mkdir, &path)?;
        self.user
            .storage
            .create_dir(&path)
            .await
            .map_err(|e| SessionError::storage(&path, e))?;
        ok(id)
    }

    pub(super) async fn rmdir(&mut self, id: u32, text: &str) -> Answer {
        let path = resolve(text)?;
        if path.is_root() {
            return Err(SessionError::storage(
                &path,
                StorageError::Invalid("cannot remove the home directory"),
            )
            .into());
        }
        self.check(Permission::Rmdir, &path)?;
        self.user
            .storage
            .remove_dir(&path)
            .await
            .map_err(|e| SessionError::storage(&path, e))?;
        ok(id)
    }

    /// RENAME, or with `replace` posix-rename@openssh.com (which replaces
    /// a file at the new name, as FTP's RNTO does): `SignedIn::rename`.
    pub(super) async fn rename(&mut self, id: u32, old: &str, new: &str, replace: bool) -> Answer {
        let from = resolve(old)?;
        let to = resolve(new)?;
        self.user.rename(&self.opts, &from, &to, replace).await?;
        ok(id)
    }
}
