//! `ftp://`, `ftpes://`, `ftps://` and `sftp://` URLs (RFC 1738 §3.2, with the
//! TLS schemes of ../shared/SPEC.md, and draft-ietf-secsh-scp-sftp-ssh-uri for
//! SFTP).
//!
//! The path of an FTP URL is relative to the directory the server puts the user in
//! after login, as RFC 1738 says and curl does: `ftp://host/pub/a.txt` is
//! `pub/a.txt` there. A path that starts with an encoded or doubled slash
//! (`ftp://host/%2Fetc/motd`, `ftp://host//etc/motd`) is absolute.
//!
//! The path of an SFTP URL is absolute, as in the SFTP URI draft and curl:
//! `sftp://host/etc/motd` is `/etc/motd`; `sftp://host/~/a.txt` is `a.txt` in the
//! login (home) directory, and `sftp://host` with no path is that directory.

use std::fmt;

use percent_encoding::percent_decode_str;

use crate::error::{ClientError, Result};

/// How the connection is protected, and so which protocol it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain FTP (`ftp://`).
    Plain,
    /// Explicit TLS: AUTH TLS after the greeting (`ftpes://`).
    Explicit,
    /// Implicit TLS: TLS from the first byte (`ftps://`).
    Implicit,
    /// SFTP over SSH (`sftp://`).
    Ssh,
}

impl Security {
    /// The port a URL of this kind means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Security::Plain | Security::Explicit => 21,
            Security::Implicit => 990,
            Security::Ssh => 22,
        }
    }

    /// The URL scheme.
    pub fn scheme(self) -> &'static str {
        match self {
            Security::Plain => "ftp",
            Security::Explicit => "ftpes",
            Security::Implicit => "ftps",
            Security::Ssh => "sftp",
        }
    }

    /// True for the FTP schemes, false for SFTP.
    pub fn is_ftp(self) -> bool {
        self != Security::Ssh
    }
}

/// A parsed FTP or SFTP URL, with its escapes decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct FtpUrl {
    pub security: Security,
    /// Host name or address, without brackets around IPv6 addresses.
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    /// The remote path: relative to the login directory unless it starts with `/`.
    /// Empty means the login directory itself.
    pub path: String,
}

impl fmt::Debug for FtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FtpUrl({self})")
    }
}

/// Shown without the password.
impl fmt::Display for FtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.security.scheme())?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            write!(f, "{}", self.host)?;
        }
        if self.port != self.security.default_port() {
            write!(f, ":{}", self.port)?;
        }
        if self.security == Security::Ssh {
            match self.path.strip_prefix('/') {
                Some(_) => write!(f, "{}", self.path),
                None if self.path.is_empty() => Ok(()),
                None => write!(f, "/~/{}", self.path),
            }
        } else if self.path.starts_with('/') {
            write!(f, "/{}", self.path.replacen('/', "%2F", 1))
        } else {
            write!(f, "/{}", self.path)
        }
    }
}

impl FtpUrl {
    /// Parses `scheme://[user[:password]@]host[:port]/path`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: &str| ClientError::BadUrl {
            url: redact(text),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let security = match url.scheme() {
            "ftp" => Security::Plain,
            "ftpes" => Security::Explicit,
            "ftps" => Security::Implicit,
            "sftp" => Security::Ssh,
            other => {
                return Err(bad(&format!(
                    "scheme {other}: is not ftp, ftpes, ftps or sftp"
                )));
            }
        };
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(bad("no host")),
        };
        let decode = |s: &str, what: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| bad(&format!("{what} is not UTF-8 once decoded")))
        };
        let user = match url.username() {
            "" => None,
            u => Some(decode(u, "the user name")?),
        };
        let password = url
            .password()
            .map(|p| decode(p, "the password"))
            .transpose()?;
        let raw = url.path();
        let raw = if security == Security::Ssh {
            // Absolute, but for `/~/...`: relative to the home directory.
            match raw.strip_prefix("/~") {
                Some(rest) if rest.is_empty() || rest.starts_with('/') => {
                    rest.strip_prefix('/').unwrap_or(rest)
                }
                _ => raw,
            }
        } else {
            raw.strip_prefix('/').unwrap_or(raw)
        };
        let path = decode(raw, "the path")?;
        if path.contains(['\0', '\r', '\n']) {
            return Err(bad("the path holds a NUL or line break"));
        }
        Ok(FtpUrl {
            security,
            host,
            port: url.port().unwrap_or(security.default_port()),
            user,
            password,
            path,
        })
    }

    /// The same server and account with another path.
    pub fn with_path(&self, path: impl Into<String>) -> Self {
        FtpUrl {
            path: path.into(),
            ..self.clone()
        }
    }

    /// `host:port` as a connect target (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// True when the path names a directory (ends with `/`, or is empty).
    pub fn names_directory(&self) -> bool {
        self.path.is_empty() || self.path.ends_with('/')
    }
}

/// The URL with its password replaced, for messages.
pub fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_schemes() {
        let u =
            FtpUrl::parse("ftp://alice:s%40cret@example.com/pub/a%20b.txt").expect("test input");
        assert_eq!(u.security, Security::Plain);
        assert_eq!(u.port, 21);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!(u.path, "pub/a b.txt");
        let u = FtpUrl::parse("ftpes://h:2121/").expect("test input");
        assert_eq!(
            (u.security, u.port, u.path.as_str()),
            (Security::Explicit, 2121, "")
        );
        let u = FtpUrl::parse("ftps://[::1]/x").expect("test input");
        assert_eq!(
            (u.security, u.port, u.host.as_str()),
            (Security::Implicit, 990, "::1")
        );
        assert_eq!(u.authority(), "[::1]:990");
    }

    #[test]
    fn absolute_paths_and_display() {
        let u = FtpUrl::parse("ftp://h/%2Fetc/motd").expect("test input");
        assert_eq!(u.path, "/etc/motd");
        let u2 = FtpUrl::parse("ftp://h//etc/motd").expect("test input");
        assert_eq!(u2.path, "/etc/motd");
        assert_eq!(u.to_string(), "ftp://h/%2Fetc/motd");
        let with_pass = FtpUrl::parse("ftp://a:b@h:99/x/").expect("test input");
        assert_eq!(with_pass.to_string(), "ftp://a@h:99/x/");
        assert!(with_pass.names_directory());
    }

    #[test]
    fn sftp_paths_are_absolute_but_for_the_home_prefix() {
        let u = FtpUrl::parse("sftp://bob@h/etc/motd").expect("test input");
        assert_eq!(
            (u.security, u.port, u.path.as_str()),
            (Security::Ssh, 22, "/etc/motd")
        );
        assert_eq!(u.to_string(), "sftp://bob@h/etc/motd");
        let home = FtpUrl::parse("sftp://h:2222/~/notes/a%20b.txt").expect("test input");
        assert_eq!(home.path, "notes/a b.txt");
        assert_eq!(home.to_string(), "sftp://h:2222/~/notes/a b.txt");
        for (text, path) in [
            ("sftp://h", ""),
            ("sftp://h/~", ""),
            ("sftp://h/~/", ""),
            ("sftp://h/", "/"),
        ] {
            assert_eq!(
                FtpUrl::parse(text).expect("test input").path,
                path,
                "{text}"
            );
        }
        // `~user` is not the home prefix: taken as written.
        assert_eq!(
            FtpUrl::parse("sftp://h/~bob/x").expect("test input").path,
            "/~bob/x"
        );
        assert!(
            FtpUrl::parse("sftp://h/")
                .expect("test input")
                .names_directory()
        );
    }

    #[test]
    fn refuses_what_it_cannot_open() {
        for bad in [
            "http://h/",
            "ftpes:///x",
            "ftp://h/%00",
            "ftp://h/%FF",
            "nonsense",
        ] {
            assert!(FtpUrl::parse(bad).is_err(), "{bad}");
        }
        let e = FtpUrl::parse("http://u:secret@h/")
            .expect_err("not ftp")
            .to_string();
        assert!(!e.contains("secret"), "{e}");
    }
}
