//! One logged-in FTP session: connecting (plain, explicit or implicit TLS), login,
//! FEAT, and the commands that need no data connection (RFC 959 §4.1, RFC 2389,
//! RFC 3659 §3-§4, RFC 4217 §4-§9). Transfers are in [`crate::transfer`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::Reply;
use time::OffsetDateTime;

use crate::checksum::{Checksum, HashAlgorithm};
use crate::control::Control;
use crate::data::{DataMode, PasvAddressPolicy};
use crate::error::{ClientError, Result};
use crate::sftp::host_key::HostKeyCheck;
use crate::stream::{NetStream, TlsSession, connect_tcp};
use crate::tls::{CertificateCheck, TlsVersions, client_config, server_name};
use crate::url::{FtpUrl, Security};

/// How to connect: TLS checks, data-connection mode and timeouts.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub certificate_check: CertificateCheck,
    pub tls_versions: TlsVersions,
    pub data_mode: DataMode,
    pub pasv_address: PasvAddressPolicy,
    /// For the TCP connection and the TLS handshake.
    pub connect_timeout: Duration,
    /// For each reply, and for each read or write of a data connection.
    pub io_timeout: Duration,
    /// Ask for EPSV before PASV (default). Off: PASV only, for servers or
    /// middleboxes that mishandle EPSV.
    pub use_epsv: bool,
    /// Send NOOP on the control connection after this long of a transfer, so that
    /// firewalls and servers do not drop it as idle. `None`: never. (SFTP: an
    /// SSH keepalive at this interval.)
    pub keepalive: Option<Duration>,
    /// SFTP: which host keys are trusted.
    pub host_key_check: HostKeyCheck,
    /// SFTP: private key files to offer (`--identity`), and only those; empty:
    /// the keys of the SSH agent at `SSH_AUTH_SOCK`, then `~/.ssh/id_ed25519`,
    /// `~/.ssh/id_ecdsa` and `~/.ssh/id_rsa` where they exist.
    pub identities: Vec<PathBuf>,
    /// SFTP: asks for a password when neither a known password nor a key was
    /// accepted, and for the passphrase of an encrypted key file the agent
    /// does not hold (the command line asks on a terminal, or through
    /// `SSH_ASKPASS`).
    pub ask_password: Option<PasswordPrompt>,
}

/// The function behind a [`PasswordPrompt`].
type AskFn = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Asks a person for a password, given a prompt; `None` when nobody answers.
#[derive(Clone)]
pub struct PasswordPrompt(Arc<AskFn>);

impl PasswordPrompt {
    pub fn new(ask: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        PasswordPrompt(Arc::new(ask))
    }

    /// Asks.
    pub fn ask(&self, prompt: &str) -> Option<String> {
        (self.0)(prompt)
    }
}

impl std::fmt::Debug for PasswordPrompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordPrompt")
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            certificate_check: CertificateCheck::default(),
            tls_versions: TlsVersions::default(),
            data_mode: DataMode::default(),
            pasv_address: PasvAddressPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            io_timeout: Duration::from_secs(120),
            use_epsv: true,
            keepalive: Some(Duration::from_secs(60)),
            host_key_check: HostKeyCheck::default(),
            identities: Vec::new(),
            ask_password: None,
        }
    }
}

/// What the server says it supports, from FEAT (RFC 2389).
#[derive(Debug, Clone, Default)]
pub struct Features {
    lines: Vec<String>,
}

impl Features {
    /// Parses the lines of a 211 FEAT reply.
    pub fn from_reply(reply: &Reply) -> Self {
        let lines = reply
            .lines()
            .iter()
            .skip(1)
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty() && !l.eq_ignore_ascii_case("end"))
            .collect();
        Features { lines }
    }

    /// True when a feature line starts with `name` (case-insensitive).
    pub fn has(&self, name: &str) -> bool {
        self.lines.iter().any(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case(name))
        })
    }

    /// The feature lines as the server sent them.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The HASH algorithms offered, and the one currently selected (starred).
    pub fn hash_algorithms(&self) -> (Vec<HashAlgorithm>, Option<HashAlgorithm>) {
        let Some(line) = self
            .lines
            .iter()
            .find(|l| l.len() > 5 && l[..5].eq_ignore_ascii_case("HASH "))
        else {
            return (Vec::new(), None);
        };
        let mut all = Vec::new();
        let mut current = None;
        for name in line[5..].split(';') {
            let starred = name.ends_with('*');
            if let Some(a) = HashAlgorithm::from_name(name.trim_end_matches('*')) {
                all.push(a);
                if starred {
                    current = Some(a);
                }
            }
        }
        (all, current)
    }
}

/// A session with an FTP server, logged in or not yet.
#[derive(Debug)]
pub struct FtpSession {
    pub(crate) control: Control,
    pub(crate) tls: Option<TlsSession>,
    pub(crate) options: ConnectOptions,
    features: Features,
    greeting: Reply,
    /// PROT P is in force: data connections use TLS.
    pub(crate) protect_data: bool,
    /// The TYPE last set: `Some(true)` for binary.
    binary: Option<bool>,
    pub(crate) epsv_refused: bool,
    pub(crate) eprt_refused: bool,
}

fn expect(command: &str, reply: Reply, ok: impl Fn(u16) -> bool) -> Result<Reply> {
    if ok(reply.code()) {
        Ok(reply)
    } else {
        Err(refused(command, &reply))
    }
}

/// The error for a refusal, with the command's password hidden.
pub(crate) fn refused(command: &str, reply: &Reply) -> ClientError {
    let command = if command.len() > 5 && command[..5].eq_ignore_ascii_case("PASS ") {
        "PASS ***".to_owned()
    } else {
        command.to_owned()
    };
    ClientError::Reply {
        command,
        code: reply.code(),
        text: reply.lines().join(" "),
    }
}

fn is_2xx(code: u16) -> bool {
    (200..300).contains(&code)
}

impl FtpSession {
    /// Connects to the server of `url` and reads its greeting; for `ftpes://`
    /// negotiates AUTH TLS, for `ftps://` starts with TLS. Does not log in.
    pub async fn connect(url: &FtpUrl, options: &ConnectOptions) -> Result<Self> {
        if !url.security.is_ftp() {
            return Err(ClientError::BadUrl {
                url: url.to_string(),
                reason: "an sftp:// URL is opened by an SFTP session, not FTP".to_owned(),
            });
        }
        let tcp = connect_tcp(&url.host, url.port, options.connect_timeout).await?;
        let tls = match url.security {
            Security::Plain | Security::Ssh => None,
            Security::Explicit | Security::Implicit => Some(TlsSession {
                config: client_config(&options.certificate_check, options.tls_versions)?,
                server_name: server_name(&url.host)?,
            }),
        };
        let stream = match (&tls, url.security) {
            (Some(t), Security::Implicit) => t.handshake(tcp, options.connect_timeout).await?,
            _ => NetStream::Plain(tcp),
        };
        let mut control = Control::new(stream, options.io_timeout);
        control.timeout = options.connect_timeout.max(Duration::from_secs(1));
        let greeting = control.reply().await?;
        control.timeout = options.io_timeout;
        if !is_2xx(greeting.code()) {
            return Err(refused("(greeting)", &greeting));
        }
        if url.security == Security::Explicit
            && let Some(t) = &tls
        {
            let reply = control.command("AUTH TLS").await?;
            expect("AUTH TLS", reply, |c| c == 234)?;
            control = control.start_tls(t).await?;
        }
        Ok(FtpSession {
            control,
            tls,
            options: options.clone(),
            features: Features::default(),
            greeting,
            protect_data: false,
            binary: None,
            epsv_refused: false,
            eprt_refused: false,
        })
    }

    /// Connects and logs in with the URL's user and password (anonymous when it
    /// has none), then sets binary type.
    pub async fn open(url: &FtpUrl, options: &ConnectOptions) -> Result<Self> {
        let mut session = Self::connect(url, options).await?;
        let user = url.user.as_deref().unwrap_or("anonymous");
        let password =
            url.password
                .as_deref()
                .unwrap_or(if url.user.is_none() { "ferry@" } else { "" });
        session.login(user, password).await?;
        Ok(session)
    }

    /// USER and PASS (RFC 959 §4.1.1), then FEAT, OPTS UTF8 ON, and for TLS
    /// sessions PBSZ 0 and PROT P (RFC 4217 §9).
    pub async fn login(&mut self, user: &str, password: &str) -> Result<()> {
        let command = format!("USER {user}");
        let reply = self.control.command(&command).await?;
        let reply = match reply.code() {
            230 => reply,
            331 | 332 => {
                let pass = format!("PASS {password}");
                let reply = self.control.command(&pass).await?;
                expect(&pass, reply, |c| c == 230 || c == 202)?
            }
            _ => return Err(refused(&command, &reply)),
        };
        drop(reply);
        let feat = self.control.command("FEAT").await?;
        if feat.code() == 211 {
            self.features = Features::from_reply(&feat);
        }
        if self.features.has("UTF8") {
            // A refusal is harmless: names are sent as UTF-8 regardless.
            let _ = self.control.command("OPTS UTF8 ON").await?;
        }
        if self.tls.is_some() {
            let reply = self.control.command("PBSZ 0").await?;
            expect("PBSZ 0", reply, is_2xx)?;
            let reply = self.control.command("PROT P").await?;
            expect("PROT P", reply, is_2xx)?;
            self.protect_data = true;
        }
        self.set_binary(true).await
    }

    /// The server's greeting (220 reply).
    pub fn greeting(&self) -> &Reply {
        &self.greeting
    }

    /// What FEAT announced.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// True when the control connection is under TLS.
    pub fn is_tls(&self) -> bool {
        self.control.stream().is_tls()
    }

    /// The server's address on the control connection.
    pub fn peer_addr(&self) -> Result<SocketAddr> {
        Ok(self.control.stream().tcp().peer_addr()?)
    }

    /// The options this session was opened with.
    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }

    /// Changes how later data connections are made.
    pub fn set_data_mode(&mut self, mode: DataMode) {
        self.options.data_mode = mode;
    }

    /// Sends any command line and returns the reply, whatever its code (the
    /// shell's `quote`).
    pub async fn raw(&mut self, line: &str) -> Result<Reply> {
        self.control.command(line).await
    }

    /// Sends a command and requires a 2xx reply (or one `ok` accepts).
    pub(crate) async fn simple(&mut self, command: &str) -> Result<Reply> {
        let reply = self.control.command(command).await?;
        expect(command, reply, is_2xx)
    }

    /// TYPE I (`true`) or TYPE A (`false`); sent only when it changes.
    pub async fn set_binary(&mut self, binary: bool) -> Result<()> {
        if self.binary != Some(binary) {
            self.simple(if binary { "TYPE I" } else { "TYPE A" })
                .await?;
            self.binary = Some(binary);
        }
        Ok(())
    }

    /// True when TYPE I is in force.
    pub fn is_binary(&self) -> bool {
        self.binary != Some(false)
    }

    /// PWD: the current directory (RFC 959 §4.1.3, quoting per RFC 959 App. II).
    pub async fn pwd(&mut self) -> Result<String> {
        let reply = self.simple("PWD").await?;
        let text = reply.lines().first().cloned().unwrap_or_default();
        parse_quoted(&text).ok_or(ClientError::BadReply {
            command: "PWD".to_owned(),
            text,
        })
    }

    /// CWD.
    pub async fn cwd(&mut self, path: &str) -> Result<()> {
        self.simple(&format!("CWD {path}")).await.map(drop)
    }

    /// CDUP.
    pub async fn cdup(&mut self) -> Result<()> {
        self.simple("CDUP").await.map(drop)
    }

    /// MKD; returns the path the server created, when it says.
    pub async fn mkdir(&mut self, path: &str) -> Result<String> {
        let reply = self.simple(&format!("MKD {path}")).await?;
        let text = reply.lines().first().cloned().unwrap_or_default();
        Ok(parse_quoted(&text).unwrap_or_else(|| path.to_owned()))
    }

    /// RMD.
    pub async fn rmdir(&mut self, path: &str) -> Result<()> {
        self.simple(&format!("RMD {path}")).await.map(drop)
    }

    /// DELE.
    pub async fn delete(&mut self, path: &str) -> Result<()> {
        self.simple(&format!("DELE {path}")).await.map(drop)
    }

    /// RNFR and RNTO.
    pub async fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let command = format!("RNFR {from}");
        let reply = self.control.command(&command).await?;
        expect(&command, reply, |c| c == 350)?;
        self.simple(&format!("RNTO {to}")).await.map(drop)
    }

    /// SIZE (RFC 3659 §4): `None` when the server does not know the command.
    /// The size is of the file as stored (TYPE I is set by [`Self::login`]).
    pub async fn size(&mut self, path: &str) -> Result<Option<u64>> {
        let command = format!("SIZE {path}");
        let reply = self.control.command(&command).await?;
        match reply.code() {
            213 => {
                let text = reply.lines().first().cloned().unwrap_or_default();
                text.trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| ClientError::BadReply { command, text })
            }
            500 | 502 => Ok(None),
            _ => Err(refused(&command, &reply)),
        }
    }

    /// MDTM (RFC 3659 §3): `None` when the server does not know the command.
    pub async fn modified(&mut self, path: &str) -> Result<Option<OffsetDateTime>> {
        let command = format!("MDTM {path}");
        let reply = self.control.command(&command).await?;
        match reply.code() {
            213 => {
                let text = reply.lines().first().cloned().unwrap_or_default();
                ferry_proto::timeval::parse(text.trim())
                    .map(Some)
                    .ok_or(ClientError::BadReply { command, text })
            }
            500 | 502 => Ok(None),
            _ => Err(refused(&command, &reply)),
        }
    }

    /// MFMT (draft-somers-ftp-mfxx): sets the modification time where FEAT
    /// offers it. `Ok(false)` when the server cannot.
    pub async fn set_modified(&mut self, path: &str, when: OffsetDateTime) -> Result<bool> {
        if !self.features.has("MFMT") {
            return Ok(false);
        }
        let command = format!("MFMT {} {path}", ferry_proto::timeval::format(when));
        self.simple(&command).await?;
        Ok(true)
    }

    /// NOOP.
    pub async fn noop(&mut self) -> Result<()> {
        self.simple("NOOP").await.map(drop)
    }

    /// The server's checksum of a file, or of `range` (start, exclusive end) of
    /// it: HASH (with RANG for a range) where FEAT offers it, else XSHA256,
    /// XSHA1, XMD5 or XCRC (with `start end` for a range, as ProFTPD and ferry
    /// take them). `Ok(None)` when the server offers none that it honours.
    pub async fn checksum(
        &mut self,
        path: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Option<Checksum>> {
        let (_, current) = self.features.hash_algorithms();
        if let Some(algorithm) = current
            && let Some(c) = self.hash_command(path, algorithm, range).await?
        {
            return Ok(Some(c));
        }
        self.x_checksum(path, range).await
    }

    /// HASH, with RANG first for a range. A server that answers with another
    /// range than the one asked for (ProFTPD 1.3.8 applies RANG to transfers
    /// only) has not hashed the range: `Ok(None)`.
    async fn hash_command(
        &mut self,
        path: &str,
        algorithm: HashAlgorithm,
        range: Option<(u64, u64)>,
    ) -> Result<Option<Checksum>> {
        let wanted = match range {
            None => None,
            Some((start, end)) if end <= start => {
                return Ok(Some(Checksum::of_nothing(algorithm)));
            }
            Some((start, end)) => {
                if !self.features.has("RANG") {
                    return Ok(None);
                }
                let command = format!("RANG {start} {}", end - 1);
                let reply = self.control.command(&command).await?;
                expect(&command, reply, |c| c == 350)?;
                Some(format!("{start}-{}", end - 1))
            }
        };
        let command = format!("HASH {path}");
        let reply = self.control.command(&command).await?;
        if wanted.is_some() {
            // Servers that keep RANG for the next transfer must not apply it
            // to a RETR that follows.
            let _ = self.control.command("RANG 1 0").await?;
        }
        let reply = expect(&command, reply, is_2xx)?;
        // The digest is on the last line: ProFTPD sends
        // "213-Computing SHA-1 digest" first. "SHA-256 0-99 <hex> <path>"
        let text = reply.lines().last().cloned().unwrap_or_default();
        let mut words = text.split_whitespace();
        let (Some(name), Some(answered), Some(hex)) = (words.next(), words.next(), words.next())
        else {
            return Err(ClientError::BadReply { command, text });
        };
        if let Some(wanted) = wanted
            && answered != wanted
        {
            return Ok(None);
        }
        Ok(Some(Checksum {
            algorithm: HashAlgorithm::from_name(name).unwrap_or(algorithm),
            hex: hex.to_ascii_lowercase(),
        }))
    }

    /// XSHA256, XSHA1, XMD5 or XCRC, whichever FEAT lists first in that order.
    async fn x_checksum(
        &mut self,
        path: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Option<Checksum>> {
        // With a range the arguments are "path start end": a path with spaces
        // would be ambiguous.
        if range.is_some() && path.contains(char::is_whitespace) {
            return Ok(None);
        }
        for (feature, algorithm) in [
            ("XSHA256", HashAlgorithm::Sha256),
            ("XSHA1", HashAlgorithm::Sha1),
            ("XMD5", HashAlgorithm::Md5),
            ("XCRC", HashAlgorithm::Crc32),
        ] {
            if !self.features.has(feature) {
                continue;
            }
            let command = match range {
                Some((start, end)) => format!("{feature} {path} {start} {end}"),
                None => format!("{feature} {path}"),
            };
            let reply = self.simple(&command).await?;
            let text = reply.lines().last().cloned().unwrap_or_default();
            let hex = text
                .split_whitespace()
                .find(|w| w.len() >= 8 && w.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| ClientError::BadReply {
                    command: command.clone(),
                    text: text.clone(),
                })?;
            return Ok(Some(Checksum {
                algorithm,
                hex: hex.to_ascii_lowercase(),
            }));
        }
        Ok(None)
    }

    /// QUIT, then close the connection.
    pub async fn quit(mut self) -> Result<()> {
        let result = self.control.command("QUIT").await;
        self.control.shutdown().await;
        match result {
            Ok(_) | Err(ClientError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The text between the first and last double quote, with `""` unescaped
/// (RFC 959 Appendix II): `257 "/a ""b""" created` gives `/a "b"`.
pub fn parse_quoted(text: &str) -> Option<String> {
    let start = text.find('"')?;
    let rest = &text[start + 1..];
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '"' {
            if chars.peek() == Some(&'"') {
                out.push('"');
                chars.next();
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_paths() {
        assert_eq!(
            parse_quoted("\"/a \"\"b\"\"\" is current"),
            Some("/a \"b\"".to_owned())
        );
        assert_eq!(parse_quoted("\"/\""), Some("/".to_owned()));
        assert_eq!(parse_quoted("no quotes"), None);
        assert_eq!(parse_quoted("\"unterminated"), None);
    }

    #[test]
    fn features() {
        let reply = Reply::multi(
            211,
            vec![
                "Features:".into(),
                "MLST type*;size*;".into(),
                "HASH SHA-256;SHA-1*;MD5".into(),
                "RANG".into(),
                "End".into(),
            ],
        );
        let f = Features::from_reply(&reply);
        assert!(f.has("mlst") && f.has("RANG") && !f.has("MLSD"));
        let (all, current) = f.hash_algorithms();
        assert_eq!(all.len(), 3);
        assert_eq!(current, Some(HashAlgorithm::Sha1));
    }
}
