//! One session with a file server, FTP or SFTP, behind one type: the whole-file
//! transfers ([`crate::files`]), mirroring, the command line and the URL opener
//! use it without caring which protocol the URL named.
//!
//! What only FTP has (raw commands, TYPE A, checksums by HASH and XSHA*, the
//! greeting) is reached through [`RemoteSession::as_ftp`]; asked of SFTP, it
//! is an [`ClientError::Unsupported`] error or `None`.

use time::OffsetDateTime;

use crate::checksum::Checksum;
use crate::error::{ClientError, Result};
use crate::listing::RemoteEntry;
use crate::resume::FileState;
use crate::session::{ConnectOptions, FtpSession};
use crate::sftp::{SftpDownload, SftpSession, SftpUpload};
use crate::transfer::{Download, Upload, UploadMode};
use crate::url::FtpUrl;

/// A logged-in session: FTP (plain or TLS) or SFTP.
#[derive(Debug)]
pub enum RemoteSession {
    Ftp(FtpSession),
    Sftp(SftpSession),
}

impl From<FtpSession> for RemoteSession {
    fn from(s: FtpSession) -> Self {
        RemoteSession::Ftp(s)
    }
}

impl RemoteSession {
    /// Connects and logs in, by the URL's scheme.
    pub async fn open(url: &FtpUrl, options: &ConnectOptions) -> Result<Self> {
        if url.security.is_ftp() {
            FtpSession::open(url, options).await.map(RemoteSession::Ftp)
        } else {
            SftpSession::open(url, options)
                .await
                .map(RemoteSession::Sftp)
        }
    }

    /// The FTP session, if this is one.
    pub fn as_ftp(&mut self) -> Option<&mut FtpSession> {
        match self {
            RemoteSession::Ftp(s) => Some(s),
            RemoteSession::Sftp(_) => None,
        }
    }

    /// "FTP" or "SFTP", for messages.
    pub fn protocol(&self) -> &'static str {
        match self {
            RemoteSession::Ftp(_) => "FTP",
            RemoteSession::Sftp(_) => "SFTP",
        }
    }

    /// TYPE I (binary) or TYPE A. SFTP moves bytes as they are: binary only.
    pub async fn set_binary(&mut self, binary: bool) -> Result<()> {
        match self {
            RemoteSession::Ftp(s) => s.set_binary(binary).await,
            RemoteSession::Sftp(_) if binary => Ok(()),
            RemoteSession::Sftp(_) => Err(ClientError::Unsupported(
                "ASCII mode is an FTP feature: SFTP moves files byte for byte".to_owned(),
            )),
        }
    }

    pub async fn pwd(&mut self) -> Result<String> {
        match self {
            RemoteSession::Ftp(s) => s.pwd().await,
            RemoteSession::Sftp(s) => Ok(s.pwd()),
        }
    }

    pub async fn cwd(&mut self, path: &str) -> Result<()> {
        match self {
            RemoteSession::Ftp(s) => s.cwd(path).await,
            RemoteSession::Sftp(s) => s.cwd(path).await,
        }
    }

    pub async fn cdup(&mut self) -> Result<()> {
        match self {
            RemoteSession::Ftp(s) => s.cdup().await,
            RemoteSession::Sftp(s) => s.cwd("..").await,
        }
    }

    /// Creates a directory; the name the server gives it.
    pub async fn mkdir(&mut self, path: &str) -> Result<String> {
        match self {
            RemoteSession::Ftp(s) => s.mkdir(path).await,
            RemoteSession::Sftp(s) => s.mkdir(path).await,
        }
    }

    pub async fn rmdir(&mut self, path: &str) -> Result<()> {
        match self {
            RemoteSession::Ftp(s) => s.rmdir(path).await,
            RemoteSession::Sftp(s) => s.rmdir(path).await,
        }
    }

    pub async fn delete(&mut self, path: &str) -> Result<()> {
        match self {
            RemoteSession::Ftp(s) => s.delete(path).await,
            RemoteSession::Sftp(s) => s.delete(path).await,
        }
    }

    pub async fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        match self {
            RemoteSession::Ftp(s) => s.rename(from, to).await,
            RemoteSession::Sftp(s) => s.rename(from, to).await,
        }
    }

    /// The size of a file; `None` when an FTP server has no SIZE.
    pub async fn size(&mut self, path: &str) -> Result<Option<u64>> {
        match self {
            RemoteSession::Ftp(s) => s.size(path).await,
            RemoteSession::Sftp(s) => s.size(path).await,
        }
    }

    /// The modification time; `None` when the server does not tell.
    pub async fn modified(&mut self, path: &str) -> Result<Option<OffsetDateTime>> {
        match self {
            RemoteSession::Ftp(s) => s.modified(path).await,
            RemoteSession::Sftp(s) => s.modified(path).await,
        }
    }

    /// A file's size and modification time (FTP: SIZE and MDTM, SFTP: one
    /// STAT); `None` when the server tells no size.
    pub async fn file_state(&mut self, path: &str) -> Result<Option<FileState>> {
        match self {
            RemoteSession::Ftp(s) => {
                let Some(size) = s.size(path).await? else {
                    return Ok(None);
                };
                let modified = s.modified(path).await?;
                Ok(Some(FileState { size, modified }))
            }
            RemoteSession::Sftp(s) => s.file_state(path).await,
        }
    }

    /// Sets the modification time; `Ok(false)` when the server cannot.
    pub async fn set_modified(&mut self, path: &str, when: OffsetDateTime) -> Result<bool> {
        match self {
            RemoteSession::Ftp(s) => s.set_modified(path, when).await,
            RemoteSession::Sftp(s) => s.set_modified(path, when).await,
        }
    }

    /// The server's checksum of a file or a range of it; `None` when it offers
    /// none (SFTP servers: none in version 3).
    pub async fn checksum(
        &mut self,
        path: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Option<Checksum>> {
        match self {
            RemoteSession::Ftp(s) => s.checksum(path, range).await,
            RemoteSession::Sftp(_) => Ok(None),
        }
    }

    pub async fn noop(&mut self) -> Result<()> {
        match self {
            RemoteSession::Ftp(s) => s.noop().await,
            RemoteSession::Sftp(s) => s.noop().await,
        }
    }

    /// The entries of a directory.
    pub async fn list(&mut self, path: &str) -> Result<Vec<RemoteEntry>> {
        match self {
            RemoteSession::Ftp(s) => s.list(path).await,
            RemoteSession::Sftp(s) => s.list(path).await,
        }
    }

    /// A listing for people: the FTP server's LIST lines, or `ls -l` lines
    /// made from SFTP attributes.
    pub async fn list_lines(&mut self, path: &str) -> Result<Vec<String>> {
        match self {
            RemoteSession::Ftp(s) => s.list_lines(path).await,
            RemoteSession::Sftp(s) => Ok(s
                .list(path)
                .await?
                .iter()
                .map(RemoteEntry::long_line)
                .collect()),
        }
    }

    /// The names in a directory.
    pub async fn names(&mut self, path: &str) -> Result<Vec<String>> {
        match self {
            RemoteSession::Ftp(s) => s.names(path).await,
            RemoteSession::Sftp(s) => Ok(s.list(path).await?.into_iter().map(|e| e.name).collect()),
        }
    }

    /// Starts a download from `offset` on.
    pub async fn download(&mut self, path: &str, offset: u64) -> Result<RemoteDownload<'_>> {
        match self {
            RemoteSession::Ftp(s) => s.download(path, offset).await.map(RemoteDownload::Ftp),
            RemoteSession::Sftp(s) => s
                .download(path, offset)
                .await
                .map(|d| RemoteDownload::Sftp(Box::new(d))),
        }
    }

    /// Starts an upload.
    pub async fn upload(&mut self, path: &str, mode: UploadMode) -> Result<RemoteUpload<'_>> {
        match self {
            RemoteSession::Ftp(s) => s.upload(path, mode).await.map(RemoteUpload::Ftp),
            RemoteSession::Sftp(s) => s
                .upload(path, mode)
                .await
                .map(|u| RemoteUpload::Sftp(Box::new(u))),
        }
    }

    /// QUIT, or the end of the SSH connection.
    pub async fn quit(self) -> Result<()> {
        match self {
            RemoteSession::Ftp(s) => s.quit().await,
            RemoteSession::Sftp(s) => s.quit().await,
        }
    }
}

/// A download in progress.
#[derive(Debug)]
pub enum RemoteDownload<'a> {
    Ftp(Download<'a>),
    Sftp(Box<SftpDownload>),
}

impl RemoteDownload<'_> {
    /// The next bytes; 0 at the end.
    pub async fn read_chunk(&mut self, buf: &mut [u8]) -> Result<usize> {
        match self {
            RemoteDownload::Ftp(d) => d.read_chunk(buf).await,
            RemoteDownload::Sftp(d) => d.read_chunk(buf).await,
        }
    }

    /// Ends the download at byte `end`, the file's size when it began (SFTP,
    /// where the client finds the end by asking past it:
    /// [`SftpDownload::stop_at`]). FTP reads to the end of the data
    /// connection, which the server marks.
    pub fn stop_at(&mut self, end: u64) {
        if let RemoteDownload::Sftp(d) = self {
            d.stop_at(end);
        }
    }

    /// The transfer completed: the server's confirmation.
    pub async fn finish(self) -> Result<()> {
        match self {
            RemoteDownload::Ftp(d) => d.finish().await.map(drop),
            RemoteDownload::Sftp(d) => {
                d.finish();
                Ok(())
            }
        }
    }

    /// Stops the transfer before its end (ABOR; SFTP: the file is closed).
    pub async fn abort(self) -> Result<()> {
        match self {
            RemoteDownload::Ftp(d) => d.abort().await,
            RemoteDownload::Sftp(d) => {
                d.finish();
                Ok(())
            }
        }
    }
}

/// An upload in progress.
#[derive(Debug)]
pub enum RemoteUpload<'a> {
    Ftp(Upload<'a>),
    Sftp(Box<SftpUpload>),
}

impl RemoteUpload<'_> {
    pub async fn write_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        match self {
            RemoteUpload::Ftp(u) => u.write_chunk(bytes).await,
            RemoteUpload::Sftp(u) => u.write_chunk(bytes).await,
        }
    }

    /// Asks that the file be given the modification time `when` as it is
    /// closed (SFTP: an FSETSTAT sent behind the last WRITE, answered before
    /// the CLOSE is sent, so it costs no round trip of its own). `false` over
    /// FTP, where the time is set once the file is stored (MFMT).
    pub fn set_time_at_close(&mut self, when: OffsetDateTime) -> bool {
        match self {
            RemoteUpload::Ftp(_) => false,
            RemoteUpload::Sftp(u) => {
                u.set_time_at_close(when);
                true
            }
        }
    }

    /// Asks the server to have the file on its disk once the upload is
    /// complete: over SFTP fsync@openssh.com before the CLOSE, where the
    /// server offers it. FTP has no such command; nothing is sent.
    pub fn ask_durable(&mut self) {
        if let RemoteUpload::Sftp(u) = self {
            u.ask_durable();
        }
    }

    /// The upload is complete only when this succeeds.
    pub async fn finish(self) -> Result<()> {
        match self {
            RemoteUpload::Ftp(u) => u.finish().await.map(drop),
            RemoteUpload::Sftp(u) => u.finish().await,
        }
    }
}
