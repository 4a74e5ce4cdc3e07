//! The one place where a failure becomes an SFTP status (draft-ietf-secsh-
//! filexfer-02 §7): the FTP session's [`SessionError`] and [`TransferError`]
//! are reused, so a refusal reads the same over both protocols.
//!
//! SFTP version 3 has few codes: what FTP tells apart by reply code (550,
//! 552, 553) is told apart here by the message, under `SSH_FX_FAILURE` or
//! `SSH_FX_PERMISSION_DENIED`.

use ferry_storage::{PathError, StorageError};
use russh_sftp::protocol::StatusCode;

use crate::error::{SessionError, TransferError};

/// A request's failure: the status code and the message the client shows.
#[derive(Debug, Clone, PartialEq)]
pub struct SftpFailure {
    pub code: StatusCode,
    pub message: String,
}

impl SftpFailure {
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        SftpFailure {
            code,
            message: message.into(),
        }
    }

    /// `SSH_FX_OP_UNSUPPORTED` with a reason.
    pub fn unsupported(why: impl Into<String>) -> Self {
        SftpFailure::new(StatusCode::OpUnsupported, why)
    }

    /// `SSH_FX_FAILURE` with a reason.
    pub fn failure(why: impl Into<String>) -> Self {
        SftpFailure::new(StatusCode::Failure, why)
    }
}

impl From<SessionError> for SftpFailure {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Path(p) => match p {
                PathError::ContainsNul | PathError::InvalidName => {
                    SftpFailure::new(StatusCode::BadMessage, format!("invalid path: {p}"))
                }
                PathError::NameTooLong | PathError::PathTooLong => {
                    SftpFailure::failure(format!("invalid path: {p}"))
                }
            },
            SessionError::Storage { path, source } => {
                let code = match source {
                    StorageError::NotFound => StatusCode::NoSuchFile,
                    StorageError::PermissionDenied | StorageError::OutsideHome => {
                        StatusCode::PermissionDenied
                    }
                    StorageError::Unsupported(_) => StatusCode::OpUnsupported,
                    _ => StatusCode::Failure,
                };
                SftpFailure::new(code, format!("{path}: {source}"))
            }
            SessionError::Denied { path, .. } => SftpFailure::new(
                StatusCode::PermissionDenied,
                format!("{path}: permission denied"),
            ),
            SessionError::FileNameRefused(r) => SftpFailure::new(
                StatusCode::PermissionDenied,
                format!("file name not allowed ({})", r.setting),
            ),
            SessionError::OverLimit(r) => {
                SftpFailure::failure(format!("exceeded storage allocation ({})", r.setting))
            }
            SessionError::NotAFile(why) => SftpFailure::failure(why),
            SessionError::NotImplemented(what) | SessionError::Unsupported(what) => {
                SftpFailure::unsupported(what)
            }
            other => SftpFailure::failure(other.to_string()),
        }
    }
}

impl From<TransferError> for SftpFailure {
    fn from(e: TransferError) -> Self {
        match e {
            TransferError::OverLimit(setting) => {
                SftpFailure::failure(format!("exceeded storage allocation ({setting})"))
            }
            TransferError::Storage(StorageError::NoSpace) => {
                SftpFailure::failure("no space left on the storage device")
            }
            other => SftpFailure::failure(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_accounts::LimitRefusal;
    use ferry_storage::VirtualPath;

    #[test]
    fn refusals_keep_their_meaning() {
        let p = VirtualPath::root();
        let cases: Vec<(SessionError, StatusCode, &str)> = vec![
            (
                SessionError::storage(&p, StorageError::NotFound),
                StatusCode::NoSuchFile,
                "no such file",
            ),
            (
                SessionError::storage(&p, StorageError::OutsideHome),
                StatusCode::PermissionDenied,
                "outside the home",
            ),
            (
                SessionError::storage(&p, StorageError::Unsupported("set times")),
                StatusCode::OpUnsupported,
                "set times",
            ),
            (
                SessionError::OverLimit(LimitRefusal {
                    setting: "quota_bytes",
                    reason: "full".into(),
                }),
                StatusCode::Failure,
                "exceeded storage allocation (quota_bytes)",
            ),
            (
                SessionError::FileNameRefused(LimitRefusal {
                    setting: "denied_files",
                    reason: "*.exe".into(),
                }),
                StatusCode::PermissionDenied,
                "denied_files",
            ),
            (
                PathError::ContainsNul.into(),
                StatusCode::BadMessage,
                "invalid path",
            ),
        ];
        for (e, code, text) in cases {
            let f = SftpFailure::from(e);
            assert_eq!(f.code, code, "{f:?}");
            assert!(f.message.contains(text), "{f:?} should say {text}");
        }
        let over = SftpFailure::from(TransferError::OverLimit("max_file_size".into()));
        assert_eq!(over.code, StatusCode::Failure);
        assert!(over.message.contains("max_file_size"), "{over:?}");
    }
}
