//! The one place where a failure becomes a reply code.

use ferry_accounts::{LimitRefusal, Permission, PolicyDecision};
use ferry_proto::Reply;
use ferry_proto::command::ParseError;
use ferry_proto::host_port::HostPortError;
use ferry_storage::{PathError, StorageError, VirtualPath};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The line is not a valid command.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The path text cannot be a path.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The storage backend refused or failed.
    #[error("{path}: {source}")]
    Storage {
        path: VirtualPath,
        source: StorageError,
    },
    /// The policy does not allow the action.
    #[error("permission denied: {action:?} on {path} ({decision})")]
    Denied {
        action: Permission,
        path: VirtualPath,
        decision: PolicyDecision,
    },
    /// The command needs a login first.
    #[error("not logged in")]
    NotLoggedIn,
    /// The command came out of order (PASS before USER, RNTO before RNFR).
    #[error("bad sequence of commands: {0}")]
    BadSequence(&'static str),
    /// A parameter ferry does not offer (TYPE E, MODE B, STRU R).
    #[error("parameter not implemented: {0}")]
    Unsupported(&'static str),
    /// A command ferry recognises but does not offer here.
    #[error("command not implemented: {0}")]
    NotImplemented(&'static str),
    /// No PORT/PASV before a transfer, or the data connection could not be made.
    #[error("data connection: {0}")]
    DataConnection(String),
    /// PORT/EPRT refused for security (foreign address, privileged port).
    #[error("data address refused: {0}")]
    DataAddressRefused(&'static str),
    /// `tls.explicit = "required"` and a transfer without PROT P (521).
    #[error("data connections must be protected")]
    ProtectionRequired,
    /// The file name is refused by `allowed_files`/`denied_files` (553).
    #[error("file name refused: {0}")]
    FileNameRefused(LimitRefusal),
    /// A quota or `max_file_size` is already reached (552).
    #[error("over a limit: {0}")]
    OverLimit(LimitRefusal),
    /// The target is not what the command needs (SIZE of a directory).
    #[error("{0}")]
    NotAFile(String),
}

impl SessionError {
    pub fn storage(path: &VirtualPath, source: StorageError) -> Self {
        SessionError::Storage {
            path: path.clone(),
            source,
        }
    }

    /// Quota usage could not be read from its ledger while acting on
    /// `path`: a failure of where the user's data is kept, answered as any
    /// other storage failure.
    pub fn usage_unreadable(path: &VirtualPath, e: &ferry_accounts::StoreError) -> Self {
        Self::storage(path, StorageError::Io(std::io::Error::other(e.to_string())))
    }

    /// The reply for this failure.
    pub fn reply(&self) -> Reply {
        match self {
            SessionError::Parse(e) => match e {
                ParseError::Empty => Reply::new(500, "Empty command line."),
                ParseError::Unknown(verb) => {
                    Reply::new(500, format!("Command not understood: {verb}."))
                }
                ParseError::HostPort(HostPortError::UnsupportedProtocol) => {
                    Reply::new(522, "Network protocol not supported, use (1,2).")
                }
                other => Reply::new(501, format!("Syntax error: {other}.")),
            },
            SessionError::Path(e) => match e {
                PathError::ContainsNul | PathError::InvalidName => {
                    Reply::new(501, format!("Invalid path: {e}."))
                }
                PathError::NameTooLong | PathError::PathTooLong => {
                    Reply::new(550, format!("Invalid path: {e}."))
                }
            },
            SessionError::Storage { path, source } => {
                let code = match source {
                    StorageError::OffsetBeyondEnd { .. } => 554,
                    StorageError::NoSpace => 552,
                    StorageError::NameTooLong => 553,
                    StorageError::Unsupported(_) => 502,
                    StorageError::Io(_) | StorageError::Unavailable => 451,
                    _ => 550,
                };
                Reply::new(
                    code,
                    format!("{path}: {}.", capitalize(&source.to_string())),
                )
            }
            SessionError::Denied { path, .. } => {
                Reply::new(550, format!("{path}: Permission denied."))
            }
            SessionError::NotLoggedIn => Reply::new(530, "Please log in with USER and PASS."),
            SessionError::BadSequence(why) => {
                Reply::new(503, format!("Bad sequence of commands: {why}."))
            }
            SessionError::Unsupported(what) => Reply::new(
                504,
                format!("Command not implemented for that parameter: {what}."),
            ),
            SessionError::NotImplemented(what) => {
                Reply::new(502, format!("Command not implemented: {what}."))
            }
            SessionError::DataConnection(why) => {
                Reply::new(425, format!("Can't open data connection: {why}."))
            }
            SessionError::DataAddressRefused(why) => {
                Reply::new(504, format!("Data address refused: {why}."))
            }
            SessionError::NotAFile(why) => Reply::new(550, why.clone()),
            SessionError::ProtectionRequired => Reply::new(
                521,
                "Data connections must be protected: send PBSZ 0 and PROT P.",
            ),
            SessionError::FileNameRefused(r) => {
                Reply::new(553, format!("File name not allowed ({}).", r.setting))
            }
            SessionError::OverLimit(r) => {
                Reply::new(552, format!("Exceeded storage allocation ({}).", r.setting))
            }
        }
    }
}

impl crate::signin::SignInRefusal {
    /// The reply to a refused USER/PASS; [`SignInRefusal::closes_connection`]
    /// says whether the connection then closes.
    ///
    /// [`SignInRefusal::closes_connection`]: crate::signin::SignInRefusal::closes_connection
    pub fn reply(self) -> Reply {
        use crate::signin::SignInRefusal as R;
        match self {
            R::Credentials => Reply::new(530, "Login incorrect."),
            R::Banned => Reply::new(
                421,
                "Too many failed logins: your address is banned for a while.",
            ),
            R::AccountsUnavailable => Reply::new(
                421,
                "Service not available: the account database cannot be reached; try again later.",
            ),
            R::AddressRefused => Reply::new(530, "Login not allowed from your address."),
            R::OutsideHours => Reply::new(530, "Login not allowed at this time."),
            R::TooManySessions => {
                Reply::new(421, "Too many sessions for this user; try again later.")
            }
            R::StorageUnavailable => Reply::new(
                421,
                "Service not available: the file storage cannot be reached; try again later.",
            ),
            R::HomeUnavailable => Reply::new(530, "Login refused: home directory unavailable."),
            R::UsageUnmeasurable => {
                Reply::new(530, "Login refused: quota usage cannot be measured.")
            }
        }
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// How a transfer ended badly, for its final reply.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The data connection could not be opened (425).
    #[error("can't open data connection: {0}")]
    Open(String),
    /// The data connection failed or went silent mid-transfer (426).
    #[error("connection closed; transfer aborted: {0}")]
    Connection(String),
    /// The upload reached a quota or `max_file_size` (552); nothing beyond it was
    /// stored.
    #[error("exceeded storage allocation: {0}")]
    OverLimit(String),
    /// The quota usage could not be reserved (the account database failed)
    /// mid-upload (451); the upload ends as after any other failure (a
    /// replaced file keeps its old content, a new file what arrived).
    #[error("quota usage unavailable: {0}")]
    QuotaUnavailable(String),
    /// TLS on the data connection failed or did not resume the control session (522).
    #[error("{0}")]
    Tls(String),
    /// The storage failed mid-transfer (451, or 552 when full).
    #[error("storage failed: {0}")]
    Storage(StorageError),
}

impl TransferError {
    pub fn reply(&self) -> Reply {
        match self {
            TransferError::Open(why) => {
                Reply::new(425, format!("Can't open data connection: {why}."))
            }
            TransferError::Connection(why) => {
                Reply::new(426, format!("Connection closed; transfer aborted: {why}."))
            }
            TransferError::Tls(why) => {
                Reply::new(522, format!("TLS on the data connection failed: {why}."))
            }
            TransferError::OverLimit(setting) => Reply::new(
                552,
                format!("Transfer aborted: exceeded storage allocation ({setting})."),
            ),
            TransferError::QuotaUnavailable(why) => Reply::new(
                451,
                format!("Transfer aborted: quota usage unavailable: {why}."),
            ),
            TransferError::Storage(StorageError::NoSpace) => Reply::new(
                552,
                "Transfer aborted: no space left on the storage device.",
            ),
            TransferError::Storage(e) => {
                Reply::new(451, format!("Transfer aborted: local error: {e}."))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let p = VirtualPath::root();
        let cases: Vec<(SessionError, u16)> = vec![
            (ParseError::Unknown("X".into()).into(), 500),
            (ParseError::MissingArgument.into(), 501),
            (
                ParseError::HostPort(HostPortError::UnsupportedProtocol).into(),
                522,
            ),
            (PathError::ContainsNul.into(), 501),
            (PathError::NameTooLong.into(), 550),
            (SessionError::storage(&p, StorageError::NotFound), 550),
            (SessionError::storage(&p, StorageError::NoSpace), 552),
            (
                SessionError::storage(&p, StorageError::OffsetBeyondEnd { offset: 2, size: 1 }),
                554,
            ),
            (SessionError::NotLoggedIn, 530),
            (SessionError::BadSequence("x"), 503),
            (SessionError::Unsupported("x"), 504),
            (SessionError::DataConnection("x".into()), 425),
        ];
        for (e, code) in cases {
            assert_eq!(e.reply().code(), code, "{e}");
        }
        assert_eq!(TransferError::Connection("x".into()).reply().code(), 426);
        assert_eq!(
            TransferError::Storage(StorageError::NoSpace).reply().code(),
            552
        );
        assert_eq!(
            TransferError::OverLimit("quota_bytes".into())
                .reply()
                .code(),
            552
        );
        let unavailable = TransferError::QuotaUnavailable("database gone".into()).reply();
        assert_eq!(unavailable.code(), 451);
        assert!(
            unavailable.to_string().contains("database gone"),
            "{unavailable}"
        );
    }
}
