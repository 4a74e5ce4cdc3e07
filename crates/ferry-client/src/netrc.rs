//! Credentials from a `.netrc` file (the format of BSD ftp, curl and lftp):
//! `machine HOST login USER password PASS`, and `default` for any other host.
//! `macdef` blocks are skipped.

use std::path::{Path, PathBuf};

/// One login from a netrc file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetrcLogin {
    pub login: Option<String>,
    pub password: Option<String>,
}

/// A parsed netrc file.
#[derive(Debug, Clone, Default)]
pub struct Netrc {
    machines: Vec<(String, NetrcLogin)>,
    default: Option<NetrcLogin>,
}

impl Netrc {
    /// Parses the text of a netrc file. Unknown tokens are skipped, as other
    /// readers do.
    pub fn parse(text: &str) -> Self {
        let mut netrc = Netrc::default();
        let mut lines = text.lines();
        let mut tokens: Vec<String> = Vec::new();
        // macdef runs to the next empty line; drop those lines before tokenising.
        while let Some(line) = lines.next() {
            for w in line.split_whitespace() {
                if w == "macdef" {
                    for l in lines.by_ref() {
                        if l.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                if w.starts_with('#') && tokens.last().is_none_or(|t| t != "password") {
                    break;
                }
                tokens.push(w.to_owned());
            }
        }
        let mut current: Option<(Option<String>, NetrcLogin)> = None;
        let finish = |entry: Option<(Option<String>, NetrcLogin)>, netrc: &mut Netrc| match entry {
            Some((Some(host), login)) => netrc.machines.push((host, login)),
            Some((None, login)) => netrc.default = Some(login),
            None => {}
        };
        let mut it = tokens.into_iter();
        while let Some(t) = it.next() {
            match t.as_str() {
                "machine" => {
                    finish(current.take(), &mut netrc);
                    let host = it.next().unwrap_or_default();
                    current = Some((
                        Some(host),
                        NetrcLogin {
                            login: None,
                            password: None,
                        },
                    ));
                }
                "default" => {
                    finish(current.take(), &mut netrc);
                    current = Some((
                        None,
                        NetrcLogin {
                            login: None,
                            password: None,
                        },
                    ));
                }
                "login" | "password" | "account" => {
                    let value = it.next();
                    if let Some((_, login)) = current.as_mut() {
                        match t.as_str() {
                            "login" => login.login = value,
                            "password" => login.password = value,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        finish(current.take(), &mut netrc);
        netrc
    }

    /// Reads `$NETRC`, else `~/.netrc`. A missing file is an empty netrc.
    pub fn load_default() -> Self {
        let path = std::env::var_os("NETRC")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".netrc")));
        path.and_then(|p| std::fs::read_to_string(p).ok())
            .map(|t| Netrc::parse(&t))
            .unwrap_or_default()
    }

    /// The login for `host` (case-insensitive), else the `default` entry.
    pub fn lookup(&self, host: &str) -> Option<&NetrcLogin> {
        self.machines
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(host))
            .map(|(_, l)| l)
            .or(self.default.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_default_and_macros() {
        let n = Netrc::parse(
            "# comment\nmachine ftp.example.com login alice password s3cret\n\
             macdef init\ncd /pub\nbinary\n\n\
             machine Other.Host\n  login bob\n  password 'x#y'\n\
             default login anonymous password me@\n",
        );
        let a = n.lookup("FTP.example.com").expect("test input");
        assert_eq!(
            (a.login.as_deref(), a.password.as_deref()),
            (Some("alice"), Some("s3cret"))
        );
        let b = n.lookup("other.host").expect("test input");
        assert_eq!(b.password.as_deref(), Some("'x#y'"));
        let d = n.lookup("elsewhere").expect("test input");
        assert_eq!(d.login.as_deref(), Some("anonymous"));
        assert!(Netrc::parse("machine h login u").lookup("x").is_none());
    }
}
