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
use crate::error::{SessionError, TransferError};
use crate::tls::DataStream;
use crate::transfer::{self, CountedUpload};

/// Where a download's bytes come from.
enum Source {
    /// A host file, sent with sendfile.
    HostFile(std::fs::File),
    /// Any backend's byte stream.
    Stream(ferry_storage::FileReader),
}

impl Source {
    /// The bytes as a stream from `offset` (a stream was opened at it already).
    async fn into_reader(
        self,
        offset: u64,
    ) -> Result<ferry_storage::FileReader, crate::error::TransferError> {
        match self {
            Source::Stream(reader) => Ok(reader),
            Source::HostFile(file) => {
                let mut file = tokio::fs::File::from_std(file);
                tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(offset))
                    .await
                    .map_err(|e| crate::error::TransferError::Storage(e.into()))?;
                Ok(Box::new(file))
            }
        }
    }
}

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
        // Binary downloads of host files: plain ones go through sendfile, PROT P
        // ones through a blocking TLS loop; TYPE A needs the stream. The file
        // is opened once: its size comes from the open file, not from a
        // second lookup.
        let sendfile = self.opts.sendfile;
        let host_path = !self.ascii && (self.protect_data || sendfile);
        let host_file = if host_path {
            self.storage()?
                .open_host_file(&path)
                .await
                .map_err(|e| SessionError::storage(&path, e))?
        } else {
            None
        };
        let size = match &host_file {
            Some(host) => host.size,
            None => {
                let meta = self.metadata(&path).await?;
                if meta.is_dir() {
                    return Err(SessionError::storage(&path, StorageError::IsADirectory));
                }
                meta.size
            }
        };
        if offset > size {
            return Err(SessionError::storage(
                &path,
                StorageError::OffsetBeyondEnd { offset, size },
            ));
        }
        self.require_data_setup()?;
        let (ascii, timeout) = (self.ascii, self.opts.data_timeout);
        let source = match host_file {
            Some(host) => Source::HostFile(host.file),
            None => Source::Stream(
                self.storage()?
                    .read(&path, offset)
                    .await
                    .map_err(|e| SessionError::storage(&path, e))?,
            ),
        };
        let rate = self.logged_in()?.ticket.state.download.clone();
        let slots = self.opts.blocking_slots.clone();
        let start = Reply::new(
            150,
            format!(
                "Opening {} mode data connection for {} ({} bytes).",
                self.mode_name(),
                path,
                size - offset
            ),
        );
        self.transfer_step(
            start,
            format!("RETR {path}"),
            move |stream, meter, after_reply| async move {
                // PROT P downloads of host files, and long plain ones, run as
                // a blocking loop when a place for one is free.
                let slot = match (&source, &stream, &rate) {
                    (Source::HostFile(_), DataStream::Tls(_), None) => slots.take(),
                    (Source::HostFile(_), DataStream::Plain(_), None)
                        if sendfile && size - offset >= transfer::OWN_THREAD_FROM =>
                    {
                        slots.take()
                    }
                    _ => None,
                };
                match (source, stream, slot) {
                    (Source::HostFile(file), DataStream::Plain(mut tcp), Some(slot))
                        if sendfile =>
                    {
                        let (sent, file) = transfer::send_file_zero_copy_blocking(
                            file, offset, size, &mut tcp, timeout, meter, slot,
                        )
                        .await?;
                        after_reply.keep(file);
                        after_reply.keep(tcp);
                        Ok(sent)
                    }
                    (Source::HostFile(file), DataStream::Plain(mut tcp), _) if sendfile => {
                        let sent = transfer::send_file_zero_copy(
                            &file,
                            offset,
                            size,
                            &mut tcp,
                            timeout,
                            &meter,
                            rate.as_ref(),
                        )
                        .await?;
                        after_reply.keep(file);
                        after_reply.keep(tcp);
                        Ok(sent)
                    }
                    (Source::HostFile(file), DataStream::Tls(tls), Some(slot)) => {
                        transfer::send_file_tls_blocking(
                            *tls, file, offset, size, timeout, meter, slot,
                        )
                        .await
                    }
                    (source, mut stream, _) => {
                        let reader = source.into_reader(offset).await?;
                        transfer::send_file(
                            reader,
                            &mut stream,
                            ascii,
                            timeout,
                            &meter,
                            rate.as_ref(),
                        )
                        .await
                    }
                }
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
        self.start_upload(path, mode, existing.map(|m| m.size))
            .await
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
                    .start_upload(candidate.clone(), WriteMode::CreateNew, None)
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
        old_size: Option<u64>,
    ) -> Result<TransferStep, SessionError> {
        self.require_data_setup()?;
        let logged_in = self.logged_in()?;
        logged_in
            .account
            .limits
            .check_file_name(&path.to_string())
            .map_err(SessionError::FileNameRefused)?;
        let rate = logged_in.ticket.state.upload.clone();
        // If the data connection never opens, the upload is dropped unused, which
        // aborts it (see `ferry_storage::Upload`).
        let (upload, budget) =
            CountedUpload::open(&self.opts, logged_in, &path, mode, old_size).await?;
        let (ascii, timeout, zero_copy) = (self.ascii, self.opts.data_timeout, self.opts.sendfile);
        let slots = self.opts.blocking_slots.clone();
        let start = Reply::new(150, format!("Ok to send data for {path}."));
        self.transfer_step(
            start,
            format!("STOR {path}"),
            move |mut stream, meter, after_reply| async move {
                // Plain binary uploads to host files without a rate limit run
                // as one blocking loop; the rest are copied piece by piece.
                // A host file that cannot be had (another backend, no second
                // handle) takes the copying path too.
                let blocking = match (&stream, ascii, &rate) {
                    (DataStream::Plain(_), false, None) => {
                        slots.take_with(|| upload.host_file()?.ok())
                    }
                    _ => None,
                };
                let result = match (blocking, &mut stream) {
                    (Some((file, slot)), DataStream::Plain(tcp)) => {
                        transfer::receive_file_blocking(
                            tcp,
                            upload,
                            transfer::HostTarget { file, zero_copy },
                            timeout,
                            meter.clone(),
                            budget.as_ref(),
                            slot,
                        )
                        .await
                    }
                    _ => {
                        transfer::receive_file(
                            &mut stream,
                            upload,
                            ascii,
                            timeout,
                            &meter,
                            rate.as_ref(),
                            budget.as_ref(),
                        )
                        .await
                    }
                };
                // Stopped by the server, not by the client: let a client still
                // sending finish, so that it reads the reply.
                if let Err(
                    TransferError::OverLimit(_)
                    | TransferError::Storage(_)
                    | TransferError::QuotaUnavailable(_),
                ) = &result
                {
                    transfer::drain_after_stop(&mut stream, timeout).await;
                }
                if result.is_ok() {
                    after_reply.keep(stream);
                }
                result
            },
        )
    }

    pub(super) fn mode_name(&self) -> &'static str {
        if self.ascii { "ASCII" } else { "BINARY" }
    }
}
