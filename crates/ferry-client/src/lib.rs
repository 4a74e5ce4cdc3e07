//! ferry-client: FTP, FTPS and SFTP client sessions, listing parsers and transfers.
//!
//! - [`url`]: `ftp://`, `ftpes://`, `ftps://` URLs.
//! - [`session`]: [`FtpSession`], one logged-in control connection and the
//!   commands that need no data connection.
//! - [`transfer`]: downloads and uploads as async streams, listings.
//! - [`data`]: passive and active data connections and the 227 address policy.
//! - [`listing`]: parsers for MLSD, Unix `ls -l` and DOS/IIS listings.
//! - [`tls`]: certificate checks (system roots, CA file, pinned fingerprint,
//!   insecure) and session reuse for data connections.
//! - [`files`]: whole-file transfers with resume you can trust, verification,
//!   rate limits ([`RateLimit`]) and segmented downloads.
//! - [`netrc`]: credentials from `~/.netrc`.
//! - [`sftp`]: [`SftpSession`], SFTP over SSH, with host key checks.
//! - [`remote`]: [`RemoteSession`], one FTP or SFTP session behind one type, for
//!   the code that does not care which.
//!
//! ```no_run
//! # async fn demo() -> ferry_client::Result<()> {
//! use ferry_client::{ConnectOptions, FtpSession, FtpUrl};
//! let url = FtpUrl::parse("ftp://alice:secret@127.0.0.1:2121/")?;
//! let mut session = FtpSession::open(&url, &ConnectOptions::default()).await?;
//! for entry in session.list("").await? {
//!     println!("{} {:?}", entry.name, entry.size);
//! }
//! session.quit().await
//! # }
//! ```

pub mod checksum;
mod control;
pub mod data;
pub mod error;
pub mod files;
pub mod listing;
pub mod mirror;
pub mod netrc;
pub mod remote;
pub mod resume;
pub mod session;
pub mod sftp;
pub mod stream;
pub mod tls;
pub mod transfer;
pub mod url;
mod zero_copy;

pub use data::{DataMode, PasvAddressPolicy};
pub use error::{ClientError, Result};
/// The rate limit of `--limit-rate`, shared by a command's connections.
pub use ferry_rate::RateLimit;
pub use listing::{EntryKind, RemoteEntry};
pub use remote::{RemoteDownload, RemoteSession, RemoteUpload};
pub use session::{ConnectOptions, FtpSession, PasswordPrompt};
pub use sftp::SftpSession;
pub use sftp::host_key::HostKeyCheck;
pub use tls::{CertificateCheck, TlsVersions};
pub use transfer::{Download, Upload, UploadMode};
pub use url::{FtpUrl, Security};
