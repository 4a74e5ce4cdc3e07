//! Control-connection commands (RFC 959 §4.1, §5.3; RFC 2389 FEAT/OPTS; RFC 2428
//! EPRT/EPSV; RFC 3659 SIZE/MDTM/REST/MLST/MLSD; RFC 2228 AUTH/PBSZ/PROT/CCC;
//! draft-somers-ftp-mfxx MFMT; draft-bryan-ftp-hash HASH/RANG) and the X-variants
//! of RFC 775 that clients still send.
//!
//! [`Command::parse`] turns one line, as bytes, into a typed [`Command`]. Command
//! words are case-insensitive. Arguments are everything after the first space, kept
//! exactly (file names may begin or end with spaces). Path arguments must be UTF-8
//! (ferry announces `UTF8` in FEAT) and must not contain NUL.

use std::fmt;
use std::net::{SocketAddr, SocketAddrV4};

use time::OffsetDateTime;

use crate::host_port::{self, EpsvArg, HostPortError};
use crate::timeval;

/// The longest control line accepted, in bytes, line ending included.
pub const MAX_LINE: usize = 4096;

/// A path argument: valid UTF-8, no NUL, not empty. Not yet resolved against any
/// directory; that happens in one place, in `ferry-storage`'s path resolution.
#[derive(Clone, PartialEq, Eq)]
pub struct PathArg(String);

impl PathArg {
    /// Checks the rules above.
    pub fn new(s: &str) -> Result<PathArg, ParseError> {
        if s.is_empty() {
            return Err(ParseError::MissingArgument);
        }
        if s.contains('\0') {
            return Err(ParseError::ContainsNul);
        }
        Ok(PathArg(s.to_owned()))
    }

    /// The path text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PathArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A password. Its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Password(s.into())
    }

    /// The password itself; callers must not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(****)")
    }
}

/// The argument of TYPE (RFC 959 §3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeCode {
    /// `A` or `A N`.
    Ascii,
    /// `I`, or `L 8`.
    Image,
    /// A type ferry does not offer (EBCDIC, Telnet or ASA formats, other byte sizes);
    /// answered 504.
    Unsupported,
}

/// The arguments of LIST, NLST, MLSD and STAT: `ls`-style options clients add
/// (`-la`), then an optional path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListArgs {
    /// The option letters given, e.g. `la` for `-la`.
    pub options: String,
    pub path: Option<PathArg>,
}

/// A byte range of a checksum command, both ends inclusive of start, exclusive of
/// end, as XCRC/XMD5 and RANG give them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: Option<u64>,
}

/// Which checksum a command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumCommand {
    /// HASH: the algorithm chosen with `OPTS HASH`.
    Hash,
    Xcrc,
    Xmd5,
    Xsha1,
    Xsha256,
}

/// One command from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(String),
    Pass(Password),
    Acct(String),
    Cwd(PathArg),
    Cdup,
    Quit,
    Rein,
    Port(SocketAddrV4),
    Pasv,
    Eprt(SocketAddr),
    Epsv(EpsvArg),
    Type(TypeCode),
    Stru(char),
    Mode(char),
    Retr(PathArg),
    Stor(PathArg),
    Stou(Option<PathArg>),
    Appe(PathArg),
    Allo,
    Rest(u64),
    Rnfr(PathArg),
    Rnto(PathArg),
    Abor,
    Dele(PathArg),
    Rmd(PathArg),
    Mkd(PathArg),
    Pwd,
    List(ListArgs),
    Nlst(ListArgs),
    Mlsd(Option<PathArg>),
    Mlst(Option<PathArg>),
    Site {
        sub: String,
        arg: String,
    },
    Syst,
    Stat(ListArgs),
    Help(Option<String>),
    Noop,
    Feat,
    Opts {
        name: String,
        arg: String,
    },
    Size(PathArg),
    Mdtm(PathArg),
    Mfmt {
        time: OffsetDateTime,
        path: PathArg,
    },
    Checksum {
        kind: ChecksumCommand,
        path: PathArg,
        range: Option<ByteRange>,
    },
    Rang(Option<ByteRange>),
    Auth(String),
    Pbsz(String),
    Prot(String),
    Ccc,
}

/// Why a line is not a command ferry can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line was empty.
    #[error("empty command line")]
    Empty,
    /// The command word is not one ferry knows (500).
    #[error("command not understood: {0}")]
    Unknown(String),
    /// The command needs an argument and got none (501).
    #[error("command needs an argument")]
    MissingArgument,
    /// The command takes no argument and got one (501).
    #[error("command takes no argument")]
    UnexpectedArgument,
    /// The argument is not in the command's syntax (501).
    #[error("syntax error in argument: {0}")]
    InvalidArgument(&'static str),
    /// A host-port argument was refused (501, or 522 for an unknown protocol).
    #[error(transparent)]
    HostPort(#[from] HostPortError),
    /// The argument is not UTF-8 (501).
    #[error("argument is not valid UTF-8")]
    NotUtf8,
    /// The argument contains a NUL byte (501).
    #[error("argument contains a NUL byte")]
    ContainsNul,
}

impl Command {
    /// Parses one control line. `line` may end in CRLF, LF or CR; Telnet sequences
    /// must already be removed ([`crate::telnet::strip`]).
    pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
        let line = trim_line_end(line);
        if line.is_empty() {
            return Err(ParseError::Empty);
        }
        let (verb, arg) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], Some(&line[i + 1..])),
            None => (line, None),
        };
        if verb.is_empty() || verb.len() > 8 || !verb.iter().all(u8::is_ascii_alphanumeric) {
            return Err(ParseError::Unknown(printable(verb)));
        }
        let verb = String::from_utf8_lossy(verb).to_ascii_uppercase();

        // PASS keeps any bytes; other arguments must be UTF-8.
        if verb == "PASS" {
            let pass = arg.map(String::from_utf8_lossy).unwrap_or_default();
            return Ok(Command::Pass(Password::new(pass)));
        }
        let arg = match arg {
            None => None,
            Some(a) => Some(std::str::from_utf8(a).map_err(|_| ParseError::NotUtf8)?),
        };
        if arg.is_some_and(|a| a.contains('\0')) {
            return Err(ParseError::ContainsNul);
        }
        // An argument of only spaces counts as none.
        let arg = arg.filter(|a| !a.trim().is_empty());

        let path = || PathArg::new(arg.ok_or(ParseError::MissingArgument)?);
        let none = |c: Command| match arg {
            None => Ok(c),
            Some(_) => Err(ParseError::UnexpectedArgument),
        };
        let text = || arg.map(str::to_owned).ok_or(ParseError::MissingArgument);

        match verb.as_str() {
            "USER" => Ok(Command::User(text()?)),
            "ACCT" => Ok(Command::Acct(text()?)),
            "CWD" | "XCWD" => Ok(Command::Cwd(path()?)),
            "CDUP" | "XCUP" => none(Command::Cdup),
            "QUIT" => none(Command::Quit),
            "REIN" => none(Command::Rein),
            "PORT" => Ok(Command::Port(host_port::parse_port(&text()?)?)),
            "PASV" => none(Command::Pasv),
            "EPRT" => Ok(Command::Eprt(host_port::parse_eprt(&text()?)?)),
            "EPSV" => Ok(Command::Epsv(host_port::parse_epsv(arg)?)),
            "TYPE" => Ok(Command::Type(parse_type(&text()?)?)),
            "STRU" => Ok(Command::Stru(single_letter(&text()?)?)),
            "MODE" => Ok(Command::Mode(single_letter(&text()?)?)),
            "RETR" => Ok(Command::Retr(path()?)),
            "STOR" => Ok(Command::Stor(path()?)),
            "STOU" => Ok(Command::Stou(arg.map(PathArg::new).transpose()?)),
            "APPE" => Ok(Command::Appe(path()?)),
            "ALLO" => Ok(Command::Allo),
            "REST" => {
                let a = text()?;
                let a = a.trim();
                if !a.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ParseError::InvalidArgument("REST takes a byte offset"));
                }
                a.parse()
                    .map(Command::Rest)
                    .map_err(|_| ParseError::InvalidArgument("REST takes a byte offset"))
            }
            "RNFR" => Ok(Command::Rnfr(path()?)),
            "RNTO" => Ok(Command::Rnto(path()?)),
            "ABOR" => Ok(Command::Abor),
            "DELE" => Ok(Command::Dele(path()?)),
            "RMD" | "XRMD" => Ok(Command::Rmd(path()?)),
            "MKD" | "XMKD" => Ok(Command::Mkd(path()?)),
            "PWD" | "XPWD" => none(Command::Pwd),
            "LIST" => Ok(Command::List(parse_list_args(arg)?)),
            "NLST" => Ok(Command::Nlst(parse_list_args(arg)?)),
            "MLSD" => Ok(Command::Mlsd(arg.map(PathArg::new).transpose()?)),
            "MLST" => Ok(Command::Mlst(arg.map(PathArg::new).transpose()?)),
            "SITE" => {
                let a = text()?;
                let (sub, rest) = a.split_once(' ').unwrap_or((&a, ""));
                Ok(Command::Site {
                    sub: sub.to_ascii_uppercase(),
                    arg: rest.to_owned(),
                })
            }
            "SYST" => none(Command::Syst),
            "STAT" => Ok(Command::Stat(parse_list_args(arg)?)),
            "HELP" => Ok(Command::Help(arg.map(|a| a.trim().to_ascii_uppercase()))),
            "NOOP" => Ok(Command::Noop),
            "FEAT" => none(Command::Feat),
            "OPTS" => {
                let a = text()?;
                let (name, rest) = a.split_once(' ').unwrap_or((&a, ""));
                Ok(Command::Opts {
                    name: name.to_ascii_uppercase(),
                    arg: rest.trim().to_owned(),
                })
            }
            "SIZE" => Ok(Command::Size(path()?)),
            "MDTM" => Ok(Command::Mdtm(path()?)),
            "MFMT" => {
                let a = text()?;
                let (t, p) = a.split_once(' ').ok_or(ParseError::InvalidArgument(
                    "MFMT takes YYYYMMDDHHMMSS and a path",
                ))?;
                let time = timeval::parse(t).ok_or(ParseError::InvalidArgument(
                    "MFMT time must be YYYYMMDDHHMMSS",
                ))?;
                Ok(Command::Mfmt {
                    time,
                    path: PathArg::new(p)?,
                })
            }
            "HASH" => Ok(Command::Checksum {
                kind: ChecksumCommand::Hash,
                path: path()?,
                range: None,
            }),
            "XCRC" => checksum(ChecksumCommand::Xcrc, &text()?),
            "XMD5" => checksum(ChecksumCommand::Xmd5, &text()?),
            "XSHA1" => checksum(ChecksumCommand::Xsha1, &text()?),
            "XSHA256" => checksum(ChecksumCommand::Xsha256, &text()?),
            "RANG" => parse_rang(arg),
            "AUTH" => Ok(Command::Auth(text()?.trim().to_ascii_uppercase())),
            "PBSZ" => Ok(Command::Pbsz(text()?.trim().to_owned())),
            "PROT" => Ok(Command::Prot(text()?.trim().to_ascii_uppercase())),
            "CCC" => none(Command::Ccc),
            _ => Err(ParseError::Unknown(verb)),
        }
    }

    /// The path the command acts on, when it takes one.
    pub fn path_arg(&self) -> Option<&PathArg> {
        match self {
            Command::Cwd(p)
            | Command::Retr(p)
            | Command::Stor(p)
            | Command::Appe(p)
            | Command::Rnfr(p)
            | Command::Rnto(p)
            | Command::Dele(p)
            | Command::Rmd(p)
            | Command::Mkd(p)
            | Command::Size(p)
            | Command::Mdtm(p)
            | Command::Mfmt { path: p, .. }
            | Command::Checksum { path: p, .. } => Some(p),
            Command::Stou(p) | Command::Mlsd(p) | Command::Mlst(p) => p.as_ref(),
            Command::List(a) | Command::Nlst(a) | Command::Stat(a) => a.path.as_ref(),
            _ => None,
        }
    }

    /// The command word, upper-case, for logs and replies.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Acct(_) => "ACCT",
            Command::Cwd(_) => "CWD",
            Command::Cdup => "CDUP",
            Command::Quit => "QUIT",
            Command::Rein => "REIN",
            Command::Port(_) => "PORT",
            Command::Pasv => "PASV",
            Command::Eprt(_) => "EPRT",
            Command::Epsv(_) => "EPSV",
            Command::Type(_) => "TYPE",
            Command::Stru(_) => "STRU",
            Command::Mode(_) => "MODE",
            Command::Retr(_) => "RETR",
            Command::Stor(_) => "STOR",
            Command::Stou(_) => "STOU",
            Command::Appe(_) => "APPE",
            Command::Allo => "ALLO",
            Command::Rest(_) => "REST",
            Command::Rnfr(_) => "RNFR",
            Command::Rnto(_) => "RNTO",
            Command::Abor => "ABOR",
            Command::Dele(_) => "DELE",
            Command::Rmd(_) => "RMD",
            Command::Mkd(_) => "MKD",
            Command::Pwd => "PWD",
            Command::List(_) => "LIST",
            Command::Nlst(_) => "NLST",
            Command::Mlsd(_) => "MLSD",
            Command::Mlst(_) => "MLST",
            Command::Site { .. } => "SITE",
            Command::Syst => "SYST",
            Command::Stat(_) => "STAT",
            Command::Help(_) => "HELP",
            Command::Noop => "NOOP",
            Command::Feat => "FEAT",
            Command::Opts { .. } => "OPTS",
            Command::Size(_) => "SIZE",
            Command::Mdtm(_) => "MDTM",
            Command::Mfmt { .. } => "MFMT",
            Command::Checksum { kind, .. } => match kind {
                ChecksumCommand::Hash => "HASH",
                ChecksumCommand::Xcrc => "XCRC",
                ChecksumCommand::Xmd5 => "XMD5",
                ChecksumCommand::Xsha1 => "XSHA1",
                ChecksumCommand::Xsha256 => "XSHA256",
            },
            Command::Rang(_) => "RANG",
            Command::Auth(_) => "AUTH",
            Command::Pbsz(_) => "PBSZ",
            Command::Prot(_) => "PROT",
            Command::Ccc => "CCC",
        }
    }
}

/// Every command word ferry understands, for HELP.
pub const VERBS: &[&str] = &[
    "ABOR", "ACCT", "ALLO", "APPE", "AUTH", "CCC", "CDUP", "CWD", "DELE", "EPRT", "EPSV", "FEAT",
    "HASH", "HELP", "LIST", "MDTM", "MFMT", "MKD", "MLSD", "MLST", "MODE", "NLST", "NOOP", "OPTS",
    "PASS", "PASV", "PBSZ", "PORT", "PROT", "PWD", "QUIT", "RANG", "REIN", "REST", "RETR", "RMD",
    "RNFR", "RNTO", "SITE", "SIZE", "STAT", "STOR", "STOU", "STRU", "SYST", "TYPE", "USER", "XCRC",
    "XCUP", "XCWD", "XMD5", "XMKD", "XPWD", "XRMD", "XSHA1", "XSHA256",
];

fn trim_line_end(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n'] = line {
        line = rest;
    }
    line
}

fn printable(bytes: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control())
        .take(16)
        .collect();
    s.to_ascii_uppercase()
}

fn parse_type(a: &str) -> Result<TypeCode, ParseError> {
    let mut parts = a.split_whitespace();
    let code = parts
        .next()
        .ok_or(ParseError::MissingArgument)?
        .to_ascii_uppercase();
    let second = parts.next().map(str::to_ascii_uppercase);
    if parts.next().is_some() {
        return Err(ParseError::InvalidArgument("TYPE takes one or two words"));
    }
    Ok(match (code.as_str(), second.as_deref()) {
        ("A", None | Some("N")) => TypeCode::Ascii,
        ("I", None) | ("L", Some("8")) => TypeCode::Image,
        ("A" | "E", Some("T" | "C")) | ("E", None | Some("N")) | ("L", Some(_)) => {
            TypeCode::Unsupported
        }
        _ => return Err(ParseError::InvalidArgument("TYPE takes A, I or L 8")),
    })
}

fn single_letter(a: &str) -> Result<char, ParseError> {
    let a = a.trim();
    let mut chars = a.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if c.is_ascii_alphabetic() => Ok(c.to_ascii_uppercase()),
        _ => Err(ParseError::InvalidArgument("expected one letter")),
    }
}

/// Option letters `ls` takes that clients send with LIST; an argument made only of
/// these after a dash is options, anything else is a path (so a file named `-foo`
/// is still a path).
const LIST_OPTION_LETTERS: &str = "aAlLRdFtrSh1";

fn parse_list_args(arg: Option<&str>) -> Result<ListArgs, ParseError> {
    let mut args = ListArgs::default();
    let Some(mut rest) = arg else {
        return Ok(args);
    };
    loop {
        let (word, after) = match rest.split_once(' ') {
            Some((w, a)) => (w, Some(a)),
            None => (rest, None),
        };
        let is_options = word.len() > 1
            && word.starts_with('-')
            && word[1..].chars().all(|c| LIST_OPTION_LETTERS.contains(c));
        if !is_options {
            break;
        }
        args.options.push_str(&word[1..]);
        match after {
            Some(a) => rest = a.trim_start_matches(' '),
            None => {
                rest = "";
                break;
            }
        }
    }
    if !rest.is_empty() {
        args.path = Some(PathArg::new(rest)?);
    }
    Ok(args)
}

/// XCRC and friends: `path`, or `path start end`, or a quoted path.
fn checksum(kind: ChecksumCommand, a: &str) -> Result<Command, ParseError> {
    if let Some(stripped) = a.strip_prefix('"') {
        let (p, after) = stripped
            .split_once('"')
            .ok_or(ParseError::InvalidArgument("unterminated quote"))?;
        let range = parse_range_words(after.split_whitespace().collect())?;
        return Ok(Command::Checksum {
            kind,
            path: PathArg::new(p)?,
            range,
        });
    }
    let words: Vec<&str> = a.rsplitn(3, ' ').collect();
    if words.len() == 3
        && words[0].bytes().all(|b| b.is_ascii_digit())
        && words[1].bytes().all(|b| b.is_ascii_digit())
        && !words[0].is_empty()
        && !words[1].is_empty()
    {
        let range = parse_range_words(vec![words[1], words[0]])?;
        return Ok(Command::Checksum {
            kind,
            path: PathArg::new(words[2])?,
            range,
        });
    }
    Ok(Command::Checksum {
        kind,
        path: PathArg::new(a)?,
        range: None,
    })
}

fn parse_range_words(words: Vec<&str>) -> Result<Option<ByteRange>, ParseError> {
    let num = |s: &str| {
        s.parse::<u64>()
            .map_err(|_| ParseError::InvalidArgument("range bounds are byte offsets"))
    };
    match words.as_slice() {
        [] => Ok(None),
        [start] => Ok(Some(ByteRange {
            start: num(start)?,
            end: None,
        })),
        [start, end] => {
            let (start, end) = (num(start)?, num(end)?);
            if end < start {
                return Err(ParseError::InvalidArgument("range end is before its start"));
            }
            Ok(Some(ByteRange {
                start,
                end: Some(end),
            }))
        }
        _ => Err(ParseError::InvalidArgument("too many range bounds")),
    }
}

/// RANG (draft-bryan-ftp-range): `RANG start end`, inclusive end; `RANG 1 0` resets.
fn parse_rang(arg: Option<&str>) -> Result<Command, ParseError> {
    let words: Vec<&str> = arg
        .map(|a| a.split_whitespace().collect())
        .unwrap_or_default();
    let [start, end] = words.as_slice() else {
        return Err(ParseError::InvalidArgument("RANG takes a start and an end"));
    };
    let start: u64 = start
        .parse()
        .map_err(|_| ParseError::InvalidArgument("RANG bounds are byte offsets"))?;
    let end: u64 = end
        .parse()
        .map_err(|_| ParseError::InvalidArgument("RANG bounds are byte offsets"))?;
    if start == 1 && end == 0 {
        return Ok(Command::Rang(None));
    }
    if end < start {
        return Err(ParseError::InvalidArgument("RANG end is before its start"));
    }
    // RANG's end is inclusive; ByteRange's is exclusive.
    Ok(Command::Rang(Some(ByteRange {
        start,
        end: Some(end.saturating_add(1)),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Result<Command, ParseError> {
        Command::parse(s.as_bytes())
    }

    fn path(s: &str) -> PathArg {
        PathArg::new(s).expect("path")
    }

    #[test]
    fn words_are_case_insensitive_and_args_kept_exactly() {
        assert_eq!(p("user alice\r\n"), Ok(Command::User("alice".into())));
        assert_eq!(
            p("RETR  two spaces \r\n"),
            Ok(Command::Retr(path(" two spaces ")))
        );
        assert_eq!(p("xpwd\n"), Ok(Command::Pwd));
        assert_eq!(p("PWD   \r\n"), Ok(Command::Pwd));
        assert_eq!(p("PWD x"), Err(ParseError::UnexpectedArgument));
    }

    #[test]
    fn refusals() {
        assert_eq!(p(""), Err(ParseError::Empty));
        assert_eq!(p("FOO bar"), Err(ParseError::Unknown("FOO".into())));
        assert_eq!(p("RETR"), Err(ParseError::MissingArgument));
        assert_eq!(Command::parse(b"RETR a\xffb"), Err(ParseError::NotUtf8));
        assert_eq!(Command::parse(b"RETR a\0b"), Err(ParseError::ContainsNul));
        assert!(matches!(p("PORT 1,2,3"), Err(ParseError::HostPort(_))));
        assert!(matches!(p("REST -1"), Err(ParseError::InvalidArgument(_))));
        assert!(matches!(p("TYPE X"), Err(ParseError::InvalidArgument(_))));
        assert!(matches!(
            Command::parse(b"\xff\xfe"),
            Err(ParseError::Unknown(_))
        ));
    }

    #[test]
    fn pass_hides_and_keeps_bytes() {
        let c = p("PASS se cret").expect("pass");
        assert_eq!(c, Command::Pass(Password::new("se cret")));
        assert!(!format!("{c:?}").contains("cret"));
    }

    #[test]
    fn types() {
        assert_eq!(p("TYPE a"), Ok(Command::Type(TypeCode::Ascii)));
        assert_eq!(p("TYPE A N"), Ok(Command::Type(TypeCode::Ascii)));
        assert_eq!(p("TYPE L 8"), Ok(Command::Type(TypeCode::Image)));
        assert_eq!(p("TYPE E"), Ok(Command::Type(TypeCode::Unsupported)));
    }

    #[test]
    fn list_options_and_dash_names() {
        assert_eq!(
            p("LIST -la"),
            Ok(Command::List(ListArgs {
                options: "la".into(),
                path: None
            }))
        );
        assert_eq!(
            p("LIST -a -l sub dir"),
            Ok(Command::List(ListArgs {
                options: "al".into(),
                path: Some(path("sub dir"))
            }))
        );
        assert_eq!(
            p("NLST -foo"),
            Ok(Command::Nlst(ListArgs {
                options: String::new(),
                path: Some(path("-foo"))
            }))
        );
    }

    #[test]
    fn checksums_and_ranges() {
        assert_eq!(
            p("XCRC my file 10 20"),
            Ok(Command::Checksum {
                kind: ChecksumCommand::Xcrc,
                path: path("my file"),
                range: Some(ByteRange {
                    start: 10,
                    end: Some(20)
                })
            })
        );
        assert_eq!(
            p("XMD5 \"a 1 2\""),
            Ok(Command::Checksum {
                kind: ChecksumCommand::Xmd5,
                path: path("a 1 2"),
                range: None
            })
        );
        assert_eq!(
            p("RANG 0 9"),
            Ok(Command::Rang(Some(ByteRange {
                start: 0,
                end: Some(10)
            })))
        );
        assert_eq!(p("RANG 1 0"), Ok(Command::Rang(None)));
        assert!(p("XCRC a 20 10").is_err());
    }

    #[test]
    fn mfmt() {
        let c = p("MFMT 20200101000000 a b").expect("mfmt");
        match c {
            Command::Mfmt { time, path: pa } => {
                assert_eq!(time.unix_timestamp(), 1_577_836_800);
                assert_eq!(pa.as_str(), "a b");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(p("MFMT 2020 a").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(line in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Command::parse(&line);
        }

        #[test]
        fn path_arguments_survive(verb in prop_oneof![Just("RETR"), Just("STOR"), Just("DELE"), Just("CWD"), Just("MKD")],
                                  name in "[^\r\n\0]{1,100}") {
            prop_assume!(!name.trim().is_empty());
            let line = format!("{verb} {name}\r\n");
            let cmd = Command::parse(line.as_bytes()).expect("parses");
            let got = match cmd {
                Command::Retr(p) | Command::Stor(p) | Command::Dele(p) | Command::Cwd(p) | Command::Mkd(p) => p,
                other => panic!("unexpected {other:?}"),
            };
            prop_assert_eq!(got.as_str(), name.as_str());
        }

        #[test]
        fn verbs_any_case(verb in prop::sample::select(VERBS.to_vec()), lower in any::<bool>()) {
            let v = if lower { verb.to_ascii_lowercase() } else { verb.to_string() };
            prop_assert!(!matches!(Command::parse(v.as_bytes()), Err(ParseError::Unknown(_))), "{} unknown", v);
        }
    }
}
