//! File transfers: RETR, STOR, STOU, APPE (RFC 959 §4.1.3), with REST (RFC 3659
//! §5) for resuming. ABOR is handled by the session loop while a transfer runs.
//!
//! Which permission an upload needs depends on what it does to the file:
//! `upload` to create one, `overwrite` to replace one (or to resume inside it),
//! `append` to add to its end (APPE, or REST at its exact size).

use ferry_accounts::Permission;
use ferry_proto::Reply;
use ferry_proto::command::PathArg;
use ferry_storage::{StorageError, VirtualPath, WriteMode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Session, TransferStep};
use crate::error::SessionError;
use crate::transfer;

/// STOR or APPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StoreKind {
    Stor,
    Appe,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn cmd_retr(&mut self, arg: &PathArg) -> Result<TransferStep, SessionError> {
        let path = self.resolve(arg)?;
        let offset = self.rest.take().unwrap_or(0);
        self.check(Permission::Download, &path)?;
        let meta = self.metadata(&path).await?;
        if meta.is_dir() {
            return Err(SessionError::storage(&path, StorageError::IsADirectory));
        }
        if offset > meta.size {
            return Err(SessionError::storage(
                &path,
                StorageError::OffsetBeyondEnd {
                    offset,
                    size: meta.size,
                },
            ));
        }
        self.require_data_setup()?;
        let reader = self
            .storage()?
            .read(&path, offset)
            .await
            .map_err(|e| SessionError::storage(&path, e))?;
        let (ascii, timeout) = (self.ascii, self.opts.data_timeout);
        let start = Reply::new(
            150,
            format!(
                "Opening {} mode data connection for {} ({} bytes).",
                self.mode_name(),
                path,
                meta.size - offset
            ),
        );
        self.transfer_step(
            start,
            format!("RETR {path}"),
            move |mut stream, meter| async move {
                transfer::send_file(reader, &mut stream, ascii, timeout, &meter).await
            },
        )
    }

    pub(super) async fn cmd_store(
        &mut self,
        arg: &PathArg,
        kind: StoreKind,
    ) -> Result<TransferStep, SessionError> {
        let path = self.resolve(arg)?;
        let offset = self.rest.take().filter(|&n| n > 0);
        let existing = self.exists(&path).await?;
        if existing.as_ref().is_some_and(|m| m.is_dir()) {
            return Err(SessionError::storage(&path, StorageError::IsADirectory));
        }
        let (mode, action) = match (kind, &existing, offset) {
            (StoreKind::Appe, None, _) => (WriteMode::Append, Permission::Upload),
            (StoreKind::Appe, Some(_), _) => (WriteMode::Append, Permission::Append),
            (StoreKind::Stor, None, None) => (WriteMode::Replace, Permission::Upload),
            (StoreKind::Stor, Some(_), None) => (WriteMode::Replace, Permission::Overwrite),
            (StoreKind::Stor, None, Some(n)) => {
                (WriteMode::Resume { offset: n }, Permission::Upload)
            }
            (StoreKind::Stor, Some(m), Some(n)) => (
                WriteMode::Resume { offset: n },
                if n >= m.size {
                    Permission::Append
                } else {
                    Permission::Overwrite
                },
            ),
        };
        self.check(action, &path)?;
        self.start_upload(path, mode).await
    }

    pub(super) async fn cmd_stou(
        &mut self,
        arg: Option<PathArg>,
    ) -> Result<TransferStep, SessionError> {
        self.rest = None;
        let base = match &arg {
            Some(a) => self.resolve(a)?,
            None => self
                .cwd
                .join_name("ferry.upload")
                .map_err(SessionError::Path)?,
        };
        let parent = base.parent().unwrap_or_else(VirtualPath::root);
        let stem = base.file_name().unwrap_or("ferry.upload").to_owned();
        for i in 0..1000u32 {
            let name = if i == 0 {
                stem.clone()
            } else {
                format!("{stem}.{i}")
            };
            let candidate = parent.join_name(&name)?;
            if self.exists(&candidate).await?.is_none() {
                self.check(Permission::Upload, &candidate)?;
                let mut step = self
                    .start_upload(candidate.clone(), WriteMode::CreateNew)
                    .await?;
                step.start = Reply::new(150, format!("FILE: {name}"));
                return Ok(step);
            }
        }
        Err(SessionError::storage(&base, StorageError::AlreadyExists))
    }

    async fn start_upload(
        &mut self,
        path: VirtualPath,
        mode: WriteMode,
    ) -> Result<TransferStep, SessionError> {
        self.require_data_setup()?;
        // If the data connection never opens, the upload is dropped unused, which
        // aborts it (see `ferry_storage::Upload`).
        let upload = self
            .storage()?
            .write(&path, mode)
            .await
            .map_err(|e| SessionError::storage(&path, e))?;
        let (ascii, timeout) = (self.ascii, self.opts.data_timeout);
        let start = Reply::new(150, format!("Ok to send data for {path}."));
        self.transfer_step(
            start,
            format!("STOR {path}"),
            move |mut stream, meter| async move {
                transfer::receive_file(&mut stream, upload, ascii, timeout, &meter).await
            },
        )
    }

    pub(super) fn mode_name(&self) -> &'static str {
        if self.ascii { "ASCII" } else { "BINARY" }
    }
}
