//! Working directory: PWD, CWD, CDUP and their X-variants (RFC 959 §4.1.1,
//! §4.1.3; RFC 775).

use ferry_proto::Reply;
use ferry_proto::command::PathArg;
use ferry_proto::reply::quote_path;
use ferry_storage::StorageError;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use crate::error::SessionError;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) fn cmd_pwd(&self) -> Reply {
        Reply::new(
            257,
            format!(
                "{} is the current directory.",
                quote_path(&self.cwd.to_string())
            ),
        )
    }

    pub(super) async fn cmd_cwd(&mut self, arg: &PathArg) -> Result<Reply, SessionError> {
        let path = self.resolve(arg)?;
        let meta = self.metadata(&path).await?;
        if !meta.is_dir() {
            return Err(SessionError::storage(&path, StorageError::NotADirectory));
        }
        self.cwd = path;
        Ok(Reply::new(
            250,
            format!("Directory changed to {}.", self.cwd),
        ))
    }
}
