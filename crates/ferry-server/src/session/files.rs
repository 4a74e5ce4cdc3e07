//! File and directory operations: DELE, MKD, RMD, RNFR, RNTO (RFC 959 §4.1.3),
//! SIZE and MDTM (RFC 3659 §3, §4), MFMT (draft-somers-ftp-mfxx), SITE CHMOD and
//! SITE HELP.

use std::time::SystemTime;

use ferry_accounts::Permission;
use ferry_proto::command::PathArg;
use ferry_proto::reply::quote_path;
use ferry_proto::{Reply, timeval};
use ferry_storage::{StorageError, VirtualPath};
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::listing::modified_utc;
use crate::error::SessionError;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn cmd_dele(&mut self, arg: &PathArg) -> Result<Reply, SessionError> {
        let path = self.resolve(arg)?;
        self.check(Permission::Delete, &path)?;
        let size = self.exists(&path).await?.map(|m| m.size);
        self.storage()?
            .remove_file(&path)
            .await
            .map_err(|e| SessionError::storage(&path, e))?;
        if let Some(size) = size {
            self.record_usage(-(size as i64), -1).await;
        }
        Ok(Reply::new(250, format!("Deleted {path}.")))
    }

    pub(super) async fn cmd_mkd(&mut self, arg: &PathArg) -> Result<Reply, SessionError> {
        let path = self.resolve(arg)?;
        self.check(Permission::Mkdir, &path)?;
        self.storage()?
            .create_dir(&path)
            .await
            .map_err(|e| SessionError::storage(&path, e))?;
        Ok(Reply::new(
            257,
            format!("{} created.", quote_path(&path.to_string())),
        ))
    }

    pub(super) async fn cmd_rmd(&mut self, arg: &PathArg) -> Result<Reply, SessionError> {
        let path = self.resolve(arg)?;
        if path.is_root() || self.cwd.starts_with(&path) {
            return Err(SessionError::storage(
                &path,
                StorageError::Invalid("cannot remove the current directory or one above it"),
            ));
        }
        self.check(Permission::Rmdir, &path)?;
        self.storage()?
            .remove_dir(&path)
            .await
            .map_err(|e| SessionError::storage(&path, e))?;
        Ok(Reply::new(250, format!("Removed {path}.")))
    }

    pub(super) async fn cmd_rnfr(&mut self, arg: &PathArg) -> Result<Reply, SessionError> {
        let path = self.resolve(arg)?;
        self.check(Permission::Rename, &path)?;
        self.metadata(&path).await?;
        self.rename_from = Some(path);
        Ok(Reply::new(350, "Ready for RNTO."))
    }

    pub(super) async fn cmd_rnto(
        &mut self,
        arg: &PathArg,
        from: Option<VirtualPath>,
    ) -> Result<Reply, SessionError> {
        let from = from.ok_or(SessionError::BadSequence("send RNFR first"))?;
        let to = self.resolve(arg)?;
        self.logged_in()?
            .rename(&self.opts, &from, &to, true)
            .await?;
        Ok(Reply::new(250, format!("Renamed {from} to {to}.")))
    }

    pub(super) async fn cmd_size(&mut self, arg: &PathArg) -> Result<Reply, SessionError> {
        let path = self.resolve(arg)?;
        self.check(Permission::List, &path)?;
        let meta = self.metadata(&path).await?;
        if meta.is_dir() {
            return Err(SessionError::NotAFile(format!("{path}: not a plain file.")));
        }
        Ok(Reply::new(213, meta.size.to_string()))
    }

    pub(super) async fn cmd_mdtm(&mut self, arg: &PathArg) -> Result<Reply, SessionError> {
        let path = self.resolve(arg)?;
        self.check(Permission::List, &path)?;
        let meta = self.metadata(&path).await?;
        Ok(Reply::new(213, timeval::format(modified_utc(&meta))))
    }

    pub(super) async fn cmd_mfmt(
        &mut self,
        time: OffsetDateTime,
        arg: &PathArg,
    ) -> Result<Reply, SessionError> {
        let path = self.resolve(arg)?;
        self.check(Permission::Overwrite, &path)?;
        let when: SystemTime = time.into();
        self.storage()?
            .set_modified(&path, when)
            .await
            .map_err(|e| SessionError::storage(&path, e))?;
        Ok(Reply::new(
            213,
            format!("Modify={}; {}", timeval::format(time), arg.as_str()),
        ))
    }

    pub(super) async fn cmd_site(&mut self, sub: &str, arg: &str) -> Result<Reply, SessionError> {
        match sub {
            "HELP" => Ok(Reply::multi(
                214,
                vec![
                    "The following SITE commands are recognized:".into(),
                    "CHMOD HELP".into(),
                    "End.".into(),
                ],
            )),
            "CHMOD" => {
                let (mode, name) = arg.trim_start().split_once(' ').ok_or(SessionError::Parse(
                    ferry_proto::ParseError::InvalidArgument("SITE CHMOD takes a mode and a path"),
                ))?;
                let mode = u32::from_str_radix(mode, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or(SessionError::Parse(
                        ferry_proto::ParseError::InvalidArgument(
                            "the mode must be octal, like 644",
                        ),
                    ))?;
                let path = self.resolve(&PathArg::new(name)?)?;
                self.check(Permission::Chmod, &path)?;
                self.storage()?
                    .set_mode(&path, mode)
                    .await
                    .map_err(|e| SessionError::storage(&path, e))?;
                Ok(Reply::new(
                    200,
                    format!("SITE CHMOD command ok: {path} is now {:o}.", mode & 0o777),
                ))
            }
            _ => Err(SessionError::NotImplemented(
                "unknown SITE command; SITE HELP lists them",
            )),
        }
    }
}
