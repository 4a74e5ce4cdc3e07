//! What can go wrong in a client session, in one enum.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use ferry_proto::reply::ReplyError;

/// An error of the FTP or SFTP client. Each message is complete in itself (the I/O
/// cause is part of it, not a separate `source`), so it prints as one line.
/// Each variant carries what a person needs to act:
/// the address that could not be reached, the command the server refused and its
/// reply, or the local file that could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL cannot be opened by this client (wrong scheme, no host, bad escape).
    #[error("{url}: {reason}")]
    BadUrl { url: String, reason: String },
    /// The host name did not resolve to any address.
    #[error("cannot resolve {host}: {cause}")]
    Resolve { host: String, cause: io::Error },
    /// No TCP connection could be made (refused, unreachable).
    #[error("cannot connect to {addr}: {cause}")]
    Connect { addr: String, cause: io::Error },
    /// The peer did not answer within the configured time.
    #[error("timed out after {}s waiting for {what}", after.as_secs_f32())]
    Timeout { what: String, after: Duration },
    /// The TLS handshake failed (certificate, protocol or reuse refused).
    #[error("TLS with {host} failed: {cause}")]
    Tls { host: String, cause: io::Error },
    /// The TLS settings cannot be used (unreadable CA file, bad fingerprint).
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    /// The server answered a command with an error (4xx or 5xx) or an
    /// unexpected reply.
    #[error("{command}: server replied {code} {text}")]
    Reply {
        command: String,
        code: u16,
        text: String,
    },
    /// The server sent something that is not an FTP reply.
    #[error("protocol error: {0}")]
    Protocol(#[from] ReplyError),
    /// A PASV, EPSV or other reply could not be understood.
    #[error("cannot understand the reply to {command}: {text}")]
    BadReply { command: String, text: String },
    /// The server closed the control connection.
    #[error("the server closed the connection")]
    Closed,
    /// The control or data connection broke.
    #[error("connection lost: {0}")]
    Io(#[from] io::Error),
    /// A local file could not be read or written.
    #[error("{}: {cause}", path.display())]
    Local { path: PathBuf, cause: io::Error },
    /// Resuming would produce a corrupt file, so it was refused.
    #[error("cannot resume {path}: {reason}")]
    ResumeRefused { path: String, reason: String },
    /// A transfer completed but its size or checksum does not match.
    #[error("{path}: verification failed: {reason}")]
    VerifyFailed { path: String, reason: String },
    /// A name or argument cannot be sent in an FTP command (it holds a line break
    /// or NUL).
    #[error("{0:?} cannot be sent to an FTP server: it holds a line break or NUL")]
    Unsendable(String),
    /// The server does not offer what was asked for (a checksum, a command).
    #[error("{0}")]
    Unsupported(String),
    /// The SSH connection could not be set up or authenticated (key exchange,
    /// no accepted authentication method, no SFTP subsystem).
    #[error("SSH with {host}: {reason}")]
    Ssh { host: String, reason: String },
    /// The SSH server's host key is not one this client may trust: unknown, or
    /// not the one recorded or pinned. The reason names its fingerprint and
    /// what to do.
    #[error("host key of {host} refused: {reason}")]
    HostKey { host: String, reason: String },
    /// The SFTP server answered a request with an error status.
    #[error("{operation} {path}: server answered {}: {message}", status_name(*.code))]
    Sftp {
        /// The request: OPEN, READ, WRITE, STAT, RENAME, ...
        operation: &'static str,
        path: String,
        /// The SFTP status code (SSH_FX_*; 2 no such file, 3 permission
        /// denied), where the server's answer gave one.
        code: Option<u32>,
        /// The server's own text.
        message: String,
    },
}

/// The name of an SFTP status code (draft-ietf-secsh-filexfer-02 §7).
fn status_name(code: Option<u32>) -> &'static str {
    match code {
        Some(1) => "end of file",
        Some(2) => "no such file",
        Some(3) => "permission denied",
        Some(4) => "failure",
        Some(5) => "bad message",
        Some(8) => "operation unsupported",
        Some(_) => "an error",
        None => "an error",
    }
}

impl ClientError {
    /// The server's reply code, when the server refused something.
    pub fn reply_code(&self) -> Option<u16> {
        match self {
            ClientError::Reply { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The SFTP status code, when an SFTP server refused something.
    pub fn sftp_status(&self) -> Option<u32> {
        match self {
            ClientError::Sftp { code, .. } => *code,
            _ => None,
        }
    }

    /// True when the server said the file or directory is not there (FTP 550,
    /// which some servers also give for other refusals; SFTP "no such file").
    pub fn is_not_found(&self) -> bool {
        self.reply_code() == Some(550) || self.sftp_status() == Some(2)
    }

    /// True when trying again later may succeed: the connection broke or timed out,
    /// or the server gave a transient (4xx) reply.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Io(_)
            | ClientError::Closed
            | ClientError::Timeout { .. }
            | ClientError::Connect { .. } => true,
            ClientError::Reply { code, .. } => (400..500).contains(code),
            _ => false,
        }
    }

    pub(crate) fn local(path: impl Into<PathBuf>, cause: io::Error) -> Self {
        ClientError::Local {
            path: path.into(),
            cause,
        }
    }
}

/// Results of the client.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
