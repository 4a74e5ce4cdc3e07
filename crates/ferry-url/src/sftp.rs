//! `sftp:` through ferry-client's SFTP session: the same requests as the FTP
//! schemes (a file URL downloads, a URL ending in `/` lists the directory as
//! `ls -l` lines, a request with a body uploads), over SSH.
//!
//! Credentials: the URL's, else the password manager's, else ~/.netrc, then the
//! user's keys (an SSH agent's, then `~/.ssh/id_ed25519`, `~/.ssh/id_ecdsa`,
//! `~/.ssh/id_rsa`); the user defaults to
//! the local one, as with OpenSSH. The host key is checked against
//! `~/.ssh/known_hosts` unless the opener is [`insecure`] or was given another
//! check ([`OpenerBuilder::host_key_check`]). A refusal is
//! [`UrlError::Status`] with the SFTP status code (2 no such file, 3 permission
//! denied) and the server's text.
//!
//! [`insecure`]: crate::OpenerBuilder::insecure
//! [`OpenerBuilder::host_key_check`]: crate::OpenerBuilder::host_key_check
//! [`UrlError::Status`]: crate::UrlError::Status

use std::sync::Arc;
use std::time::Duration;

use ferry_client::{ConnectOptions, FtpUrl, HostKeyCheck, RemoteSession};

use crate::auth::PasswordManager;
use crate::error::Result;
use crate::ftp::{convert, serve};
use crate::opener::{Handler, OpenContext};
use crate::request::Request;
use crate::response::Response;

/// Opens `sftp:` URLs.
#[derive(Debug)]
pub struct SftpHandler {
    host_key_check: HostKeyCheck,
    passwords: Arc<PasswordManager>,
    netrc: bool,
}

impl SftpHandler {
    pub fn new(host_key_check: HostKeyCheck, passwords: Arc<PasswordManager>, netrc: bool) -> Self {
        SftpHandler {
            host_key_check,
            passwords,
            netrc,
        }
    }
}

#[async_trait::async_trait]
impl Handler for SftpHandler {
    fn name(&self) -> &str {
        "sftp"
    }

    fn schemes(&self) -> &[&str] {
        &["sftp"]
    }

    async fn open(&self, request: Request, context: &OpenContext) -> Result<Response> {
        let url = request.url().clone();
        let mut target = FtpUrl::parse(url.as_str()).map_err(|e| convert(&url, e))?;
        if target.password.is_none() {
            if let Some((u, p)) = self.passwords.find_user_password(None, &url)
                && target.user.as_ref().is_none_or(|user| *user == u)
            {
                target.user = Some(u);
                target.password = Some(p);
            } else if self.netrc {
                let netrc = ferry_client::netrc::Netrc::load_default();
                if let Some(entry) = netrc.lookup(&target.host)
                    && (target.user.is_none() || target.user == entry.login)
                {
                    target.user = target.user.take().or_else(|| entry.login.clone());
                    target.password = entry.password.clone();
                }
            }
        }
        let options = ConnectOptions {
            host_key_check: self.host_key_check.clone(),
            connect_timeout: context.timeouts.connect.unwrap_or(Duration::from_secs(30)),
            io_timeout: context.timeouts.read.unwrap_or(Duration::from_secs(120)),
            ..ConnectOptions::default()
        };
        let session = RemoteSession::open(&target, &options)
            .await
            .map_err(|e| convert(&url, e))?;
        serve(session, &target, request).await
    }
}
