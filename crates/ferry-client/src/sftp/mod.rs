//! The SFTP client (draft-ietf-secsh-filexfer-02, version 3, over the SSH
//! connection protocol of RFC 4254): one SSH connection, one `sftp` subsystem
//! channel, and the operations the command line and the URL opener need.
//!
//! - [`host_key`]: which server keys are trusted (known_hosts, a pinned
//!   fingerprint, or none).
//! - SSH transport and key exchange: russh; packet encoding and request ids:
//!   russh-sftp's [`RawSftpSession`](russh_sftp::client::RawSftpSession) under
//!   its file type, which keeps 16 reads or writes in flight.
//!
//! - `auth`: signing in: the password when one is known, then keys (the
//!   `--identity` files, else an SSH agent's keys and `~/.ssh/id_ed25519`,
//!   `~/.ssh/id_ecdsa`, `~/.ssh/id_rsa`; an encrypted file through the agent or a passphrase
//!   asked for), then a password asked through [`ConnectOptions::ask_password`].
//!
//! Paths are as SFTP servers take them: absolute, or relative to the login
//! (home) directory. The session keeps a working directory of its own for
//! `cd`, since SFTP has none.

mod auth;
pub mod host_key;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::PublicKeyOrCertificate;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::fs::File;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::error::{ClientError, Result};
use crate::listing::{EntryKind, RemoteEntry, mode_string};
use crate::resume::FileState;
use crate::session::ConnectOptions;
use crate::stream::connect_tcp;
use crate::transfer::UploadMode;
use crate::url::FtpUrl;
use host_key::{HostKeyVerdict, judge, learn};

/// The russh side of the connection: checks the host key, and tells the
/// session when the connection is gone (this value is dropped with it).
struct SshPeer {
    check: host_key::HostKeyCheck,
    host: String,
    port: u16,
    /// Why the host key was refused, for the error message.
    refusal: Arc<Mutex<Option<String>>>,
    closed: Arc<AtomicBool>,
}

impl Drop for SshPeer {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

impl client::Handler for SshPeer {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        offered: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let refuse = |why: String| {
            if let Ok(mut slot) = self.refusal.lock() {
                *slot = Some(why);
            }
            Ok(false)
        };
        let PublicKeyOrCertificate::PublicKey { key, .. } = offered else {
            return refuse(
                "the server offers a host certificate; ferry checks plain host keys".into(),
            );
        };
        match judge(&self.check, &self.host, self.port, key) {
            HostKeyVerdict::Accept => Ok(true),
            HostKeyVerdict::Learn(path) => match learn(&path, &self.host, self.port, key) {
                Ok(()) => {
                    tracing::info!(
                        "recorded the host key of {} in {}",
                        self.host,
                        path.display()
                    );
                    Ok(true)
                }
                Err(why) => refuse(why),
            },
            HostKeyVerdict::Refuse(why) => refuse(why),
        }
    }
}

/// A logged-in SFTP session.
pub struct SftpSession {
    ssh: client::Handle<SshPeer>,
    sftp: russh_sftp::client::SftpSession,
    /// The working directory, absolute: the home directory at first.
    cwd: String,
    io_timeout: Duration,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for SftpSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpSession")
            .field("cwd", &self.cwd)
            .finish_non_exhaustive()
    }
}

/// How many reads and writes one file keeps in flight, and the size of a
/// write: 32 × 64 KiB, what OpenSSH's sftp keeps in flight (64 × 32 KiB).
const IN_FLIGHT: usize = 32;
const WRITE_LEN: u32 = 64 * 1024;

impl SftpSession {
    /// Connects to the server of an `sftp://` URL, checks its host key, logs
    /// in and starts the `sftp` subsystem.
    pub async fn open(url: &FtpUrl, options: &ConnectOptions) -> Result<Self> {
        let host = url.host.clone();
        let ssh_error = |reason: String| ClientError::Ssh {
            host: url.authority(),
            reason,
        };
        let user = match &url.user {
            Some(u) => u.clone(),
            None => local_user()
                .ok_or_else(|| ssh_error("no user name given and USER is not set".into()))?,
        };
        let tcp = connect_tcp(&url.host, url.port, options.connect_timeout).await?;
        let refusal = Arc::new(Mutex::new(None));
        let closed = Arc::new(AtomicBool::new(false));
        let peer = SshPeer {
            check: options.host_key_check.clone(),
            host: host.clone(),
            port: url.port,
            refusal: refusal.clone(),
            closed: closed.clone(),
        };
        let config = Arc::new(client::Config {
            nodelay: true,
            keepalive_interval: options.keepalive,
            // Host keys signed with SHA-1 `ssh-rsa` are not taken (RSA host
            // keys are, as `rsa-sha2-512` or `-256`), as OpenSSH since 8.8.
            preferred: russh::Preferred {
                key: russh::Preferred::DEFAULT
                    .key
                    .iter()
                    .filter(|a| **a != russh::keys::Algorithm::Rsa { hash: None })
                    .cloned()
                    .collect(),
                ..russh::Preferred::DEFAULT
            },
            ..client::Config::default()
        });
        let handshake = client::connect_stream(config, tcp, peer);
        let mut ssh = match tokio::time::timeout(options.connect_timeout, handshake).await {
            Ok(Ok(handle)) => handle,
            Ok(Err(e)) => {
                let why = refusal.lock().ok().and_then(|mut slot| slot.take());
                return Err(match why {
                    Some(reason) => ClientError::HostKey {
                        host: url.authority(),
                        reason,
                    },
                    None => ssh_error(format!("key exchange failed: {e}")),
                });
            }
            Err(_) => {
                return Err(ClientError::Timeout {
                    what: format!("the SSH handshake with {}", url.authority()),
                    after: options.connect_timeout,
                });
            }
        };
        let timed = |what: &str| ClientError::Timeout {
            what: what.to_owned(),
            after: options.io_timeout,
        };
        tokio::time::timeout(
            options.io_timeout,
            auth::authenticate(&mut ssh, &user, url, options),
        )
        .await
        .map_err(|_| timed("the SSH authentication"))?
        .map_err(&ssh_error)?;

        let start = async {
            let channel = ssh.channel_open_session().await?;
            channel.request_subsystem(true, "sftp").await?;
            Ok::<_, russh::Error>(channel.into_stream())
        };
        let stream = tokio::time::timeout(options.io_timeout, start)
            .await
            .map_err(|_| timed("the sftp subsystem"))?
            .map_err(|e| ssh_error(format!("cannot start the sftp subsystem: {e}")))?;
        let config = russh_sftp::client::Config {
            max_concurrent_reads: IN_FLIGHT,
            max_concurrent_writes: IN_FLIGHT,
            max_write_packet_len: WRITE_LEN,
            request_timeout_secs: options.io_timeout.as_secs().max(1),
            ..russh_sftp::client::Config::default()
        };
        let sftp = russh_sftp::client::SftpSession::new_with_config(stream, config)
            .await
            .map_err(|e| ssh_error(format!("the SFTP server did not start: {e}")))?;
        let mut session = SftpSession {
            ssh,
            sftp,
            cwd: String::new(),
            io_timeout: options.io_timeout,
            closed,
        };
        session.cwd = session.canonical(".").await?;
        Ok(session)
    }

    /// An SFTP error as a client error: a status keeps its code; a lost
    /// connection is [`ClientError::Closed`], so retries know to reconnect.
    fn refused(&self, operation: &'static str, path: &str, e: SftpError) -> ClientError {
        match e {
            SftpError::Status(s) => ClientError::Sftp {
                operation,
                path: path.to_owned(),
                code: Some(s.status_code as u32),
                message: s.error_message,
            },
            SftpError::Timeout => ClientError::Timeout {
                what: format!("the answer to {operation} {path}"),
                after: self.io_timeout,
            },
            _ if self.closed.load(Ordering::SeqCst) => ClientError::Closed,
            other => ClientError::Io(io::Error::other(format!("{operation} {path}: {other}"))),
        }
    }

    /// `path` made absolute against the working directory.
    pub fn resolve(&self, path: &str) -> String {
        if path.starts_with('/') {
            path.to_owned()
        } else if path.is_empty() || path == "." {
            self.cwd.clone()
        } else {
            format!("{}/{path}", self.cwd.trim_end_matches('/'))
        }
    }

    async fn canonical(&self, path: &str) -> Result<String> {
        let full = if self.cwd.is_empty() {
            path.to_owned()
        } else {
            self.resolve(path)
        };
        self.sftp
            .canonicalize(full.as_str())
            .await
            .map_err(|e| self.refused("REALPATH", &full, e))
    }

    async fn stat(&self, path: &str) -> Result<FileAttributes> {
        let full = self.resolve(path);
        self.sftp
            .metadata(full.as_str())
            .await
            .map_err(|e| self.refused("STAT", &full, e))
    }

    /// The working directory.
    pub fn pwd(&self) -> String {
        self.cwd.clone()
    }

    /// Changes the working directory (it must be a directory).
    pub async fn cwd(&mut self, path: &str) -> Result<()> {
        let target = self.canonical(path).await?;
        let attrs = self.stat(&target).await?;
        if !attrs.is_dir() {
            return Err(ClientError::Sftp {
                operation: "CD",
                path: target,
                code: None,
                message: "not a directory".to_owned(),
            });
        }
        self.cwd = target;
        Ok(())
    }

    /// The entries of a directory, `.` and `..` left out, sorted by name.
    pub async fn list(&self, path: &str) -> Result<Vec<RemoteEntry>> {
        let full = self.resolve(path);
        let attrs = self.stat(&full).await?;
        if !attrs.is_dir() {
            // As `ls FILE`: the file itself.
            let name = full.rsplit('/').next().unwrap_or(&full).to_owned();
            return Ok(vec![entry(name, &attrs)]);
        }
        let dir = self
            .sftp
            .read_dir(full.as_str())
            .await
            .map_err(|e| self.refused("READDIR", &full, e))?;
        let mut entries: Vec<RemoteEntry> = dir
            .filter(|e| e.file_name() != "." && e.file_name() != "..")
            .map(|e| entry(e.file_name(), &e.metadata()))
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// The size of a file. A directory is refused, as FTP's SIZE refuses one
    /// (`get -r` tells files from directories by it).
    pub async fn size(&self, path: &str) -> Result<Option<u64>> {
        Ok(self.file_attributes(path).await?.size)
    }

    /// The modification time of a file.
    pub async fn modified(&self, path: &str) -> Result<Option<OffsetDateTime>> {
        Ok(modified(&self.stat(path).await?))
    }

    /// A file's size and modification time from one STAT (FTP needs SIZE
    /// and MDTM); `None` when the server tells no size.
    pub async fn file_state(&self, path: &str) -> Result<Option<FileState>> {
        let attrs = self.file_attributes(path).await?;
        Ok(attrs.size.map(|size| FileState {
            size,
            modified: modified(&attrs),
        }))
    }

    /// STAT of a file; a directory is refused.
    async fn file_attributes(&self, path: &str) -> Result<FileAttributes> {
        let attrs = self.stat(path).await?;
        if attrs.is_dir() {
            return Err(ClientError::Sftp {
                operation: "STAT",
                path: self.resolve(path),
                code: None,
                message: "is a directory, not a file".to_owned(),
            });
        }
        Ok(attrs)
    }

    /// Sets the modification time (SETSTAT; the access time too, since v3
    /// sets both together).
    pub async fn set_modified(&self, path: &str, when: OffsetDateTime) -> Result<bool> {
        let full = self.resolve(path);
        self.sftp
            .set_metadata(full.as_str(), times(when))
            .await
            .map_err(|e| self.refused("SETSTAT", &full, e))?;
        Ok(true)
    }

    /// Creates a directory; its absolute path.
    pub async fn mkdir(&self, path: &str) -> Result<String> {
        let full = self.resolve(path);
        self.sftp
            .create_dir(full.as_str())
            .await
            .map_err(|e| self.refused("MKDIR", &full, e))?;
        Ok(full)
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, path: &str) -> Result<()> {
        let full = self.resolve(path);
        self.sftp
            .remove_dir(full.as_str())
            .await
            .map_err(|e| self.refused("RMDIR", &full, e))
    }

    /// Removes a file.
    pub async fn delete(&self, path: &str) -> Result<()> {
        let full = self.resolve(path);
        self.sftp
            .remove_file(full.as_str())
            .await
            .map_err(|e| self.refused("REMOVE", &full, e))
    }

    /// Renames. SFTP v3 refuses an existing target.
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (from, to) = (self.resolve(from), self.resolve(to));
        self.sftp
            .rename(from.as_str(), to.as_str())
            .await
            .map_err(|e| self.refused("RENAME", &format!("{from} to {to}"), e))
    }

    /// A cheap request that proves the connection is alive.
    pub async fn noop(&self) -> Result<()> {
        self.canonical(".").await.map(drop)
    }

    /// Opens a file for reading from `offset` on.
    pub async fn download(&self, path: &str, offset: u64) -> Result<SftpDownload> {
        let file = self.open_at(path, OpenFlags::READ, offset, "READ").await?;
        Ok(SftpDownload {
            file,
            position: offset,
            end: None,
        })
    }

    /// Opens a file for writing: replaced, appended to (its current end), or
    /// written from an offset on.
    pub async fn upload(&self, path: &str, mode: UploadMode) -> Result<SftpUpload> {
        let (flags, offset) = match mode {
            UploadMode::Replace => (
                OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
                0,
            ),
            UploadMode::Resume(n) => (OpenFlags::WRITE | OpenFlags::CREATE, n),
            // Writes at the current end rather than with the APPEND flag, which
            // some servers ignore and others apply to every offset.
            UploadMode::Append => {
                let end = match self.stat(path).await {
                    Ok(attrs) => attrs.size.unwrap_or(0),
                    Err(e) if e.is_not_found() => 0,
                    Err(e) => return Err(e),
                };
                (OpenFlags::WRITE | OpenFlags::CREATE, end)
            }
        };
        let file = self.open_at(path, flags, offset, "WRITE").await?;
        Ok(SftpUpload {
            file,
            time_at_close: None,
            durable: false,
        })
    }

    /// OPEN with `flags`, positioned at `offset` for the READs or WRITEs
    /// (`operation`, for error messages) that follow.
    async fn open_at(
        &self,
        path: &str,
        flags: OpenFlags,
        offset: u64,
        operation: &'static str,
    ) -> Result<Transfer> {
        let full = self.resolve(path);
        let mut file = self
            .sftp
            .open_with_flags(full.as_str(), flags)
            .await
            .map_err(|e| self.refused("OPEN", &full, e))?;
        if offset > 0 {
            file.seek(io::SeekFrom::Start(offset))
                .await
                .map_err(|e| self.io_failed(operation, &full, e))?;
        }
        Ok(Transfer {
            file,
            path: full,
            timeout: self.io_timeout,
            closed: self.closed.clone(),
        })
    }

    fn io_failed(&self, operation: &'static str, path: &str, e: io::Error) -> ClientError {
        io_failed(operation, path, e, self.io_timeout, &self.closed)
    }

    /// Ends the SFTP channel and the SSH connection.
    pub async fn quit(self) -> Result<()> {
        let _ = self.sftp.close().await;
        let _ = self
            .ssh
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
        Ok(())
    }
}

/// A file error during a transfer: russh-sftp's file type keeps the server's
/// text but not its status code.
fn io_failed(
    operation: &'static str,
    path: &str,
    e: io::Error,
    after: Duration,
    closed: &AtomicBool,
) -> ClientError {
    if e.kind() == io::ErrorKind::TimedOut {
        ClientError::Timeout {
            what: format!("the answer to {operation} {path}"),
            after,
        }
    } else if closed.load(Ordering::SeqCst) {
        ClientError::Closed
    } else {
        ClientError::Sftp {
            operation,
            path: path.to_owned(),
            code: None,
            message: e.to_string(),
        }
    }
}

/// One open remote file.
struct Transfer {
    file: File,
    path: String,
    timeout: Duration,
    closed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Transfer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transfer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Transfer {
    fn failed(&self, operation: &'static str, e: io::Error) -> ClientError {
        io_failed(operation, &self.path, e, self.timeout, &self.closed)
    }

    async fn close(mut self, operation: &'static str) -> Result<()> {
        match tokio::time::timeout(self.timeout, self.file.shutdown()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.failed(operation, e)),
            Err(_) => Err(self.failed(operation, io::ErrorKind::TimedOut.into())),
        }
    }
}

/// A download in progress: pipelined READs.
#[derive(Debug)]
pub struct SftpDownload {
    file: Transfer,
    /// The offset of the next byte.
    position: u64,
    /// Where the file ends by the size STAT gave ([`Self::stop_at`]).
    end: Option<u64>,
}

impl SftpDownload {
    /// The next bytes; 0 at the end of the file (or at [`Self::stop_at`]).
    pub async fn read_chunk(&mut self, buf: &mut [u8]) -> Result<usize> {
        let want = match self.end {
            Some(end) if self.position >= end => return Ok(0),
            Some(end) => {
                usize::try_from(end - self.position).map_or(buf.len(), |n| n.min(buf.len()))
            }
            None => buf.len(),
        };
        let t = &mut self.file;
        match tokio::time::timeout(t.timeout, t.file.read(&mut buf[..want])).await {
            Ok(Ok(n)) => {
                self.position += n as u64;
                Ok(n)
            }
            Ok(Err(e)) => Err(t.failed("READ", e)),
            Err(_) => Err(t.failed("READ", io::ErrorKind::TimedOut.into())),
        }
    }

    /// Ends the download at byte `end`, the size STAT gave when it began:
    /// the file is downloaded as it was described, without READs past its
    /// end to find it (russh-sftp sends 32 at once, and the answer is one
    /// more round trip: for a small file, a third of its time). A file that
    /// grows meanwhile is copied as far as that size; one that shrinks ends
    /// short, which the caller's size check reports.
    pub fn stop_at(&mut self, end: u64) {
        self.end = Some(end);
    }

    /// Closes the file without waiting for the server's answer: a read
    /// handle's CLOSE reports nothing the download needs (its bytes are in
    /// and the end of the file was read), and the round trip would be a
    /// small file's largest cost. russh-sftp sends the CLOSE when its file is
    /// dropped; the answer is matched and discarded as it comes.
    pub fn finish(self) {
        drop(self.file);
    }
}

/// An upload in progress: pipelined WRITEs, confirmed at [`Self::finish`].
#[derive(Debug)]
pub struct SftpUpload {
    file: Transfer,
    /// The modification time to give the file as it is closed.
    time_at_close: Option<OffsetDateTime>,
    /// Ask the server to flush the file to disk before it is closed.
    durable: bool,
}

impl SftpUpload {
    /// Sends bytes (errors of earlier writes may surface here).
    pub async fn write_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        let t = &mut self.file;
        match tokio::time::timeout(t.timeout, t.file.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(t.failed("WRITE", e)),
            Err(_) => Err(t.failed("WRITE", io::ErrorKind::TimedOut.into())),
        }
    }

    /// Gives the file the modification time `when` before it is closed.
    pub fn set_time_at_close(&mut self, when: OffsetDateTime) {
        self.time_at_close = Some(when);
    }

    /// Asks the server to flush the file to disk before it is closed
    /// (fsync@openssh.com, as OpenSSH's `put -f`), when it offers that.
    pub fn ask_durable(&mut self) {
        self.durable = true;
    }

    /// Waits for every write to be confirmed, then closes the file: the
    /// upload is complete only when this succeeds.
    ///
    /// A time to set goes first as FSETSTAT: sent behind the WRITEs, it is
    /// answered once the server has taken them all (servers answer in
    /// order), so the CLOSE follows at once. ferry's server applies it when
    /// the CLOSE commits the upload, OpenSSH's to the open file, which no
    /// later write changes. A server that refuses it leaves the time of the
    /// upload; the upload itself is judged by its WRITEs and CLOSE.
    pub async fn finish(self) -> Result<()> {
        if let Some(when) = self.time_at_close {
            let set = self.file.file.set_metadata(times(when));
            let _ = tokio::time::timeout(self.file.timeout, set).await;
        }
        let mut file = self.file;
        if self.durable {
            // russh-sftp's flush waits for the WRITEs' answers, then sends
            // fsync@openssh.com when the server offers it (and nothing
            // otherwise). A failure fails the upload: the file may not be
            // on the server's disk as asked.
            match tokio::time::timeout(file.timeout, file.file.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(file.failed("FSYNC", e)),
                Err(_) => return Err(file.failed("FSYNC", io::ErrorKind::TimedOut.into())),
            }
        }
        file.close("WRITE").await
    }
}

/// Attributes that set the modification time (and the access time: version
/// 3 sets both together).
fn times(when: OffsetDateTime) -> FileAttributes {
    let t = u32::try_from(when.unix_timestamp()).unwrap_or(0);
    FileAttributes {
        atime: Some(t),
        mtime: Some(t),
        ..FileAttributes::empty()
    }
}

/// The modification time in a file's attributes.
fn modified(attrs: &FileAttributes) -> Option<OffsetDateTime> {
    attrs
        .mtime
        .and_then(|t| OffsetDateTime::from_unix_timestamp(i64::from(t)).ok())
}

/// A directory entry from SFTP attributes.
fn entry(name: String, attrs: &FileAttributes) -> RemoteEntry {
    let kind = match attrs.permissions {
        None => EntryKind::Other,
        Some(_) if attrs.is_dir() => EntryKind::Dir,
        Some(_) if attrs.is_symlink() => EntryKind::Link,
        Some(_) if attrs.is_regular() => EntryKind::File,
        Some(_) => EntryKind::Other,
    };
    let mut e = RemoteEntry::new(name, kind);
    e.size = attrs.size;
    e.modified = modified(attrs);
    e.permissions = attrs.permissions.map(|m| mode_string(m & 0o7777));
    e
}

/// The local user name, the default SSH user (as OpenSSH's).
fn local_user() -> Option<String> {
    ["USER", "LOGNAME"]
        .into_iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
}
