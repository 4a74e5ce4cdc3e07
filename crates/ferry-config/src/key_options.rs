//! The options before a key in an `authorized_keys` line (sshd(8),
//! "AUTHORIZED_KEYS FILE FORMAT"): `from="10.0.0.0/8",no-pty ssh-ed25519 …`.
//!
//! ferry serves files only: it never opens a shell, runs a command, starts
//! a pty, forwards ports, X11 or an agent, or sets a session's environment.
//! So an option that only restricts those (`restrict`, `no-pty`,
//! `no-port-forwarding`, `permitopen="…"` …) already holds, and an option
//! that grants them back (`pty`, `port-forwarding` …) grants nothing; both
//! are taken. The options that bear on what ferry does are kept and
//! enforced:
//!
//! - `from="pattern-list"`: the client's address must match (CIDR ranges,
//!   addresses, `*`/`?` wildcards over the address's text; `!` refuses). As
//!   sshd with its default `UseDNS no`, patterns are matched against the
//!   address only, so a host-name pattern matches no one.
//! - `expiry-time="YYYYMMDD[HHMM[SS]][Z]"`: the key signs in no more from
//!   then on. Read as UTC, as ferry's `login_hours` are (sshd reads it in the
//!   server's local time zone unless it ends in `Z`).
//! - `command="…"`: only a command that runs SFTP (`internal-sftp`, or
//!   OpenSSH's `sftp-server` by any path) with options that change only its
//!   logging; another command, or `sftp-server -R` and the like, restricts
//!   the user in a way ferry does not apply, so the line is refused.
//! - `cert-authority` (with `principals="…"`): the key is an authority whose
//!   certificates sign this user in, not a key to sign in with.
//!
//! Anything else (an unknown option, a value where none is taken, a
//! damaged quote) refuses the line with the reason, as sshd refuses it:
//! a restriction an operator wrote must not be dropped silently.

use std::fmt;
use std::net::IpAddr;

use std::time::{SystemTime, UNIX_EPOCH};

use time::PrimitiveDateTime;

/// What the options of one `authorized_keys` line say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyOptions {
    /// `from="…"`: the client addresses the key signs in from.
    pub from: Option<AddressPatterns>,
    /// `expiry-time="…"`: the Unix time from which the key signs in no more.
    pub expires_at: Option<i64>,
    /// `cert-authority`: the key is a certificate authority for this user.
    pub cert_authority: bool,
    /// `principals="…"`: with `cert-authority`, the principals a
    /// certificate must name one of (by default, the user's name).
    pub principals: Option<Vec<String>>,
}

impl KeyOptions {
    /// Reads the comma-separated options (the first field of the line).
    pub fn parse(text: &str) -> Result<KeyOptions, String> {
        let mut options = KeyOptions::default();
        for (name, value) in split(text)? {
            let lower = name.to_ascii_lowercase();
            let want_value = |value: Option<String>| {
                value.ok_or_else(|| format!("option `{name}` needs a value: {name}=\"…\""))
            };
            let no_value = |value: &Option<String>| match value {
                Some(_) => Err(format!("option `{name}` takes no value")),
                None => Ok(()),
            };
            match lower.as_str() {
                // What ferry never offers: restricted already, or granted
                // to no effect.
                "restrict"
                | "no-pty"
                | "no-port-forwarding"
                | "no-agent-forwarding"
                | "no-x11-forwarding"
                | "no-user-rc"
                | "pty"
                | "port-forwarding"
                | "agent-forwarding"
                | "x11-forwarding"
                | "user-rc"
                | "no-touch-required"
                | "verify-required" => no_value(&value)?,
                "permitopen" | "permitlisten" | "environment" | "tunnel" => {
                    want_value(value)?;
                }
                "from" => {
                    let patterns = AddressPatterns::parse(&want_value(value)?)?;
                    options.from = Some(patterns);
                }
                "expiry-time" => {
                    options.expires_at = Some(expiry_time(&want_value(value)?)?);
                }
                "command" => check_sftp_command(&want_value(value)?)?,
                "cert-authority" => {
                    no_value(&value)?;
                    options.cert_authority = true;
                }
                "principals" => {
                    let list = want_value(value)?;
                    let names: Vec<String> = list
                        .split(',')
                        .map(|p| p.trim().to_owned())
                        .filter(|p| !p.is_empty())
                        .collect();
                    if names.is_empty() {
                        return Err("principals=\"\" names no one".into());
                    }
                    options.principals = Some(names);
                }
                _ => return Err(format!("unknown option `{name}`")),
            }
        }
        if options.principals.is_some() && !options.cert_authority {
            return Err("principals=\"…\" is only for a cert-authority line".into());
        }
        Ok(options)
    }

    /// Whether the key signs in from `client` at `now`: its `from` admits
    /// the address and its `expiry-time` has not come. A key with no
    /// address to check against (`None`) and a `from` does not.
    pub fn admit(&self, client: Option<IpAddr>, now: SystemTime) -> Result<(), String> {
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if let Some(expires) = self.expires_at
            && now >= expires
        {
            return Err(format!(
                "the key expired (expiry-time, Unix time {expires})"
            ));
        }
        if let Some(from) = &self.from {
            match client {
                Some(ip) if from.matches(ip) => {}
                Some(ip) => {
                    return Err(format!(
                        "the key is not for clients from {ip} (from=\"{from}\")"
                    ));
                }
                None => return Err(format!("the key is only for clients from {from}")),
            }
        }
        Ok(())
    }
}

/// Splits `a,b="x,y",c` into names and unquoted values; a `\"` inside a
/// value stands for `"`.
fn split(text: &str) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == ',' || c == '=' {
                break;
            }
            if !(c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(format!("`{text}` is not a list of options"));
            }
            name.push(c);
            chars.next();
        }
        if name.is_empty() {
            return Err(format!("an empty option in `{text}`"));
        }
        let mut value = None;
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.next() != Some('"') {
                return Err(format!(
                    "option `{name}`: its value must be in double quotes"
                ));
            }
            let mut v = String::new();
            loop {
                match chars.next() {
                    None => return Err(format!("option `{name}`: the closing quote is missing")),
                    Some('"') => break,
                    Some('\\') if chars.peek() == Some(&'"') => {
                        chars.next();
                        v.push('"');
                    }
                    Some(c) => v.push(c),
                }
            }
            value = Some(v);
        }
        out.push((name, value));
        match chars.next() {
            None => return Ok(out),
            Some(',') => {}
            Some(c) => return Err(format!("`{c}` after an option in `{text}`")),
        }
    }
}

/// `YYYYMMDD[HHMM[SS]][Z]` as a Unix time, UTC.
fn expiry_time(text: &str) -> Result<i64, String> {
    let bad = || format!("expiry-time=\"{text}\" is not YYYYMMDD[HHMM[SS]]");
    let digits = text.strip_suffix(['Z', 'z']).unwrap_or(text);
    // The hours, minutes and seconds left out are zero.
    let whole = match digits.len() {
        8 => format!("{digits}000000"),
        12 => format!("{digits}00"),
        14 => digits.to_owned(),
        _ => return Err(bad()),
    };
    let format = time::macros::format_description!("[year][month][day][hour][minute][second]");
    PrimitiveDateTime::parse(&whole, format)
        .map(|t| t.assume_utc().unix_timestamp())
        .map_err(|_| bad())
}

/// Whether a forced command (`command="…"` here, a certificate's
/// `force-command`) runs SFTP as ferry serves it: `internal-sftp` or
/// OpenSSH's `sftp-server` (by any path), with no option but those of its
/// logging (`-e`, `-f FACILITY`, `-l LEVEL`). The others (`-R` read-only,
/// `-d` start directory, `-p`/`-P` request lists, `-u` umask) restrict SFTP
/// in ways ferry leaves to its own permissions, so they refuse.
pub fn check_sftp_command(command: &str) -> Result<(), String> {
    let mut words = command.split_whitespace();
    let program = words.next().unwrap_or("");
    if program != "internal-sftp" && program.rsplit('/').next() != Some("sftp-server") {
        return Err(format!(
            "it forces the command {command:?}, which is not SFTP (ferry serves SFTP only)"
        ));
    }
    while let Some(word) = words.next() {
        match word {
            "-e" => {}
            "-f" | "-l" => {
                words.next();
            }
            w if (w.starts_with("-f") || w.starts_with("-l")) && w.len() > 2 => {}
            other => {
                return Err(format!(
                    "it forces {command:?}, whose `{other}` ferry does not apply: restrict the user with permissions instead"
                ));
            }
        }
    }
    Ok(())
}

/// A `from="…"` list: addresses, CIDR ranges and wildcards, each possibly
/// negated with `!`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPatterns {
    text: String,
    patterns: Vec<(bool, AddressPattern)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum AddressPattern {
    Range(ipnet::IpNet),
    Wildcard(String),
}

impl AddressPatterns {
    /// Reads a comma-separated pattern list. A range with host bits set
    /// (`10.0.0.1/8`) is refused, as sshd refuses it.
    pub fn parse(text: &str) -> Result<AddressPatterns, String> {
        let mut patterns = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            let (negated, pattern) = match item.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, item),
            };
            if pattern.is_empty() {
                return Err(format!("from=\"{text}\" has an empty pattern"));
            }
            let parsed = if let Ok(net) = pattern.parse::<ipnet::IpNet>() {
                if net.trunc() != net {
                    return Err(format!(
                        "from=\"{text}\": `{pattern}` has bits set past its mask length (did you mean {}?)",
                        net.trunc()
                    ));
                }
                AddressPattern::Range(net)
            } else if let Ok(ip) = pattern.parse::<IpAddr>() {
                AddressPattern::Range(ipnet::IpNet::from(ip))
            } else {
                AddressPattern::Wildcard(pattern.to_ascii_lowercase())
            };
            patterns.push((negated, parsed));
        }
        Ok(AddressPatterns {
            text: text.to_owned(),
            patterns,
        })
    }

    /// Whether `ip` matches: some pattern does and no negated one does.
    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let text = ip.to_string();
        let mut matched = false;
        for (negated, pattern) in &self.patterns {
            let hit = match pattern {
                AddressPattern::Range(net) => net.contains(&ip),
                AddressPattern::Wildcard(w) => wildcard(w.as_bytes(), text.as_bytes()),
            };
            if hit && *negated {
                return false;
            }
            matched |= hit;
        }
        matched
    }
}

impl fmt::Display for AddressPatterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// `*` (any run) and `?` (any one character) over `text`, as OpenSSH's
/// `match_pattern`.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| wildcard(rest, &text[skip..])),
        Some((&p, rest)) => match text.split_first() {
            Some((&t, more)) if p == b'?' || p == t => wildcard(rest, more),
            _ => false,
        },
    }
}

/// One name an OpenSSH certificate may list among its principals, as a
/// user's `ssh_principals` give it (sshd's `AuthorizedPrincipalsFile`, one
/// name per line): not empty, without blanks, commas or control characters.
/// A blank inside is refused rather than kept: `"ops dev"` is two names
/// written as one, which would never match a certificate; a comma is where
/// `ferry user set NAME ssh_principals=ops,dev` splits the items.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal(String);

impl Principal {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Principal {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("an empty principal names no one".into());
        }
        if s.contains(|c: char| c == ',' || c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "`{}` is not a principal: one name per item, without blanks or commas",
                s.escape_debug()
            ));
        }
        Ok(Principal(s.to_owned()))
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<&str> for Principal {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

crate::string_serde!(Principal);

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// Unix time `secs`.
    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(secs)
    }

    #[test]
    fn harmless_options_are_taken_and_the_rest_kept() {
        let o = KeyOptions::parse(
            "restrict,no-pty,No-Port-Forwarding,permitopen=\"host:22\",environment=\"A=\\\"b,c\\\"\",\
             from=\"10.0.0.0/8,!10.9.0.0/16,192.168.1.?,2001:db8::/32\",expiry-time=\"20300102\",\
             command=\"internal-sftp -l INFO -f AUTH\"",
        )
        .expect("parsed");
        assert!(!o.cert_authority);
        assert_eq!(o.expires_at, Some(1_893_542_400));
        let from = o.from.clone().expect("from");
        for (addr, admitted) in [
            ("10.1.2.3", true),
            ("10.9.0.1", false),
            ("192.168.1.7", true),
            ("192.168.1.70", false),
            ("::ffff:10.1.2.3", true),
            ("2001:db8::1", true),
            ("127.0.0.1", false),
        ] {
            assert_eq!(from.matches(ip(addr)), admitted, "{addr}");
        }
        assert_eq!(o.admit(Some(ip("10.1.2.3")), at(1_893_542_399)), Ok(()));
        let expired = o
            .admit(Some(ip("10.1.2.3")), at(1_893_542_400))
            .expect_err("expired");
        assert!(expired.contains("expired"), "{expired}");
        let elsewhere = o
            .admit(Some(ip("127.0.0.1")), at(0))
            .expect_err("elsewhere");
        assert!(
            elsewhere.contains("not for clients from 127.0.0.1"),
            "{elsewhere}"
        );
        assert!(o.admit(None, at(0)).is_err());

        let ca = KeyOptions::parse("cert-authority,principals=\"alice, ops\"").expect("ca");
        assert!(ca.cert_authority);
        assert_eq!(
            ca.principals,
            Some(vec!["alice".to_owned(), "ops".to_owned()])
        );
        assert_eq!(ca.admit(None, at(0)), Ok(()));
        assert_eq!(
            KeyOptions::parse("expiry-time=\"203001021530Z\"").map(|o| o.expires_at),
            Ok(Some(1_893_598_200))
        );
    }

    #[test]
    fn options_that_cannot_be_kept_refuse_the_line() {
        for (text, says) in [
            ("rot13", "unknown option `rot13`"),
            ("from=10.0.0.0/8", "double quotes"),
            ("from=\"10.0.0.0/8", "closing quote"),
            ("from", "needs a value"),
            ("no-pty=\"x\"", "takes no value"),
            ("from=\"10.0.0.1/8\"", "bits set past its mask"),
            ("from=\"10.0.0.0/8,\"", "empty pattern"),
            ("no-pty,,restrict", "empty option"),
            ("expiry-time=\"2030\"", "not YYYYMMDD"),
            ("expiry-time=\"20301301\"", "not YYYYMMDD"),
            ("command=\"/bin/sh\"", "not SFTP"),
            ("command=\"internal-sftp -R\"", "`-R`"),
            ("command=\"/usr/lib/openssh/sftp-server -d /srv\"", "`-d`"),
            ("principals=\"alice\"", "only for a cert-authority"),
            ("cert-authority,principals=\"\"", "names no one"),
        ] {
            let err = KeyOptions::parse(text).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
        for command in [
            "internal-sftp",
            "/usr/lib/openssh/sftp-server",
            "internal-sftp -e -lVERBOSE",
        ] {
            assert_eq!(check_sftp_command(command), Ok(()), "{command}");
        }
    }

    #[test]
    fn wildcards_match_as_openssh_does() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("10.*", "10.1.2.3", true),
            ("10.*.3", "10.1.2.3", true),
            ("10.?.2.3", "10.1.2.3", true),
            ("10.?.2.3", "10.11.2.3", false),
            ("*.example.com", "10.1.2.3", false),
        ] {
            assert_eq!(
                wildcard(pattern.as_bytes(), text.as_bytes()),
                expected,
                "{pattern} {text}"
            );
        }
    }
}
