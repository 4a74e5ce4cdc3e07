//! One error type for every scheme, telling "could not reach it" from "it
//! answered with an error" (urllib's `URLError` and `HTTPError`).

use std::fmt;

use crate::headers::Headers;
use crate::response::Response;

/// Why a URL could not be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// The host name did not resolve.
    Resolve,
    /// The connection was refused (nothing listens there).
    Refused,
    /// Connecting or reading took longer than the timeout.
    Timeout,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The SSH server's host key is not trusted (unknown, changed, or not the
    /// pinned one).
    HostKey,
    /// A local file is missing or unreadable.
    NotFound,
    /// Anything else on the way (reset, protocol violation).
    Other,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unreachable::Resolve => "name resolution failed",
            Unreachable::Refused => "connection refused",
            Unreachable::Timeout => "timed out",
            Unreachable::Tls => "TLS failed",
            Unreachable::HostKey => "SSH host key refused",
            Unreachable::NotFound => "not found",
            Unreachable::Other => "failed",
        })
    }
}

/// A server that answered with an error: an HTTP status of 400 or more, or an
/// FTP reply of 400 or more. The body is readable (`body.bytes()`), as with
/// urllib's `HTTPError`, which is also a response.
#[derive(Debug)]
pub struct StatusError {
    pub url: url::Url,
    pub code: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Response,
}

/// An error of [`crate::Opener::open`].
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// The text is not a URL.
    #[error("{url}: not a URL: {reason}")]
    BadUrl { url: String, reason: String },
    /// No handler opens this scheme.
    #[error("{url}: no handler for the scheme {scheme}:")]
    UnknownScheme { url: String, scheme: String },
    /// The URL could not be reached; `kind` says why.
    #[error("{url}: {kind}: {message}")]
    Unreachable {
        url: String,
        kind: Unreachable,
        message: String,
    },
    /// The server answered with an error status or reply.
    #[error("{}: {} {}", .0.url, .0.code, .0.reason)]
    Status(Box<StatusError>),
    /// More redirects than the opener allows.
    #[error("{url}: more than {max} redirects")]
    TooManyRedirects { url: String, max: u32 },
    /// A request the scheme cannot carry out (a body for a data URL, a
    /// redirect to a scheme that is never followed).
    #[error("{url}: {reason}")]
    Unsupported { url: String, reason: String },
    /// Reading the request body or a local file failed.
    #[error("{context}: {cause}")]
    Io {
        context: String,
        cause: std::io::Error,
    },
}

impl UrlError {
    /// The status or reply code when a server answered with an error.
    pub fn code(&self) -> Option<u16> {
        match self {
            UrlError::Status(s) => Some(s.code),
            _ => None,
        }
    }

    /// Why the URL could not be reached, when that is what happened.
    pub fn unreachable(&self) -> Option<Unreachable> {
        match self {
            UrlError::Unreachable { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    pub(crate) fn unreachable_at(
        url: &url::Url,
        kind: Unreachable,
        message: impl Into<String>,
    ) -> Self {
        UrlError::Unreachable {
            url: redacted(url),
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(url: &url::Url, reason: impl Into<String>) -> Self {
        UrlError::Unsupported {
            url: redacted(url),
            reason: reason.into(),
        }
    }
}

/// The URL without its password, for messages.
pub fn redacted(url: &url::Url) -> String {
    if url.password().is_some() {
        let mut u = url.clone();
        let _ = u.set_password(Some("***"));
        u.to_string()
    } else {
        url.to_string()
    }
}

/// Results of this crate.
pub type Result<T, E = UrlError> = std::result::Result<T, E>;
